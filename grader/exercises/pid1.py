"""Exercise 4, ``pid1``: an init that reaps (EXERCISES.md, section 4).

    solution COMMAND [ARG...]

    The grader starts solution as PID 1 of a new PID namespace (with a
    matching /proc). solution must:
    - start COMMAND as its child;
    - reap every process that ends up as its child, including orphans
      reparented to it, so that no zombie lives for more than one second;
    - forward SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 that it
      receives to COMMAND;
    - when COMMAND exits, exit with COMMAND's exit status, or with 128+N if
      COMMAND was killed by signal N.
    Well-known inits such as tini and dumb-init meet this contract.

The grader starts the solution with grader.hooks.as_pid1: a process of the
sandbox unshares a PID and a mount namespace and forks; its child is PID 1
there, mounts /proc, and execs the solution.  Everything is watched from
outside, where every process of the namespace has a PID of the grader's:

* COMMAND's parent is the solution (PPid in /proc/PID/status), and the
  solution is PID 1 of its namespace (the last NSpid).
* Zombies: COMMAND (a shell) makes orphans with ``(sleep T &)``: the
  subshell exits, and its sleep is reparented to PID 1.  The grader reads
  the state of every process below the solution (/proc/PID/stat) every few
  milliseconds: none but COMMAND's own children may stay in state Z for
  more than one second.  A first batch of orphans ends while the grader
  holds the solution stopped, so that their SIGCHLDs arrive as one.
* Signals: COMMAND traps the six signals and prints a line for each; the
  grader sends each to the solution's PID, never to COMMAND.  (PID 1 gets
  only the signals it has a handler for, or blocks: pid_namespaces(7).)
* Exit status: COMMAND exits with a code it draws itself, or the grader
  kills it with a signal of its choice, sometimes leaving an orphan
  running; the kernel reports how COMMAND really ended (grader/exits.py),
  and the solution must then end at once, with COMMAND's status.

See pid_namespaces(7), wait(2), sigwaitinfo(2), signal(7), proc(5), and
the sources of tini and dumb-init.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from .. import observe, pause
from ..engine import Exercise, Trial
from ..exits import drawn_exit, expect_status_of
from ..feedback import Fail, Timeout
from ..hooks import as_pid1
from ..inits import FORWARDED, ZOMBIE_LIMIT, forward_and_collect, trapping_command, watch_zombies
from ..session import START, Session
from ..status import exit_code_check, signal_status_check

exercise = Exercise("pid1", "an init that reaps")

HINT_EXEC = ("fork(2) a child that execs COMMAND with its arguments as they are "
             "(os.execvp(command[0], command)); the solution itself stays, as PID 1")
HINT_REAP = ("every child that ends must be waited for, not only COMMAND: loop on "
             "waitpid(-1, ...) (wait(2)) whenever SIGCHLD comes, e.g. with sigwaitinfo(2) "
             "as tini does (lessons/05-pid.ipynb)")


def solution_of(run: Session, timeout: float = START) -> int | None:
    """The solution's PID: the child of the process that as_pid1 leaves between it and the sandbox."""
    middle = run.solution_pid(timeout)
    deadline = time.monotonic() + timeout
    while middle is not None and time.monotonic() < deadline:
        kids = observe.children(middle)
        if kids:
            return kids[0]
        time.sleep(0.01)
    return None


# Orphans of three kinds: in COMMAND's process group, in a process group of
# their own (setpgid(2), by perl), in a session of their own (setsid(1)).
ORPHAN_KINDS = ("group", "own-group", "session")


def orphan_kind(kind: str, seconds: float) -> str:
    """A shell command that sleeps SECONDS in a process of KIND (see ORPHAN_KINDS)."""
    if kind == "own-group":
        return f"perl -e 'setpgrp(0, 0); select(undef, undef, undef, {seconds})'"
    if kind == "session":
        return f"setsid sleep {seconds}"
    return f"sleep {seconds}"


def start_holding(trial: Trial, before: str = "") -> tuple[Session, int, int]:
    """Start the solution with a COMMAND that runs BEFORE, says "ready TAG", and pauses.

    COMMAND pauses by reading a FIFO of its own (pause()) until the grader
    writes a line into it (go_on()): nothing is typed on the terminal, so an
    init that gives COMMAND no standard input, or runs it in a process group
    of its own, is held the same way.  Returns the run, the solution's PID
    and COMMAND's.
    """
    tag = f"pid1-{trial.token()}"
    fifo = pause_fifo(trial)
    command = ["/bin/sh", "-c", f"mkfifo {fifo}; {before}"
               f'echo "ready $0"; {pause.pause(fifo)}; echo "got bye $0"', tag]
    run = trial.run(*command, hook=as_pid1)
    run.expect(f"ready {tag}", timeout=START, what=f"COMMAND's first line 'ready {tag}'", hint=HINT_EXEC)
    solution = solution_of(run)
    pid = run.find(command) or run.find(tag)
    if solution is None or pid is None:
        raise Fail("COMMAND printed its first line, but then no process in the sandbox runs it",
                   hint="COMMAND must keep running until it ends by itself")
    return run, solution, pid


# COMMAND pauses on FIFOs it makes itself in /tmp (grader/pause.py).
PAUSES = "/tmp/pid1-pause-"


def pause_fifo(trial: Trial) -> str:
    """The path of a new FIFO for COMMAND to make (mkfifo) and pause on."""
    return f"{PAUSES}{trial.token()}"


def go_on(run: Session) -> None:
    """End COMMAND's pause, through the sandbox's /tmp (/proc/PID/root of its PID 1)."""
    folder = f"/proc/{run.init_pid}/root{os.path.dirname(PAUSES)}"

    def fifos() -> list[str]:
        with contextlib.suppress(OSError):
            return [f"{folder}/{n}" for n in os.listdir(folder) if f"/tmp/{n}".startswith(PAUSES)]
        return []
    pause.go_on(fifos)


def release(run: Session) -> None:
    """Let the holding COMMAND go on and end; it must still be there to say so."""
    go_on(run)
    run.expect("got bye", timeout=5, what="COMMAND's last line 'got bye', once the grader ended its pause",
               hint="COMMAND must run until it ends by itself: the solution stays, as PID 1, "
                    "as long as COMMAND runs")
    run.wait()


# The checks -------------------------------------------------------------------------

@exercise.check(1, "runs COMMAND")
def runs_command(trial: Trial) -> None:
    """"start COMMAND as its child;"

    COMMAND runs at all: /bin/echo with a random word, which must appear on
    the terminal.
    """
    word = f"pid1-{trial.token()}"
    run = trial.run("/bin/echo", word, hook=as_pid1)
    run.expect(word, timeout=START, what=f"the output of COMMAND '/bin/echo {word}'", hint=HINT_EXEC)


@exercise.check(1, "passes COMMAND's arguments unchanged", needs=[runs_command])
def arguments_unchanged(trial: Trial) -> None:
    """"solution COMMAND [ARG...]"

    Each ARG reaches COMMAND as it is: printf(1) prints random words, one
    with a space, "*", an empty word and one starting with "-".
    """
    words = [trial.token(), f"two {trial.token(4)}", "*", "", f"-{trial.token(3)}"]
    expected = "".join(f"[{w}]" for w in words)
    run = trial.run("/usr/bin/printf", "[%s]", *words, hook=as_pid1)
    run.expect(expected, timeout=START, what=f"printf's output {expected!r}",
               hint="pass every ARG as its own argument, without a shell in between and without "
                    "parsing options after COMMAND")


@exercise.check(2, "COMMAND runs as a child of the solution", needs=[runs_command])
def command_is_child(trial: Trial) -> None:
    """"start COMMAND as its child;"

    The kernel says whose child COMMAND is: its PPid in /proc/PID/status,
    read from outside while COMMAND pauses (on a FIFO of its own, not on the
    terminal), is the solution's PID, and the solution is PID 1 of its
    namespace (the last NSpid).  COMMAND's process group, session and
    standard input are the solution's choice.
    """
    run, solution, pid = start_holding(trial)
    parent = observe.status_field(pid, "PPid")
    nspid = (observe.status_field(solution, "NSpid") or "").split()
    release(run)
    if nspid[-1:] != ["1"]:
        raise RuntimeError(f"the solution is not PID 1 of its namespace (NSpid {nspid})")
    if pid == solution:
        raise Fail("COMMAND replaced the solution: the solution exec'd it",
                   hint="an init must stay: fork(2), exec COMMAND in the child, and go on "
                        "reaping and forwarding signals in the parent")
    if parent != str(solution):
        raise Fail("COMMAND's parent is not the solution",
                   expected=f"PPid {solution} (the solution, PID 1)", seen=f"PPid {parent}",
                   hint="start COMMAND with fork(2) (or subprocess) from the solution itself, "
                        "not from a helper process or a shell in between")


@exercise.check(3, "reaps every child, orphans too: no zombie lives more than 1 s",
                needs=[runs_command])
def reaps_orphans(trial: Trial) -> None:
    """"reap every process that ends up as its child, including orphans reparented to it,
    so that no zombie lives for more than one second;"

    COMMAND leaves orphans ((sleep T &)) in two batches, the first ending
    while the grader holds the solution stopped (their SIGCHLDs arrive as
    one), the second ending one by one over about three seconds, in
    COMMAND's process group, in other process groups and in other sessions.
    The grader reads the state of every process below the solution
    (/proc/PID/stat) every 20 ms for all that time: none but COMMAND's own
    children may stay in state Z for more than one second (counted from
    when the grader first sees it).
    """
    # Two batches of orphans: COMMAND's subshells exit at once, so their sleeps are
    # reparented to PID 1.  The first batch ends while the grader holds the solution
    # stopped (SIGSTOP, which an ancestor namespace may send to a PID 1): their
    # SIGCHLDs arrive as one, as they may on any busy machine, and one waitpid(2)
    # per SIGCHLD is not enough.  The second batch ends while the solution runs.
    # The second batch ends over about three seconds, one orphan every 0.4 s or
    # so, each in COMMAND's process group, in a process group of its own, or in
    # a session of its own: a reaper that wakes only now and then (every 2 s),
    # or waits only for its own process group (waitpid(0)), leaves one of them
    # a zombie for more than a second.
    first = [trial.number(2, 4) / 10 for _ in range(3)]
    later = [round(0.2 + 0.4 * k + trial.number(0, 15) / 100, 2) for k in range(7)]
    kinds = [orphan_kind(trial.choice(ORPHAN_KINDS), t) for t in later]
    trial.random.shuffle(kinds)
    tag = f"pid1-{trial.token()}"
    one, two = pause_fifo(trial), pause_fifo(trial)
    script = (f"mkfifo {one} {two}; for t in {' '.join(map(str, first))}; do (sleep $t &); done; "
              f'echo "ready $0"; {pause.pause(one)}; '
              + "".join(f"({kind} &); " for kind in kinds) +
              f'echo "started $0"; {pause.pause(two)}; echo "got bye $0"')
    command = ["/bin/sh", "-c", script, tag]
    run = trial.run(*command, hook=as_pid1)
    run.expect(f"ready {tag}", timeout=START, what=f"COMMAND's first line 'ready {tag}'", hint=HINT_EXEC)
    solution, pid = solution_of(run), run.find(command) or run.find(tag)
    if solution is None or pid is None:
        raise Fail("COMMAND printed its first line, but then no process in the sandbox runs it",
                   hint="COMMAND must keep running until it ends by itself")
    run.transcript.note(f"stops the solution while {len(first)} orphans end, then lets it go on")
    os.kill(solution, signal.SIGSTOP)
    try:
        time.sleep(max(first) + 0.15)
    finally:
        os.kill(solution, signal.SIGCONT)
    go_on(run)
    run.expect(f"started {tag}", timeout=5, what=f"COMMAND's second line 'started {tag}'")
    run.transcript.note(f"COMMAND leaves {len(later)} more orphans, some in other process groups "
                        f"and sessions, which end after {' '.join(map(str, later))} s; the grader "
                        "watches for zombies")
    worst = watch_zombies(solution, pid, until=time.monotonic() + max(later) + ZOMBIE_LIMIT + 0.3)
    release(run)
    if worst:
        raise Fail("an orphan that ended stayed a zombie (state Z) for more than 1 s",
                   seen=f"PID {worst} (as the grader numbers it), still in state Z",
                   hint=HINT_REAP)


@exercise.check(3, "forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to COMMAND",
                needs=[runs_command])
def forwards_signals(trial: Trial) -> None:
    """"forward SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 that it receives to COMMAND;"

    The grader sends the six signals to the solution's PID, never to
    COMMAND, in two rounds of random order, each signal twice in a row,
    waiting for COMMAND's report of one (up to 2 s) before it sends the
    next; halfway, it stops COMMAND (SIGSTOP) and continues it (SIGCONT).
    A signal sent again while the first is still held back is lost: an
    init that forwards only once, or only in an order of its own, is caught
    whatever order it picked (a single shuffle let such an init through one
    time in five).  COMMAND (a shell) traps each
    signal and prints a line naming it.  Points in proportion to the
    signals that arrive as often as they were sent.
    """
    tag = f"pid1-{trial.token()}"
    command = trapping_command(tag)
    run = trial.run(*command, hook=as_pid1)
    run.expect(f"ready {tag}", timeout=START, what=f"COMMAND's first line 'ready {tag}'", hint=HINT_EXEC)
    solution = solution_of(run)
    if solution is None:
        raise Fail("the solution is gone after COMMAND started", hint=HINT_EXEC)
    # Two rounds; in each, the six signals in random order, each twice in a row
    # and each sent once COMMAND has reported the one before; halfway, COMMAND
    # is stopped and continued (SIGSTOP, SIGCONT), and the init must go on.
    order = []
    for _ in range(2):
        signals = list(FORWARDED)
        trial.random.shuffle(signals)
        order += [sig for sig in signals for _ in range(2)]
    pid = run.find(command) or run.find(tag)

    def stop_and_continue(i: int) -> None:
        if i == len(order) // 2 - 1 and pid is not None:
            run.transcript.note("stops COMMAND (SIGSTOP), then continues it (SIGCONT)")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                time.sleep(0.3)
                os.kill(pid, signal.SIGCONT)

    got, missing = forward_and_collect(run, solution, tag, order, between=stop_and_continue)
    if missing:
        share = 3 * (len(FORWARDED) - len(missing)) / len(FORWARDED)
        raise Fail(f"COMMAND did not receive every signal sent to the solution: {', '.join(missing)}",
                   expected="each of the six signals passed on to COMMAND (kill(2)) every time "
                            "it comes, in whatever order, also after COMMAND was stopped and "
                            "continued",
                   seen=f"COMMAND reported {len(got)} of 6 at least once", points=round(max(share, 0), 2),
                   hint="as PID 1 the solution gets only signals it handles: install a handler "
                        "(or block them and take them with sigwaitinfo(2)) and kill(COMMAND, sig), "
                        "each time; a stopped COMMAND (WIFSTOPPED) has not ended")


@exercise.check(2, "the exit status is COMMAND's", needs=[runs_command])
def exit_status(trial: Trial) -> None:
    """"when COMMAND exits, exit with COMMAND's exit status"

    grader/status.py: COMMAND exits with a code it draws itself; the kernel
    reports how it ended; the solution's status must be that code.
    """
    exit_code_check(trial, lambda command: trial.run(*command, hook=as_pid1), exec_hint=HINT_EXEC,
                    hint="exit with WEXITSTATUS of COMMAND's wait status (os.waitstatus_to_exitcode), "
                         "not with the raw status that waitpid(2) returns")


@exercise.check(1, "killed by signal N, COMMAND gives exit status 128+N", needs=[runs_command])
def signal_status(trial: Trial) -> None:
    """"or with 128+N if COMMAND was killed by signal N."

    grader/status.py: the grader kills COMMAND with a usual signal, then a
    rarer one; the solution's status must be 128+N.
    """
    signal_status_check(trial, lambda command: trial.run(*command, hook=as_pid1), exec_hint=HINT_EXEC,
                        hint="a child killed by signal N has no exit code: WIFSIGNALED/WTERMSIG "
                             "(wait(2)); exit with 128+N.  (PID 1 cannot kill itself with the "
                             "same signal.)")


@exercise.check(1, "exits as soon as COMMAND exits, though orphans still run", needs=[runs_command])
def exits_with_command(trial: Trial) -> None:
    """"when COMMAND exits, exit with COMMAND's exit status"

    COMMAND leaves an orphan that sleeps 60 s and exits with a code it
    draws: the solution must end within 3 s of COMMAND's end (not wait for
    the orphan), with that code.
    """
    exits = trial.watch_exits()
    command = drawn_exit(f"pid1-{trial.token()}")
    command[2] = "(sleep 60 &); " + command[2]
    run = trial.run(*command, hook=as_pid1)
    run.transcript.note("COMMAND leaves an orphan that sleeps 60 s, and exits")
    pid = run.require(command, HINT_EXEC)
    try:
        ended = run.wait(timeout=3)  # an init that exits "as soon as" takes milliseconds
    except Timeout:
        raise Fail("COMMAND exited, but the solution went on waiting for the orphan it left",
                   hint="exit as soon as COMMAND has ended; the kernel then kills every other "
                        "process of the namespace (pid_namespaces(7))") from None
    expect_status_of(exits.end_of(pid), ended,
                     hint="remember COMMAND's status when you reap it, whatever else you reap")


