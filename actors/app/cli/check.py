"""``saga check``: the deploy gate. Every in-flight saga's log replayed through
candidate definitions before they are deployed; exit 1 when any saga would
part ways with its history or send another command than the one it waits on."""

from __future__ import annotations

import argparse
import sys
import time

import msgspec

from actors.app.candidates import load_definitions
from actors.app.cli.common import Commands, RawDescriptionFormatter, print_json
from actors.app.cli.reading import open_located, reading_flags, reads_projections
from actors.app.config import SagaConfig
from actors.core import DEFINITIONS, LogRecord, SagaDefinition, replay_log
from actors.core.compatibility import Divergence, check_history, check_next_command


def add_parsers(commands: Commands, common: argparse.ArgumentParser) -> None:
    check = commands.add_parser(
        "check",
        parents=[common, reading_flags(locate_first=False)],
        help="the deploy gate: replay every in-flight saga through new definitions",
        description="Replay the log of every saga in flight through candidate "
        "saga definitions (before they are deployed) and name each saga whose "
        "history the candidate would not have written (the first divergent "
        "record: what the log holds and what the candidate would log) or whose "
        "awaited command would differ when sent again. Exit 1 if any would, 0 if "
        "none: a step for CI. Reads saga.events, or the projections with no "
        "broker configured (or with --data-dir or --run).",
        epilog="examples:\n"
        "  saga check --definitions mycompany.sagas\n"
        "  saga check --definitions deploy/definitions.py --json\n"
        "  saga check --definitions deploy/definitions.json --data-dir /var/saga",
        formatter_class=RawDescriptionFormatter,
    )
    check.add_argument(
        "--definitions",
        required=True,
        metavar="MODULE_OR_FILE",
        help="a module or .py file defining DEFINITIONS (name -> SagaDefinition), "
        "or a .json list of definitions",
    )
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(handler=check_definitions)


def check_definitions(args: argparse.Namespace, config: SagaConfig) -> int:
    candidates = load_definitions(args.definitions)
    histories = _in_flight(args, config)
    now = int(time.time() * 1000)
    found = [
        d
        for saga_id, history in sorted(histories.items())
        if (d := check_saga(saga_id, history, candidates, now)) is not None
    ]
    types = sorted({h[0].saga_type for h in histories.values()})
    if args.json:
        print_json(
            {
                "checked": len(histories),
                "types": types,
                "candidates": sorted(candidates),
                "diverging": [msgspec.to_builtins(d) for d in found],
            }
        )
    else:
        print(_report(found, len(histories), types, args.definitions))
    if found:
        print(f"{len(found)} saga(s) would diverge", file=sys.stderr)
    return 1 if found else 0


def check_saga(
    saga_id: str,
    history: list[LogRecord],
    candidates: dict[str, SagaDefinition],
    now: int,
) -> Divergence | None:
    """The saga's divergence under ``candidates``, or ``None``."""
    saga_type = history[0].saga_type
    candidate = candidates.get(saga_type)
    if candidate is None:
        return Divergence(
            saga_id=saga_id,
            seq=0,
            logged=[],
            candidate=[],
            reason=f"the candidates have no saga type {saga_type!r} "
            f"(they define {', '.join(sorted(candidates))})",
        )
    found = check_history(history, candidate)
    if found is not None:
        return found
    state = replay_log(history)
    assert state is not None
    current = DEFINITIONS.get(saga_type, candidate)
    return check_next_command(state, current, candidate, now)


def _in_flight(
    args: argparse.Namespace, config: SagaConfig
) -> dict[str, list[LogRecord]]:
    if reads_projections(args, config):
        from projections.archive import in_flight_logs

        _, db = open_located(args, config)
        return in_flight_logs(db)
    from actors.app.client import SagaClient

    with SagaClient(config.kafka) as client:
        return client.in_flight()


def _report(found: list[Divergence], checked: int, types: list[str], spec: str) -> str:
    lines = [
        f"checked {checked:,} saga(s) in flight"
        + (f" ({', '.join(types)})" if types else "")
        + f" against {spec}"
    ]
    if not found:
        lines.append("none would diverge: safe to deploy")
        return "\n".join(lines)
    lines.append(f"{len(found):,} would diverge:")
    for d in found:
        where = f"at record {d.seq}" if d.seq else "on its awaited command"
        lines.append(f"  {d.saga_id} {where}: {d.reason}")
        label = "logged:   " if d.seq else "deployed: "
        lines.extend(f"    {label} {line}" for line in d.logged)
        lines.extend(f"    candidate: {line}" for line in d.candidate)
    return "\n".join(lines)
