"""Mount namespaces: a mount table of one's own, and how mounts propagate.

Read beside mount_namespaces(7).  The mount namespace came first of all
namespaces, with Linux 2.4.19 (so its flag is just CLONE_NEWNS, "new
namespace"); shared subtrees, the propagation described below, came with
Linux 2.6.15.

A new mount namespace starts with a *copy* of its parent's mount table.
After that, mount(2) and umount(2) in one namespace do not change the
other, unless the mount involved belongs to a **peer group**.  Each mount
has a propagation type, set with a mount(2) call that passes only the flag
(``mount --make-shared /mnt`` in the shell):

    MS_SHARED      events (mounts, unmounts below it) go to and come from its peers
    MS_PRIVATE     no events in or out; unshare(1) and labkit.spawn make / private
    MS_SLAVE       events come in from its master peer group, none go out
    MS_UNBINDABLE  private, and it cannot be the source of a bind mount

Peers arise in two ways: a bind mount of a shared mount joins its peer
group, and so does the copy of a shared mount in a new mount namespace.
The kernel shows it all in the optional fields of ``/proc/PID/mountinfo``,
which proc(5) documents field by field::

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2)(3)  (4)   (5)   (6)        (7)      (8)(9) (10)      (11)

    shared:N          (7) the mount is in peer group N
    master:N          (7) it is a slave of peer group N
    propagate_from:N  (7) a slave that receives from group N (the nearest group under our root)
    unbindable        (7) it is unbindable

``/proc/PID/mountinfo`` lists the mounts of *PID's* namespace, as seen from
PID's root, so a parent reads a child's mount table from outside, and
findmnt(8) does the same with ``findmnt -N PID``.

Every function that changes mounts must run in a child with a mount
namespace of its own (labkit.spawn.run, labkit.join.run_in), never in the
caller: the caller's mounts are the machine's.

See mount_namespaces(7), mount(2), umount(2), proc(5), mount(8), findmnt(8),
and the kernel's Documentation/filesystems/sharedsubtree.rst.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass

from . import syscalls
from .join import enter, run_in
from .spawn import Child, run, spawn

# Reading the mount table: /proc/PID/mountinfo, proc(5) --------------------


@dataclass(frozen=True)
class MountInfo:
    """One line of /proc/PID/mountinfo, field by field."""

    mount_id: int  # (1) unique id, reused after unmount
    parent_id: int  # (2) the mount this one sits on (itself for the namespace's root)
    major_minor: str  # (3) st_dev of files on it, "8:1"
    root: str  # (4) which directory of the file system is seen here ("/" unless a bind mount)
    mount_point: str  # (5) where, relative to the reading process's root
    options: str  # (6) per-mount options: ro/rw, nosuid, relatime, ...
    optional: tuple[str, ...]  # (7) shared:N, master:N, propagate_from:N, unbindable
    fstype: str  # (9)
    source: str  # (10) what was given to mount(2): a device, or any name for tmpfs
    super_options: str  # (11) options of the super block, shared by every mount of it

    def _tag(self, name: str) -> int | None:
        for field in self.optional:
            if field.startswith(name + ":"):
                return int(field.split(":")[1])
        return None

    @property
    def peer_group(self) -> int | None:
        """N of shared:N, or None if the mount is not shared."""
        return self._tag("shared")

    @property
    def master(self) -> int | None:
        """N of master:N: the peer group this slave receives from."""
        return self._tag("master")

    @property
    def propagate_from(self) -> int | None:
        """N of propagate_from:N, shown when the master group is not under our root."""
        return self._tag("propagate_from")

    @property
    def unbindable(self) -> bool:
        return "unbindable" in self.optional

    @property
    def propagation(self) -> str:
        """The type in findmnt's words, which answer two separate questions.

        Does the mount send events to peers ("shared") or not ("private")?
        Does it receive from a master (",slave")?  Hence "private,slave"
        for a plain slave and "shared,slave" for a slave with peers of its
        own; "private,unbindable" for an unbindable mount.
        """
        words = ["shared" if self.peer_group is not None else "private"]
        if self.master is not None:
            words.append("slave")
        if self.unbindable:
            words.append("unbindable")
        return ",".join(words)


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash as octal: \040 \011 \012 \134.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo_line(line: str) -> MountInfo:
    """Split one mountinfo line; the optional fields end at the lone "-"."""
    fields = line.split()
    dash = fields.index("-", 6)
    return MountInfo(
        mount_id=int(fields[0]), parent_id=int(fields[1]), major_minor=fields[2],
        root=_unescape(fields[3]), mount_point=_unescape(fields[4]), options=fields[5],
        optional=tuple(fields[6:dash]), fstype=fields[dash + 1],
        source=_unescape(fields[dash + 2]),
        super_options=fields[dash + 3] if len(fields) > dash + 3 else "")


def read_mountinfo(pid: int | str = "self") -> list[MountInfo]:
    """The mount table of PID's mount namespace, in the kernel's order (parents first)."""
    with open(f"/proc/{pid}/mountinfo", errors="surrogateescape") as f:
        return [parse_mountinfo_line(line) for line in f if line.strip()]


def mount_at(target: str, pid: int | str = "self") -> MountInfo | None:
    """The mount at TARGET as process PID sees it: the topmost one if several are stacked."""
    target = os.path.normpath(target)
    found = [m for m in read_mountinfo(pid) if m.mount_point == target]
    return found[-1] if found else None


def mounts_under(directory: str, pid: int | str = "self") -> list[str]:
    """Mount points strictly below DIRECTORY in PID's mount table, relative to it."""
    prefix = os.path.normpath(directory) + "/"
    return sorted(m.mount_point[len(prefix):] for m in read_mountinfo(pid)
                  if m.mount_point.startswith(prefix))


# Changing mounts: in a child with its own mount namespace only -------------

def mount_tmpfs(target: str, name: str = "tmpfs", size: str = "8m") -> None:
    """mount -t tmpfs NAME TARGET: a small file system in memory, gone when unmounted.

    NAME is the source shown in mountinfo and findmnt; tmpfs ignores it.
    """
    syscalls.mount(name, target, "tmpfs", 0, f"size={size}")


def bind_mount(source: str, target: str, recursive: bool = False) -> None:
    """mount --bind SOURCE TARGET (--rbind with RECURSIVE): SOURCE is also seen at TARGET.

    A bind mount shows a directory tree, not a device.  Without MS_REC only
    SOURCE's own mount is carried over: at TARGET, the mounts that sit below
    SOURCE are missing, and the directories they sit on show through.
    """
    flags = syscalls.MS_BIND | (syscalls.MS_REC if recursive else 0)
    syscalls.mount(source, target, None, flags)


# Per-mount flags that a user namespace may not drop once a mount has them.
LOCKED_FLAGS = {"nosuid": syscalls.MS_NOSUID, "nodev": syscalls.MS_NODEV, "noexec": syscalls.MS_NOEXEC}


def remount_readonly(target: str) -> None:
    """Make the mount at TARGET read-only, and only that mount.

    MS_REMOUNT|MS_BIND changes the per-mount flags (field 6 of mountinfo).
    MS_REMOUNT alone would change the super block (field 11), and so every
    mount of that file system, in every namespace.  It is also why a
    read-only bind mount takes two calls: the first mount(MS_BIND) ignores
    MS_RDONLY.  The flags the mount already has are passed again, because
    in a user namespace the kernel refuses (EPERM) to drop them.
    """
    current = mount_at(target)
    options = current.options.split(",") if current else []
    keep = sum(flag for name, flag in LOCKED_FLAGS.items() if name in options)
    syscalls.mount("none", target, None,
                   syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY | keep)


def unmount(target: str, lazy: bool = False) -> None:
    """umount2(2): detach the mount at TARGET; LAZY (MNT_DETACH) even while it is in use."""
    syscalls.umount(target, syscalls.MNT_DETACH if lazy else 0)


# Propagation types: mount(2) with one MS_* flag and nothing else -----------

def set_propagation(target: str, kind: str, recursive: bool = False) -> None:
    """mount --make-KIND TARGET (--make-rKIND with RECURSIVE: every mount below too).

    The kernel takes source, file system type and data as ignored, and the
    flag as the whole request.  Making a mount a slave needs it to be in a
    peer group first; otherwise it simply becomes private.
    """
    if kind not in syscalls.PROPAGATION:
        raise ValueError(f"unknown propagation {kind!r}: one of {', '.join(syscalls.PROPAGATION)}")
    flags = syscalls.PROPAGATION[kind] | (syscalls.MS_REC if recursive else 0)
    syscalls.mount("none", target, None, flags)


def propagation_of(target: str, pid: int | str = "self") -> str:
    """The propagation type of the mount at TARGET in PID's namespace, as findmnt writes it."""
    found = mount_at(target, pid)
    if found is None:
        raise FileNotFoundError(f"nothing is mounted at {target} (in /proc/{pid}/mountinfo)")
    return found.propagation


# Demo 1: peers and a private copy, in one mount namespace ------------------

def build_peer_demo(lab: str) -> None:
    """Build this under directory LAB, in the caller's own new mount namespace::

        LAB               tmpfs, private: the bench; nothing on it leaves the namespace
        LAB/stage         tmpfs, made shared: it starts peer group N
        LAB/peer1, peer2  bind mounts of stage: they join group N
        LAB/copy          bind mount of stage, then made private: it leaves the group

    Then mount a tmpfs ("disk") at LAB/peer1/disk and write a file on it.
    The mount is an event in group N: the kernel repeats it at stage/disk
    and peer2/disk, but not at copy/disk, which still shows the empty
    directory of the stage file system.
    """
    mount_tmpfs(lab, "lab")
    set_propagation(lab, "private")
    for name in ("stage", "peer1", "peer2", "copy"):
        os.mkdir(f"{lab}/{name}")
    mount_tmpfs(f"{lab}/stage", "stage")
    set_propagation(f"{lab}/stage", "shared")
    os.mkdir(f"{lab}/stage/disk")  # on the stage file system: every bind of it shows this directory
    bind_mount(f"{lab}/stage", f"{lab}/peer1")
    bind_mount(f"{lab}/stage", f"{lab}/peer2")
    bind_mount(f"{lab}/stage", f"{lab}/copy")
    set_propagation(f"{lab}/copy", "private")
    mount_tmpfs(f"{lab}/peer1/disk", "disk")
    with open(f"{lab}/peer1/disk/hello", "w") as f:
        f.write("written through peer1\n")


def peer_demo() -> dict[str, dict[str, object]]:
    """Run build_peer_demo in a new mount namespace and report each bind.

    For stage, peer1, peer2 and copy: its propagation type and peer group,
    whether the disk is mounted below it, and what its disk/hello holds.
    """
    lab = tempfile.mkdtemp(prefix="labkit-peers-")
    try:
        return run(_peer_demo_report, lab, namespaces="mnt")
    finally:
        os.rmdir(lab)  # the mounts on it died with the child's namespace


def _peer_demo_report(lab: str) -> dict[str, dict[str, object]]:
    build_peer_demo(lab)
    report = {}
    for name in ("stage", "peer1", "peer2", "copy"):
        where = f"{lab}/{name}"
        info = mount_at(where)
        hello = f"{where}/disk/hello"
        report[name] = {
            "propagation": info.propagation, "peer_group": info.peer_group,
            "disk_mounted": mount_at(f"{where}/disk") is not None,
            "hello": open(hello).read() if os.path.exists(hello) else None,
        }
    return report


# Demo 2: one disk, three mount namespaces ----------------------------------

class MediaLab:
    """Three mount namespaces that share a MEDIA directory, as in mount_namespaces(7).

    The man page's example is a removable disk: mounted once under /media,
    it should be seen in every namespace.  Here::

        first   the original namespace: MEDIA is a tmpfs made shared (group N)
        peer    a new namespace copied from first: its copy of MEDIA is in group N
        slave   another copy, whose MEDIA is then made a slave of group N

    A mount under MEDIA in first or peer reaches all three; a mount in slave
    stays in slave.  Each namespace is held by a sleeping process; changes are
    made by joining it (setns, like ``nsenter -t PID -m``), and what each one
    sees is read from outside, in /proc/PID/mountinfo.

        with MediaLab() as media:
            media.insert("first", "cdrom")
            media.seen_by("slave")      # ['cdrom']
    """

    NAMES = ("first", "peer", "slave")

    def __init__(self) -> None:
        self.lab = tempfile.mkdtemp(prefix="labkit-media-")
        self.media = f"{self.lab}/media"
        self.holders: dict[str, Child] = {}

    def __enter__(self) -> MediaLab:
        try:
            self.holders["first"] = spawn(["sleep", "infinity"], "mnt")
            run_in(self.pid("first"), "all", _share_media, self.lab)
            self.holders["peer"] = self._copy_of("first")
            self.holders["slave"] = self._copy_of("first")
            run_in(self.pid("slave"), "all", set_propagation, self.media, "slave")
        except BaseException:
            self.close()
            raise
        return self

    def _copy_of(self, name: str) -> Child:
        """A process in a new mount namespace made from NAME's: unshare(CLONE_NEWNS) after setns.

        The copy of a shared mount joins its peer group, as long as the new
        namespace has the same owner (a less privileged user namespace would
        get slaves instead: mount_namespaces(7), "Restrictions").
        """
        return enter(self.pid(name), "all", ["sleep", "infinity"],
                     setup=lambda: syscalls.unshare("mnt"))

    def pid(self, name: str) -> int:
        return self.holders[name].pid

    def insert(self, name: str, disk: str) -> None:
        """In namespace NAME, mount a tmpfs called DISK at MEDIA/DISK."""
        run_in(self.pid(name), "all", _insert_disk, self.media, disk)

    def eject(self, name: str, disk: str) -> None:
        """In namespace NAME, unmount MEDIA/DISK (an unmount propagates like a mount)."""
        run_in(self.pid(name), "all", unmount, f"{self.media}/{disk}")

    def seen_by(self, name: str) -> list[str]:
        """The disks mounted under MEDIA in namespace NAME, read from outside."""
        return mounts_under(self.media, self.pid(name))

    def propagation(self, name: str) -> str:
        return propagation_of(self.media, self.pid(name))

    def close(self) -> None:
        for child in self.holders.values():
            child.kill()
            child.wait()
        self.holders.clear()
        os.rmdir(self.lab)  # its mounts died with the namespaces

    def __exit__(self, *exc) -> None:
        self.close()


def _share_media(lab: str) -> None:
    mount_tmpfs(lab, "lab")
    set_propagation(lab, "private")  # the bench stays here; only MEDIA is shared
    os.mkdir(f"{lab}/media")
    mount_tmpfs(f"{lab}/media", "media")
    set_propagation(f"{lab}/media", "shared")


def _insert_disk(media: str, disk: str) -> None:
    os.makedirs(f"{media}/{disk}", exist_ok=True)  # on MEDIA's tmpfs, so every view has the directory
    mount_tmpfs(f"{media}/{disk}", disk)


def optical_disk_demo() -> dict[str, dict[str, list[str]]]:
    """The MediaLab story; for each step, what first, peer and slave see under MEDIA."""
    steps = {}
    with MediaLab() as media:
        for who, disk in (("first", "cdrom"), ("peer", "dvd"), ("slave", "usb")):
            media.insert(who, disk)
            steps[f"{who} mounts {disk}"] = {name: media.seen_by(name) for name in MediaLab.NAMES}
        media.eject("peer", "cdrom")
        steps["peer ejects cdrom"] = {name: media.seen_by(name) for name in MediaLab.NAMES}
    return steps
