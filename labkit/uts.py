"""UTS namespaces: a hostname and NIS domain name of one's own.

Read beside uts_namespaces(7); the type came with Linux 2.6.19.

The name comes from ``struct utsname`` ("UNIX Time-sharing System"), what
uname(2) returns.  Of its six fields a UTS namespace owns two: the hostname
(``nodename``) and the NIS domain name.  sethostname(2) and setdomainname(2)
change them for every process in the caller's UTS namespace and no other.
The rest of ``struct utsname`` (sysname, release, version, machine) belongs
to the one kernel that all namespaces share, so it is the same everywhere.

The shell lesson this module turns into functions::

    sh1# unshare -u sh                 # a new UTS namespace
    sh1# hostname sh1
    sh2# unshare -u sh
    sh2# hostname sh2
    host$ nsenter -t PID_OF_SH1 -u hostname     # setns(2), then read it: sh1
    host$ readlink /proc/PID_OF_SH1/ns/uts      # uts:[4026532...], not ours

Changing the hostname needs CAP_SYS_ADMIN in the user namespace that owns
the UTS namespace.  A normal user gets that by creating a user namespace
together with the UTS namespace, which labkit.spawn does on its own when it
is not run as root (rootless mode).

See uts_namespaces(7), sethostname(2), setdomainname(2), uname(2), hostname(1),
nsenter(1), and proc(5) for /proc/sys/kernel/{hostname,domainname,osrelease}.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import syscalls
from .join import run_in
from .namespace import Namespace
from .procfs import read_text
from .spawn import run, spawn

HOST_NAME_MAX = 64  # bytes; __NEW_UTS_LEN in <linux/utsname.h>, the size of the kernel's buffer


# Reading: these files show the values of the *reader's* UTS namespace. ------

def hostname() -> str:
    """The hostname of the caller's UTS namespace (what hostname(1) prints).

    /proc/sys/kernel/hostname holds the same string that uname(2) puts in nodename.
    """
    return read_text("/proc/sys/kernel/hostname")


def domainname() -> str:
    """The NIS domain name of the caller's UTS namespace ("(none)" if unset)."""
    return read_text("/proc/sys/kernel/domainname")


def kernel_release() -> str:
    """The kernel release (uname -r): one kernel, so no namespace can change it."""
    return os.uname().release


# Writing: only in a UTS namespace of one's own, in a child process. --------

def set_hostname(name: str) -> None:
    """sethostname(2): rename the caller's UTS namespace (not the machine, if it is a new one)."""
    syscalls.sethostname(name)  # EINVAL beyond HOST_NAME_MAX bytes, EPERM without CAP_SYS_ADMIN


def set_domainname(name: str) -> None:
    """setdomainname(2): set the NIS domain name of the caller's UTS namespace."""
    syscalls.setdomainname(name)


# Looking into another process's UTS namespace, as nsenter -u does. ---------

def hostname_of(pid: int) -> str:
    """The hostname that process PID sees: join its UTS namespace and read it.

    There is no /proc/PID file with another namespace's hostname:
    /proc/sys/kernel/hostname always answers for the reader.  So, as
    ``nsenter -t PID -u hostname`` does, a child process calls setns(2) on
    /proc/PID/ns/uts and reads its own hostname.  If PID's user namespace is
    not ours, the child joins it first: setns(2) on a UTS namespace needs
    CAP_SYS_ADMIN in the user namespace that owns it.  If PID is in our own
    UTS namespace we just read ours: setns(2) wants that capability even to
    "join" the namespace one is already in, which a normal user lacks.
    """
    if Namespace.of(pid, "uts") == Namespace.of("self", "uts"):
        return hostname()
    return run_in(pid, _join_list(pid), hostname)


def _join_list(pid: int) -> list[str]:
    if Namespace.of(pid, "user") == Namespace.of("self", "user"):
        return ["uts"]
    return ["user", "uts"]


def uname_in_new_namespace(name: str) -> dict[str, str]:
    """uname(2) as seen in a new UTS namespace whose hostname is NAME.

    Only ``nodename`` differs from the caller's uname: ``release`` and the
    rest describe the kernel.  Even root in the new namespace cannot change
    them: /proc/sys/kernel/osrelease is read-only (mode 0444) for everybody.
    """
    return run(_uname, namespaces="uts", hostname=name)


def _uname() -> dict[str, str]:
    u = os.uname()
    return {"sysname": u.sysname, "nodename": u.nodename, "release": u.release,
            "version": u.version, "machine": u.machine}


# The two-shells lesson as one function. ------------------------------------

@dataclass(frozen=True)
class Shell:
    """One process of the demo, as seen from outside while it ran."""

    pid: int
    hostname: str  # read by joining its UTS namespace (hostname_of)
    uts: str  # its /proc/PID/ns/uts link, e.g. "uts:[4026532285]"


@dataclass(frozen=True)
class TwoShells:
    """What two_shells_demo() saw."""

    host_hostname: str  # ours, before and after: never changed
    host_uts: str  # our /proc/self/ns/uts link
    shells: dict[str, Shell]  # by the hostname each process set


def two_shells_demo(names: tuple[str, str] = ("sh1", "sh2")) -> TwoShells:
    """Start two processes, each in a new UTS namespace with its own hostname.

    While both run, look at each from outside: its /proc/PID/ns/uts link
    (two new namespaces, neither ours) and the hostname seen by joining it
    with setns(2).  Then end both; their namespaces die with them, since
    nothing else holds them.
    """
    host = hostname()
    shells = {}
    # spawn() does unshare(CLONE_NEWUTS) and then sethostname(2) in the child,
    # before it runs the command: `unshare -u sh` followed by `hostname sh1`.
    children = []
    try:
        for name in names:
            children.append(spawn(["sleep", "infinity"], "uts", hostname=name))
        for name, child in zip(names, children, strict=True):
            shells[name] = Shell(child.pid, hostname_of(child.pid),
                                 os.readlink(f"/proc/{child.pid}/ns/uts"))
    finally:
        for child in children:
            child.kill()
            child.wait()
    return TwoShells(host, os.readlink("/proc/self/ns/uts"), shells)
