"""labkit.jail: chroot escapes, pivot_root holds; checked with findmnt, readelf, busybox ps."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from labkit import jail, mount
from labkit.spawn import run

TOP_DIRS = ["bin", "dev", "etc", "proc", "root", "sys", "tmp"]


@pytest.fixture
def rootfs(tmp_path) -> str:
    return jail.build_busybox_rootfs(str(tmp_path / "rootfs"))


@pytest.fixture
def marker(tmp_path) -> tuple[str, str]:
    """A file outside the jail, with contents nobody could guess."""
    secret = secrets.token_hex(16)
    path = tmp_path / "outside" / "secret"
    path.parent.mkdir()
    path.write_text(secret)
    return str(path), secret


def escape_and_read(path: str) -> tuple[bool, str | None]:
    moved = jail.escape_chroot()
    try:
        with open(path) as f:
            return moved, f.read()
    except FileNotFoundError:
        return moved, None


def findmnt(*args: str) -> list[dict]:
    r = subprocess.run(["findmnt", "-J", "-l", "-o", "TARGET,SOURCE,FSTYPE,FSROOT,MAJ:MIN", *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["filesystems"]


def host_root() -> tuple[str, str]:
    root = mount.mount_at("/")
    return root.major_minor, root.root


def test_busybox_rootfs_has_the_applets_and_a_working_shell(rootfs):
    assert os.readlink(f"{rootfs}/bin/sh") == "busybox"
    assert set(jail.APPLETS) <= set(os.listdir(f"{rootfs}/bin"))
    r = jail.run_in_jail(rootfs, ["sh", "-c", "echo $((6 * 7)); ls /"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["42", *TOP_DIRS]


def test_ldd_jail_holds_the_program_its_libraries_and_the_loader(tmp_path):
    root = str(tmp_path / "handmade")
    copied = jail.copy_program("findmnt", root)
    elf = subprocess.run(["readelf", "-l", "-d", "/usr/bin/findmnt"], capture_output=True, text=True).stdout
    loader = re.search(r"program interpreter: (\S+)\]", elf).group(1)
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", elf)
    assert loader in copied and "/usr/bin/findmnt" in copied
    assert set(needed) <= {os.path.basename(p) for p in copied}
    r = jail.run_in_jail(root, ["/usr/bin/findmnt", "-n", "-l", "-o", "TARGET"])
    assert (r.returncode, r.stdout) == (0, "/\n/proc\n"), r.stderr


def test_program_without_its_loader_cannot_start(tmp_path):
    root = tmp_path / "handmade"
    jail.copy_program("findmnt", str(root))
    (root / "lib64/ld-linux-x86-64.so.2").unlink()
    assert (root / "usr/bin/findmnt").exists()
    # execve(2) says ENOENT about the missing interpreter, not about the program.
    with pytest.raises(FileNotFoundError):
        jail.run_in_jail(str(root), ["/usr/bin/findmnt"])


def test_chroot_jail_is_escapable(rootfs, marker):
    path, secret = marker
    assert jail.call_in_jail(rootfs, escape_and_read, path, pivot=False) == (True, secret)


def test_chroot_jail_hides_the_file_until_the_escape(rootfs, marker):
    path, _ = marker
    assert jail.call_in_jail(rootfs, os.path.exists, path, pivot=False) is False


def test_pivot_root_jail_holds_against_the_same_escape(rootfs, marker):
    path, _ = marker
    assert jail.call_in_jail(rootfs, escape_and_read, path) == (False, None)


def read_through_root_of(pid: int, path: str) -> str | None:
    try:
        with open(f"/proc/{pid}/root{path}") as f:
            return f.read()
    except FileNotFoundError:
        return None


def test_proc_pid_root_leads_out_of_a_pivot_jail_without_a_pid_namespace(rootfs, marker):
    # Any process outside whose /proc entry the jail can see will do; we take ourselves
    # (the machine's PID 1 here refuses everyone its /proc/1/root).
    path, secret = marker
    outside = os.getpid()
    assert jail.call_in_jail(rootfs, read_through_root_of, outside, path, namespaces="mnt") == secret
    assert jail.call_in_jail(rootfs, read_through_root_of, outside, path) is None  # with "mnt,pid"


def _pivot_with_dot_then_escape(rootfs: str, path: str) -> tuple:
    jail.pivot_into_with_dot(rootfs)
    mounts = [(m.mount_point, m.major_minor, m.root) for m in mount.read_mountinfo()]
    return mounts, sorted(os.listdir("/")), escape_and_read(path)


def test_pivot_root_dot_dot_holds_too(rootfs, marker):
    path, _ = marker
    mounts, top, escape = run(_pivot_with_dot_then_escape, rootfs, path, namespaces="mnt,pid")
    assert escape == (False, None)
    assert [m[0] for m in mounts] == ["/", "/proc"]
    assert host_root() not in [(m[1], m[2]) for m in mounts]
    assert top == TOP_DIRS  # no directory left for the old root


def test_pivot_root_jail_has_no_mount_of_the_host_root(rootfs):
    jail.copy_program("findmnt", rootfs)
    inside = json.loads(jail.run_in_jail(rootfs, ["findmnt", "-J", "-l", "-o", "TARGET,FSROOT,MAJ:MIN"])
                        .stdout)["filesystems"]
    assert [row["target"] for row in inside] == ["/", "/proc"]
    assert inside[0]["fsroot"] == rootfs  # the bind mount of the rootfs directory, not "/"
    assert host_root() not in [(row["maj:min"], row["fsroot"]) for row in inside]

    listing = jail.run_in_jail(rootfs, ["ls", "-a", "/"]).stdout.split()
    assert sorted(listing) == sorted([".", "..", *TOP_DIRS, "lib", "lib64", "usr"])  # no .oldroot

    with jail.spawn_in_jail(rootfs, ["sleep", "1000"]) as child:  # read from outside, too
        outside = findmnt("-N", str(child.pid))
        assert [row["target"] for row in outside] == ["/", "/proc"]
        # Its root is our rootfs directory (readlink says "/": a path in a namespace we cannot see).
        jailed, ours = os.stat(f"/proc/{child.pid}/root/"), os.stat(rootfs)
        assert (jailed.st_dev, jailed.st_ino) == (ours.st_dev, ours.st_ino)


def test_mounts_made_inside_the_jail_do_not_reach_the_host(rootfs):
    before = findmnt()
    script = "mount -t tmpfs jailtmp /tmp && exec sleep 1000"
    with jail.spawn_in_jail(rootfs, ["sh", "-c", script]) as child:
        deadline = time.monotonic() + 20
        while not [r for r in findmnt("-N", str(child.pid)) if r["source"] == "jailtmp"]:
            assert child.poll() is None and time.monotonic() < deadline, "the jail never mounted /tmp"
            time.sleep(0.05)
        assert findmnt() == before
    assert findmnt() == before


def test_proc_inside_the_jail_is_fresh(rootfs):
    r = jail.run_in_jail(rootfs, ["sh", "-c", "ps -o pid,comm; echo; cat /proc/self/mountinfo"])
    assert r.returncode == 0, r.stderr
    ps, mountinfo = r.stdout.split("\n\n")
    pids = [int(line.split()[0]) for line in ps.splitlines()[1:]]
    assert 1 in pids and max(pids) < 20  # its own PID namespace: the host's thousands are not there
    proc_inside = [mount.parse_mountinfo_line(line) for line in mountinfo.splitlines()][-1]
    assert (proc_inside.mount_point, proc_inside.fstype) == ("/proc", "proc")
    assert proc_inside.major_minor != mount.mount_at("/proc").major_minor  # a new proc super block


def test_a_jailed_command_starts_with_default_signal_actions(rootfs):
    """Python ignores SIGPIPE and SIGXFSZ; execve(2) would pass that on unless undone."""
    r, w = os.pipe()
    with jail.spawn_in_jail(rootfs, ["grep", "SigIgn", "/proc/self/status"], stdout=w) as child:
        os.close(w)
        with os.fdopen(r) as f:
            assert f.read().split() == ["SigIgn:", "0000000000000000"]
        assert child.wait(timeout=30) == 0


def test_a_jail_that_cannot_be_built_raises_its_error_here(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "proc").write_text("a file, where proc should be mounted on a directory")
    with pytest.raises(FileExistsError):
        jail.spawn_in_jail(str(broken), ["true"])


def test_missing_command_exits_127_with_a_message(rootfs):
    r, w = os.pipe()
    with jail.spawn_in_jail(rootfs, ["no-such-command"], stderr=w) as child:
        os.close(w)
        assert child.wait(timeout=30) == 127
        with open(r) as f:
            assert "no-such-command" in f.read()


def test_missing_rootfs_is_a_clear_error(tmp_path):
    with pytest.raises(NotADirectoryError, match="no root file system"):
        jail.run_in_jail(str(tmp_path / "nothing"), ["sh"])


def test_jails_work_rootless(unprivileged, marker):
    path, secret = marker
    # The marker must be readable by the test user, and so must every directory on the way.
    shared = Path(tempfile.mkdtemp(prefix="nslab-jail-"))
    try:
        shared.chmod(0o755)
        public = shared / "secret"
        shutil.copy(path, public)
        public.chmod(0o644)
        code = (
            "import json, os, shutil, tempfile\n"
            "from labkit import jail, mount\n"
            "from labkit.spawn import run\n"
            "def escape_and_read(path):\n"
            "    moved = jail.escape_chroot()\n"
            "    return moved, open(path).read() if os.path.exists(path) else None\n"
            "def dot(root, path):\n"
            "    jail.pivot_into_with_dot(root)\n"
            "    return escape_and_read(path)\n"
            "d = tempfile.mkdtemp()\n"
            "root = jail.build_busybox_rootfs(d + '/rootfs')\n"
            f"path = {str(public)!r}\n"
            "out = {'chroot': jail.call_in_jail(root, escape_and_read, path, pivot=False),\n"
            "       'pivot': jail.call_in_jail(root, escape_and_read, path),\n"
            "       'dot': run(dot, root, path, namespaces='mnt,pid'),\n"
            "       'id': jail.run_in_jail(root, ['id', '-u']).stdout,\n"
            "       'mounts': jail.run_in_jail(root, ['cat', '/proc/self/mountinfo']).stdout}\n"
            "try:\n"
            "    jail.call_in_jail(root, os.getpid, namespaces='mnt')\n"
            "except OSError as e:\n"
            "    out['no_pid_ns'] = str(e)\n"
            "shutil.rmtree(d)\n"
            "print(json.dumps(out))\n")
        r = unprivileged.python_code(code)
    finally:
        shutil.rmtree(shared)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["chroot"] == [True, secret]
    assert out["pivot"] == out["dot"] == [False, None]
    assert out["id"] == "0\n"
    assert [mount.parse_mountinfo_line(line).mount_point for line in out["mounts"].splitlines()] == [
        "/", "/proc"]
    assert "PID namespace" in out["no_pid_ns"]


def test_a_command_is_executed_in_a_chroot_without_proc(rootfs):
    # Nothing may read /proc on the way to execve(2): a plain chroot has none.
    assert not os.listdir(os.path.join(rootfs, "proc"))
    with jail.spawn_in_jail(rootfs, ["/bin/sh", "-c", "test ! -e /proc/self"], pivot=False,
                            mount_proc=False) as child:
        assert child.wait(timeout=30) == 0
