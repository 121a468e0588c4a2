"""The labkit command: check, flags, run, enter, as a user types them (in a pipe and on a terminal)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from labkit.nstypes import TYPES
from labkit.spawn import spawn

ROOT = Path(__file__).resolve().parent.parent
ALL = [t.name for t in TYPES]
OPTION = {"mnt": "-m", "uts": "-u", "ipc": "-i", "net": "-n", "pid": "-p", "user": "-U",
          "cgroup": "-C", "time": "-T"}


def labkit(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, **kw)


def assert_clean_failure(result: subprocess.CompletedProcess, code: int = 1) -> None:
    """A message for a person, a non-zero exit, and no traceback."""
    assert result.returncode == code, result
    assert result.stderr.startswith("labkit: ") or result.stderr.startswith("usage: "), result.stderr
    assert "Traceback" not in result.stderr


# --- labkit flags ------------------------------------------------------------------------

def test_flags_decodes_a_mask_with_one_row_per_type():
    result = labkit("flags", "0x4000000")
    assert result.returncode == 0
    assert "\x1b" not in result.stdout  # plain text in a pipe, for cut(1) and awk(1)
    first, header, *rows = result.stdout.splitlines()
    assert first == "0x04000000 = CLONE_NEWUTS"
    assert header.split() == ["TYPE", "FLAG", "CONSTANT", "LINUX", "MAN", "PAGE"]
    assert [row.split() for row in rows] == [["uts", "0x04000000", "CLONE_NEWUTS", "2.6.19",
                                              "uts_namespaces(7)"]]


@pytest.mark.parametrize("mask, names", [
    ("mnt,uts", ["mnt", "uts"]),
    ("CLONE_NEWNS|CLONE_NEWPID", ["mnt", "pid"]),
    ("67108864", ["uts"]),
    (hex(sum(t.flag for t in TYPES)), [t.name for t in TYPES]),
    ("0", []),
])
def test_flags_lists_the_types_of_a_mask(mask, names):
    result = labkit("flags", mask)
    assert result.returncode == 0
    assert [row.split()[0] for row in result.stdout.splitlines()[2:]] == names


@pytest.mark.parametrize("mask, message", [
    ("0x1", "0x1 has bits that are not CLONE_NEW* flags: 0x1"),
    ("bogus", "unknown namespace type 'bogus'"),
    ("mnt,", None),
])
def test_flags_bad_mask_is_a_message_not_a_traceback(mask, message):
    result = labkit("flags", mask)
    if message is None:  # a trailing comma is harmless
        assert result.returncode == 0
        return
    assert_clean_failure(result)
    assert message in result.stderr


# --- labkit check -------------------------------------------------------------------------

def test_check_agrees_with_proc():
    result = labkit("check")
    assert result.returncode == 0, result.stderr
    rows = [line.split(None, 3) for line in result.stdout.splitlines()[1:]]
    status = {(group, name): (state, detail) for group, name, state, *detail in rows}
    for name in ALL:
        state = "ok" if os.path.exists(f"/proc/self/ns/{name}") else "MISSING"
        assert status[("namespaces", name)][0] == state
    for name in ALL:
        with open(f"/proc/sys/user/max_{name}_namespaces") as f:
            assert status[("limits", f"max_{name}_namespaces")][1] == [f.read().strip()]


# --- labkit run: the acceptance test --------------------------------------------------------

def test_run_uts_hostname_prints_box_and_leaves_the_machine_alone():
    before = subprocess.run(["hostname"], capture_output=True, text=True).stdout
    result = labkit("run", "-u", "--hostname", "box", "--", "hostname")
    assert (result.returncode, result.stdout, result.stderr) == (0, "box\n", "")
    assert subprocess.run(["hostname"], capture_output=True, text=True).stdout == before
    assert socket.gethostname() != "box"


@pytest.mark.parametrize("name", ALL)
def test_run_each_option_makes_that_namespace(name):
    result = labkit("run", OPTION[name], "--", "readlink", f"/proc/self/ns/{name}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() != os.readlink(f"/proc/self/ns/{name}")
    assert result.stdout.strip().startswith(f"{name}:[")


def test_run_pid_gives_pid_1_and_mount_proc_shows_only_it():
    assert labkit("run", "-p", "--", "sh", "-c", "echo $$").stdout == "1\n"
    result = labkit("run", "-p", "--mount-proc", "--", "ps", "-e", "-o", "pid=,comm=")
    assert [line.split() for line in result.stdout.splitlines()] == [["1", "ps"]]


def test_run_map_root_and_user():
    result = labkit("run", "-r", "--", "sh", "-c", "id -u; cat /proc/self/uid_map")
    assert result.stdout.split() == ["0", "0", "0", "1"]
    assert labkit("run", "-U", "--", "id", "-u").stdout == "65534\n"  # unmapped


def test_run_domainname_and_propagation():
    assert labkit("run", "-u", "--domainname", "lab", "--", "domainname").stdout == "lab\n"
    result = labkit("run", "-m", "--propagation", "shared", "--", "findmnt", "-n", "-o",
                    "PROPAGATION", "/")
    assert result.stdout.strip() == "shared"
    result = labkit("run", "-m", "--", "findmnt", "-n", "-o", "PROPAGATION", "/")
    assert result.stdout.strip() == "private"


def test_run_time_offsets():
    with open("/proc/uptime") as f:
        before = float(f.read().split()[0])
    result = labkit("run", "-T", "--boottime", "1000000", "--", "cat", "/proc/uptime")
    assert before + 1_000_000 <= float(result.stdout.split()[0]) < before + 1_000_000 + 600
    assert_clean_failure(labkit("run", "--monotonic", "5", "--", "true"))


@pytest.mark.parametrize("namespaces", [[], ["-u"], ["-p"]])
def test_run_passes_the_exit_status_on(namespaces):
    assert labkit("run", *namespaces, "--", "sh", "-c", "exit 3").returncode == 3
    assert labkit("run", *namespaces, "--", "true").returncode == 0


def test_run_killed_by_a_signal_is_128_plus_n():
    assert labkit("run", "-u", "--", "sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM


def test_run_pid_1_killed_from_outside_is_137():
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "run", "-p", "--", "sleep", "600"],
                            cwd=ROOT)
    try:
        pid1 = wait_for_descendant(proc.pid, "sleep")
        os.kill(pid1, signal.SIGKILL)
        assert proc.wait(timeout=30) == 128 + signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_to_labkit_goes_to_the_command():
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "run", "-u", "--", "sleep", "600"],
                            cwd=ROOT)
    try:
        wait_for_descendant(proc.pid, "sleep")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


def wait_for_descendant(pid: int, comm: str) -> int:
    """The PID of the first descendant of PID named COMM, once it has started."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        todo = [pid]
        while todo:
            p = todo.pop()
            try:
                with open(f"/proc/{p}/task/{p}/children") as f:
                    kids = [int(k) for k in f.read().split()]
                with open(f"/proc/{p}/comm") as f:
                    if p != pid and f.read().strip() == comm:
                        return p
            except FileNotFoundError:
                continue
            todo += kids
        time.sleep(0.02)
    raise AssertionError(f"no {comm} below {pid}")


def test_run_missing_command_is_127_with_a_message():
    result = labkit("run", "-u", "--", "no-such-command-here")
    assert_clean_failure(result, 127)
    assert result.stderr == "labkit: failed to execute no-such-command-here: No such file or directory\n"
    result = labkit("run", "-p", "--", "no-such-command-here")
    assert_clean_failure(result, 127)
    assert_clean_failure(labkit("run", "-u", "--", "/usr"), 126)


def test_run_bad_hostname_is_a_message():
    result = labkit("run", "-u", "--hostname", "x" * 65, "--", "true")
    assert_clean_failure(result)
    assert "64 bytes" in result.stderr
    result = labkit("run", "--hostname", "box", "--", "true")
    assert_clean_failure(result)
    assert "need a new UTS namespace: add -u" in result.stderr


@pytest.mark.parametrize("offset", ["inf", "nan", "-inf"])
def test_run_time_offset_that_is_no_number_of_seconds_is_a_message(offset):
    result = labkit("run", "-T", f"--monotonic={offset}", "--", "true")
    assert_clean_failure(result)
    assert "monotonic offset is a finite number of seconds" in result.stderr


def test_run_without_a_command_starts_the_shell():
    result = labkit("run", "-u", "--hostname", "shell", input="hostname\nexit 4\n",
                    env={**os.environ, "SHELL": "/bin/sh"})
    assert (result.returncode, result.stdout) == (4, "shell\n")


# --- labkit enter -------------------------------------------------------------------------------

def test_enter_uts_agrees_with_nsenter():
    with spawn(["sleep", "60"], "uts", hostname="entered") as child:
        result = labkit("enter", str(child.pid), "-u", "--", "hostname")
        assert (result.returncode, result.stdout) == (0, "entered\n")
        nsenter = subprocess.run(["nsenter", "-t", str(child.pid), "-u", "hostname"],
                                 capture_output=True, text=True)
        assert result.stdout == nsenter.stdout
        result = labkit("enter", str(child.pid), "-a", "--", "sh", "-c", "hostname; exit 6")
        assert (result.returncode, result.stdout) == (6, "entered\n")


def test_enter_errors_are_messages():
    assert_clean_failure(labkit("enter", str(2 ** 22 + 1), "-u", "--", "true"))
    assert "no process" in labkit("enter", str(2 ** 22 + 1), "-u", "--", "true").stderr
    result = labkit("enter", str(os.getpid()), "--", "true")
    assert_clean_failure(result)
    assert "say which namespaces" in result.stderr
    assert_clean_failure(labkit("enter", "notapid", "-u"), 2)


# --- help and usage -------------------------------------------------------------------------------

@pytest.mark.parametrize("command, words", [
    ("check", "rootless mode"), ("run", "unshare(1)"), ("enter", "nsenter(1)"),
    ("flags", "strace"), ("ls", "lsns(8)"), ("container", "pivot_root"),
])
def test_help_of_each_subcommand(command, words):
    result = labkit(command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: labkit {command}") and words in result.stdout


def test_no_subcommand_prints_help_and_fails():
    result = labkit()
    assert result.returncode == 2 and "COMMAND" in result.stdout
    assert_clean_failure(labkit("nonsense"), 2)
    assert_clean_failure(labkit("flags", "mnt", "--", "x"), 2)


def test_a_closed_pipe_ends_quietly():
    r, w = os.pipe()
    os.close(r)
    result = subprocess.run([sys.executable, "-m", "labkit", "check"], stdout=w, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, timeout=60)
    os.close(w)
    assert (result.returncode, result.stderr) == (128 + signal.SIGPIPE, "")


@pytest.mark.parametrize("args", [("flags", "0x4000000"), ("ls", "-t", "uts")])
def test_a_closed_pipe_ends_quietly_when_python_buffers_the_output(args):
    """A pipe is block-buffered unless PYTHONUNBUFFERED is set: the write then comes at the end."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    r, w = os.pipe()
    os.close(r)
    result = subprocess.run([sys.executable, "-m", "labkit", *args], stdout=w, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, timeout=60, env=env)
    os.close(w)
    assert (result.returncode, result.stderr) == (128 + signal.SIGPIPE, "")


# --- on a terminal ------------------------------------------------------------------------------------

def on_a_terminal(*args: str) -> tuple[int, str]:
    child = pexpect.spawn(sys.executable, ["-m", "labkit", *args], cwd=str(ROOT), encoding="utf-8",
                          dimensions=(40, 120), env={**os.environ, "TERM": "xterm-256color"})
    out = child.read()
    child.close()
    return child.exitstatus, out


def test_tables_are_drawn_with_rich_on_a_terminal():
    code, out = on_a_terminal("flags", "mnt,uts")
    assert code == 0
    assert "CLONE_NEWUTS" in out and ("━" in out or "─" in out)  # rich's box drawing
    assert "mount_namespaces(7)" in out


def test_errors_are_red_on_a_terminal():
    code, out = on_a_terminal("flags", "bogus")
    assert code == 1
    assert out.startswith("\x1b[1;31mlabkit:\x1b[0m unknown namespace type 'bogus' (known: cgroup")
    assert "Traceback" not in out


def test_run_on_a_terminal_keeps_the_terminal():
    code, out = on_a_terminal("run", "-u", "--", "sh", "-c", "test -t 0 && test -t 1 && echo tty")
    assert (code, out.strip()) == (0, "tty")
