#!/usr/bin/env python3
"""Build the lesson notebooks from their sources, run them, and check them.

Each lesson has a readable source, ``lessons/src/NN-name.py``, in the
"percent" format that Jupytext and VS Code read: ``# %%`` starts a code
cell, ``# %% [markdown]`` a text cell whose lines start with ``# ``.  The
lines before the first cell are the lesson's header::

    # Lesson 02: UTS namespaces.
    # rootless: yes        (it runs, with the same output, as a normal user)
    # exercise: uts        (it ends with `grader check uts`)
    # uid: 2000            (optional: the unprivileged user it is about; its
    #                       rootless checks run as that uid, whatever --as-user says)

Building turns a source into ``lessons/NN-name.ipynb`` and executes it with
the "nslab" Jupyter kernel, so that the notebook holds every output: a
student sees them before running a cell, and nbval (``--check``, and
``make test`` through tests/test_lessons.py) compares a fresh run with them.

    sudo .venv/bin/python lessons/build.py               # build and run every lesson
    sudo .venv/bin/python lessons/build.py 02-uts        # just this one
    sudo .venv/bin/python lessons/build.py --check       # compare a fresh run, as root
    sudo .venv/bin/python lessons/build.py --check --as-user 65534   # ... and as a normal user

Both run in a UTS namespace of their own whose hostname is "vm", the lab
VM's, so that stored outputs do not depend on the machine that made them
(and so that no lesson could rename the machine).  Other values that differ
between machines and runs (namespace inodes, PIDs, limits, the kernel
release) are replaced before comparing, by the rules in sanitize.cfg.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LESSONS = Path(__file__).resolve().parent
SOURCES = LESSONS / "src"
SANITIZE = LESSONS / "sanitize.cfg"
KERNEL = "nslab"  # the Jupyter kernel `make kernel` registers in .venv
LAB_HOSTNAME = "vm"  # the lab VM's hostname, which the stored outputs show
LAB_DOMAINNAME = "(none)"  # the kernel's default NIS domain name
HEADER_KEYS = {"rootless", "exercise", "uid"}
CELL_TIMEOUT = 120  # seconds; a cell that takes longer is stuck
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class LessonError(Exception):
    """A lesson source that cannot be built, with the file and line."""


# Sources: the percent format ---------------------------------------------------

def lesson_names() -> list[str]:
    """Every lesson, by its source's name: ["01-overview", "02-uts", ...]."""
    return sorted(p.stem for p in SOURCES.glob("[0-9][0-9]-*.py"))


def read_source(name: str | Path) -> tuple[dict, list[dict]]:
    """The header ({"rootless": bool, "exercise": str}) and cells of lesson NAME (or a path).

    A cell is {"cell_type": "markdown" or "code", "source": str, "tags": [...]}.
    """
    path = name if isinstance(name, Path) else SOURCES / f"{name}.py"
    header: dict = {"rootless": False, "exercise": None, "uid": None}
    cells: list[dict] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        marker = re.match(r"# %%(?: \[(\w+)\])?(?: tags=(\[.*\]))?\s*$", line)
        if marker:
            kind = {None: "code", "markdown": "markdown"}.get(marker[1])
            if kind is None:
                raise LessonError(f"{path}:{number}: unknown cell kind [{marker[1]}]")
            cells.append({"cell_type": kind, "lines": [], "tags": json.loads(marker[2] or "[]")})
        elif not cells:
            _read_header_line(header, line, path, number)
        elif cells[-1]["cell_type"] == "markdown":
            if line and not line.startswith("#"):
                raise LessonError(f"{path}:{number}: a markdown line must start with '#'")
            cells[-1]["lines"].append(line[2:] if line.startswith("# ") else line[1:])
        else:
            cells[-1]["lines"].append(line)
    for cell in cells:
        cell["source"] = "\n".join(cell.pop("lines")).strip("\n")
    return header, cells


def _read_header_line(header: dict, line: str, path: Path, number: int) -> None:
    m = re.match(r"#\s*(\w+):\s*(.*?)\s*$", line)
    if not m or m[1] not in HEADER_KEYS:
        return  # a comment
    if m[1] == "rootless":
        if m[2] not in ("yes", "no"):
            raise LessonError(f"{path}:{number}: rootless is 'yes' or 'no'")
        header["rootless"] = m[2] == "yes"
    elif m[1] == "uid":
        if not m[2].split()[0].isdigit():
            raise LessonError(f"{path}:{number}: uid is a number")
        header["uid"] = int(m[2].split()[0])
    else:
        header[m[1]] = m[2]


def notebook_from_source(name: str):
    """A notebook (without outputs) made from lesson NAME's source."""
    import nbformat

    header, cells = read_source(name)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "nslab (labkit)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["nslab"] = {"source": f"src/{name}.py", **header}
    for index, cell in enumerate(cells):
        new = nbformat.v4.new_markdown_cell if cell["cell_type"] == "markdown" else nbformat.v4.new_code_cell
        made = new(cell["source"])
        made.id = f"{name[:2]}-{index:02d}"  # stable ids keep rebuilt notebooks' diffs small
        if cell["tags"]:
            made.metadata["tags"] = cell["tags"]
        nb.cells.append(made)
    return nb


def notebook_path(name: str) -> Path:
    return LESSONS / f"{name}.ipynb"


# Running: in a UTS namespace whose hostname is the lab VM's -------------------

def lab_environment(home: str) -> dict[str, str]:
    """The environment of every run: the same on every machine, whoever runs it."""
    return {
        "PATH": PATH, "HOME": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "JUPYTER_RUNTIME_DIR": f"{home}/runtime", "IPYTHONDIR": f"{home}/ipython",
        "JUPYTER_PLATFORM_DIRS": "1", "PYTHONDONTWRITEBYTECODE": "1",
        "NSLAB_CGROUP_PREFIX": os.environ.get("NSLAB_CGROUP_PREFIX", "nslab"),
    }


def run_in_lab(argv: list[str], home: str, uid: int | None = None, gid: int | None = None,
               timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ARGV in a new UTS namespace with the lab's hostname, as UID if given.

    setpriv(1) drops to UID after the namespace is made: the unprivileged
    user is then in a UTS namespace that it does not own and cannot rename.
    """
    from labkit.spawn import run_command

    if uid is not None:
        argv = ["setpriv", f"--reuid={uid}", f"--regid={gid if gid is not None else uid}",
                "--clear-groups", "--inh-caps=-all", *argv]
    return run_command(argv, "uts", hostname=LAB_HOSTNAME, domainname=LAB_DOMAINNAME,
                       env=lab_environment(home), cwd=str(LESSONS.parent), timeout=timeout)


class LabHome:
    """A scratch HOME (with Jupyter's runtime directory) that UID owns; removed at the end."""

    def __init__(self, uid: int | None = None, gid: int | None = None) -> None:
        self.path = tempfile.mkdtemp(prefix="nslab-lesson-")
        for sub in ("runtime", "ipython"):
            os.mkdir(f"{self.path}/{sub}", 0o700)
        if uid is not None:
            for d in (self.path, f"{self.path}/runtime", f"{self.path}/ipython"):
                os.chown(d, uid, gid if gid is not None else uid)

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def build(names: list[str]) -> int:
    """Build and execute lessons NAMES, each in the lab's UTS namespace."""
    with LabHome() as home:
        result = run_in_lab([sys.executable, __file__, "--execute-here", *names], home)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


def execute_here(names: list[str]) -> int:
    """Build each lesson and run it with nbclient (already inside the lab namespace)."""
    import nbclient
    import nbformat

    for name in names:
        print(f"==> {name}: building from src/{name}.py and running it", flush=True)
        nb = notebook_from_source(name)
        nb.metadata["nslab"]["kernel_release"] = os.uname().release
        client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT,
                                         record_timing=False,
                                         resources={"metadata": {"path": str(LESSONS)}})
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as e:
            print(f"{name}: a cell failed; the notebook was not written.\n{e}", file=sys.stderr)
            return 1
        nbformat.write(nb, notebook_path(name))
        print(f"    wrote {notebook_path(name).relative_to(LESSONS.parent)}", flush=True)
    return 0


# Checking: nbval compares a fresh run with the stored outputs ------------------

def sanitize_rules(names: list[str]) -> str:
    """sanitize.cfg plus a rule for each kernel release involved.

    The release (uname -r) differs between machines, and no regular
    expression tells it apart from other version numbers; so the release of
    this machine and the one each notebook was built on (kept in its
    metadata) are replaced by name.
    """
    releases = {os.uname().release}
    for name in names:
        nb = json.loads(notebook_path(name).read_text())
        releases.add(nb["metadata"].get("nslab", {}).get("kernel_release", os.uname().release))
    extra = "".join(f"\n[kernel release {r}]\nregex: {re.escape(r)}\nreplace: KERNEL-RELEASE\n"
                    for r in sorted(releases, key=len, reverse=True))
    return SANITIZE.read_text() + extra


def check(names: list[str], uid: int | None = None, gid: int | None = None,
          timeout: float = 900) -> subprocess.CompletedProcess:
    """Run lessons NAMES under nbval (as UID if given) and return pytest's result.

    A lesson whose header names its own unprivileged uid runs as that uid
    instead of UID (all NAMES must then agree; main() checks them in groups).
    """
    if uid is not None:
        own = {read_source(n)[0]["uid"] for n in names}
        if len(own) > 1:
            raise LessonError(f"lessons {', '.join(names)} run as different users: check them apart")
        if own != {None}:
            uid = gid = own.pop()
    with LabHome(uid, gid) as home:
        rules = Path(home) / "sanitize.cfg"
        rules.write_text(sanitize_rules(names))
        rules.chmod(0o644)
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "--nbval", f"--nbval-kernel-name={KERNEL}", f"--nbval-sanitize-with={rules}",
                f"--nbval-cell-timeout={CELL_TIMEOUT}",
                *(str(notebook_path(n).relative_to(LESSONS.parent)) for n in names)]
        return run_in_lab(argv, home, uid, gid, timeout)


def kitcopy():
    """lessons/kitcopy.py, the module that makes a copy of the kit any user can read."""
    if str(LESSONS) not in sys.path:
        sys.path.insert(1, str(LESSONS))
    import kitcopy

    return kitcopy


def check_from_readable_copy(argv: list[str]) -> int:
    """Run this command again from a copy of the kit and its venv that any user can read.

    The unprivileged user must read what it runs, and a checkout need not be
    readable: Debian makes home folders with mode 0700.  (lessons/kitcopy.py
    says how the copy is made; it is removed at the end.)
    """
    kit = kitcopy().ReadableKit()
    try:
        print(f"build.py: other users cannot read {LESSONS.parent} or {sys.prefix} (a 0700 home "
              f"folder?): checking a readable copy of the kit in {kit.root}", flush=True)
        return subprocess.call([kit.python, str(kit.root / "lessons" / "build.py"), *argv])
    finally:
        kit.remove()


# The command line ----------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build, run and check the lesson notebooks.")
    parser.add_argument("names", nargs="*", metavar="LESSON", help="e.g. 02-uts (default: all)")
    parser.add_argument("--check", action="store_true", help="compare a fresh run with the stored outputs")
    parser.add_argument("--as-user", type=int, metavar="UID",
                        help="with --check: run as this unprivileged user (rootless lessons only)")
    parser.add_argument("--execute-here", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = args.names or lesson_names()
    unknown = [n for n in names if n not in lesson_names()]
    if unknown:
        parser.error(f"no lesson {', '.join(unknown)} (there are: {', '.join(lesson_names())})")
    if args.execute_here:
        return execute_here(names)
    if os.geteuid() != 0:
        print("build.py runs lessons in a UTS namespace of their own, which needs root "
              "(sudo .venv/bin/python lessons/build.py).", file=sys.stderr)
        return 2
    try:
        if args.check:
            if args.as_user is None:
                result = check(names)
                print(result.stdout + result.stderr, end="")
                return result.returncode
            if not kitcopy().readable_by_all(LESSONS.parent) or not kitcopy().readable_by_all(sys.prefix):
                return check_from_readable_copy(argv if argv is not None else sys.argv[1:])
            groups: dict = {}  # lessons with a uid of their own run apart, as that uid
            for n in names:
                if read_source(n)[0]["rootless"]:
                    groups.setdefault(read_source(n)[0]["uid"], []).append(n)
            status = 0
            for own, group in groups.items():
                if own is not None and own != args.as_user:
                    print(f"build.py: {', '.join(group)} run as uid {own}, the lesson's own user")
                result = check(group, args.as_user)
                print(result.stdout + result.stderr, end="")
                status = status or result.returncode
            return status
        return build(names)
    except LessonError as e:
        print(f"build.py: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.path.insert(0, str(LESSONS.parent))  # labkit, when run from a checkout
    raise SystemExit(main())
