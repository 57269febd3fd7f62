"""``saga dlq list|show|replay``: the dead letters on ``saga.dlq``, read and sent
back to their original topic."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from actors.app.cli.common import Commands, print_json, require_kafka
from actors.app.cli.reading import open_located, reading_flags, reads_projections
from actors.app.config import SagaConfig
from actors.errors import UsageError
from events.transport.dlq import DeadLetterQueue, Entry


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    dlq = commands.add_parser(
        "dlq", help="inspect dead letters and send them back"
    ).add_subparsers(metavar="ACTION", required=True)
    # With no Kafka configured, or with --data-dir or --run: the letters the
    # projections keep (a finished run's), listed and shown the same way.
    archived = reading_flags(locate_first=False)
    listing = dlq.add_parser(
        "list",
        parents=[common, archived],
        help="the letters on saga.dlq, oldest first",
        description="List dead letters: their id (PARTITION:OFFSET on saga.dlq), "
        "when and by whom they were given up on, their origin and the reason.",
    )
    listing.set_defaults(handler=dlq_list)
    show = dlq.add_parser(
        "show",
        parents=[common, archived],
        help="one letter in full, with its original message",
        description="Print one dead letter, its original payload decoded as "
        "text when it is UTF-8 (base64 otherwise).",
    )
    show.add_argument("id", metavar="PARTITION:OFFSET")
    show.set_defaults(handler=dlq_show)
    replay = dlq.add_parser(
        "replay",
        parents=[common],
        help="send letters back to their original topic",
        description="Publish each chosen letter's original bytes, with its "
        "original key, to its original topic and partition. Choose one by id, "
        "or --all (optionally narrowed by --topic and --saga-id).",
    )
    replay.add_argument("id", nargs="?", metavar="PARTITION:OFFSET")
    replay.add_argument("--all", action="store_true", help="every matching letter")
    replay.add_argument(
        "--dry-run", action="store_true", help="say what would be sent, send nothing"
    )
    replay.set_defaults(handler=dlq_replay)
    for sub_parser in (listing, replay):
        sub_parser.add_argument("--topic", help="only letters from this topic")
        sub_parser.add_argument("--saga-id", help="only letters of this saga")
    for sub_parser in (listing, show):
        sub_parser.add_argument("--json", action="store_true", help="print JSON")


def dlq_list(args: argparse.Namespace, config: SagaConfig) -> int:
    if reads_projections(args, config):
        from projections.archive import dead_letters

        _, db = open_located(args, config)
        entries = dead_letters(db, topic=args.topic, saga_id=args.saga_id)
    else:
        with DeadLetterQueue(config.kafka) as queue:
            entries = queue.entries(topic=args.topic, saga_id=args.saga_id)
    if args.json:
        print_json([_letter_json(e, full=False) for e in entries])
        return 0
    print(
        f"{'ID':<10} {'DEAD AT':<20} {'SOURCE':<16} {'ORIGIN':<34} {'TRIES':>5}  ERROR"
    )
    for e in entries:
        letter = e.letter
        origin = f"{letter.topic}/{letter.partition}/{letter.offset}"
        when = letter.dead_at.strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{e.id:<10} {when:<20} {letter.source:<16} {origin:<34} "
            f"{letter.attempts:>5}  {letter.error[:100]}"
        )
    print(f"{len(entries)} dead letter(s)", file=sys.stderr)
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


def dlq_replay(args: argparse.Namespace, config: SagaConfig) -> int:
    require_kafka(config)
    with DeadLetterQueue(config.kafka) as queue:
        if args.all == (args.id is not None):
            raise UsageError("saga dlq replay takes one PARTITION:OFFSET or --all")
        chosen = (
            queue.entries(topic=args.topic, saga_id=args.saga_id)
            if args.all
            else [queue.entry(args.id)]
        )
        if not args.dry_run:
            queue.replay(chosen)
    verb = "would send" if args.dry_run else "sent"
    for e in chosen:
        letter = e.letter
        print(f"{verb} {e.id} -> {letter.topic} partition {letter.partition}")
    print(f"{len(chosen)} letter(s) {verb} back", file=sys.stderr)
    return 0


def _letter_json(entry: Entry, full: bool) -> dict[str, Any]:
    """A letter as JSON; ``full`` keeps the original payload, as text when it
    is UTF-8 (``msgspec`` gives it as base64 otherwise)."""
    data: dict[str, Any] = {"id": entry.id, **msgspec.to_builtins(entry.letter)}
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
