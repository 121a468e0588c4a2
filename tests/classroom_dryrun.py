"""A local dry run of a GitHub Actions job: the workflow of `grader classroom init` on this machine.

Runs the `run:` steps of the workflow's one job with bash, as a GitHub-hosted
runner does (`bash --noprofile --norc -eo pipefail`, GITHUB_OUTPUT and
GITHUB_ENV files, ${{ }} expressions substituted first, the same workspace
path on every run), and emulates the few actions the workflow uses:

    actions/checkout          git clone of the student's repository
    actions/cache/restore     copies back what actions/cache/save stored under the key
    actions/cache/save        copies the paths into a folder of this dry run
    ...grading-reporter       decodes X_RESULTS of each runner X, as the reporter does

The runner's machine is this one, which must not change: each step runs in a
mount namespace of its own where /usr/local/bin is an overlay (`make setup`
links the commands there), /var/cache/apt/archives and /root/.cache are
folders of the dry run (a fresh runner's are empty), and sysctl(8) is a stub
that refuses to write.  Packages that are missing are not installed here: the
set-up step does what `make setup` does on a machine that has them all.

    .venv/bin/python tests/classroom_dryrun.py [--keep DIR]

times each step of a push graded without the cache (a fresh virtualenv) and
with it, on a template holding the reference solutions.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

KIT = Path(__file__).resolve().parent.parent
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
GIT = ["git", "-c", "user.name=dry run", "-c", "user.email=dry-run@localhost",
       "-c", "init.defaultBranch=main", "-c", "advice.detachedHead=false"]
SYSCTL_STUB = """#!/bin/sh
echo "sysctl $*" >> {log}
for a; do case "$a" in -w|--write|*=*) echo "dry run: sysctl does not write here" >&2; exit 1;; esac; done
exit 0
"""
# A step in its own mount namespace: $1 the apt archives, $2 $3 the overlay's
# upper and work folders for /usr/local/bin, $4 the sysctl stub, $5 root's cache.
PRIVATE_MOUNTS = """set -e
mount --bind "$1" /var/cache/apt/archives
mount -t overlay nslab-dryrun -o lowerdir=/usr/local/bin,upperdir="$2",workdir="$3" /usr/local/bin
mount --bind "$4" "$(readlink -f /usr/sbin/sysctl)"
mkdir -p /root/.cache && mount --bind "$5" /root/.cache
shift 5
exec "$@"
"""


@dataclass
class Step:
    name: str
    seconds: float
    outcome: str  # success, failure, skipped
    output: str = ""


@dataclass
class Job:
    steps: list[Step] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)  # runner -> decoded X_RESULTS
    encoded: dict[str, str] = field(default_factory=dict)  # runner -> X_RESULTS as the reporter got it
    points: tuple[float, float] | None = None  # the reporter's "Points X/Y"
    sysctl_calls: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Step]:
        return [s for s in self.steps if s.outcome == "failure"]


def git(*argv: str, cwd: Path | None = None) -> str:
    return subprocess.run([*GIT, *argv], cwd=cwd, check=True, capture_output=True, text=True,
                          timeout=120).stdout


def make_student_repo(template: Path, dest: Path, solutions: bool) -> Path:
    """A student's repository: a clone of TEMPLATE, with the kit's references pushed or not."""
    git("clone", "-q", str(template), str(dest))
    if solutions:
        for folder in sorted((dest / "exercises").iterdir()):
            shutil.copy2(KIT / "solutions" / folder.name / "solution", folder / "solution")
        git("commit", "-qam", "my solutions", cwd=dest)
    return dest


class DryRun:
    """A runner with a cache: jobs run one after the other in BASE/work, as on GitHub."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.workspace = base / "work"
        self.store = base / "cache-store"
        self.store.mkdir(parents=True, exist_ok=True)

    def run_job(self, repository: Path) -> Job:
        """A push to REPOSITORY (a git repository): its workflow's one job, step by step."""
        self.repository = repository
        spec = yaml.safe_load((repository / ".github/workflows/classroom.yml").read_text())
        (_, job_spec), = spec["jobs"].items()
        runner = self.runner = self._fresh_runner()
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": str(runner["home"]), "LANG": "C.UTF-8", "CI": "true",
               "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(self.workspace),
               "RUNNER_OS": "Linux", "RUNNER_TEMP": str(runner["temp"])}
        env.update({k: str(v) for k, v in job_spec.get("env", {}).items()})
        job = Job()
        for number, step in enumerate(job_spec["steps"]):
            name = step.get("name") or step.get("uses") or step["run"].splitlines()[0]
            if not self._should_run(step.get("if"), job):
                job.steps.append(Step(name, 0.0, "skipped"))
                continue
            start = time.monotonic()
            try:
                outputs, text = self._run_step(step, number, env, runner, job)
                outcome = "success"
            except StepFailed as e:
                outputs, text, outcome = {}, str(e), "failure"
            job.steps.append(Step(name, time.monotonic() - start, outcome, text))
            if "id" in step:
                job.outputs[step["id"]] = outputs
        log = runner["sysctl-log"]
        job.sysctl_calls = log.read_text().splitlines() if log.exists() else []
        return job

    # The runner ------------------------------------------------------------------

    def _fresh_runner(self) -> dict[str, Path]:
        """A new VM: an empty workspace (at the same path), home, temp, apt archives."""
        runner_dir = self.base / "runner"
        for d in (self.workspace, runner_dir):
            if d.exists():
                shutil.rmtree(d)
        paths = {k: runner_dir / k for k in ("home", "temp", "apt", "bin-upper", "bin-work",
                                             "root-cache")}
        for p in [self.workspace, *paths.values()]:
            p.mkdir(parents=True)
        paths["sysctl-log"] = runner_dir / "sysctl.log"
        stub = runner_dir / "sysctl"
        stub.write_text(SYSCTL_STUB.format(log=paths["sysctl-log"]))
        stub.chmod(0o755)
        paths["sysctl"] = stub
        return paths

    def _should_run(self, condition: str | None, job: Job) -> bool:
        if job.failed and condition not in ("always()", "${{ always() }}"):
            return False  # success() is the default condition
        if condition is None or condition in ("always()", "${{ always() }}"):
            return True
        m = re.fullmatch(r"(?:\$\{\{\s*)?(.+?)\s*(==|!=)\s*'([^']*)'(?:\s*\}\})?", condition)
        if not m:
            raise ValueError(f"the dry run cannot evaluate if: {condition}")
        value = self._value(m.group(1), job, {})
        return (value == m.group(3)) == (m.group(2) == "==")

    def _value(self, expression: str, job: Job, env: dict[str, str]) -> str:
        m = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expression)
        if m:
            return job.outputs.get(m.group(1), {}).get(m.group(2), "")
        m = re.fullmatch(r"env\.(\w+)", expression)
        if m:
            return env.get(m.group(1), "")
        raise ValueError(f"the dry run cannot evaluate ${{{{ {expression} }}}}")

    def _substitute(self, text: str, job: Job, env: dict[str, str]) -> str:
        return EXPRESSION.sub(lambda m: self._value(m.group(1), job, env), text)

    def _run_step(self, step: dict, number: int, env: dict[str, str], runner: dict[str, Path],
                  job: Job) -> tuple[dict[str, str], str]:
        with_ = {k: self._substitute(str(v), job, env) for k, v in step.get("with", {}).items()}
        step_env = {**env, **{k: self._substitute(str(v), job, env)
                              for k, v in step.get("env", {}).items()}}
        if "uses" in step:
            return self._action(step["uses"].split("@")[0], with_, step_env, job), ""
        script = runner["temp"] / f"step-{number}.sh"
        script.write_text(self._substitute(step["run"], job, env))
        output_file, env_file = runner["temp"] / f"output-{number}", runner["temp"] / f"env-{number}"
        output_file.touch()
        env_file.touch()
        step_env.update(GITHUB_OUTPUT=str(output_file), GITHUB_ENV=str(env_file))
        argv = self._private(runner, "bash", "--noprofile", "--norc", "-eo", "pipefail", str(script))
        cwd = self.workspace / step.get("working-directory", "")
        r = subprocess.run(argv, cwd=cwd, env=step_env, capture_output=True, text=True,
                           timeout=1800)
        text = r.stdout + r.stderr
        if r.returncode != 0:
            raise StepFailed(f"exit status {r.returncode}\n{text}")
        env.update(parse_commands_file(env_file))
        return parse_commands_file(output_file), text

    @staticmethod
    def _private(runner: dict[str, Path], *argv: str) -> list[str]:
        """ARGV in a mount namespace of its own, with the runner's machine-wide folders."""
        return ["unshare", "--mount", "--propagation", "private", "--", "bash", "-c",
                PRIVATE_MOUNTS, "dryrun", str(runner["apt"]), str(runner["bin-upper"]),
                str(runner["bin-work"]), str(runner["sysctl"]), str(runner["root-cache"]), *argv]

    def shell(self, script: str, cwd: Path) -> subprocess.CompletedProcess:
        """SCRIPT, typed in CWD on the runner of the last job (after it: its commands, its kit)."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": str(self.runner["home"]), "LANG": "C.UTF-8"}
        return subprocess.run(self._private(self.runner, "bash", "-c", script), cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=900)

    def _paths(self, with_: dict[str, str], env: dict[str, str]) -> list[Path]:
        return [self.workspace / line.strip().replace("~", env["HOME"], 1)
                for line in with_["path"].splitlines() if line.strip()]

    def _action(self, action: str, with_: dict[str, str], env: dict[str, str], job: Job) -> dict:
        if action == "actions/checkout":
            if "repository" in with_ or "ref" in with_:
                raise ValueError("the dry run checks out the student's repository only")
            git("clone", "-q", str(self.repository),
                str(self.workspace / with_.get("path", "")))
            return {}
        if action == "actions/cache/restore":
            entry = self.store / with_["key"]
            if not entry.is_dir():
                return {"cache-hit": "false"}
            for i, path in enumerate(self._paths(with_, env)):
                if (entry / str(i)).exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    subprocess.run(["cp", "-a", str(entry / str(i)), str(path)], check=True)
            return {"cache-hit": "true", "cache-primary-key": with_["key"],
                    "cache-matched-key": with_["key"]}
        if action == "actions/cache/save":
            entry = self.store / with_["key"]
            if entry.exists():  # GitHub keeps the first entry of a key too
                return {}
            entry.mkdir()
            for i, path in enumerate(self._paths(with_, env)):
                if path.exists():
                    subprocess.run(["cp", "-a", str(path), str(entry / str(i))], check=True)
            return {}
        if action == "classroom-resources/autograding-grading-reporter":
            return self._report(with_["runners"], env, job)
        raise ValueError(f"the dry run does not emulate {action}")

    def _report(self, runners: str, env: dict[str, str], job: Job) -> dict:
        """What the reporter reads (src/main.js) and posts (src/notify-classroom.js)."""
        total = maximum = 0.0
        for runner in (r.strip() for r in runners.split(",")):
            value = env.get(f"{runner.upper()}_RESULTS", "")
            try:
                results = json.loads(base64.b64decode(value, validate=True))
            except ValueError:
                raise StepFailed(f"{runner.upper()}_RESULTS is not base64 of JSON: {value[:80]!r}") from None
            job.results[runner], job.encoded[runner] = results, value
            if results.get("max_score"):
                maximum += results["max_score"]
                total += sum(t["score"] for t in results["tests"])
        job.points = (total, maximum)
        if any(r["status"] in ("fail", "error") for r in job.results.values()):
            raise StepFailed(f"Points {total:g}/{maximum:g}; some tests failed")
        return {}


class StepFailed(Exception):
    pass


def parse_commands_file(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT or GITHUB_ENV: NAME=VALUE lines, and NAME<<DELIMITER blocks."""
    values, lines = {}, path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1:end])
            i = end + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        i += 1
    return values


def run(dry: DryRun, template: Path, solutions: bool, label: str) -> Job:
    """One push: a fresh clone of TEMPLATE as the student's repository, graded by a fresh runner."""
    student = dry.base / f"student-{label}"
    if student.exists():
        shutil.rmtree(student)
    return dry.run_job(make_student_repo(template, student, solutions))


def make_template(base: Path, kit_ref: str | None = None) -> Path:
    """`grader classroom init` of this checkout, the kit fetched from this checkout, as a git repository."""
    template = base / "template"
    argv = [str(KIT / ".venv/bin/grader"), "classroom", "init", str(template),
            "--kit-url", str(KIT)]
    subprocess.run([*argv, *(["--kit-ref", kit_ref] if kit_ref else [])], check=True,
                   capture_output=True, text=True)
    git("init", "-q", str(template))
    git("add", "-A", cwd=template)
    git("commit", "-qm", "the assignment's template", cwd=template)
    return template


def main(argv: list[str]) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    base = args.keep or Path(tempfile.mkdtemp(prefix="nslab-dryrun-"))
    try:
        dry = DryRun(base)
        template = make_template(base)
        for label in ("without the cache", "with the cache"):
            job = run(dry, template, solutions=True, label=label.replace(" ", "-"))
            print(f"\na push graded {label}:")
            for s in job.steps:
                print(f"  {s.seconds:7.1f} s  {s.outcome:8} {s.name}")
            print(f"  {sum(s.seconds for s in job.steps):7.1f} s  total; points {job.points}")
            for s in job.failed:
                print(s.output[-3000:])
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
