"""labkit.join: setns(2) into a spawned process's namespaces, checked against nsenter(1)."""

from __future__ import annotations

import errno
import os
import socket
import subprocess

import pytest

from labkit import syscalls
from labkit.errors import MissingCapability, NamespaceError
from labkit.join import enter, run_in
from labkit.nstypes import TYPES
from labkit.spawn import run, spawn

ALL = [t.name for t in TYPES]
NSENTER_OPTION = {"mnt": "-m", "uts": "-u", "ipc": "-i", "net": "-n", "pid": "-p", "user": "-U",
                  "cgroup": "-C", "time": "-T"}


def readlink(pid: int | str, name: str) -> str:
    return subprocess.run(["readlink", f"/proc/{pid}/ns/{name}"], capture_output=True,
                          text=True, check=True).stdout.strip()


def nsenter(pid: int, *args: str) -> str:
    return subprocess.run(["nsenter", "-t", str(pid), *args], capture_output=True, text=True,
                          check=True).stdout


def captured(pid: int, namespaces: object, argv: list[str]) -> tuple[int, str]:
    """Run ARGV with enter() and return its exit code and output."""
    r, w = os.pipe()
    try:
        child = enter(pid, namespaces, argv, stdout=w)
    finally:
        os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    return child.wait(timeout=30), out


def own_links() -> dict[str, str]:
    return {name: os.readlink(f"/proc/self/ns/{name}") for name in ALL}


@pytest.fixture
def target():
    """A process in new namespaces of every type, with a hostname and a mount of its own."""
    with spawn(["sh", "-c", "mount -t tmpfs join-test /mnt && exec sleep 600"], ALL,
               map_root=True, hostname="joined") as child:
        for _ in range(500):  # until sh has mounted and exec'd sleep
            with open(f"/proc/{child.pid}/comm") as f:
                if f.read().strip() == "sleep":
                    break
            os.sched_yield()
        yield child


@pytest.mark.parametrize("name", ALL)
def test_enter_one_namespace_matches_readlink_and_nsenter(target, name):
    code, out = captured(target.pid, name, ["readlink", f"/proc/self/ns/{name}"])
    assert code == 0
    assert out.strip() == readlink(target.pid, name)
    assert out == nsenter(target.pid, NSENTER_OPTION[name], "readlink", f"/proc/self/ns/{name}")


@pytest.mark.parametrize("name", ALL)
def test_entering_one_type_leaves_the_others(target, name):
    links = run_in(target.pid, name, own_links)
    ours = own_links()
    assert {n for n in ALL if links[n] != ours[n]} == {name}


def test_enter_uts_sees_the_hostname(target):
    assert captured(target.pid, "uts", ["hostname"]) == (0, "joined\n")
    assert nsenter(target.pid, "-u", "hostname") == "joined\n"
    assert socket.gethostname() != "joined"


def test_enter_mnt_sees_the_mounts_and_the_root(target):
    code, out = captured(target.pid, "mnt", ["findmnt", "-n", "-o", "SOURCE,FSTYPE", "/mnt"])
    assert (code, out.split()) == (0, ["join-test", "tmpfs"])
    assert out == nsenter(target.pid, "-m", "findmnt", "-n", "-o", "SOURCE,FSTYPE", "/mnt")
    assert subprocess.run(["findmnt", "/mnt"], capture_output=True).returncode == 1


def test_enter_net_sees_only_loopback(target):
    code, out = captured(target.pid, "net", ["ip", "-o", "link", "show"])
    assert code == 0 and [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
    assert out == nsenter(target.pid, "-n", "ip", "-o", "link", "show")


def test_enter_pid_the_joiner_keeps_its_pid_its_child_is_inside(target):
    """setns(CLONE_NEWPID) changes pid_for_children only, so enter() forks once more."""
    r, w = os.pipe()
    child = enter(target.pid, "pid", ["cat"], stdin=r)  # runs until we close w
    os.close(r)
    try:
        with open(f"/proc/{child._direct}/status") as f:  # the process that called setns()
            joiner = next(line for line in f if line.startswith("NSpid:")).split()[1:]
        assert joiner == [str(child._direct)]  # one PID: it is still only in our namespace
        assert readlink(child._direct, "pid") == readlink("self", "pid")
        assert readlink(child._direct, "pid_for_children") == readlink(target.pid, "pid")
        with open(f"/proc/{child.pid}/status") as f:  # its child, which runs the command
            inside = next(line for line in f if line.startswith("NSpid:")).split()[1:]
        assert inside[0] == str(child.pid) and int(inside[1]) > 1  # PID 1 is the target's
        assert readlink(child.pid, "pid") == readlink(target.pid, "pid")
        assert run_in(target.pid, "pid", os.getpid) > 1
    finally:
        os.close(w)  # cat ends
        assert child.wait(timeout=30) == 0


def test_enter_time_moves_the_joiner_itself(target):
    """Unlike unshare(CLONE_NEWTIME), setns(CLONE_NEWTIME) takes effect at once: no extra fork."""
    r, w = os.pipe()
    child = enter(target.pid, "time", ["cat"], stdin=r)
    try:
        assert child.pid == child._direct
        assert readlink(child.pid, "time") == readlink(target.pid, "time")
    finally:
        os.close(r)
        os.close(w)
        child.wait(timeout=30)


def test_enter_all_joins_every_namespace_that_differs(target):
    links = run_in(target.pid, "all", own_links)
    assert links == {name: readlink(target.pid, name) for name in ALL}
    code, out = captured(target.pid, "all", ["hostname"])
    assert (code, out) == (0, "joined\n")
    assert out == nsenter(target.pid, "-a", "hostname")


def test_enter_starts_in_the_targets_root_or_cwd(target):
    assert captured(target.pid, "mnt", ["pwd"]) == (0, "/\n")
    r, w = os.pipe()
    child = enter(target.pid, "mnt", ["pwd"], cwd="/mnt", stdout=w)
    os.close(w)
    with os.fdopen(r) as f:
        assert f.read() == "/mnt\n"
    assert child.wait() == 0


def test_exit_status_of_an_entered_command(target):
    assert enter(target.pid, "uts", ["sh", "-c", "exit 7"]).wait() == 7
    assert enter(target.pid, "pid", ["sh", "-c", "exit 5"]).wait() == 5


def test_a_missing_command_raises_and_leaves_no_child(target):
    for namespaces in ("uts", "pid"):
        with pytest.raises(FileNotFoundError) as info:
            enter(target.pid, namespaces, ["no-such-command-here"])
        assert info.value.filename == "no-such-command-here"
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
        assert f.read().split() == [str(target._direct)]


def test_a_missing_pid_is_a_teaching_error():
    with pytest.raises(NamespaceError) as info:
        enter(2 ** 22 + 1, "uts", ["true"])
    assert info.value.errno == errno.ENOENT
    assert f"no process {2 ** 22 + 1}" in str(info.value)
    with pytest.raises(NamespaceError):
        run_in(2 ** 22 + 1, "all", os.getpid)


def test_own_user_namespace_is_skipped_not_einval():
    with spawn(["sleep", "60"], "uts", hostname="no-userns") as child:
        assert run_in(child.pid, "user,uts", socket.gethostname) == "no-userns"


def test_a_uts_namespace_owned_higher_up_is_joined_before_the_user_namespace():
    """nsenter's two passes: root joins the UTS namespace while it still has the privilege."""
    def outer() -> tuple:
        with spawn(["sleep", "60"], "user", map_root=True) as inner:
            user_link = os.readlink(f"/proc/{inner.pid}/ns/user")
            joined = run_in(inner.pid, "user,uts", lambda: (socket.gethostname(),
                                                            os.readlink("/proc/self/ns/user")))
            return joined, user_link

    (hostname, user_link_inside), user_link = run(outer, namespaces="uts", hostname="owned-above")
    assert hostname == "owned-above" and user_link_inside == user_link


def test_joining_without_privilege_is_missing_capability():
    """An unprivileged joiner of a root-owned namespace: the second pass fails too."""
    def drop_privilege_and_join(pid: int) -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        return run_in(pid, "uts", socket.gethostname)

    with spawn(["sleep", "60"], "uts") as child:
        # Opening another user's namespace files is refused first (ptrace access).
        with pytest.raises(NamespaceError) as info:
            run(drop_privilege_and_join, child.pid)
        assert info.value.errno == errno.EACCES and "ptrace" in str(info.value)

    def join_own_without_userns() -> None:
        fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        syscalls.setns(fd, "uts")

    with pytest.raises(MissingCapability):
        run(join_own_without_userns)


def test_setns_with_a_pidfd_joins_several_namespaces_at_once(target):
    """setns(2) on a pidfd (Linux 5.8): one call, the types named in the mask."""
    def join_by_pidfd(pid: int) -> tuple[str, str, str]:
        syscalls.setns(syscalls.pidfd_open(pid), "user,uts,net")
        return socket.gethostname(), os.readlink("/proc/self/ns/net"), os.readlink("/proc/self/ns/ipc")

    hostname, net, ipc = run(join_by_pidfd, target.pid)
    assert (hostname, net) == ("joined", readlink(target.pid, "net"))
    assert ipc == readlink("self", "ipc")  # not asked for, not joined
