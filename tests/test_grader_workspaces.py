"""Bad workspaces: every mistake a student can make is a failed check with a message.

Graded with the real exercise uts.  No test may see a traceback of the
grader; every check must come back with a status and a message that says
what to do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from grader import engine
from grader.engine import Exercise, Trial, grade
from grader.exercises import all_exercises
from grader.feedback import Status
from grader.report import to_json
from grader.sandbox import Limits, hidden_paths

UTS = all_exercises()["uts"]


def grade_uts(workspace: Path):
    report = grade("student", workspace, [UTS], hidden_paths(workspace))
    json.dumps(to_json(report))  # whatever happened, the report is valid JSON
    return report.exercises[0]


def workspace_with(tmp_path: Path, content: bytes | str, mode: int = 0o755) -> Path:
    folder = tmp_path / "ws" / "uts"
    folder.mkdir(parents=True)
    solution = folder / "solution"
    solution.write_bytes(content.encode() if isinstance(content, str) else content)
    solution.chmod(mode)
    return tmp_path / "ws"


def assert_all_failed_saying(result, status: Status, *words: str) -> None:
    assert result.score == 0
    for check in result.checks:
        assert check.status is status, (check.name, check.status, check.message)
        for word in words:
            assert word in check.message, (check.name, check.message)


def test_a_missing_exercise_folder_fails_every_check(tmp_path):
    (tmp_path / "ws").mkdir()
    assert_all_failed_saying(grade_uts(tmp_path / "ws"), Status.ERROR, "no folder uts/")


def test_a_folder_without_solution_says_which_file_is_missing(tmp_path):
    (tmp_path / "ws" / "uts").mkdir(parents=True)
    assert_all_failed_saying(grade_uts(tmp_path / "ws"), Status.ERROR, "no file uts/solution")


def test_a_solution_that_is_not_executable_says_chmod(tmp_path):
    ws = workspace_with(tmp_path, "#!/bin/sh\nexit 0\n", mode=0o644)
    assert_all_failed_saying(grade_uts(ws), Status.ERROR, "not executable", "chmod +x")


def test_windows_line_endings_are_named(tmp_path):
    ws = workspace_with(tmp_path, "#!/bin/sh\r\nexit 0\r\n")
    assert_all_failed_saying(grade_uts(ws), Status.ERROR, "Windows line endings")


def test_a_missing_interpreter_is_named(tmp_path):
    ws = workspace_with(tmp_path, "#!/usr/bin/python2.4\nprint 1\n")
    assert_all_failed_saying(grade_uts(ws), Status.ERROR, "/usr/bin/python2.4", "does not exist")


def test_an_interpreter_inside_a_hidden_folder_is_explained(tmp_path):
    ws = workspace_with(tmp_path, f"#!{Path(sys.prefix) / 'bin' / 'python'}\nprint(1)\n")
    assert_all_failed_saying(grade_uts(ws), Status.ERROR, "hides")


def test_a_binary_garbage_solution_is_an_error_with_a_message(tmp_path):
    ws = workspace_with(tmp_path, b"\x7fGARBAGE\x00\x01\x02" + os.urandom(2000))
    result = grade_uts(ws)
    assert result.score == 0
    runs = next(c for c in result.checks if c.name == "runs_command")
    assert runs.status is Status.ERROR and "neither a program nor a script" in runs.message


def test_a_python_syntax_error_is_a_crash_with_the_traceback_in_the_transcript(tmp_path):
    ws = workspace_with(tmp_path, "#!/usr/bin/env python3\ndef main(:\n    pass\n")
    result = grade_uts(ws)
    assert result.score == 0
    runs = next(c for c in result.checks if c.name == "runs_command")
    assert runs.status is Status.ERROR and "syntax error" in runs.message
    assert "SyntaxError" in runs.transcript


def test_a_flood_of_output_fails_with_a_bounded_message(tmp_path):
    ws = workspace_with(tmp_path, "#!/bin/sh\nexec yes flood\n")
    result = grade_uts(ws)
    assert result.score == 0
    for check in result.checks:
        assert len(check.message) + len(check.transcript) < 20000
    runs = next(c for c in result.checks if c.name == "runs_command")
    assert "printed more than" in runs.message


def test_binary_garbage_output_gives_a_printable_message(tmp_path):
    ws = workspace_with(tmp_path, "#!/bin/sh\nhead -c 50000 /dev/urandom\nexit 1\n")
    result = grade_uts(ws)
    assert result.score == 0
    for check in result.checks:
        text = check.message + check.transcript
        assert not any(ord(ch) < 32 and ch not in "\n\t" for ch in text), check.name


def test_a_failing_makefile_shows_make_s_output(tmp_path):
    folder = tmp_path / "ws" / "uts"
    folder.mkdir(parents=True)
    (folder / "Makefile").write_text("solution:\n\t@echo 'oops: no compiler here' >&2; false\n")
    assert_all_failed_saying(grade_uts(tmp_path / "ws"), Status.ERROR, "make failed",
                             "oops: no compiler here")


def test_a_huge_folder_is_not_copied(tmp_path):
    ws = workspace_with(tmp_path, "#!/bin/sh\nexit 0\n")
    with open(ws / "uts" / "data.bin", "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB that take no room
    assert_all_failed_saying(grade_uts(ws), Status.ERROR, "64 MiB")


def test_a_named_pipe_in_the_folder_is_named_not_waited_for(tmp_path):
    ws = workspace_with(tmp_path, "#!/bin/sh\nexit 0\n")
    os.mkfifo(ws / "uts" / "fifo")
    assert_all_failed_saying(grade_uts(ws), Status.ERROR, "could not copy", "named pipe")


def test_a_link_to_the_root_in_the_folder_stays_a_link(tmp_path):
    kit = Path(__file__).resolve().parent.parent
    ws = workspace_with(tmp_path, (kit / "solutions" / "uts" / "solution").read_text())
    (ws / "uts" / "everything").symlink_to("/")
    result = grade_uts(ws)
    assert result.score == result.max_score


def test_a_hostile_solution_fails_and_the_grader_goes_on(tmp_path):
    # A check of its own with short waits: the uts checks would each wait 5 s for
    # an answer that never comes, which proves nothing more.
    hostile = ("#!/bin/bash\nkill -9 -1\nsetsid sleep 300 &\n"
               "bomb() { bomb | bomb & }; bomb\nexec sleep 300\n")
    demo = Exercise("uts", "hostile", limits=Limits(wall=4, pids=32))

    @demo.check(1, "answers")
    def answers(trial: Trial) -> None:
        trial.run("name").expect("never printed", timeout=1)

    ws = workspace_with(tmp_path, hostile)
    result = grade("student", ws, [demo], hidden_paths(ws)).exercises[0]
    assert result.score == 0 and result.checks[0].status is Status.TIMEOUT
    kit = Path(__file__).resolve().parent.parent
    after = grade_uts(kit / "solutions")
    assert after.score == after.max_score
    # and the leak check of conftest.py finds no process, cgroup or mount left


def test_a_makefile_that_hangs_fails_every_check_with_what_make_printed(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "BUILD_LIMITS", Limits(wall=2, cpu=2))  # instead of a minute
    folder = tmp_path / "ws" / "uts"
    folder.mkdir(parents=True)
    (folder / "Makefile").write_text("solution:\n\t@echo compiling; sleep 1000\n")
    assert_all_failed_saying(grade_uts(tmp_path / "ws"), Status.ERROR, "make did not finish",
                             "compiling", "end by itself")
