"""GitHub Classroom: a student template repository whose every push is graded.

    grader classroom init DIR [EXERCISE...] [--kit-url URL] [--kit-ref REF]

writes DIR as the template of a GitHub Classroom assignment: the starters of
the exercises (exercises/NAME/), a README for the student, and the workflow
.github/workflows/classroom.yml.  On each push the workflow, on a GitHub-hosted
Ubuntu runner (a fresh VM where sudo is passwordless and root may create every
namespace type):

 1. checks out the student's repository (student/) and the kit at the pinned
    commit or tag (nslab/), with git, from --kit-url;
 2. restores the kit's virtualenv and the Debian packages it downloaded
    (actions/cache, keyed by the pinned version and the requirements' hash);
 3. sets the kit up with the README's own command, `sudo make setup`, and
    saves the cache when it was missed;
 4. turns kernel.apparmor_restrict_unprivileged_userns off where Ubuntu 24.04
    has it on (root is not affected, the kit's rootless mode is);
 5. runs `sudo grader check NAME --format github-classroom` once per exercise,
    each in a step whose id is NAME, which writes the result as its output;
 6. hands every result to classroom-resources/autograding-grading-reporter,
    which posts "Points X/Y" on the check run that Classroom reads.

The shape of the results comes from the grader (report.to_github_classroom),
not from glue in the workflow.  Docker-based graders cannot do this job: the
default seccomp profile of Docker refuses unshare, setns and mount.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

WORKFLOW = Path(".github/workflows/classroom.yml")
KIT_DIR, STUDENT_DIR = "nslab", "student"  # where the workflow puts the two checkouts
SETUP_COMMAND = "sudo make setup"  # the README's own set-up (tests/test_grader_classroom.py checks it)
# A git ref or commit as the workflow writes it into YAML and bash: nothing to quote.
REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
URL = re.compile(r"[A-Za-z0-9+.:/@_~%-]+")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classroom", help="make a GitHub Classroom template repository",
                       description="GitHub Classroom: grade every push of a student on GitHub's "
                                   "runners.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    init = verbs.add_parser(
        "init", help="write a template repository: starters, README, workflow",
        description="Write DIR as the template repository of a GitHub Classroom assignment: the "
                    "exercises' starters, a README for the student and "
                    f"{WORKFLOW}, which grades every push with the kit at a pinned version.")
    init.add_argument("dir", metavar="DIR", type=Path, help="a new (or empty) folder")
    init.add_argument("exercises", nargs="*", metavar="EXERCISE",
                      help="the exercises of the assignment (default: every one)")
    init.add_argument("--kit-url", metavar="URL",
                      help="where the runner clones the kit from (default: this checkout's "
                           "remote 'origin')")
    init.add_argument("--kit-ref", metavar="REF",
                      help="the kit's commit or tag that grades the assignment (default: this "
                           "checkout's HEAD commit)")


def cmd_classroom(args: argparse.Namespace) -> int:
    from .cli import EXIT_PASSED, UsageError
    from .exercises import all_exercises

    known = all_exercises()
    unknown = [n for n in args.exercises if n not in known]
    if unknown:
        raise UsageError(f"unknown exercise {', '.join(unknown)} (known: {', '.join(known)})")
    names = list(dict.fromkeys(args.exercises)) or list(known)
    url = args.kit_url or _git("remote", "get-url", "origin", what="the kit's repository URL "
                               "(its remote 'origin'): give --kit-url URL")
    ref = args.kit_ref or _git("rev-parse", "HEAD", what="the kit's commit: give --kit-ref REF")
    if not URL.fullmatch(url):
        raise UsageError(f"--kit-url {url!r}: give a plain URL or path (no spaces or quotes)")
    if not REF.fullmatch(ref):
        raise UsageError(f"--kit-ref {ref!r}: give a commit or a tag name")
    ref = full_commit(ref)
    if args.dir.exists() and (not args.dir.is_dir() or any(args.dir.iterdir())):
        raise UsageError(f"{args.dir} exists and is not an empty folder: give a new one")
    init(args.dir, [known[n] for n in names], url, ref)
    print(f"wrote {args.dir}: {len(names)} exercise(s) ({', '.join(names)}), README.md, {WORKFLOW}")
    print(f"the kit: {url} at {ref}")
    print("next: push it to GitHub as a template repository, and make the assignment from it "
          "(README.md of the kit, 'GitHub Classroom')")
    return EXIT_PASSED


def _git(*argv: str, what: str) -> str:
    from .cli import UsageError
    from .sandbox import KIT

    try:
        out = subprocess.run(["git", "-C", str(KIT), *argv], capture_output=True, text=True,
                             check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        raise UsageError(f"cannot read {what}") from None
    return out.stdout.strip()


def full_commit(ref: str) -> str:
    """REF, or the whole commit id if REF abbreviates one: `git fetch` takes only whole ones."""
    from .cli import UsageError

    if not re.fullmatch(r"[0-9a-f]{4,39}", ref):
        return ref
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", what="")
    except UsageError:
        raise UsageError(f"--kit-ref {ref}: an abbreviated commit that this checkout does not "
                         "have; give the whole commit id (40 hex digits), or a tag") from None


def init(dest: Path, exercises: Sequence, kit_url: str, kit_ref: str) -> None:
    """Write the template repository into DEST (new or empty)."""
    from .sandbox import KIT

    names = [e.name for e in exercises]
    for name in names:
        shutil.copytree(KIT / "exercises" / name, dest / "exercises" / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    (dest / WORKFLOW).parent.mkdir(parents=True, exist_ok=True)
    (dest / WORKFLOW).write_text(workflow(names, kit_url, kit_ref))
    (dest / "README.md").write_text(student_readme(exercises, kit_url, kit_ref))


def workflow(names: Sequence[str], kit_url: str, kit_ref: str) -> str:
    """The workflow: one grading step per exercise, whose id the reporter reads as a runner."""
    grading = "".join(f"""
      - name: grade {name}
        id: {name}
        run: |
          result=$(sudo grader check {name} --student {STUDENT_DIR}/exercises \\
            --format github-classroom) || [ $? = 1 ]  # 1: some check did not pass
          echo "result=$result" >> "$GITHUB_OUTPUT"
""" for name in names)
    results = "".join(f"""
          {name.upper()}_RESULTS: "${{{{ steps.{name}.outputs.result }}}}\"""" for name in names)
    return f"""\
# Written by `grader classroom init`: every push is graded by the nslab kit at
# {kit_ref}.
# Classroom reads the points from the check run named "Autograding Tests".
name: Autograding Tests
on: [push, workflow_dispatch, repository_dispatch]
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  run-autograding-tests:
    runs-on: ubuntu-24.04
    if: github.actor != 'github-classroom[bot]'
    timeout-minutes: 20
    env:
      NSLAB_KIT_URL: {kit_url}
      NSLAB_KIT_REF: {kit_ref}
    steps:
      - name: check out the student's repository
        uses: actions/checkout@v5
        with:
          path: {STUDENT_DIR}

      - name: check out the kit at its pinned version
        run: |
          git init -q {KIT_DIR}
          git -C {KIT_DIR} fetch -q --depth 1 "$NSLAB_KIT_URL" "$NSLAB_KIT_REF"
          git -C {KIT_DIR} checkout -q FETCH_HEAD

      - name: cache key (the pinned version, the requirements' hash)
        id: key
        run: |
          hash=$(cat {KIT_DIR}/requirements.txt {KIT_DIR}/pyproject.toml | sha256sum | cut -c1-16)
          echo "key=nslab-$RUNNER_OS-$NSLAB_KIT_REF-$hash" >> "$GITHUB_OUTPUT"

      - name: restore the kit's virtualenv and Debian packages
        id: cache
        uses: actions/cache/restore@v5
        with:
          path: |
            {KIT_DIR}/.venv
            ~/.cache/nslab-apt
          key: ${{{{ steps.key.outputs.key }}}}

      # The README's own set-up.  git gives the checkout's files the time of the
      # checkout, newer than a restored virtualenv: touching its stamps tells make
      # that it is up to date (the cache key holds the requirements' hash).
      - name: set the kit up ({SETUP_COMMAND})
        env:
          CACHE_HIT: ${{{{ steps.cache.outputs.cache-hit }}}}
        run: |
          mkdir -p ~/.cache/nslab-apt
          if [ "$CACHE_HIT" = true ]; then
            touch {KIT_DIR}/.venv/.installed {KIT_DIR}/.venv/share/jupyter/kernels/nslab/kernel.json
            find ~/.cache/nslab-apt -name '*.deb' -exec sudo cp -t /var/cache/apt/archives {{}} +
          fi
          touch "$RUNNER_TEMP/before-setup"
          (cd {KIT_DIR} && {SETUP_COMMAND})
          find /var/cache/apt/archives -maxdepth 1 -name '*.deb' -newer "$RUNNER_TEMP/before-setup" \\
            -exec cp -t ~/.cache/nslab-apt {{}} +

      - name: save the kit's virtualenv and Debian packages
        if: steps.cache.outputs.cache-hit != 'true'
        uses: actions/cache/save@v5
        with:
          path: |
            {KIT_DIR}/.venv
            ~/.cache/nslab-apt
          key: ${{{{ steps.key.outputs.key }}}}

      # Ubuntu 24.04 forbids unprivileged user namespaces through AppArmor: root
      # is not affected, the kit's rootless mode is.  Nothing to do elsewhere.
      - name: allow unprivileged user namespaces
        run: |
          f=/proc/sys/kernel/apparmor_restrict_unprivileged_userns
          if [ -e "$f" ] && [ "$(cat "$f")" != 0 ]; then
            sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0
          fi
{grading}
      - name: report the points to GitHub Classroom
        uses: classroom-resources/autograding-grading-reporter@v1
        env:{results}
        with:
          runners: {",".join(names)}
"""


def student_readme(exercises: Sequence, kit_url: str, kit_ref: str) -> str:
    rows = "\n".join(f"| `{e.name}` | {e.title} | {e.max_score:g} |" for e in exercises)
    return f"""\
# nslab exercises

Write each solution in `exercises/NAME/solution` (the starter tells what it
must do, and how to try it), commit and push: every push is graded on
GitHub's runners, and the points appear in the **Actions** tab, in the run
of "Autograding Tests" (each check, its points and what it saw), and in
GitHub Classroom.

| exercise | what | points |
| --- | --- | --- |
{rows}

Any language works: a script with a shebang, or a binary built by a
`Makefile` in the folder. The grader copies the folder and runs `solution`
as root in namespaces of its own.

## Grading on your own machine

The grader is the nslab kit, at the version that grades the assignment. On
Debian or Ubuntu (or inside the kit's lab VM):

```sh
git clone {kit_url} nslab
cd nslab && git checkout {kit_ref}
{SETUP_COMMAND}
```

Then, from this repository:

```sh
sudo grader check --student exercises         # every exercise
sudo grader check uts --student exercises     # one
```

The kit's lessons (`sudo make lab` in `nslab/`) teach what each exercise needs.
Do not change `.github/workflows/classroom.yml`: it is how your work is graded.
"""
