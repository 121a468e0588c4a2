"""labkit demo: a lesson played in tmux panes, read back with tmux capture-pane.

Every demo gets a tmux socket of its own (tmux -L NAME), and each test makes
sure that server is gone at the end; the leak check of conftest.py proves
that no shell, namespace or hostname change is left behind.  What the panes
show is checked against independent tools: readlink(1) on the test's own
/proc/self/ns/uts, nsenter(1) into the pane's shell, hostname(1).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect
import pytest

from labkit import demo

ROOT = Path(__file__).resolve().parent.parent
_sockets = itertools.count()


@pytest.fixture
def socket():
    """A tmux socket name of this test's own; its server is killed whatever happens."""
    name = f"nslab-test-demo-{os.getpid()}-{next(_sockets)}"
    path = Path(os.environ.get("TMUX_TMPDIR", "/tmp"), f"tmux-{os.getuid()}", name)
    yield name
    running = server_running(name)
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True)
    left = path.exists()
    path.unlink(missing_ok=True)
    assert not running, f"the demo left the tmux server {name} running"
    assert not left, f"the demo left its tmux socket {path} behind"


def server_running(socket: str) -> bool:
    return subprocess.run(["tmux", "-L", socket, "list-sessions"], capture_output=True).returncode == 0


def labkit_demo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit.demo", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def panes_printed(stdout: str) -> dict[str, str]:
    """The '----- pane NAME -----' sections that a headless demo prints at its end."""
    parts = re.split(r"^----- pane (\w+) -----$", stdout, flags=re.MULTILINE)
    return {name: text.strip("\n") for name, text in zip(parts[1::2], parts[2::2], strict=True)}


def outputs(transcript: str, pane: str, command: str) -> list[str]:
    """The output of each run of COMMAND in a pane's transcript."""
    found, current = [], None
    for line in transcript.splitlines():
        if line.startswith(f"{pane}#"):
            if current is not None:
                found.append("\n".join(current))
            current = [] if line == f"{pane}# {command}" else None
        elif current is not None:
            current.append(line)
    return found


def write_demo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "test.demo"
    path.write_text(text)
    return path


# The UTS demo -------------------------------------------------------------------

def test_uts_demo_auto_keeps_sh1s_hostname_while_sh2_and_sh3_see_bizarro(socket):
    host, host_uts = sh("hostname"), os.readlink("/proc/self/ns/uts")
    result = labkit_demo("uts", "--auto", "--delay", "0", "--socket", socket)
    assert result.returncode == 0, result.stderr
    panes = panes_printed(result.stdout)
    assert set(panes) == {"sh1", "sh2", "sh3"}
    assert outputs(panes["sh1"], "sh1", "hostname") == [host, host]
    assert outputs(panes["sh2"], "sh2", "hostname") == [host, "bizarro"]
    assert outputs(panes["sh3"], "sh3", "hostname") == [host, "bizarro"]
    # The links: sh1 stays in our namespace, sh2 leaves it, sh3 follows sh2.
    link = "readlink /proc/$$/ns/uts"
    assert outputs(panes["sh1"], "sh1", link) == [host_uts, host_uts]
    before, after = outputs(panes["sh2"], "sh2", link)
    assert before == host_uts != after
    assert outputs(panes["sh3"], "sh3", link) == [after]
    assert outputs(panes["sh1"], "sh1", "uname -r") == [os.uname().release]
    assert not server_running(socket)
    assert sh("hostname") == host


def test_uts_demo_waits_for_enter_and_its_panes_show_each_step(socket):
    host = sh("hostname")
    steps = demo.parse(demo.find("uts")).commands
    # The terminal says what it is, as every terminal does: tmux refuses to
    # start from a terminal whose TERM it does not know (sudo in a
    # `vagrant ssh -c` without a terminal passes TERM=unknown).
    child = pexpect.spawn(sys.executable, ["-m", "labkit.demo", "uts", "--socket", socket],
                          cwd=str(ROOT), dimensions=(50, 200), encoding="utf-8", timeout=60,
                          env={**os.environ, "TERM": "xterm-256color"})
    try:
        tmux = demo.Tmux(socket)
        wait_for(lambda: server_running(socket) and "demo" in titles(tmux), terminal=child)
        tmux.panes = titles(tmux)
        for number, step in enumerate(steps, 1):
            wait_for(lambda n=number: re.search(rf"\[{n}/{len(steps)}\].*\[Enter\]\s*$",
                                                tmux.text("demo")), terminal=child)
            if number == 1:  # shown, and waiting: nothing typed yet
                assert "hostname" not in tmux.text("sh1")
            if step.text == "hostname bizarro":
                assert_in_new_uts_namespace(tmux, "sh2", host)
            child.send("\r")
        wait_for(lambda: "The end." in tmux.text("demo"), terminal=child)
        assert outputs(tmux.text("sh1"), "sh1", "hostname")[-1] == host
        assert outputs(tmux.text("sh2"), "sh2", "hostname")[-1] == "bizarro"
        assert outputs(tmux.text("sh3"), "sh3", "hostname")[-1] == "bizarro"
        # sh3's shell, seen from outside: in sh2's namespace, which is called bizarro.
        sh2, sh3 = tmux.shell_pid("sh2"), tmux.shell_pid("sh3")
        assert os.readlink(f"/proc/{sh3}/ns/uts") == os.readlink(f"/proc/{sh2}/ns/uts")
        assert sh("nsenter", "--target", str(sh3), "--uts", "hostname") == "bizarro"
        child.send("\r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert sh("hostname") == host


def titles(tmux: demo.Tmux) -> dict[str, str]:
    """{pane title: pane id}, or {} while the session is still being made."""
    try:
        lines = tmux("list-panes", "-t", "demo", "-F", "#{pane_title} #{pane_id}").splitlines()
    except demo.DemoError:
        return {}
    return dict(line.rsplit(" ", 1) for line in lines)


def wait_for(condition, timeout: float = 60, terminal: pexpect.spawn | None = None) -> None:
    """Poll CONDITION; meanwhile read what tmux draws on TERMINAL, so that its pty never fills."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} s")
        try:
            if terminal is not None:
                terminal.read_nonblocking(65536, timeout=0.05)
        except (pexpect.TIMEOUT, pexpect.EOF):
            pass
        time.sleep(0.02)


def assert_in_new_uts_namespace(tmux: demo.Tmux, pane: str, host: str) -> None:
    pid = tmux.shell_pid(pane)
    assert os.readlink(f"/proc/{pid}/ns/uts") != os.readlink("/proc/self/ns/uts")
    assert sh("nsenter", "--target", str(pid), "--uts", "hostname") == host  # a copy, not renamed yet


# Safety and errors ------------------------------------------------------------------

def test_demo_stops_before_renaming_the_machine_when_the_shell_did_not_unshare(tmp_path, socket):
    host = sh("hostname")
    path = write_demo(tmp_path, "title: a demo that forgot to unshare\npanes: sh\n"
                                "sh# true\ncheck: sh has a new uts namespace\nsh# hostname nslab-never\n")
    result = labkit_demo(str(path), "--auto", "--delay", "0", "--socket", socket)
    assert result.returncode == 1
    assert "sh is still in this machine's uts namespace" in result.stderr
    assert "Traceback" not in result.stderr
    assert "sh# hostname nslab-never" not in result.stdout
    assert sh("hostname") == host


def test_overview_demo_shows_the_strace_mask_and_its_decoding(socket):
    result = labkit_demo("overview", "--auto", "--delay", "0", "--socket", socket)
    assert result.returncode == 0, result.stderr
    shell = panes_printed(result.stdout)["sh"]
    assert "unshare(0x4000000)" in shell
    assert outputs(shell, "sh", "labkit flags 0x4000000")[0].startswith("0x04000000 = CLONE_NEWUTS\n")
    assert "unshare(0x4c020000)" in shell
    assert "0x4c020000 = CLONE_NEWIPC|CLONE_NEWNET|CLONE_NEWNS|CLONE_NEWUTS" in shell
    assert "unshare: unshare failed: Operation not permitted" in shell
    assert outputs(shell, "sh", "uname -r")[0] == os.uname().release
    assert outputs(shell, "sh", "unshare --mount --uts --ipc --net --pid --cgroup --time --fork "
                               "--mount-proc uname -r") == [os.uname().release]


def test_unknown_lesson_is_a_clear_error_listing_the_demos():
    result = labkit_demo("nosuch", "--auto")
    assert result.returncode == 2
    assert f"no demo for 'nosuch'; there are: {', '.join(demo.available())}" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_terminal_and_without_auto_the_demo_says_add_auto():
    result = labkit_demo("uts")
    assert result.returncode == 2
    assert "add --auto" in result.stderr


def test_a_bad_script_line_is_reported_with_its_file_and_line(tmp_path):
    path = write_demo(tmp_path, "title: t\npanes: sh1\nsh2# hostname\n")
    result = labkit_demo(str(path), "--auto")
    assert result.returncode == 2
    assert f"{path}:3: no pane 'sh2' (panes: sh1)" in result.stderr
    path = write_demo(tmp_path, "panes: sh\nsh# true\nthis is not a step\n")
    assert f"{path}:3: expected" in labkit_demo(str(path), "--auto").stderr


@pytest.mark.rootless
def test_a_normal_user_is_told_that_the_uts_demo_needs_root(unprivileged):
    with tempfile.TemporaryDirectory(prefix="nslab-demo-test-") as readable:  # not 0700 like tmp_path
        os.chmod(readable, 0o755)
        path = write_demo(Path(readable), (demo.DEMOS / "02-uts.demo").read_text())
        path.chmod(0o644)
        result = unprivileged.run([unprivileged.python, "-m", "labkit.demo", str(path), "--auto"])
    assert result.returncode == 2
    assert "need root" in result.stderr and "sudo" in result.stderr
    assert "Traceback" not in result.stderr


# The demo of every lesson with a shell session ---------------------------------------------

def played(lesson: str, socket: str) -> dict[str, str]:
    """Play LESSON with --auto and return what each pane showed."""
    result = labkit_demo(lesson, "--auto", "--delay", "0", "--socket", socket, timeout=180)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Traceback" not in result.stderr
    assert not server_running(socket)
    return panes_printed(result.stdout)


def row(output: str) -> list[str]:
    """The fields of the first line under a table's header (findmnt, ps)."""
    return output.splitlines()[1].split()


def our_mounts() -> str:
    return sh("findmnt", "-rn", "-o", "TARGET,SOURCE")


def test_at_least_eight_lessons_have_a_demo():
    assert len(demo.available()) >= 8
    result = subprocess.run([sys.executable, "-m", "labkit", "demo"], capture_output=True, text=True,
                            cwd=ROOT, stdin=subprocess.DEVNULL, timeout=60)
    for name in ("03-mount", "04-chroot", "05-pid", "06-network", "07-user", "08-ipc", "09-cgroup",
                 "10-time"):
        assert name in result.stdout


def test_mount_demo_propagates_between_peers_and_only_into_a_slave(socket):
    before = our_mounts()
    panes = played("mount", socket)
    sh1, sh2 = panes["sh1"], panes["sh2"]
    assert row(outputs(sh1, "sh1", "findmnt -o TARGET,SOURCE,PROPAGATION /mnt")[0]) == \
        ["/mnt", "demo", "shared"]
    assert row(outputs(sh2, "sh2", "findmnt -o TARGET,SOURCE,PROPAGATION /mnt")[0]) == \
        ["/mnt", "demo", "shared"]
    # sh1 -> sh2 and sh2 -> sh1 while peers; after make-slave, only sh1 -> sh2.
    assert row(outputs(sh2, "sh2", "findmnt -o TARGET,SOURCE /mnt/a")[0]) == ["/mnt/a", "from-sh1"]
    assert row(outputs(sh1, "sh1", "findmnt -o TARGET,SOURCE /mnt/b")[0]) == ["/mnt/b", "from-sh2"]
    assert outputs(sh1, "sh1", "findmnt -o TARGET,SOURCE /mnt/c") == [""]
    assert row(outputs(sh2, "sh2", "findmnt -o TARGET,SOURCE /mnt/c")[0]) == \
        ["/mnt/c", "slave-only"]
    mountinfo = "grep 'tmpfs demo' /proc/self/mountinfo"
    assert re.search(r" /mnt rw\S* master:\d+ ", outputs(sh2, "sh2", mountinfo)[0])
    assert re.search(r" /mnt rw\S* shared:\d+ ", outputs(sh1, "sh1", mountinfo)[0])
    assert our_mounts() == before  # nothing reached our mount namespace
    assert "from-sh1" not in before and "slave-only" not in our_mounts()


def test_chroot_demo_escapes_through_proc_and_pivot_root_does_not(socket):
    before = our_mounts()
    panes = played("chroot", socket)
    sh1, sh2 = panes["sh1"], panes["sh2"]
    assert outputs(sh1, "sh1", "ls /")[0].split() == ["bin", "old", "proc"]  # in the jail
    escaped = outputs(sh1, "sh1", "ls /usr")[0].split()
    assert escaped == sorted(os.listdir("/usr"))  # this machine's /usr, seen from the jail
    assert outputs(sh2, "sh2", "ls /")[0].split() == ["bin", "old", "proc"]
    assert outputs(sh2, "sh2", "ls /proc/1/root/")[0].split() == ["bin", "old", "proc"]
    assert outputs(sh2, "sh2", "chroot /proc/1/root ls /usr") == ["ls: /usr: No such file or directory"]
    assert our_mounts() == before


def test_pid_demo_shows_pid_1_its_orphan_reaped_and_the_namespace_killed_with_it(socket):
    host_pidns = os.readlink("/proc/self/ns/pid")
    panes = played("pid", socket)
    sh1, sh2 = panes["sh1"], panes["sh2"]
    assert outputs(sh1, "sh1", "echo $$") == ["1"]
    init = re.search(r"^sh2# init=(\d+)$", sh2, re.MULTILINE)[1]
    assert outputs(sh2, "sh2", "grep NSpid /proc/$init/status")[0].split() == ["NSpid:", init, "1"]
    with_orphan, after = outputs(sh1, "sh1", "ps -o pid,ppid,stat,comm")
    assert re.search(r"^\s*\d+\s+1\s+S\s+sleep$", with_orphan, re.MULTILINE)  # adopted by PID 1
    assert "sleep" not in after and " Z " not in after  # reaped: no zombie
    assert outputs(sh1, "sh1", "echo $$ is alive") == ["1 is alive"]  # kill -KILL 1 from inside: ignored
    sleeper = outputs(sh2, "sh2", "pgrep -a -f 'sleep 4242'")[0].split()
    assert sleeper[1:] == ["sleep", "4242"]
    gone = "pgrep -a -f 'sleep 4242' || echo no sleep 4242 left"
    assert outputs(sh2, "sh2", gone) == ["no sleep 4242 left"]  # killed with its PID 1
    assert outputs(sh1, "sh1", "readlink /proc/$$/ns/pid")[-1].endswith(host_pidns)  # the pane's own shell


def test_network_demo_pings_across_a_veth_pair_between_two_namespaces(socket):
    our_links = sh("ip", "-br", "link")
    panes = played("network", socket)
    sh1, sh2 = panes["sh1"], panes["sh2"]
    assert outputs(sh1, "sh1", "ip -br link")[0].split()[:2] == ["lo", "DOWN"]
    assert len(outputs(sh1, "sh1", "ip -br link")[0].splitlines()) == 1  # lo, and nothing else
    assert "10.13.0.2/24" in outputs(sh2, "sh2", "ip -br addr")[0]
    replies = outputs(sh1, "sh1", "ping -c 3 -W 5 10.13.0.2")[0]
    assert len(re.findall(r"^64 bytes from 10\.13\.0\.2: icmp_seq=\d", replies, re.MULTILINE)) == 3
    assert "3 packets transmitted, 3 received, 0% packet loss" in replies
    assert "1 packets transmitted, 1 received" in outputs(sh2, "sh2", "ping -c 1 -W 5 10.13.0.1")[0]
    assert outputs(sh1, "sh1", "ip route")[0].startswith("10.13.0.0/24 dev veth1")
    assert sh("ip", "-br", "link") == our_links  # no veth here
    assert "10.13.0." not in sh("ip", "-br", "addr")


def test_user_demo_shows_root_inside_and_the_map_from_outside(socket):
    panes = played("user", socket)
    sh1, sh2 = panes["sh1"], panes["sh2"]
    assert outputs(sh1, "sh1", "id -u") == ["0"]
    assert outputs(sh1, "sh1", "cat /proc/self/uid_map")[0].split() == ["0", "1000", "1"]
    pid = re.search(r"^sh2# cat /proc/(\d+)/uid_map$", sh2, re.MULTILINE)[1]
    assert outputs(sh2, "sh2", f"cat /proc/{pid}/uid_map")[0].split() == ["0", "1000", "1"]
    assert outputs(sh2, "sh2", f"cat /proc/{pid}/gid_map")[0].split() == ["0", "1000", "1"]
    assert row(outputs(sh2, "sh2", f"ps -o uid,pid,comm -p {pid}")[0]) == ["1000", pid, "sh"]
    assert outputs(sh1, "sh1", "ls -ln /etc/shadow")[0].split()[2:4] == ["65534", "65534"]
    assert outputs(sh1, "sh1", "cat /etc/shadow") == ["cat: /etc/shadow: Permission denied"]


def test_ipc_demo_queue_is_seen_only_from_inside_its_namespace(socket):
    panes = played("ipc", socket)
    sh1, sh2 = panes["sh1"], panes["sh2"]
    key = outputs(sh1, "sh1", "ipcs -q")[0].splitlines()[-1].split()[0]
    assert key.startswith("0x")
    assert key not in outputs(sh2, "sh2", "ipcs -q")[0]
    pid = re.search(r"^sh2# nsenter --target (\d+) --ipc ipcs -q$", sh2, re.MULTILINE)[1]
    assert key in outputs(sh2, "sh2", f"nsenter --target {pid} --ipc ipcs -q")[0]
    assert key not in sh("ipcs", "-q")


def test_time_demo_puts_one_shell_a_day_ahead_with_the_same_wall_clock(socket):
    panes = played("time", socket)
    sh1, sh2 = panes["sh1"], panes["sh2"]
    ours = [float(o.split()[0]) for o in outputs(sh1, "sh1", "cat /proc/uptime")]
    theirs = [float(o.split()[0]) for o in outputs(sh2, "sh2", "cat /proc/uptime")]
    assert abs(theirs[0] - ours[0]) < 60  # before the unshare: the same boot
    assert 86400 - 60 < theirs[1] - ours[1] < 86400 + 60  # a day ahead
    pid = re.search(r"^sh1# cat /proc/(\d+)/timens_offsets$", sh1, re.MULTILINE)[1]
    offsets = outputs(sh1, "sh1", f"cat /proc/{pid}/timens_offsets")[0]
    assert offsets.split() == ["monotonic", "3600", "0", "boottime", "86400", "0"]
    assert outputs(sh2, "sh2", "cat /proc/self/timens_offsets")[0].split() == offsets.split()
    assert outputs(sh1, "sh1", "date +%F") == outputs(sh2, "sh2", "date +%F")


def test_cgroup_demo_shows_the_cgroup_as_root_inside_and_removes_it(socket):
    panes = played("cgroup", socket)
    sh1, sh2 = panes["sh1"], panes["sh2"]
    assert outputs(sh1, "sh1", "grep ^0:: /proc/self/cgroup") == ["0::/"]
    inside = re.search(r"^sh2# grep \^0:: /proc/(\d+)/cgroup$", sh2, re.MULTILINE)[1]
    assert outputs(sh2, "sh2", f"grep ^0:: /proc/{inside}/cgroup") == ["0::/nslab-demo"]
    outside = re.search(r"^sh1# grep \^0:: /proc/(\d+)/cgroup$", sh1, re.MULTILINE)[1]
    assert outputs(sh1, "sh1", f"grep ^0:: /proc/{outside}/cgroup")[0].startswith("0::/..")
    assert outputs(sh1, "sh1", "ls -d /mnt/nslab-demo") == \
        ["ls: cannot access '/mnt/nslab-demo': No such file or directory"]
    v2 = sh("findmnt", "-n", "-t", "cgroup2", "-o", "TARGET").splitlines()[0]  # the v2 tree, as mounted here
    assert not os.path.exists(f"{v2}/nslab-demo")


# The scripts and the command line ----------------------------------------------------

@pytest.mark.parametrize("path", sorted(demo.DEMOS.glob("*.demo")), ids=lambda p: p.stem)
def test_every_demo_script_parses_and_belongs_to_a_lesson(path):
    script = demo.parse(path)
    assert script.title and script.commands
    assert (ROOT / "lessons" / f"{path.stem}.ipynb").exists()


def test_uts_demo_checks_for_a_new_namespace_before_it_renames():
    steps = demo.parse(demo.find("02")).steps
    rename = next(i for i, s in enumerate(steps) if s.text.startswith("hostname "))
    assert (steps[rename - 1].kind, steps[rename - 1].text) == ("check", "uts")


def test_register_adds_the_demo_subcommand():
    parser = argparse.ArgumentParser()
    demo.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["demo", "uts", "--auto"])
    assert (args.command, args.lesson, args.auto, args.delay) == ("demo", "uts", True, 1.5)
