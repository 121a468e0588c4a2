"""Self-test: the grader must tell right solutions from wrong ones.

For each exercise NAME, four kinds of solution are graded:

    starter     exercises/NAME                must score 0, each check with a message
    reference   solutions/NAME, and each      must get full marks
                subfolder of it that holds a
                solution or a Makefile (the
                same exercise in other languages)
    unusual     grader/selftest/NAME/CASE     must get full marks: correct but unusual
                (listed in unusual.toml)      (another language, util-linux only, slow to
                                              start, untidy within the contract)
    mutant      grader/selftest/NAME/MUTANT   must fail every check that
                                              grader/selftest/NAME/mutants.toml
                                              lists for it (not judged on a
                                              kernel older than its "kernel")

A mutant is a realistic wrong solution: one mistake a student makes (the
right calls in the wrong order, an exit status lost).  If a mutant passes a
check that should catch its mistake, that check has gone blind.  An unusual
solution meets its contract in a way the references do not; if it loses a
point, a check asks for more than its sentence says.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..engine import Exercise, ExerciseResult, grade_exercise
from ..feedback import Status
from ..sandbox import KIT, hidden_paths

HERE = Path(__file__).resolve().parent
INTERNAL = "the grader failed inside this check"


@dataclass
class Case:
    """One folder to grade and what its result must be."""

    exercise: Exercise
    kind: str  # "starter", "reference", "unusual" or "mutant"
    folder: Path
    must_fail: list[str] = field(default_factory=list)  # mutants only
    why: str = ""
    kernel: str = ""  # the Linux release the catch needs ("6.8"), if any

    def runs_here(self) -> bool:
        """Does this machine's kernel have what the catch needs?"""
        return not self.kernel or _release(os.uname().release) >= _release(self.kernel)

    @property
    def label(self) -> str:
        return f"{self.exercise.name}/{self.kind}/{self.folder.name}"


@dataclass
class Verdict:
    case: Case
    result: ExerciseResult
    ok: bool
    reason: str


def _release(text: str) -> tuple[int, ...]:
    """"6.18.44-fc" -> (6, 18, 44): enough of a kernel release to compare."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("-")[0])[:3])


def cases(exercise: Exercise) -> list[Case]:
    """Every starter, reference and mutant of EXERCISE that exists in the kit."""
    name, found = exercise.name, []
    if (KIT / "exercises" / name).is_dir():
        found.append(Case(exercise, "starter", KIT / "exercises" / name))
    references = KIT / "solutions" / name
    for folder in [references, *sorted(p for p in references.glob("*") if p.is_dir())]:
        if (folder / "solution").exists() or (folder / "Makefile").exists():
            found.append(Case(exercise, "reference", folder))
    unusual = HERE / name / "unusual.toml"
    if unusual.exists():
        for case, spec in tomllib.loads(unusual.read_text()).items():
            found.append(Case(exercise, "unusual", HERE / name / case, why=spec.get("why", "")))
    table = HERE / name / "mutants.toml"
    if table.exists():
        for mutant, spec in tomllib.loads(table.read_text()).items():
            found.append(Case(exercise, "mutant", HERE / name / mutant,
                              list(spec.get("must_fail", [])), spec.get("why", ""),
                              spec.get("kernel", "")))
    return found


def judge(case: Case, result: ExerciseResult) -> Verdict:
    """Is RESULT what CASE must get?"""
    by_name = {c.name: c for c in result.checks}
    internal = [c.name for c in result.checks if INTERNAL in c.message]
    if internal:
        return Verdict(case, result, False, f"grader error in {', '.join(internal)}")
    if case.kind in ("reference", "unusual"):
        wrong = [c.name for c in result.checks if not c.passed]
        reason = f"did not pass: {', '.join(wrong)}" if wrong else "full marks"
        return Verdict(case, result, not wrong, reason)
    if case.kind == "starter":
        silent = [c.name for c in result.checks if not c.message]
        if result.score or silent:
            return Verdict(case, result, False, f"scored {result.score:g}" if result.score
                           else f"no message for {', '.join(silent)}")
        return Verdict(case, result, True, "zero, with messages")
    unknown = [n for n in case.must_fail if n not in by_name]
    if unknown:
        return Verdict(case, result, False, f"mutants.toml names unknown checks: {', '.join(unknown)}")
    passed = [n for n in case.must_fail if by_name[n].status is Status.PASSED]
    if passed or result.score >= result.max_score:
        return Verdict(case, result, False, f"passed {', '.join(passed) or 'everything'}, "
                       f"which must catch: {case.why}")
    return Verdict(case, result, True, "caught by " + ", ".join(case.must_fail))


def run(exercises: Sequence[Exercise], jobs: int = 2,
        on_verdict: Callable[[Verdict], None] | None = None) -> list[Verdict]:
    """Grade every case of EXERCISES, JOBS at a time; return the verdicts in order."""
    todo = [c for e in exercises for c in cases(e)]
    hide = hidden_paths()

    def one(case: Case) -> Verdict:
        if not case.runs_here():
            verdict = Verdict(case, ExerciseResult(case.exercise.name, case.exercise.title), True,
                              f"not judged: the catch needs Linux {case.kernel} or later")
        else:
            verdict = judge(case, grade_exercise(case.exercise, case.folder, hide))
        if on_verdict:
            on_verdict(verdict)
        return verdict

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, todo))
