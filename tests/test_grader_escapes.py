"""A root solution cannot leave its sandbox: every route, judged from outside.

Each case grades, with the real `grader check` command, a workspace of a
class whose uts/solution (tests/hostile/escapes.py) tries one way out of
the grading sandbox, then behaves as the starter does.  The grader runs
from a copy of the kit made for the test (so that an escape that works
appends to the copy's grader/report.py, never to the checkout's), in a
folder on the machine's root file system, beside the other student's
workspace.  From outside, after the run:

* the kit's files (labkit/, grader/, solutions/, exercises/) hash the same;
* the canaries (random tokens: another student's solution, a file of the
  kit, an environment variable of the grader) appear nowhere in what the
  grader printed, transcripts included;
* the tripwire (a file of the test's folder that the sandbox shows
  read-only) is unchanged;
* the grade equals the honest grade (the same solution trying nothing);
* the solution's transcript says no "ESCAPED" (what the read-only probes
  report: a kernel setting it could have written, a module it could have
  loaded);
* nothing is left on the machine (conftest's leak check).

Every attempt is harmless when it works (see tests/hostile/escapes.py).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).resolve().parent / "hostile" / "escapes.py"
KIT_PARTS = ("labkit", "grader", "solutions", "exercises", "pyproject.toml")
SECRET = "NSLAB_ESCAPE_SECRET"

# route: what it tries (the function of tests/hostile/escapes.py of the same name)
ROUTES = {
    "bind_root_then_remount_rw": "a non-recursive bind of / (none of the covers), remounted rw",
    "rbind_root_then_umount_covers": "a recursive bind of /, then umount of the tmpfs covers",
    "umount_covers_then_remount_root_rw": "umount of the covers in place, / remounted rw",
    "remount_root_rw": "/ remounted rw, then a write to the tripwire",
    "mount_block_device": "the root file system's block device (from mountinfo, /sys/dev/block)",
    "mknod_block_device": "a device node made on a tmpfs without nodev, then mounted",
    "proc_1_root": "/proc/1/root and /proc/1/cwd of the sandbox's init",
    "proc_pid_root_of_machine": "/proc/PID/root of a machine process: in /proc, a fresh proc, "
                                "or the machine's proc under the sandbox's",
    "inherited_descriptors": "descriptors 3 and up of its own (the runner leaked one of the "
                             "class folder into the grader), walked up with ..",
    "descriptors_of_the_sandbox_init": "/proc/1/fd/* of the sandbox's init, walked up with ..",
    "open_by_handle_at": "open_by_handle_at(2) with handles of the kit's files",
    "ptrace_the_sandbox_init": "PTRACE_SEIZE of the sandbox's PID 1 and a search of its memory",
    "read_memory_of_the_sandbox_init": "/proc/1/mem of the sandbox's init: the grader's secrets",
    "status_pipe_of_the_sandbox_init": "garbage, a setup error and an exit 0 made up, written "
                                       "into PID 1's pipes (/proc/1/fd), the grader's status pipe",
    "read_environ_of_the_sandbox_init": "/proc/1/environ of the sandbox's init",
    "sys_kernel_settings": "/sys/kernel/uevent_helper and other settings in /sys, open for writing",
    "load_a_module_or_a_kernel": "init_module, finit_module, kexec_load, kexec_file_load",
    "proc_sys_settings": "/proc/sys/kernel/core_pattern and others open for writing; "
                         "kernel/hostname written",
    "cgroup1_release_agent": "a cgroup v1 hierarchy mounted, notify_on_release and release_agent",
    "cgroup_own_limits": "pids.max and memory.limit_in_bytes of its own cgroup",
    "cgroup_move_to_the_root": "the machine's /sys under the sandbox's, its root cgroups' "
                               "cgroup.procs",
}
class FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 128)]


def file_handle(path: Path) -> tuple[int, str]:
    """name_to_handle_at(2): what names PATH's inode on its file system, whatever covers the path."""
    libc = ctypes.CDLL(None, use_errno=True)
    fh, mount_id = FileHandle(128, 0), ctypes.c_int()
    if libc.name_to_handle_at(-100, os.fsencode(path), ctypes.byref(fh), ctypes.byref(mount_id), 0):
        raise OSError(ctypes.get_errno(), "name_to_handle_at", str(path))
    return fh.handle_type, bytes(fh.f_handle[:fh.handle_bytes]).hex()


def tree_hashes(top: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(top.rglob("*")):
        key = str(path.relative_to(top))
        if path.is_symlink():
            hashes[key] = "-> " + os.readlink(path)
        elif path.is_file():
            hashes[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            hashes[key] = "dir"
    return hashes


class Lab:
    """A kit copy and a class of two students on the machine's root file system."""

    def __init__(self) -> None:
        # Not under /tmp or /var/tmp, which the sandbox covers with tmpfs of its own:
        # like a checkout in /home or /work, this folder is hidden by the grader's covers only.
        self.base = Path(tempfile.mkdtemp(prefix="nslab-escapes-", dir="/var/lib"))
        self.kit = self.base / "kit"
        self.kit.mkdir()
        for part in KIT_PARTS:
            src = ROOT / part
            if src.is_dir():
                shutil.copytree(src, self.kit / part, symlinks=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, self.kit / part)
        self.tokens = {name: secrets.token_hex(16) for name in ("victim", "kit", "secret")}
        self.klass = self.base / "class"
        victim = self.klass / "victim" / "uts"
        victim.mkdir(parents=True)
        self.victim_canary = victim / "solution"
        self.victim_canary.write_text(f"#!/bin/sh\n# {self.tokens['victim']}\nexit 1\n")
        self.victim_canary.chmod(0o755)
        self.kit_canary = self.kit / "solutions" / "uts" / "canary.txt"
        self.kit_canary.write_text(self.tokens["kit"] + "\n")
        self.tripwire = self.base / "tripwire"
        self.tripwire.write_text("untouched\n")
        self.workspace = self.klass / "hostile"
        (self.workspace / "uts").mkdir(parents=True)

    def targets(self, route: str) -> dict:
        venv = sys.prefix if sys.prefix != sys.base_prefix else ""
        report_py = self.kit / "grader" / "report.py"
        return {
            "route": route, "base": str(self.base),
            "covered": [str(p) for p in (self.kit, self.klass, self.workspace, venv, "/root", "/home")
                        if p],
            "victim_canary": str(self.victim_canary), "kit_canary": str(self.kit_canary),
            "report_py": str(report_py), "tripwire": str(self.tripwire),
            "handles": {"victim_canary": file_handle(self.victim_canary),
                        "kit_canary": file_handle(self.kit_canary),
                        "report_py": file_handle(report_py)},
            "secret_name": SECRET,
        }

    def grade(self, route: str) -> subprocess.CompletedProcess:
        folder = self.workspace / "uts"
        shutil.copy2(HOSTILE, folder / "solution")
        (folder / "solution").chmod(0o755)
        (folder / "targets.json").write_text(json.dumps(self.targets(route)))
        env = {**os.environ, "PYTHONPATH": str(self.kit), "PYTHONDONTWRITEBYTECODE": "1",
               SECRET: self.tokens["secret"]}
        # A careless runner leaks a descriptor of the class folder into the grader: the
        # solution must not get it, nor reach it through the grader's processes.
        leaked = os.open(self.klass, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return subprocess.run([sys.executable, "-m", "grader", "check", "uts", "--student",
                                   str(self.workspace), "--format", "json"], pass_fds=(leaked,),
                                  cwd=self.kit, env=env, capture_output=True, text=True,
                                  timeout=600)
        finally:
            os.close(leaked)

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def what_it_said(data: dict, start: str) -> list[str]:
    """The lines of the transcripts (in the report's messages) that start with START."""
    lines = {line.strip() for e in data["exercises"] for c in e["checks"]
             for line in c["message"].splitlines()}
    return sorted(line[line.index(start):] for line in lines if start in line)


def verdicts(data: dict) -> list:
    return [(e["name"], c["name"], c["passed"], c["points"])
            for e in data["exercises"] for c in e["checks"]] + [data["score"]]


@pytest.fixture
def lab():
    """A fresh kit copy, class and canaries for each attempt: one that worked changes them."""
    made = Lab()
    yield made
    made.remove()


@pytest.fixture(scope="module")
def honest() -> dict:
    """The grade of the same solution trying nothing."""
    control = Lab()
    try:
        out = control.grade("none")
    finally:
        control.remove()
    assert out.returncode in (0, 1), out.stderr
    data = json.loads(out.stdout)
    assert "tried none" in out.stdout, "the solution's transcript is not in the report"
    return data


def test_the_hostile_solution_grades_as_the_starter_when_it_tries_nothing(honest):
    assert honest["score"] == 0 < honest["max_score"]
    assert "ESCAPED" not in json.dumps(honest)


@pytest.mark.parametrize("route", ROUTES)
def test_a_root_solution_cannot_leave_the_sandbox(lab, honest, route):
    kit_before, hostname = tree_hashes(lab.kit), os.uname().nodename
    out = lab.grade(route)
    seen = out.stdout + out.stderr
    assert out.returncode in (0, 1), out.stderr
    escaped = what_it_said(json.loads(out.stdout), "ESCAPED " + route)
    assert f"tried {route}" in out.stdout, "the attempt did not run: " + out.stdout[-2000:]
    assert tree_hashes(lab.kit) == kit_before, f"the kit changed: {escaped}"
    assert lab.tripwire.read_text() == "untouched\n", f"the tripwire was written: {escaped}"
    for name, token in lab.tokens.items():
        assert token not in seen, f"the {name} canary leaked: {escaped}"
    assert verdicts(json.loads(out.stdout)) == verdicts(honest), f"the grade changed: {escaped}"
    assert not escaped, escaped
    assert os.uname().nodename == hostname
