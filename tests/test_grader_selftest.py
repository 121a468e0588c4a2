"""grader selftest: starters score 0, references get full marks, mutants are caught.

The self-test is the grader's own test: run here as the command does.
Then the judge is checked on made-up results, so that a blind check (one a
mutant passes) is reported as such.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from grader import selftest
from grader.engine import CheckResult, ExerciseResult
from grader.exercises import all_exercises
from grader.feedback import Status

KIT = Path(__file__).resolve().parent.parent
UTS = all_exercises()["uts"]


def test_selftest_passes_with_every_kind_of_case():
    out = subprocess.run([sys.executable, "-m", "grader", "selftest", "-j", "4"], cwd=KIT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WRONG" not in out.stdout
    for label in ("uts/starter/uts", "uts/reference/uts", "uts/reference/c", "uts/reference/bash",
                  "uts/mutant/sethostname_before_unshare", "uts/mutant/exit_zero"):
        assert label in out.stdout


def test_there_are_at_least_four_mutants_and_two_languages_of_reference():
    kinds = [c.kind for c in selftest.cases(UTS)]
    assert kinds.count("mutant") >= 4 and kinds.count("reference") >= 2 and "starter" in kinds


def result_where(passed: set[str]) -> ExerciseResult:
    checks = [CheckResult(c.name, c.title, Status.PASSED if c.name in passed else Status.FAILED,
                          c.points if c.name in passed else 0, c.points, "" if c.name in passed else "no")
              for c in UTS.checks]
    return ExerciseResult("uts", "", checks)


def test_a_mutant_that_passes_its_check_is_reported():
    mutant = next(c for c in selftest.cases(UTS) if c.folder.name == "sethostname_before_unshare")
    everything = {c.name for c in UTS.checks}
    blind = selftest.judge(mutant, result_where(everything - {"runs_command"}))
    assert not blind.ok and "caller_hostname_unchanged" in blind.reason
    caught = selftest.judge(mutant, result_where(everything - {"caller_hostname_unchanged"}))
    assert caught.ok


def test_a_reference_that_misses_a_check_and_a_starter_that_scores_are_reported():
    cases = selftest.cases(UTS)
    reference = next(c for c in cases if c.kind == "reference")
    starter = next(c for c in cases if c.kind == "starter")
    assert not selftest.judge(reference, result_where({"runs_command"})).ok
    assert not selftest.judge(starter, result_where({"runs_command"})).ok
    assert selftest.judge(starter, result_where(set())).ok
