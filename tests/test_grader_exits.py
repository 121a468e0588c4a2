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
