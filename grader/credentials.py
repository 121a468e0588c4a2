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

import contextlib
import grp
import os
import pwd
import shlex
import subprocess
import time

from . import observe
from .engine import Trial
from .feedback import Fail
from .hooks import as_user
from .sandbox import IdMap
from .session import START, Session

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


def owner(pid: int, name: str, ids: IdMap) -> tuple[int | None, int | None] | None:
    """Owner (uid, gid) of the file NAME in PID's working directory, as the sandbox sees it.

    lstat(2), so that a symbolic link is judged itself, not what it points to;
    the machine's ids are translated by IDS, the sandbox's map (None: an id
    the sandbox does not map).
    """
    try:
        st = os.lstat(f"/proc/{pid}/cwd/{name}")
    except OSError:
        return None
    return ids.inside(st.st_uid), ids.inside(st.st_gid)


# Exercise userns's runs: the solution as a drawn user, COMMAND found from outside -----

WAIT = "sleep 3600"  # what a waiting COMMAND runs once it has done what the check asked


def start_as_user(trial: Trial, *args: str) -> tuple[Session, int, int]:
    """Run ``solution ARGS`` as a drawn user U:G (hooks.as_user); return the run, U and G."""
    uid, gid = unused_ids(trial)
    run = trial.run(*args, hook=as_user(uid, gid))
    run.transcript.note(f"runs the solution as uid {uid}, gid {gid}")
    return run, uid, gid


def waiting_command(tag: str, before: str = "", *args: str) -> list[str]:
    """A shell that runs BEFORE, then waits (its child sleeps); TAG and ARGS are its $0, $1..."""
    return ["/bin/sh", "-c", f"{before}{WAIT}; echo end", tag, *args]


def find_command(run: Session, command: list[str], hint: str) -> int:
    """The PID of the sandbox's process running exactly COMMAND; Fail, with what the solution
    printed and how it ended, if there is none."""
    pid = run.find(command)
    if pid is None:
        with contextlib.suppress(Fail):  # read what it printed, and how it ended, if it did
            run.wait(timeout=1)
        ended = f"the solution ended ({run.exit})" if run.exit else "the solution still runs"
        raise Fail("COMMAND did not start: no process in the sandbox runs it",
                   expected=shlex.join(command), seen=f"{ended}; its output: {run.transcript.tail()}",
                   hint=hint)
    return pid


def waited(pid: int, timeout: float = START) -> bool:
    """Has the waiting shell PID got to its sleep (so BEFORE is done)?  Polled up to TIMEOUT s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(observe.cmdline(child) == WAIT.split() for child in observe.children(pid)):
            return True
        time.sleep(0.01)
    return False


def start_waiting(trial: Trial, hint: str, before: str = "") -> tuple[Session, int, int, int]:
    """Run the solution as a drawn user with a waiting COMMAND; return the run, COMMAND's PID, U, G.

    COMMAND is found by its argument vector among the sandbox's processes
    and is known to be done with BEFORE when its sleep runs: nothing of
    this relies on COMMAND's output reaching the grader.
    """
    command = waiting_command(f"userns-{trial.token()}", before)
    run, uid, gid = start_as_user(trial, *command)
    pid = find_command(run, command, hint)
    if not waited(pid):
        raise Fail("COMMAND started but did not get to its end in time", seen=run.transcript.tail(),
                   hint=hint)
    return run, pid, uid, gid
