"""PID namespaces: every namespace numbers its processes from 1.

A new PID namespace (CLONE_NEWPID, Linux 2.6.24) gives the processes in it
PIDs of their own.  This module follows pid_namespaces(7) top to bottom:

1. The first process in a new namespace is **PID 1**, the namespace's init.
   Its parent lives outside, where it cannot be named: getppid() is 0.
2. A process has **one PID per level**, from the namespace of the /proc
   you read down to its own: the ``NSpid:`` line of /proc/PID/status.
3. PID namespaces **nest**, at most 32 levels below the initial one; the
   33rd unshare(CLONE_NEWPID) fails with ENOSPC.  NS_GET_PARENT (ioctl_ns(2))
   walks up the tree, but never above the caller's own namespace.
4. /proc shows the PID namespace of whoever **mounted** it, so a new
   namespace wants a fresh /proc (``spawn(..., mount_proc=True)``).
5. An **orphan** is reparented to PID 1 of its namespace, or to the nearest
   ancestor that made itself a subreaper (prctl(2) PR_SET_CHILD_SUBREAPER,
   Linux 3.4).
6. PID 1 gets **only the signals it has a handler for**; only SIGKILL and
   SIGSTOP sent from an ancestor namespace are forced on it.
7. When PID 1 ends, the kernel SIGKILLs **every** process of the namespace.
8. A child that has ended but was not waited for is a **zombie** (state Z in
   /proc/PID/stat).  Reaping orphans is PID 1's job, so a PID 1 that never
   calls wait(2) fills its namespace with zombies.

The last part is a small init that does that job, the way tini does it:
``python -m labkit.pid COMMAND [ARG...]`` (exercise ``pid1``).

See pid_namespaces(7), namespaces(7), proc(5) (NSpid, stat), ioctl_ns(2),
prctl(2), wait(2), sigwaitinfo(2), and tini's tini.c.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence

from . import syscalls
from .child import FORWARDED_SIGNALS
from .namespace import Namespace
from .nstypes import BY_NAME
from .procfs import stat_fields, status_field
from .spawn import mount_fresh_proc, run  # noqa: F401 - mount_fresh_proc: see section 4

# MAX_PID_NS_LEVEL in the kernel's include/linux/pid_namespace.h, kept in the
# table of types (labkit.nstypes), where labkit.errors reads it too.
MAX_NESTING = BY_NAME["pid"].nesting


# 2. One PID per level ------------------------------------------------------

def nspid(pid: int | str = "self") -> list[int]:
    """The PIDs of process PID, one per level: ``NSpid:  12345  7  1`` -> [12345, 7, 1].

    The first is the PID in the namespace of /proc's mounter (the host, with
    the host's /proc), the last the PID in the process's own namespace.
    """
    return [int(p) for p in status_field(pid, "NSpid").split()]


def nesting_level(pid: int | str = "self") -> int:
    """How many levels below /proc's PID namespace process PID lives (0: the same)."""
    return len(nspid(pid)) - 1


def parent_pid(pid: int | str = "self") -> int:
    """The ``PPid:`` of process PID as /proc's namespace sees it (0 if the parent is outside)."""
    return int(status_field(pid, "PPid"))


# 3. Nesting -----------------------------------------------------------------

def descend(depth: int, fn: Callable[..., object], *args: object) -> object:
    """Call FN(*ARGS) DEPTH PID namespaces below this process; return its result.

    Each level is labkit.spawn.run(..., namespaces="pid"): unshare(CLONE_NEWPID)
    in a child, then a fork, whose child is PID 1 one level down and goes on
    from there.  The error of the level that fails (ENOSPC past
    MAX_NESTING) comes back up as a labkit.errors.NamespaceLimitError.
    """
    if depth <= 0:
        return fn(*args)
    return run(descend, depth - 1, fn, *args, namespaces="pid")


def ancestors_of(pid: int | str = "self") -> list[Namespace]:
    """The PID namespaces above process PID's, nearest first, as NS_GET_PARENT shows them.

    The walk ends where the kernel says EPERM: at the initial namespace, or
    at the caller's own, since a namespace's parents above the caller stay
    hidden.  Asked from inside, a namespace has no visible parent at all.
    """
    return Namespace.of(pid, "pid").ancestors()


# 4. A fresh /proc -------------------------------------------------------------
#
# mount_fresh_proc() (mount -t proc proc /proc) is one of spawn's steps, as
# --mount-proc is one of unshare(1)'s, so it lives in labkit.spawn, below
# this module: spawn(..., mount_proc=True) mounts it after the fork, since a
# proc shows the PID namespace of its mounter.


# 5. Orphans -----------------------------------------------------------------

def become_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER): orphans below us come to us, not to PID 1."""
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)


def parent_of_an_orphan() -> int:
    """Make an orphan and return the PID of its new parent, as the orphan sees it.

    We fork a child that forks a grandchild and exits at once; the
    grandchild waits until its parent has gone, then reports getppid().
    """
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        first_parent = os.getpid()
        if os.fork() == 0:  # the grandchild
            while os.getppid() == first_parent:  # until the kernel has reparented us
                os.sched_yield()
            os.write(w, f"{os.getpid()} {os.getppid()}".encode())
            os._exit(0)
        os._exit(0)  # the child: exit, leaving an orphan behind
    os.close(w)
    os.waitpid(child, 0)
    with os.fdopen(r) as f:
        orphan, new_parent = map(int, f.read().split())
    if new_parent == os.getpid():  # we are its init or subreaper: ours to reap
        os.waitpid(orphan, 0)
    return new_parent


# 8. Zombies -----------------------------------------------------------------

def state(pid: int | str, proc: str = "/proc") -> str:
    """The state letter of process PID from /proc/PID/stat: R, S, D, T, Z, ..."""
    return stat_fields(pid, proc)[0]


def processes_in(ns: Namespace, proc: str = "/proc") -> list[int]:
    """The PIDs (as PROC numbers them) of the processes whose own PID namespace is NS.

    Processes of namespaces nested inside NS are left out.  A zombie still
    has its /proc/PID/ns/pid link (it keeps its PIDs until it is reaped).
    """
    found = []
    for entry in os.listdir(proc):
        if entry.isdigit():
            try:
                st = os.stat(f"{proc}/{entry}/ns/pid")
            except OSError:  # it ended, or we may not look
                continue
            if (st.st_dev, st.st_ino) == (ns.dev, ns.inode):
                found.append(int(entry))
    return sorted(found)


def zombies_in(ns: Namespace, proc: str = "/proc") -> list[int]:
    """The processes of NS that have ended and wait to be reaped (state Z)."""
    zombies = []
    for pid in processes_in(ns, proc):
        try:
            if state(pid, proc) == "Z":
                zombies.append(pid)
        except OSError:  # reaped meanwhile
            pass
    return zombies


# 6, 7 and 8 put together: an init ----------------------------------------
#
# An init for a container has two jobs besides starting COMMAND:
#   * reap: every orphan of the namespace becomes our child; wait for it, or
#     it stays a zombie and holds its PID forever;
#   * forward: PID 1 gets no signal it has no handler for, so a `docker stop`
#     (SIGTERM to PID 1) would do nothing unless we pass it on to COMMAND.
#
# Like tini we run no signal handlers.  We block the signals we care about
# and take them one at a time with sigwaitinfo(2), in a plain loop.  This is
# also why it works at all: the kernel drops a signal for PID 1 whose
# disposition is SIG_DFL, *unless it is blocked* ("blocked signals are never
# ignored", kernel/signal.c), so a blocked SIGTERM stays pending for us to
# collect.  A SIGCHLD that arrives while we are reaping stays pending too, so
# no child is ever missed, and one SIGCHLD for several children is enough
# because we reap until none is left.
#
# When COMMAND ends we exit at once with its status, as tini and dumb-init
# do: anything still running is then SIGKILLed by the kernel (point 7), and
# need not be waited for.  (A gentler init would SIGTERM the rest and wait a
# little; a container runtime's "stop" does that from outside.)
#
# Left out for clarity: tini also puts COMMAND in a process group of its own
# in the terminal's foreground, so that a ^C typed at a terminal reaches
# COMMAND once, from the terminal, and not a second time from us.

# FORWARDED_SIGNALS (labkit.child): SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1
# and SIGUSR2, the ones the pid1 exercise asks an init to pass on.
WAITED = {signal.SIGCHLD, *FORWARDED_SIGNALS}


def start_command(argv: Sequence[str], mask: set[int]) -> int:
    """Fork and exec ARGV with signal mask MASK and default signal actions; return its PID."""
    pid = os.fork()
    if pid == 0:
        try:
            # A blocked mask and ignored signals survive execve(2); COMMAND must
            # start as if we were not there.  (Python itself ignores SIGPIPE/SIGXFSZ.)
            syscalls.restore_default_signals()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.execvp(argv[0], list(argv))
        except OSError as e:  # as a shell says it: 127 not found, 126 not executable
            print(f"labkit.pid: cannot run {argv[0]}: {e.strerror}", file=sys.stderr, flush=True)
            os._exit(127 if isinstance(e, FileNotFoundError) else 126)
        finally:
            os._exit(127)  # whatever happened, never fall back into the init's loop
    return pid


def exit_status(wait_status: int) -> int:
    """A wait(2) status as a shell reports it: the exit code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def reap_children(command: int) -> int | None:
    """waitpid(-1, WNOHANG) until no ended child is left; COMMAND's status if it was one."""
    status = None
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # no children at all
            return status
        if pid == 0:  # children left, but none has ended
            return status
        if pid == command:
            status = exit_status(wait_status)


def forward(sig: int, command: int) -> None:
    """Pass SIG on to COMMAND (which may have ended: then there is no one to tell)."""
    try:
        os.kill(command, sig)
    except ProcessLookupError:
        pass


def run_init(argv: Sequence[str]) -> int:
    """Be the init of COMMAND (ARGV): start it, reap, forward; return COMMAND's exit status."""
    if os.getpid() != 1:
        become_subreaper()  # outside a new PID namespace, orphans still come to us
    # SIG_IGN for SIGCHLD would make the kernel reap children itself, and we
    # could never learn COMMAND's status.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
    command = start_command(argv, old_mask)
    while True:
        info = signal.sigwaitinfo(WAITED)
        if info.si_signo != signal.SIGCHLD:
            forward(info.si_signo, command)
        status = reap_children(command)
        if status is not None:
            return status


USAGE = """usage: python -m labkit.pid COMMAND [ARG...]

Run COMMAND as the child of a small init: reap every orphan, forward
SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to COMMAND, and exit
with COMMAND's status (128+N if signal N killed it).  Meant to be PID 1 of a
new PID namespace, e.g. labkit run -fp --mount-proc -- python -m labkit.pid sh"""


def init_main(argv: Sequence[str] | None = None) -> int:
    """The command line of the init; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    return run_init(argv)


if __name__ == "__main__":
    raise SystemExit(init_main())
