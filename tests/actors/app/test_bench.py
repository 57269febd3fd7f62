"""`saga bench`: its schedule and figures (pure), and one small real run that
proves the command measures what it says. No figure is asserted against a
bound: speed lives in the benchmark, not in tests."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import msgspec
import pytest

from actors.app.bench.breakdown import HOPS, SagaTrace
from actors.app.bench.cpu import PARTS
from actors.app.bench.load import percentiles, ticks
from actors.app.cli import main
from actors.app.cli.bench import table
from actors.core import DEPOSIT
from tests.actors.core.sagas import Run, reply_to

ROOT = Path(__file__).resolve().parents[3]
SAGA = [sys.executable, "-m", "actors.app.cli"]
#: A report of ``saga bench --quick``, as it wrote it to ``bench.json``.
REPORT = Path(__file__).parent / "golden" / "bench.json"


def test_an_offered_rate_sends_each_saga_once_on_its_schedule() -> None:
    schedule = list(ticks(rate=500, seconds=2))
    sent = [i for _, due in schedule for i in due]
    assert sent == list(range(1_000))
    # Never ahead of the rate: by time t, at most rate * t + 1 sagas sent.
    total = 0
    for at, due in schedule:
        total += len(due)
        assert total <= 500 * at + 1
    assert schedule[-1][0] < 2.0


def test_percentiles_by_nearest_rank_and_none_for_nothing() -> None:
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 51.0, "p95": 96.0, "p99": 100.0}


def test_a_sagas_hops_add_up_to_its_request_to_outcome_time() -> None:
    """A saga of one step, its timestamps made up: each hop is the gap its
    name says, and together they are the whole time."""
    run = Run("s-1", msgspec.structs.replace(DEPOSIT, steps=DEPOSIT.steps[:1]))
    run.start(now=1_010)  # the router took 10 ms to bring the request
    [command] = run.sent
    run.feed(reply_to(command, 1_060))
    started, ended = run.records()
    trace = SagaTrace()
    trace.request = 1_000
    trace.log = [(started, 1_012), (ended, 1_065)]  # decided 1_010 and 1_060
    trace.commands[command.message.message_id] = 1_015
    trace.replies[command.message.message_id] = (1_040.0, 1_050)
    assert trace.hops() == {
        "router + Ray call": 10 + 10,  # request, then the reply
        "decide + log send": 2 + 5,
        "log ack + command send": 3,
        "participant poll": 25,
        "participant apply + commit": 10,
    }
    assert sum(trace.hops().values()) == trace.total() == 65  # type: ignore[union-attr]


def png_size(path: Path) -> tuple[int, int]:
    """The width and height of the PNG at ``path``, after checking it is one:
    the signature, then chunks whose CRCs hold, from IHDR to IEND."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, kinds = 8, []
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"chunk {kind!r} at {at} is corrupt"
        kinds.append(kind)
        at += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_saved_report_redraws_as_a_chart_beside_it(tmp_path: Path) -> None:
    saved = tmp_path / "bench.json"
    shutil.copy(REPORT, saved)
    assert main(["bench", "--chart", str(saved)]) == 0
    chart = tmp_path / "bench.png"
    assert png_size(chart) == (1200, 480)  # two panels, 12 x 4.8 in at 100 dpi
    # Lines, markers, bars and their labels: far more than a blank canvas.
    assert 20_000 < chart.stat().st_size < 500_000
    assert main(["bench", "--chart", str(saved), "--out", str(tmp_path / "o")]) == 0
    assert png_size(tmp_path / "o" / "bench.png") == (1200, 480)


def test_the_table_shows_the_restore_and_the_memory_per_saga() -> None:
    report = json.loads(REPORT.read_text())
    text = table(report)
    restored = report["restore"]
    assert (
        f"| restore of {restored['in_flight']:,} in-flight sagas: snapshot + "
        f"{restored['tail_records']:,}-record tail | {restored['seconds']:,.2f} s "
    ) in text
    memory = report["memory"]["bytes_per_saga"]
    assert f"| memory per in-flight saga | {memory:,} B |" in text


def test_a_chart_of_what_is_no_report_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = json.loads(REPORT.read_text())
    del report["ceiling"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(report))
    assert main(["bench", "--chart", str(broken)]) == 2
    error = capsys.readouterr().err
    assert f"{broken} is not a saga bench report" in error and "ceiling" in error
    not_json = tmp_path / "notes.txt"
    not_json.write_text("p50 was fine")
    assert main(["bench", "--chart", str(not_json)]) == 2
    assert f"{not_json} is not JSON" in capsys.readouterr().err
    assert main(["bench", "--chart", str(tmp_path / "gone.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["bench", "--chart", str(REPORT), "--quick", "--json"]) == 2
    assert "measures nothing: drop --quick, --json" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))
    # A bench refused before it starts: nowhere to write its figures.
    assert main(["bench", "--quick", "--out", str(not_json / "figures")]) == 2
    assert f"cannot write the figures to {not_json / 'figures'}" in (
        capsys.readouterr().err
    )


@pytest.mark.broker
def test_bench_measures_single_sagas_a_load_and_the_breakdown(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SAGA, "bench", "--single", "20", "--rates", "50", "--seconds", "2",
         "--saturation", "300", "--restore", "200", "--json",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    single = report["single"]
    assert single["sagas"] == 20 and single["unfinished"] == 0
    assert 0 < single["p50"] <= single["p95"] <= single["p99"]
    [load] = report["loads"]
    assert load["offered_per_s"] == 50 and load["sagas"] == 100
    assert load["unfinished"] == 0 and load["achieved_per_s"] > 0
    flat_out, top = report["saturation"], report["ceiling"]
    assert flat_out["sagas"] == 300 and flat_out["unfinished"] == 0
    assert top["sagas"] == 300 and top["sagas_per_s"] > 0
    assert top["ratio"] == round(flat_out["achieved_per_s"] / top["sagas_per_s"], 3)
    # Every part of the platform did work for the sagas, and it adds up.
    cpu = flat_out["cpu"]
    assert set(cpu["us_per_saga"]) == set(PARTS)
    assert all(us > 0 for us in cpu["us_per_saga"].values())
    assert cpu["total_us_per_saga"] == pytest.approx(
        sum(cpu["us_per_saga"].values()), abs=len(PARTS)
    )
    assert cpu["cores_busy"] > 0
    hops = report["breakdown"]
    assert hops["sagas"] == 20
    assert all(hops[h] >= 0 for h in HOPS) and hops["total"] > 0
    text = table(report)
    assert "one saga at a time" in text and "50 sagas/s offered" in text
    assert "bare ceiling" in text and "platform at saturation / ceiling" in text
    assert "participant apply + commit" in text
    assert "CPU at saturation, by part" in text
    restored, memory = report["restore"], report["memory"]
    # Half the sagas' replies came after the snapshot: the tail.
    assert restored["in_flight"] == 200 and restored["from_snapshot"] == 200
    assert restored["tail_records"] == 100
    assert restored["seconds"] > 0 and restored["sagas_per_s"] > 0
    assert memory["in_flight"] == 200 and memory["bytes_per_saga"] > 0
    # No --out: a folder of the run's own in the data dir, named by its time.
    [out] = tmp_path.iterdir()
    assert re.fullmatch(r"bench\d{14}", out.name)
    assert json.loads((out / "bench.json").read_text()) == report
    assert png_size(out / "bench.png") == (1200, 480)
    assert f"wrote {out / 'bench.json'} and {out / 'bench.png'}" in result.stderr
