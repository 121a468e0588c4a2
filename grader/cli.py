"""The grader command (EXERCISES.md, "Grader command line").

    grader list
    grader check [EXERCISE...] [--student WORKSPACE]
                 [--format text|json|junit|gradescope|github-classroom] [--output FILE]
    grader check --class DIR [-j N] [--csv FILE]
    grader selftest [EXERCISE...] [-j N]
    grader classroom init DIR [EXERCISE...] [--kit-url URL] [--kit-ref REF]

Exit status of check: 0 when every check passed, 1 when any did not, 2 for
a usage or environment error, with a message that says what to do.  A
student's program never makes the grader print a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SANDBOX_TYPES = ("uts", "mnt", "net", "ipc", "pid", "cgroup")
GRADER_TOOLS = ("nsenter",)


class UsageError(Exception):
    """A mistake in how the grader was called, or a machine it cannot work on."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grader", description="Grade the nslab exercises (see EXERCISES.md).",
        epilog="Run as root: solutions run as root inside namespaces of their own.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="list the exercises and their points",
                       description="List the exercises; with --checks, each check of EXERCISE "
                                   "with the sentence of EXERCISES.md it judges and how.")
    p.add_argument("--checks", metavar="EXERCISE", action="append", default=[],
                   help="show the checks of EXERCISE: points, the contract's sentence, how it is "
                        "observed (may be given more than once)")

    p = sub.add_parser("check", help="grade a workspace, or a whole class",
                       description="Grade the exercises of a workspace (default: the kit's "
                                   "exercises/ folder), or of every workspace in a class folder.")
    p.add_argument("exercises", nargs="*", metavar="EXERCISE",
                   help="exercises to grade (default: every exercise folder in the workspace)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--student", metavar="WORKSPACE", type=Path,
                       help="the student's workspace: one folder per exercise")
    where.add_argument("--class", dest="class_dir", metavar="DIR", type=Path,
                       help="a folder holding one workspace per student")
    p.add_argument("--format", choices=("text", "json", "junit", "gradescope", "github-classroom"),
                   default="text")
    p.add_argument("--output", metavar="FILE", type=Path, help="write the report to FILE")
    p.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                   help="grade N students at a time (with --class; default: as many as keep this "
                        "machine's CPUs busy, about 5 per CPU since grading mostly waits for "
                        "solutions, fewer if memory or the pids limit would not hold them all; "
                        "the first line of output says how many)")
    p.add_argument("--csv", metavar="FILE", type=Path,
                   help="also write one line per student to FILE; with --class, each student's "
                        "result is kept in FILE.d/STUDENT.json, and running the same command "
                        "again (after Ctrl-C, say) grades only the students not kept there, or "
                        "whose exercise folders, exercises asked or grader changed since")

    p = sub.add_parser("selftest", help="check that the grader tells right solutions from wrong",
                       description="Grade the starters (must score 0), the reference solutions "
                                   "and the correct-but-unusual ones (full marks), and the "
                                   "mutants (must fail given checks).")
    p.add_argument("exercises", nargs="*", metavar="EXERCISE")
    p.add_argument("-j", "--jobs", type=int, default=2, metavar="N")

    from .classroom import add_parser as add_classroom_parser
    add_classroom_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .classroom import cmd_classroom
        return {"list": cmd_list, "check": cmd_check, "selftest": cmd_selftest,
                "classroom": cmd_classroom}[args.command](args)
    except UsageError as e:
        print(f"grader: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("grader: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `grader check | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 - a bug of ours: one line, the traceback on request
        if os.environ.get("NSLAB_GRADER_DEBUG"):
            raise
        print(f"grader: internal error ({type(e).__name__}: {e}); set NSLAB_GRADER_DEBUG=1 "
              "for the traceback, and please report it", file=sys.stderr)
        return EXIT_USAGE


# grader list ----------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    from labkit.output import table

    from .exercises import all_exercises
    from .report import num

    known = all_exercises()
    unknown = [n for n in args.checks if n not in known]
    if unknown:
        raise UsageError(f"unknown exercise {', '.join(unknown)} (known: {', '.join(known)})")
    if not args.checks:
        rows = [(e.name, e.title, len(e.checks), num(e.max_score)) for e in known.values()]
        table(["exercise", "title", "checks", "points"], rows)
        return EXIT_PASSED
    for name in dict.fromkeys(args.checks):
        exercise = known[name]
        print(f"{exercise.name}: {exercise.title} ({num(exercise.max_score)} points)\n")
        for check in exercise.checks:
            print(f"  {check.name} ({num(check.points)}): {check.title}")
            print(textwrap.fill(f"contract: \"{check.contract}\"", 96, initial_indent="    ",
                                subsequent_indent="      "))
            print(textwrap.fill(f"observed: {check.how}", 96, initial_indent="    ",
                                subsequent_indent="      "))
            print()
    return EXIT_PASSED


# grader check ---------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    require_root()
    from .preload import preload

    preload()  # before any solution runs: the verdict never comes from code loaded after
    from .exercises import all_exercises

    known = all_exercises()
    unknown = [name for name in args.exercises if name not in known]
    if unknown:
        raise UsageError(f"unknown exercise {', '.join(unknown)} (known: {', '.join(known)})")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("-j needs a number of students to grade at a time, 1 or more")
    for target in (args.output, args.csv):
        if target is not None:
            check_writable(target)
    args.exercises = list(dict.fromkeys(args.exercises))  # each exercise once: "uts uts" is uts
    if args.class_dir is not None:
        return check_class(args, known)
    if args.jobs not in (None, 1):
        raise UsageError("-j grades several students at a time: use it with --class DIR")

    from .engine import grade
    from .sandbox import KIT, hidden_paths

    workspace = (args.student or KIT / "exercises").resolve()
    if not workspace.is_dir():
        raise UsageError(f"there is no workspace folder {workspace}: give --student WORKSPACE, "
                         "a folder with one folder per exercise (uts/, escape/, ...)")
    names = args.exercises or [n for n in known if (workspace / n).is_dir()]
    if not names:
        raise UsageError(f"{workspace} holds no exercise folder ({', '.join(known)}): "
                         "name the exercises to grade, or give another --student WORKSPACE")
    exercises = [known[n] for n in names]
    check_environment(exercises)
    student = _student_name(args.student, workspace)
    with Progress([student], exercises) as progress:
        # The workspace's parent may hold other students' workspaces: hidden too.
        hide = hidden_paths(workspace, workspace.parent)
        report = grade(student, workspace, exercises, hide, progress.advancer(student))
    write_reports([report], exercises, args)
    return EXIT_PASSED if report.passed else EXIT_FAILED


def check_class(args: argparse.Namespace, known: dict) -> int:
    """Grade every workspace of the class folder: grader/roster.py does the work."""
    from . import roster
    from .sandbox import hidden_paths

    if args.format in ("gradescope", "github-classroom"):
        raise UsageError(f"--format {args.format} reports one submission: use --student WORKSPACE")
    class_dir = args.class_dir.resolve()
    if not class_dir.is_dir():
        raise UsageError(f"there is no class folder {class_dir}: give --class DIR, a folder "
                         "with one workspace per student")
    store = roster.store_for(args.csv or args.output)
    if store is not None:
        store = store.resolve()
        if store.exists() and not store.is_dir():
            raise UsageError(f"cannot keep results in {store}: it is not a folder")
    students = sorted(p for p in class_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and p != store)
    if not students:
        raise UsageError(f"{class_dir} holds no student workspace (one folder per student)")
    exercises = [known[n] for n in (args.exercises or known)]
    check_environment(exercises)
    jobs, why = (args.jobs, "") if args.jobs else roster.default_jobs(exercises)
    names = [printable_name(s.name) for s in students]
    board = roster.Board(why, store, sum(len(e.checks) for e in exercises))
    try:
        outcome = roster.grade_class(students, names, exercises, hidden_paths(class_dir), jobs,
                                     store, board)
    except OSError as e:  # the store cannot be written, or no process can be made
        raise UsageError(f"cannot grade the class: {e.strerror}"
                         + (f" ({e.filename})" if e.filename else "")) from None
    write_class_reports(outcome, exercises, args)
    for name in outcome.failed:
        print(f"grader: internal error while grading {name}: not graded (set "
              "NSLAB_GRADER_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
    if outcome.interrupted:
        kept = f"; kept in {store}, run the same command again to grade the rest" if store else ""
        print(f"grader: interrupted: {len(outcome.graded)} of {len(names)} students graded, "
              f"{len(outcome.not_graded)} not graded{kept}", file=sys.stderr)
        return 130
    if outcome.failed:
        return EXIT_USAGE
    return EXIT_PASSED if all(r.passed for r in outcome.graded) else EXIT_FAILED


def write_class_reports(outcome, exercises, args: argparse.Namespace) -> None:
    """The class's report and CSV: the students graded, and those not graded (Ctrl-C)."""
    from . import report as fmt
    from . import roster

    names = [e.name for e in exercises]
    if args.csv:
        _write(args.csv, roster.csv_text(outcome, names, fmt.to_csv))
    if not outcome.not_graded:
        write_reports(outcome.graded, exercises, args, whole_class=True)
        return
    # Some were not graded: the text and JSON reports say who.
    out = open(args.output, "w") if args.output else sys.stdout
    try:
        if args.format == "json":
            data = fmt.class_json(outcome.graded)
            data["not_graded"] = outcome.not_graded
            out.write(json.dumps(data, indent=2) + "\n")
        elif args.format == "junit":
            out.write(fmt.to_junit(outcome.graded))
        else:
            if outcome.graded:
                fmt.print_class_text(outcome.graded, names, out, False)
            out.write(f"{roster.NOT_GRADED}: {', '.join(outcome.not_graded)}\n")
        out.flush()
    finally:
        if out is not sys.stdout:
            out.close()


def write_reports(reports, exercises, args: argparse.Namespace, whole_class: bool = False) -> None:
    from . import report as fmt

    names = [e.name for e in exercises]
    if args.csv:
        _write(args.csv, fmt.to_csv(reports, names))
    try:
        out = open(args.output, "w") if args.output else sys.stdout  # closed below
    except OSError as e:
        raise UsageError(f"cannot write {args.output}: {e.strerror}") from None
    try:
        _write_report(reports, names, args, out, whole_class)
    except BrokenPipeError:
        raise
    except OSError as e:  # a full disk, a file system gone read-only
        raise UsageError(f"cannot write {args.output or 'the report'}: {e.strerror}") from None
    finally:
        if out is not sys.stdout:
            with contextlib.suppress(OSError):
                out.close()


def _write_report(reports, names: list[str], args: argparse.Namespace, out, whole_class: bool) -> None:
    from . import report as fmt

    rich = out is sys.stdout and sys.stdout.isatty()
    if args.format == "json":
        data = fmt.class_json(reports) if whole_class else fmt.to_json(reports[0])
        out.write(json.dumps(data, indent=2) + "\n")
    elif args.format == "junit":
        out.write(fmt.to_junit(reports))
    elif args.format == "gradescope":
        out.write(json.dumps(fmt.to_gradescope(reports[0]), indent=2) + "\n")
    elif args.format == "github-classroom":
        out.write(fmt.to_github_classroom(reports[0]) + "\n")
    elif whole_class:
        fmt.print_class_text(reports, names, out, rich)
    else:
        fmt.print_text(reports[0], out, rich)
    out.flush()


def check_writable(target: Path) -> None:
    """Refuse, before any grading, a report file that could not be written at the end."""
    folder = target.resolve().parent
    if not folder.is_dir():
        raise UsageError(f"cannot write {target}: there is no folder {folder}")
    if target.is_dir():
        raise UsageError(f"cannot write {target}: it is a folder; give a file name")
    if not os.access(target if target.exists() else folder, os.W_OK):
        raise UsageError(f"cannot write {target}: permission denied")


def printable_name(name: str) -> str:
    """A folder name as text that can be printed and written anywhere (no undecodable bytes)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None


def _student_name(given: Path | None, workspace: Path) -> str:
    if given is None:  # the kit's own exercises/: the person at the keyboard
        return os.environ.get("SUDO_USER") or os.environ.get("USER") or "student"
    return printable_name(workspace.name)


def require_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("the grader runs solutions as root, in namespaces of their own: "
                         "run it as root (sudo grader check ...)")


def check_environment(exercises: Sequence) -> None:
    """Refuse to start, with what to do, on a machine the grader cannot work on."""
    require_root()
    types = {*SANDBOX_TYPES, *(t for e in exercises for t in e.namespaces)}
    missing = sorted(t for t in types if not os.path.exists(f"/proc/self/ns/{t}"))
    if missing:
        raise UsageError(f"this kernel has no {', '.join(missing)} namespaces (no /proc/self/ns/"
                         f"{missing[0]}): use a kernel built with them (the lab VM's), see "
                         "`labkit check`")
    tools = {*GRADER_TOOLS, *(t for e in exercises for t in e.tools)}
    absent = sorted(t for t in tools if not shutil.which(t))
    if absent:
        raise UsageError(f"missing program(s) {', '.join(absent)}: install them "
                         "(sudo make setup installs every package the lab needs)")
    from labkit.cgroup import layout, remove_stale

    where = layout()
    if not (where.home_of("pids") and where.home_of("memory")):
        raise UsageError("the grader needs the pids and memory cgroup controllers to bound "
                         "solutions, and this machine mounts none (see /proc/self/mountinfo)")
    remove_stale()  # what a grader killed in the middle of a run left behind


# grader selftest -------------------------------------------------------------------

def cmd_selftest(args: argparse.Namespace) -> int:
    require_root()
    from .preload import preload

    preload()
    from labkit.output import table

    from . import selftest
    from .exercises import all_exercises
    from .report import num

    known = all_exercises()
    unknown = [n for n in args.exercises if n not in known]
    if unknown:
        raise UsageError(f"unknown exercise {', '.join(unknown)} (known: {', '.join(known)})")
    exercises = [known[n] for n in dict.fromkeys(args.exercises or known)]
    check_environment(exercises)
    verdicts = selftest.run(exercises, jobs=max(1, args.jobs))
    table(["case", "score", "verdict", "why"],
          [(v.case.label, f"{num(v.result.score)}/{num(v.result.max_score)}",
            "ok" if v.ok else "WRONG", v.reason) for v in verdicts])
    bad = [v for v in verdicts if not v.ok]
    for kind, verdict in (("mutant", "caught (lost points)"), ("unusual", "correct but unusual, full marks"),
                          ("reference", "references, full marks")):
        of_kind = [v for v in verdicts if v.case.kind == kind]
        if of_kind:
            print(f"{sum(v.ok for v in of_kind)} of {len(of_kind)} {kind}s as expected: {verdict}")
    print(f"{len(verdicts) - len(bad)} of {len(verdicts)} cases as expected")
    return EXIT_FAILED if bad else EXIT_PASSED


# Progress --------------------------------------------------------------------------

class Progress:
    """A progress bar per student on a terminal's stderr; nothing when it is not a terminal."""

    def __init__(self, students: Sequence[str], exercises: Sequence) -> None:
        self.total = sum(len(e.checks) for e in exercises)
        self.students = students
        self.bar = None
        self.tasks: dict[str, object] = {}

    def __enter__(self) -> Progress:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[check]}"),
                                console=Console(file=sys.stderr), transient=True)
            self.bar.start()
            for s in self.students:
                self.tasks[s] = self.bar.add_task(s, total=self.total, check="")
        return self

    def advancer(self, student: str) -> Callable | None:
        if self.bar is None:
            return None
        return lambda exercise, result: self.bar.update(
            self.tasks[student], advance=1, check=f"{exercise}: {result.title}")

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
