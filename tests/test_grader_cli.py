"""The grader command: exit statuses, formats, the class mode, and errors that say what to do.

The command runs as a separate process (python -m grader), as a student or
an instructor would run it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parent.parent


def grader(*args: str, cwd: Path = KIT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_list_names_the_exercises_with_their_points():
    out = grader("list")
    assert out.returncode == 0
    assert "uts" in out.stdout and "your own hostname" in out.stdout


def _plain(text: str) -> str:
    """Contract text without markdown and line breaks: "`solution` is **X**" -> "solution is X"."""
    return " ".join(text.replace("`", "").replace("**", "").split())


CONTRACT_EXERCISES = ("uts", "escape", "jail", "pid1", "veth", "userns", "container", "timens")


@pytest.mark.parametrize("name", CONTRACT_EXERCISES)
def test_list_checks_shows_each_check_with_the_sentence_of_the_contract_it_judges(name):
    import inspect

    from grader import status
    from grader.exercises import all_exercises

    exercise = all_exercises()[name]
    out = grader("list", "--checks", name)
    assert out.returncode == 0, out.stderr
    shown = " ".join(out.stdout.split())
    # The contract: the exercise modules' docstrings (each is its section of
    # EXERCISES.md, verbatim; container's checks judge sentences of pid1's, which
    # its section cites), the shared definition of the exit status
    # (grader/status.py), and EXERCISES.md itself where the machine has it (not
    # in the lab VM).
    modules = {inspect.getmodule(c.fn) for e in all_exercises().values() for c in e.checks}
    contract = _plain(" ".join(m.__doc__ for m in modules) + status.__doc__)
    shared = Path("/work/shared/EXERCISES.md")
    if shared.exists():
        contract += " " + _plain(shared.read_text())
    for check in exercise.checks:
        assert check.contract and check.how, f"{name}.{check.name} has no contract sentence or how"
        for part in check.contract.split("..."):  # "..." leaves out words between the parts
            assert _plain(part).strip(" ;:,") in contract, (check.name, part)
        assert f"{check.name} (" in shown and _plain(check.contract)[:60] in shown, check.name
        assert " ".join(check.how.split())[:60] in shown, check.name


def test_list_checks_of_an_unknown_exercise_is_a_usage_error():
    out = grader("list", "--checks", "nope")
    assert out.returncode == 2 and "unknown exercise nope" in out.stderr


def test_the_reference_solutions_get_full_marks_and_exit_0():
    out = grader("check", "uts", "--student", str(KIT / "solutions"), "--format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert data["score"] == data["max_score"] > 0
    assert all(c["passed"] for e in data["exercises"] for c in e["checks"])


def test_the_default_workspace_is_the_starters_which_score_zero_and_exit_1():
    out = grader("check")
    assert out.returncode == 1
    assert "TODO" in out.stdout and "total: 0/" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_output_goes_to_a_file_in_the_format_asked(tmp_path):
    target = tmp_path / "report.xml"
    out = grader("check", "uts", "--student", str(KIT / "solutions"), "--format", "junit",
                 "--output", str(target))
    assert out.returncode == 0 and out.stdout == ""
    root = ET.parse(target).getroot()
    assert len(root.findall(".//testcase")) > 0 and root.get("failures") == "0"


def test_gradescope_format_for_one_submission(tmp_path):
    out = grader("check", "--student", str(KIT / "exercises"), "--format", "gradescope")
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert data["score"] == 0 and all(t["status"] == "failed" for t in data["tests"])


def test_a_class_is_graded_in_parallel_with_a_csv_line_per_student(tmp_path):
    klass = tmp_path / "class"
    shutil.copytree(KIT / "solutions" / "uts", klass / "alice" / "uts")
    shutil.copytree(KIT / "exercises" / "uts", klass / "bob" / "uts")
    (klass / "carol").mkdir()  # nothing handed in
    os.mkdir(bytes(klass) + b"/d\xffve")  # a name that is not UTF-8 (an archive from elsewhere)
    table = tmp_path / "grades.csv"
    out = grader("check", "uts", "--class", str(klass), "-j", "2", "--csv", str(table),
                 "--format", "json")
    assert out.returncode == 1, out.stderr
    students = {s["student"]: s for s in json.loads(out.stdout)["students"]}
    assert students["alice"]["score"] == students["alice"]["max_score"]
    assert students["bob"]["score"] == 0 and students["carol"]["score"] == 0
    rows = {r["student"]: r for r in csv.DictReader(table.open())}
    assert rows["alice"]["uts"] == rows["alice"]["max_score"] and rows["carol"]["uts"] == "0"
    assert rows["d\ufffdve"]["uts"] == "0"  # written, with a replacement character


@pytest.mark.parametrize("args, words", [
    (["check", "nosuch"], ["unknown exercise nosuch", "known: uts"]),
    (["check", "--student", "/nonexistent/ws"], ["no workspace folder", "--student"]),
    (["check", "--class", "/nonexistent/class"], ["no class folder"]),
    (["check", "-j", "2"], ["use it with --class"]),
    (["check", "--class", str(KIT / "solutions"), "--format", "gradescope"], ["one submission"]),
    (["frobnicate"], ["invalid choice"]),
    (["check", "--output", "/nonexistent/dir/report.txt"], ["cannot write", "no folder"]),
])
def test_usage_errors_exit_2_and_say_what_to_do(args, words):
    out = grader(*args)
    assert out.returncode == 2
    for word in words:
        assert word in out.stderr
    assert "Traceback" not in out.stderr


def test_an_exercise_named_twice_is_graded_once():
    out = grader("check", "uts", "uts", "--student", str(KIT / "solutions"), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert [e["name"] for e in json.loads(out.stdout)["exercises"]] == ["uts"]


def test_a_report_that_cannot_be_written_is_an_error_that_says_why(tmp_path):
    folder = grader("check", "uts", "--output", str(tmp_path))  # refused before any grading
    assert folder.returncode == 2 and "it is a folder" in folder.stderr and folder.stdout == ""
    full = grader("check", "uts", "--output", "/dev/full")
    assert full.returncode == 2 and "No space left on device" in full.stderr
    assert "Traceback" not in folder.stderr + full.stderr and "internal error" not in full.stderr


def test_an_empty_workspace_is_a_usage_error(tmp_path):
    out = grader("check", "--student", str(tmp_path))
    assert out.returncode == 2 and "holds no exercise folder" in out.stderr


@pytest.mark.rootless
def test_not_root_is_an_environment_error_that_says_sudo(unprivileged):
    out = unprivileged.run([unprivileged.python, "-m", "grader", "check"])
    assert out.returncode == 2, out.stderr
    assert "run it as root" in out.stderr and "Traceback" not in out.stderr
