"""The grader's engine: checks, points, dependencies, timeouts, EOF, transcripts.

Each test defines a small exercise of its own and a solution in a
temporary folder, grades it with grader.engine, and reads the results.
"""

from __future__ import annotations

import signal
from pathlib import Path

from grader.engine import Exercise, Trial, grade_exercise
from grader.feedback import Fail, Status
from grader.sandbox import Limits, hidden_paths

FAST = Limits(wall=8)


def solution(tmp_path: Path, script: str, name: str = "demo") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "solution").write_text("#!/bin/sh\n" + script + "\n")
    (folder / "solution").chmod(0o755)
    return folder


def grade(exercise: Exercise, folder: Path):
    result = grade_exercise(exercise, folder, hidden_paths(folder.parent))
    return {c.name: c for c in result.checks}, result


def test_a_check_that_returns_passes_with_its_points(tmp_path):
    demo = Exercise("demo", "demo", limits=FAST)

    @demo.check(3, "says hello")
    def says_hello(trial: Trial) -> None:
        trial.run("x").expect("hello x")

    checks, result = grade(demo, solution(tmp_path, 'echo "hello $1"'))
    assert checks["says_hello"].status is Status.PASSED
    assert (checks["says_hello"].points, result.score, result.max_score) == (3, 3, 3)


def test_fail_reports_expected_seen_hint_and_partial_points(tmp_path):
    demo = Exercise("demo", "demo", limits=FAST)

    @demo.check(4, "adds")
    def adds(trial: Trial) -> None:
        a, b = trial.number(1, 50), trial.number(1, 50)
        run = trial.run(str(a), str(b))
        seen = run.wait()
        if seen.code != a + b:
            raise Fail("wrong sum", expected=a + b, seen=seen.code, hint="see expr(1)", points=1.5)

    checks, result = grade(demo, solution(tmp_path, "exit 0"))
    got = checks["adds"]
    assert got.status is Status.FAILED and got.points == 1.5 and result.score == 1.5
    assert "wrong sum" in got.message and "expected:" in got.message
    assert "seen:     0" in got.message and "hint:     see expr(1)" in got.message


def test_a_check_whose_prerequisite_failed_is_skipped_with_a_message(tmp_path):
    demo = Exercise("demo", "demo", limits=FAST)
    ran = []

    @demo.check(1, "first")
    def first(trial: Trial) -> None:
        raise Fail("no")

    @demo.check(1, "second", needs=[first])
    def second(trial: Trial) -> None:
        ran.append("second")

    checks, _ = grade(demo, solution(tmp_path, "exit 0"))
    assert checks["second"].status is Status.SKIPPED and not ran
    assert "'first'" in checks["second"].message


def test_a_solution_that_does_not_answer_is_a_timeout_result(tmp_path):
    demo = Exercise("demo", "demo", limits=FAST)

    @demo.check(1, "answers")
    def answers(trial: Trial) -> None:
        # First what it does print (a slow machine may take more than 0.5 s
        # to start it), then 0.5 s for what it never prints.
        run = trial.run()
        run.expect("thinking")
        run.expect("never printed", timeout=0.5)

    checks, _ = grade(demo, solution(tmp_path, "echo thinking; sleep 60"))
    assert checks["answers"].status is Status.TIMEOUT
    assert "no answer within 0.5 s" in checks["answers"].message
    assert "thinking" in checks["answers"].transcript


def test_end_of_output_is_a_failed_result_with_the_exit_status(tmp_path):
    demo = Exercise("demo", "demo", limits=FAST)

    @demo.check(1, "answers")
    def answers(trial: Trial) -> None:
        trial.run().expect("never printed")

    checks, _ = grade(demo, solution(tmp_path, "echo bye; exit 4"))
    assert checks["answers"].status is Status.FAILED
    assert "ended (exit status 4)" in checks["answers"].message


def test_the_transcript_of_a_failed_check_shows_the_command_and_the_dialogue(tmp_path):
    demo = Exercise("demo", "demo", limits=FAST)

    @demo.check(1, "echoes")
    def echoes(trial: Trial) -> None:
        run = trial.run("--flag")
        run.sendline("ping")
        run.expect("pong")

    checks, _ = grade(demo, solution(tmp_path, 'read line; echo "got $line"'))
    transcript = checks["echoes"].transcript
    assert "[grader] $ /tmp/exercise/solution --flag" in transcript
    assert "ping" in transcript and "got ping" in transcript


def test_a_passed_check_keeps_no_transcript(tmp_path):
    demo = Exercise("demo", "demo", limits=FAST)

    @demo.check(1, "echoes")
    def echoes(trial: Trial) -> None:
        trial.run().expect("hi")

    checks, _ = grade(demo, solution(tmp_path, "echo hi"))
    assert checks["echoes"].passed and checks["echoes"].transcript == ""


def test_a_bug_in_a_check_is_an_error_that_hides_the_internals(tmp_path):
    demo = Exercise("demo", "demo", limits=FAST)

    @demo.check(1, "buggy")
    def buggy(trial: Trial) -> None:
        {}["secret internal key"]

    @demo.check(1, "next")
    def next_check(trial: Trial) -> None:
        trial.run().expect("hi")

    checks, _ = grade(demo, solution(tmp_path, "echo hi"))
    assert checks["buggy"].status is Status.ERROR
    assert "not your fault" in checks["buggy"].message
    assert "secret internal key" not in checks["buggy"].message
    assert "Traceback" not in checks["buggy"].message
    assert checks["next_check"].passed  # and the grader goes on


def test_a_crashing_solution_is_an_error(tmp_path):
    demo = Exercise("demo", "demo", limits=FAST)

    @demo.check(1, "answers")
    def answers(trial: Trial) -> None:
        trial.run().expect("42")

    checks, _ = grade(demo, solution(tmp_path, f"kill -{int(signal.SIGSEGV)} $$"))
    assert checks["answers"].status is Status.ERROR
    assert "crashed" in checks["answers"].message and "SIGSEGV" in checks["answers"].message


def test_a_python_traceback_is_an_error(tmp_path):
    demo = Exercise("demo", "demo", limits=FAST)

    @demo.check(1, "answers")
    def answers(trial: Trial) -> None:
        trial.run().expect("42")

    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "solution").write_text("#!/usr/bin/env python3\nprint(undefined_name)\n")
    (folder / "solution").chmod(0o755)
    checks, _ = grade(demo, folder)
    assert checks["answers"].status is Status.ERROR
    assert "Python exception" in checks["answers"].message
    assert "NameError" in checks["answers"].transcript


def test_random_values_differ_from_run_to_run(tmp_path):
    demo = Exercise("demo", "demo", limits=FAST)
    trial = Trial(demo, staging=None)
    assert len({trial.hostname() for _ in range(20)}) == 20
    assert len({trial.token() for _ in range(20)}) == 20
