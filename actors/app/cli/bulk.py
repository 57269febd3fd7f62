"""``saga cancel|retry|migrate --all`` and ``--dry-run``: an operator's request to many
sagas at once, found by the filters of ``saga list``.

The sagas are found in the projections; each one's state is then read from its
log, which has the last word (a saga the projections still show running may
have ended). A request that cannot apply is skipped with the reason. A dry run
decides each request offline with the pure decider, as its host would, and
prints what each saga would log and send: nothing is sent. More than a few
sagas at once need ``--yes`` (or a typed "yes" on a terminal).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import msgspec

from actors.app.candidates import load_definitions
from actors.app.cli.common import confirmed, print_json
from actors.app.cli.reading import located, warn_if_not_fresh
from actors.app.client import SagaClient
from actors.app.config import SagaConfig
from actors.core import (
    CANCEL_STEP,
    DEFINITIONS,
    MIGRATE_STEP,
    Cancel,
    Input,
    LogRecord,
    Migrate,
    Retry,
    SagaState,
    Verdict,
    decide,
)
from actors.core.compatibility import check_history, event_line
from actors.errors import UsageError


def act_on_many(args: argparse.Namespace, config: SagaConfig, step: str) -> int:
    from actors.app.cli.operate import ACTIONS, refusal

    ids = [args.saga_id] if args.saga_id else _found(args, config)
    with SagaClient(config.kafka) as client:
        states = (
            client.states() if args.all else {args.saga_id: client.state(args.saga_id)}
        )
        plans = [(i, states.get(i), refusal(step, i, states.get(i))) for i in ids]
        acting = [(i, state) for i, state, refused in plans if not refused]
        if args.dry_run:
            histories: dict[str, list[LogRecord]] = {}
            if step == MIGRATE_STEP:
                histories = (
                    client.in_flight()
                    if args.all
                    else {args.saga_id: client.history(args.saga_id)}
                )
            return _rehearse(args, step, plans, histories)
        count = len(acting)
        if not confirmed(
            args.yes,
            count,
            f"ask {count} sagas to {step}?",
            f"{count} sagas would be asked to {step}: add --yes to go on "
            "(--dry-run shows what each would do; filters narrow them)",
        ):
            print("nothing sent", file=sys.stderr)
            return 1
        sent = {i: _send(client, args, step, i) for i, _ in acting}
    if args.json:
        print_json(
            [
                {"sagaId": i, "requestId": sent.get(i), "refused": refused}
                for i, _, refused in plans
            ]
        )
    for saga_id, _, refused in plans:
        if refused:
            print(f"skipped {saga_id}: {refused}", file=sys.stderr)
        elif not args.json:
            print(f"{step} requested for saga {saga_id} (request {sent[saga_id]})")
    print(
        f"{len(sent)} of {len(plans)} saga(s) asked to {step}: {ACTIONS[step]}",
        file=sys.stderr,
    )
    return 0


def _send(client: SagaClient, args: argparse.Namespace, step: str, saga_id: str) -> str:
    if step == MIGRATE_STEP:
        return client.migrate(saga_id, args.to_version, args.reason, args.operator)
    return client.request(saga_id, step, args.reason, args.operator)


def _request(args: argparse.Namespace, step: str, saga_id: str, now: int) -> Input:
    """The input a saga's host would build from the request."""
    fields = {
        "saga_id": saga_id,
        "request_id": "dry-run",
        "reason": args.reason,
        "operator": args.operator,
        "now": now,
    }
    if step == MIGRATE_STEP:
        return Migrate(**fields, to_version=args.to_version)
    return Cancel(**fields) if step == CANCEL_STEP else Retry(**fields)


def _found(args: argparse.Namespace, config: SagaConfig) -> list[str]:
    """The ids of the sagas the filters match in the projections."""
    from actors.app.cli.listing import filters_of
    from projections.listing import FilterError, list_sagas
    from projections.reader import open_projections

    where = located(args, config)
    try:
        filters = filters_of(args)
        db = open_projections(where.projections)
        found = list_sagas(db, filters, limit=10**9)
    except FilterError as exc:
        raise UsageError(str(exc)) from None
    warn_if_not_fresh(where)
    return [row["saga_id"] for row in found.sagas]


def _rehearse(
    args: argparse.Namespace,
    step: str,
    plans: list[tuple[str, SagaState | None, str]],
    histories: dict[str, list[LogRecord]],
) -> int:
    """What each saga would log and send, decided offline; for a migrate,
    whether its history holds on the version it would move to."""
    now = int(time.time() * 1000)
    spec = getattr(args, "definitions", None)
    definitions = DEFINITIONS if spec is None else load_definitions(spec)
    found: list[dict[str, Any]] = []
    for saga_id, state, refused in plans:
        item: dict[str, Any] = {"sagaId": saga_id, "refused": refused}
        if state is not None and not refused:
            definition = definitions.get(state.saga_type)
            if definition is None:
                item["refused"] = f"no saga type {state.saga_type!r} in {spec}"
                found.append(item)
                continue
            request = _request(args, step, saga_id, now)
            decision = decide(definition, state, request)
            if decision.verdict is not Verdict.APPLIED:
                item["refused"] = decision.reason
            elif step == MIGRATE_STEP:
                diverges = check_history(
                    histories.get(saga_id, []), definition, on_version=args.to_version
                )
                item["divergence"] = (
                    None if diverges is None else msgspec.to_builtins(diverges)
                )
            item["status"] = str(state.status)
            item["step"] = state.step_id
            item["events"] = [event_line(e) for e in decision.events]
            item["commands"] = [
                f"{c.topic} {c.message.message_id}" for c in decision.commands
            ]
        found.append(item)
    if args.json:
        print_json(found)
    else:
        for item in found:
            if item["refused"]:
                print(f"{item['sagaId']}: would be refused: {item['refused']}")
                continue
            print(f"{item['sagaId']} ({item['status']} at {item['step']}): would log")
            print("\n".join(f"    {line}" for line in item["events"]))
            for command in item["commands"]:
                print(f"  and send {command}")
            diverges = item.get("divergence")
            if diverges:
                print(
                    f"  but its history diverges at record {diverges['seq']} on "
                    f"that version: {diverges['reason']}"
                )
                print("\n".join(f"    logged:    {x}" for x in diverges["logged"]))
                print("\n".join(f"    candidate: {x}" for x in diverges["candidate"]))
    acting = sum(1 for item in found if not item["refused"])
    print(
        f"{acting} of {len(found)} saga(s) would take the {step}; nothing sent",
        file=sys.stderr,
    )
    return 0
