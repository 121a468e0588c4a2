"""One sandbox, several runs: the solution started again and again on the same "host".

Some contracts are about a sequence of calls that share a host: exercise
veth's ``solution up ...`` leaves named network namespaces that a later
``solution down ...`` must remove, and a second ``up`` with a name that
exists must refuse.  The sandbox's PID 1 ends when the process it started
ends, and its namespaces with it; so the process it starts here is a
driver, which stays, and starts one program at a time when the grader asks:

    grader                                 the driver (in the sandbox, where the
                                           solution's process would be)
    Rerun.start()  <---------------------  "ready": the sandbox is built, nothing ran yet
    Rerun.solution("up", ...)  --------->  fork(): the child becomes the solution,
                                           through the sandbox's usual start (clean
                                           signals, rlimits, descriptors 0-2, execve),
                                           with its standard error in a memfd
                   <---------------------  its wait status and what it wrote to stderr
    Rerun.command("ip", "netns", "add", NAME)   the same, for a tool of the machine
    (closing the session ends the driver, and the sandbox with it)

Standard output goes to the sandbox's terminal, and so to the transcript.
A run that does not end in time is a Timeout: the session's close kills
whatever is left.

See fork(2), memfd_create(2), waitpid(2).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import time
from dataclasses import dataclass

from .engine import Trial
from .feedback import Timeout, printable
from .session import Exit, Session

STDERR_KEPT = 16384  # bytes of a run's standard error the grader reads


@dataclass(frozen=True)
class Ran:
    """How one run ended, and what it wrote to standard error."""

    exit: Exit
    stderr: str

    def __str__(self) -> str:
        """"exit status 1, standard error: ...", for a failure's "seen:"."""
        err = self.stderr.strip()
        return f"{self.exit}" + (f", standard error: {err[-300:]}" if err else "")


class Rerun:
    """A sandbox whose driver runs the solution (or a tool) whenever the grader asks."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial
        self.reports_r, self.reports_w = os.pipe2(os.O_CLOEXEC)  # sandbox -> grader
        self.orders_r, self.orders_w = os.pipe2(os.O_CLOEXEC)  # grader -> sandbox
        self.run: Session | None = None
        self.pid: int | None = None  # the driver, as the grader numbers it
        self._pending = b""
        self._sandbox_ends_open = True
        trial.keep(self)

    def start(self) -> Session:
        """Start the sandbox with its driver; return when it is built and nothing has run."""
        self.run = self.trial.run(hook=self._drive)
        self._close_sandbox_ends()
        if self._report(15) != {"ready": True}:
            raise RuntimeError("the sandbox's driver did not start")
        self.pid = self.run.solution_pid()
        if self.pid is None:
            raise RuntimeError("the sandbox's driver is gone")
        self.run.transcript.note("(that was the sandbox's driver, not your solution; each run "
                                 "of the solution follows, in this one sandbox)")
        return self.run

    def solution(self, *args: str, timeout: float = 10) -> Ran:
        """Run ``solution ARGS`` in the sandbox and wait for its end."""
        return self._order({"args": list(args)}, "solution " + " ".join(args), timeout)

    def command(self, *argv: str, timeout: float = 10) -> Ran:
        """Run a program of the machine (ARGV[0] an absolute path) in the sandbox."""
        return self._order({"argv": list(argv)}, " ".join(argv), timeout)

    def _order(self, order: dict, line: str, timeout: float) -> Ran:
        self.run.transcript.note(f"$ {line}")
        os.write(self.orders_w, json.dumps(order).encode() + b"\n")
        report = self._report(timeout, what=line)
        ran = Ran(Exit.from_wait_status(report["status"]), report["stderr"])
        for text in ran.stderr.splitlines():
            self.run.transcript.note(f"stderr: {printable(text)}")
        self.run.transcript.note(str(ran.exit))
        return ran

    def _report(self, timeout: float, what: str = "") -> dict:
        """The driver's next report, reading the terminal (the transcript) while we wait."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"'{what}' did not end within {timeout:g} s",
                              seen=self.run.transcript.tail(),
                              hint="the solution must end by itself once it has done its work; "
                                   "it must not wait for input")
            terminal = self.run.term.child_fd
            ready, _, _ = select.select([self.reports_r, terminal], [], [], min(left, 0.5))
            if terminal in ready:
                with contextlib.suppress(Exception):  # EOF, timeout: nothing to read now
                    self.run.term.read_nonblocking(65536, timeout=0)
            if self.reports_r in ready:
                chunk = os.read(self.reports_r, 65536)
                if not chunk:
                    raise RuntimeError("the sandbox's driver ended")
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return json.loads(line)

    # In the sandbox: the driver --------------------------------------------------

    def _drive(self, argv: list[str]) -> list[str]:
        """The hook: report "ready", then run each order in a child; the child returns its argv."""
        os.close(self.reports_r)
        os.close(self.orders_w)
        self._send({"ready": True})
        orders = os.fdopen(self.orders_r, "rb", buffering=0)
        while True:
            line = _readline(orders)
            if not line:
                os._exit(0)  # the grader is gone
            order = json.loads(line)
            errors = os.memfd_create("stderr", 0)
            child = os.fork()
            if child == 0:
                os.dup2(errors, 2)
                os.close(errors)
                # The sandbox's start goes on: it closes every other descriptor and execs.
                return order.get("argv") or [argv[0], *order["args"]]
            _, status = os.waitpid(child, 0)
            text = os.pread(errors, STDERR_KEPT, 0).decode(errors="replace")
            os.close(errors)
            self._send({"status": status, "stderr": text})

    def _send(self, report: dict) -> None:
        os.write(self.reports_w, json.dumps(report).encode() + b"\n")

    # The end ---------------------------------------------------------------------

    def _close_sandbox_ends(self) -> None:
        # The sandbox has its own copies (fork); ours would only keep the pipes open.
        if self._sandbox_ends_open:
            self._sandbox_ends_open = False
            os.close(self.reports_w)
            os.close(self.orders_r)

    def close(self) -> None:
        self._close_sandbox_ends()
        if self.reports_r >= 0:
            os.close(self.reports_r)
            os.close(self.orders_w)
            self.reports_r = self.orders_w = -1


def _readline(stream) -> bytes:
    """One line from an unbuffered pipe, byte by byte (no read-ahead into the next order)."""
    line = b""
    while not line.endswith(b"\n"):
        byte = stream.read(1)
        if not byte:
            return b""
        line += byte
    return line
