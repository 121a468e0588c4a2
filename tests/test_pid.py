"""PID namespaces (labkit.pid), checked from outside with ps, lsns, nsenter and /proc."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tools

from labkit import pid
from labkit.errors import NamespaceLimitError
from labkit.namespace import Namespace
from labkit.spawn import run, spawn

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    """Poll PREDICATE until it returns something true (a guard against hangs, not a timing test)."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)
    return result


def output_of(argv: list[str], namespaces: str, **options) -> str:
    """ARGV's standard output, run in new NAMESPACES; ARGV must succeed."""
    r, w = os.pipe()
    with spawn(argv, namespaces, stdout=w, **options) as child:
        os.close(w)
        with os.fdopen(r) as f:
            text = f.read()
        assert child.wait(timeout=20) == 0
    return text


def parents_of(pids: list[int]) -> list[int]:
    """The PPid of each of PIDS that still exists."""
    parents = []
    for p in pids:
        try:
            parents.append(pid.parent_pid(p))
        except OSError:
            pass
    return parents


def cmdline(p: int) -> str:
    try:
        with open(f"/proc/{p}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


# 1, 2: PID 1, getppid() == 0, NSpid -------------------------------------------------------

def test_first_process_is_pid_1_and_its_parent_is_invisible():
    assert output_of(["sh", "-c", 'echo "$$ $PPID"'], "pid").split() == ["1", "0"]


def test_nspid_lists_one_pid_per_level():
    with spawn(["sleep", "30"], "pid", mount_proc=True) as child:
        assert pid.nspid(child.pid) == [child.pid, 1]
        assert pid.nesting_level(child.pid) == 1
        # ps inside the namespace (nsenter, with its fresh /proc) agrees.
        ps = subprocess.run(["nsenter", "-t", str(child.pid), "-p", "-m",
                             "ps", "-o", "pid=,comm=", "-p", "1"], capture_output=True, text=True, check=True)
        assert ps.stdout.split() == ["1", "sleep"]


def test_getppid_is_the_real_parent_when_seen_from_outside():
    with spawn(["sleep", "30"], "pid") as child:
        # The host's /proc names PID 1's parent (spawn's middle process); inside it is 0.
        middle = pid.parent_pid(child.pid)
        assert middle != 0
        assert pid.parent_pid(middle) == os.getpid()


# 3: nesting, NS_GET_PARENT, the limit of 32 -----------------------------------------------

def report_and_wait(w: int, release: int) -> None:
    """At the bottom of the chain: tell the test our host PID, then wait to be released."""
    os.write(w, str(pid.nspid()[0]).encode())
    os.read(release, 1)


def test_nested_namespaces_give_one_pid_per_level_and_a_parent_chain():
    r, w = os.pipe()
    release_r, release_w = os.pipe()
    with spawn(pid.descend, args=(3, report_and_wait, w, release_r)) as top:
        os.close(w)
        deepest = int(os.read(r, 20))
        try:
            ids = pid.nspid(deepest)
            assert len(ids) == 4 and ids[0] == deepest and ids[-1] == 1
            chain = pid.ancestors_of(deepest)
            assert len(chain) == 3
            assert chain[-1] == Namespace.of("self", "pid")
            # lsns(8) shows the same tree: each namespace's PNS is the next one up.
            lsns = tools.lsns("-t", "pid", "-n", "-o", "NS,PNS", check=True).stdout
            parent_of = {int(ns): int(pns) for ns, pns in (line.split() for line in lsns.splitlines())}
            level = Namespace.of(deepest, "pid")
            for parent in chain:
                assert parent_of[level.inode] == parent.inode
                level = parent
        finally:
            os.write(release_w, b"x")
            for fd in (r, release_r, release_w):
                os.close(fd)
        assert top.wait(timeout=20) == 0


def test_a_namespace_sees_no_parent_from_inside():
    assert pid.descend(2, pid.ancestors_of) == []


def test_33rd_nested_pid_namespace_fails_with_enospc():
    depth = pid.MAX_NESTING - pid.nesting_level()  # how far we may still go from here
    assert len(pid.descend(depth, pid.nspid)) == pid.MAX_NESTING + 1
    with pytest.raises(NamespaceLimitError) as info:
        pid.descend(depth + 1, pid.nspid)
    assert info.value.errno == errno.ENOSPC
    assert "CLONE_NEWPID" in str(info.value) and "32" in str(info.value)


# 4: a fresh /proc ----------------------------------------------------------------------------

def test_fresh_proc_shows_only_the_namespace():
    out = output_of(["ps", "-e", "-o", "pid=,comm="], "pid", mount_proc=True)
    assert [line.split() for line in out.splitlines()] == [["1", "ps"]]


def test_without_a_fresh_proc_pid_1_is_the_hosts_init():
    # /proc numbers processes in the namespace of whoever mounted it.  The
    # shell opens /proc/self/stat itself, so the first field is its own PID there.
    script = 'read -r me rest < /proc/self/stat; echo "$$ $me $(cat /proc/1/comm)"'
    with open("/proc/1/comm") as f:
        host_init = f.read().strip()
    stale = output_of(["sh", "-c", script], "pid").split()
    assert stale[0] == "1" and stale[1] != "1" and stale[2] == host_init
    fresh = output_of(["sh", "-c", script], "pid", mount_proc=True).split()
    assert fresh == ["1", "1", "sh"]


# 5: orphans ------------------------------------------------------------------------------

def test_orphan_is_reparented_to_pid_1():
    assert run(pid.parent_of_an_orphan, namespaces="pid") == 1


def test_orphan_goes_to_the_nearest_subreaper_first():
    def as_subreaper() -> tuple[int, int]:
        pid.become_subreaper()
        return os.getpid(), pid.parent_of_an_orphan()

    me, new_parent = run(lambda: run(as_subreaper), namespaces="pid")
    assert new_parent == me != 1


# 6, 7: signals and the death of PID 1 ----------------------------------------------------

def kill_pid_1_from_a_child() -> str:
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # no handler
    for sig in (signal.SIGTERM, signal.SIGKILL):
        child = os.fork()
        if child == 0:
            os.kill(1, sig)
            os._exit(0)
        os.waitpid(child, 0)
    return "PID 1 survived"


def test_pid_1_ignores_sigterm_and_sigkill_from_inside():
    assert run(kill_pid_1_from_a_child, namespaces="pid") == "PID 1 survived"


def echo() -> None:
    while data := os.read(0, 100):
        os.write(1, data)


def test_pid_1_ignores_sigterm_from_outside_but_not_sigkill():
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    with spawn(echo, "pid", stdin=in_r, stdout=out_w) as child:
        os.close(in_r)
        os.close(out_w)
        os.kill(child.pid, signal.SIGTERM)
        # Alive after the SIGTERM: a pending fatal signal would kill it before it could answer.
        os.write(in_w, b"ping")
        assert os.read(out_r, 4) == b"ping"
        os.kill(child.pid, signal.SIGKILL)  # forced: sent from an ancestor namespace
        assert child.wait(timeout=20) == -signal.SIGKILL
    os.close(in_w)
    os.close(out_r)


def test_when_pid_1_dies_every_process_of_the_namespace_is_killed():
    with spawn(["sh", "-c", "sleep 60 & sleep 60 & wait"], "pid") as child:
        ns = Namespace.of(child.pid, "pid")
        members = wait_until(lambda: len(p := pid.processes_in(ns)) == 3 and p, what="two sleeps")
        child.kill(signal.SIGKILL)
        child.wait(timeout=20)
        for p in members:
            assert not os.path.exists(f"/proc/{p}") or Namespace.of(p, "pid") != ns


# 8: zombies ---------------------------------------------------------------------------------

def test_orphans_stay_zombies_when_pid_1_never_waits():
    # sleep(1) as PID 1 inherits the orphan and never calls wait(2).  The orphan
    # ends only once PID 1 is sleep: the shell before it would have reaped it.
    script = ('(while [ "$(cat /proc/1/comm)" != sleep ]; do sleep 0.01; done &); '
              'exec sleep 30')
    with spawn(["sh", "-c", script], "pid", mount_proc=True) as child:
        ns = Namespace.of(child.pid, "pid")
        # Only once PID 1 is sleep: the shell before it had a zombie child of its own
        # for a moment (the subshell, until it reaped it).  (The orphan's own children
        # are zombies for a moment too, until it reaps them.)
        wait_until(lambda: open(f"/proc/{child.pid}/comm").read() == "sleep\n"
                   and child.pid in parents_of(pid.zombies_in(ns)), what="a zombie child of PID 1 sleep")
        zombies = pid.zombies_in(ns)
        assert len(zombies) == 1
        ps = subprocess.run(["ps", "-o", "stat=,ppid=", "-p", str(zombies[0])],
                            capture_output=True, text=True, check=True)
        stat, ppid = ps.stdout.split()
        assert stat.startswith("Z") and int(ppid) == child.pid


# The init: labkit's, tini and dumb-init must all pass the same tests -------------------------

INITS = {
    "labkit": [sys.executable, "-m", "labkit.pid"],
    "tini": ["tini", "--"],
    "dumb-init": ["dumb-init"],
}


@pytest.fixture(params=list(INITS))
def init(request) -> list[str]:
    return INITS[request.param]


def spawn_init(init: list[str], command: list[str]):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return spawn([*init, *command], "pid", mount_proc=True, env=env)


@pytest.mark.parametrize(("script", "status"), [
    ("exit 0", 0), ("exit 3", 3), ("kill -TERM $$", 128 + signal.SIGTERM)])
def test_init_exits_with_the_status_of_command(init, script, status):
    with spawn_init(init, ["sh", "-c", script]) as child:
        assert child.wait(timeout=20) == status


def test_init_reaps_orphans(init):
    script = "(sleep 1 &); (sleep 1 &); (sleep 1 &); exec sleep 30"
    with spawn_init(init, ["sh", "-c", script]) as child:
        ns = Namespace.of(child.pid, "pid")

        def orphans() -> list[int]:
            return [p for p in pid.processes_in(ns) if cmdline(p) == "sleep 1"]

        # The orphans exist and were reparented to the init (PID 1)...
        found = wait_until(lambda: len(o := orphans()) == 3 and o, what="three orphans")
        assert all(pid.parent_pid(p) == child.pid for p in found)
        # ... and they are reaped: gone from /proc (a zombie would stay, with an empty cmdline).
        wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in found),
                   what="the orphans to be reaped")
        assert pid.zombies_in(ns) == []
        assert len(pid.processes_in(ns)) == 2


def test_init_exits_when_command_exits_and_the_rest_is_killed(init):
    # An init that waited for all its children would hang here for 60 s.
    with spawn_init(init, ["sh", "-c", "sleep 60 & exit 0"]) as child:
        assert child.wait(timeout=20) == 0


def test_init_forwards_signals_to_command(init, tmp_path):
    log = tmp_path / "signals"
    names = ("HUP", "INT", "QUIT", "USR1", "USR2", "TERM")
    script = ('for s in HUP INT QUIT USR1 USR2 TERM; do trap "echo $s >> $1" $s; done; '
              'echo ready >> "$1"; while :; do sleep 0.05; done')
    with spawn_init(init, ["sh", "-c", script, "sh", str(log)]) as child:
        wait_until(lambda: log.exists() and "ready" in log.read_text(), what="COMMAND to start")
        for name in names:
            os.kill(child.pid, getattr(signal, f"SIG{name}"))
            wait_until(lambda name=name: name in log.read_text().split(), what=f"SIG{name} to arrive")
        assert log.read_text().split() == ["ready", *names]


def test_init_reports_a_command_that_cannot_run():
    out = subprocess.run([sys.executable, "-m", "labkit.pid", "/nonexistent/command"],
                         capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 127
    assert "cannot run /nonexistent/command" in out.stderr and "Traceback" not in out.stderr


def test_init_without_command_prints_usage():
    out = subprocess.run([sys.executable, "-m", "labkit.pid"], capture_output=True, text=True,
                         cwd=ROOT, timeout=30)
    assert out.returncode == 2 and "usage:" in out.stderr


# Rootless: the same kernel rules, in a user namespace of our own --------------------------

@pytest.mark.rootless
def test_rootless_pid_1_and_fresh_proc(unprivileged):
    out = unprivileged.labkit("run", "-fp", "--mount-proc", "--", "sh", "-c",
                              'echo "$$ $PPID"; ps -e -o pid=')
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0].split() == ["1", "0"]
    assert [line.strip() for line in lines[1:2]] == ["1"]  # ps lists sh as PID 1 ...
    assert len(lines[1:-1]) == 2  # ... and itself, and nothing of the host


@pytest.mark.rootless
def test_rootless_nesting(unprivileged):
    out = unprivileged.python_code("import json; from labkit import pid; "
                                   "print(json.dumps(pid.descend(4, pid.nspid)))")
    assert out.returncode == 0, out.stderr
    ids = json.loads(out.stdout)
    assert len(ids) == 5 and ids[-1] == 1


@pytest.mark.rootless
@pytest.mark.parametrize(("script", "status"), [("exit 3", 3), ("kill -TERM $$", 143)])
def test_rootless_init_exits_with_the_status_of_command(unprivileged, script, status):
    out = unprivileged.labkit("run", "-fp", "--mount-proc", "--", unprivileged.python, "-m",
                              "labkit.pid", "sh", "-c", script)
    assert out.returncode == status, out.stderr
