"""Scenarios that start a Ray cluster of their own, run as processes apart from
pytest (a pytest process already connected to a local Ray cannot start one):
the scenario's side (:func:`main`) and the test's (:func:`report_of`)."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


def main(run: Callable[[int, int], dict[str, Any]], doc: str, sagas: int) -> None:
    """Parse ``--seed`` and ``--sagas``, print the seed, then ``run``'s report
    as one JSON line."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--seed", type=int, default=random.randrange(2**32))
    parser.add_argument("--sagas", type=int, default=sagas)
    args = parser.parse_args()
    print(f"seed={args.seed}", flush=True)
    print(json.dumps(run(args.seed, args.sagas)), flush=True)


def report_of(
    module: str, path: tuple[Path, ...] = (), env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run the scenario ``module`` with a seed (``SAGA_TEST_SEED`` or drawn,
    and printed), ``path`` on its Python path after the repository and ``env``
    in its environment; its report, or the test fails with its output."""
    seed = int(os.environ.get("SAGA_TEST_SEED", random.randrange(2**32)))
    print(f"seed={seed}")
    done = subprocess.run(
        [sys.executable, "-m", module, "--seed", str(seed)],
        cwd=ROOT,
        env={
            **os.environ,
            **(env or {}),
            "PYTHONPATH": os.pathsep.join(map(str, (ROOT, *path))),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(report)
    return report
