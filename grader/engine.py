"""Checks, exercises, and the loop that grades a workspace.

The shape is xv6's gradelib: a check is a small function with its points
and title, registered by a decorator, run in order::

    uts = Exercise("uts", "your own hostname")

    @uts.check(2, "COMMAND runs in a new UTS namespace", needs=[runs_command])
    def new_uts_namespace(trial: Trial) -> None:
        with trial.run(trial.hostname(), "/bin/sh", "-c", "...") as run:
            ...
            if inside == outside:
                raise Fail("COMMAND is in the caller's UTS namespace", expected=..., seen=...,
                           hint="call unshare(CLONE_NEWUTS) before sethostname(2)")

A check passes by returning, fails by raising ``Fail`` (or ``Timeout``,
``SolutionError``; see grader/feedback.py), and gets partial credit with
``Fail(..., points=1)``.  A check that ``needs`` others is skipped, with a
message, when one of them did not pass.  Each ``trial.run`` starts the
solution in a fresh sandbox (grader/sandbox.py) and keeps its transcript
for the feedback; the trial closes every run when the check ends, however
it ends.

Before the checks of an exercise run, the student's folder is copied once
to a staging folder (and ``make`` is run there, in a sandbox, if the folder
holds a Makefile): a folder that is missing, or has no executable
``solution``, fails every check at once with one clear message.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import random
import shutil
import string
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from .exits import ExitWatch
from .feedback import Fail, SolutionError, Status, printable
from .sandbox import EXERCISE_DIR, Hook, Limits, Sandbox, Session

T = TypeVar("T")
MAX_FOLDER_BYTES = 20 * 1024 * 1024  # an exercise folder bigger than this is not copied
BUILD_LIMITS = Limits(wall=60, cpu=30, memory=1024 * 1024 * 1024, pids=256)


@dataclass(eq=False)
class Check:
    """One check: FN(trial) with its points and title; NEEDS must pass first."""

    fn: Callable[[Trial], object]
    points: float
    title: str
    needs: tuple[Check, ...] = ()

    @property
    def name(self) -> str:
        return self.fn.__name__

    @property
    def contract(self) -> str:
        """The sentence of EXERCISES.md the check judges: the first paragraph of its docstring."""
        return _paragraphs(self.fn.__doc__)[0].strip('"') if self.fn.__doc__ else ""

    @property
    def how(self) -> str:
        """How the check observes it: the rest of its docstring."""
        return "\n\n".join(_paragraphs(self.fn.__doc__)[1:]) if self.fn.__doc__ else ""

    def __repr__(self) -> str:
        return f"<Check {self.name} ({self.points:g} points)>"


def _paragraphs(doc: str) -> list[str]:
    """A docstring's paragraphs, each on one line."""
    return [" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n") if p.strip()] or [""]


class Exercise:
    """An exercise of EXERCISES.md: its name (the workspace folder), title and checks.

    LIMITS are the sandbox's; TOOLS are commands the grader needs on the
    machine for this exercise (e.g. busybox for a root file system).
    WATCH(session), if given, makes a RunWatch for every run of every
    check: a sentence that must hold for the whole of every run ("the
    caller's hostname is never changed") is then judged in every check,
    not only in the one named for it.
    """

    def __init__(self, name: str, title: str, *, limits: Limits | None = None,
                 tools: Sequence[str] = (), namespaces: Sequence[str] = (),
                 watch: Callable[[Session], RunWatch] | None = None) -> None:
        self.name, self.title = name, title
        self.watch = watch  # started on every run of every check, judged when the check ends
        self.limits = limits or Limits()
        self.tools = tuple(tools)
        self.namespaces = tuple(namespaces)  # types the kernel must offer beyond the sandbox's
        self.checks: list[Check] = []

    def check(self, points: float, title: str, *, needs: Iterable[Check] = ()) -> Callable:
        """Decorator: register the function as a check worth POINTS."""
        def register(fn: Callable[[Trial], object]) -> Check:
            c = Check(fn, points, title, tuple(needs))
            self.checks.append(c)
            return c
        return register

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.checks)

    def __repr__(self) -> str:
        return f"<Exercise {self.name}: {len(self.checks)} checks, {self.max_score:g} points>"


class RunWatch(Protocol):
    """Something that watches one run from its start (Exercise's WATCH)."""

    def verdict(self) -> None:
        """Raise Fail if the run broke the watched sentence so far."""

    def close(self) -> None:
        """Stop watching."""


# What a check gets --------------------------------------------------------------

class Trial:
    """A check's view of the solution: runs in fresh sandboxes, and random values."""

    random = random.SystemRandom()

    def __init__(self, exercise: Exercise, staging: Staging) -> None:
        self.exercise, self.staging = exercise, staging
        self.sessions: list[Session] = []
        self.resources: list = []  # closed at the end of the check, before the sessions
        self.watches: list[RunWatch] = []  # the exercise's watch of each run

    def run(self, *args: str, hook: Hook | None = None, limits: Limits | None = None) -> Session:
        """Start ``solution ARGS`` in a new sandbox; the trial closes it at the end of the check."""
        box = Sandbox(str(self.staging.folder), hide=self.staging.hide,
                      limits=limits or self.exercise.limits)
        session = box.start([f"{EXERCISE_DIR}/solution", *args], hook=hook)
        self.sessions.append(session)
        if self.exercise.watch is not None:
            self.watches.append(self.keep(self.exercise.watch(session)))
        return session

    def judge_watches(self) -> None:
        """Raise the first Fail of the exercise's watches of this check's runs."""
        for watch in self.watches:
            watch.verdict()

    def keep(self, resource: T) -> T:
        """Close RESOURCE (anything with a close method) when the check ends."""
        self.resources.append(resource)
        return resource

    def watch_exits(self) -> ExitWatch:
        """The kernel's reports of how processes end, from now to the end of the check."""
        return self.keep(ExitWatch())

    # Values a solution cannot know in advance.
    def token(self, length: int = 8) -> str:
        return "".join(self.random.choice(string.ascii_lowercase + string.digits) for _ in range(length))

    def hostname(self) -> str:
        return f"{self.random.choice(['box', 'lab', 'node', 'host'])}-{self.token(6)}"

    def number(self, low: int, high: int) -> int:
        return self.random.randint(low, high)

    def choice(self, items: Sequence):
        return self.random.choice(items)

    def transcript(self) -> str:
        return "\n".join(s.transcript.text for s in self.sessions)

    def crash(self) -> str:
        return next((c for s in self.sessions if (c := s.crash())), "")

    def close(self) -> None:
        errors = []
        for resource in self.resources:
            try:
                resource.close()
            except Exception as e:  # noqa: BLE001 - close the others first
                errors.append(e)
        for session in self.sessions:
            try:
                session.close()
            except Exception as e:  # noqa: BLE001 - close the others first
                errors.append(e)
        if errors:
            raise errors[0]


# Results ------------------------------------------------------------------------

@dataclass
class CheckResult:
    name: str
    title: str
    status: Status
    points: float
    max_points: float
    message: str = ""
    transcript: str = ""

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED


@dataclass
class ExerciseResult:
    name: str
    title: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.checks)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


@dataclass
class Report:
    student: str
    exercises: list[ExerciseResult] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.exercises)


# Staging: one copy of the student's folder per exercise --------------------------

class Staging:
    """The grader's own copy of one exercise folder, built if it has a Makefile.

    ``problem`` is set (a Fail) when there is nothing that can run.
    """

    def __init__(self, exercise: Exercise, folder: Path, hide: Sequence[str]) -> None:
        self.exercise, self.source = exercise, folder
        self.tmp = Path(tempfile.mkdtemp(prefix="nslab-grader-"))
        self.folder = self.tmp / exercise.name
        self.hide = [*hide, str(self.tmp)]
        self.problem: Fail | None = None
        self.transcript = ""
        try:
            self.problem = self._copy() or self._build() or self._find_solution()
        except BaseException:
            self.remove()
            raise

    def _copy(self) -> Fail | None:
        name = self.exercise.name
        if not self.source.is_dir():
            return SolutionError(f"there is no folder {name}/ in the workspace {self.source.parent}",
                                 hint=f"create {name}/solution, an executable file (see EXERCISES.md)")
        size = _folder_size(self.source)
        if size > MAX_FOLDER_BYTES:
            return SolutionError(f"the folder {name}/ holds {size // 2**20} MiB; the grader copies "
                                 f"at most {MAX_FOLDER_BYTES // 2**20} MiB",
                                 hint="remove build products and data files from the folder")
        try:
            shutil.copytree(self.source, self.folder, symlinks=True)  # links stay links
        except (OSError, shutil.Error) as e:
            first = e.args[0][0][2] if isinstance(e, shutil.Error) and e.args[0] else str(e)
            return SolutionError(f"the grader could not copy the folder {name}/", seen=first,
                                 hint="keep only regular files and folders that you can read in it "
                                      "(no named pipes, no unreadable files)")
        return None

    def _build(self) -> Fail | None:
        if not (self.folder / "Makefile").exists():
            return None
        box = Sandbox(str(self.folder), hide=self.hide, limits=BUILD_LIMITS)
        make_program = shutil.which("make") or "/usr/bin/make"
        with box.start([make_program], cwd=EXERCISE_DIR, export=True) as make:
            try:
                status = make.wait(timeout=BUILD_LIMITS.wall).status
            except Fail as f:
                return SolutionError(f"make did not finish: {f.what}", seen=make.transcript.tail(1500),
                                     hint=f"make must end by itself within {BUILD_LIMITS.wall:g} s: "
                                          "does a rule run the program, or wait for input?")
            self.transcript = make.transcript.text
            if status != 0:
                return SolutionError(f"make failed (exit status {status})",
                                     seen=make.transcript.tail(1500),
                                     hint="run make in your folder and fix the first error it shows")
        return None

    def _find_solution(self) -> Fail | None:
        name, solution = self.exercise.name, self.folder / "solution"
        if not solution.exists() and not solution.is_symlink():
            return SolutionError(f"there is no file {name}/solution",
                                 hint="the grader runs the executable file named 'solution' in "
                                      f"the folder {name}/ (or builds it with make)")
        if not solution.is_file():
            return SolutionError(f"{name}/solution is not a regular file")
        if not os.access(solution, os.X_OK):
            return SolutionError(f"{name}/solution is not executable",
                                 hint=f"chmod +x {name}/solution")
        return _check_interpreter(solution, self.hide)

    def remove(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _folder_size(folder: Path) -> int:
    """Bytes in FOLDER, not following symbolic links (a link to / would be the whole disk)."""
    total = 0
    for here, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(here, name)).st_size
    return total


def _check_interpreter(solution: Path, hide: Sequence[str]) -> Fail | None:
    """A #! line naming a program that the sandbox will not have gives a clear message now."""
    with open(solution, "rb") as f:
        first = f.readline(256)
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if not words:
        return SolutionError("the #! line of solution names no interpreter",
                             hint="write e.g. #!/usr/bin/env python3")
    program = words[0]
    if first.rstrip(b"\n").endswith(b"\r"):
        return SolutionError("the #! line of solution ends with \\r (Windows line endings)",
                             seen=printable(first.decode(errors="replace")),
                             hint="convert the file: sed -i 's/\\r$//' solution")
    paths = {os.path.abspath(program), os.path.realpath(program)}
    if any(p == h or p.startswith(h.rstrip("/") + "/") for p in paths for h in hide):
        return SolutionError(f"the interpreter {program} lives in a folder that the grading "
                             "sandbox hides", hint="use the system's: #!/usr/bin/env python3")
    if not os.access(program, os.X_OK):
        return SolutionError(f"the interpreter {program} on the #! line does not exist",
                             hint="use one the lab VM has: #!/usr/bin/env python3, #!/bin/bash")
    return None


# Grading ----------------------------------------------------------------------------

def grade_exercise(exercise: Exercise, folder: Path, hide: Sequence[str] = (),
                   on_result: Callable[[CheckResult], None] | None = None) -> ExerciseResult:
    """Run every check of EXERCISE on the solution in FOLDER."""
    result = ExerciseResult(exercise.name, exercise.title)
    try:
        staging = Staging(exercise, folder, hide)
    except Exception as e:  # noqa: BLE001 - a grader bug must not stop the other exercises
        if os.environ.get("NSLAB_GRADER_DEBUG"):
            traceback.print_exc(file=sys.stderr)
        problem = SolutionError("the grader could not prepare this exercise, which is not your "
                                f"fault; please tell your instructor ({type(e).__name__})")
        for check in exercise.checks:
            result.checks.append(_result(check, problem.status, 0, problem.feedback()))
        return result
    try:
        done: dict[Check, CheckResult] = {}
        for check in exercise.checks:
            unmet = [n for n in check.needs if not done[n].passed]
            if staging.problem:
                r = _result(check, staging.problem.status, 0, staging.problem.feedback(),
                            staging.transcript)
            elif unmet:
                r = _result(check, Status.SKIPPED, 0, "not run: it needs "
                            + ", ".join(f"'{n.title}'" for n in unmet) + " to pass first")
            else:
                r = run_check(check, exercise, staging)
            done[check] = r
            result.checks.append(r)
            if on_result:
                on_result(r)
    finally:
        staging.remove()
    return result


def run_check(check: Check, exercise: Exercise, staging: Staging) -> CheckResult:
    """Run one check; whatever the solution does, return a result."""
    trial = Trial(exercise, staging)
    try:
        try:
            check.fn(trial)
            trial.judge_watches()
            result = _result(check, Status.PASSED, check.points, "")
        except Fail as f:
            crash = trial.crash()
            status = Status.ERROR if crash and f.status is Status.FAILED else f.status
            message = f"{crash}\n{f.feedback()}" if crash else f.feedback()
            result = _result(check, status, min(max(f.points, 0), check.points), message,
                             trial.transcript())
        finally:
            trial.close()
    except Exception as e:  # noqa: BLE001 - a bug of the grader's, reported as such
        if os.environ.get("NSLAB_GRADER_DEBUG"):
            traceback.print_exc(file=sys.stderr)
        result = _result(check, Status.ERROR, 0, "the grader failed inside this check, which is "
                         f"not your fault; please tell your instructor ({type(e).__name__})")
    return result


def _result(check: Check, status: Status, points: float, message: str,
            transcript: str = "") -> CheckResult:
    return CheckResult(check.name, check.title, status, points, check.points, message,
                       printable(transcript, 6000) if transcript else "")


def grade(student: str, workspace: Path, exercises: Sequence[Exercise], hide: Sequence[str] = (),
          on_result: Callable[[str, CheckResult], None] | None = None) -> Report:
    """Grade EXERCISES of the WORKSPACE of STUDENT."""
    report = Report(student)
    for exercise in exercises:
        report.exercises.append(grade_exercise(
            exercise, workspace / exercise.name, hide,
            (lambda r, ex=exercise.name: on_result(ex, r)) if on_result else None))
    return report
