"""Every namespace on the system, as lsns(8) lists them.

There is no system call that lists namespaces.  A namespace is known by
what refers to it, and lsns(8) finds them the one way there is: it walks
``/proc``, opens every process's ``/proc/PID/ns/TYPE`` files and groups the
processes by the inode those files lead to.  This module does the same in
one pass and keeps the result in a dict keyed by inode::

    NS          TYPE  NPROCS  PID  USER  COMMAND
    4026531838  uts       85    2  root  kthreadd
    4026532179  uts        3  901  root  sleep 60

The columns are lsns's: NS is the inode, NPROCS the number of processes in
the namespace, PID the *lowest* PID among them, and PPID, UID, USER and
COMMAND describe that one process.  USER is the owner of ``/proc/PID`` and
COMMAND its ``/proc/PID/cmdline`` with the NULs turned into spaces (or its
``comm`` if the command line is empty, as for a kernel thread).  ioctl_ns(2)
adds the parent of a PID or user namespace (PNS, NS_GET_PARENT) and the user
namespace that owns each namespace (ONS, NS_GET_USERNS); 0 means "none", or
"above us", where the kernel answers EPERM.

What lsns 2.38.1 does, and this module does too:

* A process whose ``ns`` files we may not open is skipped: another user's
  process (opening needs ptrace access), or PID 1 of this machine's sandbox.
* A namespace that no process is in is not listed: one held only by a bind
  mount or an open file descriptor is invisible here (labkit.persist finds
  those).  The one exception is in the parent and owner trees: a namespace
  between two listed ones that has no process of its own ("ghost") is
  fetched with ioctl_ns(2) from its child and shown without a PID.
* ``--tree process`` (lsns's default view) hangs each namespace under the
  latest line whose process is the parent of this namespace's process.

See lsns(8), namespaces(7) "The /proc/[pid]/ns/ directory", ioctl_ns(2),
proc(5).  NS_GET_PARENT and NS_GET_USERNS came in Linux 4.9, NS_GET_NSTYPE
and NS_GET_OWNER_UID in 4.11.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from .namespace import NS_GET_NSTYPE, NS_GET_PARENT, NS_GET_USERNS, ioctl_ns, owner_uid_of
from .nstypes import BY_FLAG, TYPES, lookup
from .procfs import stat_fields

HIERARCHICAL = ("pid", "user")  # the types that have a parent (NS_GET_PARENT)
HEADERS = ("NS", "TYPE", "NPROCS", "PID", "USER", "COMMAND")  # lsns's default columns


@dataclass
class NamespaceInfo:
    """One line of lsns: a namespace and the lowest-numbered process in it."""

    ns: int  # the inode number in nsfs: the namespace's identity
    type: str
    nprocs: int = 0
    pid: int | None = None  # the lowest PID in it; None for a namespace without processes
    ppid: int | None = None
    uid: int = 0
    user: str = "root"
    command: str | None = None
    pns: int = 0  # parent namespace (pid and user only); 0: none, or not visible to us
    ons: int = 0  # owner user namespace; 0: not visible to us
    children: list[NamespaceInfo] = field(default_factory=list, repr=False)  # filled by tree()

    def as_json(self) -> dict:
        """The keys and value types of ``lsns --json``, then lsns's PPID, UID, PNS, ONS columns."""
        out = {"ns": self.ns, "type": self.type, "nprocs": self.nprocs, "pid": self.pid,
               "user": self.user, "command": self.command,
               "ppid": self.ppid, "uid": self.uid, "pns": self.pns, "ons": self.ons}
        if self.children:
            out["children"] = [c.as_json() for c in self.children]
        return out


# One pass over /proc ------------------------------------------------------

def list_namespaces(types: Iterable[str] | None = None, ghosts: bool = False) -> dict[int, NamespaceInfo]:
    """Every namespace that a process we can see is in, by inode, in inode order.

    TYPES limits the listing to those types (names as in namespaces(7));
    GHOSTS adds the parents and owners that have no process of their own.
    """
    wanted = [lookup(t).name for t in types] if types else [t.name for t in TYPES]
    found: dict[int, NamespaceInfo] = {}
    for pid in _pids():  # in ascending order, so the first process we meet is the lowest PID
        proc = _ppid_and_uid(pid)
        if proc is None:
            continue  # it ended while we were looking
        for nstype in wanted:
            ids = _namespace_ids(f"/proc/{pid}/ns/{nstype}", nstype)
            if ids is None:
                continue  # EACCES (not ours to look at) or ENOENT (a zombie's mnt, uts ...)
            inode, parent, owner = ids
            if inode not in found:
                found[inode] = NamespaceInfo(inode, nstype, pid=pid, ppid=proc[0], uid=proc[1],
                                             pns=parent, ons=owner)
            found[inode].nprocs += 1
    for info in found.values():
        info.user = user_name(info.uid)
        info.command = command_of(info.pid)
    if ghosts:
        _add_ghosts(found, wanted)
    return dict(sorted(found.items()))


def _pids() -> list[int]:
    """The processes (thread group leaders) in /proc, lowest first."""
    return sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit())


def _ppid_and_uid(pid: int) -> tuple[int, int] | None:
    try:
        uid = os.stat(f"/proc/{pid}").st_uid  # the owner of /proc/PID, as lsns reads it
        return int(stat_fields(pid)[1]), uid
    except OSError:
        return None


def _namespace_ids(path: str, nstype: str) -> tuple[int, int, int] | None:
    """(inode, parent inode, owner inode) of the namespace file at PATH, or None if we may not open it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _ids(fd, nstype)
    finally:
        os.close(fd)


def _ids(fd: int, nstype: str) -> tuple[int, int, int]:
    parent = _related_inode(fd, NS_GET_PARENT) if nstype in HIERARCHICAL else 0
    return os.fstat(fd).st_ino, parent, _related_inode(fd, NS_GET_USERNS)


def _related_inode(fd: int, request: int) -> int:
    """The inode of the namespace an ioctl_ns(2) REQUEST returns, or 0 as lsns prints it."""
    try:
        other = ioctl_ns(fd, request)  # a new file descriptor for the related namespace
    except OSError:  # EPERM: it lies above our own user or PID namespace
        return 0
    try:
        return os.fstat(other).st_ino
    finally:
        os.close(other)


_user_names: dict[int, str] = {}


def user_name(uid: int) -> str:
    """The login name of UID, or the number itself if it has none (as lsns prints it)."""
    if uid not in _user_names:
        try:
            _user_names[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _user_names[uid] = str(uid)
    return _user_names[uid]


def command_of(pid: int | None) -> str | None:
    """The command line of PID as lsns shows it: arguments joined by spaces, else its comm."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(8192)  # lsns reads one BUFSIZ
        if not raw:  # a kernel thread, or a zombie
            with open(f"/proc/{pid}/comm", "rb") as f:
                raw = f.read(8192)
    except OSError:
        return None
    # lsns turns every NUL into a space and cuts the last byte (the final NUL, or comm's newline).
    return raw.replace(b"\0", b" ")[:-1].decode(errors="replace") if raw else None


# Namespaces without a process of their own -------------------------------

def _add_ghosts(found: dict[int, NamespaceInfo], wanted: list[str]) -> None:
    """Add the parents and owners of listed namespaces that no process is in.

    The kernel will hand them over through a child: NS_GET_PARENT or
    NS_GET_USERNS on the child's file gives a descriptor for them.
    """
    for info in list(found.values()):
        if info.pid is None:
            continue
        try:
            fd = os.open(f"/proc/{info.pid}/ns/{info.type}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_ino == info.ns:  # still the same process in the same namespace
                _add_missing_relatives(found, fd, info, wanted)
        finally:
            os.close(fd)


def _add_missing_relatives(found: dict[int, NamespaceInfo], fd: int, info: NamespaceInfo,
                           wanted: list[str]) -> None:
    for inode, request in ((info.pns, NS_GET_PARENT), (info.ons, NS_GET_USERNS)):
        if not inode or inode in found:
            continue
        try:
            other = ioctl_ns(fd, request)
        except OSError:
            continue
        try:
            nstype = BY_FLAG[ioctl_ns(other, NS_GET_NSTYPE)].name
            if nstype not in wanted:
                continue
            ino, parent, owner = _ids(other, nstype)
            uid = _owner_uid(other)  # no process to ask, so the uid that created it
            found[ino] = NamespaceInfo(ino, nstype, uid=uid, user=user_name(uid), pns=parent, ons=owner)
            _add_missing_relatives(found, other, found[ino], wanted)
        finally:
            os.close(other)


def _owner_uid(fd: int) -> int:
    """NS_GET_OWNER_UID: the uid that created a user namespace (0 for other types, as in lsns)."""
    try:
        return owner_uid_of(fd)
    except OSError:
        return 0


# Trees ---------------------------------------------------------------------

def tree(found: dict[int, NamespaceInfo], by: str) -> list[NamespaceInfo]:
    """Arrange FOUND as a tree and return its roots; each node's children are in .children.

    BY is "parent" (a PID or user namespace under its parent), "owner" (every
    namespace under the user namespace that owns it) or "process" (lsns's
    default view: under the latest line whose process is the parent of this
    namespace's process).
    """
    roots: list[NamespaceInfo] = []
    latest_line_of: dict[int, NamespaceInfo] = {}  # pid -> the last namespace it stood for
    for info in found.values():
        info.children = []
    for info in found.values():  # a parent may come after its children: inode numbers are reused
        if by == "parent":
            above = found.get(info.pns)
        elif by == "owner":
            above = found.get(info.ons)
        elif by == "process":
            above = latest_line_of.get(info.ppid) if info.ppid else None
            if info.pid is not None:
                latest_line_of[info.pid] = info
        else:
            raise ValueError(f"unknown tree {by!r}: parent, owner or process")
        (above.children if above is not None else roots).append(info)
    return roots


# The labkit ls command -----------------------------------------------------

def ls_command(args: argparse.Namespace) -> int:
    """``labkit ls [--json] [--tree parent|owner|process] [-t TYPE]...``"""
    types = dict.fromkeys(lookup(t).name for t in args.types) if args.types else None
    found = list_namespaces(types, ghosts=args.tree in ("parent", "owner"))
    lines = tree(found, args.tree) if args.tree else list(found.values())
    if args.json:
        print(json.dumps({"namespaces": [info.as_json() for info in lines]}, indent=3))
    elif args.tree:
        print_tree(lines, args.tree)
    else:
        from .output import table
        table(HEADERS, [_cells(info) for info in lines])
    return 0


def _cells(info: NamespaceInfo, prefix: str = "") -> list[str]:
    return [prefix + str(info.ns), info.type, str(info.nprocs),
            "" if info.pid is None else str(info.pid), info.user, _printable(info.command or "")]


def _printable(text: str) -> str:
    r"""A command line on one line: a newline or tab in it is written \x0a, \x09 (as lsns does)."""
    return "".join(c if c.isprintable() else "".join(f"\\x{b:02x}" for b in c.encode()) for c in text)


def print_tree(roots: list[NamespaceInfo], by: str, stream=None) -> None:
    """A rich Tree on a terminal; in a pipe, lsns's table with the tree drawn in the NS column."""
    from .output import is_terminal, table

    stream = stream or sys.stdout
    if is_terminal(stream):
        from rich.console import Console
        from rich.markup import escape
        from rich.tree import Tree

        def add(branch: Tree, info: NamespaceInfo) -> None:
            plural = "" if info.nprocs == 1 else "es"
            pid = "no process" if info.pid is None else f"{info.nprocs} process{plural}, pid {info.pid}"
            node = branch.add(f"[bold]{info.type}[/]:[{info.ns}]  {pid}  {info.user}  "
                              f"[dim]{escape(_printable(info.command or ''))}[/]")
            for child in info.children:
                add(node, child)

        top = Tree(f"namespaces by {by}")
        for info in roots:
            add(top, info)
        Console(file=stream).print(top)
        return
    rows: list[list[str]] = []

    def walk(info: NamespaceInfo, lead: str, branch: str) -> None:
        rows.append(_cells(info, lead + branch))
        below = lead + ("" if not branch else "  " if branch == "└─" else "│ ")
        for i, child in enumerate(info.children):
            walk(child, below, "└─" if i == len(info.children) - 1 else "├─")

    for info in roots:
        walk(info, "", "")
    table(HEADERS, rows, stream=stream)
