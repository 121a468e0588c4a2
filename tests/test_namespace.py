"""labkit.namespace: handles on /proc/PID/ns files and ioctl_ns(2), checked with readlink, lsns, nsenter."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time

import pytest
import tools

from labkit import syscalls
from labkit.errors import NamespaceError
from labkit.namespace import Namespace, same_namespace
from labkit.nstypes import TYPES
from labkit.spawn import run, spawn

ALL = [t.name for t in TYPES]


def readlink(pid: int | str, name: str) -> str:
    """The link text as readlink(1) prints it."""
    return subprocess.run(["readlink", f"/proc/{pid}/ns/{name}"], capture_output=True,
                          text=True, check=True).stdout.strip()


def lsns(*args: str) -> list[dict]:
    return json.loads(tools.lsns("--json", "--list", *args, check=True).stdout)["namespaces"]


@pytest.fixture
def child_in_all():
    """A sleeping child in a new namespace of every type (root inside a new user namespace)."""
    with spawn(["sleep", "60"], ALL, map_root=True) as child:
        yield child


@pytest.mark.parametrize("name", ALL)
def test_of_reads_the_link_that_readlink_shows(name):
    assert str(Namespace.of("self", name)) == readlink(os.getpid(), name)
    assert Namespace.of(os.getpid(), name) == Namespace.of("self", name)


def test_all_of_has_every_link_of_the_child(child_in_all):
    found = Namespace.all_of(child_in_all.pid)
    assert sorted(found) == sorted(os.listdir(f"/proc/{child_in_all.pid}/ns"))
    assert set(ALL) | {"pid_for_children", "time_for_children"} <= set(found)
    for name, ns in found.items():
        assert str(ns) == readlink(child_in_all.pid, name)
        assert ns.type.name == name.removesuffix("_for_children")


def test_equality_is_the_same_link_target(child_in_all):
    mine, theirs = Namespace.all_of("self"), Namespace.all_of(child_in_all.pid)
    for name in ALL:
        assert (mine[name] == theirs[name]) == (readlink("self", name) == readlink(child_in_all.pid, name))
        assert mine[name] != theirs[name]  # every type is new
        assert not same_namespace("self", child_in_all.pid, name)
        assert hash(mine[name]) == hash(Namespace.of(os.getpid(), name))
    assert mine["uts"] != "uts:[...]"  # compares only with namespaces
    assert len({*mine.values(), *Namespace.all_of("self").values()}) == len(set(mine.values()))


def test_lsns_sees_the_same_namespaces(child_in_all):
    listed = {(n["type"], n["ns"]) for n in lsns("-p", str(child_in_all.pid))}
    mine = {(name, ns.inode) for name, ns in Namespace.all_of(child_in_all.pid).items()
            if not name.endswith("_for_children")}
    assert listed == mine


def after_unshare_before_and_after_fork() -> dict[str, object]:
    """pid_for_children and time_for_children right after unshare, then after the first fork."""
    syscalls.unshare("pid,time")
    seen = {"own": Namespace.all_of("self")}
    try:
        Namespace.of("self", "pid_for_children")
    except NamespaceError as e:
        seen["before_fork"] = (e.errno, str(e))
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    seen["after_fork"] = Namespace.all_of("self")
    return seen


def test_for_children_links_differ_after_unshare():
    seen = run(after_unshare_before_and_after_fork)
    own, after = seen["own"], seen["after_fork"]
    # unshare(CLONE_NEWPID|CLONE_NEWTIME) leaves the caller where it was ...
    assert own["pid"] == Namespace.of("self", "pid") and own["time"] == Namespace.of("self", "time")
    # ... and changes only where its children go
    assert own["time_for_children"] != own["time"]
    assert "pid_for_children" not in own  # no init yet: the kernel shows nothing
    assert seen["before_fork"][0] == errno.ENOENT
    assert "no init until the first fork" in seen["before_fork"][1]
    assert after["pid_for_children"] != after["pid"]
    assert after["time_for_children"] == own["time_for_children"]


def test_for_children_links_equal_own_links_normally():
    assert Namespace.of("self", "pid_for_children") == Namespace.of("self", "pid")
    assert Namespace.of("self", "time_for_children") == Namespace.of("self", "time")


# --- ioctl_ns(2) ----------------------------------------------------------------

def test_nstype_of_every_open_namespace_file(child_in_all):
    for name, ns in Namespace.all_of(child_in_all.pid).items():
        assert Namespace.from_path(f"/proc/{child_in_all.pid}/ns/{name}") == ns
        with ns.opened() as fd:
            assert Namespace.from_fd(fd).type.name == name.removesuffix("_for_children")


def test_owner_is_the_user_namespace_lsns_names(child_in_all):
    userns = Namespace.of(child_in_all.pid, "user")
    owners = {n["type"]: n["ons"] for n in lsns("-o", "NS,TYPE,ONS", "-p", str(child_in_all.pid))}
    for name in ALL:
        ns = Namespace.of(child_in_all.pid, name)
        if name == "user":
            assert ns.owner() == Namespace.of("self", "user")  # a user namespace's owner is its parent
        else:
            assert ns.owner() == userns  # created together with it: owned by it
        assert ns.owner().inode == owners[name]


def test_parent_of_user_and_pid_namespaces_is_what_lsns_shows(child_in_all):
    parents = {n["type"]: n["pns"] for n in lsns("-o", "NS,TYPE,PNS", "-p", str(child_in_all.pid))}
    for name in ("user", "pid"):
        parent = Namespace.of(child_in_all.pid, name).parent()
        assert parent == Namespace.of("self", name)
        assert parent.inode == parents[name]


def test_parent_of_a_flat_type_is_einval():
    with pytest.raises(NamespaceError) as info:
        Namespace.of("self", "uts").parent()
    assert info.value.errno == errno.EINVAL
    assert "only PID and user namespaces" in str(info.value)


def test_owner_uid_is_the_creators_uid(child_in_all):
    assert Namespace.of(child_in_all.pid, "user").owner_uid() == 0
    with open(f"/proc/{child_in_all.pid}/uid_map") as f:
        assert f.read().split() == ["0", "0", "1"]
    with pytest.raises(ValueError):
        Namespace.of("self", "uts").owner_uid()


def test_owner_uid_rootless(unprivileged):
    code = ("from labkit.spawn import spawn\n"
            "with spawn(['sleep', '60'], 'uts') as child:\n"
            "    print(child.namespaces['user'].owner_uid(), child.namespaces['uts'].owner().owner_uid())\n"
            "    print(open(f'/proc/{child.pid}/status').read())\n")
    result = unprivileged.python_code(code)
    assert result.returncode == 0, result.stderr
    first, *status = result.stdout.splitlines()
    uid = str(unprivileged.uid)
    assert first.split() == [uid, uid]
    uid_line = next(line for line in status if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [uid] * 4  # as we see it from outside


def nested_pid_namespaces(depth: int) -> list[str]:
    """unshare(1) --pid --fork, DEPTH times: the chain is made by another tool."""
    return [*(["unshare", "--pid", "--fork", "--"] * depth), "sleep", "60"]


def deepest_descendant(pid: int) -> int:
    """Follow /proc/PID/task/PID/children down to the last process (they start one by one)."""
    deadline = time.monotonic() + 10
    while True:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        if kids:
            pid = int(kids[0])
        else:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "sleep":
                    return pid
            assert time.monotonic() < deadline, "the chain did not start"
            time.sleep(0.02)


def test_ancestors_of_a_nested_pid_namespace_chain():
    with spawn(nested_pid_namespaces(3), "pid") as child:
        sleeper = deepest_descendant(child.pid)
        ns = Namespace.of(sleeper, "pid")
        chain = ns.ancestors()
        assert len(chain) == 4  # three made by unshare(1), one by spawn, below ours
        assert chain[-1] == Namespace.of("self", "pid")
        assert chain[-2] == Namespace.of(child.pid, "pid")
        # Each link agrees with lsns's PNS column for that namespace.
        parents = {n["ns"]: n["pns"] for n in lsns("-t", "pid", "-o", "NS,PNS")}
        below = [ns, *chain]
        for lower, upper in zip(below, below[1:], strict=False):
            assert parents[lower.inode] == upper.inode
        # The status line NSpid lists one PID per level, outermost first.
        with open(f"/proc/{sleeper}/status") as f:
            nspid = next(line for line in f if line.startswith("NSpid:")).split()[1:]
        assert len(nspid) == len(chain) + 1 and nspid[-1] == "1"
        # A namespace found by ioctl can be opened and asked again.
        assert chain[0].parent() == chain[1]
        assert chain[1].owner() == Namespace.of("self", "user")
        assert Namespace.of("self", "pid").ancestors() == []


def test_an_open_fd_keeps_a_namespace_alive_after_its_last_process():
    child = spawn(["sleep", "60"], "uts", hostname="kept-alive")
    ns = Namespace.of(child.pid, "uts")
    fd = ns.open()
    try:
        child.kill()
        assert child.wait() == -9
        assert not os.path.exists(f"/proc/{child.pid}")
        assert Namespace.from_fd(fd) == ns
        seen = subprocess.run(["nsenter", f"--uts=/proc/{os.getpid()}/fd/{fd}", "hostname"],
                              capture_output=True, text=True, check=True).stdout.strip()
        assert seen == "kept-alive"
    finally:
        os.close(fd)


def test_open_refuses_a_namespace_the_pid_has_left():
    with spawn(["sleep", "60"], "uts") as child:
        ns = Namespace.of(child.pid, "uts")
    stale = Namespace(ns.type, ns.dev, ns.inode, f"/proc/{os.getpid()}/ns/uts")
    with pytest.raises(NamespaceError) as info:
        stale.open()
    assert info.value.errno == errno.ESRCH


def test_missing_process_is_a_teaching_error():
    with pytest.raises(NamespaceError) as info:
        Namespace.of(2 ** 22 + 1, "uts")
    assert info.value.errno == errno.ENOENT
    assert "no process" in str(info.value)


def test_a_file_that_is_not_a_namespace():
    with open("/etc/hostname") as f, pytest.raises(NamespaceError) as info:
        Namespace.from_fd(f.fileno())
    assert info.value.errno == errno.ENOTTY
    assert "not a namespace" in str(info.value)
