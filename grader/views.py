"""One namespace of a process, read from inside it by a tool of the grader's.

Some things a namespace holds have no /proc/PID file that shows them to an
outsider: the links of a network namespace, the System V objects of an IPC
namespace, the cgroup paths as a cgroup namespace shows them.  The grader
reads them the way an administrator would: nsenter(1) joins only that one
namespace of the process (the grader's own mount namespace, /proc and tools
stay), and the tool prints what the kernel says there.

See nsenter(1), ip-link(8), proc(5) (/proc/sysvipc, /proc/PID/cgroup),
network_namespaces(7), ipc_namespaces(7), cgroup_namespaces(7).
"""

from __future__ import annotations

import json
import subprocess


def _in(pid: int, flag: str, argv: list[str]) -> str | None:
    """The output of ARGV run in PID's namespace of one type (nsenter FLAG); None if it failed."""
    try:
        out = subprocess.run(["nsenter", f"--target={pid}", flag, *argv],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def links(pid: int) -> dict[str, list[str]] | None:
    """The network links of PID's network namespace: {name: flags}, as ip -json link shows them."""
    text = _in(pid, "--net", ["ip", "-json", "link", "show"])
    if text is None:
        return None
    return {link["ifname"]: link.get("flags", []) for link in json.loads(text or "[]")}


def sysv_keys(pid: int) -> set[int] | None:
    """The keys of every System V object (shm, msg, sem) of PID's IPC namespace.

    /proc/sysvipc/* list the IPC namespace of the process that reads them.
    """
    text = _in(pid, "--ipc", ["cat", "/proc/sysvipc/shm", "/proc/sysvipc/msg", "/proc/sysvipc/sem"])
    if text is None:
        return None
    keys = set()
    for line in text.splitlines():
        words = line.split()
        if words and words[0].lstrip("-").isdigit():  # not a header line
            keys.add(int(words[0]) & 0xFFFFFFFF)  # printed signed; keys are unsigned
    return keys


def cgroup_lines(pid: int) -> list[str] | None:
    """PID's /proc/PID/cgroup as PID's own cgroup namespace shows it (paths from its root)."""
    text = _in(pid, "--cgroup", ["cat", f"/proc/{pid}/cgroup"])
    return text.splitlines() if text is not None else None
