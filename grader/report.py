"""The grader's output: text for people, JSON, JUnit XML, Gradescope and CSV for machines.

    text        a table per exercise (rich on a terminal, plain in a pipe),
                then the details of every check that did not pass
    json        the shape fixed in EXERCISES.md
    junit       one <testcase> per check; failure or error; points as properties
    gradescope  Gradescope's results.json: score, tests[] with name, score,
                max_score, status, output, visibility
    github-classroom
                one line of base64, the result of a runner of GitHub Classroom's
                autograding-grading-reporter: version, status, max_score, tests[]
    csv         one line per student: the score of each exercise and the total
"""

from __future__ import annotations

import base64
import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TextIO

from .engine import CheckResult, Report
from .feedback import Status, printable

LABEL = {Status.PASSED: "PASS", Status.FAILED: "FAIL", Status.ERROR: "ERROR",
         Status.TIMEOUT: "TIMEOUT", Status.SKIPPED: "SKIP"}
STYLE = {Status.PASSED: "green", Status.FAILED: "red", Status.ERROR: "bold red",
         Status.TIMEOUT: "yellow", Status.SKIPPED: "dim"}


def num(x: float) -> int | float:
    """3.0 -> 3, 1.5 -> 1.5: points as a person writes them."""
    return int(x) if float(x).is_integer() else round(x, 2)


def full_message(c: CheckResult) -> str:
    """The feedback of a check and, if it did not pass, the transcript of its runs."""
    text = c.message
    if c.transcript and not c.passed:
        text += "\n\ntranscript of the run(s):\n" + c.transcript
    return text


# JSON (EXERCISES.md) -------------------------------------------------------------

def to_json(report: Report) -> dict:
    return {
        "student": report.student,
        "score": num(report.score),
        "max_score": num(report.max_score),
        "exercises": [{
            "name": e.name,
            "score": num(e.score),
            "max_score": num(e.max_score),
            "checks": [{"name": c.name, "passed": c.passed, "points": num(c.points),
                        "max_points": num(c.max_points), "message": full_message(c)}
                       for c in e.checks],
        } for e in report.exercises],
    }


def class_json(reports: Sequence[Report]) -> dict:
    return {"students": [to_json(r) for r in reports]}


# Gradescope -----------------------------------------------------------------------

def to_gradescope(report: Report) -> dict:
    tests = []
    for i, e in enumerate(report.exercises, 1):
        for j, c in enumerate(e.checks, 1):
            tests.append({"name": f"{e.name}: {c.title}", "number": f"{i}.{j}",
                          "score": num(c.points), "max_score": num(c.max_points),
                          "status": "passed" if c.passed else "failed",
                          "output": f"{c.status.value}\n{full_message(c)}".rstrip(),
                          "visibility": "visible"})
    return {"score": num(report.score), "max_score": num(report.max_score),
            "output": f"{num(report.score)}/{num(report.max_score)} points",
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


# GitHub Classroom -------------------------------------------------------------------

# The reporter action (classroom-resources/autograding-grading-reporter) reads,
# for each step id X of its `runners`, the environment variable X_RESULTS: the
# base64 of this object.  It sums the tests' scores of every runner that has a
# max_score, marks the job failed when a runner's status is "fail" or "error",
# and prints each test's message under its name.  line_no, filename and
# test_code are what the official command grader writes beside them.  The
# messages share 48000 characters: the whole value travels in one environment
# variable, and Linux refuses one longer than 128 KiB to execve.
CLASSROOM_STATUS = {Status.PASSED: "pass", Status.ERROR: "error"}  # the others: "fail"
CLASSROOM_MESSAGES = 48000


def to_github_classroom(report: Report) -> str:
    several = len(report.exercises) > 1
    limit = max(400, min(3000, CLASSROOM_MESSAGES // max(1, sum(len(e.checks) for e in report.exercises))))
    tests = [{"name": f"{e.name}: {c.title}" if several else c.title,
              "status": CLASSROOM_STATUS.get(c.status, "fail"),
              "score": num(c.points), "max_score": num(c.max_points),
              "message": printable(f"{c.status.value}: {full_message(c)}".rstrip(": "),
                                   limit),
              "line_no": 0, "filename": f"exercises/{e.name}/solution",
              "test_code": f"sudo grader check {e.name}"}
             for e in report.exercises for c in e.checks]
    statuses = {t["status"] for t in tests}
    status = "pass" if statuses <= {"pass"} else "fail" if "fail" in statuses else "error"
    data = {"version": 1, "status": status, "max_score": num(report.max_score), "tests": tests}
    return base64.b64encode(json.dumps(data).encode()).decode()


# JUnit XML ----------------------------------------------------------------------

def to_junit(reports: Sequence[Report]) -> str:
    root = ET.Element("testsuites", name="nslab grader")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for report in reports:
        for e in report.exercises:
            suite = ET.SubElement(root, "testsuite", name=f"{report.student}.{e.name}")
            counts = {"tests": len(e.checks), "failures": 0, "errors": 0, "skipped": 0}
            for c in e.checks:
                case = ET.SubElement(suite, "testcase", classname=f"{report.student}.{e.name}",
                                     name=c.name)
                props = ET.SubElement(case, "properties")
                for key, value in (("title", c.title), ("points", num(c.points)),
                                   ("max_points", num(c.max_points)), ("status", c.status.value)):
                    ET.SubElement(props, "property", name=key, value=str(value))
                if c.passed:
                    continue
                kind = {Status.FAILED: "failure", Status.SKIPPED: "skipped"}.get(c.status, "error")
                counts["failures" if kind == "failure" else "errors" if kind == "error" else "skipped"] += 1
                first = c.message.splitlines()[0] if c.message else c.status.value
                node = ET.SubElement(case, kind, message=printable(first), type=c.status.value)
                node.text = printable(full_message(c), 20000)
            for key, value in counts.items():
                suite.set(key, str(value))
                totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


# CSV ------------------------------------------------------------------------------

def to_csv(reports: Sequence[Report], exercises: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["student", *exercises, "score", "max_score"])
    for r in reports:
        scores = {e.name: num(e.score) for e in r.exercises}
        writer.writerow([r.student, *(scores.get(name, 0) for name in exercises),
                         num(r.score), num(r.max_score)])
    return out.getvalue()


# Text -------------------------------------------------------------------------------

def print_text(report: Report, stream: TextIO, rich: bool) -> None:
    """A table per exercise, the details of what did not pass, and the total."""
    if rich:
        _print_rich(report, stream)
        return
    for e in report.exercises:
        print(f"{e.name}: {e.title}", file=stream)
        for c in e.checks:
            print(f"  {LABEL[c.status]:8} {num(c.points):>3}/{num(c.max_points):<3} {c.title}", file=stream)
            if not c.passed:
                for line in full_message(c).splitlines():
                    print(f"        {line}", file=stream)
        print(f"{e.name}: {num(e.score)}/{num(e.max_score)}\n", file=stream)
    print(f"total: {num(report.score)}/{num(report.max_score)}", file=stream)


def _print_rich(report: Report, stream: TextIO) -> None:
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, highlight=False)
    for e in report.exercises:
        table = Table(title=f"{e.name}: {e.title}", title_justify="left", expand=True)
        table.add_column("check", ratio=3)
        table.add_column("status", no_wrap=True)
        table.add_column("points", justify="right", no_wrap=True)
        table.add_column("message", ratio=5)
        for c in e.checks:
            table.add_row(Text(c.title), Text(LABEL[c.status], style=STYLE[c.status]),
                          f"{num(c.points)}/{num(c.max_points)}", Text(c.message))
        console.print(table)
        for c in e.checks:
            if c.transcript and not c.passed:
                console.print(Panel(Text(c.transcript), title=f"transcript: {c.title}",
                                    title_align="left", border_style="dim"))
        console.print(f"[bold]{e.name}: {num(e.score)}/{num(e.max_score)}[/]\n")
    console.print(f"[bold]total: {num(report.score)}/{num(report.max_score)}[/]")


def print_class_text(reports: Sequence[Report], exercises: Sequence[str], stream: TextIO,
                     rich: bool) -> None:
    """One line per student: the score of each exercise and the total."""
    rows = []
    for r in reports:
        scores = {e.name: f"{num(e.score)}/{num(e.max_score)}" for e in r.exercises}
        rows.append([r.student, *(scores.get(name, "-") for name in exercises),
                     f"{num(r.score)}/{num(r.max_score)}"])
    headers = ["student", *exercises, "total"]
    if rich:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="class results", title_justify="left")
        for h in headers:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        Console(file=stream).print(table)
        return
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=stream)
