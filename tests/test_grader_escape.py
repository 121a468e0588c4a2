"""Exercise escape: the jail the grader builds, seen by other tools, and hostile solutions.

The references, the starter and the mutants are graded by
tests/test_grader_selftest.py (once for the whole suite).

The grader's claims about the jail (a chroot(2) into a writable directory
with read-only /usr and the solution, its working directory at the jail's
root) are checked here with tools of their own: readlink(1) on
/proc/PID/root and /proc/PID/cwd of the running solution, findmnt(8) on the
sandbox's mount table, and a probe solution that reports what it sees.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from grader.engine import Exercise, Trial, grade_exercise
from grader.exercises import all_exercises
from grader.exercises.escape import Escape, output
from grader.feedback import Status
from grader.sandbox import hidden_paths

KIT = Path(__file__).resolve().parent.parent
ESCAPE = all_exercises()["escape"]


def grade(folder: Path, exercise: Exercise = ESCAPE):
    result = grade_exercise(exercise, folder, hidden_paths(folder.parent))
    return {c.name: c for c in result.checks}, result


def solution(tmp_path: Path, script: str) -> Path:
    folder = tmp_path / "escape"
    folder.mkdir()
    (folder / "solution").write_text(script)
    (folder / "solution").chmod(0o755)
    return folder


# What the solution finds when it starts ----------------------------------------------

PROBE = """#!/bin/sh
echo "cwd=$(pwd)"
echo "top=$(ls / | tr '\\n' ' ')"
touch /usr/probe 2>/dev/null && echo "usr=writable" || echo "usr=read-only"
mkdir /probe-dir && rmdir /probe-dir && echo "jail=writable"
test -e "$1" && echo "path=visible" || echo "path=hidden"
echo held
read line
"""


def observed(folder: Path, look) -> dict:
    """Grade FOLDER with one check that starts an Escape run and calls LOOK(run, facts)."""
    facts: dict = {}
    probe = Exercise("escape", "probe")

    @probe.check(1, "look")
    def look_at_it(trial: Trial) -> None:
        with Escape(trial) as run:
            look(run, facts)

    checks, _ = grade(folder, probe)
    assert checks["look_at_it"].status is Status.PASSED, checks["look_at_it"].message
    return facts


def test_the_solution_starts_as_root_chrooted_at_the_jails_root(tmp_path):
    def look(run: Escape, facts: dict) -> None:
        run.warden.expect(run.run, "held")
        pid = run.warden.solution_pid()
        facts["root"] = subprocess.run(["readlink", f"/proc/{pid}/root"], capture_output=True,
                                       text=True).stdout.strip()
        facts["cwd"] = subprocess.run(["readlink", f"/proc/{pid}/cwd"], capture_output=True,
                                      text=True).stdout.strip()
        facts["uid"] = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0]
        facts["uid_map"] = Path(f"/proc/{pid}/uid_map").read_text().split()
        facts["mounts"] = subprocess.run(["findmnt", "-N", str(run.warden.pid), "-r", "-n", "-o",
                                          "TARGET,OPTIONS"], capture_output=True, text=True).stdout
        facts["jail"], facts["path"] = run.jail, run.path
        run.run.sendline("bye")
        run.finished()
        facts["output"] = output(run.run)

    facts = observed(solution(tmp_path, PROBE), look)
    jail = facts["jail"]
    assert facts["root"] == facts["cwd"] == jail
    inside, outside, _count = facts["uid_map"]  # root of the sandbox's user namespace
    assert inside == "0" and facts["uid"] == outside != "0"
    mounts = dict(line.split(" ", 1) for line in facts["mounts"].splitlines())
    assert mounts[f"{jail}/usr"].startswith("ro,")
    assert mounts[f"{jail}/tmp/exercise"].startswith("ro,")
    out = facts["output"]
    assert "cwd=/\n" in out and "usr=read-only" in out and "jail=writable" in out
    assert "path=hidden" in out  # PATH really is outside
    assert "bin" in out.split("top=")[1].split("\n")[0]


def test_paths_and_secrets_are_new_on_every_run(tmp_path):
    def look(run: Escape, facts: dict) -> None:
        facts["values"] = (run.jail, run.path, run.secret)
        run.finished()

    folder = solution(tmp_path, "#!/bin/sh\nexit 0\n")
    first, second = observed(folder, look)["values"], observed(folder, look)["values"]
    assert all(a != b for a, b in zip(first, second, strict=True))


def test_the_warden_ends_as_the_solution_did_once_released(tmp_path):
    def look(run: Escape, facts: dict) -> None:
        facts["reported"] = run.finished()
        run.warden.release()
        facts["seen_by_sandbox"] = run.run.wait()

    facts = observed(solution(tmp_path, "#!/bin/sh\nkill -s USR1 $$\n"), look)
    assert facts["reported"] == facts["seen_by_sandbox"]
    assert facts["reported"].signal == 10


# Hostile solutions stay in the sandbox --------------------------------------------------

def test_an_escaped_solution_finds_neither_the_grader_nor_the_references(tmp_path):
    stolen = (KIT / "solutions" / "escape" / "solution").read_text().splitlines()[1]
    thief = solution(tmp_path, f"""#!/usr/bin/env python3
import os, sys
os.mkdir("/x"); os.chroot("/x")
for _ in range(64):
    os.chdir("..")
os.chroot(".")
for path in ["{KIT}/solutions/escape/solution", "{KIT}/grader/exercises/escape.py",
             "/proc/1/root{KIT}/solutions/escape/solution"]:
    try:
        print(open(path).read())
    except OSError as e:
        print(path, e.strerror)
print(open(sys.argv[1]).read())
""")
    checks, _ = grade(thief)
    assert checks["prints_secret"].status is Status.PASSED  # it did escape the jail, leaving /x
    transcripts = "".join(c.message + c.transcript for c in checks.values())
    assert stolen not in transcripts


def test_a_solution_that_kills_every_process_it_can_fails_with_a_message(tmp_path):
    checks, result = grade(solution(tmp_path, "#!/bin/sh\nkill -9 -1\nsleep 5\n"))
    assert result.score == 0
    assert checks["prints_secret"].status is Status.FAILED
    assert "killed" in checks["prints_secret"].message
