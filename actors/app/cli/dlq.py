"""``saga dlq list|show|replay|resolve``: the dead letters on ``saga.dlq``, found
by saga, step, topic, error, age and state, replayed (first as a dry run through
the saga's decider) or resolved."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from actors.app.cli.common import (
    CONFIRM_ABOVE,
    Commands,
    RawDescriptionFormatter,
    confirmed,
    operator_name,
    print_json,
    require_kafka,
)
from actors.app.cli.reading import open_located, reading_flags, reads_projections
from actors.app.config import SagaConfig
from actors.errors import UsageError
from events.transport.dlq import DeadLetterQueue, Entry, LetterQuery, error_kind
from events.wire.dead_letters import LetterState

if TYPE_CHECKING:
    from actors.app.letters import Plan

_GROUPS: Final[dict[str, Callable[[Entry], str]]] = {
    "saga": lambda e: e.letter.saga_id or "-",
    "type": lambda e: e.letter.saga_type or "-",
    "status": lambda e: e.letter.saga_status or "-",
    "step": lambda e: e.letter.step or "-",
    "topic": lambda e: e.letter.topic,
    "error": error_kind,
    "state": lambda e: str(e.state),
}


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    dlq = commands.add_parser(
        "dlq", help="find, replay and resolve dead letters"
    ).add_subparsers(metavar="ACTION", required=True)
    # With no Kafka configured, or with --data-dir or --run: the letters the
    # projections keep (a finished run's), listed and shown the same way.
    archived = reading_flags(locate_first=False)
    chosen = _filter_flags()
    listing = dlq.add_parser(
        "list",
        parents=[common, archived, chosen],
        help="the letters, oldest first: open ones unless --state says",
        description="List dead letters: their id (PARTITION:OFFSET on saga.dlq), "
        "when they died, their state (open, replayed, resolved), their saga and "
        "step, their origin and the reason. A letter for a message that failed "
        "before names the earlier letter (after 'again:'). Filters combine (AND).",
        epilog="examples:\n"
        "  saga dlq list --group-by error\n"
        "  saga dlq list --saga-id s-42 --state all\n"
        "  saga dlq list --step deposit --since 2h --json",
        formatter_class=RawDescriptionFormatter,
    )
    listing.add_argument(
        "--state",
        default="open",
        choices=[*LetterState, "all"],
        help="letters in this state (default: %(default)s)",
    )
    listing.add_argument(
        "--group-by",
        choices=sorted(_GROUPS),
        help="counts of the matching letters by saga, step, topic, error (with "
        "sagaIds and numbers masked), type or state, most first",
    )
    listing.set_defaults(handler=dlq_list)
    show = dlq.add_parser(
        "show",
        parents=[common, archived],
        help="one letter in full, with its original message",
        description="Print one dead letter, its state and its original payload "
        "(decoded as text when it is UTF-8, base64 otherwise).",
    )
    show.add_argument("id", metavar="PARTITION:OFFSET")
    show.set_defaults(handler=dlq_show)
    replay = dlq.add_parser(
        "replay",
        parents=[common, chosen],
        help="send open letters back to their original topic (--dry-run first)",
        description="Publish each chosen open letter's original bytes (or, for "
        "one letter, a fixed version from --payload), with its original key, to "
        "its original topic and partition, and record it replayed: `replay --all` "
        "never sends a letter twice. --dry-run sends nothing: it feeds each "
        "letter through the saga's decider on the saga's state rebuilt from its "
        "log and prints the saga events and commands it would produce, or why it "
        "would be refused.",
    )
    replay.add_argument("id", nargs="?", metavar="PARTITION:OFFSET")
    replay.add_argument(
        "--payload",
        metavar="FILE",
        help="replay this fixed message instead of the letter's ('-': stdin)",
    )
    resolve = dlq.add_parser(
        "resolve",
        parents=[common, chosen],
        help="close open letters without replaying them",
        description="Record each chosen open letter resolved, with the "
        "operator's reason: it leaves the open list and is never replayed.",
    )
    resolve.add_argument("id", nargs="*", metavar="PARTITION:OFFSET")
    for parser, handler in ((replay, dlq_replay), (resolve, dlq_resolve)):
        parser.add_argument(
            "--all", action="store_true", help="every open letter the filters match"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would happen, do nothing"
        )
        parser.add_argument(
            "--reason",
            default="",
            required=parser is resolve,
            help="why (recorded with the letter's new state)",
        )
        parser.add_argument(
            "--operator",
            default=operator_name(),
            help="who acts (default: %(default)s)",
        )
        parser.add_argument(
            "--yes",
            action="store_true",
            help=f"act on more than {CONFIRM_ABOVE} letters without asking",
        )
        parser.set_defaults(handler=handler)
    for sub_parser in (listing, show, replay, resolve):
        sub_parser.add_argument("--json", action="store_true", help="print JSON")


def _filter_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("which letters")
    group.add_argument("--saga-id", help="letters of this saga")
    group.add_argument("--type", dest="saga_type", help="letters of sagas of this type")
    group.add_argument(
        "--saga-status",
        metavar="STATUS",
        help="letters whose saga had this status when they died (running, "
        "compensating...; a service's letters do not know it)",
    )
    group.add_argument("--step", help="letters for this step (stepId, as the saga's)")
    group.add_argument("--topic", help="letters from this topic")
    group.add_argument("--error", metavar="TEXT", help="TEXT (any case) in the reason")
    group.add_argument(
        "--since",
        metavar="TIME",
        help="dead at or after TIME: an ISO time or an age (30s, 10m, 2h, 1d)",
    )
    group.add_argument("--until", metavar="TIME", help="dead before TIME")
    return flags


def _query(args: argparse.Namespace, states: frozenset[LetterState]) -> LetterQuery:
    from projections.listing import FilterError, parse_moment

    now = datetime.now().astimezone()
    try:
        since = None if args.since is None else parse_moment(args.since, now)
        until = None if args.until is None else parse_moment(args.until, now)
    except FilterError as exc:
        raise UsageError(str(exc)) from None
    return LetterQuery(
        topic=args.topic,
        saga_id=args.saga_id,
        saga_type=args.saga_type,
        saga_status=args.saga_status,
        step=args.step,
        error=args.error,
        since=since,
        until=until,
        states=states,
    )


def _letters(args: argparse.Namespace, config: SagaConfig) -> list[Entry]:
    """Every letter, from the queue or (with no broker) the projections."""
    if reads_projections(args, config):
        from projections.archive import dead_letters

        _, db = open_located(args, config)
        return dead_letters(db)
    with DeadLetterQueue(config.kafka) as queue:
        return queue.entries()


def dlq_list(args: argparse.Namespace, config: SagaConfig) -> int:
    states = (
        frozenset() if args.state == "all" else frozenset({LetterState(args.state)})
    )
    query = _query(args, states)
    entries = [e for e in _letters(args, config) if query.matches(e)]
    if args.group_by:
        counts = Counter(_GROUPS[args.group_by](e) for e in entries).most_common()
        if args.json:
            print_json([{args.group_by: k, "letters": n} for k, n in counts])
        else:
            print(f"{'LETTERS':>7}  {args.group_by.upper()}")
            for key, n in counts:
                print(f"{n:>7,}  {key}")
    elif args.json:
        print_json([_letter_json(e, full=False) for e in entries])
    else:
        print(
            f"{'ID':<9} {'DEAD AT':<19} {'STATE':<8} {'SAGA':<14} {'STEP':<20} "
            f"{'ORIGIN':<30} ERROR"
        )
        for e in entries:
            letter = e.letter
            again = f"again: {e.previous}; " if e.previous else ""
            origin = letter.origin
            print(
                f"{e.id:<9} {letter.dead_at:%Y-%m-%d %H:%M:%S} {e.state:<8} "
                f"{letter.saga_id or '-':<14} {letter.step or '-':<20} "
                f"{origin:<30} {again}{letter.error[:100]}"
            )
    which = "" if args.state == "all" else f"{args.state} "
    print(f"{len(entries)} {which}dead letter(s)", file=sys.stderr)
    return 0


def dlq_show(args: argparse.Namespace, config: SagaConfig) -> int:
    if reads_projections(args, config):
        from projections.archive import dead_letter

        _, db = open_located(args, config)
        data = _letter_json(dead_letter(db, args.id), full=True)
    else:
        with DeadLetterQueue(config.kafka) as queue:
            data = _letter_json(queue.entry(args.id), full=True)
    if args.json:
        print_json(data)
    else:
        for key, value in data.items():
            print(f"{key:>16}: {value}")
    return 0


def _chosen(args: argparse.Namespace, queue: DeadLetterQueue) -> list[Entry]:
    """The letters named, or with --all the open ones the filters match."""
    ids = [args.id] if isinstance(args.id, str) else list(args.id or [])
    filtered = any(
        getattr(args, name) is not None
        for name in ("saga_id", "step", "topic", "error", "since", "until")
    )
    if args.all == bool(ids):
        raise UsageError("name letters by PARTITION:OFFSET, or choose --all")
    if ids and filtered:
        raise UsageError("filters choose letters with --all, not with ids")
    if ids:
        return [queue.entry(i) for i in ids]
    query = _query(args, frozenset({LetterState.OPEN}))
    return queue.entries(query)


def dlq_replay(args: argparse.Namespace, config: SagaConfig) -> int:
    require_kafka(config)
    payload = _payload(args.payload)
    if payload is not None and args.all:
        raise UsageError("--payload replaces one letter's message: name its id")
    return _act(args, config, LetterState.REPLAYED, payload)


def dlq_resolve(args: argparse.Namespace, config: SagaConfig) -> int:
    require_kafka(config)
    return _act(args, config, LetterState.RESOLVED, None)


def _act(
    args: argparse.Namespace,
    config: SagaConfig,
    state: LetterState,
    payload: bytes | None,
) -> int:
    """Replay or resolve the chosen letters (through their sagas where a saga
    is held behind one), or with --dry-run say what that would do."""
    from actors.app.client import SagaClient
    from actors.app.letters import carry_out, plan

    verb = "replayed" if state is LetterState.REPLAYED else "resolved"
    with DeadLetterQueue(config.kafka) as queue, SagaClient(config.kafka) as client:
        chosen = _chosen(args, queue)
        plans = plan(
            client,
            chosen,
            how=verb,
            payload=payload,
            reason=args.reason,
            operator=args.operator,
        )
        if args.dry_run:
            return _rehearse(args, config, plans, payload, state)
        asked = {"replayed": "replay", "resolved": "resolve"}[verb]
        count = len(chosen)
        if not confirmed(
            args.yes,
            count,
            f"{asked} {count} letters?",
            f"{count} letters would be {verb}: add --yes to act on them all "
            "(--dry-run lists them; filters narrow them)",
        ):
            print(f"nothing {verb}", file=sys.stderr)
            return 1
        done = carry_out(
            queue,
            client,
            plans,
            state,
            operator=args.operator,
            reason=args.reason,
            payload=payload,
        )
    if args.json:
        print_json([_letter_json(e, full=False) for e in done])
    else:
        for e in done:
            sent = e.action.sent if e.action is not None else ""
            print(f"{verb} {e.id}" + (f" -> {sent}" if sent else ""))
    print(f"{len(done)} letter(s) {verb}", file=sys.stderr)
    return 0


def _payload(path: str | None) -> bytes | None:
    if path is None:
        return None
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"--payload {path}: {exc.strerror}") from None


def _rehearse(
    args: argparse.Namespace,
    config: SagaConfig,
    every: list[Plan],
    payload: bytes | None,
    state: LetterState,
) -> int:
    """What acting on each letter would do: the saga's host's own steps and
    the pure decider, on the saga's state folded from its log (a letter no
    saga is held behind is only closed by a resolve)."""
    from actors.app.letters import rehearsed
    from actors.core import DEFINITIONS
    from actors.engine.rehearsal import relative_event
    from events.wire.messages import MessageCodec

    codec = MessageCodec(config.kafka.max_message_bytes)
    now = int(time.time() * 1000)
    # A resolve of a letter no saga is held behind only closes it.
    closing = state is LetterState.RESOLVED
    acting = [p for p in every if p.release is not None or not closing]
    outcomes = dict(
        zip(
            (p.entry.id for p in acting),
            rehearsed(acting, DEFINITIONS, codec, payload, now),
            strict=True,
        )
    )
    found: list[dict[str, Any]] = []
    for item in every:
        row: dict[str, Any] = {
            "id": item.entry.id,
            "state": str(item.entry.state),
            "through": "saga" if item.release is not None else "topic",
            "sagaId": item.entry.letter.saga_id,
            "verdict": "closed",
        }
        outcome = outcomes.get(item.entry.id)
        if outcome is not None:
            row |= {
                "sagaId": outcome.saga_id,
                "statusBefore": outcome.status_before,
                "stepBefore": outcome.step_before,
                "verdict": outcome.verdict,
                "reason": outcome.reason,
                "statusAfter": outcome.status_after,
                "events": [relative_event(ev, now) for ev in outcome.events],
                "commands": msgspec.to_builtins(outcome.commands),
            }
        found.append(row)
    if args.json:
        print_json(found)
    else:
        for row in found:
            print(_rehearsal_text(row))
    print(f"{len(found)} letter(s) rehearsed; nothing sent", file=sys.stderr)
    return 0


def _rehearsal_text(item: dict[str, Any]) -> str:
    if item["verdict"] == "closed":
        return f"{item['id']} ({item['state']}): would resolve it, closed unreplayed"
    saga = item["sagaId"] or "no saga"
    before = item["statusBefore"] or "not in the log"
    at = f" at step {item['stepBefore']}" if item["stepBefore"] else ""
    how = ", held behind it: released" if item["through"] == "saga" else ""
    lines = [f"{item['id']} ({item['state']}): saga {saga}, {before}{at}{how}"]
    if item["verdict"] == "refused":
        lines.append(f"  would be refused (a new dead letter): {item['reason']}")
        return "\n".join(lines)
    if item["verdict"] == "duplicate":
        lines.append(f"  would be dropped as a duplicate: {item['reason']}")
        return "\n".join(lines)
    if item["verdict"] == "resent":
        lines.append(f"  would go back {item['reason']}")
        return "\n".join(lines)
    lines.append(f"  would log ({before} -> {item['statusAfter']}):")
    for event in item["events"]:
        fields = {k: v for k, v in event.items() if k != "type"}
        lines.append(f"    {event['type']} {msgspec.json.encode(fields).decode()}")
    lines.append("  would send:" if item["commands"] else "  would send nothing")
    for send in item["commands"]:
        message = send["message"]
        lines.append(
            f"    {send['topic']} {message['messageId']} "
            f"{msgspec.json.encode(message['payload']).decode()}"
        )
    return "\n".join(lines)


def _letter_json(entry: Entry, full: bool) -> dict[str, Any]:
    """A letter as JSON, with its state and link; ``full`` keeps the original
    payload, as text when it is UTF-8 (``msgspec`` gives it as base64
    otherwise)."""
    data: dict[str, Any] = {
        "id": entry.id,
        "state": str(entry.state),
        **msgspec.to_builtins(entry.letter),
        "previous": entry.previous,
        "action": None if entry.action is None else msgspec.to_builtins(entry.action),
    }
    payload = entry.letter.payload
    if full:
        try:
            data["payload"] = payload.decode()
            data["payloadEncoding"] = "utf-8"
        except UnicodeDecodeError:
            data["payloadEncoding"] = "base64"
    else:
        del data["payload"]
    return data
