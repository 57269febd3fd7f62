"""``saga start`` and ``saga show``: request one saga, and read one back from
the saga log."""

from __future__ import annotations

import argparse
import json

import msgspec

from actors.app.cli.common import Commands, print_error, print_json, require_kafka
from actors.app.cli.reading import archived_log, reading_flags, reads_projections
from actors.app.client import SagaClient
from actors.app.config import SagaConfig
from actors.core import TAG_OF, LogRecord, SagaState, replay
from actors.errors import UsageError


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
    show.set_defaults(handler=show_saga)


def start_saga(args: argparse.Namespace, config: SagaConfig) -> int:
    require_kafka(config)
    try:
        saga_input = json.loads(args.input)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--input is not JSON: {exc}") from None
    if not isinstance(saga_input, dict):
        raise UsageError('--input must be a JSON object, e.g. \'{"userId": "u-1"}\'')
    with SagaClient(config.kafka) as client:
        print(client.start(args.saga_type, saga_input, args.saga_id))
    return 0


def show_saga(args: argparse.Namespace, config: SagaConfig) -> int:
    history: list[LogRecord]
    if reads_projections(args, config):
        history, source = archived_log(args, config), "the projections"
    else:
        with SagaClient(config.kafka) as client:
            history, source = client.history(args.saga_id), "saga.events"
    state: SagaState | None = None
    for record in history:
        state = replay(state, record)
    if state is None:
        print_error(f"no saga {args.saga_id} in {source}")
        return 1
    if args.json:
        print_json(
            {
                "state": msgspec.to_builtins(state),
                "history": msgspec.to_builtins(history),
            }
        )
        return 0
    print(f"saga {state.saga_id} ({state.saga_type}): {state.status}")
    if state.reason:
        print(f"reason: {state.reason}")
    started = history[0].at
    for record in history:
        for seq, event in enumerate(record.events, record.seq):
            fields = {
                k: v
                for k, v in msgspec.to_builtins(event).items()
                if k not in ("type", "sagaId", "sagaType")
            }
            detail = " ".join(f"{k}={json.dumps(v)}" for k, v in fields.items())
            print(
                f"{seq:>4}  +{record.at - started:>7} ms  "
                f"{TAG_OF[type(event)]:<24} {detail}"
            )
    return 0
