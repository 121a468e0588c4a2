"""The grader's report formats: JSON as EXERCISES.md fixes it, JUnit XML, Gradescope, CSV, text."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

from grader import report as fmt
from grader.engine import CheckResult, ExerciseResult, Report
from grader.feedback import Status


def sample() -> Report:
    checks = [
        CheckResult("runs", "runs COMMAND", Status.PASSED, 1, 1),
        CheckResult("ns", "new namespace", Status.FAILED, 0.5, 2, "same namespace\nhint: unshare",
                    "[grader] $ solution\n\x1b[31mred\x1b[0m"),
        CheckResult("crash", "does not crash", Status.ERROR, 0, 2, "the solution crashed: SIGSEGV"),
        CheckResult("slow", "answers", Status.TIMEOUT, 0, 1, "no answer within 5 s"),
        CheckResult("later", "later", Status.SKIPPED, 0, 1, "not run: it needs 'runs' to pass first"),
    ]
    return Report("alice", [ExerciseResult("uts", "your own hostname", checks)])


def is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def assert_contract_shape(obj: dict) -> None:
    """The JSON shape of EXERCISES.md, key for key and type for type."""
    assert set(obj) == {"student", "score", "max_score", "exercises"}
    assert isinstance(obj["student"], str) and is_num(obj["score"]) and is_num(obj["max_score"])
    for e in obj["exercises"]:
        assert set(e) == {"name", "score", "max_score", "checks"}
        assert isinstance(e["name"], str) and is_num(e["score"]) and is_num(e["max_score"])
        for c in e["checks"]:
            assert set(c) == {"name", "passed", "points", "max_points", "message"}
            assert isinstance(c["name"], str) and isinstance(c["passed"], bool)
            assert is_num(c["points"]) and is_num(c["max_points"]) and isinstance(c["message"], str)


def test_json_has_exactly_the_contract_shape():
    data = json.loads(json.dumps(fmt.to_json(sample())))
    assert_contract_shape(data)
    assert (data["score"], data["max_score"]) == (1.5, 7)
    checks = data["exercises"][0]["checks"]
    assert [c["passed"] for c in checks] == [True, False, False, False, False]
    assert "transcript" in checks[1]["message"] and "red" in checks[1]["message"]


def test_class_json_holds_one_contract_object_per_student():
    data = fmt.class_json([sample(), sample()])
    assert len(data["students"]) == 2
    for student in data["students"]:
        assert_contract_shape(student)


def test_junit_has_a_testcase_per_check_failure_versus_error_and_points():
    root = ET.fromstring(fmt.to_junit([sample()]))
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["runs", "ns", "crash", "slow", "later"]
    kinds = [[child.tag for child in c if child.tag != "properties"] for c in cases]
    assert kinds == [[], ["failure"], ["error"], ["error"], ["skipped"]]
    props = {p.get("name"): p.get("value") for p in cases[1].find("properties")}
    assert props["points"] == "0.5" and props["max_points"] == "2"
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == \
        ("5", "1", "2", "1")
    assert "\x1b" not in ET.tostring(root, encoding="unicode")


def test_gradescope_has_the_results_json_shape():
    data = json.loads(json.dumps(fmt.to_gradescope(sample())))
    assert data["score"] == 1.5 and isinstance(data["tests"], list)
    for test in data["tests"]:
        assert {"name", "score", "max_score", "status", "output", "visibility"} <= set(test)
        assert test["status"] in ("passed", "failed")
        assert test["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
        assert is_num(test["score"]) and is_num(test["max_score"])
    assert data["tests"][0]["name"] == "uts: runs COMMAND"
    assert sum(t["max_score"] for t in data["tests"]) == 7


def test_csv_has_a_line_per_student_with_each_exercise():
    bob = Report("bob", [])
    rows = list(csv.reader(io.StringIO(fmt.to_csv([sample(), bob], ["uts", "jail"]))))
    assert rows == [["student", "uts", "jail", "score", "max_score"],
                    ["alice", "1.5", "0", "1.5", "7"], ["bob", "0", "0", "0", "0"]]


def test_plain_text_has_every_check_and_the_total():
    out = io.StringIO()
    fmt.print_text(sample(), out, rich=False)
    text = out.getvalue()
    for word in ("PASS", "FAIL", "ERROR", "TIMEOUT", "SKIP", "new namespace", "total: 1.5/7"):
        assert word in text


def test_rich_text_escapes_what_the_solution_printed():
    out = io.StringIO()
    report = sample()
    report.exercises[0].checks[1].message = "[bold]not markup[/bold]"
    fmt.print_text(report, out, rich=True)
    assert "[bold]not markup[/bold]" in out.getvalue()
