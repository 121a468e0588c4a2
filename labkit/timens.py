"""Time namespaces: a CLOCK_MONOTONIC and a CLOCK_BOOTTIME of one's own.

(This module is ``timens``, not ``time``, so that it never hides Python's.)

A time namespace (CLONE_NEWTIME, Linux 5.6) holds two offsets that the
kernel adds to CLOCK_MONOTONIC and CLOCK_BOOTTIME (and their _COARSE, _RAW
and _ALARM variants) for the processes in it.  The point is migration: a
container moved to another machine (CRIU) keeps clocks that never jump back.
time_namespaces(7) gives the rules this module shows, in order:

1. **Wall-clock time is not namespaced.**  CLOCK_REALTIME is the same
   everywhere; only the clocks that count from boot are shifted, and with
   CLOCK_BOOTTIME, the uptime in /proc/uptime.
2. **unshare(CLONE_NEWTIME) does not move the caller.**  Like a PID
   namespace, the new one is for the children: /proc/PID/ns/time_for_children
   changes, /proc/PID/ns/time stays, until the next fork(2) (since Linux 6.1
   also execve(2), which starts a process in time_for_children).
3. **The offsets are written once, before anyone enters.**  They go into
   /proc/PID/timens_offsets (PID's time_for_children namespace) as lines
   ``monotonic SECONDS NANOSECONDS``.  The first process to enter freezes
   them: later writes fail with EACCES.  Writing needs CAP_SYS_TIME in the
   user namespace that owns the time namespace, so rootless works: a new
   user namespace gives its creator that capability there.
4. **A clock may not go below zero** (ERANGE), nor beyond what the kernel
   can count; only ``monotonic`` and ``boottime`` may be given (EINVAL).

labkit.spawn does step 3 for you: ``spawn(cmd, "time", time_offsets={...})``.
It writes the offsets between its unshare(2) and its fork(2), so the writing
itself (``write_offsets``, ``offset_line``) lives there, below this module,
which uses spawn to show the rules.

See time_namespaces(7), clock_gettime(2), proc(5) (/proc/uptime,
/proc/PID/timens_offsets), unshare(1) (--monotonic, --boottime).
"""

from __future__ import annotations

import os
import time

from . import syscalls
from .spawn import offset_line, run, write_offsets  # noqa: F401 - spawn's step 4, see rule 3

# The clocks a time namespace touches, and the one it does not.
CLOCKS = {"monotonic": time.CLOCK_MONOTONIC, "boottime": time.CLOCK_BOOTTIME,
          "realtime": time.CLOCK_REALTIME}


# What a process sees ----------------------------------------------------------

def uptime() -> float:
    """Seconds since boot, the first field of /proc/uptime (CLOCK_BOOTTIME, shifted)."""
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def clocks() -> dict[str, float]:
    """clock_gettime(2) of CLOCK_MONOTONIC, CLOCK_BOOTTIME and CLOCK_REALTIME, now."""
    return {name: time.clock_gettime(clock) for name, clock in CLOCKS.items()}


def readings() -> dict[str, float]:
    """Everything a time namespace changes, and the clock it does not, as one dict."""
    return {"uptime": uptime(), **clocks()}


def readings_in_new_namespace(offsets: dict[str, float]) -> dict[str, float]:
    """readings() taken by a process in a new time namespace with OFFSETS."""
    return run(readings, namespaces="time", time_offsets=offsets)


# The two links: time and time_for_children ---------------------------------------

def time_links(pid: int | str = "self") -> dict[str, str]:
    """/proc/PID/ns/time and time_for_children, as readlink shows them."""
    return {link: os.readlink(f"/proc/{pid}/ns/{link}") for link in ("time", "time_for_children")}


def time_for_children_steps() -> dict[str, dict[str, str]]:
    """The two links before unshare(CLONE_NEWTIME), after it, and in the next child.

    All in a child process of ours: unshare would change the caller for good.
    A normal user's child first gets a user namespace of its own, in which it
    has CAP_SYS_ADMIN, which unshare(CLONE_NEWTIME) needs.
    """
    def unshare_then_fork() -> dict[str, dict[str, str]]:
        steps = {"before unshare": time_links()}
        syscalls.unshare("time")
        steps["after unshare"] = time_links()
        steps["in the child"] = run(time_links)  # a fork: the child enters
        return steps

    return run(unshare_then_fork, namespaces="user" if os.geteuid() else (),
               map_root=True if os.geteuid() else None)


# The offsets ----------------------------------------------------------------------

def read_offsets(pid: int | str = "self") -> dict[str, float]:
    """The offsets of PID's time_for_children namespace, in seconds: {"monotonic": 10.0, ...}."""
    offsets = {}
    with open(f"/proc/{pid}/timens_offsets") as f:
        for line in f:  # "monotonic           10         0"
            clock, sec, nsec = line.split()
            offsets[clock] = int(sec) + int(nsec) / 1e9
    return offsets
