"""Which host should own which partition: the controller's plan, pure.

The plan is sticky and moves little: a partition with no live owner goes back
to the host that last held it if that host is live again (Ray restarted it),
else to the least loaded host; a draining host's partitions go to the least
loaded; then, while the most loaded host holds two more than the least, one
partition moves from it, a few per round, as Akka's rebalance threshold does.
A partition another engine claimed is left to it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import NamedTuple


class Move(NamedTuple):
    """Give ``partition`` to ``target``; ``source`` releases it first, if any."""

    partition: int
    source: str | None
    target: str


def plan(
    partitions: int,
    owners: Mapping[int, str],
    live: Sequence[str],
    *,
    last: Mapping[int, str] | None = None,
    draining: Collection[str] = (),
    foreign: Collection[int] = (),
    limit: int = 4,
) -> list[Move]:
    """The moves for this round. ``owners`` maps each partition to its live
    owner (absent: none); ``last`` to the host that held it last; ``live``
    are the hosts that answer, in a stable order; at most ``limit``
    partitions that have a live owner are moved (those without always are)."""
    takers = [h for h in live if h not in draining]
    if not takers:
        return []
    last = last or {}
    current = dict(owners)
    load = {h: 0 for h in takers}
    for host in current.values():
        if host in load:
            load[host] += 1
    moves: list[Move] = []

    def give(partition: int, source: str | None, target: str) -> None:
        moves.append(Move(partition, source, target))
        current[partition] = target
        load[target] += 1
        if source in load:
            load[source] -= 1

    def least() -> str:
        return min(takers, key=lambda h: (load[h], takers.index(h)))

    for partition in range(partitions):
        if partition in foreign or owners.get(partition) in load:
            continue
        source = owners.get(partition)
        if source is not None:
            if len(moves) >= limit:
                continue  # a draining host's: the next round
        elif last.get(partition) in load:
            give(partition, None, last[partition])
            continue
        give(partition, source, least())
    while len(moves) < limit:
        most = max(takers, key=lambda h: (load[h], -takers.index(h)))
        target = least()
        if load[most] - load[target] < 2:
            break
        moved = {m.partition for m in moves}
        partition = max(p for p, h in current.items() if h == most and p not in moved)
        give(partition, most, target)
    return moves
