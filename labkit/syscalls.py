"""The system calls behind namespaces, called through ctypes.

Python 3.11 has no ``os.unshare`` or ``os.setns`` (3.12 added them), and no
Python version has ``mount``, ``pivot_root`` or ``sethostname``.  ctypes calls
the C library's wrappers directly, the same functions a C program calls, and
``use_errno=True`` gives us errno after a failure.  Each function here is one
system call, named as in section 2 of the manual, raising a teaching error
from ``labkit.errors`` when the kernel says no.

The calls came with these Linux releases: unshare 2.6.16, setns 3.0,
pivot_root 2.3.41, pidfd_open 5.3 (setns on a pidfd 5.8); mount, umount2,
sethostname and prctl are older than namespaces.

See unshare(2), setns(2), mount(2), umount(2), pivot_root(2),
sethostname(2), setdomainname(2), pidfd_open(2), prctl(2), rt_sigaction(2).
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys

from .errors import NamespaceError, check, error_for, teach
from .nstypes import encode_flags

libc = ctypes.CDLL(None, use_errno=True)

# mount(2) flags, from <sys/mount.h>.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

# The propagation types of mount_namespaces(7), by the names mount(8) gives them
# (--make-shared, ...): each is a mount(2) call with that one flag (and MS_REC).
PROPAGATION = {"shared": MS_SHARED, "private": MS_PRIVATE, "slave": MS_SLAVE,
               "unbindable": MS_UNBINDABLE}

# umount2(2) flags.
MNT_FORCE = 1
MNT_DETACH = 2

# prctl(2) options used by labkit.
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

SYS_rt_sigaction = {"x86_64": 13, "aarch64": 134, "riscv64": 134}.get(os.uname().machine)
# pivot_root has a number of its own on each architecture (<asm/unistd.h>);
# None where we do not know it, rather than a wrong call.
SYS_pivot_root = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "armv7l": 218, "i686": 217,
                  "ppc64le": 203, "s390x": 217}.get(os.uname().machine)


def call_libc(name: str, *args, call: str = "", flags: int = 0, detail: str = "") -> int:
    """Call the C library's function NAME and raise the teaching error if it returns -1.

    CALL is the system call's name when NAME is the generic syscall(2).
    """
    return check(getattr(libc, name)(*args), call or name, flags, detail)


def unshare(namespaces: object) -> None:
    """unshare(2): move the calling process into new namespaces.

    NAMESPACES is a flag mask or names ("uts", ["mnt", "net"]).  Beware: a new
    PID or time namespace is for the caller's *children* only.  And threads:
    in a multi-threaded process CLONE_NEWUSER fails (EINVAL), and CLONE_NEWNS
    succeeds but moves only the calling thread.
    """
    flags = encode_flags(namespaces)
    call_libc("unshare", flags, flags=flags)


def setns(fd: int, namespaces: object = 0) -> None:
    """setns(2): move the calling process into the namespace open on FD.

    FD is a /proc/PID/ns/* file (then NAMESPACES, if given, must be its type,
    a safety check) or a pidfd (then NAMESPACES says which of that process's
    namespaces to join, all at once, Linux 5.8+).
    """
    flags = encode_flags(namespaces) if namespaces else 0
    call_libc("setns", fd, flags, flags=flags)


teach("setns", hints={errno.EINVAL: (
    "setns(2): the file descriptor is not a namespace of the type given in nstype, or "
    "joining is not allowed: a user namespace cannot be joined by a multi-threaded "
    "process, a process cannot rejoin its own user namespace, and a PID namespace can be "
    "joined only if it is our own or below it.")})


def pidfd_open(pid: int) -> int:
    """pidfd_open(2): a file descriptor that refers to process PID (Linux 5.3+).

    Python has this one (os.pidfd_open); we only give its failure the same shape.
    """
    try:
        return os.pidfd_open(pid)
    except OSError as e:
        raise error_for("pidfd_open", e.errno, detail=str(pid)) from None


def mount(source: str, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2): attach a file system, or change a mount's flags or propagation."""
    enc = os.fsencode
    call_libc("mount", enc(source) if source else None, enc(target),
          enc(fstype) if fstype else None, ctypes.c_ulong(flags),
          enc(data) if data else None, detail=target)


teach("umount2", hints={
    errno.EINVAL: "umount2(2): nothing is mounted there, or the mount is locked: in a user "
                  "namespace, mounts that came with the copy of a more privileged mount "
                  "namespace cannot be unmounted one by one (mount_namespaces(7)).",
    errno.EBUSY: "the mount is in use (an open file, a working directory, a mount below it): "
                 "umount2(MNT_DETACH) detaches it now and frees it when the last user lets go.",
})


def umount(target: str, flags: int = 0) -> None:
    """umount2(2): detach the mount at TARGET (MNT_DETACH: lazily, even if busy)."""
    call_libc("umount2", os.fsencode(target), flags, detail=target)


teach("pivot_root", hints=dict.fromkeys((errno.EINVAL, errno.EBUSY), (
    "pivot_root(2) wants: new_root a mount point other than the current root (bind-mount "
    "it onto itself first), put_old at or under new_root, and neither the current root "
    "nor new_root on a shared mount (make / private with MS_REC|MS_PRIVATE first, in a "
    "new mount namespace).")))


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2): make NEW_ROOT the root of this mount namespace.

    glibc has no wrapper, so we go through syscall(2) with the call's number.
    """
    if SYS_pivot_root is None:
        raise NamespaceError(errno.ENOSYS, "pivot_root", f"labkit does not know the system call's "
                             f"number on {os.uname().machine}: add it to SYS_pivot_root")
    call_libc("syscall", SYS_pivot_root, os.fsencode(new_root), os.fsencode(put_old),
          call="pivot_root", detail=f"{new_root} {put_old}")


teach("sethostname", "setdomainname", hints={errno.EINVAL: (
    "uts_namespaces(7): a hostname or NIS domain name is at most 64 bytes (HOST_NAME_MAX).")})


def sethostname(name: str) -> None:
    """sethostname(2): set the hostname of the caller's UTS namespace."""
    raw = name.encode()
    call_libc("sethostname", raw, len(raw), detail=repr(name))


def setdomainname(name: str) -> None:
    """setdomainname(2): set the NIS domain name of the caller's UTS namespace."""
    raw = name.encode()
    call_libc("setdomainname", raw, len(raw), detail=repr(name))


def prctl(option: int, arg2: int = 0) -> int:
    """prctl(2) with one argument: PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, ..."""
    return call_libc("prctl", option, ctypes.c_ulong(arg2), 0, 0, 0)


def restore_default_signals() -> None:
    """Undo SIG_IGN for every ignored signal, just before execve(2).

    execve(2) resets handled signals to their default action but keeps ignored
    ones ignored, so a program inherits whatever its starter ignored: Python
    ignores SIGPIPE and SIGXFSZ, and GNU make ignores signals 32 and 33 (glibc
    keeps those two for itself, so signal.signal() cannot reach them).  The
    rt_sigaction(2) system call can: we ask it for each signal's action and
    give SIG_DFL (a struct kernel_sigaction of zeros) to the ignored ones.  No
    /proc needed: this runs in chroot jails too.
    """
    if SYS_rt_sigaction is None:  # an architecture whose number we do not know
        for sig in signal.valid_signals():
            if signal.getsignal(sig) == signal.SIG_IGN:
                signal.signal(sig, signal.SIG_DFL)
        return
    default = bytes(32)  # handler SIG_DFL, flags, restorer, mask: all 0
    for sig in range(1, 65):
        old = ctypes.create_string_buffer(32)
        call_libc("syscall", SYS_rt_sigaction, sig, None, old, 8, call="rt_sigaction", detail=str(sig))
        if int.from_bytes(old.raw[:8], sys.byteorder) == 1:  # SIG_IGN
            call_libc("syscall", SYS_rt_sigaction, sig, default, None, 8, call="rt_sigaction",
                      detail=str(sig))
