"""`grader check --class`: Ctrl-C stops at once and keeps what was graded; a rerun grades the rest.

The grader runs as a real process, as an instructor runs it.  A class of
fast students (the reference solution) and slow ones (the same solution,
started a second late, so that each check takes a while) is graded; a
SIGINT arrives while slow students are being graded.  Checked: the grader
exits 130 promptly (in a third of the time a whole run takes on the same
machine) with one line and no traceback; no sandbox process,
cgroup, mount (the suite's leak check) or temporary folder is left; the
CSV has the graded students and "not graded" for the rest.  Then the same
command grades only the missing students, and the CSV is a clean run's;
a student whose folder changed is graded again, and only that student.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import leaks
import pytest

KIT = Path(__file__).resolve().parent.parent
GRADER = [str(KIT / ".venv" / "bin" / "python"), "-m", "grader"]
FAST, SLOW = ["ada", "bob"], ["cyd", "dee", "eve", "fay"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the grader runs solutions as root")


def make_class(top: Path) -> Path:
    klass = top / "class"
    for name in FAST:
        shutil.copytree(KIT / "solutions" / "uts", klass / name / "uts")
    for name in SLOW:
        folder = klass / name / "uts"
        folder.mkdir(parents=True)
        shutil.copy2(KIT / "solutions" / "uts" / "solution", folder / "reference")
        (folder / "solution").write_text('#!/bin/sh\nsleep 1\nexec "$(dirname "$0")/reference" "$@"\n')
        (folder / "solution").chmod(0o755)
    return klass


def start(klass: Path, table: Path, tmp: Path, *more: str) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp)}
    return subprocess.Popen([*GRADER, "check", "uts", "--class", str(klass), "--csv", str(table),
                             *more], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def graded_lines(stderr: str) -> set[str]:
    return set(re.findall(r"^graded (\S+):", stderr, re.M))


def rows(table: Path) -> dict[str, dict]:
    with table.open() as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def sleeping_solutions() -> int:
    return sum(1 for comm in leaks.descendants().values() if comm == "sleep")


def test_ctrl_c_keeps_the_graded_students_and_a_rerun_grades_only_the_rest(tmp_path):
    klass, table, tmp = make_class(tmp_path), tmp_path / "grades.csv", tmp_path / "tmp"
    store = tmp_path / "grades.csv.d"
    tmp.mkdir()

    proc = start(klass, table, tmp, "-j", "3")
    deadline = time.monotonic() + 120
    # Fast students are done, and slow ones are in the middle of a run (a sleep in a sandbox).
    while not (all((store / f"{n}.json").exists() for n in FAST) and sleeping_solutions()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the fast students were never graded"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    code, out, err = finish(proc, timeout=60)
    took = time.monotonic() - sent

    assert code == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("grader: interrupted:") and "run the same command again" in last
    assert sleeping_solutions() == 0
    assert list(tmp.iterdir()) == [], "the grader left temporary folders"
    first = rows(table)
    assert set(first) == {*FAST, *SLOW}
    graded = {n for n, r in first.items() if r["uts"] != "not graded"}
    assert set(FAST) <= graded and graded != set(first)
    for name in set(first) - graded:
        assert first[name]["score"] == "not graded"
    assert all(first[n]["uts"] == first[n]["max_score"] for n in graded)
    assert sorted(p.name for p in store.iterdir()) == sorted(f"{n}.json" for n in graded)
    stamps = {n: json.loads((store / f"{n}.json").read_text())["graded_at"] for n in graded}
    assert "not graded: " in out

    # The same command again: only the students not graded.
    code, out, err = finish(start(klass, table, tmp, "-j", "3"))
    assert code == 0, err
    assert graded_lines(err) == set(first) - graded
    assert f"({len(graded)} kept from an earlier run in {store})" in err.splitlines()[0]
    assert {n: json.loads((store / f"{n}.json").read_text())["graded_at"] for n in graded} == stamps
    assert list(tmp.iterdir()) == []

    # ... and the CSV is what a clean run writes.
    clean = tmp_path / "clean.csv"
    began = time.monotonic()
    code, _, err = finish(start(klass, clean, tmp, "-j", "3"))
    whole_class = time.monotonic() - began
    assert code == 0, err
    # Promptly, on this machine's scale (a slow laptop, a VM without KVM): it
    # stopped in a fraction of the time grading the class takes.
    assert took < whole_class / 3, \
        f"the grader took {took:.1f} s to stop after SIGINT, grading the class {whole_class:.1f} s"
    assert graded_lines(err) == {*FAST, *SLOW}
    assert table.read_text() == clean.read_text()

    # A student whose folder changed is graded again, and only that student.
    (klass / "bob" / "uts" / "notes.txt").write_text("a file the student added\n")
    code, _, err = finish(start(klass, table, tmp, "-j", "3"))
    assert code == 0, err
    assert graded_lines(err) == {"bob"}
    assert table.read_text() == clean.read_text()


def test_kept_results_hold_only_for_the_same_exercises(tmp_path):
    klass, table, tmp = tmp_path / "class", tmp_path / "grades.csv", tmp_path / "tmp"
    tmp.mkdir()
    shutil.copytree(KIT / "solutions" / "uts", klass / "ada" / "uts")
    code, _, err = finish(start(klass, table, tmp, "-j", "1"))
    assert code == 0 and graded_lines(err) == {"ada"}
    code, _, err = finish(start(klass, table, tmp, "-j", "1"))
    assert code == 0 and graded_lines(err) == set(), err
    # Asking for another list of exercises grades again.
    env = {**os.environ, "TMPDIR": str(tmp)}
    out = subprocess.run([*GRADER, "check", "uts", "escape", "--class", str(klass), "--csv",
                          str(table), "-j", "1"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 1 and graded_lines(out.stderr) == {"ada"}, out.stderr
    assert rows(table)["ada"]["escape"] == "0"


def test_the_default_jobs_are_bounded_by_memory_and_pids():
    from grader.exercises import all_exercises
    from grader.roster import Machine, default_jobs

    exercises = list(all_exercises().values())
    jobs, why = default_jobs(exercises, Machine(cpus=2, memory=64 << 30, pids=1 << 22))
    assert jobs > 2 and "CPUs" in why  # grading mostly waits: more students than CPUs
    small, why = default_jobs(exercises, Machine(cpus=64, memory=2 << 30, pids=1 << 22))
    assert small == 1 and "memory" in why
    few, why = default_jobs(exercises, Machine(cpus=64, memory=1 << 40, pids=4000))
    assert 1 <= few < jobs and "processes" in why


def test_help_says_the_default_and_where_results_are_kept():
    out = subprocess.run([*GRADER, "check", "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(out.stdout.split())
    assert "default: as many as keep this machine's CPUs busy" in text
    assert "FILE.d/STUDENT.json" in text
