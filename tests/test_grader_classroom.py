"""GitHub Classroom: `grader classroom init`, `--format github-classroom`, and the workflow run here.

The dry run (tests/classroom_dryrun.py) grades two pushes of a generated
template on this machine as a runner would: the reference solutions (full
points), then the starters (zero), the second push with the cache of the
first.  The kit it fetches is this checkout's HEAD commit: what is not
committed is not in it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from classroom_dryrun import GIT, DryRun, make_template, run

from grader import classroom
from grader import report as fmt
from grader.engine import CheckResult, ExerciseResult, Report
from grader.exercises import all_exercises
from grader.feedback import Status

KIT = Path(__file__).resolve().parent.parent
GRADER = KIT / ".venv/bin/grader"
ACTIONLINT = KIT / ".venv/bin/actionlint"
URL = "https://github.com/example-school/nslab.git"


def decode(value: str) -> dict:
    return json.loads(base64.b64decode(value, validate=True))


def init(dest: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(GRADER), "classroom", "init", str(dest), *args],
                          capture_output=True, text=True, timeout=60)


# --format github-classroom ------------------------------------------------------------

def sample(*names: str) -> Report:
    checks = [
        CheckResult("runs", "runs COMMAND", Status.PASSED, 1, 1, "ran"),
        CheckResult("ns", "new namespace", Status.FAILED, 0.5, 2, "same namespace\nhint: unshare",
                    "[grader] $ solution\n" + "x" * 10000),
        CheckResult("crash", "does not crash", Status.ERROR, 0, 2, "the solution crashed: SIGSEGV"),
        CheckResult("slow", "answers", Status.TIMEOUT, 0, 1, "no answer within 5 s"),
    ]
    return Report("alice", [ExerciseResult(n, "title", checks) for n in names])


def test_github_classroom_format_is_the_object_the_reporter_reads():
    value = fmt.to_github_classroom(sample("uts"))
    assert "\n" not in value  # one line: `echo "result=$(...)" >> "$GITHUB_OUTPUT"`
    data = decode(value)
    assert (data["version"], data["status"], data["max_score"]) == (1, "fail", 6)
    assert [t["name"] for t in data["tests"]] == ["runs COMMAND", "new namespace", "does not crash",
                                                   "answers"]
    assert [t["status"] for t in data["tests"]] == ["pass", "fail", "error", "fail"]
    assert [t["score"] for t in data["tests"]] == [1, 0.5, 0, 0]
    for t in data["tests"]:
        assert {"name", "status", "score", "message", "line_no", "filename", "test_code"} <= set(t)
        assert t["test_code"] == "sudo grader check uts" and len(t["message"]) < 3100
    assert "hint: unshare" in data["tests"][1]["message"]
    assert data["tests"][3]["message"].startswith("timeout: no answer")


def test_github_classroom_value_stays_short_enough_for_an_environment_variable():
    report = sample("uts")
    report.exercises[0].checks = report.exercises[0].checks[1:2] * 30  # twice container's 15
    value = fmt.to_github_classroom(report)  # each with a transcript of 10000 characters
    assert len(value) < 100 * 1024 and len(decode(value)["tests"]) == 30


def test_github_classroom_status_pass_error_and_several_exercises():
    report = sample("uts", "escape")
    for e in report.exercises:
        e.checks = [c for c in e.checks if c.status in (Status.PASSED, Status.ERROR)]
    data = decode(fmt.to_github_classroom(report))
    assert data["status"] == "error" and data["max_score"] == 6
    assert data["tests"][0]["name"] == "uts: runs COMMAND"
    report.exercises[0].checks = report.exercises[0].checks[:1]
    report.exercises[1:] = []
    assert decode(fmt.to_github_classroom(report))["status"] == "pass"


def test_check_class_refuses_github_classroom(tmp_path):
    r = subprocess.run([str(GRADER), "check", "--class", str(tmp_path), "--format",
                        "github-classroom"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--student" in r.stderr


# grader classroom init ---------------------------------------------------------------

def test_init_writes_the_starters_a_readme_and_the_workflow(tmp_path):
    r = init(tmp_path / "t", "uts", "escape", "--kit-url", URL, "--kit-ref", "v1.2")
    assert r.returncode == 0, r.stderr
    t = tmp_path / "t"
    assert sorted(p.name for p in (t / "exercises").iterdir()) == ["escape", "uts"]
    for name in ("uts", "escape"):
        assert (t / "exercises" / name / "solution").read_bytes() == \
            (KIT / "exercises" / name / "solution").read_bytes()
        assert os.access(t / "exercises" / name / "solution", os.X_OK)
    readme = (t / "README.md").read_text()
    assert f"git clone {URL} nslab" in readme and "git checkout v1.2" in readme
    assert classroom.SETUP_COMMAND in readme
    spec = yaml.safe_load((t / ".github/workflows/classroom.yml").read_text())
    (job,) = spec["jobs"].values()
    assert job["env"] == {"NSLAB_KIT_URL": URL, "NSLAB_KIT_REF": "v1.2"}
    ids = [s.get("id") for s in job["steps"]]
    assert ids.index("uts") < ids.index("escape") < len(ids) - 1
    reporter = job["steps"][-1]
    assert reporter["uses"] == "classroom-resources/autograding-grading-reporter@v1"
    assert reporter["with"]["runners"] == "uts,escape"
    assert reporter["env"] == {"UTS_RESULTS": "${{ steps.uts.outputs.result }}",
                               "ESCAPE_RESULTS": "${{ steps.escape.outputs.result }}"}
    assert spec["name"] == "Autograding Tests"  # the check run the reporter updates


def test_init_defaults_to_every_exercise_and_this_checkouts_head(tmp_path):
    if not (KIT / ".git").exists():
        pytest.skip("the kit is not a git checkout")
    head = subprocess.run(["git", "-C", str(KIT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    r = init(tmp_path / "t", "--kit-url", URL)
    assert r.returncode == 0, r.stderr
    spec = yaml.safe_load((tmp_path / "t/.github/workflows/classroom.yml").read_text())
    (job,) = spec["jobs"].values()
    assert job["env"]["NSLAB_KIT_REF"] == head
    assert job["steps"][-1]["with"]["runners"] == ",".join(all_exercises())


def test_init_without_kit_url_takes_the_checkouts_origin_or_says_to_give_one(tmp_path):
    origin = subprocess.run(["git", "-C", str(KIT), "remote", "get-url", "origin"],
                            capture_output=True, text=True)
    r = init(tmp_path / "t", "uts", "--kit-ref", "v1")
    if origin.returncode == 0:
        assert r.returncode == 0, r.stderr
        assert f"git clone {origin.stdout.strip()} nslab" in (tmp_path / "t/README.md").read_text()
    else:
        assert r.returncode == 2 and "give --kit-url URL" in r.stderr
        assert not (tmp_path / "t").exists()


def test_init_writes_the_whole_commit_of_an_abbreviated_one(tmp_path):
    if not (KIT / ".git").exists():
        pytest.skip("the kit is not a git checkout")
    head = subprocess.run(["git", "-C", str(KIT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert init(tmp_path / "t", "uts", "--kit-url", URL, "--kit-ref", head[:9]).returncode == 0
    assert f"NSLAB_KIT_REF: {head}\n" in (tmp_path / "t/.github/workflows/classroom.yml").read_text()
    r = init(tmp_path / "u", "uts", "--kit-url", URL, "--kit-ref", "0000000dead")
    assert r.returncode == 2 and "40 hex digits" in r.stderr


def kit_checkout_step(spec: dict) -> str:
    (job,) = spec["jobs"].values()
    (step,) = [s for s in job["steps"] if s.get("name", "").startswith("check out the kit")]
    return step["run"]


def test_the_kit_checkout_step_fetches_a_pinned_tag_or_commit(tmp_path):
    if not (KIT / ".git").exists():
        pytest.skip("the kit is not a git checkout")
    origin = tmp_path / "origin"  # the kit's repository, with a tag of the instructor's
    subprocess.run([*GIT, "clone", "-q", "--no-checkout", str(KIT), str(origin)], check=True)
    subprocess.run([*GIT, "-C", str(origin), "tag", "-a", "-m", "term", "term-1", "HEAD~1"], check=True)
    for ref, rev in (("term-1", "HEAD~1"), (None, "HEAD")):
        expected = subprocess.run(["git", "-C", str(KIT), "rev-parse", rev], capture_output=True,
                                  text=True, check=True).stdout.strip()
        ref = ref or expected
        script = kit_checkout_step(yaml.safe_load(classroom.workflow(["uts"], str(origin), ref)))
        runner = tmp_path / f"runner-{ref}"
        runner.mkdir()
        r = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                           cwd=runner, env={**os.environ, "NSLAB_KIT_URL": str(origin),
                                            "NSLAB_KIT_REF": ref},
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        got = subprocess.run(["git", "-C", str(runner / "nslab"), "rev-parse", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert got == expected
        assert (runner / "nslab/Makefile").exists()


@pytest.mark.parametrize("args, message", [
    (["nope"], "unknown exercise nope"),
    (["--kit-url", URL, "--kit-ref", "main; rm -rf /"], "--kit-ref"),
    (["--kit-url", "https://x/y z", "--kit-ref", "v1"], "--kit-url"),
])
def test_init_refuses_bad_input_with_a_message(tmp_path, args, message):
    r = init(tmp_path / "t", *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "t").exists()


def test_init_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    r = init(tmp_path, "--kit-url", URL, "--kit-ref", "v1")
    assert r.returncode == 2 and "not an empty folder" in r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_workflow_passes_actionlint_and_shellcheck(tmp_path):
    assert ACTIONLINT.exists(), "actionlint is in requirements.txt: make setup installs it"
    assert shutil.which("shellcheck"), "shellcheck (a test package of the Makefile) checks run: steps"
    assert init(tmp_path / "t", "--kit-url", URL, "--kit-ref", "v1").returncode == 0
    r = subprocess.run([str(ACTIONLINT), "-shellcheck", shutil.which("shellcheck"),
                        ".github/workflows/classroom.yml"],
                       cwd=tmp_path / "t", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    # actionlint is not blind: a reporter fed a step that does not exist is an error
    path = tmp_path / "t/.github/workflows/classroom.yml"
    path.write_text(path.read_text().replace("steps.uts.outputs", "steps.utz.outputs"))
    r = subprocess.run([str(ACTIONLINT), path], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "utz" in r.stdout


def test_the_workflow_sets_the_kit_up_with_the_readmes_own_command():
    readme = (KIT / "README.md").read_text()
    assert "`make setup`" in readme and "sudo make" in readme
    steps = yaml.safe_load(classroom.workflow(["uts"], URL, "v1"))["jobs"]
    (job,) = steps.values()
    assert any(f"(cd nslab && {classroom.SETUP_COMMAND})" in s.get("run", "") for s in job["steps"])


# The dry run ------------------------------------------------------------------------

def grade_json(dry: DryRun) -> dict:
    """`grader check --format json` of the dry run's kit on the workspace it just graded."""
    r = subprocess.run([str(dry.workspace / "nslab/.venv/bin/grader"), "check", "--student",
                        str(dry.workspace / "student/exercises"), "--format", "json"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


# The first test that asks for the pushes waits for both: a virtualenv made
# from PyPI, and every exercise graded four times.
DRY_RUN = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def pushes(tmp_path_factory):
    if subprocess.run(["git", "-C", str(KIT), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("the dry run fetches the kit's HEAD commit: the kit is not a git checkout")
    base = tmp_path_factory.mktemp("classroom")
    def machine() -> tuple:
        """What the dry run's steps would change if their mounts were not private.

        (Another checkout's `make setup` may take the links over meanwhile: only
        a link into the dry run's folder is the dry run's.)
        """
        into_dry_run = [p.name for p in Path("/usr/local/bin").iterdir()
                        if os.path.realpath(p).startswith(str(base))]
        return into_dry_run, set(os.listdir("/var/cache/apt/archives"))

    before = machine()
    dry = DryRun(base)
    template = make_template(base)
    references = run(dry, template, solutions=True, label="references")
    references_json = grade_json(dry)
    typed = typed_readme_commands(dry, template)
    starters = run(dry, template, solutions=False, label="starters")
    starters_json = grade_json(dry)
    after = machine()
    yield {"references": (references, references_json), "starters": (starters, starters_json),
           "machine": (before, after), "typed": typed}
    shutil.rmtree(base, ignore_errors=True)


def sh_blocks(markdown: str) -> list[list[str]]:
    blocks, block = [], None
    for line in markdown.splitlines():
        if line.startswith("```"):
            if block is None and line.strip() == "```sh":
                block = []
            elif block is not None:
                blocks.append(block)
                block = None
        elif block is not None:
            block.append(line.split("  #")[0].strip())
    return blocks


def typed_readme_commands(dry: DryRun, template: Path) -> list:
    """The student README's commands, typed literally on the runner after the references' push.

    The first block fetches the kit as the workflow does (its `sudo make setup`
    is the workflow's own step); the second grades the student's repository
    with the grader that `make setup` put on the PATH.
    """
    fetch, grade = sh_blocks((template / "README.md").read_text())
    assert fetch[-1] == classroom.SETUP_COMMAND
    script = "\n".join(["set -e", *fetch[:-1]])
    typed = [(script, dry.shell(script, dry.runner["home"]))]
    typed += [(command, dry.shell(command, dry.workspace / "student")) for command in grade]
    return typed


def assert_results_match(job, graded: dict) -> None:
    """Each runner's decoded X_RESULTS is `grader check --format json` of its exercise."""
    exercises = {e["name"]: e for e in graded["exercises"]}
    assert sorted(job.results) == sorted(exercises) == sorted(all_exercises())
    for name, results in job.results.items():
        e = exercises[name]
        assert results["max_score"] == e["max_score"]
        assert [t["score"] for t in results["tests"]] == [c["points"] for c in e["checks"]]
        assert [t["status"] == "pass" for t in results["tests"]] == [c["passed"] for c in e["checks"]]
    assert job.points == (graded["score"], graded["max_score"])
    # what reaches the reporter's execve: one environment string each, at most 128 KiB
    assert all(len(f"{name.upper()}_RESULTS={value}") < 128 * 1024 for name, value in job.encoded.items())


@DRY_RUN
def test_dry_run_gives_the_references_full_points_as_grader_check_does(pushes):
    job, graded = pushes["references"]
    assert [s.name for s in job.failed] == [], [s.output[-3000:] for s in job.failed]
    assert graded["score"] == graded["max_score"] > 0
    assert_results_match(job, graded)
    assert all(r["status"] == "pass" for r in job.results.values())


@DRY_RUN
def test_dry_run_gives_the_starters_zero_as_grader_check_does(pushes):
    job, graded = pushes["starters"]
    # the reporter fails the job when a test failed: the only failed step
    assert [s.name for s in job.failed] == ["report the points to GitHub Classroom"]
    assert graded["score"] == 0 and graded["max_score"] > 0
    assert_results_match(job, graded)
    assert job.points == (0, graded["max_score"])


@DRY_RUN
def test_the_second_push_reuses_the_cached_virtualenv(pushes):
    first, _ = pushes["references"]
    second, _ = pushes["starters"]

    def step(job, start):
        (s,) = [s for s in job.steps if s.name.startswith(start)]
        return s

    assert "creating .venv" in step(first, "set the kit up").output
    assert step(first, "save the kit's").outcome == "success"
    assert "creating .venv" not in step(second, "set the kit up").output
    assert step(second, "save the kit's").outcome == "skipped"


@DRY_RUN
def test_the_student_readme_commands_work_as_printed(pushes):
    typed = pushes["typed"]
    for command, r in typed:
        assert r.returncode == 0, f"{command}\n{r.stdout}{r.stderr}"
    (_, every), (_, uts) = typed[-2:]
    _, graded = pushes["references"]
    assert f"total: {graded['score']}/{graded['max_score']}" in every.stdout
    (m,) = [e["max_score"] for e in graded["exercises"] if e["name"] == "uts"]
    assert f"uts: {m}/{m}" in uts.stdout


@DRY_RUN
def test_the_dry_run_leaves_this_machine_alone(pushes):
    (links_before, debs_before), (links_after, debs_after) = pushes["machine"]
    assert links_before == links_after == []  # make setup's links went to an overlay
    assert debs_after - debs_before == set()  # apt's archives were a folder of the dry run
    for job, _ in (pushes["references"], pushes["starters"]):
        assert not any("-w" in call or "=" in call for call in job.sysctl_calls)
    if not os.path.exists("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"):
        for job, _ in (pushes["references"], pushes["starters"]):
            assert job.sysctl_calls == []
