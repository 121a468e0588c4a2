# Lesson 01: an overview of Linux namespaces.  Source of lessons/01-overview.ipynb
# (build it with `sudo .venv/bin/python lessons/build.py 01-overview`).
# rootless: yes

# %% [markdown]
# # 01 · Namespaces: an overview
#
# **Goal.** A namespace wraps one kind of global resource (the hostname, the
# mount table, the process IDs, ...) so that the processes inside see their
# own copy. By the end of this lesson you can
#
# * read a process's namespaces in `/proc/PID/ns` and tell whether two processes share one;
# * name the eight namespace types, their `CLONE_NEW*` flags and the Linux release that completed each;
# * say which system call creates, joins or asks about a namespace, and which command does the same;
# * explain why most namespaces need privilege and a user namespace does not;
# * say what keeps a namespace alive, and decode the flags in an `strace` line.
#
# Every claim below is shown by a cell that asks the running kernel. Run the
# cells in order (Shift-Enter) and compare with the stored output. Read
# namespaces(7) beside it (`man 7 namespaces`).
#
# *Root or not:* this lesson runs as root (as in the lab VM) and as a normal
# user, with the same output. Where a step needs privilege, labkit and the
# lab's shells add a user namespace in which you are root (section 6 shows
# why that works). The stored outputs were recorded on a development machine
# (Linux 6.18, cgroup v1 and v2 mounted side by side), in a UTS namespace whose
# hostname is `vm`; `make vm-test` checks that the lab VM (Debian 12, Linux
# 6.1, cgroup v2 only) shows the same. Numbers that differ on every run
# (inodes, PIDs) will differ for you.

# %%
import os
import tempfile
import threading

import lab  # lessons/lab.py: shells to type into, pictures of namespaces
from labkit import nstypes, syscalls
from labkit.namespace import Namespace
from labkit.output import table
from labkit.spawn import run, run_command, spawn

me = os.getpid()  # this notebook's kernel: the process that runs these cells

# %% [markdown]
# ## 1. One link per namespace type
#
# Each process has a directory `/proc/PID/ns` with a symbolic link per
# namespace type. The link's text names the namespace: its type, and in
# brackets the number of an inode in *nsfs*, the kernel's namespace file system.

# %%
for name in sorted(os.listdir(f"/proc/{me}/ns")):
    print(f"{name:18} -> {os.readlink(f'/proc/{me}/ns/{name}')}")

# %% [markdown]
# Eight types, ten links: `pid_for_children` and `time_for_children` name the
# namespace that this process's *next children* will be in. They differ from
# `pid` and `time` only after the process moved its future children: with
# `unshare(CLONE_NEWPID)` or `unshare(CLONE_NEWTIME)` into a new namespace, or
# with setns(2) into an existing PID or time namespace. Neither call ever moves
# the process itself (section 5 shows both).
#
# **Same link target, same namespace.** Two processes are in the same namespace
# exactly when their links name the same inode. The shell that a `!` line
# starts is a child of this kernel; `$$` is that shell's PID:

# %%
shell = !readlink /proc/$$/ns/uts
kernel = os.readlink(f"/proc/{me}/ns/uts")
print(shell[0], " <- the shell of that line")
print(kernel, " <- this kernel")
print("same link target:", shell[0] == kernel)

# %% [markdown]
# labkit compares namespaces the same way: a `Namespace` is equal to another
# when the (device, inode) pair of its nsfs file is.

# %%
print(Namespace.of(me, "uts"))
print("my UTS namespace is my parent's:", Namespace.of(me, "uts") == Namespace.of(os.getppid(), "uts"))

# %% [markdown]
# ## 2. A child stays in its parent's namespaces
#
# fork(2) makes a child in all of its parent's namespaces. Nothing changes
# unless a process asks for it. `run(fn)` calls `fn` in a child of fork() and
# brings its return value back; here the child reports its own namespaces:

# %%
mine = Namespace.all_of(me)
in_child = run(Namespace.all_of)  # in the child: Namespace.all_of("self")
for name, ns in mine.items():
    print(f"{name:18} {str(ns):20} the child's: {'same' if in_child[name] == ns else 'DIFFERENT'}")

# %% [markdown]
# ## 3. The eight types
#
# labkit keeps the table of namespaces(7) in `labkit.nstypes`. Here it is in
# the order in which Linux completed the types:

# %%
def release(t):
    return tuple(int(part) for part in t.kernel.split("."))

table(("TYPE", "FLAG", "CONSTANT", "LINUX", "ISOLATES", "MAN PAGE"),
      [(t.name, f"{t.flag:#010x}", t.constant, t.kernel, t.isolates, t.manpage)
       for t in sorted(nstypes.TYPES, key=release)])

# %% [markdown]
# * **mount** came first (2.4.19, 2002), alone, which is why its flag is just
#   `CLONE_NEWNS`, "new namespace": nobody expected more.
# * **UTS** and **IPC** (2.6.19, 2006), then **PID** (2.6.24, 2008).
# * **network** arrived in pieces and was usable from about 2.6.29 (2009).
# * **user** namespaces were completed in 3.8 (2013): the release that let a
#   normal user create namespaces (section 6).
# * **cgroup** (4.6, 2016) and **time** (5.6, 2020) are the latest.
#
# The flags are single bits, so a set of types is their bitwise or, a *mask*
# (section 9).

# %% [markdown]
# ## 4. Who is where: a picture
#
# Two children: one made by fork() alone, one that also called unshare(2) for
# two types before running its program. The picture is drawn from their
# `/proc/PID/ns` links: a namespace is one node, however many processes are in it.

# %%
forked = spawn(["sleep", "infinity"])  # fork() and exec: no new namespaces
moved = spawn(["sleep", "infinity"], ["uts", "net"])  # fork(), unshare(CLONE_NEWUTS|CLONE_NEWNET), exec
lab.picture({"this kernel": me, "child of fork()": forked.pid, "child that unshared": moved.pid},
            types=["uts", "net", "mnt"])

# %% [markdown]
# The child that unshared has a UTS and a network namespace of its own and
# still shares the mount namespace (and the other five). Nobody else is in its new namespaces, so
# they end with it: a namespace lives while something refers to it (section 8).

# %%
its_uts = Namespace.of(moved.pid, "uts")
print("processes in", its_uts, ":", len(lab.processes_in(its_uts)))
for child in (forked, moved):
    child.kill()
    child.wait()
print("processes in", its_uts, ":", len(lab.processes_in(its_uts)))

# %% [markdown]
# ## 5. Four system calls, and their commands
#
# | system call | what it does | command |
# | --- | --- | --- |
# | clone(2) with `CLONE_NEW*` flags | starts a child in new namespaces | `unshare --fork` |
# | unshare(2) | moves the caller into new namespaces (for PID and time: its future children) | unshare(1) |
# | setns(2) | moves the caller into an existing namespace, given a file descriptor of `/proc/PID/ns/TYPE` | nsenter(1) |
# | ioctl(2) on such a descriptor, see ioctl_ns(2) | asks about a namespace: its type, its owner, its parent | lsns(8) |
#
# labkit's `spawn` is fork() and unshare(2), `labkit.join.enter` is setns(2), and
# `Namespace.owner()` and `.parent()` are the ioctls. The commands first, typed
# into a shell:

# %%
sh = lab.Shell("sh")
sh("hostname")
sh("unshare --uts sh")  # unshare(2), then it runs a new shell: that one is in the new namespace
sh("hostname twin")
sh("hostname")

# %% [markdown]
# nsenter(1) opens `/proc/PID/ns/uts` of a running process and calls setns(2)
# before it runs its command. From a second shell, into the first one's new
# namespace:

# %%
sh2 = lab.Shell("sh2")
sh2("hostname")
sh2(f"nsenter --target {sh.current_pid()} --uts hostname")

# %%
sh("exit")  # leave the new shell: back in the first one, in our own UTS namespace
sh("hostname")
sh2.close()

# %% [markdown]
# unshare(2) moves the caller, except for two types. With `CLONE_NEWPID` (and
# `CLONE_NEWTIME`) only the caller's *future children* go into the new
# namespace, so that a process's PID never changes under it. A child calls
# `unshare(CLONE_NEWPID)`, forks once (the `pid_for_children` link has a
# value only once the new namespace has a first process, namespaces(7)),
# and reads its own links. It does so in a user namespace of its own, where
# it may unshare as a normal user too (section 6):

# %%
def unshare_pid_then_fork():
    syscalls.unshare("pid")
    first = os.fork()
    if first == 0:
        os._exit(0)  # PID 1 of the new namespace
    os.waitpid(first, 0)
    return os.readlink("/proc/self/ns/pid"), os.readlink("/proc/self/ns/pid_for_children")

pid_link, for_children = run(unshare_pid_then_fork, namespaces="user", map_root=True)
ours = os.readlink(f"/proc/{me}/ns/pid")
print(f"pid              -> {pid_link}  ours: {pid_link == ours}")
print(f"pid_for_children -> {for_children}  ours: {for_children == ours}")

# %% [markdown]
# setns(2) into an existing PID namespace does the same: the caller stays,
# its `pid_for_children` link changes. A child joins the PID namespace of a
# sleeping process (which it started in a new one, so that it may join it):

# %%
def setns_into_a_pid_namespace():
    with spawn(["sleep", "infinity"], "pid") as sleeper:
        before = os.readlink("/proc/self/ns/pid")
        with Namespace.of(sleeper.pid, "pid").opened() as fd:
            syscalls.setns(fd, "pid")
        return {"pid": os.readlink("/proc/self/ns/pid") == before,
                "pid_for_children": os.readlink("/proc/self/ns/pid_for_children") == before,
                "the sleeper's": os.readlink("/proc/self/ns/pid_for_children") ==
                os.readlink(f"/proc/{sleeper.pid}/ns/pid")}

after_setns = run(setns_into_a_pid_namespace, namespaces="user", map_root=True)
print("after setns(2): pid              unchanged:", after_setns["pid"])
print("after setns(2): pid_for_children unchanged:", after_setns["pid_for_children"],
      "  now the sleeper's:", after_setns["the sleeper's"])

# %% [markdown]
# Strictly, unshare(2) moves the calling *thread*. For some flags it must
# take the whole process along, and then it refuses a process with several
# threads: `CLONE_NEWUSER` implies `CLONE_THREAD` (unshare(2)), that is "leave
# the thread group", which a thread with siblings cannot do, so
# `unshare(CLONE_NEWUSER)` there fails with `EINVAL`. (The kernel keeps the
# threads of a process in one user namespace, and one thread cannot leave
# alone.) `CLONE_NEWNS` implies only `CLONE_FS`, which a thread may unshare:
# `unshare(CLONE_NEWNS)` succeeds, and moves the calling thread alone. A child
# with a second thread tries both (again in a user namespace of its own):

# %%
def with_a_second_thread():
    stop = threading.Event()
    second = threading.Thread(target=stop.wait)
    second.start()
    report = []
    try:
        syscalls.unshare("user")
        report.append("unshare(CLONE_NEWUSER): created")
    except OSError as e:
        report.append(f"{type(e).__name__}: {str(e).splitlines()[0]}")
    syscalls.unshare("mnt")
    caller = os.readlink(f"/proc/self/task/{threading.get_native_id()}/ns/mnt")
    other = os.readlink(f"/proc/self/task/{second.native_id}/ns/mnt")
    report.append(f"unshare(CLONE_NEWNS): created; the threads share a mount namespace: {caller == other}")
    stop.set()
    second.join()
    return report

print(*run(with_a_second_thread, namespaces="user", map_root=True), sep="\n")
print("threads of this notebook's kernel: more than one:", len(os.listdir(f"/proc/{me}/task")) > 1)

# %% [markdown]
# That last line is why these lessons never unshare the kernel's own process:
# every experiment runs in a child, which starts with one thread.
#
# **clone(2): born in new namespaces.** The first row of the table. Where
# unshare(2) moves the caller, clone(2) with `CLONE_NEW*` flags creates a
# *child* that starts in the new namespaces, and the caller stays where it
# was. Two more differences follow: with `CLONE_NEWPID` the child is PID 1 of
# the new namespace at once (no extra fork), and `CLONE_NEWUSER` works from a
# threaded process, since the new user namespace is for a new, single-threaded
# process. `lessons/c/clone_child.c` is a short C program in the style of
# Kerrisk's examples that shows all three: it starts a second thread, tries
# `unshare(CLONE_NEWUSER)`, then clones a child into new user, UTS and PID
# namespaces. We compile it and run it (in a child of this kernel, as always):

# %%
clone_dir = tempfile.mkdtemp()
!gcc -Wall -pthread -o {clone_dir}/clone_child c/clone_child.c && {clone_dir}/clone_child
!rm -r {clone_dir}

# %% [markdown]
# `unshare --fork` (and labkit's `spawn`) get the same result in two steps,
# unshare(2) and then fork(2); container runtimes such as runc and LXC call
# clone(2) (or clone3(2), Linux 5.3) with the flags directly.
#
# And the ioctls: every namespace is owned by a user namespace, and PID and
# user namespaces form trees, so each has a parent.

# %%
print("owner of my UTS namespace is my user namespace:",
      Namespace.of(me, "uts").owner() == Namespace.of(me, "user"))
with spawn(["sleep", "infinity"], "pid") as child:
    theirs = Namespace.of(child.pid, "pid")
    print("the child's PID namespace:", theirs, " its parent:", theirs.parent())
    print("the parent is mine:", theirs.parent() == Namespace.of(me, "pid"))

# %% [markdown]
# ## 6. Privilege: a user namespace is free, the others need CAP_SYS_ADMIN
#
# Creating a UTS, IPC, mount, network, PID, cgroup or time namespace needs the
# capability `CAP_SYS_ADMIN` in the user namespace that will own it. Creating a
# user namespace needs no capability at all (since Linux 3.8; some
# distributions restrict it). When one call asks for both, the kernel makes
# the user namespace first, the caller has every capability in it, and the
# other namespaces are owned by it.
#
# `lab.AS_NOBODY` runs a command as the unprivileged user nobody (uid 65534)
# with setpriv(1); as a normal user it is empty, since you are unprivileged already:

# %%
!{lab.AS_NOBODY} unshare --uts true
!{lab.AS_NOBODY} unshare --user --uts readlink /proc/self/ns/uts

# %% [markdown]
# labkit raises the same refusal as an `OSError` subclass that keeps the errno
# and says what was missing. `lab.become_nobody()` drops root in the child:

# %%
def try_unshare(types):
    lab.become_nobody()
    try:
        syscalls.unshare(types)
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    return f"unshare({nstypes.format_flags(nstypes.encode_flags(types))}): created"

print(run(try_unshare, "uts"))
print(run(try_unshare, "user,uts"))

# %% [markdown]
# ## 7. How many: the limits in /proc/sys/user
#
# Each user namespace has a limit per type on how many namespaces may be
# created in it, and the limit counts **per user**: each user (uid) of that
# user namespace may create up to that many, and the next one fails
# (namespaces(7), "The /proc/sys/user directory"). The defaults follow the
# machine's memory, since every namespace costs kernel memory (section 11):

# %%
!grep . /proc/sys/user/max_*_namespaces

# %% [markdown]
# A namespace counts against the limits of its user namespace and of every
# ancestor. A new user namespace starts with no limit of its own (the largest
# int), and its root may set one. With the limit at 0, creating a UTS namespace
# fails with `ENOSPC`, and it still fails one user namespace further down,
# where the limit is unset again. We try it inside a new user namespace,
# whose limits are ours to change:

# %%
def limit():
    with open("/proc/sys/user/max_uts_namespaces") as f:
        return f.read().strip()

def try_a_uts_namespace():
    try:
        syscalls.unshare("uts")
        return "created"
    except OSError as e:
        return f"{type(e).__name__}: {e}"

def hit_the_limit():
    report = [f"a new user namespace: max_uts_namespaces is {limit()}"]
    with open("/proc/sys/user/max_uts_namespaces", "w") as f:
        f.write("0")
    report.append(f"set to 0, a UTS namespace: {try_a_uts_namespace()}")
    syscalls.unshare("user")  # one level down: a limit of its own, its parent's still counts
    report.append(f"a user namespace below it: max_uts_namespaces is {limit()}")
    report.append(f"and a UTS namespace there: {try_a_uts_namespace().splitlines()[0]}")
    return report

print(*run(hit_the_limit, namespaces="user", map_root=True), sep="\n")

# %% [markdown]
# ## 8. A namespace lives while something refers to it
#
# The kernel frees a namespace when nothing refers to it any more
# (namespaces(7), "Namespace lifetime"). What refers to one:
#
# * every process in it;
# * an open file descriptor of its `/proc/PID/ns` file, and a bind mount of
#   that file (`ip netns add` keeps network namespaces alive with bind
#   mounts under `/run/netns`);
# * a process whose `pid_for_children` or `time_for_children` link names it
#   (section 5);
# * for a PID or user namespace, a child namespace (each holds its parent);
# * for a user namespace, every namespace it owns;
# * for an IPC namespace, an `mqueue` mount made in it (lesson 08); for a
#   PID namespace, a `/proc` mount made in it (lesson 05).
#
# `labkit.persist.outlives_its_process` tries it: a child gets a UTS namespace
# with a hostname, something holds the namespace (or nothing does), the child
# is killed, and then we try to enter the namespace and read the hostname.

# %%
from labkit.persist import outlives_its_process

for hold in ("nothing", "fd", "mount"):
    facts = outlives_its_process(hold, hostname="still-here")
    print(f"held by {hold:8} alive after its process died: {facts['alive']!s:5}  "
          f"after letting go: {facts['alive_after_release']}")

# %% [markdown]
# The same with commands. `unshare --uts=FILE` bind-mounts the new namespace on
# FILE. We do it in a mount namespace of our own with a tmpfs on `/mnt`, so that
# the machine's mount table does not change:

# %%
sh("unshare --mount sh")  # a shell in a new mount namespace
sh("mount -t tmpfs tmpfs /mnt && touch /mnt/uts")
sh("unshare --uts=/mnt/uts hostname kept")  # this process ends at once
sh("nsenter --uts=/mnt/uts hostname")
sh("findmnt --noheadings --output TARGET,FSTYPE /mnt/uts")
sh("umount /mnt/uts && nsenter --uts=/mnt/uts hostname")  # just an empty file now
sh("exit")  # back to the first shell; the mount namespace ends with the second

# %% [markdown]
# ## 9. Reading an strace: flags are a mask
#
# strace(1) shows the flags of unshare(2) by name, or as the number with `-X raw`:

# %%
sh("strace -f -e trace=unshare unshare --uts true")
sh("strace -f -X raw -e trace=unshare unshare --uts true")

# %% [markdown]
# `0x4000000` is one bit, `CLONE_NEWUTS`. `labkit flags` and
# `nstypes.decode_flags` decode any mask:

# %%
!labkit flags 0x4000000
print(nstypes.decode_flags(0x4000000))

# %%
sh("strace -f -X raw -e trace=unshare unshare --mount --uts --ipc --net true")
!labkit flags 0x4c020000

# %% [markdown]
# ## 10. Can this machine do it? `labkit check`
#
# `labkit check` reads from the running kernel which namespace types exist,
# whether a normal user may create user namespaces, the limits, the cgroup
# layout and the tools the lessons call, as `lxc-checkconfig` does. Its exit
# status is 0 when everything required is there. Run it in a terminal to see
# the whole report; here is the verdict and the first group:

# %%
!labkit check > /dev/null && echo "labkit check: every required check passed"
from labkit.check import report

for item in report():
    if item.group == "namespaces":
        print(f"{item.name:7} {'ok' if item.ok else 'MISSING':8} {item.detail}")

# %% [markdown]
# ## 11. One kernel: containers share it, a VM does not
#
# Namespaces divide what one kernel shows; they do not add a kernel. A process
# in new namespaces of every type, a container in all but name, runs on the
# same kernel as we do:

# %%
every_type = [t.name for t in nstypes.TYPES if t.name != "user"]  # rootless mode adds the user namespace
inside = run_command(["uname", "-r"], every_type).stdout.strip()
print("outside:", os.uname().release)
print("inside: ", inside)
print("same kernel:", inside == os.uname().release)

# %% [markdown]
# A virtual machine boots a kernel of its own: the lab VM's `uname -r` is not
# your laptop's. That is the trade: a container is a process. It boots no
# kernel and runs no second copy of one, so it starts in milliseconds; what it
# costs is the kernel memory of its namespaces (their tables, a network
# namespace's devices and sockets), which is why the limits of section 7
# scale with the machine's memory. And a kernel bug or a kernel setting is
# shared by every container on the machine.

# %%
lab.close_all()  # end the shell of sections 5 to 9

# %% [markdown]
# ## Check yourself
#
# 1. Process A's link reads `uts:[4026531838]`, process B's `uts:[4026532301]`.
#    Can a hostname that A sets be seen by B?
#    <details><summary>answer</summary>No: different inodes, different UTS namespaces.</details>
# 2. Which namespace types may a normal user create?
#    <details><summary>answer</summary>A user namespace, without any privilege; and
#    every other type in the same call or later from inside it, because the new
#    user namespace owns them and the user has CAP_SYS_ADMIN there.</details>
# 3. An strace shows `unshare(0x6c020000)`. Which namespaces? Check with the cell below.
#    <details><summary>answer</summary>net, PID, IPC, UTS and mount:
#    0x40000000 + 0x20000000 + 0x08000000 + 0x04000000 + 0x00020000.</details>
# 4. A network namespace shows in `ip netns list` although no process is in it. What holds it?
#    <details><summary>answer</summary>A bind mount of its nsfs file on
#    <code>/run/netns/NAME</code>; <code>ip netns delete</code> unmounts it.</details>
# 5. After `unshare(CLONE_NEWPID)`, which of the caller's links changes?
#    <details><summary>answer</summary>Only <code>pid_for_children</code>: the caller
#    stays where it is, its next child is the first process of the new namespace.</details>
# 6. A threaded program must start a process in a new user namespace. Why
#    does clone(2) work where unshare(2) fails?
#    <details><summary>answer</summary><code>unshare(CLONE_NEWUSER)</code> would
#    move the caller, one thread of a thread group, which the kernel refuses
#    (<code>EINVAL</code>); clone(2) puts a new, single-threaded process in the
#    new namespace and leaves the caller where it is.</details>

# %%
!labkit flags 0x6c020000

# %% [markdown]
# **Next:** lesson 02, the UTS namespace, and its exercise `uts`. This lesson has no exercise.
