"""``saga bench``'s chart: latency against offered load, and throughput at
saturation against the bare ceiling, drawn from its report (the JSON it
prints with ``--json`` and writes as ``bench.json``).

matplotlib is imported only here, and only when a chart is drawn: every other
command starts without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from actors.errors import UsageError

#: The percentiles drawn, each with its line's style.
_LINES = (("p50", "o-"), ("p95", "s--"), ("p99", "^:"))


class _Latency(msgspec.Struct):
    p50: float | None
    p95: float | None
    p99: float | None


class _Load(_Latency):
    offered_per_s: float


class _Saturation(_Latency):
    sagas: int
    achieved_per_s: float | None


class _Ceiling(msgspec.Struct):
    sagas_per_s: float
    ratio: float | None


class Figures(msgspec.Struct):
    """What the chart reads of a report; the rest of it is passed over."""

    single: _Latency
    loads: list[_Load]
    saturation: _Saturation
    ceiling: _Ceiling


def figures(report: dict[str, Any], source: str) -> Figures:
    """The chart's figures of ``report``; a report without them is refused,
    naming the field and ``source`` (where the report came from)."""
    try:
        return msgspec.convert(report, Figures)
    except msgspec.ValidationError as exc:
        raise UsageError(f"{source} is not a saga bench report: {exc}") from None


def read_report(path: Path) -> dict[str, Any]:
    """A report saved as ``bench.json``, refused with the reason when it is
    missing or not JSON."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        report = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    if not isinstance(report, dict):
        raise UsageError(f"{path} is not a saga bench report: not a JSON object")
    return report


def draw(report: dict[str, Any], path: Path, source: str = "the report") -> None:
    """Write the chart of ``report`` to ``path`` as a PNG."""
    data = figures(report, source)
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, whatever the machine has
    from matplotlib import pyplot

    fig, (left, right) = pyplot.subplots(1, 2, figsize=(12, 4.8))
    try:
        _latency(left, data)
        _throughput(right, data)
        fig.tight_layout()
        fig.savefig(path, dpi=100, format="png")
    finally:
        pyplot.close(fig)


def _latency(axes: Any, data: Figures) -> None:
    """p50/p95/p99 against the offered load: the single sagas at 0 (one in
    flight offers next to nothing), then each offered rate; saturation apart,
    at the rate it reached."""
    points: list[tuple[float, _Latency]] = [(0.0, data.single)]
    points += [(load.offered_per_s, load) for load in data.loads]
    colors = {}
    for name, style in _LINES:
        shown = [
            (x, getattr(p, name)) for x, p in points if getattr(p, name) is not None
        ]
        [line] = axes.plot(
            [x for x, _ in shown], [y for _, y in shown], style, label=name
        )
        colors[name] = line.get_color()
    flat = data.saturation
    if flat.achieved_per_s is not None:
        marks = [
            (n, getattr(flat, n)) for n, _ in _LINES if getattr(flat, n) is not None
        ]
        axes.scatter(
            [flat.achieved_per_s] * len(marks),
            [y for _, y in marks],
            marker="X",
            s=70,
            c=[colors[n] for n, _ in marks],
            label=f"saturation ({flat.sagas:,} sagas), at its rate",
        )
    axes.set_xlabel("offered load, sagas/s (0: one saga at a time)")
    axes.set_ylabel("request to outcome, ms")
    axes.set_title("Latency against offered load")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend()


def _throughput(axes: Any, data: Figures) -> None:
    platform = data.saturation.achieved_per_s or 0.0
    top = data.ceiling
    bars = axes.bar(
        ["platform at saturation", "bare ceiling\n(kafka-python loops)"],
        [platform, top.sagas_per_s],
        color=["tab:blue", "tab:gray"],
    )
    axes.bar_label(bars, fmt="{:,.0f}")
    ratio = "-" if top.ratio is None else f"{top.ratio:.2f}"
    axes.set_ylabel("sagas/s")
    axes.set_title(f"Throughput: {ratio} of the ceiling")
    axes.grid(True, axis="y", alpha=0.3)
