"""bench/grade_class.py runs end to end on a class of 2: a smoke test, never a timing test.

Checked: it makes the class (every exercise asked for, plus the hostile
student), grades it with the grader, writes well-formed figures with a CSV
of every student, prints its table, and refuses bad input with a message.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "grade_class.py"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the grader runs solutions as root")


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True,
                          timeout=timeout)


def test_a_class_of_two_is_graded_and_reported(tmp_path):
    out = tmp_path / "figures.json"
    result = bench("-n", "2", "--jobs", "1", "--exercises", "uts,timens", "--no-hostile",
                   "--no-profile", "--json", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert set(figures["workspaces"]) == {"student001", "student002", "zz-hostile"}
    assert all(set(w) == {"uts", "timens"} for w in figures["workspaces"].values())
    run = figures["class"]["1"]
    assert run["returncode"] in (0, 1) and run["wall"] > 0 and run["cpu"] > 0
    csv_students = {line.split(",")[0] for line in run["csv"].splitlines()[1:]}
    assert {"student001", "student002", "zz-hostile"} <= csv_students
    assert figures["floor"]["runs"] == 4
    assert "-j 1" in result.stdout and "goal: 300 students" in result.stdout


def test_unknown_exercise_is_refused_with_a_message():
    result = bench("--exercises", "nope", timeout=60)
    assert result.returncode == 2 and "unknown exercise" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_floor_runs_a_solution_in_namespaces_of_its_own(tmp_path):
    """A bare veth run whose `unshare --net=FILE` finds its namespace by PID in /proc.

    With the machine's /proc in the floor's PID namespace, that PID named
    another process: the solution moved its veth pair into the machine's
    network namespace and left it there.
    """
    spec = importlib.util.spec_from_file_location("grade_class", BENCH)
    grade_class = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grade_class)
    shutil.copytree(ROOT / "grader" / "selftest" / "veth" / "util_linux_names",
                    tmp_path / "student001" / "veth")
    links_before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    figures = grade_class.floor(tmp_path, {"student001": {"veth": {}}}, "/", "/")
    assert figures["runs"] == 1 and figures["nonzero"] == 0, figures
    assert subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout == links_before
