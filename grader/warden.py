"""The warden: start a solution from a process that waits for it, and keep the sandbox.

The sandbox's PID 1 ends as soon as the solution does, and the sandbox
with it.  A check that looks at the sandbox before the solution starts
(to plant a file from outside, to take the host's measures) or after it
ended needs a process that outlives the solution and holds the sandbox
open: the warden, started by the sandbox's hook.  Exercises escape and
jail start their solutions this way; grader/hooks.py has the other ways.

    SCRATCH          the sandbox's fresh tmpfs file systems, to build jails and hide files in
    Warden           the hook, and the grader's side of its two pipes
    in_sandbox       a path of the sandbox, as the grader reaches it (/proc/WARDEN/root/...)
    output           what the solution printed, without the grader's notes

See fork(2), waitpid(2), pipe(2), proc(5) (/proc/PID/root).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable

import pexpect

from labkit import procfs

from . import observe
from .feedback import Fail, Timeout
from .session import START, Exit, Session

# Where the sandbox has fresh tmpfs file systems to build jails and hide secrets in.
SCRATCH = ("/tmp", "/run", "/var/tmp", "/dev/shm")

class Warden:
    """Start the solution from a process that waits for it and then stays: the warden.

    The sandbox calls ``hook`` in the solution's process, right before
    execve(2).  The hook does::

        prepare(argv)            build what the solution needs (a jail, a secret)
        "ready"  ----------->    the grader takes its "before" look (Warden.started)
                 <-----------    "go"                             (Warden.go)
        fork() ------------->    the child: enter(argv) (chroot ...), execve(solution)
        the warden: waitpid(child)
        "exit STATUS" ------>    the grader takes its "after" look (Warden.finished)
                 <-----------    "end"                            (Warden.release)
        exit as the solution did, so that Session.wait() sees its status

    PREPARE and ENTER run in the sandbox, after the kit's folders are hidden:
    they may use only modules that are already imported.  They may return
    another argument vector.
    """

    def __init__(self, prepare: Callable[[list[str]], list[str] | None] | None = None,
                 enter: Callable[[list[str]], list[str] | None] | None = None) -> None:
        self.prepare, self.enter = prepare, enter
        self.events_r, self.events_w = os.pipe2(os.O_CLOEXEC)  # sandbox -> grader
        self.orders_r, self.orders_w = os.pipe2(os.O_CLOEXEC)  # grader -> sandbox
        self.pid: int | None = None  # the warden, as the grader numbers it
        self.exit: Exit | None = None
        self._ready = False
        self._events = b""
        self._sandbox_ends_open = True

    # In the sandbox: the hook ----------------------------------------------------

    def hook(self, argv: list[str]) -> list[str]:
        os.close(self.events_r)
        os.close(self.orders_w)
        try:
            argv = (self.prepare(argv) if self.prepare else None) or argv
        except BaseException as e:  # noqa: BLE001 - the grader's fault: say so, and stop
            self._send(f"error preparing the sandbox: {type(e).__name__}: {e}")
            os._exit(127)
        self._send("ready")
        if self._order() != b"g":
            os._exit(127)
        child = os.fork()
        if child == 0:
            try:
                return (self.enter(argv) if self.enter else None) or argv
            except BaseException as e:  # noqa: BLE001
                self._send(f"error starting the solution: {type(e).__name__}: {e}")
                os._exit(127)
            finally:
                os.close(self.events_w)
                os.close(self.orders_r)
        self._watch(child)

    def _watch(self, child: int) -> None:
        """The warden's life: wait for the solution, report, wait for "end", end like it."""
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):  # the terminal is the solution's: no output of ours, no hold on it
            os.dup2(null, fd)
        _, status = os.waitpid(child, 0)
        self._send(f"exit {status}")
        self._order()
        if os.WIFSIGNALED(status):
            os.kill(os.getpid(), os.WTERMSIG(status))  # default dispositions: ends us the same way
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(os.WEXITSTATUS(status))

    def _send(self, event: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self.events_w, event.encode() + b"\n")

    def _order(self) -> bytes:
        try:
            return os.read(self.orders_r, 1)
        except OSError:
            return b""

    # In the grader ---------------------------------------------------------------

    def started(self, run: Session, timeout: float = 15) -> int:
        """Wait until the sandbox is prepared; return the warden's PID (nothing runs yet)."""
        self._close_sandbox_ends()
        self._next_event("ready", run, timeout)
        self.pid = run.solution_pid()
        if self.pid is None:
            raise RuntimeError("the sandbox's warden process is gone before it started the solution")
        return self.pid

    def go(self) -> None:
        """Let the warden start the solution."""
        os.write(self.orders_w, b"g")

    def solution_pid(self, timeout: float = START) -> int | None:
        """The PID of the solution's process (the warden's only child), once it runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = observe.children(self.pid) if self.pid else []
            if kids:
                return kids[0]
            if self.exit is not None:
                return None
            time.sleep(0.01)
        return None

    def expect(self, run: Session, pattern: str, timeout: float = START, what: str = "",
               hint: str = "") -> None:
        """Session.expect, but it also notices when the solution ends (its warden stays)."""
        what = what or repr(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                run.expect(pattern, timeout=0.2, what=what, hint=hint)
                return
            except Timeout:
                if run.transcript.flooded:
                    raise
            self._poll_events()
            if self.exit is not None:
                with contextlib.suppress(Timeout):
                    run.expect(pattern, timeout=0.5, what=what, hint=hint)
                    return
                raise Fail(f"the solution ended ({self.exit}) before it printed {what}",
                           expected=what, seen=run.transcript.tail(), hint=hint)
            if time.monotonic() > deadline:
                raise Timeout(f"no answer within {timeout:g} s: waited for {what}",
                              expected=what, seen=run.transcript.tail(), hint=hint)

    def _poll_events(self) -> None:
        if select.select([self.events_r], [], [], 0)[0]:
            self._read_events()
        else:
            self._check_warden()

    def finished(self, run: Session, timeout: float = 15) -> Exit:
        """Wait for the solution to end, reading its output; the sandbox stays as it left it."""
        if self.exit is None:
            self._next_event("exit", run, timeout)
        return self.exit

    def release(self) -> None:
        """Let the warden end (as the solution ended), and the sandbox with it."""
        with contextlib.suppress(OSError):
            os.write(self.orders_w, b"e")

    def close(self) -> None:
        self._close_sandbox_ends()
        for fd in (self.events_r, self.orders_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Warden:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _close_sandbox_ends(self) -> None:
        # The sandbox's processes have their own copies (fork); ours would only
        # keep the pipes open.
        if self._sandbox_ends_open:
            self._sandbox_ends_open = False
            os.close(self.events_w)
            os.close(self.orders_r)

    def _next_event(self, kind: str, run: Session, timeout: float) -> None:
        """Read events until one of KIND ("ready", "exit") came, and the solution's output meanwhile."""
        deadline = time.monotonic() + timeout
        terminal: int | None = run.term.child_fd
        while not (self._ready if kind == "ready" else self.exit is not None):
            left = deadline - time.monotonic()
            if left <= 0 and kind == "ready":
                raise RuntimeError(f"the grader waited {timeout:g} s for the sandbox to be ready")
            if left <= 0:
                raise Timeout(f"the solution did not end within {timeout:g} s",
                              seen=run.transcript.tail(),
                              hint="it must end by itself once it has done its work")
            watched = [self.events_r] + ([terminal] if terminal is not None else [])
            ready, _, _ = select.select(watched, [], [], min(left, 0.5))
            if terminal in ready and not _read_output(run):
                terminal = None  # end of file: nobody holds the terminal any more
            if self.events_r in ready:
                self._read_events()
            elif not ready:
                self._check_warden()
        if kind == "exit":
            _drain(run)

    def _read_events(self) -> None:
        chunk = os.read(self.events_r, 4096)
        if not chunk:  # every copy of the pipe is closed: the sandbox is gone
            self._check_warden(grace=2.0)
            raise RuntimeError("the sandbox ended before the grader's warden reported")
        self._events += chunk
        while True:
            line, newline, rest = self._events.partition(b"\n")
            if not newline:
                return
            self._events = rest
            word, _, detail = line.decode().partition(" ")
            if word == "error":
                raise RuntimeError(detail)
            self._ready = self._ready or word == "ready"
            if word == "exit":
                self.exit = Exit.from_wait_status(int(detail))

    def _check_warden(self, grace: float = 0.0) -> None:
        """A warden that is gone without a word was killed: by the solution, inside the sandbox.

        GRACE: seconds to wait for it to be gone.  When the pipe shows the end
        of the sandbox, a killed warden has closed its files but may not be a
        zombie yet (the kernel closes a process's files first, in do_exit).
        """
        if self.pid is None or self.exit is not None:
            return
        deadline = time.monotonic() + grace
        while True:
            try:
                state = procfs.stat_fields(self.pid)[0]
            except (OSError, IndexError):
                state = "gone"
            if state in ("Z", "X", "gone") or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if state in ("Z", "X", "gone"):
            raise Fail("the run was cut short: the process of the grader's that started the "
                       "solution and waits for it was killed",
                       hint="kill only processes that you started (not kill -1, not every PID)")


def _read_output(run: Session) -> bool:
    """Read what the program printed into the run's transcript; False at end of file."""
    try:
        run.term.read_nonblocking(65536, timeout=0)
    except pexpect.TIMEOUT:
        if run.transcript.flooded:
            raise Fail(f"the program printed more than {run.limits.output // 1024} KiB; the grader "
                       "stopped reading and ended it",
                       hint="print only what the exercise asks for") from None
    except pexpect.EOF:
        return False
    return True


def _drain(run: Session) -> None:
    """Read what is still on its way from the terminal."""
    while select.select([run.term.child_fd], [], [], 0.05)[0]:
        if not _read_output(run):
            return


def output(run: Session) -> str:
    """Everything the solution printed so far, without the grader's notes."""
    text = run.transcript.text.replace("\r\n", "\n")
    return "\n".join(line for line in text.split("\n") if not line.startswith("[grader]"))



def in_sandbox(warden: Warden, path: str) -> str:
    """PATH of the sandbox, as the grader reaches it: through /proc/PID/root of the warden."""
    return f"/proc/{warden.pid}/root{path}"

