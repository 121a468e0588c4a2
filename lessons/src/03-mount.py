# Lesson 03: mount namespaces.  Source of lessons/03-mount.ipynb
# (build it with `sudo .venv/bin/python lessons/build.py 03-mount`).
# rootless: yes

# %% [markdown]
# # 03 · Mount namespaces: a mount table of one's own
#
# **Goal.** A mount namespace (Linux 2.4.19, the first namespace of all,
# mount_namespaces(7)) holds a *mount table*: which file system is mounted
# where. A new one starts as a copy of the mount table of the process that
# created it (with unshare(2) or clone(2)); after that, a mount made in one is
# not seen in the other, unless the mount belongs to a *peer group*. Mount
# namespaces have no parent: unlike PID and user namespaces (lesson 01), they
# form no tree, and a copy owes nothing to the namespace it was copied from.
# By the end of this lesson you can
#
# * mount a file system that no other process on the machine sees;
# * read any process's mount table in `/proc/PID/mountinfo`, field by field;
# * tell the four propagation types apart (shared, private, slave,
#   unbindable) and find the peer groups in mountinfo;
# * explain how one disk mounted once can appear in several namespaces;
# * recognise the bite: a mount made "in a namespace of its own" that lands
#   on the host, and say which step prevents it;
# * read `propagate_from` in mountinfo, and stop a recursive bind mount from
#   multiplying with an unbindable mount;
# * explain why a user namespace cannot unmount what a more privileged
#   namespace mounted (locked mounts).
#
# *Root or not:* this lesson runs as root and as a normal user, with the same
# output. As a normal user the shells start in a user namespace in which you
# are root (lesson 01, section 6), and labkit adds one by itself. Every mount
# below happens in a new mount namespace: the machine's mount table never
# changes.
#
# The functions of this lesson are in `labkit/mount.py`: read it beside
# mount_namespaces(7), proc(5) (the mountinfo fields) and the kernel's
# `Documentation/filesystems/sharedsubtree.rst`.

# %%
import errno
import os
import tempfile

import lab  # lessons/lab.py: shells to type into, pictures of namespaces
from labkit import mount, syscalls, user
from labkit.namespace import Namespace
from labkit.spawn import run

me = os.getpid()  # this notebook's kernel
T = tempfile.mkdtemp()  # an empty directory of our own to mount things on
print("the bench:", T)

# %% [markdown]
# ## 1. A tmpfs that nobody else sees
#
# `unshare --mount sh` calls `unshare(CLONE_NEWNS)` and runs a new shell. The
# shell's mount namespace is a copy of ours; we mount a small tmpfs (a file
# system in memory) on the bench there and write a file on it.

# %%
sh = lab.Shell("sh")
sh("unshare --mount sh")
sh(f"mount -t tmpfs -o size=1m bench {T}")
sh(f"echo 'written on the tmpfs' > {T}/note; cat {T}/note")
sh(f"findmnt --output TARGET,SOURCE,FSTYPE {T}")

# %% [markdown]
# From this notebook's kernel, in the old namespace, the bench is still the
# empty directory of `/tmp`: no mount, no file.

# %%
print("mounted at the bench, in our namespace:", mount.mount_at(T))
print("files on the bench, as we see it:", os.listdir(T))
!findmnt {T} || echo "findmnt: nothing mounted at {T} here"

# %% [markdown]
# The links say why: two mount namespaces.

# %%
sh("readlink /proc/$$/ns/mnt")
print(os.readlink(f"/proc/{me}/ns/mnt"), " <- this kernel")
print("same mount namespace:", Namespace.of(sh.current_pid(), "mnt") == Namespace.of(me, "mnt"))

# %% [markdown]
# The shell's namespace is a copy of ours, not a child of it: asked for the
# parent of a mount namespace (NS_GET_PARENT, ioctl_ns(2)), the kernel answers
# `EINVAL`, "this kind of namespace has no parent", as it does for UTS,
# IPC, network and cgroup namespaces:

# %%
try:
    Namespace.of(sh.current_pid(), "mnt").parent()
except OSError as e:
    print(f"NS_GET_PARENT on a mount namespace: {errno.errorcode[e.errno]}")

# %% [markdown]
# ## 2. /proc/PID/mountinfo: each process shows its namespace's table
#
# `/proc/PID/mountinfo` lists the mounts of *PID's* mount namespace, one line
# each. So we can read the shell's table from outside, although we cannot
# see its mounts. proc(5) names the fields; labkit's `MountInfo` keeps them:
#
# ```
# 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
# (1)(2)(3)  (4)   (5)   (6)        (7)      (8)(9) (10)      (11)
# ```
#
# (1) and (2) are the ids of the mount and of the one it sits on, (3) the
# device number; they change from boot to boot, so we print the others.

# %%
info = mount.mount_at(T, sh.current_pid())  # reads /proc/PID/mountinfo of the shell
for field in ("root", "mount_point", "options", "optional", "fstype", "source"):
    print(f"{field:12} {getattr(info, field)!r}")

# %% [markdown]
# The two tables are copies that went their own ways. Compared mount point by
# mount point, they differ in exactly one line:

# %%
theirs = {m.mount_point for m in mount.read_mountinfo(sh.current_pid())}
ours = {m.mount_point for m in mount.read_mountinfo(me)}
print("only in the shell's namespace:", sorted(theirs - ours))
print("only in ours:", sorted(ours - theirs))

# %% [markdown]
# findmnt(8) reads the same file with `-N PID` (`--task`):

# %%
!findmnt -N {sh.current_pid()} --output TARGET,SOURCE,FSTYPE {T}

# %% [markdown]
# ## 3. Why the copy does not leak back: unshare made it private
#
# Every mount has a *propagation type*. A **shared** mount passes mount and
# unmount events to its peers and takes theirs; a **private** one does
# neither. systemd(1) remounts every mount shared at boot (mount_namespaces(7),
# NOTES), so on most machines the copy in a new namespace would be a peer of
# the original. unshare(1) therefore makes every mount of the new namespace
# private before it runs the command (since util-linux 2.27): strace shows the
# call.

# %%
sh("strace -e trace=mount unshare --mount true")

# %% [markdown]
# `MS_REC|MS_PRIVATE` on `/`: the whole tree, recursively. `--propagation
# unchanged` skips it (section 6 shows what happens then); labkit's `spawn`
# does the same as unshare by default (`propagation="private"`). In the
# shell's namespace every mount is now private: the propagation column of
# its whole table holds one value.

# %%
sh("findmnt --list --noheadings --output PROPAGATION | sort | uniq")

# %% [markdown]
# ## 4. Shared, private, slave: peer groups in one namespace
#
# Propagation is easiest to watch inside one namespace, with bind mounts. A
# bind mount shows a directory somewhere else (`mount --bind A B`); **a bind
# mount of a shared mount joins its peer group**. On the bench we set up a
# `stage` (a tmpfs, made shared) and three binds of it: `peer` stays a peer,
# `copy` is made private, `slave` is made a slave (it receives events from
# the group, but sends none).

# %%
sh(f"cd {T} && mkdir stage peer copy slave")
sh("mount -t tmpfs stage stage && mount --make-shared stage && mkdir stage/disk stage/usb")
sh("mount --bind stage peer")
sh("mount --bind stage copy && mount --make-private copy")
sh("mount --bind stage slave && mount --make-slave slave")
sh("findmnt --list --noheadings --output TARGET,PROPAGATION --submounts --mountpoint $PWD | sort")

# %% [markdown]
# The kernel keeps the groups in field (7) of mountinfo: `shared:N` is
# membership of peer group N, `master:N` a slave of group N. The numbers are
# the kernel's own (they differ from run to run), so the verdicts are printed too.

# %%
def optional_fields():
    """Field (7) of each mount below the bench, in the shell's namespace."""
    table = {}
    for m in sorted(mount.read_mountinfo(sh.current_pid()), key=lambda m: m.mount_point):
        if m.mount_point.startswith(T + "/"):
            name = m.mount_point[len(T) + 1:]
            table[name] = m
            print(f"{name:12} {' '.join(m.optional) or '(nothing)':18} {m.propagation}")
    return table

groups = optional_fields()
print("peer is in stage's group:", groups["peer"].peer_group == groups["stage"].peer_group)
print("slave's master is stage's group:", groups["slave"].master == groups["stage"].peer_group)

# %% [markdown]
# Now a disk is mounted through `peer`. It is an event in the peer group: the
# kernel repeats the mount at `stage/disk` and, one way, at `slave/disk`;
# `copy` left the group and sees only the empty directory.

# %%
sh("mount -t tmpfs disk peer/disk && echo 'on the disk' > peer/disk/hello")
sh("ls stage/disk peer/disk copy/disk slave/disk")

# %% [markdown]
# A mount through the slave goes nowhere else: a slave only receives.

# %%
sh("mount -t tmpfs usb slave/usb")
for name in ("stage", "peer", "copy", "slave"):
    print(f"mounts below {name:5}:", mount.mounts_under(f"{T}/{name}", sh.current_pid()))

# %% [markdown]
# The propagated copies of the disk are mounts of their own, with groups of
# their own: `stage/disk` and `peer/disk` are peers of each other, and
# `slave/disk` is their slave.

# %%
groups = optional_fields()
print("stage/disk and peer/disk are peers:",
      groups["stage/disk"].peer_group == groups["peer/disk"].peer_group)
print("slave/disk is their slave:", groups["slave/disk"].master == groups["peer/disk"].peer_group)

# %% [markdown]
# The fourth type, **unbindable**, is private and also refuses to be the
# source of a bind mount (so that a recursive bind cannot copy it again and
# again). mount(2) fails with EINVAL, which mount(8) words as a list of guesses:

# %%
sh("mount --make-unbindable copy && mount --bind copy slave/disk")

# %% [markdown]
# **propagate_from.** A slave's master is a peer group, and mountinfo names
# it with `master:N`. That group may have no member in the slave's own
# namespace; events still arrive, relayed through it from a group further up
# the chain. mountinfo then adds `propagate_from:M` (proc(5)): the nearest
# group up the chain that does have a member in this namespace. We make
# `relay`, a bind of the slave (so a slave of stage's group too) that is
# made shared as well, in a group of its own. In a copy of the namespace,
# relay's copy is then made a slave of relay's group, which has no member in
# the copy; stage's group has one, the copy of stage:

# %%
sh("mkdir relay && mount --bind slave relay && mount --make-shared relay")
outer = {name: mount.mount_at(f"{T}/{name}", sh.current_pid()) for name in ("stage", "relay")}
print(f"relay here: {' '.join(outer['relay'].optional)}")
sh("unshare --mount --propagation unchanged sh")  # a copy: every mount keeps its groups
sh("mount --make-slave relay")
relay = mount.mount_at(f"{T}/relay", sh.current_pid())
print(f"relay in the copy: {' '.join(relay.optional)}")
print("its master is relay's group:", relay.master == outer["relay"].peer_group)
print("it propagates from stage's group:",
      f"propagate_from:{outer['stage'].peer_group}" in relay.optional)
sh("exit")
sh("umount relay && rmdir relay")

# %% [markdown]
# **Why unbindable exists: the recursive bind blow-up.** A recursive bind
# (`mount --rbind`) copies a mount *and every mount below it*. Give each user
# a view of a shared tree under their home, `tree/home/USER`, with a
# recursive bind of the tree: each bind copies the binds made before, and
# propagation (the tree is shared) repeats each new mount in every copy. In a
# scratch namespace, on a small tree with three users, we count the mounts
# under `tree` after each bind:

# %%
sh("unshare --mount sh")  # a scratch namespace: its mounts end with it
sh("mkdir tree && mount -t tmpfs tree tree && mount --make-shared tree && "
   "mkdir -p tree/home/alice tree/home/bob tree/home/carol")
sh("count() { findmnt --list --noheadings --submounts --mountpoint $PWD/tree | wc -l; }; count")
sh('for u in alice bob carol; do mount --rbind tree tree/home/$u; echo "rbind into $u: $(count) mounts"; done')
sh("exit")

# %% [markdown]
# 1, 2, 6, 42: each bind takes n mounts to n·(n+1), so a fourth user would
# bring 1806. The cure
# (sharedsubtree.rst, "unbindable mounts") is to make `home` an unbindable
# mount (a bind mount of itself, then `--make-unbindable`): a recursive bind
# leaves it, and everything below it, out of the copy. The same three binds:

# %%
sh("unshare --mount sh")
sh("mount -t tmpfs tree tree && mount --make-shared tree && "
   "mkdir -p tree/home/alice tree/home/bob tree/home/carol")
sh("mount --bind tree/home tree/home && mount --make-unbindable tree/home")
sh("count() { findmnt --list --noheadings --submounts --mountpoint $PWD/tree | wc -l; }; count")
sh('for u in alice bob carol; do mount --rbind tree tree/home/$u; echo "rbind into $u: $(count) mounts"; done')
sh("exit")
sh("rmdir tree")

# %% [markdown]
# ## 5. One disk, three namespaces
#
# mount_namespaces(7) gives the reason peer groups exist: an optical disk is
# mounted once under `/media` and should appear in every namespace, even
# those made before. `labkit.mount.MediaLab` builds the man page's set-up with
# three mount namespaces, each held by a sleeping process:
#
# * **first** has a shared MEDIA directory (a tmpfs, shared: peer group N);
# * **peer** is a new namespace copied from first: its MEDIA is in group N;
# * **slave** is another copy, whose MEDIA was then made a slave of group N.

# %%
media = mount.MediaLab().__enter__()  # start the three namespaces (media.close() ends them)
seen = {name: mount.mount_at(media.media, media.pid(name)) for name in media.NAMES}
for name, m in seen.items():
    print(f"{name:6} MEDIA: {' '.join(m.optional):18} {m.propagation}")
print("peer's MEDIA is in first's group:", seen["peer"].peer_group == seen["first"].peer_group)
print("slave's MEDIA is a slave of it:", seen["slave"].master == seen["first"].peer_group)

# %% [markdown]
# `media.insert(name, disk)` joins namespace NAME (setns, as `nsenter -m`
# does) and mounts a tmpfs called DISK under MEDIA there; `media.seen_by`
# reads each namespace's mountinfo from outside. The picture shows each
# namespace with the peer group of its MEDIA and the disks below it. A disk
# inserted in first:

# %%
def show_media():
    """The three namespaces, each with its MEDIA's peer group and what is mounted below it."""
    name_of = {media.pid(name): name for name in media.NAMES}

    def note(pid):
        group = " ".join(mount.mount_at(media.media, pid).optional)
        return f"MEDIA ({group}) holds " + (", ".join(media.seen_by(name_of[pid])) or "nothing")
    return lab.picture({name: media.pid(name) for name in media.NAMES}, types=["mnt"], note=note)

media.insert("first", "cdrom")
show_media()

# %% [markdown]
# Three namespaces, one mount call, and all three see the cdrom. A disk
# inserted in peer reaches the others the same way; one inserted in slave
# stays there:

# %%
media.insert("peer", "dvd")
media.insert("slave", "usb")
show_media()

# %% [markdown]
# An unmount propagates like a mount: ejecting the cdrom in peer takes it
# out of first and slave as well.

# %%
media.eject("peer", "cdrom")
show_media()

# %%
media.close()  # the sleepers end, and their namespaces with them

# %% [markdown]
# ## 6. The bite: a mount that lands where you did not expect
#
# Propagation is what makes the copy of a *shared* mount in a new namespace
# dangerous. Our shell's namespace plays a systemd host: its `stage` is
# shared. A tool that creates a mount namespace but skips the private step of
# section 3 (`unshare --propagation unchanged`, or a C program that calls
# clone(CLONE_NEWNS) and nothing else) gets a peer of `stage`, and its mounts
# come back:

# %%
sh("mkdir stage/scratch")
sh("unshare --mount --propagation unchanged sh")  # a new namespace, mounts left as they were
sh(f"mount -t tmpfs scratch {T}/stage/scratch")  # "in my own namespace", or so it seems
sh("exit")  # the namespace is gone ...
# ... and its mount is on the host:
sh("findmnt --list --noheadings --output TARGET,SOURCE --submounts --mountpoint $PWD | grep scratch | sort")

# %% [markdown]
# The mount outlived the namespace it was made in, and it went to every peer
# of `stage` on the host, and to the slave as well. An unmount in such a
# namespace is as bad: it unmounts on the host. The disk of section 4, with
# its file, unmounted "inside":

# %%
sh("unshare --mount --propagation unchanged sh")
sh(f"umount {T}/stage/disk")
sh("exit")
sh("ls stage/disk peer/disk slave/disk")

# %% [markdown]
# With unshare's default, the same steps leave the host alone:

# %%
sh(f"umount {T}/stage/scratch")
sh("unshare --mount sh")  # --propagation private, the default
sh(f"mount -t tmpfs scratch {T}/stage/scratch")
sh("exit")
sh(f"findmnt --output TARGET,SOURCE {T}/stage/scratch || echo 'nothing mounted: the host is untouched'")

# %% [markdown]
# So the first mount call of every tool that makes a mount namespace changes
# the propagation of the whole tree, before any other mount. unshare(1) and
# labkit (`spawn`, and `labkit.jail.pivot_into` in lesson 04) make it
# private: `mount("none", "/", NULL, MS_REC|MS_PRIVATE, NULL)`. The container
# runtimes choose **slave** instead: runc (Docker's and Kubernetes' runtime)
# calls `mount("", "/", "", MS_SLAVE|MS_REC, "")` unless the container's
# configuration asks for another `rootfsPropagation`, and LXC and
# systemd-nspawn do the same. Slave is the common choice because it still
# sends nothing to the host, while the host's later mounts and unmounts keep
# reaching the container: when the host unmounts a disk, the container's copy
# goes too, instead of keeping the disk busy. `unshare --propagation slave`
# (or `spawn(..., propagation="slave")`) does it. A second shell plays the
# host, in the same namespace as the first:

# %%
host = lab.Shell("host")
host(f"nsenter --target {sh.current_pid()} --mount sh")  # a second shell in the "host" namespace
host(f"cd {T}")
sh("unshare --mount --propagation slave sh")  # what runc, LXC and systemd-nspawn do
sh("mount -t tmpfs inside stage/scratch")
host("findmnt stage/scratch || echo 'the host: nothing at stage/scratch'")
host("mount -t tmpfs later stage/disk")  # the host mounts a disk ...
sh("findmnt --noheadings --output SOURCE stage/disk")  # ... the container receives it
host("umount stage/disk")  # ... and the unmount too
sh("findmnt stage/disk || echo 'the container: nothing at stage/disk'")
sh("exit")
host.close()

# %% [markdown]
# ## 7. Locked mounts: what a user namespace may not undo
#
# A mount namespace is owned by a user namespace (lesson 01). When a new
# mount namespace is owned by a user namespace other than its original's,
# it is *less privileged*, and the mounts it copies come **locked**
# (mount_namespaces(7), "Restrictions on mount namespaces"): mounted
# together, they cannot be taken apart, so that root of the new user
# namespace cannot unmount a mount to reveal what it covers, nor change the
# flags (`ro`, `nosuid`, `nodev`, `noexec`, atime) that it was given. Here a
# read-only tmpfs covers a note in a namespace of ours, and a child in a new
# user namespace and mount namespace (root there, with every capability)
# tries to get at the note:

# %%
cover = tempfile.mkdtemp()

def try_to_uncover():
    """In a new user and mount namespace: try to undo the cover that our parent mounted."""
    note = f"{cover}/secret"
    attempts = {
        "umount secret": lambda: syscalls.umount(note),
        "umount -l secret": lambda: syscalls.umount(note, syscalls.MNT_DETACH),
        "mount -o remount,bind,rw secret":
            lambda: syscalls.mount("none", note, None, syscalls.MS_REMOUNT | syscalls.MS_BIND),
    }
    report = [f"inside: uid {os.getuid()}, CAP_SYS_ADMIN: {'sys_admin' in user.capabilities()}"]
    for what, attempt in attempts.items():
        try:
            attempt()
            report.append(f"{what:31} done")
        except OSError as e:
            report.append(f"{what:31} {errno.errorcode[e.errno]}")
    mount.mount_tmpfs(note, "mine")  # a mount of its own, on top ...
    mount.unmount(note)  # ... it may unmount again
    report.append(f"{'mount and umount its own tmpfs':31} done")
    report.append(f"what it sees in secret: {os.listdir(note)}, read-only: "
                  f"{'ro' in mount.mount_at(note).options.split(',')}")
    return report

def cover_a_note():
    """In a new mount namespace of ours: a note, covered by a read-only tmpfs."""
    mount.mount_tmpfs(cover, "bench")
    os.mkdir(f"{cover}/secret")
    with open(f"{cover}/secret/note", "w") as f:
        f.write("under the cover\n")
    mount.mount_tmpfs(f"{cover}/secret", "cover")
    mount.remount_readonly(f"{cover}/secret")
    return run(try_to_uncover, namespaces="user,mnt", map_root=True)

print(*run(cover_a_note, namespaces="mnt"), sep="\n")
os.rmdir(cover)

# %% [markdown]
# `EINVAL` for the unmounts: the kernel treats a locked mount as one that
# cannot be unmounted alone (umount2(2)). `EPERM` for the remount: the
# read-only flag is locked. A mount the child made itself is its own to
# remove. The root of the copied tree, and so a `pivot_root`'ed container's
# `/`, is locked the same way; lesson 07 has more on what root of a user
# namespace may and may not do.

# %%
lab.close_all()  # the shells end, and with them the namespace that held the bench's mounts
print("mounted at the bench, in our namespace:", mount.mount_at(T))
os.rmdir(T)

# %% [markdown]
# ## Check yourself
#
# 1. A process in a new mount namespace mounts a tmpfs on `/mnt`. Where do
#    you look, from outside, to see that mount?
#    <details><summary>answer</summary>In <code>/proc/PID/mountinfo</code> of
#    that process (or <code>findmnt -N PID</code>): it lists the mounts of
#    PID's namespace. Our own <code>/proc/self/mountinfo</code> does not show
#    it.</details>
# 2. In mountinfo you read `shared:7` on one mount and `master:7` on another.
#    What happens when something is mounted below the first? Below the second?
#    <details><summary>answer</summary>Below the first: the mount is repeated
#    under every mount of peer group 7, and under its slaves, the second one
#    included. Below the second: nowhere else, a slave only receives.</details>
# 3. Why does `unshare --mount` call `mount("none", "/", NULL,
#    MS_REC|MS_PRIVATE, NULL)`?
#    <details><summary>answer</summary>The new namespace starts as a copy whose
#    shared mounts are peers of the host's. Without making them private,
#    mounts and unmounts in the new namespace would reach the host.</details>
# 4. How can one disk inserted once appear in three mount namespaces?
#    <details><summary>answer</summary>Their MEDIA mounts are in one peer group
#    (or slaves of it), so the single mount event is repeated in each.</details>
# 5. A container should see the disks the host mounts later, but its own
#    mounts must never reach the host. Which propagation for its copy of `/media`?
#    <details><summary>answer</summary>Slave: it receives from the host's peer
#    group and sends nothing back. (runc, LXC and systemd-nspawn make the whole
#    tree a slave for that reason.)</details>
# 6. Root of a new user namespace, in a new mount namespace, runs `umount /proc`
#    and gets `EINVAL`, although it has CAP_SYS_ADMIN there. Why?
#    <details><summary>answer</summary>The mount came from a more privileged
#    mount namespace, so it is locked: unmounting it alone could reveal what it
#    covers. It may mount over it, and unmount its own mounts.</details>
#
# Try one: predict what `mount_at` finds, then run it. `labkit.spawn.run`
# calls the function in a child with a new mount namespace.

# %%
def mount_and_look(where):
    mount.mount_tmpfs(where, "try-me")
    return mount.mount_at(where).source

where = tempfile.mkdtemp()
print("inside:", run(mount_and_look, where, namespaces="mnt"))
print("outside:", mount.mount_at(where))
os.rmdir(where)

# %% [markdown]
# **Next:** lesson 04 builds a jail with a mount namespace and pivot_root(2),
# and compares it with chroot(2). Its exercise `jail` (`sudo grader check
# jail`) uses everything of this lesson: a new mount namespace, private
# propagation first, and a fresh `/proc`. This lesson has no exercise of its own.
