"""grader selftest: starters score 0, references and unusual solutions get full marks, mutants are caught.

The self-test is the grader's own test.  Every case of every exercise (the
starter, each reference, each mutant: grader/selftest/NAME/mutants.toml)
is graded once here, four at a time as `grader selftest -j 4` does, and
each verdict is a test of its own; the per-exercise test files do not
grade these folders again.  Beyond the verdicts: every check a mutant must
fail says why, and each starter's first message points to its TODOs.
The command itself runs once, on one exercise.  Then the judge is checked
on made-up results, so that a blind check (one a mutant passes) is
reported as such.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import leaks
import pytest

from grader import selftest
from grader.engine import CheckResult, ExerciseResult
from grader.exercises import all_exercises
from grader.feedback import Status

# The module's fixture grades every case of every exercise (about 110 runs in
# sandboxes, some slow on purpose): a few minutes on 2 busy cores, and several
# times that under QEMU without KVM (the lab VM), not pytest's default
# 120 s.  A slow machine is real; the grader's own limits still hold.
pytestmark = pytest.mark.timeout(2400)

KIT = Path(__file__).resolve().parent.parent
EXERCISES = all_exercises()
UTS = EXERCISES["uts"]
CASES = [case for exercise in EXERCISES.values() for case in selftest.cases(exercise)]


@pytest.fixture(scope="module")
def verdicts(request) -> dict[str, selftest.Verdict]:
    """Every case of each exercise a selected test names, graded once; the grading leaves nothing behind.

    `pytest tests/test_grader_selftest.py -k uts/` grades the cases of uts only
    (the whole selftest is 37 min in the lab VM).
    """
    named = set()
    for item in request.session.items:
        params = item.callspec.params if item.module is request.module and hasattr(item, "callspec") else {}
        if "case" in params:
            named.add(params["case"].exercise.name)
        elif "name" in params:
            named.add(params["name"])
    before = leaks.snapshot()
    graded = [exercise for exercise in EXERCISES.values() if exercise.name in named]
    found = {v.case.label: v for v in selftest.run(graded, jobs=4)}
    left = leaks.leaks(before)
    assert not left, f"the self-test left kernel objects behind: {left}"
    return found


# The first of these tests waits for the module's fixture, which grades every case of
# every exercise (a hundred cases, four at a time): the module's timeout holds for it
# (in the lab VM, under QEMU without KVM, it took more than 900 s).
@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_each_case_gets_what_it_must(verdicts, case):
    verdict = verdicts[case.label]
    not_passed = {c.name: c.message for c in verdict.result.checks if not c.passed}
    assert verdict.ok, f"{verdict.reason}: {not_passed}"
    if case.kind == "mutant" and case.runs_here():
        checks = {c.name: c for c in verdict.result.checks}
        for name in case.must_fail:  # caught, and told why
            assert checks[name].status is not Status.PASSED and checks[name].message, name


# What each starter's first check says: the run ended, and it points to the TODOs.
STARTER_FIRST = {"uts": ("runs_command", ["TODO"]),
                 "escape": ("prints_secret", ["not in the output", "TODO", "chroot"]),
                 "jail": ("runs_command", ["TODO", "ended"]),
                 "pid1": ("runs_command", ["TODO"]),
                 "veth": ("named_namespaces", ["TODO", "ip netns list"]),
                 "userns": ("runs_command", ["TODO"]),
                 "container": ("runs_command", ["TODO"]),
                 "timens": ("runs_command", ["TODO"])}


@pytest.mark.parametrize("name", sorted(STARTER_FIRST))
def test_each_starter_points_to_its_todos(verdicts, name):
    result = verdicts[f"{name}/starter/{name}"].result
    first, words = STARTER_FIRST[name]
    checks = {c.name: c for c in result.checks}
    for word in words:
        assert word in checks[first].message, (word, checks[first].message)
    for check in result.checks:  # the others: not run, and they say which check they need
        if check.name != first and check.status is Status.SKIPPED:
            assert "needs" in check.message, check.name


def test_every_exercise_has_mutants_a_starter_and_two_languages_of_reference():
    for exercise in EXERCISES.values():
        kinds = [c.kind for c in selftest.cases(exercise)]
        assert kinds.count("mutant") >= 5 and kinds.count("reference") >= 2, exercise.name
        assert kinds.count("starter") == 1, exercise.name


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_each_exercise_has_four_correct_but_unusual_solutions_that_get_full_marks(verdicts, name):
    unusual = [c for c in selftest.cases(EXERCISES[name]) if c.kind == "unusual"]
    assert len(unusual) >= 4, name
    for case in unusual:
        result = verdicts[case.label].result
        assert case.why and result.score == result.max_score > 0, (case.label, result.score)


def test_an_unusual_solution_that_loses_a_point_is_reported():
    unusual = next(c for c in selftest.cases(UTS) if c.kind == "unusual")
    everything = {c.name for c in UTS.checks}
    assert selftest.judge(unusual, result_where(everything)).ok
    verdict = selftest.judge(unusual, result_where(everything - {"default_shell"}))
    assert not verdict.ok and "default_shell" in verdict.reason


def test_the_selftest_command_prints_a_verdict_per_case_and_exits_0():
    out = subprocess.run([sys.executable, "-m", "grader", "selftest", "escape", "-j", "4"], cwd=KIT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WRONG" not in out.stdout
    labels = [c.label for c in selftest.cases(EXERCISES["escape"])]
    for label in labels:
        assert label in out.stdout
    assert f"{len(labels)} of {len(labels)} cases as expected" in out.stdout
    unusual = [c for c in selftest.cases(EXERCISES["escape"]) if c.kind == "unusual"]
    assert f"{len(unusual)} of {len(unusual)} unusuals as expected" in out.stdout
    assert "escape/unusual/leaves_directory" in out.stdout


# The judge, on made-up results -----------------------------------------------------

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
