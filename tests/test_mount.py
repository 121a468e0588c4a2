"""labkit.mount against findmnt(8) and nsenter(1), inside and outside the namespace."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from labkit import mount
from labkit.errors import NamespaceError
from labkit.join import enter, run_in
from labkit.spawn import run, spawn

COLUMNS = "ID,PARENT,MAJ:MIN,FSROOT,TARGET,FSTYPE,PROPAGATION,OPT-FIELDS,VFS-OPTIONS,FS-OPTIONS"


def findmnt(*args: str, pid: int | None = None, inside: bool = False) -> list[dict]:
    """findmnt's flat JSON list; PID: of that process's namespace, read from outside
    (findmnt -N PID) or, with INSIDE, run in it (nsenter -t PID -m findmnt)."""
    argv = ["findmnt", "-J", "-l", "-o", COLUMNS, *args]
    if pid is not None:
        argv = ["nsenter", "-t", str(pid), "-m", *argv] if inside else argv[:1] + ["-N", str(pid)] + argv[1:]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode == 1 and not r.stdout:  # findmnt found nothing
        return []
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["filesystems"]


def nsenter(pid: int, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", "-t", str(pid), "-m", *argv],
                          capture_output=True, text=True, timeout=30)


def as_findmnt_row(m: mount.MountInfo) -> dict:
    return {"id": m.mount_id, "parent": m.parent_id, "maj:min": m.major_minor, "fsroot": m.root,
            "target": m.mount_point, "fstype": m.fstype, "propagation": m.propagation,
            "opt-fields": " ".join(m.optional) or None, "vfs-options": m.options,
            "fs-options": m.super_options}


def assert_same_table(ours: list[mount.MountInfo], theirs: list[dict]) -> None:
    assert {m.mount_id: as_findmnt_row(m) for m in ours} == {row["id"]: row for row in theirs}


@pytest.fixture
def holder():
    """A sleeping process in a new mount namespace, to build things in and look at."""
    with spawn(["sleep", "infinity"], "mnt") as child:
        yield child


def test_parsed_mountinfo_of_the_host_matches_findmnt():
    assert_same_table(mount.read_mountinfo(), findmnt())
    assert mount.mount_at("/").mount_point == "/"


def test_tmpfs_mount_in_new_namespace_is_invisible_outside(tmp_path, holder):
    target = tmp_path / "private"
    target.mkdir()
    run_in(holder.pid, "mnt", mount.mount_tmpfs, str(target), "labkit-test")

    # From outside: /proc/PID/mountinfo is the child's view, findmnt -N reads the same.
    inside = mount.mount_at(str(target), holder.pid)
    assert inside is not None and inside.fstype == "tmpfs" and inside.source == "labkit-test"
    for inside_too in (False, True):
        rows = findmnt("--mountpoint", str(target), pid=holder.pid, inside=inside_too)
        assert [r["fstype"] for r in rows] == ["tmpfs"]
    # /proc/self/mountinfo is ours: nothing there.
    assert mount.mount_at(str(target)) is None
    assert findmnt("--mountpoint", str(target)) == []
    assert str(target) not in Path("/proc/self/mountinfo").read_text()


def test_parsed_view_inside_matches_findmnt_run_inside(tmp_path, holder):
    lab = str(tmp_path)
    run_in(holder.pid, "mnt", mount.build_peer_demo, lab)
    ours = mount.read_mountinfo(holder.pid)
    assert_same_table(ours, findmnt(pid=holder.pid, inside=True))
    assert_same_table(ours, findmnt(pid=holder.pid))


def _build_every_type(lab: str) -> None:
    mount.mount_tmpfs(lab, "lab")
    mount.set_propagation(lab, "private")
    for name in ("shared", "slave", "shared_slave", "unbindable", "private"):
        os.mkdir(f"{lab}/{name}")
    mount.mount_tmpfs(f"{lab}/shared")
    mount.set_propagation(f"{lab}/shared", "shared")
    mount.bind_mount(f"{lab}/shared", f"{lab}/slave")  # a peer of shared ...
    mount.set_propagation(f"{lab}/slave", "slave")  # ... turned into its slave
    mount.bind_mount(f"{lab}/shared", f"{lab}/shared_slave")
    mount.set_propagation(f"{lab}/shared_slave", "slave")
    mount.set_propagation(f"{lab}/shared_slave", "shared")  # a slave that starts a group of its own
    mount.mount_tmpfs(f"{lab}/unbindable")
    mount.set_propagation(f"{lab}/unbindable", "unbindable")
    mount.mount_tmpfs(f"{lab}/private")


def test_propagation_types_match_findmnt_inside(tmp_path, holder):
    lab = str(tmp_path)
    run_in(holder.pid, "mnt", _build_every_type, lab)
    theirs = {r["target"]: r["propagation"]
              for r in findmnt("-R", "--mountpoint", lab, pid=holder.pid, inside=True)}
    expected = {"shared": "shared", "slave": "private,slave", "shared_slave": "shared,slave",
                "unbindable": "private,unbindable", "private": "private"}
    for name, kind in expected.items():
        assert mount.propagation_of(f"{lab}/{name}", holder.pid) == kind == theirs[f"{lab}/{name}"]
    shared = mount.mount_at(f"{lab}/shared", holder.pid)
    slave = mount.mount_at(f"{lab}/slave", holder.pid)
    both = mount.mount_at(f"{lab}/shared_slave", holder.pid)
    assert slave.master == both.master == shared.peer_group
    assert both.peer_group not in (None, shared.peer_group)


def test_unbindable_mount_cannot_be_bind_mounted(tmp_path, holder):
    lab = str(tmp_path)
    run_in(holder.pid, "mnt", _build_every_type, lab)
    with pytest.raises(NamespaceError) as info:
        run_in(holder.pid, "mnt", mount.bind_mount, f"{lab}/unbindable", f"{lab}/private")
    assert info.value.errno == errno.EINVAL


def test_bad_propagation_name_is_a_clear_error():
    with pytest.raises(ValueError, match="shared, private, slave, unbindable"):
        mount.set_propagation("/nonexistent", "public")


def _read_master_from_a_chroot(lab: str, ready_w: int) -> None:
    # lab/inside/origin (group A) -> lab/relay (group B, slave of A) -> lab/inside/leaf (slave of B).
    mount.mount_tmpfs(lab, "lab")
    mount.set_propagation(lab, "private")
    for d in ("inside", "inside/origin", "inside/leaf", "relay"):
        os.mkdir(f"{lab}/{d}")
    mount.mount_tmpfs(f"{lab}/inside/origin")
    mount.set_propagation(f"{lab}/inside/origin", "shared")
    mount.bind_mount(f"{lab}/inside/origin", f"{lab}/relay")
    mount.set_propagation(f"{lab}/relay", "slave")
    mount.set_propagation(f"{lab}/relay", "shared")
    mount.bind_mount(f"{lab}/relay", f"{lab}/inside/leaf")
    mount.set_propagation(f"{lab}/inside/leaf", "slave")
    os.chroot(f"{lab}/inside")  # relay (leaf's master) is now out of sight; origin is not
    os.write(ready_w, b"!")
    while True:
        signal.pause()  # no sleep(1) in there: wait as the Python we are


def test_propagate_from_names_the_nearest_visible_master(tmp_path):
    with spawn(["sleep", "infinity"], "mnt") as holder:
        r, w = os.pipe()
        with enter(holder.pid, "mnt", _read_master_from_a_chroot, args=(str(tmp_path), w)) as chrooted:
            os.close(w)
            assert os.read(r, 1) == b"!"
            os.close(r)
            # /proc/PID/mountinfo shows paths from PID's root, and only what is under it.
            seen = {m.mount_point: m for m in mount.read_mountinfo(chrooted.pid)}
            assert set(seen) == {"/origin", "/leaf"}  # the chroot's own directory is no mount
            leaf, origin = seen["/leaf"], seen["/origin"]
            assert leaf.master is not None and leaf.master != origin.peer_group
            assert leaf.propagate_from == origin.peer_group
            assert_same_table(list(seen.values()), findmnt(pid=chrooted.pid))


def test_proc5_example_line_is_parsed():
    line = r"36 35 98:0 /mnt1 /mnt\0402 rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
    m = mount.parse_mountinfo_line(line)
    assert (m.mount_id, m.parent_id, m.major_minor, m.root) == (36, 35, "98:0", "/mnt1")
    assert m.mount_point == "/mnt 2" and m.options == "rw,noatime"
    assert (m.master, m.peer_group, m.propagation) == (1, None, "private,slave")
    assert (m.fstype, m.source, m.super_options) == ("ext3", "/dev/root", "rw,errors=continue")


def test_mount_under_a_peer_appears_in_the_other_peer_not_in_the_private_copy(tmp_path, holder):
    lab = str(tmp_path)
    run_in(holder.pid, "mnt", mount.build_peer_demo, lab)
    rows = {r["target"]: r for r in findmnt("-R", "--mountpoint", lab, pid=holder.pid, inside=True)}
    for name in ("stage", "peer1", "peer2"):
        assert rows[f"{lab}/{name}/disk"]["fstype"] == "tmpfs"
        assert rows[f"{lab}/{name}"]["propagation"] == "shared"
    assert f"{lab}/copy/disk" not in rows and rows[f"{lab}/copy"]["propagation"] == "private"
    assert nsenter(holder.pid, "cat", f"{lab}/peer2/disk/hello").stdout == "written through peer1\n"
    assert nsenter(holder.pid, "cat", f"{lab}/copy/disk/hello").returncode != 0
    assert not any(m.mount_point.startswith(lab) for m in mount.read_mountinfo())


def test_peer_demo_reports_the_same():
    report = mount.peer_demo()
    groups = {report[n]["peer_group"] for n in ("stage", "peer1", "peer2")}
    assert len(groups) == 1 and None not in groups
    assert [n for n in report if report[n]["disk_mounted"]] == ["stage", "peer1", "peer2"]
    assert report["copy"] == {"propagation": "private", "peer_group": None,
                              "disk_mounted": False, "hello": None}


def test_disk_mounted_once_is_seen_in_every_namespace_but_a_slave_does_not_send():
    with mount.MediaLab() as media:
        pids = {name: media.pid(name) for name in media.NAMES}
        groups = {name: mount.mount_at(media.media, pid) for name, pid in pids.items()}
        assert len({pid_ns(pid) for pid in pids.values()} | {pid_ns("self")}) == 4
        assert groups["first"].peer_group == groups["peer"].peer_group == groups["slave"].master
        assert [findmnt("--mountpoint", media.media, pid=pids[n])[0]["propagation"]
                for n in media.NAMES] == ["shared", "shared", "private,slave"]

        media.insert("first", "cdrom")
        for pid in pids.values():
            rows = findmnt("--mountpoint", f"{media.media}/cdrom", pid=pid)
            assert [r["fstype"] for r in rows] == ["tmpfs"]
        media.insert("slave", "usb")
        assert findmnt("--mountpoint", f"{media.media}/usb", pid=pids["slave"]) != []
        assert findmnt("--mountpoint", f"{media.media}/usb", pid=pids["first"]) == []
        assert findmnt("--mountpoint", f"{media.media}/usb", pid=pids["peer"]) == []
        media.insert("peer", "dvd")
        assert {n: media.seen_by(n) for n in media.NAMES} == {
            "first": ["cdrom", "dvd"], "peer": ["cdrom", "dvd"], "slave": ["cdrom", "dvd", "usb"]}
        assert nsenter(pids["slave"], "findmnt", "-n", "-o", "SOURCE", f"{media.media}/dvd").stdout == "dvd\n"
        assert mount.mounts_under(media.media) == []  # and none on the host
    assert not os.path.exists(media.lab)


def pid_ns(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/mnt")


def test_optical_disk_demo_story():
    steps = mount.optical_disk_demo()
    assert steps == {
        "first mounts cdrom": {"first": ["cdrom"], "peer": ["cdrom"], "slave": ["cdrom"]},
        "peer mounts dvd": {"first": ["cdrom", "dvd"], "peer": ["cdrom", "dvd"], "slave": ["cdrom", "dvd"]},
        "slave mounts usb": {"first": ["cdrom", "dvd"], "peer": ["cdrom", "dvd"],
                             "slave": ["cdrom", "dvd", "usb"]},
        "peer ejects cdrom": {"first": ["dvd"], "peer": ["dvd"], "slave": ["dvd", "usb"]},
    }


def _bind_both_ways(lab: str) -> None:
    mount.mount_tmpfs(lab, "lab")
    mount.set_propagation(lab, "private")
    for d in ("src", "plain", "recursive"):
        os.mkdir(f"{lab}/{d}")
    mount.mount_tmpfs(f"{lab}/src", "src")
    os.mkdir(f"{lab}/src/sub")
    mount.mount_tmpfs(f"{lab}/src/sub", "sub")
    Path(f"{lab}/src/sub/file").write_text("on sub\n")
    mount.bind_mount(f"{lab}/src", f"{lab}/plain")
    mount.bind_mount(f"{lab}/src", f"{lab}/recursive", recursive=True)


def test_bind_mount_carries_submounts_only_when_recursive(tmp_path, holder):
    lab = str(tmp_path)
    run_in(holder.pid, "mnt", _bind_both_ways, lab)
    targets = {r["target"] for r in findmnt("-R", "--mountpoint", lab, pid=holder.pid)}
    assert {f"{lab}/src/sub", f"{lab}/recursive/sub"} <= targets
    assert f"{lab}/plain" in targets and f"{lab}/plain/sub" not in targets
    assert nsenter(holder.pid, "cat", f"{lab}/recursive/sub/file").stdout == "on sub\n"
    assert nsenter(holder.pid, "ls", "-A", f"{lab}/plain/sub").stdout == ""  # the bare directory


def _readonly_bind(lab: str) -> None:
    mount.mount_tmpfs(lab, "lab")
    mount.set_propagation(lab, "private")
    os.mkdir(f"{lab}/rw")
    os.mkdir(f"{lab}/ro")
    mount.bind_mount(f"{lab}/rw", f"{lab}/ro")
    mount.remount_readonly(f"{lab}/ro")


def test_remount_readonly_changes_only_that_mount(tmp_path, holder):
    lab = str(tmp_path)
    run_in(holder.pid, "mnt", _readonly_bind, lab)
    rows = {r["target"]: r for r in findmnt("-R", "--mountpoint", lab, pid=holder.pid, inside=True)}
    assert rows[f"{lab}/ro"]["vfs-options"].split(",")[0] == "ro"
    assert rows[lab]["vfs-options"].split(",")[0] == "rw"
    assert rows[f"{lab}/ro"]["fs-options"].split(",")[0] == "rw"  # the super block stays writable
    refused = nsenter(holder.pid, "touch", f"{lab}/ro/file")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert nsenter(holder.pid, "touch", f"{lab}/rw/file").returncode == 0
    assert nsenter(holder.pid, "ls", f"{lab}/ro").stdout == "file\n"  # same directory, other door


def test_run_mounts_in_a_new_namespace_not_the_callers(tmp_path):
    # run() gives the function a new namespace: the host never sees the tmpfs.
    target = tmp_path / "t"
    target.mkdir()

    def mount_and_look() -> bool:
        mount.mount_tmpfs(str(target))
        return mount.mount_at(str(target)) is not None

    assert run(mount_and_look, namespaces="mnt") is True
    assert mount.mount_at(str(target)) is None


def test_demos_and_private_tmpfs_rootless(unprivileged):
    code = (
        "import json, os, tempfile\n"
        "from labkit import mount\n"
        "from labkit.spawn import spawn\n"
        "from labkit.join import run_in\n"
        "d = tempfile.mkdtemp()\n"
        "with spawn(['sleep', 'infinity'], 'mnt') as c:\n"
        "    run_in(c.pid, 'all', mount.mount_tmpfs, d, 'rootless')\n"
        "    inside = mount.mount_at(d, c.pid).source\n"
        "    outside = mount.mount_at(d)\n"
        "os.rmdir(d)\n"
        "print(json.dumps({'inside': inside, 'outside': outside,\n"
        "                  'peers': mount.peer_demo(), 'disk': mount.optical_disk_demo()}))\n")
    r = unprivileged.python_code(code)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["inside"] == "rootless" and out["outside"] is None
    assert [n for n, v in out["peers"].items() if v["disk_mounted"]] == ["stage", "peer1", "peer2"]
    assert out["disk"]["slave mounts usb"] == {"first": ["cdrom", "dvd"], "peer": ["cdrom", "dvd"],
                                              "slave": ["cdrom", "dvd", "usb"]}
