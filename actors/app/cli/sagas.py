"""``saga start`` and ``saga show``: request one saga (and, with ``--wait``,
follow it to its end), and read one back from the saga log (``--follow``: as
it grows)."""

from __future__ import annotations

import argparse
import sys

import msgspec

from actors.app.cli.common import (
    Commands,
    print_error,
    print_json,
    require_kafka,
    require_positive,
)
from actors.app.cli.follow import (
    EXIT_CODES_HELP,
    OUTCOME_EXIT,
    STILL_RUNNING_EXIT,
    event_lines,
    follow,
    outcome_line,
)
from actors.app.cli.reading import archived_log, reading_flags, reads_projections
from actors.app.client import SagaClient
from actors.app.config import SagaConfig
from actors.core import (
    DEFINITIONS,
    LogRecord,
    SagaState,
    check_input,
    replay_log,
)
from actors.errors import InvalidRequestError, UsageError
from events.errors import MessageDecodeError, NotJsonError
from events.wire.messages import decode_json

#: Any JSON value (the input is checked against its saga type after).
_JSON_VALUE: msgspec.json.Decoder[object] = msgspec.json.Decoder()


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    start = commands.add_parser(
        "start",
        parents=[common],
        help="request a saga; prints its sagaId",
        description="Write a start request to saga.requests. The engine (`saga "
        "serve`) runs it. Example: saga start deposit --input "
        '\'{"userId": "u-1", "accountId": "a-1", "amount": 250, "currency": "USD"}\'',
    )
    start.add_argument("saga_type", metavar="TYPE", help="saga type, e.g. deposit")
    start.add_argument(
        "--input", required=True, metavar="JSON", help="the saga input, a JSON object"
    )
    start.add_argument("--saga-id", help="sagaId to use (default: a new UUID)")
    start.add_argument(
        "--wait",
        action="store_true",
        help="follow the saga, printing its events, until it ends; " + EXIT_CODES_HELP,
    )
    start.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="with --wait, how long to wait for the saga to end (default: 120)",
    )
    start.set_defaults(handler=start_saga)

    show = commands.add_parser(
        "show",
        parents=[common, reading_flags(locate_first=False)],
        help="a saga's state and history, read from saga.events",
        description="Fold a saga's records on saga.events into its state and "
        "print both. Works without the engine running. With no Kafka "
        "configured, or with --data-dir or --run, reads them from DATA_DIR's "
        "projections instead (a finished run's, say): the same output, its "
        "records regrouped by decision time, without their cause and epoch.",
    )
    show.add_argument("saga_id", metavar="SAGA_ID")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument(
        "--follow",
        action="store_true",
        help="print its events as they are appended until it ends (waiting for "
        "it to start if need be); " + EXIT_CODES_HELP,
    )
    show.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        metavar="S",
        help="with --follow, how long to follow (default: 3600)",
    )
    show.set_defaults(handler=show_saga)


def start_saga(args: argparse.Namespace, config: SagaConfig) -> int:
    try:
        saga_input = decode_json(_JSON_VALUE, args.input.encode())
    except NotJsonError as exc:
        reason = exc.reason.removeprefix("not JSON: ")
        raise UsageError(f"--input is not JSON: {reason}") from None
    except MessageDecodeError as exc:  # nested too deep, a number out of range
        raise UsageError(f"--input: {exc.reason}") from None
    if not isinstance(saga_input, dict):
        raise UsageError('--input must be a JSON object, e.g. \'{"userId": "u-1"}\'')
    require_positive("--timeout", args.timeout)
    # Checked here, before Kafka is asked anything: the engine would refuse
    # the request after the command had printed a sagaId and exited 0.
    definition = DEFINITIONS.get(args.saga_type)
    if definition is None:
        raise UsageError(
            f"unknown saga type {args.saga_type!r}; known: "
            f"{', '.join(sorted(DEFINITIONS))}"
        )
    try:
        check_input(definition, saga_input)
    except InvalidRequestError as exc:
        raise UsageError(f"--input: {exc}") from None
    require_kafka(config)
    with SagaClient(config.kafka) as client:
        saga_id = client.start(args.saga_type, saga_input, args.saga_id)
        print(saga_id, flush=True)
        if not args.wait:
            return 0
        return ended(follow(client, saga_id, timeout_s=args.timeout), saga_id)


def ended(state: SagaState | None, saga_id: str) -> int:
    """Say how a followed saga ended (on stderr: stdout has its events), and
    exit with its outcome."""
    if state is None:
        print_error(f"saga {saga_id} did not appear in saga.events before --timeout")
        return STILL_RUNNING_EXIT
    if not state.status.terminal:
        print(
            f"{outcome_line(state)} (still running when --timeout ran out)",
            file=sys.stderr,
        )
        return STILL_RUNNING_EXIT
    print(outcome_line(state), file=sys.stderr)
    return OUTCOME_EXIT[state.status]


def show_saga(args: argparse.Namespace, config: SagaConfig) -> int:
    if args.follow:
        require_kafka(config)
        if args.json:
            raise UsageError("--follow prints lines as they come; it takes no --json")
        with SagaClient(config.kafka) as client:
            return ended(
                follow(client, args.saga_id, timeout_s=args.timeout), args.saga_id
            )
    history: list[LogRecord]
    if reads_projections(args, config):
        history, source = archived_log(args, config), "the projections"
    else:
        with SagaClient(config.kafka) as client:
            history, source = client.history(args.saga_id), "saga.events"
    state = replay_log(history)
    if state is None:
        hint = (
            ""
            if source == "the projections"
            else f" yet (a start request is applied asynchronously; `saga show "
            f"{args.saga_id} --follow` waits for it)"
        )
        print_error(f"no saga {args.saga_id} in {source}{hint}")
        return 1
    if args.json:
        print_json(
            {
                "state": msgspec.to_builtins(state),
                "history": msgspec.to_builtins(history),
            }
        )
        return 0
    # Version 1 goes unsaid: the line reads as before versions existed.
    version = f", version {state.version}" if state.version != 1 else ""
    print(f"saga {state.saga_id} ({state.saga_type}{version}): {state.status}")
    if state.reason:
        print(f"reason: {state.reason}")
    for line in held_lines(state):
        print(line)
    if state.held and source == "saga.events":
        for line in letter_lines(config, state.saga_id):
            print(line)
    for line in event_lines(history, history[0].at):
        print(line)
    return 0


def held_lines(state: SagaState) -> list[str]:
    """What a saga held behind a dead letter waits on, and the replies it holds."""
    if not state.held:
        return []
    lines = [
        f"held: behind the dead letter of the message at {state.held}; "
        f"{len(state.held_replies)} repl(ies) held, applied in order when that "
        f"letter is replayed or resolved (saga dlq list --saga-id {state.saga_id})"
    ]
    lines.extend(
        f"  held reply {h.reply_id} on {h.topic} for {h.step_id}: "
        + ("success" if h.success else f"failure: {h.error}")
        for h in state.held_replies
    )
    return lines


def letter_lines(config: SagaConfig, saga_id: str) -> list[str]:
    """The saga's dead letters, each with its state and reason."""
    from events.transport.dlq import DeadLetterQueue, LetterQuery

    with DeadLetterQueue(config.kafka) as queue:
        found = queue.entries(LetterQuery(saga_id=saga_id))
    return [
        f"  letter {e.id} ({e.state}) of {e.letter.origin}: {e.letter.error[:100]}"
        for e in found
    ]
