"""Exercise pid1: the grader's premises, seen by other tools, and hostile solutions.

The references (tini and dumb-init among them), the starter and the
mutants are graded by tests/test_grader_selftest.py (once for the whole
suite).

The checks watch the solution from outside; here other tools confirm what
they rely on: ps(1) run inside the solution's namespaces (nsenter --pid
--mount) sees the solution as PID 1 and only the namespace's processes,
and ps(1) from outside sees the zombies that a careless init leaves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from grader import selftest
from grader.engine import Exercise, Trial, grade_exercise
from grader.exercises import all_exercises
from grader.exercises.pid1 import release, start_holding
from grader.feedback import Status
from grader.sandbox import hidden_paths

KIT = Path(__file__).resolve().parent.parent
PID1 = all_exercises()["pid1"]
MUTANTS = [c for c in selftest.cases(PID1) if c.kind == "mutant"]
REFERENCE = KIT / "solutions" / "pid1"


def grade(folder: Path, exercise: Exercise = PID1):
    result = grade_exercise(exercise, folder, hidden_paths(folder.parent))
    return {c.name: c for c in result.checks}, result


# The premises, seen by other tools ------------------------------------------------------

def observed(folder: Path, look, before: str = "") -> dict:
    """Grade FOLDER with one check that holds COMMAND (after BEFORE), then LOOK(solution, command, facts)."""
    facts: dict = {}
    probe = Exercise("pid1", "probe")

    @probe.check(1, "look")
    def look_at_it(trial: Trial) -> None:
        run, solution, command = start_holding(trial, before)
        look(solution, command, facts)
        release(run)

    checks, _ = grade(folder, probe)
    assert checks["look_at_it"].status is Status.PASSED, checks["look_at_it"].message
    return facts


def test_the_solution_is_pid_1_with_a_proc_of_its_namespace():
    def look(solution: int, command: int, facts: dict) -> None:
        facts["ps"] = subprocess.run(
            ["nsenter", f"--target={solution}", "--pid", "--mount", "ps", "-e", "-o", "pid=,ppid=,args="],
            capture_output=True, text=True, timeout=10).stdout

    rows = [line.split(None, 2) for line in observed(REFERENCE, look)["ps"].splitlines()]
    by_pid = {int(pid): (int(ppid), args) for pid, ppid, args in rows if not args.startswith("ps ")}
    assert by_pid[1][0] == 0 and "/tmp/exercise/solution" in by_pid[1][1]
    command = [pid for pid, (ppid, args) in by_pid.items() if args.startswith("/bin/sh -c")]
    assert len(command) == 1 and by_pid[command[0]][0] == 1  # COMMAND, the child of PID 1
    assert all(ppid != 0 for pid, (ppid, _) in by_pid.items() if pid != 1)  # all born inside


ORPHANS = "for t in 0.1 0.2; do (sleep $t &); done; "


def zombie_children(solution: int, wait: float = 5) -> list[str]:
    """ps's view of SOLUTION's children once the orphans (sleep 0.1, 0.2) have ended."""
    deadline = time.monotonic() + wait
    while True:
        rows = subprocess.run(["ps", "-o", "stat=,args=", "--ppid", str(solution)],
                              capture_output=True, text=True).stdout.splitlines()
        sleeping = [r for r in rows if r.split(None, 1)[1].startswith("sleep ") and not r.startswith("Z")]
        if not sleeping or time.monotonic() > deadline:
            return [r for r in rows if r.startswith("Z")]
        time.sleep(0.05)


def test_ps_sees_the_zombies_of_an_init_that_waits_only_for_command():
    careless = next(c.folder for c in MUTANTS if c.folder.name == "waits_only_for_command")

    def look(solution: int, command: int, facts: dict) -> None:
        time.sleep(0.3)  # let both orphans end; whether they are reaped is the question
        facts["zombies"] = zombie_children(solution)

    assert len(observed(careless, look, ORPHANS)["zombies"]) == 2


def stopped_while_orphans_end(solution: int, command: int, facts: dict) -> None:
    """Hold the solution stopped while both orphans end, as reaps_orphans does; then look."""
    os.kill(solution, signal.SIGSTOP)
    try:
        time.sleep(0.4)
        facts["stopped"] = subprocess.run(["ps", "-o", "stat=", "-p", str(solution)],
                                          capture_output=True, text=True).stdout.strip()
    finally:
        os.kill(solution, signal.SIGCONT)
    time.sleep(0.3)
    facts["zombies"] = zombie_children(solution)


def test_sigchlds_that_come_together_leave_a_zombie_to_an_init_that_reaps_once_per_signal():
    careless = next(c.folder for c in MUTANTS if c.folder.name == "reaps_once_per_sigchld")
    facts = observed(careless, stopped_while_orphans_end, ORPHANS)
    assert facts["stopped"].startswith("T")  # SIGSTOP reaches a PID 1 from an ancestor namespace
    assert len(facts["zombies"]) == 1  # two SIGCHLDs became one: one orphan reaped, one left


def test_ps_sees_no_zombie_under_the_reference_even_when_sigchlds_come_together():
    def look(solution: int, command: int, facts: dict) -> None:
        time.sleep(0.3)
        facts["zombies"] = zombie_children(solution)

    assert observed(REFERENCE, look, ORPHANS)["zombies"] == []
    assert observed(REFERENCE, stopped_while_orphans_end, ORPHANS)["zombies"] == []


# Hostile solutions stay in the sandbox --------------------------------------------------

def test_a_daemon_left_by_the_solution_ends_with_its_namespace(tmp_path):
    folder = tmp_path / "pid1"
    folder.mkdir()
    (folder / "solution").write_text("#!/bin/sh\n(trap '' TERM HUP; setsid sleep 1000 &)\nexit 0\n")
    (folder / "solution").chmod(0o755)
    checks, result = grade(folder)
    assert result.score == 0
    assert checks["runs_command"].status is Status.FAILED
    # The conftest fixture fails this test if the sleep (or anything) survived.
