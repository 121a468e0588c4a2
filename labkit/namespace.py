"""A handle on one namespace: the files in /proc/PID/ns and ioctl_ns(2).

Each process has a symbolic link per namespace type in ``/proc/PID/ns``::

    $ readlink /proc/$$/ns/uts
    uts:[4026531838]

The number is the inode of the namespace in the kernel's internal nsfs file
system.  Two processes are in the same namespace exactly when their links
name the same inode (on the same device), so a ``Namespace`` compares equal
to another by ``(dev, inode)``.  Opening the link gives a file descriptor
that refers to the namespace itself: setns(2) takes it, ioctl_ns(2) asks it
about the namespace's place in the hierarchy, and as long as the descriptor
is open (or the file is bind-mounted somewhere) the namespace lives on even
after its last process has gone.

Besides one link per type there are ``pid_for_children`` and
``time_for_children``: the namespace the process's *next children* will be
in, which differs after unshare(CLONE_NEWPID) or unshare(CLONE_NEWTIME).
(Between unshare(CLONE_NEWPID) and the first fork, the new PID namespace has
no init yet, and the kernel shows no ``pid_for_children`` at all: ENOENT.)

A namespace found with an ioctl (a parent, an owner) has no file in /proc
of its own; we remember the way to it instead, the file we started from and
the ioctls that lead on, so that it can be opened and asked in turn.

The files came with Linux 3.0 (hard links then; symbolic links since 3.8),
pid_for_children with 4.12, and the ioctls with 4.9 (NS_GET_USERNS,
NS_GET_PARENT) and 4.11 (NS_GET_NSTYPE, NS_GET_OWNER_UID).

See namespaces(7), ioctl_ns(2), proc(5).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from .errors import NamespaceError, error_for, teach
from .nstypes import BY_FLAG, NamespaceType, lookup

# ioctl_ns(2) requests: _IO(0xb7, n) from <linux/nsfs.h>.
NS_GET_USERNS = 0xB701  # the user namespace that owns a namespace
NS_GET_PARENT = 0xB702  # the parent of a PID or user namespace
NS_GET_NSTYPE = 0xB703  # the CLONE_NEW* type of a namespace (Linux 4.11)
NS_GET_OWNER_UID = 0xB704  # the uid that created a user namespace (Linux 4.11)
IOCTL_NAMES = {NS_GET_USERNS: "NS_GET_USERNS", NS_GET_PARENT: "NS_GET_PARENT",
               NS_GET_NSTYPE: "NS_GET_NSTYPE", NS_GET_OWNER_UID: "NS_GET_OWNER_UID"}

# What the kernel means when an ioctl_ns(2) request fails (labkit.errors.teach).
_OUTSIDE_THE_TREE = (
    "ioctl_ns(2): the namespace asked for lies outside the caller's own namespace tree "
    "(above its PID or user namespace), so the kernel will not show it; at the top of "
    "the tree this is how the walk ends.")
teach("ioctl NS_GET_PARENT", hints={
    errno.EPERM: _OUTSIDE_THE_TREE,
    errno.EINVAL: "ioctl_ns(2): only PID and user namespaces form a tree with parents; "
                  "every namespace has an owner, though (NS_GET_USERNS).",
})
teach("ioctl NS_GET_USERNS", hints={errno.EPERM: _OUTSIDE_THE_TREE})
teach("ioctl", hints={
    errno.ENOTTY: "the file is not a namespace: open /proc/PID/ns/TYPE, or a bind mount of it.",
})


class Namespace:
    """One namespace, identified by the (device, inode) of its nsfs file."""

    def __init__(self, nstype: NamespaceType, dev: int, inode: int, path: str = "",
                 route: tuple[int, ...] = ()) -> None:
        self.type = nstype
        self.dev = dev
        self.inode = inode
        self.path = path  # the file we found it by
        self.route = route  # ioctl requests that lead from PATH's namespace to this one

    # Finding a namespace ------------------------------------------------

    @classmethod
    def of(cls, pid: int | str = "self", nstype: str = "uts") -> Namespace:
        """The namespace of type NSTYPE that process PID is in.

        NSTYPE may also be "pid_for_children" or "time_for_children".
        """
        link = nstype if nstype.endswith("_for_children") else lookup(nstype).name
        path = f"/proc/{pid}/ns/{link}"
        try:
            st = os.stat(path)  # stat follows the link to the nsfs inode
        except OSError as e:
            raise proc_file_error(pid, path, e, "stat") from None
        return cls(lookup(link.removesuffix("_for_children")), st.st_dev, st.st_ino, path)

    @classmethod
    def from_fd(cls, fd: int, path: str = "") -> Namespace:
        """The namespace that the open file descriptor FD refers to."""
        st = os.fstat(fd)
        return cls(BY_FLAG[ioctl_ns(fd, NS_GET_NSTYPE)], st.st_dev, st.st_ino, path)

    @classmethod
    def from_path(cls, path: str) -> Namespace:
        """The namespace behind PATH: a /proc/PID/ns link or a bind mount of one."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return cls.from_fd(fd, path)
        finally:
            os.close(fd)

    @classmethod
    def all_of(cls, pid: int | str = "self") -> dict[str, Namespace]:
        """Every namespace of process PID, by link name (as in ls /proc/PID/ns).

        A ``pid_for_children`` that the kernel does not show yet (no init in
        the new PID namespace) is left out.
        """
        found = {}
        for name in sorted(os.listdir(f"/proc/{pid}/ns")):
            try:
                found[name] = cls.of(pid, name)
            except NamespaceError as e:
                if not (e.errno == errno.ENOENT and name == "pid_for_children"):
                    raise
        return found

    # Identity -----------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Namespace):
            return NotImplemented
        return (self.dev, self.inode) == (other.dev, other.inode)

    def __hash__(self) -> int:
        return hash((self.dev, self.inode))

    def __str__(self) -> str:  # the text of the /proc/PID/ns link
        return f"{self.type.name}:[{self.inode}]"

    def __repr__(self) -> str:
        return f"<Namespace {self}>"

    # Asking the kernel about it: ioctl_ns(2) ------------------------------

    def open(self) -> int:
        """Open the namespace; the caller closes the fd (or use ``with ns.opened()``)."""
        if not self.path:
            raise ValueError(f"{self} has no file to open it by")
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        for request in self.route:  # follow the ioctls that found it
            try:
                fd_next = ioctl_ns(fd, request)
            finally:
                os.close(fd)
            fd = fd_next
        if Namespace.from_fd(fd) != self:
            os.close(fd)
            raise NamespaceError(errno.ESRCH, f"open {self.path}",
                                 "the process has changed namespaces or exited, and "
                                 "its PID may now belong to another process")
        return fd

    def opened(self) -> _OpenNamespace:
        """``with ns.opened() as fd:`` - an fd that holds the namespace alive."""
        return _OpenNamespace(self)

    def _related(self, request: int) -> Namespace:
        with self.opened() as fd:
            other = ioctl_ns(fd, request)
        try:
            found = Namespace.from_fd(other)
        finally:
            os.close(other)
        found.path, found.route = self.path, (*self.route, request)
        return found

    def parent(self) -> Namespace:
        """NS_GET_PARENT: the parent of a PID or user namespace.

        Fails with EPERM when the parent lies outside the caller's own
        namespace tree: the kernel will not show a process what is above it.
        """
        return self._related(NS_GET_PARENT)

    def owner(self) -> Namespace:
        """NS_GET_USERNS: the user namespace that owns this namespace."""
        return self._related(NS_GET_USERNS)

    def owner_uid(self) -> int:
        """NS_GET_OWNER_UID: the uid (in the caller's user namespace) that created this user namespace."""
        if self.type.name != "user":
            raise ValueError("NS_GET_OWNER_UID works on user namespaces only")
        with self.opened() as fd:
            return owner_uid_of(fd)

    def ancestors(self) -> list[Namespace]:
        """This namespace's parents, nearest first, as far as the caller may see.

        The walk ends with EPERM at the initial namespace, or at the caller's
        own namespace when this one is the caller's or below it.
        """
        chain, ns = [], self
        while True:
            try:
                ns = ns.parent()
            except OSError as e:
                if e.errno == errno.EPERM:
                    return chain
                raise
            chain.append(ns)


class _OpenNamespace:
    def __init__(self, ns: Namespace) -> None:
        self.ns, self.fd = ns, -1

    def __enter__(self) -> int:
        self.fd = self.ns.open()
        return self.fd

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def proc_file_error(pid: int | str, path: str, e: OSError, call: str = "open") -> NamespaceError:
    """The teaching error for CALL (open, stat) failing on PATH, a file of /proc/PID (ns/TYPE, root)."""
    hint = ""
    if e.errno == errno.ENOENT and not os.path.exists(f"/proc/{pid}"):
        hint = f"there is no process {pid} (it may have exited)"
    elif e.errno == errno.ENOENT and path.endswith("/pid_for_children"):
        hint = ("after unshare(CLONE_NEWPID) the new PID namespace has no init until the "
                "first fork, and until then the kernel shows no pid_for_children")
    elif e.errno == errno.EACCES:
        hint = ("another process's /proc/PID/ns links and /proc/PID/root need ptrace access "
                "to it (ptrace(2), PTRACE_MODE_READ): the same uid, or CAP_SYS_PTRACE; a process "
                "that made itself not dumpable, or a security module, refuses even root")
    return NamespaceError(e.errno, f"{call} {path}", hint)


def ioctl_ns(fd: int, request: int) -> int:
    """ioctl(FD, REQUEST) for a request without argument: a new fd, or the type (NS_GET_NSTYPE)."""
    try:
        return fcntl.ioctl(fd, request)
    except OSError as e:
        raise error_for("ioctl", e.errno, detail=IOCTL_NAMES[request]) from None


def owner_uid_of(fd: int) -> int:
    """NS_GET_OWNER_UID on FD, a user namespace: the uid (as we see it) of its creator."""
    buf = bytearray(4)  # a uid_t the kernel writes into
    try:
        fcntl.ioctl(fd, NS_GET_OWNER_UID, buf, True)
    except OSError as e:
        raise error_for("ioctl", e.errno, detail="NS_GET_OWNER_UID") from None
    return struct.unpack("I", buf)[0]


def same_namespace(pid_a: int | str, pid_b: int | str, nstype: str) -> bool:
    """Are processes PID_A and PID_B in the same namespace of type NSTYPE?"""
    return Namespace.of(pid_a, nstype) == Namespace.of(pid_b, nstype)
