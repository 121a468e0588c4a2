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

What lsns does, and this module does too:

* A process whose ``ns`` files we may not open is skipped: another user's
  process (opening needs ptrace access), or PID 1 of this machine's sandbox.
* A namespace that no process is in is still found when something else
  holds it (util-linux 2.40; 2.38 did not list these): a bind mount of its
  file (``ip netns add``, ``unshare --uts=FILE``: the nsfs mounts of
  /proc/self/mountinfo, the NSFS column), an open file descriptor
  (``/proc/PID/fd/N`` on nsfs), or, for a network namespace, a socket made
  in it (pidfd_getfd(2), then ioctl SIOCGSKNS).  They show NPROCS 0 and no PID.
* In the parent and owner trees, a namespace between two listed ones that
  has no process of its own ("ghost") is fetched with ioctl_ns(2) from its
  child and shown without a PID.
* ``--tree process`` (lsns's default view) hangs each namespace under the
  latest line whose process is the parent of this namespace's process.
* NETNSID is the id a network namespace has *in ours* (RTM_GETNSID, the
  number ``ip link`` shows as link-netnsid), or "unassigned".

See lsns(8), namespaces(7) "The /proc/[pid]/ns/ directory", ioctl_ns(2),
proc(5).  NS_GET_PARENT and NS_GET_USERNS came in Linux 4.9, NS_GET_NSTYPE
and NS_GET_OWNER_UID in 4.11.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pwd
import re
import stat
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
    members: list[tuple[int, int, int]] = field(default_factory=list, repr=False)  # (pid, ppid, uid)
    held_by: str = ""  # a file that leads to it: /proc/PID/ns/TYPE, a bind mount, /proc/PID/fd/N
    ghost: bool = False  # found as the parent or owner of another (ioctl_ns), of any type
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

def list_namespaces(types: Iterable[str] | None = None, ghosts: bool = False,
                    held: bool = True) -> dict[int, NamespaceInfo]:
    """Every namespace that a process we can see is in, by inode, in inode order.

    TYPES limits the listing to those types (names as in namespaces(7));
    GHOSTS adds the parents and owners that have no process of their own;
    HELD adds the namespaces that only a bind mount or an open file holds.
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
                                             pns=parent, ons=owner, held_by=f"/proc/{pid}/ns/{nstype}")
            found[inode].nprocs += 1
            found[inode].members.append((pid, *proc))
    for info in found.values():
        info.user = user_name(info.uid)
        info.command = command_of(info.pid)
    if held:
        files, sockets = _open_files()
        for path in [*nsfs_mounts(), *files]:
            _add_held(found, path, wanted)
        if "net" in wanted:
            for pid, fd in sockets:
                _add_socket_netns(found, pid, fd)
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

def nsfs_mounts(mountinfo: str = "/proc/self/mountinfo") -> dict[str, str]:
    """The bind-mounted namespace files we see: {mount point: "net:[4026532...]"}.

    In mountinfo an nsfs mount's root (field 4) is the text of the
    /proc/PID/ns link it came from; mount points escape spaces as \\040.
    """
    found = {}
    with open(mountinfo, errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-", 6) + 1] == "nsfs":
                found[_unescape(fields[4])] = fields[3]
    return found


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), text)


def _open_files() -> tuple[list[str], list[tuple[int, int]]]:
    """Open namespace files and sockets, in every process we may look into.

    Returns ([/proc/PID/fd/N of each namespace file], [(PID, N) of each socket]).
    A namespace file is known by its file system, nsfs (the st_dev of any
    /proc/PID/ns file), not by the link's text: one opened through a bind
    mount reads as that path, or as "/" once the mount is gone.
    """
    nsfs = os.stat("/proc/self/ns/user").st_dev
    files, sockets = [], []
    for pid in _pids():
        try:
            entries = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in entries:
            path = f"/proc/{pid}/fd/{fd}"
            try:
                st = os.stat(path)
            except OSError:
                continue
            if st.st_dev == nsfs:
                files.append(path)
            elif stat.S_ISSOCK(st.st_mode):
                sockets.append((pid, int(fd)))
    return files, sockets


SIOCGSKNS = 0x894C  # <linux/sockios.h>: open the network namespace of a socket (Linux 4.9)
SYS_pidfd_getfd = 438  # pidfd_getfd(2), Linux 5.6: the same number on every architecture


def socket_netns(pid: int, fd: int) -> int:
    """A new file descriptor for the network namespace of socket FD of process PID.

    A socket keeps the network namespace it was made in, even when no
    process is left in it.  pidfd_getfd(2) copies the socket into our
    process (it needs ptrace access to PID); ioctl(SIOCGSKNS) opens its
    namespace.
    """
    from .syscalls import call_libc

    pidfd = os.pidfd_open(pid)
    try:
        sock = call_libc("syscall", SYS_pidfd_getfd, pidfd, fd, 0, call="pidfd_getfd")
    finally:
        os.close(pidfd)
    try:
        return fcntl.ioctl(sock, SIOCGSKNS)
    finally:
        os.close(sock)


def _add_socket_netns(found: dict[int, NamespaceInfo], pid: int, fd: int) -> None:
    """Add the network namespace that socket FD of PID holds, unless it is known."""
    try:
        netns = socket_netns(pid, fd)
    except OSError:
        return  # gone, not ours to copy, or not a kind of socket that knows its namespace
    try:
        inode = os.fstat(netns).st_ino
        if inode not in found:
            _, parent, owner = _ids(netns, "net")
            uid = _creator_uid(netns, "net")
            found[inode] = NamespaceInfo(inode, "net", uid=uid, user=user_name(uid), pns=parent,
                                         ons=owner, held_by=f"/proc/{pid}/fd/{fd} (a socket)")
    finally:
        os.close(netns)


def _add_held(found: dict[int, NamespaceInfo], path: str, wanted: list[str]) -> None:
    """Add the namespace behind PATH (a bind mount or an open file), unless it is known."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        inode = os.fstat(fd).st_ino
        if inode in found:
            return
        try:
            nstype = BY_FLAG[ioctl_ns(fd, NS_GET_NSTYPE)].name
        except (OSError, KeyError):
            return  # not a namespace after all
        if nstype not in wanted:
            return
        _, parent, owner = _ids(fd, nstype)
        uid = _creator_uid(fd, nstype)
        found[inode] = NamespaceInfo(inode, nstype, uid=uid, user=user_name(uid), pns=parent,
                                     ons=owner, held_by=path)
    finally:
        os.close(fd)


def _creator_uid(fd: int, nstype: str) -> int:
    """Who made the user namespace that owns FD's namespace (FD's own, for a user namespace)."""
    if nstype == "user":
        return _owner_uid(fd)
    try:
        owner = ioctl_ns(fd, NS_GET_USERNS)
    except OSError:
        return 0
    try:
        return _owner_uid(owner)
    finally:
        os.close(owner)


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
            nstype = BY_FLAG[ioctl_ns(other, NS_GET_NSTYPE)].name  # of any type, as in lsns
            ino, parent, owner = _ids(other, nstype)
            uid = _owner_uid(other)  # no process to ask, so the uid that created it
            found[ino] = NamespaceInfo(ino, nstype, uid=uid, user=user_name(uid), pns=parent, ons=owner)
            found[ino].held_by, found[ino].ghost = f"{info.held_by} via ioctl_ns", True
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

def tree(found: dict[int, NamespaceInfo], by: str, only: Iterable[int] | None = None) -> list[NamespaceInfo]:
    """Arrange FOUND as a tree and return its roots; each node's children are in .children.

    BY is "parent" (a PID or user namespace under its parent), "owner" (every
    namespace under the user namespace that owns it) or "process" (lsns's
    default view: under the latest line whose process is the parent of this
    namespace's process).  ONLY: the inodes to show (all, by default); in the
    parent and owner trees their ancestors come along.

    As lsns does, a namespace's parent (or owner) gets its line first, even
    if its inode is larger; in the parent tree a namespace without a parent
    brings its owner along, on a line of its own: the user namespace that
    owns the first PID namespace, say.
    """
    for info in found.values():
        info.children = []
    lines = [found[i] for i in (found if only is None else only)]
    if by == "process":
        roots: list[NamespaceInfo] = []
        latest_line_of: dict[int, NamespaceInfo] = {}  # pid -> the last namespace it stood for
        for info in lines:
            above = latest_line_of.get(info.ppid) if info.ppid else None
            if info.pid is not None:
                latest_line_of[info.pid] = info
            (above.children if above is not None else roots).append(info)
        return roots
    if by not in ("parent", "owner"):
        raise ValueError(f"unknown tree {by!r}: parent, owner or process")
    roots, shown = [], set()

    def show(info: NamespaceInfo) -> None:
        above = found.get(info.ons if by == "owner" else info.pns)
        before = above if above is not None or by == "owner" else found.get(info.ons)
        if before is not None and before.ns not in shown:
            show(before)
        shown.add(info.ns)
        (above.children if above is not None and above.ns in shown else roots).append(info)

    for info in lines:
        if info.ns not in shown:
            show(info)
    return roots


# The labkit ls command: lsns(8)'s options, columns and output ---------------

@dataclass(frozen=True)
class Column:
    """One of lsns's columns: right-aligned or not, its JSON type, its --help, and its
    width hint (libsmartcols widens a narrower column to it, if the header is narrower too)."""

    right: bool
    json: str  # "number" or "string"
    help: str
    hint: int = 0


# lsns's columns, in lsns's order (that of --output-all).
COLUMNS = {
    "NS": Column(True, "number", "namespace identifier (inode number)", 10),
    "TYPE": Column(False, "string", "kind of namespace", 5),
    "PATH": Column(False, "string", "path to the namespace"),
    "NPROCS": Column(True, "number", "number of processes in the namespace", 5),
    "PID": Column(True, "number", "lowest PID in the namespace", 5),
    "PPID": Column(True, "number", "PPID of the PID", 5),
    "COMMAND": Column(False, "string", "command line of the PID"),
    "UID": Column(True, "number", "UID of the PID"),
    "USER": Column(False, "string", "username of the PID"),
    "NETNSID": Column(True, "string", "namespace ID as used by network subsystem"),
    "NSFS": Column(False, "string", "nsfs mountpoint (usually used network subsystem)"),
    "PNS": Column(True, "number", "parent namespace identifier (inode number)", 10),
    "ONS": Column(True, "number", "owner namespace identifier (inode number)", 10),
}
HEADERS = ("NS", "TYPE", "NPROCS", "PID", "USER", "COMMAND")  # lsns's default columns
NAMESPACE_HEADERS = ("PID", "PPID", "USER", "COMMAND")  # lsns NSID: the processes in it


def _options():
    from .options import NONE, OPTIONAL, REQUIRED, Option

    return (  # lsns(8)'s options, and where each one looks
        Option("J", "json", NONE, "", "use JSON output format"),
        Option("l", "list", NONE, "", "use list format output"),
        Option("n", "noheadings", NONE, "", "don't print headings"),
        Option("o", "output", REQUIRED, "<list>", "define which output columns to use"),
        Option("", "output-all", NONE, "", "output all columns"),
        Option("p", "task", REQUIRED, "<pid>", "print process namespaces", "/proc/PID/ns/*"),
        Option("r", "raw", NONE, "", "use the raw output format"),
        Option("u", "notruncate", NONE, "", "don't truncate text in columns"),
        Option("W", "nowrap", NONE, "", "don't use multi-line representation"),
        Option("t", "type", REQUIRED, "<name>",
               "namespace type (mnt, net, ipc, user, pid, uts, cgroup, time)", "/proc/PID/ns/TYPE"),
        Option("T", "tree", OPTIONAL, "<rel>", "use tree format (parent, owner, or process)",
               "ioctl_ns(2): NS_GET_PARENT, NS_GET_USERNS"),
        Option("h", "help", NONE, "", "display this help"),
    )


DIFFERENCES = """\
Available output columns:
""" + "\n".join(f"{name:>12}  {c.help}" for name, c in COLUMNS.items()) + """

Where labkit differs from lsns(8) 2.38, on purpose:
 * namespaces held only by a bind mount, an open file or a socket are listed, NPROCS 0
   (as util-linux 2.40 does);
 * on a terminal the table is drawn by rich; in a pipe it is lsns's text;
 * -t also takes unshare(1)'s spellings (mount, network);
 * not supported: -Q/--filter, -P/--persistent, -H/--list-columns (util-linux 2.40+),
   -V/--version.

For more details see lsns(8)."""


@dataclass
class Listing:
    """What the command line asked for."""

    types: list[str] | None = None
    columns: list[str] = field(default_factory=list)
    tree: str | None = None  # "process", "parent", "owner", or None for a flat list
    json: bool = False
    raw: bool = False
    headings: bool = True
    nowrap: bool = False
    task: int | None = None
    nsid: int | None = None


def read_command_line(argv: list[str]) -> Listing | None:
    """The Listing of ARGV (None after --help), with lsns's defaults and errors."""
    from .options import UsageError, help_text, parse

    found, rest = parse(argv, _options(), permute=True)
    names = [name for name, _ in found]
    if "help" in names:
        print(help_text("labkit ls [options] [<namespace>]",
                        "List system namespaces, as lsns(8) does: same options, columns and output.",
                        (("Options", _options()),), DIFFERENCES), end="")
        return None
    for a, b in (("json", "raw"), ("list", "tree")):
        if a in names and b in names:
            raise UsageError(f"mutually exclusive arguments: --{a} --{b}")
    ls = Listing(json="json" in names, raw="raw" in names, headings="noheadings" not in names,
                 nowrap="nowrap" in names or "raw" in names)
    output = None
    for name, value in found:
        if name == "type":
            ls.types = [*(ls.types or []), lookup(value).name]
        elif name == "task":
            ls.task = _number(value, "invalid PID argument")
        elif name == "tree":
            value = (value or "owner").removeprefix("=")
            if value not in ("parent", "owner", "process"):
                raise ValueError(f"unknown tree type: {value}")
            ls.tree = value
        elif name == "output":
            output = value
        elif name == "output-all":
            ls.columns = list(COLUMNS)
    if rest:
        if ls.task is not None:
            raise ValueError("--task is mutually exclusive with <namespace>")
        ls.nsid = _number(rest[0], "invalid namespace argument")
        if ls.tree is None and "list" not in names:
            ls.tree = "process"
        ls.columns = ls.columns or list(NAMESPACE_HEADERS)
    if not ls.columns:
        ls.columns = list(HEADERS)
        if ls.types and "net" in ls.types:
            ls.columns[5:5] = ["NETNSID", "NSFS"]
        if ls.tree is None and "list" not in names:
            ls.tree = "process"  # lsns's default view
    if output is not None:
        wanted = [c.strip().upper() for c in output.removeprefix("+").split(",") if c.strip()]
        unknown = [c for c in wanted if c not in COLUMNS]
        if unknown:
            raise ValueError(f"unknown column: {unknown[0]}")
        ls.columns = (ls.columns if output.startswith("+") else []) + wanted
    return ls


def _number(text: str, message: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{message}: '{text}'")
    return int(text)


def main(argv: list[str]) -> int:
    """``labkit ls [lsns options] [NSID]``"""
    ls = read_command_line(argv)
    if ls is None:
        return 0
    types = dict.fromkeys(ls.types) if ls.types else None
    found = list_namespaces(types, ghosts=ls.tree in ("parent", "owner"))
    if ls.nsid is not None:
        if ls.nsid not in found:
            raise ValueError(f"not found namespace: {ls.nsid}")
        lines = processes_of(found[ls.nsid], ls.tree == "process")
    else:
        shown = [i for i, n in found.items() if (ls.task is None or any(pid == ls.task for pid, _, _ in
                                                                         n.members))
                 and (not types or n.type in types or n.ghost)]
        lines = tree(found, ls.tree, shown) if ls.tree else [found[i] for i in shown]
    print_listing(lines, ls)
    return 0


def ls_command(args: argparse.Namespace) -> int:
    """The labkit ls of before (argparse's Namespace with json, tree, types): kept for callers."""
    argv = (["--json"] if args.json else []) + (["--tree", args.tree] if args.tree else [])
    return main(argv + [x for t in (args.types or []) for x in ("-t", t)])


def processes_of(info: NamespaceInfo, as_tree: bool) -> list[NamespaceInfo]:
    """One line per process in INFO's namespace (lsns NSID); a child under its parent
    when both are in the namespace."""
    lines = {}
    for pid, ppid, uid in info.members:
        lines[pid] = NamespaceInfo(info.ns, info.type, info.nprocs, pid, ppid, uid, user_name(uid),
                                   command_of(pid), info.pns, info.ons, held_by=info.held_by)
    if not as_tree:
        return list(lines.values())
    roots = []
    for line in lines.values():
        above = lines.get(line.ppid)
        (above.children if above is not None else roots).append(line)
    return roots


# Output ----------------------------------------------------------------------

def cell(info: NamespaceInfo, column: str, nsfs: dict[str, list[str]], separator: str) -> str | None:
    """The text lsns shows for INFO in COLUMN, or None for an empty cell."""
    has_process = info.pid is not None
    if column == "NS":
        return str(info.ns)
    if column == "TYPE":
        return info.type
    if column == "PATH":
        return f"/proc/{info.pid}/ns/{info.type}" if has_process else None
    if column == "NPROCS":
        return str(info.nprocs)
    if column in ("PID", "PPID"):
        return str(info.pid if column == "PID" else info.ppid) if has_process else None
    if column == "COMMAND":
        return info.command
    if column == "UID":
        return str(info.uid)
    if column == "USER":
        return info.user
    if column == "NETNSID":
        return netnsid_text(info) if info.type == "net" else None
    if column == "NSFS":
        return separator.join(nsfs.get(f"{info.type}:[{info.ns}]", [])) or None
    if column == "PNS":
        return str(info.pns)
    return str(info.ons)  # ONS


def netnsid_text(info: NamespaceInfo) -> str | None:
    """RTM_GETNSID for the network namespace: its id in ours, "unassigned", or None."""
    try:
        fd = os.open(info.held_by, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        from pyroute2 import IPRoute  # here: it takes a tenth of a second to load

        with IPRoute() as ipr:
            answer = ipr.get_netnsid(fd=fd)
    except Exception:  # noqa: BLE001 - lsns leaves the cell empty when netlink fails
        return None
    finally:
        os.close(fd)
    nsid = answer and answer.get("nsid")
    if nsid is None:
        return None
    nsid = nsid - 2 ** 32 if nsid >= 2 ** 31 else nsid  # NETNSA_NSID is an s32
    return str(nsid) if nsid >= 0 else "unassigned" if nsid == -1 else None


def print_listing(lines: list[NamespaceInfo], ls: Listing, stream=None) -> None:
    """LINES (and their children) as lsns prints them: JSON, raw, or aligned columns."""
    from .output import is_terminal

    stream = stream or sys.stdout
    mounts: dict[str, list[str]] = {}
    if "NSFS" in ls.columns:
        for point, root in nsfs_mounts().items():
            mounts.setdefault(root, []).append(point)
    separator = "," if ls.nowrap else "\n"
    if ls.json:
        print(json.dumps({"namespaces": [_json(info, ls.columns, mounts, separator) for info in lines]},
                         indent=3, ensure_ascii=False).replace("},\n      {", "},{"), file=stream)
        return
    tree_column = None
    if ls.tree == "process" and "COMMAND" in ls.columns:
        tree_column = "COMMAND"
    elif ls.tree in ("parent", "owner") and "NS" in ls.columns:
        tree_column = "NS"
    rows: list[list[str | None]] = []

    def walk(info: NamespaceInfo, lead: str, branch: str) -> None:
        row = [cell(info, c, mounts, separator) for c in ls.columns]
        if tree_column and not ls.raw:
            i = ls.columns.index(tree_column)
            row[i] = lead + branch + (row[i] or "")
        rows.append(row)
        below = lead + ("" if not branch else "  " if branch == "└─" else "│ ")
        for k, child in enumerate(info.children if ls.tree else []):
            walk(child, below, "└─" if k == len(info.children) - 1 else "├─")

    for info in lines:
        walk(info, "", "")
    if ls.raw:
        if ls.headings:
            print(" ".join(ls.columns), file=stream)
        for row in rows:
            print(" ".join(_raw(c or "") for c in row), file=stream)
    elif is_terminal(stream):
        from .output import table
        table(ls.columns if ls.headings else [""] * len(ls.columns),
              [[_printable(c or "", keep="\n" if name == "NSFS" else "") for c, name in
                zip(row, ls.columns, strict=True)] for row in rows], stream=stream)
    else:
        print_columns(ls.columns, rows, tree_column, ls.headings, stream)


def _json(info: NamespaceInfo, columns: list[str], mounts, separator) -> dict:
    out: dict[str, object] = {}
    for column in columns:
        text = cell(info, column, mounts, separator)
        number = COLUMNS[column].json == "number" and text is not None
        out[column.lower()] = int(text) if number else text
    if info.children:
        out["children"] = [_json(child, columns, mounts, separator) for child in info.children]
    return out


def print_columns(columns: list[str], rows: list[list[str | None]], tree_column: str | None,
                  headings: bool, stream) -> None:
    """libsmartcols' text table, as lsns prints it into a pipe.

    One space between columns; numbers right-aligned (not the one that
    carries the tree); each column as wide as its widest cell or header, or
    its width hint if both are narrower; the last column not padded; a cell
    with newlines (NSFS) goes on over the lines below.
    """
    right = [COLUMNS[c].right and c != tree_column for c in columns]
    lines: list[list[str]] = [list(columns)] if headings else []
    for row in rows:
        parts = [_printable(c or "", keep="\n" if name == "NSFS" else "").split("\n")
                 for c, name in zip(row, columns, strict=True)]
        for k in range(max(len(p) for p in parts)):
            lines.append([p[k] if k < len(p) else "" for p in parts])
    widths = []
    for i, name in enumerate(columns):
        header, data = len(name), max([len(line[i]) for line in lines[1 if headings else 0:]] or [0])
        hint = COLUMNS[name].hint
        widths.append(header if data < header else hint if data < hint and header < hint else data)
    for line in lines:
        cells = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(line, widths, right, strict=True)]
        if not right[-1]:
            cells[-1] = line[-1]
        print(" ".join(cells), file=stream)


def _printable(text: str, keep: str = "") -> str:
    r"""A cell on one line: a newline or tab in it is written \x0a, \x09 (as lsns does)."""
    return "".join(c if c.isprintable() or c in keep else "".join(f"\\x{b:02x}" for b in c.encode())
                   for c in text)


def _raw(text: str) -> str:
    r"""A cell of --raw output: spaces and what is not printable as \x20, \x0a (libsmartcols)."""
    return "".join(c if c.isprintable() and c not in " \\" else
                   "".join(f"\\x{b:02x}" for b in c.encode()) for c in text)
