"""How ``saga status`` and ``saga top`` print partitions' owners: the node,
alike for the owners the projections report (:mod:`~actors.app.cli.status`)
and those the controller reports live (:mod:`~actors.app.live`); and the
projections' partition lists.
"""

from __future__ import annotations


def on_node(node: str | None) -> str:
    """`` on node`` and the start of a Ray node's id; nothing for no node."""
    if not node:
        return ""
    # A Ray node id is 56 hex digits: a prefix tells nodes apart.
    return f" on node {node[:8]}{'...' if len(node) > 8 else ''}"


def spans(numbers: list[int]) -> str:
    """Sorted ``numbers`` with runs of three or more as ``first-last``."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ",".join(
        f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs
    )
