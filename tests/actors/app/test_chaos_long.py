"""The long tier of the fault matrix: `saga run --chaos` with every fault kind,
5,000 sagas, five seeds. Minutes per seed, so not in CI's default run:

    .venv/bin/python -m pytest -m long

A failing seed replays alone: ``saga run --sagas 5000 --chaos --seed N``.
"""

from __future__ import annotations

import json

import pytest

from actors.app.chaos import FAULTS
from tests.actors.app.test_run import saga_run

pytestmark = [pytest.mark.long, pytest.mark.broker]

SEEDS = (101, 202, 303, 404, 505)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("seed", SEEDS)
def test_five_thousand_sagas_under_every_fault_end_with_a_clean_audit(
    seed: int,
) -> None:
    print(f"seed={seed}")
    result = saga_run(
        "--sagas", "5000", "--chaos", "--json", "--seed", str(seed), timeout=1500
    )
    print(result.stderr[-6000:])
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    ended = sum(summary[k] for k in ("completed", "compensated", "rejected", "failed"))
    assert summary["sagas"] == ended == 5000
    assert summary["audit"] == dict.fromkeys(summary["audit"], 0)
    proofs = summary["chaos_proofs"]
    assert sorted(p["fault"] for p in proofs) == sorted(FAULTS)
    assert all(p["fired"] for p in proofs), proofs
    print(json.dumps({k: summary[k] for k in ("elapsed_s", "sagas_per_s", "dlq")}))
