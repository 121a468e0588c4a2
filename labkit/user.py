"""User namespaces: uid and gid maps, and the setgroups rule.

A new user namespace starts with no mapping: every id inside reads as the
overflow id 65534 (``/proc/sys/kernel/overflowuid``) until somebody writes
``/proc/PID/uid_map`` and ``/proc/PID/gid_map``.  A line of a map says
"ids FIRST_INSIDE.. are FIRST_OUTSIDE.. for COUNT ids"::

    0 1000 1        # root inside is uid 1000 outside, and nothing else is mapped

The rules of user_namespaces(7), which the kernel enforces:

* each map may be written once, in one write(2);
* the writer needs CAP_SETUID (CAP_SETGID for gid_map) in the *parent* user
  namespace, or must be an unprivileged process mapping only its own
  effective id (a single line with count 1);
* an unprivileged writer of gid_map must first write ``deny`` to
  ``/proc/PID/setgroups``.  Since Linux 3.19: otherwise a user could drop a
  group with setgroups(2) inside the namespace and so escape a "negative"
  permission (a file mode that denies access to that group).

Because a process loses its capabilities at execve(2) unless its ids are
mapped, the maps are written by the *parent* while the child waits: the
handshake of ``userns_child_exec.c`` that ``labkit.spawn`` performs.

See user_namespaces(7), proc(5) (/proc/PID/uid_map), capabilities(7).
"""

from __future__ import annotations

import os

from .errors import error_for

OVERFLOW_ID = 65534  # what an unmapped id looks like; see /proc/sys/kernel/overflowuid


def _write_proc(pid: int | str, name: str, text: str) -> None:
    path = f"/proc/{pid}/{name}"
    try:
        # One write(2): a map written in pieces would be a second write, refused.
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise error_for(name, e.errno, detail=f"({path}: {text.strip()!r})") from None


def deny_setgroups(pid: int | str) -> None:
    """Write "deny" to /proc/PID/setgroups: needed before an unprivileged gid_map."""
    _write_proc(pid, "setgroups", "deny")


def write_uid_map(pid: int | str, lines: str) -> None:
    """Write /proc/PID/uid_map, e.g. "0 1000 1" (inside outside count)."""
    _write_proc(pid, "uid_map", _normalize(lines))


def write_gid_map(pid: int | str, lines: str) -> None:
    """Write /proc/PID/gid_map, e.g. "0 1000 1" (inside outside count)."""
    _write_proc(pid, "gid_map", _normalize(lines))


def _normalize(lines: str) -> str:
    return "".join(line.strip() + "\n" for line in lines.strip().splitlines())


def map_root(pid: int | str, uid: int | None = None, gid: int | None = None) -> None:
    """Map root inside PID's user namespace to UID and GID outside (default: ours).

    This is ``unshare --map-root-user``: the unprivileged recipe, which needs
    the setgroups ``deny`` first; as root we leave setgroups alone, so that
    root inside may still call setgroups(2).
    """
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    write_uid_map(pid, f"0 {uid} 1")
    if os.geteuid() != 0:
        deny_setgroups(pid)
    write_gid_map(pid, f"0 {gid} 1")


def read_map(pid: int | str = "self", which: str = "uid_map") -> list[tuple[int, int, int]]:
    """The lines of /proc/PID/uid_map (or gid_map) as (inside, outside, count)."""
    with open(f"/proc/{pid}/{which}") as f:
        return [tuple(int(x) for x in line.split()) for line in f if line.strip()]
