"""Who a process is, and what it may do, in its user namespace, read from outside.

A user namespace maps ids: inside it a process may be uid 0, outside the
very same process is an ordinary uid U.  Which view a reader gets depends on
where the reader stands (user_namespaces(7)): /proc/PID/status shows a
process's ids as the *reader's* namespace maps them, and /proc/PID/uid_map
shows its second column relative to the reader's namespace when the reader
is elsewhere, relative to the parent namespace when it is inside.  So the
grader reads each file twice when it matters:

    from outside    the grader's own reading (the initial user namespace)
    as COMMAND      nsenter --user --preserve-credentials --target PID:
                    a reader in PID's user namespace, who keeps the grader's
                    credentials and enters nothing else (no mount namespace,
                    so no program of the solution's can run in its place)

Capabilities (CapEff, CapBnd of /proc/PID/status) are bit masks, the same
from everywhere; they count in the process's own user namespace.

The unprivileged user a solution runs as (exercise userns) is drawn for
each run: a uid and gid that no entry of /etc/passwd or /etc/group has, and
not 65534 (nobody), so that a solution cannot guess them.

See user_namespaces(7), capabilities(7), proc(5), nsenter(1).
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess

from . import observe
from .engine import Trial

NOBODY = 65534


def unused_ids(trial: Trial) -> tuple[int, int]:
    """A uid U and a gid G (U != G) that no user and no group of the machine has."""
    def unused(exists, taken: set[int]) -> int:
        while True:
            number = trial.number(2000, 60000)
            if number in taken or number == NOBODY:
                continue
            try:
                exists(number)
            except KeyError:
                return number
    uid = unused(pwd.getpwuid, set())
    return uid, unused(grp.getgrgid, {uid})


def read_inside(pid: int, path: str) -> str | None:
    """PATH (a file of /proc) as a process in PID's user namespace reads it; None if unreadable."""
    try:
        out = subprocess.run(["nsenter", f"--target={pid}", "--user", "--preserve-credentials",
                              "cat", path], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def id_map(text: str | None) -> list[tuple[int, ...]]:
    """The lines of a uid_map or gid_map ("0 1234 1") as tuples of numbers."""
    return [tuple(int(n) for n in line.split()) for line in (text or "").splitlines() if line.strip()]


def show_map(lines: list[tuple[int, ...]]) -> str:
    return " / ".join(" ".join(map(str, line)) for line in lines) or "(empty: no map written)"


def ids(status: str | None, name: str) -> list[int]:
    """The four ids (real, effective, saved, file system) of a Uid: or Gid: line of STATUS."""
    for line in (status or "").splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return [int(n) for n in value.split()]
    return []


def capabilities(pid: int) -> tuple[int, int] | None:
    """PID's effective capabilities and its bounding set (CapEff, CapBnd), or None if it is gone."""
    effective, bounding = observe.status_field(pid, "CapEff"), observe.status_field(pid, "CapBnd")
    if effective is None or bounding is None:
        return None
    return int(effective, 16), int(bounding, 16)


# capabilities(7), <linux/capability.h>
CAPABILITY_NAMES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore")


def capability_names(mask: int, most: int = 6) -> str:
    """"cap_sys_admin, cap_net_admin and 3 more" for the bits of MASK."""
    names = [f"cap_{CAPABILITY_NAMES[i]}" if i < len(CAPABILITY_NAMES) else f"capability {i}"
             for i in range(64) if mask >> i & 1]
    if not names:
        return "none"
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def owner(pid: int, name: str) -> tuple[int, int] | None:
    """Owner (uid, gid) of the file NAME in PID's working directory, as the machine sees it.

    lstat(2), so that a symbolic link is judged itself, not what it points to.
    """
    try:
        st = os.lstat(f"/proc/{pid}/cwd/{name}")
    except OSError:
        return None
    return st.st_uid, st.st_gid
