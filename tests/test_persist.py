"""labkit.persist against nsenter(1), findmnt(8), ip-netns(8), ls(1) and the kernel's own namespace count.

Every bind mount is made in a child with a mount namespace of its own, on a
tmpfs mounted there, so the machine's mount table never changes (the
conftest leak check would fail the test otherwise).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import syscalls
from labkit.errors import NamespaceError
from labkit.namespace import Namespace
from labkit.persist import Holder, holders, outlives_its_process, persist, persisted, release
from labkit.spawn import run, spawn

ROOT = Path(__file__).resolve().parent.parent


def sh(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)


def random_name() -> str:
    return "t" + secrets.token_hex(5)


def test_bind_mount_keeps_a_namespace_after_its_last_process(tmp_path):
    name = random_name()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    path = f"{scratch}/uts"

    def persist_then_release() -> dict:
        syscalls.mount("tmpfs", str(scratch), "tmpfs", 0)  # in this child's own mount namespace
        child = spawn(["sleep", "60"], "uts", hostname=name)
        ns = persist(child.pid, "uts", path)
        facts = {"ns": str(ns), "child_ns": str(Namespace.of(child.pid, "uts"))}
        child.kill()
        child.wait()
        facts["nsenter"] = sh("nsenter", f"--uts={path}", "hostname").stdout.strip()
        facts["findmnt"] = sh("findmnt", "-n", "-t", "nsfs", "-o", "TARGET,FSROOT").stdout.split()
        facts["persisted"] = persisted()
        facts["holders"] = [tuple(h) for h in holders(ns)]
        release(path)
        gone = sh("nsenter", f"--uts={path}", "hostname")
        facts["nsenter_after"] = (gone.returncode, gone.stderr)
        facts["findmnt_after"] = sh("findmnt", "-n", "-t", "nsfs").stdout
        facts["file_after"] = os.path.exists(path)
        return facts

    facts = run(persist_then_release, namespaces="mnt")
    assert facts["ns"] == facts["child_ns"]
    assert facts["nsenter"] == name  # the namespace, its hostname and all, outlived its process
    assert facts["findmnt"] == [path, facts["ns"]]
    assert facts["persisted"] == {path: facts["ns"]}
    assert [h[0] for h in facts["holders"]] == ["mount"] and facts["holders"][0][2] == path
    assert facts["nsenter_after"][0] != 0 and path in facts["nsenter_after"][1]
    assert facts["findmnt_after"] == "" and not facts["file_after"]
    assert not os.path.exists(path)  # the tmpfs, and the file on it, never reached us


def test_open_fd_keeps_a_namespace_after_its_last_process():
    name = random_name()
    child = spawn(["sleep", "60"], "uts", hostname=name)
    ns = Namespace.of(child.pid, "uts")
    fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        child.kill()
        child.wait()
        here = f"/proc/self/fd/{fd}"  # nsenter's own copy of the descriptor
        held = sh("nsenter", f"--uts={here}", "hostname", pass_fds=(fd,))
        assert held.stdout.strip() == name, held.stderr
        assert f"{fd} -> {ns}" in sh("ls", "-l", f"/proc/{os.getpid()}/fd").stdout
        assert Holder("fd", os.getpid(), f"/proc/{os.getpid()}/fd/{fd}") in holders(ns)
        assert not [h for h in holders(ns) if h.kind == "process"]
    finally:
        os.close(fd)
    assert f"-> {ns}" not in sh("ls", "-l", f"/proc/{os.getpid()}/fd").stdout
    assert not [h for h in holders(ns) if h.pid == os.getpid()]


def test_holders_names_the_processes_in_a_namespace():
    first = spawn(["sleep", "60"], "uts")
    with first, spawn(signal.pause) as second:
        ns = Namespace.of(first.pid, "uts")
        assert holders(ns) == [Holder("process", first.pid, f"/proc/{first.pid}/ns/uts")]
        assert not [h for h in holders(ns) if h.pid == second.pid]  # not in it


# The kernel counts namespaces per user namespace and refuses one more than
# /proc/sys/user/max_uts_namespaces allows (ENOSPC).  With the limit set to 1
# in a fresh user namespace, "can I make another UTS namespace?" asks the
# kernel whether the first one still exists, and no inode number can fool it.
KERNEL_COUNT = r"""
import errno, json, os, signal, sys
from labkit import syscalls
from labkit.persist import persist, release
from labkit.spawn import run, spawn

def new_uts_namespace():
    try:
        run(os.getpid, namespaces="uts")
    except OSError as e:
        return errno.errorcode[e.errno]
    return "created"

def experiment(hold):
    with open("/proc/sys/user/max_uts_namespaces", "w") as f:
        f.write("1")
    syscalls.mount("tmpfs", "/tmp", "tmpfs", 0)
    child = spawn(signal.pause, "uts")
    if hold == "mount":
        persist(child.pid, "uts", "/tmp/uts")
    elif hold == "fd":
        fd = os.open(f"/proc/{child.pid}/ns/uts", os.O_RDONLY)
    steps = {"process running": new_uts_namespace()}
    child.kill()
    child.wait()
    steps["process gone"] = new_uts_namespace()
    if hold == "mount":
        release("/tmp/uts")
    elif hold == "fd":
        os.close(fd)
    steps["released"] = new_uts_namespace()
    return steps

print(json.dumps(run(experiment, sys.argv[1], namespaces="user,mnt", map_root=True)))
"""


@pytest.mark.parametrize("hold", ["mount", "fd", "nothing"])
@pytest.mark.parametrize("who", ["root", "rootless"])
def test_the_kernel_frees_a_namespace_only_when_its_last_holder_lets_go(hold, who, unprivileged):
    if who == "root":
        r = sh(sys.executable, "-c", KERNEL_COUNT, hold, cwd=ROOT)
    else:
        r = unprivileged.run([unprivileged.python, "-c", KERNEL_COUNT, hold])
    assert r.returncode == 0, r.stderr
    held = hold != "nothing"
    assert json.loads(r.stdout) == {"process running": "ENOSPC",
                                    "process gone": "ENOSPC" if held else "created",
                                    "released": "created"}


def test_persisted_network_namespace_is_one_that_ip_netns_lists():
    ours, theirs = "labkit-" + random_name(), "ip-" + random_name()

    def side_by_side_with_ip() -> dict:
        # /run/netns does not exist on the machine: a tmpfs on /run, in our own
        # mount namespace, gives ip a directory of its own.
        syscalls.mount("tmpfs", "/run", "tmpfs", 0)
        os.mkdir("/run/netns")
        # ip first: the first `ip netns add` bind-mounts /run/netns onto itself
        # (shared), which would copy a mount made earlier beneath it.
        sh("ip", "netns", "add", theirs).check_returncode()
        with spawn(signal.pause, "net") as child:
            ns = persist(child.pid, "net", f"/run/netns/{ours}")
        facts = {"ns": str(ns), "ip_made": str(Namespace.from_path(f"/run/netns/{theirs}"))}
        facts["listed"] = sorted(line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines())
        inside = sh("ip", "netns", "exec", ours, "readlink", "/proc/self/ns/net")
        facts["inside"] = inside.stdout.strip() or inside.stderr
        facts["persisted"] = persisted()
        release(f"/run/netns/{ours}")
        sh("ip", "netns", "delete", theirs).check_returncode()
        facts["listed_after"] = sh("ip", "netns", "list").stdout
        return facts

    facts = run(side_by_side_with_ip, namespaces="mnt,net")
    assert facts["listed"] == sorted([ours, theirs])
    assert facts["inside"] == facts["ns"]  # ip netns exec enters the namespace we persisted
    assert facts["persisted"] == {f"/run/netns/{ours}": facts["ns"],
                                  f"/run/netns/{theirs}": facts["ip_made"]}
    assert facts["listed_after"] == ""


def test_persist_refuses_a_file_that_exists(tmp_path):
    def persist_onto_existing() -> tuple[str, str]:
        syscalls.mount("tmpfs", str(tmp_path), "tmpfs", 0)
        Path(tmp_path, "uts").write_text("keep me")
        with spawn(signal.pause, "uts") as child:
            try:
                persist(child.pid, "uts", f"{tmp_path}/uts")
            except FileExistsError as e:
                return str(e), Path(tmp_path, "uts").read_text()
        return "persisted", ""

    message, content = run(persist_onto_existing, namespaces="mnt")
    assert "exists" in message and "ip netns add" in message
    assert content == "keep me"


def test_persist_of_a_missing_process_leaves_no_file(tmp_path):
    def persist_missing() -> tuple[str, bool]:
        syscalls.mount("tmpfs", str(tmp_path), "tmpfs", 0)
        child = spawn(signal.pause)
        child.kill()
        child.wait()
        try:
            persist(child.pid, "uts", f"{tmp_path}/uts")
        except OSError as e:
            return type(e).__name__, os.path.exists(f"{tmp_path}/uts")
        return "persisted", True

    error, file_left = run(persist_missing, namespaces="mnt")
    assert error == "NamespaceError" and not file_left


def test_release_of_a_path_without_a_mount_says_so(tmp_path):
    def release_plain_file() -> str:
        syscalls.mount("tmpfs", str(tmp_path), "tmpfs", 0)
        Path(tmp_path, "plain").touch()
        try:
            release(f"{tmp_path}/plain")
        except NamespaceError as e:
            return str(e)
        return "released"

    message = run(release_plain_file, namespaces="mnt")
    assert "Invalid argument" in message and "nothing is mounted there" in message


@pytest.mark.parametrize("hold, alive", [("mount", True), ("fd", True), ("nothing", False)])
def test_outlives_its_process_reports_what_happened(hold, alive):
    name = random_name()
    facts = outlives_its_process(hold, name)
    assert facts["alive"] is alive
    assert facts["hostname"] == (name if alive else None)
    assert facts["alive_after_release"] is False
    kinds = {"mount": "bind mount /tmp/uts", "fd": "open file /proc/"}
    if alive:
        assert [h for h in facts["holders"] if h.startswith(kinds[hold])], facts["holders"]


@pytest.mark.parametrize("hold", ["mount", "fd", "nothing"])
def test_outlives_its_process_rootless(hold, unprivileged):
    r = unprivileged.python_code(
        "import json\n"
        "from labkit.persist import outlives_its_process\n"
        f"print(json.dumps(outlives_its_process({hold!r}, 'rootless-kept')))\n")
    assert r.returncode == 0, r.stderr
    facts = json.loads(r.stdout)
    alive = hold != "nothing"
    assert (facts["alive"], facts["hostname"]) == (alive, "rootless-kept" if alive else None)
    assert facts["alive_after_release"] is False


def test_outlives_its_process_refuses_an_unknown_hold():
    with pytest.raises(ValueError, match="mount, fd, nothing"):
        outlives_its_process("glue")
