"""Looking into a root file system from outside: is the old root really gone?

Exercises that build a root (jail, container) are judged on what their
COMMAND can reach.  The grader reads the kernel's view of COMMAND's mount
namespace from outside:

* namespace_view: a child of the grader joins COMMAND's mount namespace
  with setns(2), which puts it at the namespace's root mount (what
  pivot_root moves; chroot(2) moves only one process's root); its root and
  mount table are read from /proc/CHILD.
* every_mount_of: every mount of the namespace, hidden ones too
  (listmount(2), Linux 6.8; None before).
* look_from_inside: a child takes COMMAND's mount namespace, root and
  working directory (as nsenter --mount --root --wd does) and the
  directories COMMAND holds open, and tries exercise 2's escape.
* host_files_shown: of the mounts found, those that show the host's files
  outside ROOTFS (the old root, or a part of it bound somewhere).

See pivot_root(2), mount_namespaces(7), setns(2), proc(5), umount(2).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import stat
from dataclasses import dataclass

from labkit import mount as mounts
from labkit import syscalls

from . import observe
from .listmount import every_mount

# File systems that show the kernel's state, not files of the host's: the same
# super block may be mounted in the jail anew (a sysfs of the same network
# namespace, devtmpfs) without leading back to the old root.
KERNEL_VIEWS = {"proc", "sysfs", "devtmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "securityfs",
                "debugfs", "tracefs", "bpf", "pstore", "configfs", "fusectl", "hugetlbfs",
                "binfmt_misc", "efivarfs", "autofs", "nsfs", "rpc_pipefs"}

def _under(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")


def place_of(table: list[mounts.MountInfo], rootfs: str) -> tuple[str, str]:
    """Where ROOTFS is: the device of the mount it is on and its path in that file system.

    The mount is the deepest mount point above ROOTFS, the topmost if stacked
    (the sandbox's tmpfs on /dev/shm covers the machine's).
    """
    home = max(reversed([m for m in table if _under(rootfs, m.mount_point)]),
               key=lambda m: len(m.mount_point))
    return home.major_minor, os.path.normpath(home.root + "/" + rootfs[len(home.mount_point):])


def host_files_shown(host_files: set[str], rootfs_place: tuple[str, str],
                     found: list[tuple[str, str, str]]) -> list[str]:
    """Of FOUND mounts ("major:minor", root, description), those that show the host's files.

    A mount of a file system that holds files (not proc, sysfs, devpts ...)
    that the host has mounted too, and whose root is not ROOTFS or below it:
    the old root itself, or any part of it kept at a hidden place.
    """
    device, place = rootfs_place
    return [text for major_minor, root, text in found if major_minor in host_files
            and not (major_minor == device and _under(root, place))]


def link_or_reason(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError as e:
        return f"unreadable ({e.strerror})"


def same_file(path: str, identity: tuple[int, int]) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == identity


# Looking from inside COMMAND's mount namespace ---------------------------------------
#
# setns(CLONE_NEWNS) sets the caller's root and working directory to the
# root of the namespace (the mount that pivot_root put there), whatever
# root COMMAND itself has.  A child of the grader joins, and the grader
# reads /proc/CHILD/root and /proc/CHILD/mountinfo (which lists the mounts
# as seen from CHILD's root).

def namespace_view(pid: int) -> tuple[tuple[int, int], list[mounts.MountInfo]] | None:
    """The root (device, inode) and mount table of PID's mount namespace, from its root."""
    try:
        ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        try:
            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
            syscalls.setns(ns, "mnt")
            os.write(ready_w, b"!")
            os.read(hold_r, 1)  # until the grader has looked
        finally:
            os._exit(0)
    for fd in (ns, ready_w, hold_r):
        os.close(fd)
    try:
        if not select.select([ready_r], [], [], 10)[0] or os.read(ready_r, 1) != b"!":
            return None
        st = os.stat(f"/proc/{child}/root")
        table = [mounts.parse_mountinfo_line(line) for line in observe.mountinfo(child)]
        return (st.st_dev, st.st_ino), table
    finally:
        os.close(hold_w)
        os.close(ready_r)
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def every_mount_of(pid: int) -> list[tuple[str, str]] | None:
    """Every mount of PID's mount namespace, ("major:minor", root), hidden ones too.

    A child of the grader joins the namespace and asks listmount(2)
    (grader/listmount.py); None on a kernel without it (before 6.8).
    """
    try:
        ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    result_r, result_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        try:
            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
            syscalls.setns(ns, "mnt")
            os.write(result_w, json.dumps(every_mount()).encode())
        finally:
            os._exit(0)
    os.close(ns)
    os.close(result_w)
    data = _answer(child, result_r)
    found = json.loads(data) if data else None
    return [tuple(m) for m in found] if found is not None else None


@dataclass
class Inside:
    """What COMMAND could reach, found by a process that took its place."""

    cwd_inside: bool  # climbing ".." from COMMAND's working directory meets its root
    escaped: str | None  # the outside file's text, if exercise 2's escape reached it
    leaking_fds: list[int]  # COMMAND's descriptors of directories from which ".." leads out


def directory_fds(pid: int) -> list[int]:
    """PID's descriptors that are open on directories."""
    try:
        fds = [int(fd) for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return []
    found = []
    for fd in fds:
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.stat(f"/proc/{pid}/fd/{fd}").st_mode):
                found.append(fd)
    return found


def look_from_inside(pid: int, outside: str) -> Inside | None:
    """Take PID's mount namespace, root and working directory, and try to get out.

    A child of the grader does what nsenter --mount --root --wd does, so
    that it stands where COMMAND stands; it tries the directories COMMAND
    holds open too, and reports on a pipe.
    """
    numbers = directory_fds(pid)
    try:
        fds = [os.open(f"/proc/{pid}/{name}", os.O_RDONLY | os.O_CLOEXEC)
               for name in ("ns/mnt", "root", "cwd", *(f"fd/{n}" for n in numbers))]
    except OSError:
        return None
    result_r, result_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        try:
            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
            ns, root, cwd, *held = fds
            syscalls.setns(ns, "mnt")
            os.fchdir(root)
            os.chroot(".")  # COMMAND's root ...
            leaking = []
            for number, fd in zip(numbers, held, strict=True):  # ... the directories it holds ...
                os.fchdir(fd)
                if not _cwd_inside_root():
                    leaking.append(number)
            os.fchdir(cwd)  # ... and COMMAND's working directory
            report = {"cwd_inside": _cwd_inside_root(), "leaking_fds": leaking}
            os.write(result_w, json.dumps(report).encode() + b"\n")
            os.write(result_w, b"+" + _escape_and_read(outside))
        except BaseException:  # noqa: BLE001 - any failure is a failed escape
            pass
        finally:
            os._exit(0)
    os.close(result_w)
    for fd in fds:
        os.close(fd)
    data = _answer(child, result_r)
    first, newline, rest = data.partition(b"\n")
    if not newline:
        return None
    report = json.loads(first)
    escaped = rest[1:].decode(errors="replace") if rest[:1] == b"+" else None
    return Inside(report["cwd_inside"], escaped, report["leaking_fds"])


def others_leading_out(pid: int, processes: list[int]) -> list[str]:
    """The ways out of PID's root through the other PROCESSES of its mount namespace.

    A process that stays beside COMMAND in its mount namespace (a helper
    the solution left, a parent that waits) is within COMMAND's reach: its
    /proc/N/root, /proc/N/cwd and /proc/N/fd/* lead wherever they point.
    A child of the grader takes PID's mount namespace and root, then tries
    each of those (root, working directory, every directory descriptor):
    one that ".." does not bring back to PID's root leads out.  Returns
    "PID N: its working directory" and the like (the grader's PIDs).
    """
    mnt = _link(f"/proc/{pid}/ns/mnt")
    if mnt is None:
        return []
    names: list[str] = []
    fds: list[int] = []
    try:
        for other in processes:
            if other == pid or _link(f"/proc/{other}/ns/mnt") != mnt:
                continue
            for name, what in [("root", "its root directory"), ("cwd", "its working directory"),
                               *((f"fd/{n}", f"its descriptor {n}") for n in directory_fds(other))]:
                with contextlib.suppress(OSError):
                    fds.append(os.open(f"/proc/{other}/{name}", os.O_RDONLY | os.O_CLOEXEC))
                    names.append(f"PID {other}: {what}")
        if not fds:
            return []
        ns, root = (os.open(f"/proc/{pid}/{name}", os.O_RDONLY | os.O_CLOEXEC)
                    for name in ("ns/mnt", "root"))
    except OSError:
        for fd in fds:
            os.close(fd)
        return []
    result_r, result_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        try:
            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
            syscalls.setns(ns, "mnt")
            os.fchdir(root)
            os.chroot(".")  # PID's root
            out = []
            for i, fd in enumerate(fds):
                os.fchdir(fd)
                if not _cwd_inside_root():
                    out.append(i)
            os.write(result_w, json.dumps(out).encode() + b"\n")
        except BaseException:  # noqa: BLE001 - no answer: the grader's error
            pass
        finally:
            os._exit(0)
    os.close(result_w)
    for fd in (*fds, ns, root):
        os.close(fd)
    data = _answer(child, result_r)
    if b"\n" not in data:
        raise RuntimeError("the grader could not look through the processes beside COMMAND")
    return [names[i] for i in json.loads(data)]


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _cwd_inside_root() -> bool:
    """Does climbing ".." from the working directory meet the root?  (It comes back after.)"""
    root, here = os.stat("/"), os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(4096):
            st = os.stat(".")
            if _same(st, root):
                return True
            os.chdir("..")
            if _same(os.stat("."), st):  # the top, and it is not our root
                return False
        return False
    finally:
        os.fchdir(here)
        os.close(here)


def _escape_and_read(path: str) -> bytes:
    """Exercise 2's escape from the working directory, then read PATH.

    Where the climb ends may be the top of a detached file system rather
    than the host's root, so the tail parts of PATH are tried there too.
    """
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    below = f".grader-escape-{os.getpid()}"
    try:
        os.mkdir(below)
    except OSError:  # a read-only jail: any directory that is not above us will do
        below = next(f"/{d}" for d in sorted(os.listdir("/")) if os.path.isdir(f"/{d}")
                     and not os.getcwd().startswith(f"/{d}"))
    os.chroot(below)
    for _ in range(4096):
        os.chdir("..")
    os.chroot(".")
    if not below.startswith("/"):
        with contextlib.suppress(OSError):
            os.rmdir(below, dir_fd=here)
    parts = path.strip("/").split("/")
    for i in range(len(parts)):
        with contextlib.suppress(OSError), open("/" + "/".join(parts[i:]), "rb") as f:
            return f.read(65536)
    raise FileNotFoundError(path)


def describe(m: mounts.MountInfo) -> str:
    return f"{m.mount_point} ({m.fstype} {m.source}{'' if m.root == '/' else ' ' + m.root})"


def _answer(child: int, result_r: int) -> bytes:
    """What CHILD wrote on RESULT_R until it closed it (10 s at most between
    chunks); CHILD is then ended and reaped."""
    data = b""
    try:
        while select.select([result_r], [], [], 10)[0]:
            chunk = os.read(result_r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(result_r)
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    return data
