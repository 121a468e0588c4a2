"""The kernel's view of a solution's processes, read from outside the sandbox.

A check judges what the kernel says, never a program's source or its own
claims: the namespace links in /proc/PID/ns, the hostname of a UTS
namespace (read by nsenter(1) from inside it), the file a descriptor points
to, the controlling terminal in /proc/PID/stat.  Each function here is one
such reading, by the grader, of a process it found by PID.

See proc(5), namespaces(7), nsenter(1).
"""

from __future__ import annotations

import os
import select
import subprocess
import threading

from labkit import mount as mounts
from labkit import procfs, syscalls


def namespace(pid: int, nstype: str) -> str | None:
    """The /proc/PID/ns/NSTYPE link ("uts:[4026531838]"), or None if the process is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{nstype}")
    except OSError:
        return None


def hostname(pid: int) -> str | None:
    """The hostname of PID's UTS namespace, as hostname(1) reads it in there."""
    try:
        out = subprocess.run(["nsenter", f"--target={pid}", "--uts", "hostname"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def children(pid: int) -> list[int]:
    """PID's children, from /proc/PID/task/*/children (Linux 4.2)."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return found


def descendants(pid: int) -> list[int]:
    """Every process below PID, parents before their children."""
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop(0)):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    """PID's argument vector ([] if it has ended, or is a zombie)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def exe(pid: int) -> str | None:
    """The program PID runs (/proc/PID/exe), as a path outside the sandbox sees it."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def fd_device(pid: int, fd: int) -> int | None:
    """The device number (st_rdev) of what PID's descriptor FD points to, or None."""
    try:
        return os.stat(f"/proc/{pid}/fd/{fd}").st_rdev
    except OSError:
        return None


def fd_target(pid: int, fd: int) -> str:
    """What PID's descriptor FD points to ("/dev/pts/3", "pipe:[1234]"), or "(closed)"."""
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return "(closed)"


def controlling_tty(pid: int) -> int | None:
    """The device number of PID's controlling terminal (0: none), field tty_nr of /proc/PID/stat."""
    try:
        return int(procfs.stat_fields(pid)[4])
    except (OSError, ValueError, IndexError):
        return None


def status_field(pid: int, name: str) -> str | None:
    """One line of /proc/PID/status ("NSpid", "PPid", "Uid", ...), without its name."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == name:
                    return value.strip()
    except OSError:
        pass
    return None


def mountinfo(pid: int) -> list[str]:
    """The lines of /proc/PID/mountinfo: the mount table of PID's mount namespace."""
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            return f.read().splitlines()
    except OSError:
        return []


def mount_table(pid: int) -> list[str] | None:
    """PID's mount table, one "mount point (type source, options)" per mount; None if PID is gone.

    Mount IDs are left out: a mount taken down and put back as it was is
    the same table to a reader.
    """
    lines = mountinfo(pid)
    if not lines:
        return None
    return _table(lines)


def _table(lines: list[str]) -> list[str]:
    table = []
    for line in lines:
        m = mounts.parse_mountinfo_line(line)
        part = "" if m.root == "/" else f" [{m.root}]"
        table.append(f"{m.mount_point} ({m.fstype} {m.source}{part}, {m.options})")
    return table


class MountTableWatch:
    """PID's mount table (as mount_table() gives it), watched from outside until close().

    The kernel tells a reader of /proc/PID/mountinfo that the mount table of
    its namespace changed (poll(2) says POLLPRI: proc(5)); a thread of the
    grader's then reads the table again, and keeps in ``changed`` every
    table it saw that differs from BEFORE.  ``events`` counts the changes
    the kernel reported, even those undone before the grader could read.
    """

    def __init__(self, pid: int, before: list[str]) -> None:
        self.before = before
        self.changed: list[list[str]] = []
        self.events = 0
        self.errors: list[BaseException] = []
        self._fd = os.open(f"/proc/{pid}/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        self._read()  # from now on, poll(2) reports changes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"mount-watch-{pid}", daemon=True)
        self._thread.start()

    def _read(self) -> list[str] | None:
        os.lseek(self._fd, 0, os.SEEK_SET)
        data = b""
        while chunk := os.read(self._fd, 1 << 16):
            data += chunk
        lines = data.decode(errors="replace").splitlines()
        return _table(lines) if lines else None

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLPRI | select.POLLERR)
        try:
            while not self._stop.is_set():
                if not poller.poll(50):
                    continue
                self.events += 1
                table = self._read()
                if table is None:  # the process is gone
                    return
                if table != self.before and table not in self.changed:
                    self.changed.append(table)
        except OSError:  # the process is gone
            return
        except BaseException as e:  # noqa: BLE001 - reported by close()
            self.errors.append(e)

    def close(self) -> list[list[str]]:
        """Stop watching; return the tables seen that differ from BEFORE."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            os.close(self._fd)
        if self.errors:
            raise RuntimeError(f"the mount table watch failed: {self.errors[0]!r}")
        return self.changed


class HostnameWatch:
    """The hostname of a UTS namespace, watched from outside for a whole run.

    UTS is a descriptor of the namespace (of /proc/PID/ns/uts, opened when
    the run started: grader/sandbox.py): held, the namespace can still be
    read after every process in it has ended.  A thread of the grader's
    that has joined it (setns(2) moves only the calling thread into a UTS
    namespace) reads its hostname (uname(2)) every EVERY seconds, until
    close(): every name other than EXPECTED that it sees is in ``seen``.
    Nothing of it is visible inside the sandbox.  A change undone within
    EVERY seconds may slip between two readings (grader/seccomp.py sees
    those); a change left in place is always seen, at the latest by the
    last reading, in close().
    """

    def __init__(self, uts: int, expected: str, every: float = 0.02) -> None:
        self.expected, self.every = expected, every
        self.seen: list[str] = []
        self.errors: list[BaseException] = []
        self._fd = os.dup(uts)  # our own hold on it: UTS, a descriptor of /proc/PID/ns/uts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="hostname-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        try:
            syscalls.setns(self._fd, "uts")
            while True:
                stopping = self._stop.is_set()
                name = os.uname().nodename
                if name != self.expected and name not in self.seen:
                    self.seen.append(name)
                if stopping:
                    return
                self._stop.wait(self.every)
        except BaseException as e:  # noqa: BLE001 - reported by close()
            self.errors.append(e)

    def close(self) -> list[str]:
        """Stop watching after a last reading; return the other names seen."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            os.close(self._fd)
        if self.errors:
            raise RuntimeError(f"the hostname watch failed: {self.errors[0]!r}")
        return self.seen
