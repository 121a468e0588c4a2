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


# --- labkit run: unshare(1), side by side ------------------------------------------------

def util_linux(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, cwd=ROOT, timeout=60, **kw)


def side_by_side(tool: str, *args: str, **kw) -> tuple[subprocess.CompletedProcess, ...]:
    """`labkit run|enter ARGS` and `unshare|nsenter ARGS`: the same command line, typed twice."""
    return labkit({"unshare": "run", "nsenter": "enter"}[tool], *args, **kw), util_linux(tool, *args, **kw)


def test_run_uts_hostname_prints_box_and_leaves_the_machine_alone():
    before = subprocess.run(["hostname"], capture_output=True, text=True).stdout
    result = labkit("run", "-u", "--hostname", "box", "--", "hostname")
    assert (result.returncode, result.stdout, result.stderr) == (0, "box\n", "")
    assert subprocess.run(["hostname"], capture_output=True, text=True).stdout == before
    assert socket.gethostname() != "box"


# The everyday lines of issue 16, and util-linux's spellings: options end at the program.
EVERYDAY = [
    ["-r", "id", "-u"],                                       # 0, not `id` in a new UTS namespace
    ["-n", "ip", "-o", "link"],                               # lo only, and down
    ["-fp", "sh", "-c", "echo $$"],                           # 1
    ["-f", "-p", "--mount-proc", "ps", "-o", "pid,comm"],     # ps alone, as PID 1
    ["-U", "id", "-u"],                                       # 65534: nobody is mapped
    ["--map-root-user", "id", "-u"],
    ["--map-root", "id", "-u"],                               # getopt_long: a unique prefix will do
    ["-c", "id", "-u"],                                       # --map-current-user
    ["--map-user=1234", "--map-group=4321", "sh", "-c", "id -u; id -g"],
    ["-r", "--setgroups", "deny", "cat", "/proc/self/setgroups"],
    ["-U", "--setgroups=deny", "cat", "/proc/self/setgroups"],
    ["-m", "findmnt", "-n", "-o", "PROPAGATION", "/"],        # private, as unshare(1) leaves it
    ["-m", "--propagation", "shared", "findmnt", "-n", "-o", "PROPAGATION", "/"],
    ["--prop", "slave", "-m", "findmnt", "-n", "-o", "PROPAGATION", "/"],
    ["-m", "--propagation=unchanged", "findmnt", "-n", "-o", "PROPAGATION", "/"],
    ["-S", "1000", "-G", "1000", "sh", "-c", "id -u; id -g; id -G"],
    ["-R", "/", "-w", "/tmp", "pwd"],
    ["--wd=/usr", "pwd"],
    ["-U", "--keep-caps", "grep", "^CapAmb", "/proc/self/status"],
    ["-U", "grep", "^CapAmb", "/proc/self/status"],
    ["-f", "--kill-child", "sh", "-c", "exit 7"],
    ["--kill-child=TERM", "true"],
    ["-u", "sh", "-c", "exit 3"],
    ["-fp", "sh", "-c", "exit 3"],
    ["-i", "-u", "--", "sh", "-c", "echo $0 $1", "a", "b"],  # `--` is optional, and still works
    ["no-such-command-here"],
    ["/usr"],
]


@pytest.mark.parametrize("args", EVERYDAY, ids=" ".join)
def test_run_agrees_with_unshare(args):
    ours, theirs = side_by_side("unshare", *args)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), (ours, theirs)
    # The same words, or both tools' own (labkit's errors teach, so they say more).
    assert ours.stderr.replace("labkit: ", "unshare: ") == theirs.stderr or \
        (ours.stderr.startswith("labkit: ") and theirs.stderr.startswith("unshare: "))


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unrecognized option '--bogus'"),
    (["--map", "true"], "option '--map' is ambiguous; possibilities: '--map-user'"),
    (["-S"], "option requires an argument -- 'S'"),
    (["-x"], "invalid option -- 'x'"),
    (["--fork=yes"], "option '--fork' doesn't allow an argument"),
    (["--propagation", "bogus", "-m", "true"], "unsupported propagation mode: bogus"),
    (["--setgroups", "maybe", "-U", "true"], "unsupported --setgroups argument 'maybe'"),
    (["--monotonic", "5", "true"], "options --monotonic and --boottime require unsharing of a time"),
    (["-S", "x", "true"], "failed to parse uid: 'x'"),
    (["--kill-child=NOSUCH", "true"], "unknown signal: NOSUCH"),
    (["-r", "--setgroups=allow", "true"], "options --setgroups=allow and --map-group are mutually exclusive"),
])
def test_run_usage_errors_are_unshares(args, message):
    ours, theirs = side_by_side("unshare", *args)
    assert ours.returncode == theirs.returncode == 1
    assert message in ours.stderr and message in theirs.stderr
    assert ours.stderr.startswith("labkit: ") and "Traceback" not in ours.stderr


def test_run_each_option_makes_that_namespace():
    for name in ALL:
        result = labkit("run", "-f", OPTION[name], "readlink", f"/proc/self/ns/{name}")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() != os.readlink(f"/proc/self/ns/{name}")
        assert result.stdout.strip().startswith(f"{name}:[")


def test_run_pid_without_fork_is_unshares_lesson():
    """-p without -f: the program keeps its PID; its first child is PID 1, and after that
    one has gone the namespace takes nobody (fork: ENOMEM, "sh: Cannot fork")."""
    script = 'echo $$; sh -c "echo \\$\\$"; sh -c :'
    ours, theirs = side_by_side("unshare", "-p", "sh", "-c", script)
    for result in (ours, theirs):
        first, second = result.stdout.split()
        assert int(first) > 1 and second == "1"
        assert result.returncode == 2 and "Cannot fork" in result.stderr


def test_run_with_fork_dies_of_the_programs_signal():
    for tool in (["unshare"], [sys.executable, "-m", "labkit", "run"]):
        result = subprocess.run([*tool, "-f", "sh", "-c", "kill -TERM $$"], cwd=ROOT, timeout=60)
        assert result.returncode == -signal.SIGTERM  # not an exit status of 143: a death
        result = subprocess.run([*tool, "-fp", "sh", "-c", "kill -KILL $$; echo PID 1 ignores it"],
                                cwd=ROOT, timeout=60, capture_output=True, text=True)
        assert (result.returncode, result.stdout) == (0, "PID 1 ignores it\n")
    # unshare 2.38 means to die of SIGKILL too, but exits 1 ("sigprocmask unblock failed").
    result = labkit("run", "-f", "sh", "-c", "kill -KILL $$")
    assert result.returncode == -signal.SIGKILL


def test_run_without_fork_becomes_the_program():
    """No -f: labkit execs the program, which so gets the signals sent to `labkit run`."""
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "run", "-u", "sleep", "600"], cwd=ROOT)
    try:
        wait_until(lambda: open(f"/proc/{proc.pid}/comm").read() == "sleep\n")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


def test_run_fork_holds_sigterm_until_the_child_ends():
    """unshare -f blocks SIGINT and SIGTERM (the "impatient parent"): the child lives on."""
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "run", "-f", "sleep", "600"], cwd=ROOT)
    try:
        child = wait_for_descendant(proc.pid, "sleep")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None and os.path.exists(f"/proc/{child}")
        os.kill(child, signal.SIGUSR1)
        assert proc.wait(timeout=30) == -signal.SIGUSR1
    finally:
        proc.kill()
        proc.wait()


def test_run_forward_signals_port_of_util_linux():
    """tests/ts/unshare/forward-signals: the child exits with the number of the signal it got."""
    receiver = "trap 'exit 15' TERM; echo ready; while :; do sleep 0.1; done"
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "run", "--user", "--map-root-user", "--pid",
                             "--mount-proc", "--fork", "--forward-signals", "--kill-child", "sh", "-c",
                             receiver], cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 15
    finally:
        proc.kill()
        proc.wait()


def test_run_kill_child_when_labkit_dies():
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "run", "--kill-child", "sleep", "600"], cwd=ROOT)
    try:
        child = wait_for_descendant(proc.pid, "sleep")
        proc.kill()
        proc.wait()
        wait_until(lambda: not os.path.exists(f"/proc/{child}") or
                   open(f"/proc/{child}/stat").read().split(") ")[1][0] == "Z")
    finally:
        proc.kill()
        proc.wait()


def test_run_persists_namespaces_to_files_as_unshare_does():
    """--uts=FILE, --net=FILE (with -r: a helper binds from outside), --pid=FILE with -f:
    nsenter --TYPE=FILE finds them, as does labkit enter; all in a mount namespace of its own."""
    script = """
        set -e
        mount -t tmpfs nslab-test /mnt
        touch /mnt/uts /mnt/net /mnt/pid
        $LABKIT run --uts=/mnt/uts --hostname persisted true
        nsenter --uts=/mnt/uts hostname
        $LABKIT enter --uts=/mnt/uts hostname
        $LABKIT run -r --net=/mnt/net ip link set lo up
        nsenter --net=/mnt/net ip -o link | grep -c 'lo:.*UP'
        $LABKIT run -fp --kill-child --pid=/mnt/pid sleep 60 &
        while ! findmnt /mnt/pid >/dev/null; do sleep 0.05; done
        nsenter --pid=/mnt/pid sh -c 'echo $$'
        findmnt -n -o TARGET -t nsfs | sort
        kill -KILL $!
    """
    labkit_command = f"{sys.executable} -m labkit"
    result = util_linux("unshare", "-m", "sh", "-c", script, env={**os.environ, "LABKIT": labkit_command})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["persisted", "persisted", "1", "2", "/mnt/net", "/mnt/pid", "/mnt/uts"]


def test_run_map_users_writes_both_maps():
    result = labkit("run", "--map-users=100000,0,65536", "--map-groups=0:200000:1000", "sh", "-c",
                    "cat /proc/self/uid_map /proc/self/gid_map")
    assert [line.split() for line in result.stdout.splitlines()] == [["0", "100000", "65536"],
                                                                     ["0", "200000", "1000"]]


def test_run_time_offsets():
    with open("/proc/uptime") as f:
        before = float(f.read().split()[0])
    result = labkit("run", "-fT", "--boottime", "1000000", "cat", "/proc/uptime")
    assert before + 1_000_000 <= float(result.stdout.split()[0]) < before + 1_000_000 + 600
    theirs = util_linux("unshare", "-fT", "--boottime", "1000000", "cat", "/proc/uptime")
    assert abs(float(theirs.stdout.split()[0]) - float(result.stdout.split()[0])) < 600


def wait_until(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


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


def test_run_without_a_command_starts_a_login_shell_as_unshare_does():
    env = {**os.environ, "SHELL": "/bin/sh"}
    script = "hostname; echo $0; exit 4\n"
    result = labkit("run", "-u", "--hostname", "shell", input=script, env=env)
    assert (result.returncode, result.stdout) == (4, "shell\n-sh\n")
    theirs = util_linux("unshare", "-u", input=script, env=env)
    assert theirs.stdout.splitlines()[1:] == result.stdout.splitlines()[1:]


# --- labkit enter: nsenter(1), side by side -----------------------------------------------

@pytest.fixture
def target():
    """sleep in new UTS (hostname "entered"), IPC, PID and mount namespaces, a user namespace
    mapping root to root, and an environment variable of its own."""
    child = spawn(["sleep", "60"], "user,uts,ipc,pid,mnt", hostname="entered", map_root=True,
                  env={**os.environ, "NSLAB_TARGET": "yes"}, cwd="/usr")
    with child:
        yield child.pid


ENTER = [
    ["-u", "hostname"],
    ["-a", "sh", "-c", "hostname; exit 6"],
    ["--all", "readlink", "/proc/self/ns/pid", "/proc/self/ns/ipc"],
    ["hostname"],                                        # no namespace at all: runs as it is
    ["-p", "readlink", "/proc/self/ns/pid"],
    ["-p", "-F", "readlink", "/proc/self/ns/pid_for_children"],
    ["-U", "id", "-u", "-g"],
    ["-U", "-S", "5", "-G", "5", "id"],                  # 5 is not mapped: EINVAL, both
    ["-U", "--preserve-credentials", "id", "-u"],
    ["-m", "-r", "-w", "pwd"],
    ["-m", "-r", "-W", "/tmp", "pwd"],
    ["--wd", "pwd"],
    ["-u", "--", "sh", "-c", "echo $0 $1", "a", "b"],
    ["-u", "no-such-command-here"],
]


@pytest.mark.parametrize("args", ENTER, ids=" ".join)
def test_enter_agrees_with_nsenter(target, args):
    ours, theirs = side_by_side("nsenter", "-t", str(target), *args)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), (ours, theirs)
    assert ours.returncode != 0 or ours.stderr == theirs.stderr == ""


def test_enter_by_file_and_labkits_pid_first_spelling(target):
    assert labkit("enter", f"--uts=/proc/{target}/ns/uts", "hostname").stdout == "entered\n"
    assert util_linux("nsenter", f"--uts=/proc/{target}/ns/uts", "hostname").stdout == "entered\n"
    assert labkit("enter", str(target), "-u", "hostname").stdout == "entered\n"
    assert labkit("enter", "-u", str(target), "--", "hostname").stdout == "entered\n"


def test_enter_env_takes_the_targets_environment(target):
    result = labkit("enter", "-t", str(target), "-e", "sh", "-c", "echo $NSLAB_TARGET")
    assert result.stdout == "yes\n"


def test_enter_errors_are_messages():
    ours, theirs = side_by_side("nsenter", "-u", "true")
    assert ours.returncode == theirs.returncode == 1
    assert "neither filename nor target pid supplied for ns/uts" in ours.stderr
    assert "neither filename nor target pid supplied for ns/uts" in theirs.stderr
    result = labkit("enter", "-t", str(2 ** 22 + 1), "-u", "true")
    assert_clean_failure(result)
    assert "no process" in result.stderr
    assert_clean_failure(labkit("enter", "-t", "notapid", "-u", "true"))
    assert_clean_failure(labkit("enter", "--bogus"))
    assert_clean_failure(labkit("enter", "notapid", "-u"), 127)  # the program: nsenter runs it


# --- imports and start time ------------------------------------------------------------------

def test_demo_and_cli_import_each_other_not():
    code = ("import sys, labkit.demo; assert 'labkit.cli' not in sys.modules; "
            "import labkit.cli; labkit.cli.build_parser(); assert 'labkit.demo' not in sys.modules or True")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
    code = "import sys, labkit.cli; labkit.cli.build_parser(); assert 'labkit.demo' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_the_util_linux_commands_load_neither_rich_nor_pyroute2():
    """run and enter become their program at once; ls in a pipe without NETNSID needs neither."""
    code = ("import sys, labkit.cli, labkit.unshare, labkit.nsenter, labkit.listing\n"
            "labkit.unshare.read_command_line(['-r', '--uts=/x', 'id', '-u'])\n"
            "assert labkit.cli.main(['ls', '-t', 'uts', '-o', '+PATH,PNS']) == 0\n"
            "print(sorted(m for m in ('rich', 'pyroute2') if m in sys.modules), file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stderr) == (0, "[]\n")


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
