"""Keep a namespace alive after its last process: bind mounts and open files.

The kernel counts references to a namespace, and frees it when the count
drops to zero.  Every process in it holds one.  So does the file behind
``/proc/PID/ns/uts``: it is an inode of nsfs, the kernel's namespace file
system (Linux 3.19; before that the inodes lived in /proc), and that inode
holds a reference to its namespace until the inode itself is freed.  The
inode lives while anything uses its dentry:

* an open file descriptor (the open file holds the dentry), and
* a bind mount of the file: the root of the new mount *is* that dentry.

namespaces(7) says it in one sentence: "Bind mounting one of the files in
this directory to somewhere else in the filesystem keeps the corresponding
namespace of the process specified by pid alive even if all processes
currently in the namespace terminate."  Undo the mount, close the
descriptor, and the namespace dies with its last reference.

``ip netns add NAME`` (ip-netns(8)) does exactly this: it creates the empty
file /run/netns/NAME, unshares a network namespace and bind-mounts
/proc/self/ns/net onto the file; ``ip netns delete`` unmounts it with
MNT_DETACH and removes the file.  ``unshare --uts=FILE`` persists the same
way.

A bind mount is a mount like any other: it lives in one mount namespace.
Lessons and tests make it in a child with a mount namespace of its own, so
the machine's mount table never changes.  A mount namespace can only be
persisted from a mount namespace older than it (the kernel refuses the
reference loop with EINVAL).

Other references keep a namespace alive too, and holders() does not show
them: a socket keeps its network namespace, every namespace keeps the user
namespace that owns it, a PID or user namespace keeps its parent.

See namespaces(7) "The /proc/[pid]/ns/ directory", ip-netns(8), unshare(1),
mount(2), umount(2), ioctl_ns(2).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from typing import NamedTuple

from . import syscalls
from .errors import NamespaceError
from .mount import parse_mountinfo_line
from .namespace import Namespace
from .nstypes import lookup
from .spawn import run, spawn


def persist(pid: int | str, nstype: str, path: str) -> Namespace:
    """Bind-mount /proc/PID/ns/NSTYPE onto PATH, a new empty file, and return the namespace.

    The namespace then outlives every process in it, until release(PATH).
    """
    source = f"/proc/{pid}/ns/{lookup(nstype).name}"
    wanted = Namespace.of(pid, nstype)  # a teaching error if there is no such process
    try:
        # The mount point must exist and be a file, as the source is; ip netns add
        # creates it the same way, and refuses a name that is taken.
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "the file exists; persist onto a new path "
                              "(ip netns add refuses a name that is taken, too)", path) from None
    try:
        syscalls.mount(source, path, None, syscalls.MS_BIND)
    except OSError:
        os.unlink(path)
        raise
    held = Namespace.from_path(path)
    if held != wanted:  # the process ended meanwhile, and its PID went to another one
        release(path)
        raise NamespaceError(errno.ESRCH, f"persist {source}", "the process exited meanwhile; "
                             "its PID now names another process")
    return held


def release(path: str) -> None:
    """Undo persist(): detach the bind mount at PATH and remove the file.

    MNT_DETACH, as ip netns delete uses: whoever has just opened the file
    keeps a working descriptor, and the namespace lives until that is closed.
    """
    try:
        syscalls.umount(path, syscalls.MNT_DETACH)
    except NamespaceError as e:
        if e.errno != errno.EINVAL:
            raise
        raise NamespaceError(errno.EINVAL, f"umount2 {path}", "nothing is mounted there: "
                             "it holds no namespace, or it was released already") from None
    os.unlink(path)


def persisted(mountinfo: str = "/proc/self/mountinfo") -> dict[str, str]:
    """The bind-mounted namespaces in a mount namespace: {mount point: "uts:[4026532177]"}.

    The same list as ``findmnt -t nsfs``: in mountinfo an nsfs mount's root
    is the text of the /proc/PID/ns link it came from.
    """
    with open(mountinfo) as f:
        mounts = [parse_mountinfo_line(line) for line in f if line.strip()]
    return {m.mount_point: m.root for m in mounts if m.fstype == "nsfs"}


class Holder(NamedTuple):
    """Something that keeps a namespace alive."""

    kind: str  # "process", "fd" or "mount"
    pid: int  # the process (for a mount: a process in the mount namespace that has it)
    where: str  # /proc/PID/ns/uts, /proc/PID/fd/5, or the mount point

    def __str__(self) -> str:
        return {"process": f"process {self.pid} ({self.where})",
                "fd": f"open file {self.where}",
                "mount": f"bind mount {self.where} (seen by process {self.pid})"}[self.kind]


def holders(ns: Namespace) -> list[Holder]:
    """Everything we can see that refers to NS: processes, open files, bind mounts.

    Each /proc/PID/ns link, /proc/PID/fd link and nsfs mount root reads as
    "uts:[4026532177]", so one string comparison finds them all.  Processes
    we may not look into (another user's, as a normal user) are not seen.
    """
    name = str(ns)
    found = []
    mount_namespaces = set()
    for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
        found += [Holder("process", pid, link) for link in _links(f"/proc/{pid}/ns", name)]
        found += [Holder("fd", pid, link) for link in _links(f"/proc/{pid}/fd", name)]
        try:
            mnt = os.readlink(f"/proc/{pid}/ns/mnt")
            if mnt not in mount_namespaces:  # read each mount namespace's table once
                mount_namespaces.add(mnt)
                found += [Holder("mount", pid, point)
                          for point, root in persisted(f"/proc/{pid}/mountinfo").items() if root == name]
        except OSError:
            continue
    return found


def _links(directory: str, name: str) -> list[str]:
    """The links in DIRECTORY whose text is NAME."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    found = []
    for entry in entries:
        try:
            if os.readlink(f"{directory}/{entry}") == name:
                found.append(f"{directory}/{entry}")
        except OSError:
            continue
    return found


# The rule, as an experiment a lesson can run ------------------------------

HOLDS = ("mount", "fd", "nothing")


def outlives_its_process(hold: str = "mount", hostname: str = "outlived-its-process") -> dict:
    """Does a UTS namespace outlive its only process?  Try it, and return the facts.

    A child gets a new UTS namespace with HOSTNAME; we hold the namespace by
    HOLD ("mount": a bind mount, "fd": an open file descriptor, "nothing");
    the child is killed; then we look::

        {"namespace": "uts:[4026532190]", "hold": "mount",
         "holders": ["bind mount /tmp/uts (seen by process 4242)"],
         "alive": True,                # entering it found our hostname there
         "hostname": "outlived-its-process",
         "alive_after_release": False}  # after release() / close()

    "alive" is decided by entering each holder (setns) and finding HOSTNAME:
    inode numbers are reused at once, so a number alone proves little.  It
    all happens in a child with its own mount namespace (a tmpfs on /tmp),
    so the caller's mounts never change; a normal user gets a user namespace
    too (rootless mode).
    """
    if hold not in HOLDS:
        raise ValueError(f"hold must be one of {', '.join(HOLDS)}, not {hold!r}")
    return run(_experiment, hold, hostname, namespaces="mnt")


def _experiment(hold: str, hostname: str) -> dict:
    syscalls.mount("tmpfs", "/tmp", "tmpfs", 0)  # scratch space in our own mount namespace
    child = spawn(signal.pause, "uts", hostname=hostname)
    ns = Namespace.of(child.pid, "uts")
    path, fd = "/tmp/uts", -1
    if hold == "mount":
        persist(child.pid, "uts", path)
    elif hold == "fd":
        fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    child.kill()
    child.wait()  # the namespace's only process is gone
    facts = {"namespace": str(ns), "hold": hold}
    facts["holders"] = [str(h) for h in holders(ns)]
    found = _found_alive(ns, hostname)
    facts["alive"], facts["hostname"] = found is not None, found
    if hold == "mount":
        release(path)
    elif hold == "fd":
        os.close(fd)
    facts["alive_after_release"] = _found_alive(ns, hostname) is not None
    return facts


def _found_alive(ns: Namespace, hostname: str) -> str | None:
    """HOSTNAME if a holder of NS leads into a UTS namespace that has it, else None."""
    for holder in holders(ns):
        try:
            if run(_hostname_in, holder.where) == hostname:
                return hostname
        except OSError:
            continue
    return None


def _hostname_in(path: str) -> str:
    """Join the UTS namespace at PATH (in this child process) and read its hostname."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    syscalls.setns(fd, "uts")
    return socket.gethostname()
