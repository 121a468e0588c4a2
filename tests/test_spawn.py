"""labkit.spawn as root: new namespaces for a child, checked from outside.

Each claim is read with a tool that is not labkit: readlink(1) of the
child's /proc/PID/ns links, hostname(1), findmnt(8), ps(1), and /proc files
of the child read by the test runner.  The rootless half is in
test_rootless.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from labkit import errors, syscalls
from labkit.errors import MapRuleError, NamespaceError
from labkit.namespace import Namespace
from labkit.nstypes import TYPES
from labkit.spawn import run, run_command, spawn

ALL = [t.name for t in TYPES]


def readlink(pid: int | str, name: str) -> str:
    return subprocess.run(["readlink", f"/proc/{pid}/ns/{name}"], capture_output=True,
                          text=True, check=True).stdout.strip()


def differing_types(pid: int) -> set[str]:
    """The types in which process PID's namespace is not ours, by readlink(1)."""
    return {name for name in ALL if readlink(pid, name) != readlink(os.getpid(), name)}


def children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def gone(pid: int) -> bool:
    """Has PID ended (no such process, or a zombie)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def read_line(fd: int) -> str:
    """One line from a pipe (the child says it is ready)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1)
        assert chunk, "the child closed the pipe early"
        data += chunk
    return data.decode().strip()


# --- which namespaces are new ---------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_each_type_alone_is_the_only_new_namespace(name):
    with spawn(["sleep", "60"], name) as child:
        assert differing_types(child.pid) == {name}
        assert {n: str(ns) for n, ns in child.namespaces.items() if n in ALL} == \
            {n: readlink(child.pid, n) for n in ALL}


def test_all_types_together_are_all_new():
    with spawn(["sleep", "60"], ALL, map_root=True) as child:
        assert differing_types(child.pid) == set(ALL)
        # With "pid" the target is PID 1 inside; spawn's own child is its parent outside.
        assert children_of(child._direct) == [child.pid]
        with open(f"/proc/{child.pid}/status") as f:
            nspid = next(line for line in f if line.startswith("NSpid:")).split()[1:]
        assert nspid == [str(child.pid), "1"]


def test_no_namespaces_is_a_plain_child():
    with spawn(["sleep", "60"]) as child:
        assert differing_types(child.pid) == set()


def test_the_caller_stays_where_it_was():
    before = {name: readlink("self", name) for name in ALL}
    with spawn(["sleep", "60"], ALL, map_root=True):
        pass
    assert {name: readlink("self", name) for name in ALL} == before


# --- user namespaces: the map handshake --------------------------------------------

def test_maps_are_in_place_before_the_command_runs():
    """The command's first act is to read its maps: the parent wrote them while it waited."""
    out = run_command(["cat", "/proc/self/uid_map", "/proc/self/gid_map"], "user", map_root=True)
    assert out.returncode == 0, out.stderr
    assert [line.split() for line in out.stdout.splitlines()] == [["0", "0", "1"], ["0", "0", "1"]]


def test_maps_are_in_place_before_a_function_runs():
    def first_act() -> tuple[str, int]:
        with open("/proc/self/uid_map") as f:
            return f.read().split(), os.getuid()

    assert run(first_act, namespaces="user", map_root=True) == (["0", "0", "1"], 0)


def test_explicit_maps_are_seen_inside_and_outside():
    uid_map, gid_map = "0 0 1\n1 100000 1000", "0 0 1\n1 200000 10\n1000 300000 1"
    command = ["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; exec sleep 60"]
    r, w = os.pipe()
    with spawn(command, "user", uid_map=uid_map, gid_map=gid_map, stdout=w) as child:
        os.close(w)
        inside = [read_line(r).split() for _ in range(7)]
        assert inside == [["0", "0", "1"], ["1", "100000", "1000"],
                          ["0", "0", "1"], ["1", "200000", "10"], ["1000", "300000", "1"],
                          ["0"], ["0"]]
        with open(f"/proc/{child.pid}/uid_map") as f:
            assert [line.split() for line in f] == inside[:2]
        with open(f"/proc/{child.pid}/gid_map") as f:
            assert [line.split() for line in f] == inside[2:5]
        with open(f"/proc/{child.pid}/setgroups") as f:
            assert f.read().strip() == "allow"  # root in the parent may leave it allowed
    os.close(r)


def test_a_map_does_not_change_the_processs_ids():
    """Our uid 0 is not in this map, so inside it shows as the overflow id; outside it is still 0."""
    r, w = os.pipe()
    with spawn(["sh", "-c", "id -u; exec sleep 60"], "user", uid_map="0 100000 65536",
               gid_map="0 100000 65536", stdout=w) as child:
        os.close(w)
        assert read_line(r) == "65534"
        with open(f"/proc/{child.pid}/status") as f:
            status = dict(line.split(":", 1) for line in f)
        assert status["Uid"].split() == ["0"] * 4
    os.close(r)


def test_map_root_implies_a_user_namespace():
    with spawn(["sleep", "60"], "uts", map_root=True) as child:
        assert differing_types(child.pid) == {"uts", "user"}
        with open(f"/proc/{child.pid}/uid_map") as f:
            assert f.read().split() == ["0", "0", "1"]


def test_user_namespace_without_maps_shows_the_overflow_id():
    out = run_command(["id", "-u"], "user")
    assert out.stdout.strip() == "65534"


def test_a_broken_map_raises_in_the_parent_and_leaves_no_child():
    with pytest.raises(MapRuleError) as info:
        spawn(["sleep", "60"], "user", uid_map="0 100000 10\n5 200000 10")  # overlapping
    assert "user_namespaces(7)" in str(info.value)
    assert children_of(os.getpid()) == []


# --- UTS --------------------------------------------------------------------------

def test_hostname_and_domainname_inside_leave_the_machine_alone():
    host, domain = socket.gethostname(), subprocess.run(["domainname"], capture_output=True,
                                                         text=True).stdout
    out = run_command(["sh", "-c", "hostname; domainname"], "uts", hostname="box",
                      domainname="lab.example")
    assert out.stdout.split() == ["box", "lab.example"]
    assert subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip() == host
    assert subprocess.run(["domainname"], capture_output=True, text=True).stdout == domain


def test_hostname_of_a_running_child_seen_with_nsenter():
    with spawn(["sleep", "60"], "uts", hostname="seen-from-outside") as child:
        out = subprocess.run(["nsenter", "-t", str(child.pid), "-u", "hostname"],
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "seen-from-outside"


def test_a_bad_hostname_raises_in_the_parent_and_leaves_no_child():
    with pytest.raises(NamespaceError) as info:
        spawn(["sleep", "60"], "uts", hostname="x" * 65)
    assert "64 bytes" in str(info.value)
    assert children_of(os.getpid()) == []


# --- PID and /proc -----------------------------------------------------------------

def test_mount_proc_shows_only_the_new_namespace():
    out = run_command(["ps", "-e", "-o", "pid=,comm="], "pid", mount_proc=True)
    assert out.returncode == 0, out.stderr
    assert [line.split() for line in out.stdout.splitlines()] == [["1", "ps"]]
    # ls becomes PID 1 after starting a sleep (PID 2); when ls ends, the kernel ends the sleep.
    out = run_command(["sh", "-c", "sleep 60 & exec ls /proc"], "pid", mount_proc=True)
    assert sorted(int(p) for p in out.stdout.split() if p.isdigit()) == [1, 2]


def test_mount_proc_does_not_touch_the_hosts_proc():
    mine = subprocess.run(["findmnt", "-n", "-o", "ID,SOURCE", "/proc"], capture_output=True,
                          text=True).stdout
    with spawn(["sleep", "60"], "pid", mount_proc=True) as child:
        theirs = subprocess.run(["findmnt", "-N", str(child.pid), "-n", "-o", "ID,SOURCE", "/proc"],
                                capture_output=True, text=True).stdout
        assert theirs != mine  # a mount of its own ...
        assert subprocess.run(["findmnt", "-n", "-o", "ID,SOURCE", "/proc"], capture_output=True,
                              text=True).stdout == mine  # ... and ours unchanged


def test_killing_pid_1_kills_the_whole_namespace():
    r, w = os.pipe()
    child = spawn(["sh", "-c", "sleep 600 & echo started; wait"], "pid", stdout=w)
    os.close(w)
    try:
        assert read_line(r) == "started"
        sleeper = children_of(child.pid)[0]
        with open(f"/proc/{sleeper}/status") as f:
            assert next(line for line in f if line.startswith("NSpid:")).split()[2] == "2"
        child.kill()
        assert child.wait(timeout=30) == -signal.SIGKILL
        assert gone(sleeper)
        assert subprocess.run(["ps", "-p", str(sleeper)], capture_output=True).returncode == 1
    finally:
        os.close(r)
        child.kill()
        child.wait()


def test_signals_to_the_middle_process_go_on_to_pid_1():
    r, w = os.pipe()
    child = spawn(["sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done"],
                  "pid", stdout=w)
    os.close(w)
    with child:
        assert read_line(r) == "ready"
        os.kill(child._direct, signal.SIGTERM)  # as a terminal or a supervisor would
        assert child.wait(timeout=30) == 42
    os.close(r)


# --- mount propagation --------------------------------------------------------------

def test_private_mount_inside_is_invisible_outside(tmp_path):
    r, w = os.pipe()
    command = f"mount -t tmpfs inside-only {tmp_path} && echo mounted && exec sleep 60"
    with spawn(["sh", "-c", command], "mnt", stdout=w) as child:
        os.close(w)
        assert read_line(r) == "mounted"
        inside = subprocess.run(["findmnt", "-N", str(child.pid), "-n", "-o", "SOURCE,PROPAGATION",
                                 str(tmp_path)], capture_output=True, text=True)
        assert inside.stdout.split() == ["inside-only", "private"]
        outside = subprocess.run(["findmnt", "-n", str(tmp_path)], capture_output=True, text=True)
        assert outside.returncode == 1 and outside.stdout == ""
    os.close(r)


def mount_below(directory: str) -> None:
    syscalls.mount("tmpfs", directory, "tmpfs")


def propagates_up(directory: str, propagation: str) -> bool:
    """In a mount namespace of our own: make / shared, let a child mount, look."""
    syscalls.mount("none", "/", None, syscalls.MS_REC | syscalls.MS_SHARED)
    run(mount_below, directory, namespaces="mnt", propagation=propagation)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == directory for line in f)


@pytest.mark.parametrize("propagation, seen", [
    ("shared", True), ("unchanged", True), ("private", False), ("slave", False), ("unbindable", False),
])
def test_propagation_decides_whether_a_childs_mount_reaches_its_parent(tmp_path, propagation, seen):
    """mount_namespaces(7): a copy of a shared mount is its peer; private cuts the tie.

    Done one level down, in a mount namespace of its own, so that the
    machine's mounts are never shared with anything.
    """
    assert run(propagates_up, str(tmp_path), propagation, namespaces="mnt") is seen
    assert subprocess.run(["findmnt", str(tmp_path)], capture_output=True).returncode == 1


def sees_mount_made_after_it_started(directory: str, propagation: str) -> bool:
    """In a mount namespace of our own: make / shared, start a child, mount, ask the child."""
    syscalls.mount("none", "/", None, syscalls.MS_REC | syscalls.MS_SHARED)
    go_r, go_w = os.pipe()
    answer_r, answer_w = os.pipe()

    def look_after_the_parent_mounted() -> None:
        os.read(go_r, 1)
        with open("/proc/self/mountinfo") as f:
            seen = any(line.split()[4] == directory for line in f)
        os.write(answer_w, b"1" if seen else b"0")

    with spawn(look_after_the_parent_mounted, "mnt", propagation=propagation) as child:
        mount_below(directory)
        os.write(go_w, b"g")
        child.wait()
    return os.read(answer_r, 1) == b"1"


@pytest.mark.parametrize("propagation, seen", [("slave", True), ("shared", True), ("private", False)])
def test_a_slave_receives_mounts_from_its_master(tmp_path, propagation, seen):
    assert run(sees_mount_made_after_it_started, str(tmp_path), propagation, namespaces="mnt") is seen


def test_unknown_propagation_is_refused_before_forking():
    with pytest.raises(ValueError, match="unknown propagation 'sharde'"):
        spawn(["true"], "mnt", propagation="sharde")


# --- time namespaces ------------------------------------------------------------------

def clocks() -> dict[str, float]:
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return {"uptime": uptime, "monotonic": time.clock_gettime(time.CLOCK_MONOTONIC),
            "boottime": time.clock_gettime(time.CLOCK_BOOTTIME), "realtime": time.time()}


def test_time_offsets_move_boottime_and_monotonic_but_not_realtime():
    before = clocks()
    inside = run(clocks, namespaces="time", time_offsets={"boottime": 86400 * 365, "monotonic": 7200})
    after = clocks()
    tolerance = 60  # the machine is noisy; the offsets are far larger
    for clock, offset in (("uptime", 86400 * 365), ("boottime", 86400 * 365), ("monotonic", 7200),
                          ("realtime", 0)):
        assert before[clock] + offset - 1 <= inside[clock] <= after[clock] + offset + tolerance, clock


def test_time_offsets_can_be_read_from_outside_and_may_be_negative_fractions():
    with spawn(["sleep", "60"], "time", time_offsets={"monotonic": -1.5, "boottime": 2.25}) as child:
        with open(f"/proc/{child.pid}/timens_offsets") as f:
            offsets = {line.split()[0]: line.split()[1:] for line in f}
    assert offsets == {"monotonic": ["-2", "500000000"], "boottime": ["2", "250000000"]}


def test_an_offset_that_makes_a_clock_negative_is_erange():
    with pytest.raises(NamespaceError) as info:
        spawn(["sleep", "60"], "time", time_offsets={"boottime": -1e8})
    assert info.value.errno == 34  # ERANGE
    assert "make the clock negative" in str(info.value)
    assert children_of(os.getpid()) == []


def test_time_offsets_need_a_time_namespace():
    with pytest.raises(ValueError, match="time namespace"):
        spawn(["true"], "uts", time_offsets={"monotonic": 1})


# --- ends and exit statuses --------------------------------------------------------------

@pytest.mark.parametrize("namespaces", [(), "uts", "pid", "time"])
def test_exit_codes_and_signals_are_passed_on(namespaces):
    assert spawn(["sh", "-c", "exit 3"], namespaces).wait() == 3
    assert spawn(["true"], namespaces).wait() == 0
    if "pid" not in namespaces:  # PID 1 ignores signals it has no handler for, even its own
        assert spawn(["sh", "-c", "kill -TERM $$"], namespaces).wait() == -signal.SIGTERM


def crash() -> None:
    import ctypes
    import faulthandler
    import resource
    faulthandler.disable()  # pytest's would print a report
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    ctypes.string_at(0)  # SIGSEGV, which is forced even on a PID 1


@pytest.mark.parametrize("namespaces", [(), "pid"])
def test_death_by_signal_is_passed_on(namespaces):
    assert spawn(crash, namespaces).wait() == -signal.SIGSEGV
    with spawn(["sleep", "60"], namespaces) as child:
        child.kill(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL


def test_function_results_become_exit_codes():
    assert spawn(lambda: 7, "uts").wait() == 7
    assert spawn(lambda: None, "uts").wait() == 0
    assert spawn(lambda: True, ()).wait() == 0
    assert spawn(lambda: sys.exit(4), "pid").wait() == 4
    assert spawn(lambda: sys.exit("message"), ()).wait() == 1


def test_an_exception_in_a_function_target_is_exit_code_1_with_a_traceback():
    r, w = os.pipe()

    def fail() -> None:
        raise KeyError("in the child")

    child = spawn(fail, "uts", stderr=w)
    os.close(w)
    assert child.wait() == 1
    with os.fdopen(r) as f:
        assert "KeyError: 'in the child'" in f.read()


def test_context_manager_kills_and_reaps_even_on_exception():
    with pytest.raises(RuntimeError), spawn(["sleep", "60"], "uts,pid") as child:
        pid, direct = child.pid, child._direct
        raise RuntimeError("the test fails half-way")
    assert child.returncode == -signal.SIGKILL
    assert gone(pid) and gone(direct)
    assert children_of(os.getpid()) == []


def test_wait_with_timeout_raises_and_leaves_the_child_running():
    with spawn(["sleep", "60"], "uts") as child:
        with pytest.raises(TimeoutError):
            child.wait(timeout=0.1)
        assert child.poll() is None and not gone(child.pid)
        child.kill()
        assert child.wait(timeout=30) == -signal.SIGKILL
        assert child.poll() == -signal.SIGKILL
    assert repr(child) == f"<Child pid={child.pid} returncode=-9>"


def test_a_missing_command_raises_file_not_found_and_leaves_no_child():
    for namespaces in ((), "uts", "pid"):
        with pytest.raises(FileNotFoundError) as info:
            spawn(["no-such-command-here", "x"], namespaces)
        assert info.value.filename == "no-such-command-here"
        assert children_of(os.getpid()) == []
    with pytest.raises(PermissionError):
        spawn(["/usr"], "uts")  # a directory: EACCES
    assert children_of(os.getpid()) == []


def test_bad_arguments_are_refused_before_forking():
    with pytest.raises(ValueError, match="UTS namespace"):
        spawn(["true"], "mnt", hostname="x")
    with pytest.raises(ValueError, match="either map_root or uid_map"):
        spawn(["true"], "user", map_root=True, uid_map="0 0 1")
    with pytest.raises(ValueError, match="need a new user namespace"):
        spawn(["true"], "uts", uid_map="0 0 1")
    with pytest.raises(ValueError, match="non-empty list"):
        spawn("sleep 60", "uts")
    with pytest.raises(ValueError, match="non-empty list"):
        spawn([], "uts")
    with pytest.raises(TypeError, match="env"):
        spawn(["true"], "uts", env=["A=1"])
    with pytest.raises(ValueError, match="unknown namespace type"):
        spawn(["true"], "utz")
    assert children_of(os.getpid()) == []


def test_cwd_env_and_standard_streams():
    out = run_command(["sh", "-c", "pwd; echo $GREETING; cat"], "uts", cwd="/usr",
                      env={"GREETING": "hello", "PATH": "/usr/bin:/bin"}, input=b"from stdin\n")
    assert out.stdout.splitlines() == ["/usr", "hello", "from stdin"]


def test_a_command_gets_default_signal_dispositions():
    out = run_command(["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"], "uts")
    ignored = dict(line.split(":") for line in out.stdout.splitlines())
    # SIGPIPE (bit 13) and SIGXFSZ (bit 25) are ignored by Python, not by a command.
    assert int(ignored["SigIgn"], 16) & (1 << 12 | 1 << 24) == 0
    assert int(ignored["SigBlk"], 16) == 0


def test_signals_ignored_by_our_starter_are_not_passed_on(tmp_path):
    # GNU make ignores signals 32 and 33 (glibc's own, out of signal.signal's
    # reach), and an ignored signal survives execve(2): a command started by
    # labkit under make must still see every signal at its default.
    makefile = tmp_path / "Makefile"
    makefile.write_text(
        "all:\n"
        "\t@grep SigIgn /proc/self/status\n"
        f"\t@{sys.executable} -c \"from labkit.spawn import run_command; "
        "print(run_command(['grep', 'SigIgn', '/proc/self/status'], 'uts').stdout, end='')\"\n")
    out = subprocess.run(["make", "-s", "-f", str(makefile)], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    under_make, under_labkit = out.stdout.splitlines()
    assert under_make != "SigIgn:\t0000000000000000"  # make did ignore some
    assert under_labkit == "SigIgn:\t0000000000000000", out.stderr


def test_a_function_starts_with_no_signal_blocked_even_if_the_caller_blocks_some():
    def blocked_mask() -> int:
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("SigBlk:")).split()[1], 16)

    old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGUSR1])
    try:
        assert blocked_mask() != 0  # the test itself holds them back
        assert run(blocked_mask, namespaces="uts") == 0
        assert run(blocked_mask, namespaces="pid") == 0  # through the middle process too
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def test_buffered_output_of_the_parent_is_not_repeated_by_the_child():
    code = ("import sys\nfrom labkit.spawn import run\n"
            "sys.stdout.write('written once\\n')\n"  # block-buffered: stdout is a pipe
            "run(print, 'from the child', namespaces='uts')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)), check=True)
    assert out.stdout.splitlines() == ["written once", "from the child"]


# --- the parent's death ------------------------------------------------------------------

def start_and_report(namespaces: str, w: int) -> None:
    child = spawn(["sleep", "600"], namespaces)
    os.write(w, f"{child.pid}\n".encode())
    time.sleep(600)


@pytest.mark.parametrize("namespaces", ["uts", "pid"])
def test_the_child_dies_with_its_parent(namespaces):
    """PR_SET_PDEATHSIG: a crashed notebook takes its namespaces along."""
    r, w = os.pipe()
    helper = spawn(start_and_report, args=(namespaces, w))
    os.close(w)
    try:
        grandchild = int(read_line(r))
        assert differing_types(grandchild) == {namespaces}
        pidfd = os.pidfd_open(grandchild)
        helper.kill(signal.SIGKILL)
        helper.wait()
        import select
        assert select.select([pidfd], [], [], 30)[0], "the child outlived its parent"
        os.close(pidfd)
    finally:
        os.close(r)
    # We are a child subreaper: the orphan came to us; collect it.
    deadline = time.monotonic() + 10
    while not gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gone(grandchild)


# --- run() and run_command() ---------------------------------------------------------------

def test_run_returns_the_functions_value():
    assert run(socket.gethostname, namespaces="uts", hostname="box") == "box"
    assert run(os.getpid, namespaces="pid") == 1
    assert run(lambda a, b: {"sum": a + b}, 2, 3) == {"sum": 5}
    assert run(Namespace.of, "self", "net", namespaces="net") != Namespace.of("self", "net")


def test_run_raises_the_functions_exception():
    with pytest.raises(ZeroDivisionError):
        run(lambda: 1 / 0, namespaces="uts")
    with pytest.raises(FileNotFoundError) as info:
        run(open, "/no/such/file", namespaces="mnt")
    assert info.value.filename == "/no/such/file"


class Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(a)


def test_run_reports_what_cannot_cross_back():
    with pytest.raises(RuntimeError, match="Unpicklable: x"):
        run(lambda: (_ for _ in ()).throw(Unpicklable("x", "y")))
    with pytest.raises(TypeError, match="cannot send the result back"):
        run(lambda: threading.Lock())
    with pytest.raises(ChildProcessError, match="exit code 3"):
        run(os._exit, 3, namespaces="uts")


def test_run_command_captures_stdout_and_stderr_apart():
    out = run_command(["sh", "-c", "echo err >&2; exec 2>&-; sleep 0.2; echo out; exit 5"], "uts")
    assert (out.returncode, out.stdout, out.stderr) == (5, "out\n", "err\n")
    assert out.args == ["sh", "-c", "echo err >&2; exec 2>&-; sleep 0.2; echo out; exit 5"]


@pytest.mark.parametrize("namespaces", ["uts", "pid"])
def test_run_command_moves_more_than_a_pipe_holds_both_ways(namespaces):
    """With "pid" a middle process waits for the target; it must hold no copy of the input pipe."""
    data = os.urandom(300_000).hex().encode()  # 600 kB, ten pipe buffers
    out = run_command(["cat"], namespaces, input=data)
    assert out.stdout.encode() == data
    out = run_command(["head", "-c", "10"], namespaces, input=data)  # stops reading early
    assert out.stdout.encode() == data[:10]


def test_run_command_timeout_kills_the_child():
    with pytest.raises(subprocess.TimeoutExpired):
        run_command(["sleep", "60"], "pid", timeout=0.5)
    assert children_of(os.getpid()) == []


# --- from a multi-threaded parent, as in Jupyter ------------------------------------------

def spawn_with_threads() -> dict[str, object]:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        threads = errors.thread_count()
        answers = {}

        def inside() -> tuple[str, str, int]:
            return os.readlink("/proc/self/ns/user"), os.readlink("/proc/self/ns/mnt"), errors.thread_count()

        answers["main thread"] = run(inside, namespaces="user,mnt", map_root=True)

        def from_thread() -> None:
            answers["other thread"] = run(inside, namespaces="user,mnt", map_root=True)

        t = threading.Thread(target=from_thread)
        t.start()
        t.join()
        return {"threads": threads, "own": (os.readlink("/proc/self/ns/user"),
                                            os.readlink("/proc/self/ns/mnt")), **answers}
    finally:
        stop.set()
        worker.join()


def test_spawn_works_from_a_multi_threaded_process():
    seen = run(spawn_with_threads)
    assert seen["threads"] == 2
    for key in ("main thread", "other thread"):
        user, mnt, threads = seen[key]
        assert user != seen["own"][0] and mnt != seen["own"][1]
        assert threads == 1
