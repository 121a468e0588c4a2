"""What the machine looks like from the test runner, to prove tests leave nothing.

A snapshot holds everything a namespace test could leave behind in the
machine's own namespaces: processes (descendants of the test runner, which is
made a child subreaper so that double-forked daemons are caught too),
namespaces those processes hold, namespaces held by bind mounts, mounts,
named network namespaces, veth devices, System V IPC objects, POSIX message
queues, cgroups made by tests, and the hostname.  Each is read with the
kernel's own interfaces (/proc, ioctls, the new mount API), never with labkit.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import struct
import time

PR_SET_CHILD_SUBREAPER = 36
NAMESPACE_TYPES = {"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"}
# Cgroups made by labkit and the grader start with $NSLAB_CGROUP_PREFIX (default
# "nslab"); the test session sets a prefix of its own, so that two test runs on
# one machine do not see each other's cgroups as leaks.
CGROUP_PREFIX = f"nslab-test{os.getpid()}"
os.environ["NSLAB_CGROUP_PREFIX"] = CGROUP_PREFIX


def become_subreaper() -> None:
    """Orphans of our descendants are reparented to us, not to PID 1."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def descendants(root: int | None = None) -> dict[int, str]:
    """PID -> command of every descendant of ROOT (default: this process).

    Each task's /proc/PID/task/TID/children names its children, where the
    kernel has them (CONFIG_PROC_CHILDREN: Debian's has); else every
    /proc/PID/stat gives its parent.  The first reads a few files, the second
    one per process of the machine: twice a test, on an emulated CPU, that
    is minutes.
    """
    root = os.getpid() if root is None else root
    if not os.path.exists(f"/proc/{root}/task/{root}/children"):
        return _descendants_from_stat(root)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:  # it has exited
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                continue
            for child in children:
                try:
                    with open(f"/proc/{child}/comm") as f:
                        found[child] = f.read().rstrip("\n")
                except OSError:
                    continue
                todo.append(child)
    return found


def _descendants_from_stat(root: int) -> dict[int, str]:
    parent, comm = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command is in parentheses and may contain spaces and ")".
        pid = int(entry)
        comm[pid] = stat[stat.index("(") + 1:stat.rindex(")")]
        parent[pid] = int(stat[stat.rindex(")") + 2:].split()[1])
    found, todo = {}, [root]
    while todo:
        p = todo.pop()
        for child, pp in parent.items():
            if pp == p and child not in found:
                found[child] = comm[child]
                todo.append(child)
    return found


def reap_zombies() -> None:
    """As a subreaper we inherit orphans: collect the ones that have ended."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _namespaces_of(pids) -> set[str]:
    held = set()
    for pid in pids:
        try:
            for name in os.listdir(f"/proc/{pid}/ns"):
                held.add(os.readlink(f"/proc/{pid}/ns/{name}"))
        except OSError:
            continue
    return held


def _namespace_fds() -> set[str]:
    """Namespaces the test runner itself holds open (an fd on a /proc/PID/ns file)."""
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.partition(":[")[0] in NAMESPACE_TYPES:  # e.g. uts:[4026531838]
            held.add(f"fd {fd} -> {target}")
    return held


def _mounts() -> set[str]:
    seen = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            # systemd-logind mounts /run/user/UID at a user's first login and
            # removes it at the last logout (a `vagrant ssh` into the lab VM
            # while the suite runs): the machine's doing, never a test's.
            if fields[4].startswith("/run/user/"):
                continue
            # mount point, root within the source, fs type, source
            seen.add(f"{fields[4]} {fields[3]} {fields[sep + 1]} {fields[sep + 2]}")
    return seen


def _ipc() -> set[str]:
    objects = set()
    for kind in ("shm", "msg", "sem"):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                next(f)
                objects |= {f"{kind} id {line.split()[1]}" for line in f}
        except OSError:
            pass
    return objects | _posix_queues()


# The new mount API (Linux 5.2): fsopen(2), fsconfig(2), fsmount(2).
SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 430, 431, 432
FSOPEN_CLOEXEC, FSCONFIG_CMD_CREATE, FSMOUNT_CLOEXEC = 1, 6, 1
_mqueue_fd: int | None = None


def _posix_queues() -> set[str]:
    """POSIX message queues of our IPC namespace, listed through a detached mqueue mount.

    /dev/mqueue need not be mounted.  fsopen("mqueue") makes a file system
    context for the IPC namespace of the caller (ours), and fsmount() turns it
    into a mount that is attached nowhere: no mount namespace sees it, and its
    file descriptor lists the queues.  Made once, on the first call; it costs
    no process per snapshot (a snapshot is taken twice per test, and a process
    is slow to start on an emulated CPU).
    """
    global _mqueue_fd
    if _mqueue_fd is None:
        _mqueue_fd = _detached_mount(b"mqueue")
    return {f"mqueue {q}" for q in os.listdir(_mqueue_fd)}


def _detached_mount(fstype: bytes) -> int:
    """A readable directory descriptor on a new FSTYPE file system that is mounted nowhere."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fs = libc.syscall(SYS_FSOPEN, ctypes.c_char_p(fstype), FSOPEN_CLOEXEC)
    if fs < 0:
        raise OSError(ctypes.get_errno(), f"fsopen({fstype.decode()})")
    try:
        if libc.syscall(SYS_FSCONFIG, fs, FSCONFIG_CMD_CREATE, None, None, 0) != 0:
            raise OSError(ctypes.get_errno(), f"fsconfig({fstype.decode()}, FSCONFIG_CMD_CREATE)")
        mnt = libc.syscall(SYS_FSMOUNT, fs, FSMOUNT_CLOEXEC, 0)
        if mnt < 0:
            raise OSError(ctypes.get_errno(), f"fsmount({fstype.decode()})")
    finally:
        os.close(fs)
    try:  # fsmount() gives an O_PATH descriptor: open its root to read it
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=mnt)
    finally:
        os.close(mnt)


SIOCETHTOOL, ETHTOOL_GDRVINFO = 0x8946, 0x3
DRVINFO_SIZE = 196  # struct ethtool_drvinfo: cmd, driver[32], ... (linux/ethtool.h)


def _veths() -> set[str]:
    """Interfaces of our network namespace whose driver is veth.

    What `ethtool -i NAME` prints as "driver:", asked of the kernel directly
    (SIOCETHTOOL, ETHTOOL_GDRVINFO) rather than with a process per snapshot.
    """
    found = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            info = ctypes.create_string_buffer(struct.pack("I", ETHTOOL_GDRVINFO), DRVINFO_SIZE)
            request = struct.pack("16sP", name.encode(), ctypes.addressof(info))
            try:
                fcntl.ioctl(s, SIOCETHTOOL, request)
            except OSError:  # gone, or a device without ethtool (lo answers EOPNOTSUPP)
                continue
            if info.raw[4:36].split(b"\0")[0] == b"veth":
                found.add(name)
    return found


def _netns() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except OSError:
        return set()


def _cgroups() -> set[str]:
    found = set()
    for top in ("/sys/fs/cgroup", *(f"/sys/fs/cgroup/{c}" for c in os.listdir("/sys/fs/cgroup"))):
        try:
            found |= {f"{top}/{d}" for d in os.listdir(top) if d.startswith(CGROUP_PREFIX)}
        except OSError:
            pass
    return found


def snapshot() -> dict[str, set[str]]:
    procs = descendants()
    return {
        "processes": {f"{pid} {comm}" for pid, comm in procs.items()},
        "namespaces": _namespaces_of(procs) - _namespaces_of([os.getpid()]),
        "namespace fds of the test runner": _namespace_fds(),
        "mounts": _mounts(),
        "netns files (/run/netns)": _netns(),
        "veth devices": _veths(),
        "IPC objects": _ipc(),
        "cgroups": _cgroups(),
        "hostname": {socket.gethostname()},
        "domainname": {_domainname()},
    }


def _domainname() -> str:
    with open("/proc/sys/kernel/domainname") as f:
        return f.read().strip()


def leaks(before: dict[str, set[str]], grace: float = 5.0) -> dict[str, set[str]]:
    """What is in the machine now but was not in BEFORE (waiting GRACE s for exits)."""
    deadline = time.monotonic() + grace
    while True:
        reap_zombies()
        now = snapshot()
        diff = {k: now[k] - before[k] for k in now if now[k] - before[k]}
        if not diff or time.monotonic() > deadline:
            return diff
        time.sleep(0.05)


def kill_descendants() -> None:
    """Last resort after a leak, so that one bad test does not spoil the next."""
    for pid in descendants():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.1)
    reap_zombies()
