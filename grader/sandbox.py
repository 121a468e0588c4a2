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
                                                    hook, execve() in /tmp/scratch
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

A check chooses how the solution starts with a *hook*: a function called in
the sandbox, in the solution's process, right before execve(2).  It gets
the argument vector and may return another; it may chroot(2), drop to
another user, or create a PID namespace and fork (see grader/hooks.py).

See namespaces(7), pid_namespaces(7), cgroups(7), pty(7), credentials(7).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import resource
import secrets
import shutil
import signal
import struct
import sys
import termios
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pexpect
import pexpect.fdpexpect

from labkit import syscalls
from labkit.cgroup import CLONE_NEWCGROUP, Cgroup
from labkit.spawn import Child, spawn

from . import observe
from .feedback import Fail, SolutionError, Timeout, printable

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
PR_CAPBSET_DROP = 24

# Directories a solution may write to: each gets a fresh tmpfs.
SCRATCH_MOUNTS = ("/tmp", "/run", "/var/tmp", "/dev/shm")
# Never hidden, whatever a caller asks: the sandbox needs them.
ESSENTIAL = ("/bin", "/dev", "/etc", "/lib", "/proc", "/run", "/sbin", "/sys", "/tmp", "/usr")

Hook = Callable[[list[str]], "list[str] | None"]

# How Python reports a file it cannot compile (no "Traceback" line then).
PYTHON_SYNTAX_ERROR = re.compile(r"^(SyntaxError|IndentationError|TabError): ", re.MULTILINE)


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


@dataclass(frozen=True)
class Exit:
    """How a solution ended: an exit code, or the signal that killed it."""

    code: int | None = None
    signal: int | None = None

    @classmethod
    def from_wait_status(cls, status: int) -> Exit:
        if os.WIFSIGNALED(status):
            return cls(signal=os.WTERMSIG(status))
        return cls(code=os.WEXITSTATUS(status))

    @property
    def status(self) -> int:
        """The status as a shell reports it: the code, or 128+N for signal N."""
        return self.code if self.code is not None else 128 + (self.signal or 0)

    def __str__(self) -> str:
        if self.signal is not None:
            return f"killed by {signal_name(self.signal)} (signal {self.signal})"
        return f"exit status {self.code}"


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# The grader's side -----------------------------------------------------------

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
        return Session(self, list(argv), hook, cwd, env, export)


# Only one sandbox is started at a time: between openpty() and spawn() the
# pty's slave end is open in the grader, and a fork in another thread would
# copy it into a long-lived process and delay that session's end of file.
_START_LOCK = threading.Lock()


class Session:
    """One run of a program in a fresh sandbox, talked to through a pty.

    ``term`` is a pexpect spawn object on the pty's master end; everything
    the program prints is kept in ``transcript``.  Close the session (or
    use it as a context manager) to end the run and remove every trace.
    """

    def __init__(self, box: Sandbox, argv: list[str], hook: Hook | None, cwd: str,
                 env: dict[str, str] | None, export: bool) -> None:
        self.box, self.argv, self.limits = box, argv, box.limits
        self.transcript = Transcript(self.limits.output)
        self.transcript.note(f"$ {' '.join(_quote(a) for a in argv)}")
        self.deadline = time.monotonic() + self.limits.wall
        self.events: list[dict] = []
        self.exit: Exit | None = None
        self._closed = False
        self.group = Cgroup.create()
        try:
            self.group.limit_pids(self.limits.pids)
            self.group.limit_memory(self.limits.memory)
            self.init, master, self._status = self._spawn_init(hook, cwd, env, export)
        except BaseException:
            self.group.remove()
            raise
        self.term = pexpect.fdpexpect.fdspawn(
            master, timeout=5, maxread=65536, searchwindowsize=65536,
            encoding="utf-8", codec_errors="replace", use_poll=True)
        self.term.logfile_read = self.transcript

    def _spawn_init(self, hook, cwd, env, export) -> tuple[Child, int, int]:
        env = env or {"PATH": PATH, "HOME": SCRATCH_DIR, "TERM": "dumb", "LANG": "C.UTF-8"}
        with _START_LOCK:
            for stream in (sys.stdout, sys.stderr):  # the init is a fork: no buffered text into the pty
                with contextlib.suppress(Exception):
                    stream.flush()
            master, slave = os.openpty()
            self.tty = os.fstat(slave).st_rdev  # the terminal's device number, to compare with /proc
            self.tty_name = os.ttyname(slave)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            status_r, status_w = os.pipe2(os.O_CLOEXEC)
            source = os.open(self.box.source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            plan = _Plan(self.group, status_w, source, self.argv, hook, cwd, env, export,
                         self.limits, list(self.box.hide))
            try:
                init = spawn(_init, NAMESPACES, args=(plan,), hostname=self.box.hostname,
                             mount_proc=True, stdin=slave, stdout=slave, stderr=slave)
            except BaseException:
                os.close(master)
                os.close(status_r)
                raise
            finally:
                for fd in (slave, status_w, source):
                    os.close(fd)
        os.set_blocking(status_r, False)
        return init, master, status_r

    # Talking to the program ----------------------------------------------------

    def expect(self, *patterns: str | re.Pattern, timeout: float = 5, what: str = "",
               hint: str = "") -> int:
        """Wait for one of PATTERNS (text, or a compiled regex) in the output; return its index.

        A timeout raises Timeout, the end of the output Fail (or
        SolutionError if the program could not run or crashed): both are
        results of the check, never grader errors.  ``self.match`` is the
        match object.
        """
        what = what or " or ".join(repr(p if isinstance(p, str) else p.pattern) for p in patterns)
        compiled = [p if isinstance(p, re.Pattern) else re.compile(re.escape(p)) for p in patterns]
        try:
            index = self.term.expect_list(compiled, timeout=self._left(timeout))
        except pexpect.TIMEOUT:
            self._flooded()
            raise Timeout(f"no answer within {timeout:g} s: waited for {what}",
                          expected=what, seen=self.transcript.tail(), hint=hint) from None
        except pexpect.EOF:
            self._ended()
            raise Fail(f"the program ended ({self.exit}) before it printed {what}",
                       expected=what, seen=self.transcript.tail(), hint=hint) from None
        self.match = self.term.match
        return index

    def sendline(self, text: str = "") -> None:
        """Type TEXT and Enter on the program's terminal."""
        try:
            self.term.sendline(text)
        except OSError:  # EIO: nobody holds the terminal any more
            self._ended()
            raise Fail(f"the program ended ({self.exit}) before it read its input",
                       seen=self.transcript.tail()) from None

    def wait(self, timeout: float = 10, hint: str = "") -> Exit:
        """Read the rest of the output and wait for the program to end; return how it ended."""
        try:
            self.term.expect(pexpect.EOF, timeout=self._left(timeout))
        except pexpect.TIMEOUT:
            self._flooded()
            raise Timeout(f"the program did not end within {timeout:g} s",
                          seen=self.transcript.tail(), hint=hint) from None
        self._ended()
        return self.exit

    def _left(self, timeout: float) -> float:
        return max(0.0, min(timeout, self.deadline - time.monotonic()))

    def _flooded(self) -> None:
        if self.transcript.flooded:  # the transcript stopped the reading
            raise Fail(f"the program printed more than {self.limits.output // 1024} KiB; "
                       "the grader stopped reading and ended it",
                       hint="print only what the exercise asks for; a loop that prints "
                            "without end is a bug")

    def _ended(self) -> None:
        """After EOF: collect how the program ended (the init reports it as it exits)."""
        self._flooded()
        with contextlib.suppress(TimeoutError, ChildProcessError):
            self.init.wait(timeout=max(1.0, self._left(5)))
        self._read_events()
        for event in self.events:
            if event["event"] == "exec_error":
                raise exec_error(event, self.argv)
            if event["event"] == "setup_error":
                raise RuntimeError(f"the sandbox could not be set up: {event['message']}\n"
                                   f"{event.get('where', '')}")
            if event["event"] == "exit":
                self.exit = Exit.from_wait_status(event["status"])
        if self.exit is None:
            self.exit = Exit(signal=signal.SIGKILL)  # the run was ended from outside

    def _read_events(self) -> None:
        data = b""
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self._status, 65536):
                data += chunk
        self.events += [json.loads(line) for line in data.decode().splitlines() if line]

    # Looking at it from outside ------------------------------------------------

    @property
    def init_pid(self) -> int:
        """The sandbox's PID 1, as the grader sees it: its namespaces are "the caller's"."""
        return self.init.pid

    def solution_pid(self, timeout: float = 5) -> int | None:
        """The PID (as the grader sees it) of the process that ran the solution."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = observe.children(self.init.pid)
            if kids:
                return min(kids, key=lambda p: _start_time(p))
            if self.init.poll() is not None:
                return None
            time.sleep(0.01)
        return None

    def find(self, command: Sequence[str] | str, timeout: float = 5) -> int | None:
        """The PID of the sandbox's process running COMMAND, or None.

        COMMAND is an exact argument vector: the process nearest PID 1
        that has it is returned (a shell's child has its parent's argv
        between fork and exec; it is not the one).  Or COMMAND is a string
        to look for in command lines: the deepest such process is returned
        (the solution's own command line holds its arguments too).
        """
        exact = not isinstance(command, str)

        def matches(pid: int) -> bool:
            argv = observe.cmdline(pid)
            return argv == list(command) if exact else command in " ".join(argv)

        deadline = time.monotonic() + timeout
        while True:
            found = [p for p in observe.descendants(self.init.pid) if matches(p)]
            if found:
                return found[0] if exact else found[-1]
            if time.monotonic() > deadline or self.init.poll() is not None:
                return None
            time.sleep(0.02)

    def crash(self) -> str:
        """Why the program crashed ("" if it did not): a fatal signal or a Python traceback."""
        if self.exit and self.exit.signal in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL,
                                              signal.SIGFPE, signal.SIGABRT):
            return f"the solution crashed: {self.exit}"
        text = self.transcript.text
        if PYTHON_SYNTAX_ERROR.search(text):
            return "the solution is not valid Python: a syntax error (see the transcript)"
        if "Traceback (most recent call last)" in text:
            return "the solution crashed with a Python exception (see the traceback in the transcript)"
        return ""

    # The end -------------------------------------------------------------------

    def close(self) -> None:
        """End the run: kill PID 1 (and so the whole PID namespace), empty and remove the cgroup."""
        if self._closed:
            return
        self._closed = True
        try:
            self.init.kill()
            self.init.wait()
            self.group.remove()
        finally:
            self.term.close()
            os.close(self._status)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Transcript:
    """Everything a run printed (pexpect's logfile_read), bounded.

    Past LIMIT characters it sets ``flooded`` and raises pexpect.TIMEOUT from
    inside pexpect's read, which ends the expect() that was reading, so
    gigabytes of output cost the grader one megabyte.  Only the first and
    the last parts are kept for the feedback.
    """

    KEEP = 16 * 1024

    def __init__(self, limit: int) -> None:
        self.limit, self.total, self.flooded = limit, 0, False
        self.head, self.tail_text, self.dropped = "", "", 0

    def write(self, text: str) -> None:
        self.total += len(text)
        self._keep(text)
        if self.total > self.limit:
            self.flooded = True
            raise pexpect.TIMEOUT("output limit")  # ends the expect(); _flooded() says why

    def flush(self) -> None:
        pass

    def note(self, text: str) -> None:
        """A line of the grader's own (the command it ran, a signal it sent)."""
        self._keep(f"[grader] {text}\n")

    def _keep(self, text: str) -> None:
        if len(self.head) < self.KEEP and not self.tail_text:
            take = self.KEEP - len(self.head)
            self.head, text = self.head + text[:take], text[take:]
        text = self.tail_text + text
        self.dropped += max(0, len(text) - self.KEEP)
        self.tail_text = text[-self.KEEP:]

    @property
    def text(self) -> str:
        middle = f"\n[... {self.dropped} characters left out ...]\n" if self.dropped else ""
        return self.head + middle + self.tail_text

    def tail(self, size: int = 600) -> str:
        """The last SIZE characters, for the 'seen:' line of a failure."""
        text = self.text.replace("\r\n", "\n")
        text = "\n".join(line for line in text.split("\n") if not line.startswith("[grader]"))
        return printable(text[-size:].strip()) or "(nothing)"


def exec_error(event: dict, argv: list[str]) -> SolutionError:
    """The teaching message for an execve(2) of the solution that failed."""
    err, name = event["errno"], os.path.basename(argv[0])
    if err == errno.EACCES:
        return SolutionError(f"{name} is not executable", seen=event["message"],
                             hint=f"make it executable: chmod +x {name} (and commit that mode)")
    if err == errno.ENOEXEC:
        return SolutionError(f"{name} is neither a program nor a script", seen=event["message"],
                             hint="a script starts with a #! line, e.g. #!/usr/bin/env python3")
    if err == errno.ENOENT:
        return SolutionError(f"{name} could not be started: it, or the interpreter on its #! "
                             "line, does not exist in the grading sandbox", seen=event["message"],
                             hint="use an interpreter the lab VM has (#!/usr/bin/env python3, "
                                  "#!/bin/bash); a \\r at the end of the #! line (Windows line "
                                  "endings) also gives this error")
    return SolutionError(f"{name} could not be started", seen=event["message"])


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def _start_time(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 1 << 62


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
