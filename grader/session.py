"""Talking to a solution in its sandbox: a pseudo-terminal, pexpect, a transcript.

The grader sits at the master end of a pty(7); the solution has the slave
end as its terminal (standard input, output, error, and controlling
terminal), exactly as if a person had typed its command in a shell.
pexpect reads what the solution prints and waits for patterns in it, with
explicit timeouts.  Everything that can happen is a result of the check,
not a crash of the grader:

    the awaited text came          expect() returns its index
    nothing came in time           Timeout          (status timeout)
    the program ended first        Fail             (status failed), with its exit
    it could not start, or crashed SolutionError    (status error)
    it printed more than a limit   Fail; the grader stops reading and ends it

Every character read is kept (bounded) in a transcript, the feedback of a
check that fails.  How the program ended (code, or signal) comes from the
sandbox's PID 1 through a status pipe: it is the one process that waits
for the solution.

See pty(7), wait(2), and pexpect's documentation.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pexpect
import pexpect.fdpexpect

from labkit import procfs
from labkit.cgroup import Cgroup
from labkit.spawn import Child

from . import observe
from .feedback import Fail, SolutionError, Timeout, printable


class Box(Protocol):
    """What a session needs of its sandbox (grader/sandbox.py's Sandbox, which imports this
    module: the dependency points one way)."""

    limits: Any  # sandbox.Limits: wall, output ...
    hostname: str

# How long a solution may take to start COMMAND (or print its first line): the
# contracts set no limit, so this is generous; a correct solution slowed down
# by a busy machine, or an interpreter's start, loses nothing.  10 s was not:
# in the lab VM, under load, two correct container solutions (one that sleeps
# 2 s first, one that runs ip(8) several times) took longer.  It costs time
# only to a solution that never starts COMMAND.
START = 30

# How Python reports a file it cannot compile (no "Traceback" line then).
PYTHON_SYNTAX_ERROR = re.compile(r"^(SyntaxError|IndentationError|TabError): ", re.MULTILINE)


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
    """SIGTERM, or SIGRTMIN+3 for a real-time signal, as kill -l names them."""
    try:
        return signal.Signals(number).name
    except ValueError:
        if signal.SIGRTMIN < number < signal.SIGRTMAX:
            return f"SIGRTMIN+{number - signal.SIGRTMIN}"
        return f"signal {number}"


class Session:
    """One run of a program in a fresh sandbox, talked to through a pty.

    ``term`` is a pexpect spawn object on the pty's master end; everything
    the program prints is kept in ``transcript``.  Close the session (or
    use it as a context manager) to end the run and remove every trace.
    """

    def __init__(self, box: Box, argv: list[str], init: Child, group: Cgroup,
                 master: int, status: int, tty: int, tty_name: str, *, ids: Any,
                 uts: int | None = None, on_close: Callable[[], None] | None = None) -> None:
        self.box, self.argv, self.limits = box, argv, box.limits
        self.uts = uts  # a descriptor of the caller's UTS namespace, held from the start (or None)
        self.ids = ids  # the sandbox's uids and gids on the machine (sandbox.IdMap)
        self._on_close = on_close
        self.init, self.group, self._status = init, group, status
        self.tty, self.tty_name = tty, tty_name  # the terminal, to compare with /proc/PID/fd
        self.transcript = Transcript(self.limits.output)
        self.transcript.note(f"$ {' '.join(_quote(a) for a in argv)}")
        self.deadline = time.monotonic() + self.limits.wall
        self.events: list[dict] = []
        self.exit: Exit | None = None
        self._closed = False
        self.term = pexpect.fdpexpect.fdspawn(
            master, timeout=5, maxread=65536, searchwindowsize=65536,
            encoding="utf-8", codec_errors="replace", use_poll=True)
        self.term.logfile_read = self.transcript

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
            raise Timeout(f"no answer within {self._waited(timeout)}: waited for {what}",
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
            raise Timeout(f"the program did not end within {self._waited(timeout)}",
                          seen=self.transcript.tail(), hint=hint) from None
        self._ended()
        return self.exit

    def _left(self, timeout: float) -> float:
        return max(0.0, min(timeout, self.deadline - time.monotonic()))

    def _waited(self, timeout: float) -> str:
        if time.monotonic() >= self.deadline - 0.05:
            return f"the run's time limit of {self.limits.wall:g} s"
        return f"{timeout:g} s"

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
        self.events += [event for line in data.splitlines() if (event := _event(line))]

    # Looking at it from outside ------------------------------------------------

    @property
    def init_pid(self) -> int:
        """The sandbox's PID 1, as the grader sees it: its namespaces are "the caller's"."""
        return self.init.pid

    def solution_pid(self, timeout: float = START) -> int | None:
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

    def require(self, command: Sequence[str], hint: str, timeout: float = START) -> int:
        """The PID of the process running COMMAND, as find() has it; Fail if there is none."""
        pid = self.find(command, timeout=timeout)
        if pid is None:
            raise Fail("COMMAND did not start: no process in the sandbox runs it",
                       expected=" ".join(command), seen=self.transcript.tail(), hint=hint)
        return pid

    def find(self, command: Sequence[str] | str, timeout: float = START) -> int | None:
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
            if self._on_close is not None:
                self._on_close()
        finally:
            self.term.close()
            os.close(self._status)
            if self.uts is not None:
                os.close(self.uts)

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


def _event(line: bytes) -> dict | None:
    """One line of the status pipe, or None for anything the sandbox's code does not write.

    PID 1 holds the pipe, but the grader made it outside the sandbox's user
    namespace: the kernel refuses a solution's open of /proc/1/fd/N (EACCES,
    the pipe's owner has no id there; tests/test_grader_escapes.py tries).
    Should a line ever come from elsewhere, it is dropped, never a traceback."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    fields = {"exit": {"status": int}, "started": {"pid": int},
              "exec_error": {"errno": int, "message": str},
              "setup_error": {"message": str}}.get(event.get("event") if isinstance(event, dict) else None)
    if fields is None or not all(isinstance(event.get(k), t) for k, t in fields.items()):
        return None
    return event


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
        return int(procfs.stat_fields(pid)[19])
    except (OSError, ValueError, IndexError):
        return 1 << 62
