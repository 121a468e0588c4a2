"""grader/exits.py: how a process ended, as the kernel's process events connector reports it.

wait(2), through subprocess, is the independent witness: the connector
must report what the parent learns.  The reports come for every process
of the machine, so none may be lost in a burst.
"""

from __future__ import annotations

import signal
import subprocess

import pytest

from grader.exits import ExitWatch, drawn_exit, expect_death_status, expect_status_of, kill, waiting
from grader.feedback import Fail
from grader.session import Exit


def test_the_kernel_reports_an_exit_code_and_a_killing_signal_as_wait_does():
    with ExitWatch() as exits:
        coded = subprocess.Popen(["/bin/sh", "-c", "exit 7"])
        killed = subprocess.Popen(["/bin/sleep", "30"])
        killed.send_signal(signal.SIGUSR1)
        assert (coded.wait(), killed.wait()) == (7, -signal.SIGUSR1)
        assert exits.end_of(coded.pid) == Exit(code=7)
        assert exits.end_of(killed.pid) == Exit(signal=signal.SIGUSR1)


def test_no_report_is_lost_in_a_burst_of_short_processes():
    with ExitWatch() as exits:
        late = subprocess.Popen(["/bin/sh", "-c", "sleep 1; exit 9"])
        subprocess.run(["/bin/sh", "-c", "i=0; while [ $i -lt 2000 ]; do /bin/true; i=$((i+1)); done"],
                       check=True)
        assert late.wait() == 9
        assert exits.end_of(late.pid) == Exit(code=9)
        assert len(exits.ended) > 2000


def test_a_drawn_exit_code_is_not_in_the_commands_arguments_and_varies():
    commands = [drawn_exit("tag") for _ in range(6)]
    assert all(c == commands[0] for c in commands)  # the same words every time ...
    runs = [subprocess.Popen(c) for c in commands]
    codes = {r.wait() for r in runs}
    assert all(1 <= c <= 255 for c in codes) and len(codes) > 1  # ... and another end


def test_a_command_killed_by_the_grader_gives_128_plus_n_or_death_by_n():
    with ExitWatch() as exits:
        command = subprocess.Popen(waiting(42))
        kill(command.pid, signal.SIGRTMIN + 5, exits)
        assert command.wait() == -(signal.SIGRTMIN + 5)
    expect_death_status(signal.SIGRTMIN + 5, Exit(code=128 + signal.SIGRTMIN + 5), hint="")
    expect_death_status(signal.SIGRTMIN + 5, Exit(signal=signal.SIGRTMIN + 5), hint="")
    with pytest.raises(Fail, match="SIGRTMIN\\+5"):
        expect_death_status(signal.SIGRTMIN + 5, Exit(code=256 - signal.SIGRTMIN - 5), hint="")


def test_a_command_that_ignores_the_signal_or_is_killed_by_another_fails_with_a_reason():
    with ExitWatch() as exits:
        deaf = subprocess.Popen(["/bin/sh", "-c", "trap '' USR1; echo deaf; exec sleep 30"],
                                stdout=subprocess.PIPE, text=True)
        assert deaf.stdout.readline() == "deaf\n"  # the trap is set
        try:
            with pytest.raises(Fail, match="did not end when the grader sent it SIGUSR1"):
                kill(deaf.pid, signal.SIGUSR1, exits, timeout=0.5)
        finally:
            deaf.kill()
            deaf.wait()
            deaf.stdout.close()
        with pytest.raises(Fail, match="before the grader's SIGUSR2"):
            kill(deaf.pid, signal.SIGUSR2, exits, timeout=0.5)  # it already died of SIGKILL


def test_a_status_is_judged_against_the_commands_real_end():
    expect_status_of(Exit(code=42), Exit(code=42), hint="")
    expect_status_of(Exit(code=42), Exit(signal=None, code=42), hint="")
    with pytest.raises(Fail, match="exited with status 42, the solution with another"):
        expect_status_of(Exit(code=42), Exit(code=0), hint="")
    with pytest.raises(Fail, match="did not get to its end"):  # the solution ended first: killed
        expect_status_of(Exit(signal=signal.SIGKILL), Exit(code=137), hint="")


# grader/status.py: the shared checks of "The exit status of solution is COMMAND's" ----

def status_exercise():
    """An exercise whose contract is only that sentence: `solution COMMAND...`."""
    from grader.engine import Exercise
    from grader.status import exit_code_check, signal_status_check

    exercise = Exercise("status", "the exit status is COMMAND's")

    @exercise.check(2, "the exit status is COMMAND's")
    def exit_status(trial) -> None:
        exit_code_check(trial, lambda command: trial.run(*command))

    @exercise.check(1, "killed by signal N, COMMAND gives exit status 128+N")
    def signal_status(trial) -> None:
        signal_status_check(trial, lambda command: trial.run(*command))

    return exercise


@pytest.mark.parametrize("script, passed", [
    ('exec "$@"\n', {"exit_status", "signal_status"}),  # exec: dies by the same signal
    ('"$@"\n', {"exit_status", "signal_status"}),  # a shell reports 128+N itself
    ('"$@"\nexit 0\n', set()),
    ('"$@"\ns=$?\n[ $s -gt 128 ] && exit $((s - 128))\nexit $s\n', {"exit_status"}),  # N, not 128+N
], ids=["exec", "fork-and-wait", "exit-0", "signal-number"])
def test_the_status_helper_judges_any_start_by_the_kernels_record(tmp_path, script, passed):
    from grader.engine import grade_exercise
    from grader.sandbox import hidden_paths

    folder = tmp_path / "status"
    folder.mkdir()
    (folder / "solution").write_text("#!/bin/sh\n" + script)
    (folder / "solution").chmod(0o755)
    result = grade_exercise(status_exercise(), folder, hidden_paths(tmp_path))
    assert {c.name for c in result.checks if c.passed} == passed, [c.message for c in result.checks]


def test_uts_jail_and_pid1_judge_the_status_with_the_shared_helper():
    import inspect

    from grader.exercises import all_exercises

    for name in ("uts", "jail", "pid1"):
        checks = {c.name: c for c in all_exercises()[name].checks}
        assert "exit_code_check(" in inspect.getsource(checks["exit_status"].fn), name
        assert "signal_status_check(" in inspect.getsource(checks["signal_status"].fn), name
