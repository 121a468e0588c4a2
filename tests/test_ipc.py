"""IPC namespaces (labkit.ipc), checked with ipcs, ipcmk, nsenter, unshare and /proc."""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess

import pytest

from labkit import ipc
from labkit.join import run_in
from labkit.spawn import run, spawn

SECTIONS = {"Message Queues": "msg", "Shared Memory Segments": "shm", "Semaphore Arrays": "sem"}


@pytest.fixture
def key() -> int:
    """A key no one else on the machine is likely to use."""
    return random.randrange(0x10000000, 0x7FFFFFFF)


def ipcs(*prefix: str) -> dict[tuple[str, int], list[str]]:
    """Run ipcs(1) (after PREFIX, e.g. nsenter ...): {(kind, key): the object's columns}."""
    out = subprocess.run([*prefix, "ipcs", "-a"], capture_output=True, text=True, check=True).stdout
    objects, kind = {}, None
    for line in out.splitlines():
        if line.startswith("------"):
            kind = SECTIONS[line.strip("- ")]
        elif line.startswith("0x"):
            columns = line.split()
            objects[kind, int(columns[0], 16)] = columns
    return objects


def inside(pid: int) -> tuple[str, ...]:
    return ("nsenter", "-t", str(pid), "-i")


def test_sysv_objects_are_invisible_outside_their_namespace(key):
    with spawn(["sleep", "30"], "ipc") as a:
        made = run_in(a.pid, "ipc", ipc.create_objects, key)
        assert {o.kind for o in made} == {"shm", "msg", "sem"}
        assert {(k, key) for k in ("shm", "msg", "sem")} <= ipcs(*inside(a.pid)).keys()
        host = ipcs()
        assert not [k for k in host if k[1] == key]
        assert not [o for o in ipc.sysv_objects() if o.key == key]


def test_a_new_namespace_starts_empty(key):
    with spawn(["sleep", "30"], "ipc") as a, spawn(["sleep", "30"], "ipc") as b:
        run_in(a.pid, "ipc", ipc.create_objects, key)
        assert ipcs(*inside(b.pid)) == {}
        assert run_in(b.pid, "ipc", ipc.sysv_objects) == []


def test_same_key_names_different_segments_in_two_namespaces(key):
    with spawn(["sleep", "30"], "ipc") as a, spawn(["sleep", "30"], "ipc") as b:
        run_in(a.pid, "ipc", ipc.shmget, key, 4096)
        run_in(b.pid, "ipc", ipc.shmget, key, 8192)
        # ipcs -m columns: key shmid owner perms bytes nattch status
        assert ipcs(*inside(a.pid))["shm", key][4] == "4096"
        assert ipcs(*inside(b.pid))["shm", key][4] == "8192"


def test_removed_objects_are_gone_from_the_namespace(key):
    def create_remove_list() -> list:
        ipc.remove_objects(ipc.create_objects(key))
        return ipc.sysv_objects()

    assert run(create_remove_list, namespaces="ipc") == []


def test_shmget_of_a_missing_key_fails_with_enoent(key):
    with pytest.raises(OSError) as info:
        run(ipc.shmget, key, 4096, 0, namespaces="ipc")  # no IPC_CREAT
    assert info.value.errno == errno.ENOENT and "shmget" in str(info.value)
    assert "IPC_CREAT was not given" in info.value.hint and "IPC namespace" in info.value.hint


def test_shmget_exclusive_of_a_taken_key_says_it_exists(key):
    def make_twice() -> None:
        ipc.shmget(key, 4096)
        ipc.shmget(key, 4096, ipc.IPC_CREAT | ipc.IPC_EXCL | 0o600)

    with pytest.raises(OSError) as info:
        run(make_twice, namespaces="ipc")  # the namespace, and the segment, die with the child
    assert info.value.errno == errno.EEXIST and "IPC_EXCL" in info.value.hint


def test_posix_queue_is_visible_only_in_its_namespace(tmp_path):
    mnt = tmp_path / "mqueue"
    mnt.mkdir()
    name = f"labkit-test-{random.randrange(10**9)}"

    def mount_and_create() -> list[str]:
        ipc.mount_mqueue(str(mnt))
        ipc.create_queue("/" + name)
        return ipc.queues(str(mnt))

    with spawn(["sleep", "30"], "ipc,mnt") as a:
        assert name in run_in(a.pid, "ipc,mnt", mount_and_create)
        # Independent look, through the namespace's own mqueue mount.
        listing = subprocess.run(["nsenter", "-t", str(a.pid), "-m", "ls", str(mnt)],
                                 capture_output=True, text=True, check=True).stdout.split()
        assert listing == [name]
        status = subprocess.run(["nsenter", "-t", str(a.pid), "-m", "cat", str(mnt / name)],
                                capture_output=True, text=True, check=True).stdout
        assert status.startswith("QSIZE:0")
        # The host's IPC namespace, seen through a fresh mqueue mount of its own.
        host = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t mqueue none {mnt} && ls {mnt}"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert name not in host
    assert os.listdir(mnt) == []  # the mount never reached the host


def holders(inode: int) -> list[str]:
    """Everything that keeps the namespace with INODE alive: processes, open fds, bind mounts."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        links = [f"/proc/{pid}/ns/ipc"]
        try:
            links += [f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            pass
        for link in links:
            try:
                if os.readlink(link) == f"ipc:[{inode}]":
                    found.append(link)
            except OSError:
                pass
    with open("/proc/self/mountinfo") as f:
        found += [line for line in f if f"ipc:[{inode}]" in line]
    return found


def test_objects_live_as_long_as_something_holds_the_namespace(key):
    with spawn(["sleep", "30"], "ipc") as a:
        run_in(a.pid, "ipc", ipc.create_objects, key)
        fd = ipc.hold(a.pid)
    try:
        inode = os.fstat(fd).st_ino
        assert holders(inode) == [f"/proc/{os.getpid()}/fd/{fd}"]  # no process is left in it
        # Still there: nsenter joins it through our fd, and so does labkit.
        kept = ipcs("nsenter", f"--ipc=/proc/{os.getpid()}/fd/{fd}")
        assert {(k, key) for k in ("shm", "msg", "sem")} == kept.keys()
        assert {o.key for o in ipc.sysv_objects_in(fd)} == {key}
    finally:
        os.close(fd)
    # Nothing refers to it any more, so the kernel destroys it and its objects;
    # none of them was ever in the host's namespace.
    assert holders(inode) == []
    assert not [k for k in ipcs() if k[1] == key]


# Rootless: an IPC namespace owned by a user namespace of our own --------------------------

@pytest.mark.rootless
def test_rootless_ipcmk_makes_a_segment_the_host_never_sees(unprivileged):
    out = unprivileged.labkit("run", "-i", "--", "sh", "-c", "ipcmk -M 4096 >/dev/null && ipcs -m")
    assert out.returncode == 0, out.stderr
    assert [line.split()[4] for line in out.stdout.splitlines() if line.startswith("0x")] == ["4096"]


@pytest.mark.rootless
def test_rootless_sysv_objects_and_posix_queue(unprivileged):
    code = """if True:
        import json, os, tempfile
        from labkit import ipc
        from labkit.spawn import run
        mnt = tempfile.mkdtemp()
        def inside():
            made = ipc.create_objects(0x4242)
            ipc.mount_mqueue(mnt)
            ipc.create_queue("/rootless")
            return [str(o) for o in made], [str(o) for o in ipc.sysv_objects()], ipc.queues(mnt)
        made, listed, queues = run(inside, namespaces="ipc,mnt")
        left = os.listdir(mnt)
        os.rmdir(mnt)
        print(json.dumps([made, listed, queues, left]))
    """
    out = unprivileged.python_code(code)
    assert out.returncode == 0, out.stderr
    made, listed, queues, left = json.loads(out.stdout)
    assert made == listed and len(made) == 3
    assert queues == ["rootless"] and left == []


def test_rootless_sysv_objects_in_a_held_namespace(unprivileged):
    # Joining the IPC namespace needs CAP_SYS_ADMIN in its owner, a user
    # namespace of the normal user's own: sysv_objects_in joins that first.
    code = (
        "import os\n"
        "from labkit import ipc\n"
        "from labkit.join import run_in\n"
        "from labkit.spawn import spawn\n"
        "with spawn(['sleep', '30'], 'ipc') as a:\n"
        "    run_in(a.pid, 'user,ipc', ipc.create_objects, 0x6e736c31)\n"
        "    fd = ipc.hold(a.pid)\n"
        "print(sorted({hex(o.key) for o in ipc.sysv_objects_in(fd)}))\n"
        "os.close(fd)\n")
    out = unprivileged.python_code(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['0x6e736c31']"
