"""Exercise 8, ``timens``: a clock of your own (EXERCISES.md, section 8; bonus).

    solution SECONDS COMMAND [ARG...]

    Run COMMAND in a new time namespace whose CLOCK_MONOTONIC and
    CLOCK_BOOTTIME are SECONDS (a non-negative integer) ahead of the
    caller's: the first field of /proc/uptime read by COMMAND exceeds the
    caller's by SECONDS, within one second. CLOCK_REALTIME is unchanged.
    The exit status of solution is COMMAND's.

Every sentence is a check.  "The caller" is the sandbox's PID 1, which
started the solution.  COMMAND is a shell that waits for a line on its
terminal; while it waits, the grader compares COMMAND's time namespace
link with the caller's, and reads the clocks of COMMAND's namespace
between two readings of the caller's, microseconds apart
(grader/clocks.py: a reader process setns(2)'s into each in turn).
The uptime is what COMMAND itself reads: it cats /proc/uptime when the
grader types a line, and the grader reads the caller's uptime just before
and just after.  SECONDS is drawn on every run, from seconds to more than
2^32 (about 136 years; the kernel takes offsets up to about 146).

Which process is in the new namespace is the kernel's business, and
kernels differ: unshare(CLONE_NEWTIME) moves only the caller's future
children, and execve(2) moves the caller itself only since Linux 6.2 (the
lab VM runs 6.1).  The grader judges where COMMAND is, as the contract
says, and a failing check names the rule.

See time_namespaces(7), unshare(2), clock_gettime(2), proc(5) (/proc/uptime,
/proc/PID/timens_offsets), unshare(1) (--time, --monotonic, --boottime).
"""

from __future__ import annotations

import os
import re

from .. import observe, pause
from ..clocks import SideBySide, now_in, side_by_side
from ..engine import Exercise, Trial
from ..feedback import Fail
from ..sandbox import CAP_SYS_BOOT, CAP_SYS_MODULE, CAP_SYS_RAWIO, Limits
from ..session import START
from ..status import Start, exit_code_check, signal_status_check

# Writing a time namespace's offsets needs CAP_SYS_TIME: the sandbox keeps it here.
exercise = Exercise("timens", "a clock of your own (bonus)", namespaces=("time",),
                    limits=Limits(drop_capabilities=(CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_BOOT)))

HINT_EXEC = ("run COMMAND with its arguments as they are (os.execvp(command[0], command)) in a "
             "child born in the new time namespace, and wait for it")
HINT_ORDER = ("unshare(CLONE_NEWTIME), then write both offsets to /proc/self/timens_offsets "
              "(\"monotonic SECONDS 0\" and \"boottime SECONDS 0\", one line each) before any "
              "process enters the namespace, then fork(2): the child is born in it and runs "
              "COMMAND (lessons/10-time.ipynb, time_namespaces(7))")
HINT_ENTER = ("unshare(CLONE_NEWTIME) moves only the caller's future children "
              "(/proc/self/ns/time_for_children); execve(2) moves the caller itself only since "
              "Linux 6.2, and the lab VM runs 6.1: fork(2) after writing the offsets, and run "
              "COMMAND in the child (unshare(1): --fork)")


def draw_seconds(trial: Trial, size: str) -> int:
    """SECONDS for a run: "small" (up to a day) or "large" (68 to 139 years: past 2^31, or past 2^32)."""
    if size == "small":
        return trial.number(1, 86400)
    return trial.choice([trial.number(2**31 + 1, 2**32 - 1), trial.number(2**32 + 1, 4_400_000_000)])


class Held:
    """A run whose COMMAND says "ready TAG" and pauses on a FIFO until the grader lets it go on."""

    def __init__(self, trial: Trial, seconds: int, then: str = "") -> None:
        self.fifo = f"/tmp/pause-{trial.token()}"  # made in the sandbox, before the solution starts
        tag = f"timens-{trial.token()}"
        # "until": a read that meets the end of the grader's previous line (its writer
        # not closed yet when COMMAND opens the FIFO again) returns an error; read again.
        wait = f"until {pause.pause(self.fifo)}; do :; done"
        then = then.replace("PAUSE", wait)  # THEN may pause again
        command = ["/bin/sh", "-c", f'echo "ready $0"; {wait}; {then}echo "got bye $0"', tag]
        self.run = trial.run(str(seconds), *command, hook=self._prepare)
        self.run.expect(f"ready {tag}", timeout=START, what=f"COMMAND's first line 'ready {tag}'",
                        hint=HINT_EXEC)
        self.pid = self.run.require(command, HINT_EXEC)

    def _prepare(self, argv: list[str]) -> None:
        os.mkfifo(self.fifo, 0o600)

    def go_on(self) -> None:
        """Let COMMAND past its next pause."""
        pause.go_on(lambda: [f"/proc/{self.run.init_pid}/root{self.fifo}"])

    def release(self) -> None:
        """Let COMMAND go on to its end, and wait for the solution."""
        self.go_on()
        self.run.wait()


def clocks_of(trial: Trial, seconds: int) -> tuple[SideBySide, Held]:
    """COMMAND's clocks beside the caller's, read while COMMAND pauses."""
    held = Held(trial, seconds)
    both = side_by_side(held.pid, held.run.init_pid)
    if both is None:
        raise Fail("COMMAND ended before the grader could read its clocks",
                   hint="COMMAND must run until it ends by itself")
    return both, held


def why_off(offset: float, seconds: int, pid: int) -> str:
    """The likely mistake behind a clock that is OFFSET seconds ahead instead of SECONDS."""
    if abs(offset) < 1:
        if observe.namespace(pid, "time") != observe.namespace(pid, "time_for_children"):
            return HINT_ENTER
        return ("the offsets are zero: were they written after a process had entered the "
                "namespace?  The first process to enter freezes them, and later writes fail "
                "with EACCES (time_namespaces(7)). " + HINT_ORDER)
    if abs(offset + seconds) < 1:
        return ("the clock is behind, not ahead: the offset is added to the clock, so write "
                "+SECONDS. " + HINT_ORDER)
    if abs(offset - seconds / 1e9) < 1:
        return ("the offset went into the nanoseconds field: a line is \"CLOCK SECONDS "
                "NANOSECONDS\", e.g. \"monotonic 86400 0\". " + HINT_ORDER)
    return HINT_ORDER


def expect_ahead(trial: Trial, name: str, title: str) -> None:
    """Fail unless clock NAME of COMMAND's namespace is SECONDS ahead of the caller's, small and large."""
    for size in ("small", "large"):
        seconds = draw_seconds(trial, size)
        both, held = clocks_of(trial, seconds)
        low, high = both.ahead(name)
        hint = why_off((low + high) / 2, seconds, held.pid)
        held.release()
        if not both.within(name, seconds):
            raise Fail(f"COMMAND's {title} is not SECONDS ahead of the caller's",
                       expected=f"{seconds} s ahead (SECONDS={seconds}), within 1 s",
                       seen=f"{(low + high) / 2:.3f} s ahead", hint=hint)


# The checks ---------------------------------------------------------------------------

@exercise.check(1, "runs COMMAND")
def runs_command(trial: Trial) -> None:
    """"Run COMMAND in a new time namespace"

    COMMAND runs at all: COMMAND is /bin/echo with a random word, which must
    appear on the terminal.
    """
    word = f"timens-{trial.token()}"
    run = trial.run(str(draw_seconds(trial, "small")), "/bin/echo", word)
    run.expect(word, what=f"the output of COMMAND '/bin/echo {word}'", hint=HINT_EXEC)


@exercise.check(1, "passes COMMAND's arguments unchanged", needs=[runs_command])
def arguments_unchanged(trial: Trial) -> None:
    """"solution SECONDS COMMAND [ARG...]"

    Each ARG reaches COMMAND as it is: printf(1) prints random words, one
    with a space, "*", an empty word and one starting with "-".
    """
    words = [trial.token(), f"two {trial.token(4)}", "*", "", f"-{trial.token(3)}"]
    expected = "".join(f"[{w}]" for w in words)
    run = trial.run(str(draw_seconds(trial, "small")), "/usr/bin/printf", "[%s]", *words)
    run.expect(expected, what=f"printf's output {expected!r}",
               hint="pass every ARG as its own argument, without a shell in between and without "
                    "parsing options after COMMAND")


@exercise.check(2, "COMMAND runs in a new time namespace", needs=[runs_command])
def new_time_namespace(trial: Trial) -> None:
    """"Run COMMAND in a new time namespace"

    /proc/PID/ns/time of COMMAND (a shell that pauses on a FIFO) differs
    from the caller's (the sandbox's PID 1), read from outside.
    """
    held = Held(trial, draw_seconds(trial, "small"))
    inside, caller = observe.namespace(held.pid, "time"), observe.namespace(held.run.init_pid, "time")
    later = observe.namespace(held.pid, "time_for_children")
    held.release()
    if inside == caller:
        raise Fail("COMMAND runs in the caller's time namespace",
                   expected=f"a time namespace other than the caller's {caller}",
                   seen=f"/proc/PID/ns/time of COMMAND is {inside}"
                        + (f" (its time_for_children is {later})" if later != inside else ""),
                   hint=HINT_ENTER if later != inside else
                   "call unshare(CLONE_NEWTIME) before COMMAND starts, and start COMMAND in a "
                   "child born after it (fork(2)), not before")


@exercise.check(2, "COMMAND's CLOCK_MONOTONIC is SECONDS ahead of the caller's", needs=[runs_command])
def monotonic_ahead(trial: Trial) -> None:
    """"whose CLOCK_MONOTONIC and CLOCK_BOOTTIME are SECONDS (a non-negative integer) ahead of the caller's"

    While COMMAND pauses, a reader process of the grader's setns(2)'s into
    the caller's time namespace, COMMAND's, and the caller's again, and reads
    CLOCK_MONOTONIC in each (grader/clocks.py): COMMAND's must be SECONDS
    ahead, within one second.  Twice: SECONDS up to a day, then past 2^31
    or 2^32.
    """
    expect_ahead(trial, "monotonic", "CLOCK_MONOTONIC")


@exercise.check(2, "COMMAND's CLOCK_BOOTTIME is SECONDS ahead of the caller's", needs=[runs_command])
def boottime_ahead(trial: Trial) -> None:
    """"whose CLOCK_MONOTONIC and CLOCK_BOOTTIME are SECONDS (a non-negative integer) ahead of the caller's"

    As for CLOCK_MONOTONIC: CLOCK_BOOTTIME of COMMAND's time namespace,
    read between two readings of the caller's, twice, with SECONDS small
    and large.
    """
    expect_ahead(trial, "boottime", "CLOCK_BOOTTIME")


UPTIME = re.compile(r"(\d+\.\d+) \d+\.\d+")


@exercise.check(2, "the uptime COMMAND reads exceeds the caller's by SECONDS, within 1 s",
                needs=[runs_command])
def uptime_ahead(trial: Trial) -> None:
    """"the first field of /proc/uptime read by COMMAND exceeds the caller's by SECONDS, within one second."

    COMMAND itself cats /proc/uptime when the grader lets it go on; the
    grader reads the caller's uptime just before and just after.
    """
    seconds = draw_seconds(trial, trial.choice(["small", "large"]))
    held = Held(trial, seconds, then="cat /proc/uptime; PAUSE; ")
    before = now_in(held.run.init_pid)
    held.go_on()
    held.run.expect(UPTIME, what="the line of /proc/uptime that COMMAND cats")
    after = now_in(held.run.init_pid)
    if before is None or after is None:
        raise RuntimeError("the caller is gone while its solution runs")
    seen = float(held.run.match.group(1))
    hint = why_off(seen - before["uptime"], seconds, held.pid)
    held.release()
    # COMMAND read its uptime at some moment between the grader's two readings,
    # so it is ahead of the caller's by LOW..HIGH; on a slow machine that window
    # is wide.  The sentence holds if some moment of it is SECONDS ahead within
    # one second (and /proc/uptime has two decimals: 0.01 s more slack).
    low, high = seen - after["uptime"], seen - before["uptime"]
    if not (low <= seconds + 1.01 and high >= seconds - 1.01):
        raise Fail("the uptime COMMAND reads does not exceed the caller's by SECONDS",
                   expected=f"{seconds} s more than the caller's (SECONDS={seconds}), within 1 s",
                   seen=f"{seen:.2f}, {high:.2f} s more than the caller's", hint=hint)


@exercise.check(1, "COMMAND's CLOCK_REALTIME is the caller's", needs=[runs_command])
def realtime_unchanged(trial: Trial) -> None:
    """"CLOCK_REALTIME is unchanged."

    CLOCK_REALTIME of COMMAND's time namespace, read between two readings
    of the caller's (grader/clocks.py), is the same within one second.
    """
    both, held = clocks_of(trial, draw_seconds(trial, "large"))
    held.release()
    low, high = both.ahead("realtime")
    if not both.within("realtime", 0):
        raise Fail("COMMAND's CLOCK_REALTIME differs from the caller's",
                   expected="the same wall-clock time", seen=f"{(low + high) / 2:+.3f} s",
                   hint="a time namespace has no realtime offset: leave the wall clock alone "
                        "(no settimeofday(2), no faked clock_gettime)")


def start_timens(trial: Trial) -> Start:
    """How the status checks start the solution: a fresh SECONDS, then COMMAND."""
    return lambda command: trial.run(str(draw_seconds(trial, "small")), *command)


@exercise.check(1, "the exit status is COMMAND's", needs=[runs_command])
def exit_status(trial: Trial) -> None:
    """"The exit status of solution is COMMAND's."

    grader/status.py: COMMAND exits with a code it draws itself; the kernel
    reports how it ended; the solution's status must be that code.
    """
    exit_code_check(trial, start_timens(trial))


@exercise.check(1, "killed by signal N, COMMAND gives exit status 128+N", needs=[runs_command])
def signal_status(trial: Trial) -> None:
    """"or 128+N if COMMAND was killed by signal N (as a shell reports it; a solution that execs COMMAND and so dies by the same signal meets this too)."

    grader/status.py: the grader kills COMMAND with a usual signal, then a
    rarer one; the solution's status must be 128+N, or death by N.
    """
    signal_status_check(trial, start_timens(trial))
