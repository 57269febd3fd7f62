"""A local process's or thread's ``/proc`` ``stat`` line (Linux), as fields.

The embedded broker checks that a pause stopped every thread, ``saga bench``
reads the broker's CPU time, and the tests and the chaos run read a process's
state: all from this line, whose command may hold spaces and parentheses.
"""

from __future__ import annotations

#: Where, in :func:`stat_fields`, the state letter (``T``, ``t``: stopped;
#: ``Z``: zombie) and the user and system CPU time (clock ticks) are.
STATE, UTIME, STIME = 0, 11, 12


def stat_fields(pid: int, tid: int | None = None) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the parenthesised command (of
    thread ``tid``'s, ``/proc/<pid>/task/<tid>/stat``, when given). Raises
    :class:`OSError` without ``/proc`` or once the process or thread is gone."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as stat:
        # The command ends at the last ")": it may hold one itself.
        return stat.read().rsplit(")", 1)[1].split()
