"""``saga cancel``, ``saga retry``, ``saga migrate``: an operator's actions on
a saga, or on every saga a filter over the projections finds (``--all``).

Each is a request on ``saga.requests`` that the saga applies like any other
input: it lands in the saga's log with the operator's name and reason, and the
saga acts on it through its normal path (compensations, retry policies). No
command writes behind a saga's back. The saga's state is read from its log
first, so a request that cannot apply is refused here, at once, with the
reason; one that races the saga's end is dead-lettered by the engine with it.
``--dry-run`` decides each request offline, on the saga's state from its log,
and prints what the saga would log and send; more than a few sagas at once
need ``--yes``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Final

from actors.app.cli.common import (
    CONFIRM_ABOVE,
    Commands,
    operator_name,
    print_error,
    require_kafka,
    require_positive,
)
from actors.app.cli.follow import EXIT_CODES_HELP, follow
from actors.app.cli.sagas import ended
from actors.app.client import SagaClient
from actors.app.config import SagaConfig
from actors.core import CANCEL_STEP, MIGRATE_STEP, RETRY_STEP, SagaState, Status
from actors.errors import UsageError

#: What each action does, for its help and its report.
ACTIONS: Final = {
    CANCEL_STEP: "stop the saga and undo what it did, through its compensations",
    RETRY_STEP: "send a failed saga's compensation again, with a fresh retry policy",
    MIGRATE_STEP: "go on from its step on another version of its definition",
}


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    cancel = commands.add_parser(
        "cancel",
        parents=[common],
        help="cancel a running saga: it compensates what it did",
        description="Ask a running saga to stop and undo what it did. The step "
        "in flight is given up on in doubt and compensated with the completed "
        "ones; a step without a compensation (the deposit) cannot be given up "
        "on, so the cancel waits for its answer, and a success of the last "
        "step completes the saga all the same. The request and its reason land "
        "in the saga's log.",
    )
    retry = commands.add_parser(
        "retry",
        parents=[common],
        help="retry a failed saga's compensation",
        description="Ask a failed saga (a compensation refused to its last "
        "attempt) to send that compensation again, its attempts counted afresh. "
        "The request and its reason land in the saga's log.",
    )
    migrate = commands.add_parser(
        "migrate",
        parents=[common],
        help="move sagas in flight onto another version of their definition",
        description="Ask sagas in flight to go on from their step on version "
        "--to-version of their definition (it must be deployed, as the current "
        "version or in previous). --dry-run first: it checks each saga's history "
        "against that version, as `saga check` does, and prints the move and the "
        "first record that version would not have written. The request and its "
        "reason land in each saga's log.",
    )
    migrate.add_argument(
        "--definitions",
        metavar="MODULE_OR_FILE",
        help="with --dry-run: the definitions the engine will run (as saga check "
        "takes them; default: this installation's)",
    )
    migrate.add_argument(
        "--to-version",
        type=int,
        required=True,
        metavar="N",
        help="the version to move to",
    )
    _add_request_arguments(cancel, CANCEL_STEP, waits=True)
    _add_request_arguments(retry, RETRY_STEP, waits=True)
    # A move has no end of its own to wait for.
    _add_request_arguments(migrate, MIGRATE_STEP, waits=False)


def _add_request_arguments(
    parser: argparse.ArgumentParser, step: str, *, waits: bool
) -> None:
    """What every request to sagas takes: one saga or --all with saga list's
    filters, the reason and the operator, and (but for a move) --wait."""
    parser.add_argument(
        "saga_id", nargs="?", metavar="SAGA_ID", help="the saga to act on"
    )
    chosen = parser.add_argument_group(
        "many sagas at once: --all and the filters of saga list (over "
        "DATA_DIR's projections; each saga's state is then read from its log)"
    )
    chosen.add_argument(
        "--all", action="store_true", help="every saga the filters match"
    )
    chosen.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="STATUS[,...]",
        help="running, compensating, ... failed (repeat or comma-separate)",
    )
    chosen.add_argument("--type", dest="saga_type", help="saga type")
    chosen.add_argument("--step", help="current step (the one it runs or undoes)")
    chosen.add_argument("--since", metavar="TIME", help="started at or after")
    chosen.add_argument("--until", metavar="TIME", help="started before")
    chosen.add_argument("--error", metavar="TEXT", help="TEXT in reason or error")
    chosen.add_argument("--where", metavar="SQL", help="SQL over sagas' columns")
    chosen.add_argument("--run", metavar="ID", help="a run under DATA_DIR")
    chosen.add_argument(
        "--dry-run",
        action="store_true",
        help="decide each request offline and print what each saga would "
        "log and send; send nothing",
    )
    chosen.add_argument(
        "--yes",
        action="store_true",
        help=f"act on more than {CONFIRM_ABOVE} sagas without asking",
    )
    chosen.add_argument(
        "--json", action="store_true", help="with --all or --dry-run: print JSON"
    )
    parser.add_argument(
        "--reason",
        required=True,
        help="why (recorded in the saga's log with the operator's name)",
    )
    parser.add_argument(
        "--operator",
        default=operator_name(),
        help="who asks (default: %(default)s)",
    )
    if waits:
        parser.add_argument(
            "--wait",
            action="store_true",
            help="follow the saga, printing its events, until it ends; "
            + EXIT_CODES_HELP,
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=120.0,
            metavar="S",
            help="with --wait, how long to wait for the saga to end (default: 120)",
        )
    parser.set_defaults(handler=act, request=step, wait=False, timeout=120.0)


def act(args: argparse.Namespace, config: SagaConfig) -> int:
    require_kafka(config)
    step: str = args.request
    if not args.reason.strip():
        raise UsageError("--reason must say why")
    require_positive("--timeout", args.timeout)
    if args.all == (args.saga_id is not None):
        raise UsageError("name one SAGA_ID, or choose sagas with --all and filters")
    if args.all or args.dry_run or step == MIGRATE_STEP:
        from actors.app.cli.bulk import act_on_many

        if args.wait:
            raise UsageError("--wait follows one saga: not with --all or --dry-run")
        return act_on_many(args, config, step)
    with SagaClient(config.kafka) as client:
        state = client.state(args.saga_id)
        refused = refusal(step, args.saga_id, state)
        if refused:
            print_error(refused)
            return 1
        assert state is not None
        request_id = client.request(args.saga_id, step, args.reason, args.operator)
        print(
            f"{step} requested for saga {args.saga_id} (request {request_id}): "
            f"{ACTIONS[step]}",
            file=sys.stderr,
            flush=True,
        )
        if not args.wait:
            print(
                f"`saga show {args.saga_id} --follow` follows it",
                file=sys.stderr,
            )
            return 0
        return ended(
            follow(client, args.saga_id, timeout_s=args.timeout, after=state.seq),
            args.saga_id,
        )


def refusal(step: str, saga_id: str, state: SagaState | None) -> str:
    """Why ``step`` cannot apply to the saga as its log has it, or ""."""
    if state is None:
        return (
            f"no saga {saga_id} in saga.events (a start request is applied "
            "asynchronously: if it was just started, try again in a moment)"
        )
    if step == CANCEL_STEP and state.status.terminal:
        return f"saga {saga_id} has ended ({state.status}): there is nothing to cancel"
    if step == RETRY_STEP and state.status is not Status.FAILED:
        return f"saga {saga_id} is {state.status}: only a failed saga can be retried"
    if step == MIGRATE_STEP and state.status.terminal:
        return f"saga {saga_id} has ended ({state.status}): there is nothing to move"
    return ""
