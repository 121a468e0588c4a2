"""Errors that teach.

A failed system call gives an errno and nothing else.  TLPI's examples die
with ``errExit("unshare")``; labkit raises an ``OSError`` subclass that keeps
the errno (so ``except PermissionError`` still works) and adds the sentence a
student needs next: which capability was missing, which limit was hit, which
rule was broken, and what to do about it.

    >>> raise error_for("unshare", errno.EPERM, flags=CLONE_NEWUTS)
    MissingCapability: unshare(CLONE_NEWUTS): Operation not permitted
      Creating a uts namespace needs CAP_SYS_ADMIN ...

error_for() below is the one place that turns an errno into a lesson.  The
rules of one call or one /proc file stand next to the code that makes it:
user.py teaches uid_map, labkit.ipc shmget, syscalls.py pivot_root, and each
hands its rules in here with teach().  What is left here is what no single
call owns: threads, capabilities, and the limits on how many and how deep.

See errno(3), capabilities(7), and the ERRORS section of each man page.
"""

from __future__ import annotations

import ctypes
import errno as E
import os
from collections.abc import Mapping

from .nstypes import BY_NAME, decode_flags, format_flags
from .procfs import read_text, status_field

CLONE_NEWUSER = BY_NAME["user"].flag
CLONE_NEWNS = BY_NAME["mnt"].flag
CLONE_NEWPID = BY_NAME["pid"].flag
CLONE_NEWTIME = BY_NAME["time"].flag


# The classes ------------------------------------------------------------------

class NamespaceError(OSError):
    """A failed namespace-related system call, with the lesson attached.

    ``errno`` and ``strerror`` are the kernel's; ``syscall`` names the call as
    one would write it in C; ``hint`` says why it failed and what to do.
    """

    def __init__(self, err: int, syscall: str, hint: str = "") -> None:
        super().__init__(err, os.strerror(err))
        self.syscall = syscall
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.syscall}: {self.strerror}"
        return f"{text}\n  {self.hint}" if self.hint else text

    def __reduce__(self):  # so that a child process can send it to its parent
        return (self.__class__, (self.errno, self.syscall, self.hint), self.__dict__)


class MissingCapability(NamespaceError, PermissionError):
    """EPERM: the caller lacks a capability (see capabilities(7))."""


class ThreadedProcessError(NamespaceError):
    """A call that needs a single-threaded process, made in a multi-threaded one.

    unshare(CLONE_NEWUSER), setns() into a user or mount namespace: EINVAL;
    setns() into a time namespace: EUSERS.
    """


class NamespaceLimitError(NamespaceError):
    """ENOSPC/EUSERS: a /proc/sys/user/max_* limit or the nesting limit was hit."""


class MapRuleError(NamespaceError):
    """A uid_map/gid_map/setgroups rule of user_namespaces(7) was broken."""


class CgroupError(NamespaceError):
    """A cgroup file or directory operation failed (cgroups(7)); labkit.cgroup gives the hint."""


# From an errno to the lesson ------------------------------------------------------

# CALL (or "CALL DETAIL", e.g. "ioctl NS_GET_PARENT") -> (class, {errno: hint}),
# filled by teach() from the modules that make the calls.
_TAUGHT: dict[str, tuple[type[NamespaceError], Mapping[int, str]]] = {}


def teach(*calls: str, hints: Mapping[int, str], cls: type[NamespaceError] = NamespaceError) -> None:
    """Let error_for() answer an errno of each of CALLS with its hint, as a CLS.

    The module that makes a call keeps its rules next to it and calls this
    once, at import: ``teach("shmget", hints={errno.ENOENT: "..."})``.  So a
    rule is known whenever its call can be made: the call's module is loaded.
    (Rules that must hold for a call made from below, like the nesting depth
    of unshare(CLONE_NEWPID), live in the table of types, labkit.nstypes.)
    """
    for call in calls:
        _TAUGHT[call] = (cls, hints)


def error_for(syscall: str, err: int, flags: int = 0, detail: str = "") -> NamespaceError:
    """Build the teaching error for SYSCALL failing with ERR.

    FLAGS is the CLONE_NEW* mask the call was given (unshare, clone, setns);
    DETAIL is appended to the call's name (a path, a hostname).  SYSCALL may
    also name a /proc file labkit writes: uid_map, gid_map, setgroups,
    timens_offsets.
    """
    name = syscall
    if flags:
        name += f"({_flags_text(flags)})"
    if detail:
        name += f" {detail}"

    if _needs_one_thread(syscall, err, flags) and thread_count() > 1:
        return ThreadedProcessError(err, name, THREADS_HINT)
    for key in (f"{syscall} {detail}", syscall):  # the rules of this call, most precise first
        cls, hints = _TAUGHT.get(key, (None, {}))
        if err in hints:
            return cls(err, name, hints[err])
    if err == E.EPERM:
        return MissingCapability(err, name, _eperm_hint(syscall, flags))
    if err in (E.ENOSPC, E.EUSERS) and syscall.startswith(("unshare", "clone")):
        return NamespaceLimitError(err, name, _limit_hint(flags))
    return NamespaceError(err, name)


def check(result: int, syscall: str, flags: int = 0, detail: str = "") -> int:
    """Raise the teaching error if a C library call returned -1; else pass RESULT on.

    The call must come from a ``ctypes.CDLL(..., use_errno=True)``, whose
    private copy of errno ctypes.get_errno() reads.
    """
    if result == -1:
        raise error_for(syscall, ctypes.get_errno(), flags, detail)
    return result


def _flags_text(flags: int) -> str:
    try:
        return format_flags(flags)
    except ValueError:
        return f"{flags:#x}"


def _types(flags: int) -> str:
    try:
        return ", ".join(t.name for t in decode_flags(flags)) or "no"
    except ValueError:
        return f"{flags:#x}"


# EPERM: which capability, over which namespace ------------------------------------

ROOTLESS_HINT = (
    "Run as root (sudo), or create a user namespace in the same step, with you mapped "
    "to root inside it, as `unshare --map-root-user` does: labkit does that by itself "
    "for a normal user (rootless mode: `labkit run -u ...`, spawn(..., 'uts')). The "
    "capabilities you get in the new user namespace count for every namespace it owns.")


def _eperm_hint(syscall: str, flags: int) -> str:
    """Which capability the call needed, and how to get it."""
    who = f"this process (euid {os.geteuid()})"
    if syscall.startswith(("unshare", "clone")):
        if flags & CLONE_NEWUSER:
            # The kernel makes the user namespace first and the others owned by
            # it, so with CLONE_NEWUSER in the mask, it is the one that failed.
            return _userns_eperm_hint()
        return (f"Creating a {_types(flags)} namespace needs CAP_SYS_ADMIN in the "
                f"user namespace that will own it, and {who} does not have it. "
                "A user namespace needs no capability at all. " + ROOTLESS_HINT)
    if syscall.startswith("setns"):
        # Since Linux 3.8 every *_install() of the kernel asks for both: the
        # owner's capability, and the caller's own (so that a namespace made by
        # an unprivileged user cannot lend its capabilities to a process outside).
        return ("Joining a namespace needs CAP_SYS_ADMIN in the user namespace that owns "
                "it and in the caller's own user namespace (a mount namespace also needs "
                "CAP_SYS_CHROOT in the caller's; a user namespace only CAP_SYS_ADMIN in "
                f"itself), and {who} lacks one of them. Run as root, or join the owning "
                "user namespace first (nsenter -U, labkit enter -U): its creator has every "
                "capability there.")
    if syscall.startswith(("sethostname", "setdomainname")):
        return ("Setting the hostname needs CAP_SYS_ADMIN in the user namespace that "
                "owns the UTS namespace. Create a UTS namespace together with a user "
                "namespace (rootless mode), or run as root.")
    if syscall.startswith(("mount", "umount", "pivot_root")):
        return ("Mounting needs CAP_SYS_ADMIN in the user namespace that owns the "
                "mount namespace. As a normal user, do it inside a new user and mount "
                "namespace (rootless mode). Mounting proc also needs the PID namespace "
                "to be owned by that user namespace (add a new PID namespace); some file "
                "systems (e.g. sysfs of the host's network namespace) cannot be mounted "
                "there at all, and mounts inherited from the host are locked together.")
    if syscall.startswith("chroot"):
        return "chroot(2) needs CAP_SYS_CHROOT. Run as root or inside a user namespace."
    return f"{who} lacks a capability this call needs; see capabilities(7). " + ROOTLESS_HINT


def _userns_eperm_hint() -> str:
    reasons = ["Creating a user namespace needs no capability, so the kernel refused it "
               "for another reason:"]
    for path, bad in (("/proc/sys/kernel/unprivileged_userns_clone", "0"),
                      ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1")):
        try:
            if read_text(path) == bad:
                reasons.append(f"{path} is {bad}: unprivileged user namespaces are "
                               "disabled on this machine (an administrator can "
                               "change it with sysctl).")
        except OSError:
            pass
    if len(reasons) == 1:
        reasons.append("the process is in a chroot (CLONE_NEWUSER is refused there: it "
                       "would be a way out), its effective uid or gid has no mapping in "
                       "its own user namespace, or a security module (seccomp, AppArmor, "
                       "SELinux) of your container or distribution forbids it.")
    return " ".join(reasons)


# EINVAL from threads -------------------------------------------------------------

THREADS_HINT = (
    "This needs a single-threaded process: the user namespace decides the credentials "
    "that all threads share, so unshare(CLONE_NEWUSER) and setns() into a user namespace "
    "refuse a process with threads (EINVAL), as do setns() into a mount namespace (the "
    "threads share one root and working directory) and into a time namespace (EUSERS). "
    "(unshare(CLONE_NEWNS) alone succeeds, but moves only the calling thread.) A Jupyter "
    "kernel has several threads, so labkit does this work in a child process "
    "(labkit.spawn), which starts with one thread.")


def _needs_one_thread(syscall: str, err: int, flags: int) -> bool:
    """Is ERR the kernel's answer to a threaded caller of SYSCALL with FLAGS?"""
    if syscall.startswith("unshare"):
        return err == E.EINVAL and bool(flags & CLONE_NEWUSER)
    if syscall.startswith("setns"):
        return ((err == E.EINVAL and bool(flags & (CLONE_NEWUSER | CLONE_NEWNS)))
                or (err == E.EUSERS and bool(flags & CLONE_NEWTIME)))
    return False


def thread_count() -> int:
    """How many threads this process has (the Threads: line of /proc/self/status)."""
    return int(status_field("self", "Threads"))


# ENOSPC: a limit on how many, or on how deep ---------------------------------------

def _limit_hint(flags: int) -> str:
    """Which limit unshare(2) or clone(2) ran into.

    Two limits answer ENOSPC.  The depth of PID and user namespaces is fixed
    in the kernel; the number of namespaces of each type a user may own is
    /proc/sys/user/max_*_namespaces, counted in every ancestor user namespace
    as well.  When the caller's PID namespace is as deep as it goes, that is
    the answer; the kernel does not say which, so otherwise we name both.
    """
    pid_depth, user_depth = BY_NAME["pid"].nesting, BY_NAME["user"].nesting
    level = _pid_nesting_level()
    if flags & CLONE_NEWPID and level >= pid_depth:
        return (f"PID namespaces go at most {pid_depth} levels below the initial one "
                f"(MAX_PID_NS_LEVEL), and this process's PID namespace is {level} levels down "
                f"already: the NSpid line of /proc/self/status has {level + 1} PIDs, one per "
                "level. No sysctl raises this limit (/proc/sys/user/max_pid_namespaces counts "
                "namespaces, not levels): create the namespace from a process higher up.")
    hints = []
    for t in decode_flags(flags) if flags else []:
        path = f"/proc/sys/user/max_{t.name}_namespaces"
        try:
            hints.append(f"{path} is {read_text(path)}")
        except OSError:
            continue
    text = ("A namespace limit was reached: " + ", ".join(hints) + " (the limits of this "
            "user namespace; those of its ancestors count too). " if hints
            else "A namespace limit was reached. ")
    if flags & (CLONE_NEWUSER | CLONE_NEWPID):
        text += (f"Nesting is limited too: PID namespaces go at most {pid_depth} levels "
                 f"below the initial one, user namespaces {user_depth}; one level more "
                 "fails the same way (before Linux 4.9 with EINVAL for PID and EUSERS for user "
                 "namespaces). ")
    return text + "Raise the limit with sysctl (as root), or end processes that hold namespaces."


def _pid_nesting_level() -> int:
    """How many PID namespaces below /proc's this process is: NSpid has one PID per level.

    That is the depth below the initial namespace when /proc is the host's;
    a /proc mounted further down shows fewer levels, never more.
    """
    return len(status_field("self", "NSpid").split()) - 1
