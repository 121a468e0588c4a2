"""IPC namespaces: System V IPC objects and POSIX message queues of one's own.

An IPC namespace (CLONE_NEWIPC, Linux 2.6.19) isolates the objects that
processes find *by name* rather than through a file descriptor they were
given: System V shared memory, message queues and semaphore sets, which are
named by a number (the key), and, since Linux 2.6.30, POSIX message queues,
named by "/a-name".  ipc_namespaces(7) says it in one line: objects are
visible to all processes of the namespace that created them, and to no other.

So in two IPC namespaces

* ``shmget(0x1234, ...)`` gives two *different* segments, and ``ipcs`` run
  in each (it reads /proc/sysvipc, which shows the reader's namespace) lists
  only the namespace's own objects;
* a mount of the ``mqueue`` file system (mq_overview(7)) shows the POSIX
  queues of the IPC namespace of the process that mounted it, so a new IPC
  namespace wants a new mount namespace and a fresh ``mount -t mqueue``, as
  a new PID namespace wants a fresh /proc;
* the limits in /proc/sys/kernel/shm*, msg*, sem and /proc/sys/fs/mqueue are
  per namespace too.

When the namespace is destroyed, all its objects are destroyed with it.  A
namespace lives as long as something refers to it: a process in it, an open
/proc/PID/ns/ipc file descriptor, or a bind mount of one (hold() below).

The System V calls have no Python wrapper, so we call the C library's through
ctypes, under the C names; each raises labkit's teaching error on -1.

See ipc_namespaces(7), sysvipc(7), shmget(2), msgget(2), semget(2),
shmctl(2), mq_overview(7), mq_open(3), ipcs(1), ipcmk(1).
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import NamedTuple

from . import syscalls
from .errors import check, teach
from .namespace import NS_GET_USERNS, ioctl_ns
from .spawn import run
from .syscalls import call_libc

# glibc 2.34 moved the POSIX message queue calls from librt into libc.
librt = syscalls.libc if hasattr(syscalls.libc, "mq_open") else ctypes.CDLL("librt.so.1", use_errno=True)

# From <sys/ipc.h>.
IPC_PRIVATE = 0  # a key that always makes a new object
IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_RMID = 0  # the *ctl command that removes an object

# What each failure means: objects are found by name, in the caller's IPC
# namespace only (ipc_namespaces(7)).  labkit.errors.teach() hands them to error_for.
_SYSV_NOT_FOUND = ("no object with this key in the caller's IPC namespace, and IPC_CREAT was "
                   "not given: System V objects belong to the IPC namespace that made them, "
                   "and another namespace's key finds nothing here (ipcs lists this one's).")
_SYSV_EXISTS = ("IPC_CREAT|IPC_EXCL asks for a new object, and this IPC namespace has one "
                "with this key already.")
_SYSV_LIMIT = ("a limit of this IPC namespace was reached (/proc/sys/kernel/shmmni, shmall, "
               "msgmni or sem, which each IPC namespace has its own copy of).")
teach("shmget", hints={
    errno.ENOENT: _SYSV_NOT_FOUND, errno.EEXIST: _SYSV_EXISTS, errno.ENOSPC: _SYSV_LIMIT,
    errno.EINVAL: "the size is outside /proc/sys/kernel/shmmin..shmmax, or a segment with "
                  "this key exists and is smaller than the size asked for.",
})
teach("msgget", hints={errno.ENOENT: _SYSV_NOT_FOUND, errno.EEXIST: _SYSV_EXISTS,
                       errno.ENOSPC: _SYSV_LIMIT})
teach("semget", hints={
    errno.ENOENT: _SYSV_NOT_FOUND, errno.EEXIST: _SYSV_EXISTS, errno.ENOSPC: _SYSV_LIMIT,
    errno.EINVAL: "the number of semaphores is outside 1..SEMMSL (/proc/sys/kernel/sem), "
                  "or a set with this key exists and has fewer.",
})
teach("mq_open", hints={
    errno.ENOENT: "no queue of this name in the caller's IPC namespace, and O_CREAT was not "
                  "given: POSIX queues belong to one IPC namespace (an mqueue mount lists "
                  "those of its mounter's).",
    errno.EEXIST: "O_CREAT|O_EXCL asks for a new queue, and this IPC namespace has one of "
                  "this name already.",
    errno.EINVAL: "a queue's name is '/' and up to 255 more characters, none of them '/' "
                  "(mq_overview(7)).",
    errno.EMFILE: "the per-process limit on open queue descriptors was reached.",
})
teach("mq_unlink", hints={errno.ENOENT: "no queue of this name in the caller's IPC namespace."})


# System V IPC: the C calls ------------------------------------------------------

def shmget(key: int, size: int, flags: int = IPC_CREAT | 0o600) -> int:
    """shmget(2): the id of the shared memory segment named KEY (made if IPC_CREAT)."""
    return call_libc("shmget", ctypes.c_int(key), ctypes.c_size_t(size), flags)


def shmctl(shmid: int, cmd: int = IPC_RMID) -> int:
    """shmctl(2) without a buffer: IPC_RMID removes the segment."""
    return call_libc("shmctl", shmid, cmd, None)


def msgget(key: int, flags: int = IPC_CREAT | 0o600) -> int:
    """msgget(2): the id of the message queue named KEY."""
    return call_libc("msgget", ctypes.c_int(key), flags)


def msgctl(msqid: int, cmd: int = IPC_RMID) -> int:
    """msgctl(2) without a buffer: IPC_RMID removes the queue."""
    return call_libc("msgctl", msqid, cmd, None)


def semget(key: int, nsems: int, flags: int = IPC_CREAT | 0o600) -> int:
    """semget(2): the id of the set of NSEMS semaphores named KEY."""
    return call_libc("semget", ctypes.c_int(key), nsems, flags)


def semctl(semid: int, cmd: int = IPC_RMID) -> int:
    """semctl(2) for commands that need no argument: IPC_RMID removes the set."""
    return call_libc("semctl", semid, 0, cmd)


# System V IPC: what a namespace holds ----------------------------------------

class IpcObject(NamedTuple):
    """One line of /proc/sysvipc/KIND: its kind (shm, msg, sem), key and id."""

    kind: str
    key: int
    id: int

    def __str__(self) -> str:  # as ipcs(1) prints keys
        return f"{self.kind} key {self.key:#010x} id {self.id}"


def create_objects(key: int, size: int = 4096) -> list[IpcObject]:
    """Make one object of each System V kind named KEY, in the caller's IPC namespace."""
    return [IpcObject("shm", key, shmget(key, size)),
            IpcObject("msg", key, msgget(key)),
            IpcObject("sem", key, semget(key, 1))]


def remove_objects(objects: list[IpcObject]) -> None:
    """IPC_RMID each of OBJECTS (which must be in the caller's IPC namespace)."""
    remove = {"shm": shmctl, "msg": msgctl, "sem": semctl}
    for obj in objects:
        remove[obj.kind](obj.id)


def sysv_objects() -> list[IpcObject]:
    """The System V objects of the caller's IPC namespace, as ipcs(1) finds them.

    /proc/sysvipc/{shm,msg,sem} list the namespace of the process that reads
    them, whatever /proc was mounted by: there is no /proc/PID/sysvipc.
    """
    found = []
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as f:
            next(f)  # the header line
            for line in f:
                key, ident = line.split()[:2]
                # The kernel prints the key as a signed int; ipcs shows it unsigned.
                found.append(IpcObject(kind, int(key) & 0xFFFFFFFF, int(ident)))
    return found


# POSIX message queues -----------------------------------------------------------

MQUEUE = "/dev/mqueue"  # where distributions mount it (systemd does; Debian may not)


def mount_mqueue(target: str = MQUEUE) -> None:
    """mount -t mqueue none TARGET: show the queues of the caller's IPC namespace there.

    Do it in a new mount namespace: in the caller's own, the mount would
    cover the host's view for everyone.
    """
    syscalls.mount("none", target, "mqueue")


def mq_open(name: str, oflag: int = os.O_CREAT | os.O_RDWR, mode: int = 0o600) -> int:
    """mq_open(3): open (with O_CREAT: make) the POSIX message queue "/NAME"."""
    mqd = librt.mq_open(os.fsencode(name), oflag, ctypes.c_uint(mode), None)
    return check(mqd, "mq_open", detail=name)


def mq_close(mqd: int) -> None:
    """mq_close(3): close a queue descriptor (the queue itself stays)."""
    check(librt.mq_close(mqd), "mq_close")


def mq_unlink(name: str) -> None:
    """mq_unlink(3): remove the queue "/NAME" from the namespace."""
    check(librt.mq_unlink(os.fsencode(name)), "mq_unlink", detail=name)


def create_queue(name: str) -> None:
    """Make the POSIX message queue NAME ("/q") in the caller's IPC namespace."""
    mq_close(mq_open(name))


def queues(mountpoint: str = MQUEUE) -> list[str]:
    """The POSIX message queues in the mqueue mount at MOUNTPOINT ("q" for "/q")."""
    return sorted(os.listdir(mountpoint))


# Lifetime -----------------------------------------------------------------------

def hold(pid: int) -> int:
    """Open process PID's IPC namespace: while the fd is open the namespace lives.

    Close the fd (os.close) to let it go.  It is kept across fork(2), not
    across execve(2) (O_CLOEXEC); tools reach it as /proc/OUR_PID/fd/FD.
    """
    return os.open(f"/proc/{pid}/ns/ipc", os.O_RDONLY | os.O_CLOEXEC)


def sysv_objects_in(ns_fd: int) -> list[IpcObject]:
    """The System V objects of the IPC namespace open on NS_FD, even one with no process.

    A child joins it with setns(2) and reads /proc/sysvipc there; the
    caller's own namespace does not change.  Joining needs CAP_SYS_ADMIN in
    the user namespace that owns the IPC namespace and in the joiner's own,
    so when the owner is not ours (a normal user's namespaces) the child
    joins the owner first, where its creator has every capability.
    """
    def join_and_list() -> list[IpcObject]:
        owner = ioctl_ns(ns_fd, NS_GET_USERNS)  # an fd on the owning user namespace
        try:
            if os.fstat(owner).st_ino != os.stat("/proc/self/ns/user").st_ino:
                syscalls.setns(owner, "user")
        finally:
            os.close(owner)
        syscalls.setns(ns_fd, "ipc")
        return sysv_objects()

    return run(join_and_list)
