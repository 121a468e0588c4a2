"""The clocks of a process's time namespace, side by side with the caller's.

A time namespace (Linux 5.6) shifts CLOCK_MONOTONIC and CLOCK_BOOTTIME,
and with them the uptime in /proc/uptime, for the processes in it;
CLOCK_REALTIME is the same everywhere.  To judge "COMMAND's clock is
SECONDS ahead of the caller's" the grader reads both at the same moment,
from outside, without trusting anything COMMAND or the solution print:

    a reader process:       setns(caller's time ns)   read the clocks  (before)
                            setns(COMMAND's time ns)  read the clocks  (inside)
                            setns(caller's time ns)   read the clocks  (after)

setns(2) moves a single-threaded process into a time namespace at once
(the kernel remaps its vDSO page of clock offsets), so the three readings
are microseconds apart and COMMAND's are bracketed by the caller's.

See time_namespaces(7), clock_gettime(2), setns(2), proc(5).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class SideBySide:
    """The caller's readings just before and just after COMMAND's (seconds, by name)."""

    before: dict[str, float]
    inside: dict[str, float]
    after: dict[str, float]

    def ahead(self, name: str) -> tuple[float, float]:
        """How far COMMAND's clock NAME is ahead of the caller's: the lowest and highest it can be."""
        return self.inside[name] - self.after[name], self.inside[name] - self.before[name]

    def within(self, name: str, seconds: float, slack: float = 1.0) -> bool:
        """Is COMMAND's clock NAME ahead of the caller's by SECONDS, within SLACK seconds?"""
        low, high = self.ahead(name)
        return seconds - slack <= low and high <= seconds + slack


# The reader: a separate small program, so that the grader (threads and all)
# never runs Python code between fork and exec.  Its arguments are the two
# /proc/PID/ns/time files; it prints the three readings as JSON.
READER = """
import ctypes, json, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
clocks = {"monotonic": time.CLOCK_MONOTONIC, "boottime": time.CLOCK_BOOTTIME,
          "realtime": time.CLOCK_REALTIME}
caller, theirs = (os.open(p, os.O_RDONLY) for p in sys.argv[1:3])
readings = []
for fd in (caller, theirs, caller):
    if libc.setns(fd, 0x80) == -1:
        sys.exit(os.strerror(ctypes.get_errno()))
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    readings.append({"uptime": uptime, **{n: time.clock_gettime(c) for n, c in clocks.items()}})
print(json.dumps(readings))
"""


def side_by_side(pid: int, caller: int, timeout: float = 10) -> SideBySide | None:
    """The clocks of PID's time namespace between two readings of CALLER's; None if PID is gone."""
    try:
        out = subprocess.run([sys.executable, "-I", "-S", "-c", READER, f"/proc/{caller}/ns/time",
                              f"/proc/{pid}/ns/time"], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:  # PID is gone
        return None
    before, inside, after = json.loads(out.stdout)
    return SideBySide(before, inside, after)


def now_in(caller: int) -> dict[str, float] | None:
    """The clocks and uptime of CALLER's time namespace, now."""
    both = side_by_side(caller, caller)
    return both.inside if both else None
