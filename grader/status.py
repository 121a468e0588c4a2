"""One sentence that many contracts share: "The exit status of `solution` is COMMAND's".

EXERCISES.md defines it once (Workspace layout): COMMAND's exit code, or
128+N if COMMAND was killed by signal N (as a shell reports it; a solution
that execs COMMAND and so dies by the same signal meets this too).  Every
exercise whose contract says it judges it with the two checks here, and
only the start of the solution differs:

    from ..status import exit_code_check, signal_status_check

    @exercise.check(2, "the exit status is COMMAND's", needs=[runs_command])
    def exit_status(trial: Trial) -> None:
        exit_code_check(trial, lambda command: trial.run(trial.hostname(), *command))

    @exercise.check(1, "killed by signal N, COMMAND gives exit status 128+N", needs=[runs_command])
    def signal_status(trial: Trial) -> None:
        signal_status_check(trial, lambda command: trial.run(trial.hostname(), *command))

START(command) starts the solution with COMMAND (a list of words) where
the exercise's arguments put it, and returns the Session; or a Started,
when the end of the solution is not Session.wait() (a warden's run).

How they observe, from outside (grader/exits.py):

* exit_code_check: COMMAND (drawn_exit) sleeps a moment, then exits with a
  code that it draws itself at run time: nothing in its arguments says
  which.  The kernel reports how COMMAND really ended (the process events
  connector); the solution's status must be that code.
* signal_status_check: COMMAND (waiting) sleeps until the grader kills it,
  straight at COMMAND's PID, with a signal drawn from the usual ones
  (SIGHUP, SIGTERM ...) and then from the rarer ones (real-time signals
  among them); the solution's status must be 128+N, or death by N.

A solution that reads a status out of COMMAND's words, ends before COMMAND,
or kills COMMAND and reports a status of its own choosing fails.  Nothing
else is asked: how COMMAND is started (exec, fork+exec, a shell in
between), its terminal, its standard input.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass

from .engine import Trial
from .exits import (
    OTHER_SIGNALS,
    URANDOM,
    USUAL_SIGNALS,
    drawn_exit,
    expect_death_status,
    expect_status_of,
    kill,
    waiting,
)
from .observe import status_field
from .session import Exit, Session, signal_name

HINT_EXEC = ("run COMMAND with its arguments as they are, e.g. os.execvp(command[0], command), "
             "or start it as a child and wait for it")
HINT_CODE = ("wait for COMMAND and exit with its exit code (WEXITSTATUS(status), "
             "os.waitstatus_to_exitcode), or exec COMMAND in the solution's process")
HINT_SIGNAL = ("a child killed by signal N has no exit code: WIFSIGNALED/WTERMSIG (wait(2)); exit "
               "with 128+N, as a shell does (Python's returncode is then -N, and sys.exit(-N) "
               "gives 256-N, not 128+N), or exec COMMAND so that the solution dies by N itself")


@dataclass
class Started:
    """A solution started on a status check's COMMAND, and how to wait for its end."""

    run: Session
    finished: Callable[[], Exit] | None = None  # default: run.wait()

    def end(self) -> Exit:
        return self.finished() if self.finished else self.run.wait()


Start = Callable[[list[str]], "Session | Started"]


def _started(start: Start, command: list[str]) -> Started:
    begun = start(command)
    return begun if isinstance(begun, Started) else Started(begun)


def exit_code_check(trial: Trial, start: Start, hint: str = HINT_CODE, exec_hint: str = HINT_EXEC,
                    random: str = URANDOM) -> None:
    """Fail unless the solution exits with the code that COMMAND drew and exited with.

    RANDOM is where COMMAND's shell draws a number: exits.URANDOM (od(1) on
    /dev/urandom), or exits.SHELL_RANDOM where COMMAND runs in a root file
    system without /dev (busybox's $RANDOM).
    """
    exits = trial.watch_exits()
    command = drawn_exit(f"status-{trial.token()}", random=random)
    begun = _started(start, command)
    pid = begun.run.require(command, exec_hint)
    expect_status_of(exits.end_of(pid), begun.end(), hint=hint)


def signal_status_check(trial: Trial, start: Start, hint: str = HINT_SIGNAL,
                        exec_hint: str = HINT_EXEC) -> None:
    """Fail unless a COMMAND killed by signal N gives the solution status 128+N (or death by N).

    Twice: a usual signal, then a rarer one.
    """
    exits = trial.watch_exits()
    for pool in (USUAL_SIGNALS, OTHER_SIGNALS):
        sig = int(trial.choice(pool))
        command = waiting(trial.number(1, 999999))
        begun = _started(start, command)
        pid = begun.run.require(command, exec_hint)
        if namespace_init(pid):
            # PID 1 of a PID namespace (COMMAND exec'd as a container's init) ignores every
            # signal it has no handler for, but SIGKILL (pid_namespaces(7)): that one, then.
            sig = signal.SIGKILL
        begun.run.transcript.note(f"sends {signal_name(sig)} (signal {sig}) to COMMAND")
        kill(pid, sig, exits)
        expect_death_status(sig, begun.end(), hint=hint)


def namespace_init(pid: int) -> bool:
    """Is PID the PID 1 of its PID namespace (the last number of NSpid in /proc/PID/status)?"""
    return (status_field(pid, "NSpid") or "").split()[-1:] == ["1"]
