"""Reading and writing /proc files, the same way everywhere in labkit.

The kernel shows a process's namespaces, ids, capabilities and signals as
text under ``/proc/PID``, and takes a namespace's configuration as text
written there.  proc(5) documents every file; three habits of theirs shape
the code that reads and writes them:

* ``/proc/PID/status`` is a list of ``Name:<tab>value`` lines: ``NSpid``
  (Linux 4.1), ``PPid``, ``Threads``, ``CapEff``, ``SigIgn`` and many more.
* ``/proc/PID/stat`` is one line of fields separated by spaces, and the
  second, the command name in parentheses, may hold spaces and ")" itself:
  the fields after it start after the *last* ")".
* The files that configure a namespace (``uid_map``, ``gid_map``,
  ``setgroups``, ``timens_offsets``, and a cgroup's files too) parse each
  write(2) on its own: the whole text goes in one write, or a map would be
  refused as written twice, and a half-written offset list would be taken.

See proc(5).
"""

from __future__ import annotations

import os


def read_text(path: str) -> str:
    """The text of PATH without its final newline: "65534", "deny", "vm"."""
    with open(path) as f:
        return f.read().removesuffix("\n")


def status_field(pid: int | str, name: str) -> str:
    """The value of line NAME of /proc/PID/status: status_field(1, "PPid") -> "0".

    Raises LookupError if the kernel shows no such line (a name spelt
    wrong, or a field that this kernel does not have yet).
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == name:
                return value.strip()
    raise LookupError(f"no {name} line in /proc/{pid}/status")


def stat_fields(pid: int | str, proc: str = "/proc") -> list[str]:
    """The fields of PROC/PID/stat after the command name: [state, ppid, pgrp, ...].

    stat_fields(pid)[0] is the state letter (R, S, D, Z, ...), [1] the PPID.
    """
    with open(f"{proc}/{pid}/stat") as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2:].split()


def write_once(path: str, text: str) -> None:
    """Write TEXT to PATH in a single write(2); raise OSError as the kernel says."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())  # these files take all of it or fail with an errno
    finally:
        os.close(fd)
