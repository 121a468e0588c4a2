"""The verdict never comes from code loaded after a solution ran (issue 9).

A solution is root and hostile: if it ever reaches the kit's files, what
the grader imports afterwards is the solution's code.  So the grader loads
everything it needs before the first sandbox starts (grader/preload.py),
and the report is written from the results it holds.  Proved two ways:

* an import hook, in a fresh grader process, records every module imported
  after the first sandbox started: there is none, whatever the format
  (text on a terminal with rich, text in a pipe, JSON, JUnit, Gradescope,
  a class with CSV, the self-test);
* the test itself plays the solution that got out: while the grader waits
  for the solution's first run, it appends to a copy of the kit's
  grader/report.py a wrapper that marks every check passed; the report the
  grader then writes is the honest one.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import time
from pathlib import Path

import leaks
import pytest

KIT = Path(__file__).resolve().parent.parent
KIT_PARTS = ("labkit", "grader", "solutions", "exercises", "pyproject.toml")

# Run in a fresh interpreter: record each module imported once the first sandbox started.
RECORDER = r"""
import importlib.abc, json, os, sys
started = [False]
def note(line):  # at once, and from any process: --class grades in forked workers that _exit
    with open(os.environ["NSLAB_LATE_IMPORTS"] + ".lines", "a") as f:
        f.write(line + "\n")
class Recorder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if started[0]:
            note("late " + name)
        return None
sys.meta_path.insert(0, Recorder())
from grader import cli, sandbox
start = sandbox.Sandbox.start
def recorded_start(self, *args, **kwargs):
    if not started[0]:
        started[0] = True
        note("started")
    return start(self, *args, **kwargs)
sandbox.Sandbox.start = recorded_start
main, mains = cli.main, []
def counted_main(*args):
    mains.append(args)
    return main(*args)
cli.main = counted_main  # a preload that imported grader.__main__ would run the grader again
try:
    code = cli.main(sys.argv[1:])
finally:
    lines = open(os.environ["NSLAB_LATE_IMPORTS"] + ".lines").read().split() if os.path.exists(
        os.environ["NSLAB_LATE_IMPORTS"] + ".lines") else []
    with open(os.environ["NSLAB_LATE_IMPORTS"], "w") as f:
        json.dump({"started": "started" in lines,
                   "late": sorted({w for w in lines if w not in ("started", "late")}),
                   "mains": len(mains)}, f)
sys.exit(code)
"""


def late_imports(tmp_path: Path, args: list[str], terminal: bool = False) -> dict:
    record = tmp_path / "late.json"
    env = {**os.environ, "NSLAB_LATE_IMPORTS": str(record)}
    argv = [sys.executable, "-c", RECORDER, *args]
    if terminal:  # stdout and stderr a terminal: the rich report and the progress bar
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen(argv, cwd=KIT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=slave, stderr=slave)
            os.close(slave)
            shown = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every end of the terminal is closed
                    break
                if not chunk:
                    break
                shown += chunk
            code = proc.wait(timeout=300)
        finally:
            os.close(master)
        output = shown.decode(errors="replace")
    else:
        out = subprocess.run(argv, cwd=KIT, env=env, capture_output=True, text=True, timeout=300)
        code, output = out.returncode, out.stdout + out.stderr
    assert code in (0, 1), output[-3000:]
    seen = json.loads(record.read_text())
    assert seen["mains"] == 1, "the grader ran more than once"
    return seen


def a_class(tmp_path: Path) -> Path:
    klass = tmp_path / "class"
    for student, source in (("ref", KIT / "solutions" / "uts"), ("starter", KIT / "exercises" / "uts")):
        shutil.copytree(source, klass / student / "uts",
                        ignore=shutil.ignore_patterns("__pycache__", "out"))
    return klass


FORMATS = {
    "text_on_a_terminal": (["check", "uts", "--student", str(KIT / "solutions")], True),
    "text_in_a_pipe": (["check", "uts", "--student", str(KIT / "solutions")], False),
    "json": (["check", "uts", "--student", str(KIT / "solutions"), "--format", "json"], False),
    "junit": (["check", "uts", "--student", str(KIT / "exercises"), "--format", "junit"], False),
    "gradescope": (["check", "uts", "--student", str(KIT / "solutions"), "--format", "gradescope"],
                   False),
    "github_classroom": (["check", "uts", "--student", str(KIT / "solutions"), "--format",
                          "github-classroom"], False),
}


@pytest.mark.parametrize("how", FORMATS)
def test_nothing_is_imported_after_the_first_sandbox_started(tmp_path, how):
    args, terminal = FORMATS[how]
    seen = late_imports(tmp_path, args, terminal)
    assert seen["started"], "no sandbox started: the recorder proves nothing"
    assert seen["late"] == [], f"imported after a solution ran: {seen['late']}"


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_a_class_with_its_csv_imports_nothing_late(tmp_path, terminal):
    args = ["check", "uts", "--class", str(a_class(tmp_path)), "--csv", str(tmp_path / "grades.csv")]
    seen = late_imports(tmp_path, args, terminal)
    assert seen["started"] and seen["late"] == [], seen


def test_the_selftest_imports_nothing_late(tmp_path):
    # On a terminal: the table of verdicts in rich (in a pipe, plain text imports nothing).
    seen = late_imports(tmp_path, ["selftest", "uts"], terminal=True)
    assert seen["started"] and seen["late"] == [], seen


# Appended to the kit copy's report.py while the solution runs: what got out would write.
WRAPPER = """
def _tampered(report, _to_json=to_json):
    data = _to_json(report)
    data["score"] = data["max_score"]
    for e in data["exercises"]:
        e["score"] = e["max_score"]
        for c in e["checks"]:
            c["passed"], c["points"] = True, c["max_points"]
    return data


to_json = _tampered
"""


def copy_of_the_kit(where: Path) -> Path:
    for part in KIT_PARTS:
        src = KIT / part
        if src.is_dir():
            shutil.copytree(src, where / part, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, where / part)
    return where


def wait_for_the_solution(grader: subprocess.Popen, timeout: float = 60) -> None:
    """Until a process of the grader's runs the solution (its first run, in a sandbox)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and grader.poll() is None:
        for pid in leaks.descendants(grader.pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"/tmp/exercise/solution" in f.read():
                        return
            except OSError:
                continue
        time.sleep(0.01)
    pytest.fail("the solution never ran")


def test_a_kit_changed_while_the_solution_runs_does_not_change_the_report(tmp_path):
    kit = copy_of_the_kit(tmp_path / "kit")
    workspace = tmp_path / "ws"
    (workspace / "uts").mkdir(parents=True)
    solution = workspace / "uts" / "solution"
    solution.write_text("#!/bin/sh\nsleep 1\necho 'TODO: write the solution' >&2\nexit 1\n")
    solution.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(kit), "PYTHONDONTWRITEBYTECODE": "1"}
    grader = subprocess.Popen([sys.executable, "-m", "grader", "check", "uts", "--student",
                               str(workspace), "--format", "json"], cwd=kit, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_the_solution(grader)
        with open(kit / "grader" / "report.py", "a") as f:
            f.write(WRAPPER)
        out, err = grader.communicate(timeout=300)
    finally:
        if grader.poll() is None:
            grader.kill()
            grader.wait()
    assert grader.returncode == 1, err
    data = json.loads(out)
    assert data["score"] == 0 < data["max_score"], "the report came from the changed kit"
    assert not any(c["passed"] for e in data["exercises"] for c in e["checks"])
