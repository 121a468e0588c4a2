"""Errors that teach.

A failed system call gives an errno and nothing else.  TLPI's examples die
with ``errExit("unshare")``; labkit raises an ``OSError`` subclass that keeps
the errno (so ``except PermissionError`` still works) and adds the sentence a
student needs next: which capability was missing, which limit was hit, which
rule was broken, and what to do about it.

    >>> raise error_for("unshare", errno.EPERM, flags=CLONE_NEWUTS)
    MissingCapability: unshare(CLONE_NEWUTS): Operation not permitted
      Creating a uts namespace needs CAP_SYS_ADMIN ...

See errno(3), capabilities(7), and the ERRORS section of each man page.
"""

from __future__ import annotations

import errno as E
import os

from .nstypes import BY_NAME, decode_flags, format_flags
from .procfs import status_field

CLONE_NEWUSER = BY_NAME["user"].flag
CLONE_NEWNS = BY_NAME["mnt"].flag
CLONE_NEWPID = BY_NAME["pid"].flag
CLONE_NEWTIME = BY_NAME["time"].flag

ROOTLESS_HINT = (
    "Run as root (sudo), or create a user namespace in the same step, with you mapped "
    "to root inside it, as `unshare --map-root-user` does: labkit does that by itself "
    "for a normal user (rootless mode: `labkit run -u ...`, spawn(..., 'uts')). The "
    "capabilities you get in the new user namespace count for every namespace it owns.")


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


def _types(flags: int) -> str:
    try:
        return ", ".join(t.name for t in decode_flags(flags)) or "no"
    except ValueError:
        return f"{flags:#x}"


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
        return ("Joining a namespace needs CAP_SYS_ADMIN in the user namespace that "
                "owns it (for a user namespace: in that namespace itself; for a mount "
                f"namespace, also CAP_SYS_CHROOT), and {who} does not have it. "
                "Run as root, or join the owning user namespace first (nsenter -U).")
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
            with open(path) as f:
                if f.read().strip() == bad:
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


MAP_HINT = (
    "user_namespaces(7): a map is written once, in one write(2), as lines 'INSIDE OUTSIDE "
    "COUNT' whose ranges do not overlap, by a process with CAP_SETUID (CAP_SETGID for "
    "gid_map) in the parent user namespace, or by an unprivileged process that maps only "
    "its own effective id (one line, count 1); an unprivileged writer must write 'deny' "
    "to /proc/PID/setgroups before gid_map (the Linux 3.19 fix), and setgroups cannot "
    "change once gid_map is written.")

TIME_OFFSET_HINTS = {
    E.EPERM: "Writing time offsets needs CAP_SYS_TIME in the user namespace that owns "
             "the time namespace.",
    E.EACCES: "Time offsets can be written only before the first process enters the new "
              "time namespace (after unshare(CLONE_NEWTIME), before fork).",
    E.ERANGE: "The offset would make the clock negative (or absurdly large): a negative "
              "offset may be at most the clock's current value.",
    E.EINVAL: "Each line is 'CLOCK SECONDS NANOSECONDS' with CLOCK monotonic or boottime "
              "and 0 <= NANOSECONDS < 1000000000 (negative offsets go in SECONDS).",
}


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

    if syscall in ("uid_map", "gid_map", "setgroups") and err in (E.EPERM, E.EACCES, E.EINVAL):
        return MapRuleError(err, name, MAP_HINT)
    if syscall == "timens_offsets" and err in TIME_OFFSET_HINTS:
        return NamespaceError(err, name, TIME_OFFSET_HINTS[err])
    if err == E.EPERM and syscall == "ioctl" and detail in ("NS_GET_PARENT", "NS_GET_USERNS"):
        return NamespaceError(err, name, (
            "ioctl_ns(2): the namespace asked for lies outside the caller's own "
            "namespace tree (above its PID or user namespace), so the kernel will not "
            "show it; at the top of the tree this is how the walk ends."))
    if err == E.EINVAL and syscall == "ioctl" and detail == "NS_GET_PARENT":
        return NamespaceError(err, name, (
            "ioctl_ns(2): only PID and user namespaces form a tree with parents; every "
            "namespace has an owner, though (NS_GET_USERNS)."))
    if err == E.ENOTTY and syscall == "ioctl":
        return NamespaceError(err, name, (
            "the file is not a namespace: open /proc/PID/ns/TYPE, or a bind mount of it."))
    if err == E.EPERM:
        return MissingCapability(err, name, _eperm_hint(syscall, flags))
    if _needs_one_thread(syscall, err, flags) and thread_count() > 1:
        return ThreadedProcessError(err, name, THREADS_HINT)
    if err in (E.ENOSPC, E.EUSERS):
        return NamespaceLimitError(err, name, _limit_hint(flags))
    if err in (E.EINVAL, E.EBUSY) and syscall.startswith("pivot_root"):
        return NamespaceError(err, name, (
            "pivot_root(2) wants: new_root a mount point other than the current root "
            "(bind-mount it onto itself first), put_old at or under new_root, and "
            "neither the current root nor new_root on a shared mount (make / private "
            "with MS_REC|MS_PRIVATE first, in a new mount namespace)."))
    if err == E.EINVAL and syscall.startswith("setns"):
        return NamespaceError(err, name, (
            "setns(2): the file descriptor is not a namespace of the type given in "
            "nstype, or joining is not allowed: a user namespace cannot be joined by "
            "a multi-threaded process, a process cannot rejoin its own user namespace, "
            "and a PID namespace can be joined only if it is our own or below it."))
    if err == E.EINVAL and syscall.startswith(("sethostname", "setdomainname")):
        return NamespaceError(err, name, (
            "uts_namespaces(7): a hostname or NIS domain name is at most 64 bytes "
            "(HOST_NAME_MAX)."))
    if err == E.EBUSY and "/proc" in name:
        return NamespaceError(err, name, "the target is in use; unmount it with MNT_DETACH.")
    return NamespaceError(err, name)


def thread_count() -> int:
    """How many threads this process has (the Threads: line of /proc/self/status)."""
    return int(status_field("self", "Threads"))


def _flags_text(flags: int) -> str:
    try:
        return format_flags(flags)
    except ValueError:
        return f"{flags:#x}"


def _limit_hint(flags: int) -> str:
    """Name the /proc/sys/user/max_*_namespaces file of each type asked for.

    The files show the limits of the reader's own user namespace; a new
    namespace is also counted against every ancestor user namespace.
    """
    hints = []
    for t in decode_flags(flags) if flags else []:
        path = f"/proc/sys/user/max_{t.name}_namespaces"
        try:
            with open(path) as f:
                hints.append(f"{path} is {f.read().strip()}")
        except OSError:
            continue
    text = ("A namespace limit was reached: " + ", ".join(hints) + " (the limits of this "
            "user namespace; those of its ancestors count too). " if hints
            else "A namespace limit was reached. ")
    if flags & (CLONE_NEWUSER | CLONE_NEWPID):
        # MAX_PID_NS_LEVEL is 32; create_user_ns() refuses a parent at level > 32.
        text += ("Nesting is limited too: PID namespaces go at most 32 levels below the "
                 "initial one, user namespaces 33; one level more fails the same way "
                 "(with EUSERS for user namespaces before Linux 4.9). ")
    return text + "Raise the limit with sysctl (as root), or end processes that hold namespaces."


def check(result: int, syscall: str, flags: int = 0, detail: str = "") -> int:
    """Raise the teaching error if a libc call returned -1; else pass RESULT on."""
    if result == -1:
        import ctypes
        raise error_for(syscall, ctypes.get_errno(), flags, detail)
    return result
