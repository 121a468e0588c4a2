"""Test sandboxing: nothing a test makes may outlive it.

Every test gets a snapshot of the machine before and after (tests/leaks.py);
anything new afterwards (a process, a namespace, a mount, a netns file, a
veth, an IPC object, a cgroup, a changed hostname) fails the test.  The test
runner is a child subreaper, so a double-forked daemon is caught too.

Rootless tests run labkit as an unprivileged user through setpriv(1), from a
world-readable copy of the code (the checkout may live under /root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import leaks  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TEST_UID = int(os.environ.get("NSLAB_TEST_UID", "65534"))
TEST_GID = int(os.environ.get("NSLAB_TEST_GID", "65534"))


def pytest_configure(config):
    if os.geteuid() != 0:
        raise pytest.UsageError("the nslab test suite runs as root (sudo make test)")
    leaks.become_subreaper()


@pytest.fixture(autouse=True)
def nothing_left_behind():
    before = leaks.snapshot()
    yield
    left = leaks.leaks(before)
    if left:
        leaks.kill_descendants()
        lines = [f"  {kind}: {', '.join(sorted(items))}" for kind, items in left.items()]
        pytest.fail("the test left kernel objects behind:\n" + "\n".join(lines), pytrace=False)


class Unprivileged:
    """Run commands as an unprivileged user (TEST_UID) with labkit importable."""

    def __init__(self, code_dir: Path, python: str) -> None:
        self.code_dir, self.python = code_dir, python
        self.uid, self.gid = TEST_UID, TEST_GID

    def run(self, argv: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(self.code_dir),
               "HOME": "/tmp", "LANG": "C.UTF-8"}
        return subprocess.run(
            ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
             "--inh-caps=-all", *argv],
            env=env, cwd="/", capture_output=True, text=True, timeout=timeout, **kw)

    def python_code(self, code: str, **kw) -> subprocess.CompletedProcess:
        return self.run([self.python, "-c", code], **kw)

    def labkit(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run([self.python, "-m", "labkit", *args], **kw)


@pytest.fixture(scope="session")
def unprivileged(tmp_path_factory) -> Unprivileged:
    """labkit as user 65534: a world-readable copy of the code and a readable python."""
    code = Path(tempfile.mkdtemp(prefix="nslab-code-"))
    for package in ("labkit", "grader"):
        if (ROOT / package).is_dir():
            shutil.copytree(ROOT / package, code / package,
                            ignore=shutil.ignore_patterns("__pycache__"))
    for path in [code, *code.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    python = sys.executable
    probe = Unprivileged(code, python).run([python, "-c", "pass"])
    if probe.returncode != 0:
        python = "/usr/bin/python3"  # the venv's interpreter is not readable by others
    yield Unprivileged(code, python)
    shutil.rmtree(code)
