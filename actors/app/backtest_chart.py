"""``saga backtest``'s chart: the outcome mix of the recorded policy and the
candidate side by side, and their saga durations as distributions.

matplotlib is imported only here, and only when a chart is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.analysis.report import STATUSES, Comparison


def draw(result: Comparison, path: Path) -> None:
    """Write the chart of ``result`` to ``path`` as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, whatever the machine has
    from matplotlib import pyplot

    fig = figure(result, pyplot)
    try:
        fig.savefig(path, dpi=100, format="png")
    finally:
        pyplot.close(fig)


def figure(result: Comparison, pyplot: Any) -> Any:
    """The chart of ``result`` as a figure of ``pyplot`` (the caller's, with
    its backend: a notebook shows it inline)."""
    fig, (left, right) = pyplot.subplots(1, 2, figsize=(12, 4.8))
    _outcomes(left, result)
    _durations(right, result)
    fig.tight_layout()
    return fig


def _outcomes(axes: Any, result: Comparison) -> None:
    seen = {*result.baseline.outcomes, *result.candidate.outcomes}
    statuses = [s for s in STATUSES if s in seen]
    width = 0.4
    for shift, name, summary, color in (
        (-width / 2, "recorded policy", result.baseline, "tab:gray"),
        (width / 2, "candidate", result.candidate, "tab:blue"),
    ):
        bars = axes.bar(
            [i + shift for i in range(len(statuses))],
            [summary.outcomes.get(s, 0) for s in statuses],
            width,
            label=name,
            color=color,
        )
        axes.bar_label(bars, fmt="{:,.0f}")
    axes.set_xticks(range(len(statuses)), statuses)
    axes.set_yscale("symlog")  # a handful of changed sagas beside thousands
    most = max(
        [*result.baseline.outcomes.values(), *result.candidate.outcomes.values()]
    )
    axes.set_ylim(0, most * 4)  # room for the labels under the title
    axes.set_ylabel("sagas")
    axes.set_title(
        f"Outcomes of {result.sagas:,} sagas: {len(result.changed):,} change"
    )
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend()


def _durations(axes: Any, result: Comparison) -> None:
    """Each policy's ended sagas, by duration: the share ended within each."""
    # The recorded policy wide and pale beneath, the candidate dashed on top:
    # where they agree, both show.
    for index, name, color, style, width in (
        (0, "recorded policy", "tab:gray", "-", 4.0),
        (1, "candidate", "tab:blue", "--", 1.5),
    ):
        durations = sorted(
            d for pair in result.pairs if (d := pair[index].duration_ms) is not None
        )
        if not durations:
            continue
        shares = [(i + 1) / len(result.pairs) for i in range(len(durations))]
        axes.step(
            [max(d, 1) for d in durations],
            shares,
            where="post",
            label=name,
            color=color,
            linestyle=style,
            linewidth=width,
            alpha=0.6 if index == 0 else 1.0,
        )
    axes.set_xscale("log")
    axes.set_xlabel("saga duration, ms (log)")
    axes.set_ylabel("share of sagas ended within it")
    axes.set_ylim(0, 1.02)
    axes.set_title("Saga durations")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
