"""labkit.cgroup: make a cgroup, limit it, kill everything in it, remove it.

Every cgroup made here carries the test session's prefix, so the leak check
of conftest.py fails any test that leaves one behind.  Kernel state is read
with independent tools where there is one: findmnt(8) for the layout,
/proc/PID/cgroup and nsenter(1) for membership, ps(1) for processes.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from labkit import cgroup
from labkit.cgroup import Cgroup, spawn_in

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""
V2_ONLY = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
V1_ONLY = "\n".join(line for line in HYBRID.splitlines() if "cgroup2" not in line) + "\n"


@pytest.mark.parametrize("text, kind", [(HYBRID, "hybrid"), (V2_ONLY, "v2"), (V1_ONLY, "v1"), ("", "none")])
def test_layout_is_read_from_mountinfo(tmp_path, text, kind):
    info = tmp_path / "mountinfo"
    info.write_text(text)
    found = cgroup.layout(str(info))
    assert found.kind == kind
    if kind in ("hybrid", "v1"):
        assert found.v1["pids"] == "/sys/fs/cgroup/pids"
        assert found.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"  # one mount, two controllers
        assert "name=systemd" not in found.v1 and "xattr" not in found.v1
    if kind in ("hybrid", "v2"):
        assert found.unified == ("/sys/fs/cgroup/unified" if kind == "hybrid" else "/sys/fs/cgroup")


def test_layout_of_this_machine_agrees_with_findmnt():
    out = subprocess.run(["findmnt", "-rn", "-t", "cgroup2", "-o", "TARGET"],
                         capture_output=True, text=True).stdout.split()
    assert cgroup.layout().unified == (out[0] if out else None)


def test_a_cgroup_gets_a_directory_in_each_hierarchy_and_leaves_none():
    with Cgroup.create() as cg:
        assert cg.name.startswith(os.environ["NSLAB_CGROUP_PREFIX"])
        for home, path in cg.dirs.items():
            assert os.path.isdir(path) and os.path.dirname(path) == home
        assert os.path.dirname(cg.dir_for("pids")) == cgroup.layout().home_of("pids")
        dirs = list(cg.dirs.values())
    assert not any(os.path.exists(d) for d in dirs)


def test_names_must_carry_the_prefix():
    with pytest.raises(ValueError, match="must start with"):
        Cgroup.create("someone-else")


def test_a_child_is_in_the_cgroup_as_proc_pid_cgroup_says():
    with Cgroup.create() as cg, spawn_in(cg, ["sleep", "30"], new_cgroup_namespace=False) as child:
        _wait_for_exec(child.pid, "sleep")
        assert child.pid in cg.pids()
        lines = open(f"/proc/{child.pid}/cgroup").read().splitlines()  # read by the kernel, for us
        pids_line = _line_of_pids("\n".join(lines))
        assert pids_line.endswith(f"/{cg.name}")
        assert cgroup.path_of(child.pid, "pids") == f"/{cg.name}"


def test_cgroup_namespace_shows_the_cgroup_as_root_inside_and_its_path_outside():
    with Cgroup.create() as cg, spawn_in(cg, ["sleep", "30"]) as child:
        _wait_for_exec(child.pid, "sleep")
        outside = open(f"/proc/{child.pid}/cgroup").read()
        inside = subprocess.run(["nsenter", f"--target={child.pid}", "--cgroup",
                                 "cat", f"/proc/{child.pid}/cgroup"],
                                capture_output=True, text=True, check=True).stdout
        assert os.readlink(f"/proc/{child.pid}/ns/cgroup") != os.readlink("/proc/self/ns/cgroup")
    pids_out = _line_of_pids(outside)
    pids_in = _line_of_pids(inside)
    assert pids_out.endswith(f":/{cg.name}")
    assert pids_in.endswith(":/")


def test_a_command_in_a_cgroup_starts_as_spawn_starts_it():
    """Default signal actions (Python ignores SIGPIPE), and a missing command raised here."""
    r, w = os.pipe()
    with Cgroup.create() as cg:
        with spawn_in(cg, ["sh", "-c", "grep SigIgn /proc/self/status; cat /proc/self/cgroup"],
                      stdout=w) as child:
            os.close(w)
            with os.fdopen(r) as f:
                sigign, *cgroups = f.read().splitlines()
            assert child.wait(timeout=30) == 0
        assert sigign.split() == ["SigIgn:", "0000000000000000"]
        assert "0::/" in cgroups  # the cgroup namespace's root: our group
        with pytest.raises(FileNotFoundError):
            spawn_in(cg, ["no-such-command-here"])


def test_namespace_views_show_root_inside_and_the_path_outside():
    with Cgroup.create() as cg:
        views = cgroup.namespace_views(cg)
    inside = {line.split(":")[1]: line.split(":", 2)[2] for line in views["inside"].splitlines()}
    outside = {line.split(":")[1]: line.split(":", 2)[2] for line in views["outside"].splitlines()}
    checked = [c for c in ("pids", "memory", "") if c in inside]  # v1 controllers, the v2 line
    assert checked
    for controller in checked:
        assert inside[controller] == "/"
        assert outside[controller] == f"/{cg.name}"


def test_pids_limit_stops_a_fork_loop():
    def fork_until_refused(tries: int = 60) -> int:
        for started in range(tries):
            try:
                if os.fork() == 0:
                    os.execv("/bin/sleep", ["sleep", "30"])
            except BlockingIOError:  # EAGAIN: fork(2) refused at pids.max
                return started
        return tries

    with Cgroup.create() as cg:
        cg.limit_pids(8)
        child = spawn_in(cg, fork_until_refused)
        started = child.wait(timeout=60)
        assert started == 7  # the forking process counts too
        assert cg.pids_refused() >= 1
        sleepers = cg.pids()
        assert len(sleepers) == 7
        cg.kill()
        assert not cg.pids()
    for pid in sleepers:
        assert subprocess.run(["ps", "-o", "stat=", "-p", str(pid)],
                              capture_output=True, text=True).stdout.strip() in ("", "Z")


def test_memory_limit_oom_kills_a_bounded_allocation():
    code = "data = bytearray(b'x') * (200 << 20)"  # 200 MiB, written: far over the limit
    with Cgroup.create() as cg:
        cg.limit_memory(32 << 20)
        child = spawn_in(cg, ["python3", "-c", code])
        assert child.wait(timeout=60) == -9  # SIGKILL, from the OOM killer
        assert cg.oom_kills() >= 1


def _sessions_of_sleeps(pids: set[int]) -> list[int]:
    """The session of every sleep(1) among PIDS (those that have not exited)."""
    found = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                found.append(os.getsid(pid))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return found


def test_kill_reaches_a_double_forked_daemon():
    script = "setsid sh -c 'sleep 60 & exit' ; sleep 60"
    with Cgroup.create() as cg:
        child = spawn_in(cg, ["sh", "-c", script])
        # Wait for the end state, not for a count: on a slow CPU the cgroup
        # holds three processes for a while before it (sh, setsid's sh and
        # its sleep), and two once that sh has exited.
        deadline = time.monotonic() + 30
        while len(set(_sessions_of_sleeps(cg.pids()))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        sessions = _sessions_of_sleeps(cg.pids())
        assert len(sessions) == 2  # the shell's own sleep, and the daemon
        assert os.getsid(child.pid) in sessions  # the shell's, in its session
        assert len(set(sessions)) == 2  # the daemon's sleep in a session of its own
        cg.kill()
        assert child.wait(timeout=10) == -9
        assert not cg.pids()


def test_kill_without_cgroup_kill_signals_every_pid_until_none_is_left(monkeypatch):
    with Cgroup.create() as cg:
        child = spawn_in(cg, ["sh", "-c", "sleep 60 & sleep 60 & wait"])
        deadline = time.monotonic() + 10
        while len(cg.pids()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        # A kernel before 5.14, or a v1 hierarchy: no cgroup.kill file.
        exists = os.path.exists
        monkeypatch.setattr(cgroup.os.path, "exists",
                            lambda path: not str(path).endswith("/cgroup.kill") and exists(path))
        cg.kill()
        monkeypatch.undo()
        assert child.wait(timeout=10) == -9
        assert not cg.pids()


def test_remove_takes_child_cgroups_too():
    with Cgroup.create() as cg:
        inner = [os.path.join(path, "inner") for path in cg.dirs.values()]
        for path in inner:
            os.mkdir(path)  # as a solution inside might, with its own cgroup mount
    assert not any(os.path.exists(p) for p in inner)


def test_memberships_parse_every_line_of_proc_self_cgroup():
    text = open("/proc/self/cgroup").read().splitlines()
    found = cgroup.memberships()
    assert len(found) == len(text)
    for m, line in zip(found, text, strict=True):
        assert line == f"{m.hierarchy}:{','.join(m.controllers)}:{m.path}"


def test_remove_stale_takes_only_empty_cgroups_of_dead_owners():
    gone = subprocess.Popen(["true"])
    gone.wait()
    prefix = os.environ["NSLAB_CGROUP_PREFIX"]
    homes = {h for h in (cgroup.layout().unified, *cgroup.layout().v1.values()) if h}
    home = sorted(homes)[0]
    stale, alive = f"{home}/{prefix}-{gone.pid}-abcdef", f"{home}/{prefix}-{os.getpid()}-abcdef"
    os.mkdir(stale)
    os.mkdir(alive)
    try:
        removed = cgroup.remove_stale()
        assert stale in removed and not os.path.exists(stale)
        assert os.path.isdir(alive)
    finally:
        for path in (stale, alive):
            if os.path.exists(path):
                os.rmdir(path)


@pytest.mark.rootless
def test_an_unprivileged_user_gets_a_teaching_error(unprivileged):
    out = unprivileged.python_code(textwrap.dedent("""
        from labkit.cgroup import Cgroup, CgroupError
        try:
            Cgroup.create()
        except CgroupError as e:
            print(e)
            raise SystemExit(3)
    """))
    assert out.returncode == 3, out.stderr
    assert "run as root" in out.stdout


def _wait_for_exec(pid: int, comm: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if open(f"/proc/{pid}/comm").read().strip() == comm:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not exec {comm}")


def _line_of_pids(proc_pid_cgroup: str) -> str:
    """The line of /proc/PID/cgroup for the hierarchy that holds the pids
    controller: its v1 hierarchy, or the v2 line "0::PATH" where pids is
    bound to v2 (a v2-only machine, such as the lab VM).
    """
    lines = proc_pid_cgroup.splitlines()
    v1 = [line for line in lines if "pids" in line.split(":")[1].split(",")]
    return v1[0] if v1 else next(line for line in lines if line.startswith("0::"))
