"""The grading sandbox: what a solution sees, what it cannot reach, what it cannot leave.

Hostile solutions (fork bombs, daemons, kill -9 -1, floods, sleepers,
SIGTERM ignorers, memory hogs) run here; the leak check of conftest.py
proves that nothing of theirs outlives the test, and each test shows the
grader going on afterwards.  Kernel state is read from outside with
readlink on /proc/PID/ns, ps(1) and the sandbox's own reports.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from grader import observe
from grader.engine import Exercise, Trial, grade_exercise
from grader.feedback import Fail, Status, Timeout
from grader.hooks import as_pid1, as_user
from grader.sandbox import KIT, Limits, Sandbox, hidden_paths
from labkit import cgroup

QUICK = Limits(wall=6, pids=32, memory=64 << 20)


def folder_with(tmp_path: Path, script: str, shell: str = "/bin/sh") -> Path:
    folder = tmp_path / "ex"
    folder.mkdir(exist_ok=True)
    (folder / "solution").write_text(f"#!{shell}\n{script}\n")
    (folder / "solution").chmod(0o755)
    return folder


def start(tmp_path: Path, script: str, limits: Limits = QUICK, **kw):
    box = Sandbox(str(folder_with(tmp_path, script, kw.pop("shell", "/bin/sh"))),
                  hide=hidden_paths(tmp_path), limits=limits)
    return box.start(["/tmp/exercise/solution"], **kw)


def then_the_grader_goes_on(tmp_path: Path) -> None:
    with Sandbox(str(folder_with(tmp_path, "echo still-here")), limits=QUICK).start(
            ["/tmp/exercise/solution"]) as run:
        run.expect("still-here")
        assert run.wait().code == 0


# What a solution sees -----------------------------------------------------------------

def test_the_solution_runs_in_new_namespaces_of_every_sandbox_type(tmp_path):
    with start(tmp_path, "sleep 30") as run:
        pid = run.solution_pid()
        for nstype in ("uts", "mnt", "net", "ipc", "pid", "cgroup"):
            assert os.readlink(f"/proc/{pid}/ns/{nstype}") != os.readlink(f"/proc/self/ns/{nstype}"), nstype
        assert observe.status_field(pid, "NSpid").split()[-1] == "2"  # PID 1 is the sandbox's init


def test_the_solution_starts_with_default_signals_an_empty_mask_and_a_scratch_folder(tmp_path):
    script = "grep -E '^Sig(Ign|Blk)' /proc/self/status; pwd; ls /tmp/exercise; echo end"
    with start(tmp_path, script) as run:
        run.expect("end")
        out = run.transcript.text
    assert "SigIgn:\t0000000000000000" in out and "SigBlk:\t0000000000000000" in out
    assert "/tmp/scratch" in out and "solution" in out


def test_the_solution_runs_as_root_on_its_terminal_with_its_cgroup_as_root(tmp_path):
    script = 'echo "uid=$(id -u) tty=$(tty)"; cat /proc/self/cgroup; echo end'
    with start(tmp_path, script) as run:
        run.expect("end")
        out = run.transcript.text
    assert f"uid=0 tty={run.tty_name}" in out
    # The line of the hierarchy that holds pids: its own (v1, hybrid), or
    # the v2 line "0::" (v2 only, as on the lab VM).
    where = cgroup.layout()
    assert ("0::/\r\n" if where.home_of("pids") == where.unified else ":pids:/\r\n") in out


def test_the_solution_gets_descriptors_0_1_and_2_only(tmp_path):
    leak_r, leak_w = os.pipe()  # as a test runner's or a terminal's descriptors would be
    os.dup2(leak_r, 50)
    os.dup2(leak_w, 51)  # dup2 makes them inheritable: they would survive fork and execve
    try:
        script = 'import os; print("fds", sorted(int(f) for f in os.listdir("/proc/self/fd")))'
        with start(tmp_path, script, shell="/usr/bin/env python3") as run:
            run.expect("fds")
            run.wait()
            out = run.transcript.text
    finally:
        for fd in (leak_r, leak_w, 50, 51):
            os.close(fd)
    assert "fds [0, 1, 2, 3]" in out  # 3: the directory listdir reads


def test_the_sandboxs_pid_1_shows_neither_the_graders_command_line_nor_its_environment(tmp_path):
    script = ("echo env=$(tr '\\0' ' ' < /proc/1/environ); echo cmd=$(tr '\\0' ' ' < /proc/1/cmdline);"
              " echo comm=$(cat /proc/1/comm); ps -o pid=,args= -p 1; echo end")
    with start(tmp_path, script) as run:
        run.expect("end")
        run.wait()
        out = run.transcript.text
    assert os.environ["NSLAB_CGROUP_PREFIX"] not in out and "pytest" not in out  # ours: the grader's
    assert "env=\r\n" in out and "comm=sandbox-init" in out
    assert "cmd=sandbox-init -I -S -c" in out  # PID 1 exec'd a clean reaper: no copy of the grader


def test_grader_source_and_other_students_are_not_reachable(tmp_path):
    secret = secrets.token_hex(8)
    bob = tmp_path / "class" / "bob" / "ex"
    bob.mkdir(parents=True)
    (bob / "notes").write_text(secret)
    alice = tmp_path / "class" / "alice" / "ex"
    alice.mkdir(parents=True)
    engine = KIT / "grader" / "engine.py"
    (alice / "solution").write_text(
        "#!/bin/sh\n"
        f"cat {bob}/notes {engine} /root/.bashrc 2>&1\n"
        f"ls {KIT} {KIT}/solutions {tmp_path / 'class'} 2>&1\n"
        f"echo tampered >> {alice}/solution 2>&1\n"
        "echo done-reading\n")
    (alice / "solution").chmod(0o755)
    before = (alice / "solution").read_text()
    box = Sandbox(str(alice), hide=hidden_paths(tmp_path / "class"), limits=QUICK)
    with box.start(["/tmp/exercise/solution"]) as run:
        run.expect("done-reading")
        run.wait()
        out = run.transcript.text
    assert secret not in out
    assert "Fail(Exception)" not in out and "def grade_exercise" not in out  # the grader's source
    assert "No such file or directory" in out
    assert (alice / "solution").read_text() == before  # the original is never run in place


def test_the_machine_disk_is_read_only_inside(tmp_path):
    with start(tmp_path, "touch /etc/nslab-probe 2>&1; touch /tmp/ok && echo tmp-ok") as run:
        run.expect("tmp-ok")
        assert "Read-only file system" in run.transcript.text
    assert not os.path.exists("/etc/nslab-probe")


def test_the_solution_is_root_of_a_user_namespace_mapped_to_ids_no_user_has(tmp_path):
    """Root inside, an unprivileged uid outside: read with lsns(8) and nsenter(1), not labkit."""
    with start(tmp_path, "id -u; cat /proc/self/uid_map; sleep 30") as run:
        run.expect(re.compile(r"\d+\s+\d+\s+65536"))
        pid = run.solution_pid()
        outside = [int(n) for n in observe.status_field(pid, "Uid").split()]
        inside = subprocess.run(["nsenter", f"--target={pid}", "--user", "--preserve-credentials",
                                 "cat", f"/proc/{pid}/status"], capture_output=True, text=True,
                                check=True).stdout
        user_ns = subprocess.run(["lsns", "-n", "-o", "NS", "-t", "user", "-p", str(pid)],
                                 capture_output=True, text=True, check=True).stdout.strip()
    assert outside == [run.ids.outside(0)] * 4 and outside[0] >= 2 ** 31
    assert "Uid:\t0\t0\t0\t0" in inside
    lines = [line.split() for line in run.transcript.text.splitlines()]
    assert ["0"] in lines and ["0", str(run.ids.base), "65536"] in lines  # id -u; uid_map
    assert user_ns != os.readlink("/proc/self/ns/user")[len("user:["):-1]
    with open("/etc/passwd") as f:
        assert str(outside[0]) not in {line.split(":")[2] for line in f}


def test_the_covers_are_locked_a_bind_of_root_without_them_fails_and_root_stays_read_only(tmp_path):
    """The reported hole: a non-recursive bind of / showed the disk without the covers."""
    kit_file = KIT / "grader" / "report.py"
    before = kit_file.read_bytes()
    script = (f"mkdir /tmp/r /tmp/rr\n"
              f"mount --bind / /tmp/r 2>/dev/null && echo PLAIN-BIND-MADE\n"
              f"mount --rbind / /tmp/rr && echo RBIND-MADE\n"
              f"umount /tmp/rr{KIT} 2>/dev/null && echo COVER-GONE\n"
              f"umount -l /tmp/rr{KIT} 2>/dev/null && echo COVER-GONE\n"
              f"umount {KIT} 2>/dev/null && echo COVER-GONE\n"
              f"mount -o remount,rw / 2>/dev/null && echo REMOUNTED\n"
              f"mount -o remount,bind,rw /tmp/rr 2>/dev/null && echo REMOUNTED\n"
              f"find /tmp/rr{KIT} /tmp/r{KIT} {KIT} -mindepth 1 2>/dev/null | wc -l; echo listed\n"
              f"echo 'x' >> /tmp/rr{KIT}/grader/report.py 2>/dev/null && echo WROTE\n"
              "echo end")
    with start(tmp_path, script) as run:
        run.expect("end")
        run.wait()
        out = run.transcript.text
    assert "RBIND-MADE" in out  # allowed: the copy takes the covers along
    for escaped in ("PLAIN-BIND-MADE", "COVER-GONE", "REMOUNTED", "WROTE"):
        assert escaped not in out
    assert "0\r\nlisted" in out  # the kit's folder is empty wherever the solution looks
    assert kit_file.read_bytes() == before


def test_the_machines_devices_and_proc_sys_are_out_of_reach_and_pid_1_holds_nothing_of_ours(tmp_path):
    disk = subprocess.run(["findmnt", "-n", "-o", "MAJ:MIN", "/"], capture_output=True, text=True,
                          check=True).stdout.strip()
    major, minor = disk.split(":")
    script = (f"mknod /tmp/disk b {major} {minor} 2>/dev/null && echo MKNOD\n"
              f"mount /tmp/disk /mnt 2>/dev/null && echo MOUNTED-DISK\n"
              "echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo WROTE-SYSCTL\n"
              "cat /etc/shadow >/dev/null 2>&1 && echo SHADOW\n"
              # PID 1 is a clean reaper the solution may reach (escape climbs /proc/1/root):
              # its root is the solution's own, and it holds no descriptor of the grader's files.
              "echo root=$(readlink /proc/1/root)\n"
              "for fd in /proc/1/fd/*; do echo fd=$(readlink $fd); done\n"
              "echo end")
    with start(tmp_path, script) as run:
        run.expect("end")
        run.wait()
        out = run.transcript.text
    for escaped in ("MKNOD", "MOUNTED-DISK", "WROTE-SYSCTL", "SHADOW"):
        assert escaped not in out
    assert "root=/\r\n" in out
    held = re.findall(r"^fd=(.*?)\r$", out, re.M)
    assert held and all(re.fullmatch(r"/dev/pts/\d+|/dev/null|pipe:\[\d+\]|/memfd:.*", f) for f in held), held


# Hostile solutions ----------------------------------------------------------------------

def test_a_fork_bomb_is_bounded_by_the_pids_limit(tmp_path):
    bomb = "bomb() { bomb | bomb & }; bomb; sleep 60"
    with start(tmp_path, bomb, shell="/bin/bash") as run:
        with pytest.raises(Timeout):
            run.wait(timeout=2)
        assert len(run.group.pids()) <= QUICK.pids
        assert run.group.pids_refused() >= 1
    then_the_grader_goes_on(tmp_path)


def test_a_double_forked_daemon_dies_with_the_sandbox(tmp_path):
    with start(tmp_path, "setsid sh -c 'sleep 300 & echo daemon $!' ; sleep 0.2; exit 0") as run:
        run.expect("daemon")
        daemon = run.find(["sleep", "300"])
        assert daemon is not None
        assert run.wait().code == 0
    assert not os.path.exists(f"/proc/{daemon}") or observe.cmdline(daemon) != ["sleep", "300"]
    then_the_grader_goes_on(tmp_path)


def test_kill_minus_one_inside_reaches_only_the_sandbox(tmp_path):
    outside = subprocess.Popen(["sleep", "60"])
    try:
        with start(tmp_path, "sleep 30 & sleep 30 & kill -9 -1; echo survived") as run:
            run.expect("survived")
            assert run.wait().code == 0
        assert outside.poll() is None  # a process of the machine's namespace is untouched
    finally:
        outside.kill()
        outside.wait()
    then_the_grader_goes_on(tmp_path)


def test_a_solution_that_sleeps_forever_is_a_timeout_and_is_ended(tmp_path):
    with start(tmp_path, "sleep 1000") as run:
        with pytest.raises(Timeout, match="did not end within 1 s"):
            run.wait(timeout=1)
    then_the_grader_goes_on(tmp_path)


def test_a_solution_that_ignores_sigterm_is_ended_all_the_same(tmp_path):
    with start(tmp_path, "trap '' TERM HUP INT; echo armed; while :; do sleep 1; done") as run:
        run.expect("armed")
        os.kill(run.solution_pid(), signal.SIGTERM)
        with pytest.raises(Timeout):
            run.wait(timeout=0.5)
    then_the_grader_goes_on(tmp_path)


def test_the_wall_clock_limit_ends_a_run(tmp_path):
    with start(tmp_path, "sleep 1000", limits=Limits(wall=1)) as run:
        with pytest.raises(Timeout):
            run.wait(timeout=30)  # the run's limit comes first


def test_gigabytes_of_output_cost_the_grader_one_megabyte(tmp_path):
    with start(tmp_path, "head -c 4G /dev/zero | tr '\\0' x; echo finished") as run:
        with pytest.raises(Fail, match="printed more than 1024 KiB"):
            run.wait(timeout=30)
        assert run.transcript.total <= QUICK.output + 65536
        assert len(run.transcript.text) < 64 * 1024
    then_the_grader_goes_on(tmp_path)


def test_binary_garbage_output_is_shown_escaped(tmp_path):
    with start(tmp_path, "head -c 3000 /dev/urandom; printf '\\033[2J\\a'; echo; echo end") as run:
        run.expect("end")
        shown = run.transcript.tail(5000)
    assert "\x1b" not in shown and "\x07" not in shown and "\\x1b" in shown


def test_a_memory_hog_is_killed_by_the_oom_killer_not_the_sandbox(tmp_path):
    hog = "data = bytearray(b'x') * (512 << 20)"
    with start(tmp_path, hog, shell="/usr/bin/env python3") as run:
        ended = run.wait(timeout=30)
        assert ended.signal == signal.SIGKILL
        assert run.group.oom_kills() >= 1
    then_the_grader_goes_on(tmp_path)


def test_a_run_over_before_the_grader_looks_still_shows_the_callers_hostname(tmp_path):
    # On a loaded machine the grader's thread may get back from starting a
    # quick run only after it has ended: the sandbox holds the caller's UTS
    # namespace from the start, so a watch begun late still reads it.
    name = f"changed-{secrets.token_hex(3)}"
    with start(tmp_path, f"hostname {name}") as run:
        assert run.wait().code == 0
        assert not os.path.exists(f"/proc/{run.init_pid}/ns/uts")  # every process in it has ended
        watch = observe.HostnameWatch(run.uts, run.box.hostname)
        assert watch.close() == [name]


def test_hostnames_mounts_netns_veths_and_ipc_made_inside_are_gone(tmp_path):
    script = ("hostname evil-host; mount -t tmpfs none /mnt; ip netns add nslabns; "
              "ip link add nslv0 type veth peer name nslv1; ipcmk -Q >/dev/null; "
              "ls /run/netns; echo made-it")
    with start(tmp_path, script) as run:
        run.expect("made-it")
        assert "nslabns" in run.transcript.text
        assert run.wait().code == 0
    assert socket.gethostname() != "evil-host"
    # The leak check of conftest.py compares mounts, /run/netns, veths and IPC objects too.


def test_after_close_no_process_and_no_cgroup_are_left(tmp_path):
    run = start(tmp_path, "sleep 100 & sleep 100 & echo up; wait")
    run.expect("up")
    pids, dirs = run.group.pids(), list(run.group.dirs.values())
    run.close()
    time.sleep(0.1)
    for pid in pids:
        assert observe.cmdline(pid) != ["sleep", "100"]
    assert not any(os.path.exists(d) for d in dirs)


# Hooks: how a check starts a solution ---------------------------------------------------

def test_hook_as_user_runs_the_solution_unprivileged(tmp_path):
    with start(tmp_path, "id -u; id -g; grep CapEff /proc/self/status; echo end",
               hook=as_user(65534, 65534)) as run:
        run.expect("end")
        out = run.transcript.text
    assert "65534\r\n65534" in out and "CapEff:\t0000000000000000" in out


def test_hook_as_pid1_makes_the_solution_pid_1_with_its_own_proc(tmp_path):
    with start(tmp_path, 'echo "pid=$$"; ls /proc | grep -c "^[0-9]"; exit 5', hook=as_pid1) as run:
        run.expect("pid=1")
        assert run.wait().code == 5


def test_make_runs_once_in_a_sandbox_and_the_original_folder_is_untouched(tmp_path):
    demo = Exercise("demo", "demo", limits=QUICK)

    @demo.check(1, "built")
    def built(trial: Trial) -> None:
        trial.run().expect("built by make")

    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "Makefile").write_text(
        "solution:\n\tprintf '#!/bin/sh\\necho built by make\\n' > solution\n\tchmod +x solution\n")
    result = grade_exercise(demo, folder, hidden_paths(tmp_path))
    assert result.checks[0].status is Status.PASSED
    assert sorted(os.listdir(folder)) == ["Makefile"]
