# Lesson 07: user namespaces.  Source of lessons/07-user.ipynb
# (build it with `sudo .venv/bin/python lessons/build.py 07-user`).
# rootless: yes
# uid: 2000           (its unprivileged user, distinct from the overflow id: rootless checks run as it)
# exercise: userns

# %% [markdown]
# # 07 · User namespaces: root without root
#
# **Goal.** A user namespace (Linux 3.8, user_namespaces(7)) gives a process
# user and group ids of its own, and capabilities that count only for what the
# namespace owns. It is the one namespace a normal user may create, and from
# inside it, all the others. By the end of this lesson you can
#
# * turn an unprivileged user into uid 0 inside a namespace, and say what
#   `/proc/PID/uid_map` and `gid_map` then hold;
# * explain why an unmapped id shows as 65534, and why `setgroups` must say `deny`;
# * say whose capabilities count in a nested user namespace, and what root of
#   a child namespace cannot do to its parent's;
# * tell the capabilities a process has inside its user namespace from the
#   ones it has outside;
# * create every other namespace type without root, and say who owns it;
# * predict who owns a file that "root" creates inside;
# * solve the exercise `userns`.
#
# *Root or not:* this lesson is about what an **unprivileged** user can do, so
# every step runs as one: a user with uid 2000 and no name, *the learner*.
# (Not `nobody`: its uid, 65534, is also the overflow id of section 1, and
# the two would look the same.) Run as root, the notebook drops to the
# learner for each step (`AS_LEARNER` for commands, `as_learner()` below for
# Python); run as a normal user, you are the learner, and the numbers show
# your uid. The stored output is the same either way when the normal user is
# uid 2000, which is how the lesson's tests run it.
#
# The functions of this lesson are in `labkit/user.py`: read it beside
# user_namespaces(7) and capabilities(7).

# %%
import errno
import os
import subprocess
import tempfile

import lab  # lessons/lab.py: the unprivileged user, pictures of namespaces
from labkit import syscalls, user
from labkit.join import run_in
from labkit.namespace import Namespace
from labkit.spawn import run, spawn

me = os.getpid()  # this notebook's kernel
PR_SET_DUMPABLE = 4  # prctl(2), <linux/prctl.h>


LEARNER = 2000 if os.geteuid() == 0 else os.geteuid()  # the unprivileged user of this lesson
# Prefix for a shell command that must run as the learner (setpriv(1)); empty for a normal user.
AS_LEARNER = f"setpriv --reuid={LEARNER} --regid={LEARNER} --clear-groups" if os.geteuid() == 0 else ""


def become_learner():
    """In a child process: give up root for good, becoming the learner (a normal user stays as is).

    The order matters: supplementary groups and the gid first, because once
    the uid is no longer 0 the process may not change them any more.
    """
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(LEARNER)
        os.setuid(LEARNER)


def as_learner(fn, *args, **kwargs):
    """Call FN(*ARGS, **KWARGS) in a child process that runs as the learner; return its result."""
    def drop_root_then_call():
        become_learner()
        # A process whose uid has changed is no longer "dumpable": its /proc/PID
        # files, and its children's, then belong to root, and it could not write
        # its children's uid_map. execve(2) would make it dumpable again; we do
        # it by hand (prctl(2), PR_SET_DUMPABLE).
        syscalls.prctl(PR_SET_DUMPABLE, 1)
        return fn(*args, **kwargs)
    return run(drop_root_then_call)


print("the unprivileged user of this lesson:", as_learner(os.getuid))

# %% [markdown]
# ## 1. Unmapped: everybody is 65534
#
# `unshare --user` makes a new user namespace and nothing else. The new
# namespace starts with **no mapping**: no id inside corresponds to any id
# outside. Its `uid_map` is empty, and every id the process meets (its own,
# and the owners of files) shows as the *overflow id*, 65534:

# %%
!cat /proc/sys/kernel/overflowuid /proc/sys/kernel/overflowgid
!{AS_LEARNER} unshare --user sh -c 'echo "uid_map: [$(cat /proc/self/uid_map)]"; id'

# %% [markdown]
# Our uid is 2000: the 65534 that `id` shows is not us, it is the overflow
# id, "no mapping". The owner of `/` shows the same: it is root (0) outside,
# and root is not mapped in the new namespace either:

# %%
!{AS_LEARNER} stat -c 'outside: / is owned by %U:%G (%u:%g)' /
!{AS_LEARNER} unshare --user stat -c 'inside:  / is owned by %U:%G (%u:%g)' /

# %% [markdown]
# ## 2. Mapped: the learner becomes root
#
# A line of `/proc/PID/uid_map` says "ids from INSIDE are ids from OUTSIDE, for
# COUNT ids". `unshare --map-root-user` writes `0 2000 1`: uid 0 inside is our
# own uid outside, and nothing else is mapped. The same for `gid_map`:

# %%
!{AS_LEARNER} unshare --user --map-root-user sh -c 'id; cat /proc/self/uid_map /proc/self/gid_map'

# %% [markdown]
# Root inside, and still the learner outside. Seen from here, the process has its
# old uid; the kernel keeps one set of ids per process and translates them
# through the map for whoever looks. `Uid:` in `/proc/PID/status` lists the
# real, effective, saved and file-system uid:

# %%
sleeper = subprocess.Popen([*AS_LEARNER.split(), "unshare", "--user", "--map-root-user",
                            "sleep", "infinity"])
# Once the process runs sleep, unshare(1) has made the namespace and written the maps:
lab.wait_until(lambda: lab.program_of(sleeper.pid) == "sleep", "unshare to run sleep")
with open(f"/proc/{sleeper.pid}/status") as f:
    print("seen from outside:", [line.strip() for line in f if line.startswith("Uid:")][0])
print("its uid_map, read from outside:", user.read_map(sleeper.pid, "uid_map"))
print("the namespace was made by uid", Namespace.of(sleeper.pid, "user").owner_uid())  # NS_GET_OWNER_UID
sleeper.kill()
sleeper.wait()
print("sleep ended")

# %% [markdown]
# labkit does the same: `spawn(..., "user", map_root=True)` makes the child's
# user namespace, and the parent calls `user.map_root(pid)`, which writes the
# two maps while the child waits (the handshake of Kerrisk's
# `userns_child_exec.c`; `labkit/spawn.py` draws it). Outside, the map is
# the initial user namespace's: every id mapped to itself, 4294967295 of
# them, all but the last, `(uid_t) -1`, which chown(2) and setreuid(2) read
# as "leave this id as it is".

# %%
def whoami():
    return {"uid": os.getuid(), "gid": os.getgid(), "uid_map": user.read_map("self", "uid_map")}

print("outside:", as_learner(whoami))
print("inside: ", as_learner(run, whoami, namespaces="user", map_root=True))

# %% [markdown]
# ## 3. The rules of the maps
#
# The kernel is strict about who may write a map, and what (user_namespaces(7),
# "Defining user and group ID mappings"). An unprivileged process may map
# **only its own id**, once, in one line of count 1; otherwise any user could
# claim to be root outside. labkit's `MapRuleError` names the rule a refused
# write broke. Here the learner starts a child in a new user namespace with a
# `uid_map` only, and then tries to write more:

# %%
def write_maps_by_hand():
    with spawn(["sleep", "infinity"], "user", uid_map=f"0 {LEARNER} 1") as child:
        for what, write in [
            ("uid_map again", lambda: user.write_uid_map(child.pid, f"0 {LEARNER} 1")),
            (f"gid_map '0 {LEARNER} 1'", lambda: user.write_gid_map(child.pid, f"0 {LEARNER} 1")),
            ("setgroups 'deny'", lambda: user.deny_setgroups(child.pid)),
            ("gid_map '0 0 1'", lambda: user.write_gid_map(child.pid, "0 0 1")),
            (f"gid_map '0 {LEARNER} 1'", lambda: user.write_gid_map(child.pid, f"0 {LEARNER} 1")),
        ]:
            try:
                write()
                print(f"{what}: written")
            except OSError as e:
                print(f"{what}: {type(e).__name__}: {e}")

as_learner(write_maps_by_hand)

# %% [markdown]
# ## 4. Why `setgroups` says `deny`
#
# The second write was refused until `deny` was written to `/proc/PID/setgroups`.
# Since Linux 3.19 an unprivileged user must give up setgroups(2) before it may
# map a group. The reason is a "negative" permission: a file with mode `0604`
# lets everybody read it *except* its group. A member of that group who could
# drop the group with setgroups(2), as root of a user namespace, would read the
# file. So root inside such a namespace cannot change its supplementary groups:

# %%
!{AS_LEARNER} unshare --user --map-root-user sh -c 'cat /proc/self/setgroups; setpriv --clear-groups id'

# %% [markdown]
# A writer with `CAP_SETGID` in the parent user namespace may write a
# `gid_map` without writing `deny` first: it could change its groups anyway.
# Root of a user namespace has that capability there, so it may do so for a
# namespace one level down. (Its `setgroups` reads `deny` all the same: a
# child user namespace inherits the setting from its parent, where it was
# written for the learner.)

# %%
def map_a_group_as_root_of_the_parent():
    with spawn(["sleep", "infinity"], "user") as child:
        user.write_gid_map(child.pid, "0 0 1")
        with open(f"/proc/{child.pid}/setgroups") as f:
            return f"gid_map '0 0 1' without 'deny' first: written; setgroups reads {f.read().strip()!r}"

print(as_learner(run, map_a_group_as_root_of_the_parent, namespaces="user", map_root=True))

# %% [markdown]
# ## 5. Capabilities: all of them, inside
#
# The process that creates a user namespace gets every capability **in it**.
# `CapEff:` in `/proc/PID/status` is the effective set as a mask; outside,
# the learner has none:

# %%
!{AS_LEARNER} grep CapEff /proc/self/status

# %%
def my_capabilities():
    effective, bounding = user.capabilities("self", "CapEff"), user.capabilities("self", "CapBnd")
    return {"none": not effective, "the whole bounding set": effective == bounding,
            "sys_admin, net_admin, setuid": {"sys_admin", "net_admin", "setuid"} <= effective}

print("outside:", as_learner(my_capabilities))
print("inside: ", as_learner(run, my_capabilities, namespaces="user", map_root=True))

# %% [markdown]
# The capabilities survive execve(2) only if the process is **root** in its
# namespace, that is, if uid 0 is mapped and the process has it. Without a map
# a program started inside has none, which is why labkit's child waits for its
# parent to write the maps before it goes on:

# %%
!{AS_LEARNER} unshare --user grep CapEff /proc/self/status

# %% [markdown]
# ## 6. ... but only over what the namespace owns
#
# Every namespace, and every file, belongs to someone. Capabilities in a user
# namespace count for the namespaces **it owns** and for files whose owners are
# **mapped** in it. This notebook's UTS namespace belongs to the user
# namespace we are in, the machine's first one, and `/etc/shadow` to the real
# root, who is not mapped: root inside can neither change the hostname nor read the file.

# %%
print("our UTS namespace is owned by our own user namespace:",
      Namespace.of(me, "uts").owner() == Namespace.of(me, "user"))
!{AS_LEARNER} unshare --user --map-root-user hostname not-mine
!{AS_LEARNER} unshare --user --map-root-user sh -c 'stat -c "%U:%G %a %n" /etc/shadow; cat /etc/shadow'

# %% [markdown]
# A UTS namespace created in the same step is owned by the new user
# namespace, so its hostname is root's to change:

# %%
!{AS_LEARNER} unshare --user --map-root-user --uts sh -c 'hostname mine; hostname'
!hostname

# %% [markdown]
# ## 7. Every other type, without root
#
# With one unshare(2) call the kernel creates the user namespace first, and
# then, with the capabilities the caller now has in it, the other seven
# types, all owned by the new user namespace. (`--fork`: a new PID or time
# namespace is for the caller's children, so unshare(1) forks before it runs
# the command.)

# %%
every_type = ["--uts", "--ipc", "--net", "--mount", "--cgroup", "--pid", "--time", "--fork"]
# cat reads its input until we close it. --kill-child: should unshare(1) die, cat dies too.
owner = subprocess.Popen([*AS_LEARNER.split(), "unshare", "--user", "--map-root-user", *every_type,
                          "--kill-child", "cat"], stdin=subprocess.PIPE)

inside = lab.wait_for_child(owner.pid, "cat")  # unshare(1) forked; the cat is PID 1 of its namespace
theirs = Namespace.of(inside, "user")
for name, ns in Namespace.all_of(inside).items():
    if name != "user":
        print(f"{name:18} new: {ns != Namespace.of(me, name)!s:5}  owned by the new user namespace: "
              f"{ns.owner() == theirs}")

# %% [markdown]
# The picture shows the cat's namespaces and this kernel's, for four of the
# types; the new user namespace is a child of ours (NS_GET_PARENT, ioctl_ns(2)):

# %%
print("parent of the new user namespace is ours:", theirs.parent() == Namespace.of(me, "user"))
lab.picture({"this kernel": me, "the learner's cat": inside}, types=["user", "uts", "net", "pid"])

# %%
owner.stdin.close()  # cat reads end-of-file and exits
owner.wait()  # unshare(1) reaps it, then ends
print("processes left in its user namespace:", len(lab.processes_in(theirs)))

# %% [markdown]
# `labkit.spawn.start_owning_all(argv)` does the same in Python.
#
# ## 8. Nested user namespaces: whose capabilities count
#
# User namespaces nest, and the kernel decides whether a process has a
# capability in a user namespace C by these rules (user_namespaces(7),
# "Capabilities"):
#
# * a process has a capability in C if it has it in C itself, or if it has
#   it in an **ancestor** of C: a process with `CAP_SYS_ADMIN` in C's parent
#   has every capability in C;
# * a process in C's parent whose **effective uid is C's owner's** (the euid
#   of C's creator) has every capability in C, even with no capability at all
#   in the parent: that is why the learner may `nsenter --user` into
#   namespaces it made;
# * nothing else counts: being root in a sibling, or in C itself, gives
#   nothing over C's parent and what it owns.
#
# C below is a sleeper's new user namespace (unmapped) with a UTS namespace
# that C owns. Four processes try to join C's UTS namespace and name it:

# %%
def name_its_host(pid, name, join):
    """Join JOIN ("uts", or "user,uts") of process PID and set the hostname there."""
    def set_it():
        syscalls.sethostname(name)
        return os.uname().nodename
    try:
        return f"hostname {run_in(pid, join, set_it)!r}"
    except OSError as e:
        return f"{type(e).__name__}, {errno.errorcode[e.errno]}"


def nested_rules():
    report = []
    with spawn(["sleep", "infinity"], "user,uts") as c:
        report.append("root of C's parent (all capabilities there), joining only the UTS namespace: "
                      + name_its_host(c.pid, "by-the-parent", "uts"))
    return report


def owner_rule():
    report = []
    with spawn(["sleep", "infinity"], "user,uts") as c:  # the learner, without capabilities, makes C
        report.append(f"the learner, no capabilities ({'none' if not user.capabilities() else 'some'}), "
                      "C's owner, joining C and its UTS namespace: "
                      + name_its_host(c.pid, "by-the-owner", "user,uts"))
        report.append("root of a sibling user namespace, joining C: "
                      + run(name_its_host, c.pid, "by-a-sibling", "user,uts",
                            namespaces="user", map_root=True))
    return report


def root_of_c_climbs():
    """Root of a new user namespace C tries to reach back into its parent."""
    parent = os.open("/proc/self/ns/user", os.O_RDONLY)
    syscalls.unshare("user")  # C: we have every capability in it
    try:
        syscalls.setns(parent, "user")
        return "root of C, setns(2) into C's parent: done"
    except OSError as e:
        return f"root of C, setns(2) into C's parent: {type(e).__name__}, {errno.errorcode[e.errno]}"


print(*as_learner(run, nested_rules, namespaces="user", map_root=True), sep="\n")
print(*as_learner(owner_rule), sep="\n")
print(as_learner(run, root_of_c_climbs))

# %% [markdown]
# The sibling is root with every capability, in a user namespace that the
# same learner made, and is still refused: it is neither in C's parent nor in
# an ancestor of C, so it has no capability in C, not even the ptrace(2)
# access that opening C's `/proc/PID/ns` files needs (`EACCES`). And root of C cannot climb back into the parent: a
# capability never counts upwards. (Nor over what the parent owns: section
# 6's `hostname not-mine` was the same rule.)
#
# ## 9. Who owns the files root creates inside
#
# A file gets the creator's ids **as the kernel keeps them**, that is, the ids
# outside. Root inside creates a file; inside it belongs to root, outside to
# the learner. We use a scratch directory that everybody may write to:

# %%
scratch = tempfile.mkdtemp()
os.chmod(scratch, 0o1777)
!{AS_LEARNER} unshare --user --map-root-user sh -c 'touch {scratch}/made-inside; stat -c "inside:  %U:%G (%u:%g) %n" {scratch}/made-inside'
!stat -c "outside: (%u:%g) %n" {scratch}/made-inside

# %% [markdown]
# Only mapped ids can be written to disk: root inside cannot give a file to
# uid 1000, which does not exist in its namespace (`EINVAL`):

# %%
!{AS_LEARNER} unshare --user --map-root-user chown 1000 {scratch}/made-inside
!rm -r {scratch}

# %% [markdown]
# Container engines that run "rootless" (Podman, Docker's rootless mode, LXC
# unprivileged containers) map a whole *range* of ids, e.g. `0 100000 65536`,
# from `/etc/subuid`, written by the setuid helper newuidmap(1): then the
# container has 65536 users, and each maps to a uid outside that belongs to nobody else.

# %% [markdown]
# ## Check yourself
#
# 1. A process in a new user namespace without a `uid_map` runs `id`. What does
#    it print, and why?
#    <details><summary>answer</summary><code>uid=65534(nobody) gid=65534(nogroup)</code>:
#    its ids are not mapped, so they show as the overflow ids of
#    <code>/proc/sys/kernel/overflowuid</code> and <code>overflowgid</code>.</details>
# 2. uid 1000 creates a user namespace. Which `uid_map` lines may it write, and
#    which not?
#    <details><summary>answer</summary>Only its own id, in one line of count 1,
#    e.g. <code>0 1000 1</code> or <code>1000 1000 1</code>; not <code>0 0 1</code>
#    and no range, which need CAP_SETUID in the parent user namespace
#    (newuidmap(1) has it). And only once.</details>
# 3. Root inside a user namespace created by uid 1000 runs `touch /tmp/f`.
#    Who owns `/tmp/f`, seen from outside?
#    <details><summary>answer</summary>uid 1000: the kernel stores the real ids,
#    and the map only translates them for readers inside.</details>
# 4. Why must an unprivileged process write `deny` to `/proc/PID/setgroups`
#    before its `gid_map`?
#    <details><summary>answer</summary>So that root inside cannot drop a group
#    with setgroups(2) and so read a file whose mode denies access to that
#    group (the Linux 3.19 fix).</details>
# 5. Root inside a user namespace has CAP_SYS_ADMIN. Why can it not change the
#    machine's hostname?
#    <details><summary>answer</summary>The machine's UTS namespace is owned by
#    the initial user namespace; a capability counts only over namespaces that
#    its user namespace (or a descendant of it) owns.</details>
# 6. The learner (uid 2000, no capabilities) made user namespace C with
#    `unshare --user sleep infinity`. May the learner's other shell run
#    `nsenter --target PID --user --uts hostname x`? May another unprivileged user?
#    <details><summary>answer</summary>The learner may: in C's parent, with the
#    euid of C's owner, it has every capability in C (section 8). Another user
#    has none there, and is refused.</details>
#
# Try one: predict the output, then run it.

# %%
print(as_learner(run, lambda: user.read_map("self", "gid_map"), namespaces="user", map_root=True))

# %% [markdown]
# ## Exercise `userns`: root without root
#
# Write `exercises/userns/solution`, an executable (Python, a shell script, C,
# ...) with this contract (EXERCISES.md, section 6):
#
# > `solution COMMAND [ARG...]`
# >
# > The grader runs `solution` as an **unprivileged user** with uid U and gid G.
# > `solution` runs COMMAND in a **new user namespace** where COMMAND has uid 0
# > and gid 0, mapped to U and G outside: `/proc/self/uid_map` reads `0 U 1` and
# > `/proc/self/gid_map` reads `0 G 1`. Files that COMMAND creates are owned by U
# > and G outside. COMMAND's effective capabilities inside its namespace are its
# > whole bounding set (it can, for example, create a UTS namespace and set a
# > hostname there). The exit status of `solution` is COMMAND's.
#
# Hints: unshare(2) with `CLONE_NEWUSER` in a child; the maps must be written
# before the child runs COMMAND (section 5), and for gid_map the order of
# section 3 matters. Try it by hand as a normal user
# (`sudo setpriv --reuid=2000 --regid=2000 --clear-groups exercises/userns/solution id`,
# as this lesson's unprivileged user),
# then let the grader check every sentence of the contract. It runs your
# solution as a user that it draws at random (a uid and gid that no account
# has), and reads COMMAND's maps, ids and capabilities from outside:
#
# ```
# sudo grader check userns
# ```
