"""The grading sandbox: where a student's program runs, and why it cannot hurt.

Every run of a solution gets a sandbox of its own, built with labkit (the
grader uses the lab's own library) and torn down completely afterwards::

    grader                              sandbox: new uts, mnt, net, ipc, pid namespaces
    ------                              -------
    cgroup with pids and memory limits
    openpty()
    spawn(init) ----------------------> PID 1, "init":
                                          join the cgroup, then unshare(CLONE_NEWCGROUP)
                                          setsid() + TIOCSCTTY: the pty is its terminal
                                          fresh tmpfs on /tmp /run /var/tmp /dev/shm,
                                          fresh sysfs and mqueue, /proc of the PID namespace
                                          copy the exercise folder into /tmp/exercise
                                          empty tmpfs over the grader, the workspaces,
                                          /root and /home; / read-only
                                          fork() -> the solution: default signals, empty
                                                    signal mask, rlimits, the check's
                                                    hook, descriptors 0-2 only,
                                                    execve() in /tmp/scratch
    pexpect on the pty master <--------> the solution's terminal
    status pipe <---------------------- "started", "exit" + raw wait status
    kill PID 1: the kernel kills every process of its PID namespace;
    kill and remove the cgroup; the namespaces end with their last process.

Why each piece:

* The PID namespace is the off switch.  When its PID 1 dies the kernel
  SIGKILLs every process in it, daemons and double forks included, and no
  process can leave a PID namespace.  ``kill -9 -1`` inside reaches only the
  sandbox's own processes (and not PID 1, which ignores signals from its
  namespace unless it has a handler).
* The cgroup bounds what a PID namespace cannot: a fork bomb (pids.max), a
  memory hog (the OOM killer acts inside the group only).  The init joins
  it before it creates the cgroup namespace, so that the solution sees its
  cgroup as "/".
* The mount namespace (private propagation, labkit.spawn's default) holds
  every mount the solution makes; fresh tmpfs file systems hold every file
  it writes; /run/netns starts empty; the host's disk is mounted read-only.
* UTS, network and IPC namespaces hold hostnames, links, addresses, named
  network namespaces and System V objects.  All of them end with the
  sandbox.

What this does not do: the solution runs as root in the machine's user
namespace, because the exercises need real privilege.  The sandbox stops
mistakes and casual reading of files that are not the student's, not a
root program set on breaking out (it could mount the disk's block device).

Talking to the solution once it runs (the pty, pexpect, the transcript,
its exit status) is grader/session.py.

A check chooses how the solution starts with a *hook*: a function called in
the sandbox, in the solution's process, right before execve(2).  It gets
the argument vector and may return another; it may chroot(2), drop to
another user, or create a PID namespace and fork (see grader/hooks.py).

See namespaces(7), pid_namespaces(7), cgroups(7), pty(7), credentials(7).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import resource
import secrets
import shutil
import signal
import struct
import sys
import termios
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labkit import procfs, syscalls
from labkit.cgroup import CLONE_NEWCGROUP, Cgroup
from labkit.spawn import spawn

from .session import Exit, Session, signal_name

__all__ = ["EXERCISE_DIR", "SCRATCH_DIR", "KIT", "Exit", "Hook", "Limits", "Sandbox", "Session",
           "hidden_paths", "signal_name"]

MiB = 1 << 20
KIT = Path(__file__).resolve().parent.parent  # the kit: labkit, grader, solutions

# Paths inside the sandbox.
EXERCISE_DIR = "/tmp/exercise"  # the copy of the student's exercise folder
SCRATCH_DIR = "/tmp/scratch"  # the solution's working directory
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

NAMESPACES = ("uts", "mnt", "net", "ipc", "pid")  # and cgroup: made by init, after joining its cgroup

# Capabilities no exercise needs, with which a mistaken root program could
# hurt the machine itself: load modules, poke at raw devices, reboot, set
# the clock.  Dropped from the bounding set, they are gone after execve(2).
CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_BOOT, CAP_SYS_TIME = 16, 17, 22, 25
PR_CAPBSET_DROP, PR_SET_NAME = 24, 15
_INIT_NAME = ctypes.create_string_buffer(b"sandbox-init")  # what ps shows for the sandbox's PID 1

# Directories a solution may write to: each gets a fresh tmpfs.
SCRATCH_MOUNTS = ("/tmp", "/run", "/var/tmp", "/dev/shm")
# Never hidden, whatever a caller asks: the sandbox needs them.
ESSENTIAL = ("/bin", "/dev", "/etc", "/lib", "/proc", "/run", "/sbin", "/sys", "/tmp", "/usr")

Hook = Callable[[list[str]], "list[str] | None"]



@dataclass(frozen=True)
class Limits:
    """How much a run may use; an exercise may ask for other values."""

    wall: float = 20.0  # seconds the whole run may last
    cpu: int = 10  # RLIMIT_CPU: seconds of CPU for each process
    pids: int = 128  # processes and threads in the sandbox at once
    memory: int = 256 * MiB  # the cgroup's memory limit
    output: int = 1 * MiB  # bytes of output the grader reads before it stops the run
    tmpfs: int = 64 * MiB  # size of each scratch tmpfs
    drop_capabilities: tuple[int, ...] = (CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_BOOT, CAP_SYS_TIME)


def hidden_paths(*extra: str | os.PathLike) -> list[str]:
    """Folders to cover with an empty tmpfs in every sandbox.

    The kit (grader, reference solutions, starters), the virtual environment
    the grader runs from (if it is one), home directories (where copies of other work
    live), and EXTRA (the student's workspace, the class folder).
    """
    venv = sys.prefix if sys.prefix != sys.base_prefix else ""
    paths = [KIT, venv, "/root", "/home", *extra]
    return sorted({os.path.realpath(p) for p in paths if p})


# The grader's side -----------------------------------------------------------

# Only one sandbox is started at a time: between openpty() and spawn() the
# pty's slave end is open in the grader, and a fork in another thread would
# copy it into a long-lived process and delay that session's end of file.
_START_LOCK = threading.Lock()


@dataclass
class Sandbox:
    """Where runs happen: SOURCE is copied into each run's sandbox.

    SOURCE is a folder on the host (the grader's staging copy of the
    student's exercise folder); HIDE the host folders to cover.
    """

    source: str
    hide: Sequence[str] = ()
    limits: Limits = field(default_factory=Limits)
    hostname: str = field(default_factory=lambda: f"sandbox-{secrets.token_hex(3)}")

    def start(self, argv: Sequence[str], *, hook: Hook | None = None, cwd: str = SCRATCH_DIR,
              env: dict[str, str] | None = None, export: bool = False) -> Session:
        """Start ARGV (argv[0] a path inside the sandbox) in a new sandbox.

        HOOK runs in the solution's process right before execve.  EXPORT
        copies the sandbox's /tmp/exercise back to SOURCE when ARGV ends
        (used to run make once and keep what it built).
        """
        group = Cgroup.create()
        try:
            group.limit_pids(self.limits.pids)
            group.limit_memory(self.limits.memory)
            return self._spawn(list(argv), group, hook, cwd, env, export)
        except BaseException:
            group.remove()
            raise

    def _spawn(self, argv: list[str], group: Cgroup, hook: Hook | None, cwd: str,
               env: dict[str, str] | None, export: bool) -> Session:
        env = env or {"PATH": PATH, "HOME": SCRATCH_DIR, "TERM": "dumb", "LANG": "C.UTF-8"}
        with _START_LOCK:
            for stream in (sys.stdout, sys.stderr):  # the init is a fork: no buffered text into the pty
                with contextlib.suppress(Exception):
                    stream.flush()
            master, slave = os.openpty()
            tty, tty_name = os.fstat(slave).st_rdev, os.ttyname(slave)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            status_r, status_w = os.pipe2(os.O_CLOEXEC)
            source = os.open(self.source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            plan = _Plan(group, status_w, source, argv, hook, cwd, env, export,
                         self.limits, list(self.hide))
            try:
                init = spawn(_init, NAMESPACES, args=(plan,), hostname=self.hostname,
                             mount_proc=True, stdin=slave, stdout=slave, stderr=slave)
            except BaseException:
                os.close(master)
                os.close(status_r)
                raise
            finally:
                for fd in (slave, status_w, source):
                    os.close(fd)
        os.set_blocking(status_r, False)
        return Session(self, argv, init, group, master, status_r, tty, tty_name)


# The sandbox's side: PID 1 and the solution's process -------------------------------
#
# Everything below runs in forked copies of the grader, inside the new
# namespaces.  It reports through the status pipe, never on the terminal
# (which belongs to the student's program), and imports nothing: once the
# kit's folder is hidden, a module that is not loaded yet cannot be.

@dataclass
class _Plan:
    group: Cgroup
    status_w: int
    source: int
    argv: list[str]
    hook: Hook | None
    cwd: str
    env: dict[str, str]
    export: bool
    limits: Limits
    hide: list[str]


def _init(plan: _Plan) -> None:
    """PID 1 of the sandbox: build it, start the solution, reap, report.

    It ends with os._exit, never by returning: a normal exit would flush
    the grader's Python buffers (inherited at fork, perhaps locked by
    another thread at that moment) into the student's terminal.
    """
    code = 0
    try:
        _build(plan)
        pid = os.fork()
        if pid == 0:
            _exec_solution(plan)
        _report(plan, event="started", pid=pid)
        status = _reap_until(pid)
        _report(plan, event="exit", status=status)
        if plan.export:
            _export(plan)
    except BaseException as e:  # noqa: BLE001 - the grader reads it; the terminal is the student's
        _report(plan, event="setup_error", message=f"{type(e).__name__}: {e}",
                where=traceback.format_exc(limit=-2))
        code = 1
    os._exit(code)


def _build(plan: _Plan) -> None:
    _forget_command_line()
    # PID 1 of a namespace gets only signals it has a handler for; the
    # terminal's ^C must not reach Python's KeyboardInterrupt handler here.
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN,
                signal.SIGTTOU, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    plan.group.add(0)
    syscalls.unshare(CLONE_NEWCGROUP)  # after joining: the cgroup becomes the namespace's "/"
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty becomes the session's controlling terminal
    _mount_scratch(plan.limits.tmpfs)
    _copy_in(plan.source)
    _hide(plan.hide)
    syscalls.mount("none", "/", None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY)


def _forget_command_line() -> None:
    """Blank the grader's command line and environment that /proc/1/cmdline and environ show.

    This process is a forked copy of the grader, and the solution may read
    /proc/1/ of its namespace: the grader's arguments (a class folder, a
    CSV file) and environment (an instructor's tokens) are none of its
    business.  Both are strings on the stack where execve(2) put them,
    fields 48 to 51 of /proc/self/stat; Python keeps its own copies.
    """
    fields = procfs.stat_fields("self")
    arg_start, arg_end, env_start, env_end = (int(x) for x in fields[45:49])  # fields 48-51
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        for start, end in ((arg_start, arg_end), (env_start, env_end)):
            mem.seek(start)
            mem.write(bytes(end - start))
    syscalls.prctl(PR_SET_NAME, ctypes.addressof(_INIT_NAME))


def _mount_scratch(size: int) -> None:
    flags = syscalls.MS_NOSUID | syscalls.MS_NODEV
    for path in SCRATCH_MOUNTS:
        if os.path.isdir(path) and not os.path.islink(path):
            mode = "755" if path == "/run" else "1777"
            syscalls.mount("tmpfs", path, "tmpfs", flags, f"size={size},mode={mode}")
    flags |= syscalls.MS_NOEXEC
    syscalls.mount("sysfs", "/sys", "sysfs", flags)  # the sandbox's network devices; no cgroup mounts
    if os.path.isdir("/dev/mqueue"):
        syscalls.mount("mqueue", "/dev/mqueue", "mqueue", flags)  # this IPC namespace's queues


def _copy_in(source: int) -> None:
    os.fchdir(source)  # the host's folder, still reachable through the descriptor
    shutil.copytree(".", EXERCISE_DIR, symlinks=True)
    os.mkdir(SCRATCH_DIR)
    os.chmod(SCRATCH_DIR, 0o1777)
    os.chdir("/")


def _hide(paths: list[str]) -> None:
    """An empty read-only tmpfs over each path (and so over everything below it)."""
    done: list[str] = []
    for path in sorted(paths):
        if path == "/" or any(e == path or e.startswith(path + "/") for e in ESSENTIAL):
            continue  # hiding it would hide the sandbox's own tools
        if any(path.startswith(d.rstrip("/") + "/") for d in done):
            continue  # already under a hidden one
        if os.path.isdir(path) and not os.path.islink(path):
            syscalls.mount("tmpfs", path, "tmpfs", syscalls.MS_RDONLY | syscalls.MS_NOSUID
                           | syscalls.MS_NODEV | syscalls.MS_NOEXEC, "size=4k,mode=755")
            done.append(path)


def _exec_solution(plan: _Plan) -> None:
    """In the solution's process: a clean start, the check's hook, execve. Never returns."""
    try:
        # The contract: default signal dispositions and an empty signal mask.
        for sig in signal.valid_signals():
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
        syscalls.restore_default_signals()  # also 32 and 33, which make(1) ignores
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        resource.setrlimit(resource.RLIMIT_CPU, (plan.limits.cpu, plan.limits.cpu))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # The OOM killer's first choice is the solution, never the sandbox's init
        # (raising one's own score needs no privilege; lowering init's would).
        _write("/proc/self/oom_score_adj", "1000")
        for cap in plan.limits.drop_capabilities:
            syscalls.prctl(PR_CAPBSET_DROP, cap)
        os.chdir(plan.cwd)
        argv = plan.argv
        if plan.hook is not None:
            argv = plan.hook(list(argv)) or argv
        # Only 0, 1 and 2 go to the solution: whatever the grader inherited from
        # whoever started it (a test runner's pipe, a terminal) stays here.
        os.closerange(3, plan.status_w)
        os.closerange(plan.status_w + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        os.execve(argv[0], argv, plan.env)
    except OSError as e:
        _report(plan, event="exec_error", errno=e.errno or 0,
                message=f"{e.strerror or e}: {e.filename or plan.argv[0]}")
    except BaseException as e:  # noqa: BLE001 - a hook's bug: the grader's error, not the student's
        _report(plan, event="setup_error", message=f"hook: {type(e).__name__}: {e}")
    finally:
        os._exit(127)


def _reap_until(pid: int) -> int:
    """Reap every child (orphans are reparented to us) until PID ends; return its wait status."""
    while True:
        reaped, status = os.waitpid(-1, 0)
        if reaped == pid:
            return status


def _export(plan: _Plan) -> None:
    """Copy the sandbox's exercise folder back to the grader's staging folder."""
    os.fchdir(plan.source)
    for entry in os.listdir("."):
        if os.path.isdir(entry) and not os.path.islink(entry):
            shutil.rmtree(entry)
        else:
            os.unlink(entry)
    shutil.copytree(EXERCISE_DIR, ".", symlinks=True, dirs_exist_ok=True)


def _report(plan: _Plan, **event: object) -> None:
    with contextlib.suppress(OSError):
        os.write(plan.status_w, json.dumps(event).encode() + b"\n")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
