"""Test sandboxing: nothing a test makes may outlive it.

Every test gets a snapshot of the machine before and after (tests/leaks.py);
anything new afterwards (a process, a namespace, a mount, a netns file, a
veth, an IPC object, a cgroup, a changed hostname) fails the test.  The test
runner is a child subreaper, so a double-forked daemon is caught too.

Rootless tests run labkit as an unprivileged user through setpriv(1), from a
copy of the kit and its virtualenv that every user can read (lessons/kitcopy.py,
which lessons/build.py uses too):
the checkout may be in a 0700 home folder, or under /root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "lessons"))
import leaks  # noqa: E402
from kitcopy import ReadableKit  # noqa: E402

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
    """Run commands as an unprivileged user (TEST_UID) with the readable KIT's labkit and python."""

    def __init__(self, kit: ReadableKit) -> None:
        self.kit = kit
        self.code_dir, self.python = kit.root, kit.python
        self.uid, self.gid = TEST_UID, TEST_GID

    def run(self, argv: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        env = {"PATH": f"{self.kit.bin}:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(self.code_dir),
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
def readable_kit() -> ReadableKit:
    """The kit and its virtualenv in a folder of /tmp that every user can read; removed at the end."""
    kit = ReadableKit()
    yield kit
    kit.remove()


@pytest.fixture(scope="session")
def unprivileged(readable_kit) -> Unprivileged:
    """labkit as user 65534, from the readable copy of the kit; fails if that user cannot run it."""
    who = Unprivileged(readable_kit)
    probe = who.python_code("import labkit, grader, pyroute2, pexpect, rich, nbval, ipykernel")
    if probe.returncode != 0:
        pytest.fail(f"uid {who.uid} cannot run the readable copy of the kit in {readable_kit.root}: "
                    f"{probe.stderr.strip()[-500:]}", pytrace=False)
    return who
