"""Ways a check can start a solution: hooks that run right before execve(2).

A hook is called in the sandbox, in the solution's own process, after the
sandbox is built (file systems, cgroup, default signals, working
directory) and before the solution's program replaces the process.  It gets
the argument vector and may return another one::

    run = trial.run("arg", hook=as_user(1000, 1000))

Exercise contracts that start the solution differently are hooks:

    as_user(uid, gid)   an unprivileged user (exercise userns)
    as_pid1             PID 1 of a new PID namespace, with its own /proc (exercise pid1)

A chroot(2) into a jail (exercise escape) is a hook too: build the jail
under /tmp, bind-mount what it needs, chroot, chdir("/"), and return the
solution's path inside the jail.

See credentials(7), pid_namespaces(7), chroot(2).
"""

from __future__ import annotations

import os
import signal

from labkit import syscalls

from .sandbox import EXERCISE_DIR, Hook


def as_user(uid: int, gid: int) -> Hook:
    """A hook that runs the solution as UID and GID, with no supplementary groups."""
    def drop_privileges(argv: list[str]) -> None:
        for here, dirs, files in os.walk(EXERCISE_DIR):  # the user's own copy of its folder
            for name in [here, *(os.path.join(here, n) for n in dirs + files)]:
                os.lchown(name, uid, gid)
        os.setgroups([])
        os.setgid(gid)  # the group first: after setuid(2) we could not change it any more
        os.setuid(uid)  # a non-zero uid from 0 clears every capability
    return drop_privileges


def as_pid1(argv: list[str]) -> None:
    """A hook that makes the solution PID 1 of a new PID namespace with a matching /proc.

    unshare(CLONE_NEWPID) moves only our future children, so we fork: the
    child is PID 1 there and goes on to execve; this process stays between
    the sandbox and it, and ends the way it ends (its code, or its signal).
    The grader finds the solution as the child of Session.solution_pid().
    """
    syscalls.unshare("pid,mnt")
    pid = os.fork()
    if pid == 0:
        syscalls.mount("proc", "/proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
        return None
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        os.kill(os.getpid(), os.WTERMSIG(status))  # default dispositions: this ends us the same way
        os.kill(os.getpid(), signal.SIGKILL)  # a signal that does not kill (SIGCHLD...) cannot end a process
    os._exit(os.WEXITSTATUS(status))
