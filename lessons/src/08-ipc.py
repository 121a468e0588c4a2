# Lesson 08: IPC namespaces.  Source of lessons/08-ipc.ipynb
# (build it with `sudo .venv/bin/python lessons/build.py 08-ipc`).
# rootless: yes

# %% [markdown]
# # 08 · IPC namespaces: a key means something else next door
#
# **Goal.** Some objects that processes share are found **by name**, not
# through a file descriptor one process hands to another: System V shared
# memory segments, message queues and semaphore sets, named by a number (the
# *key*), and POSIX message queues, named by a path such as `/jobs`. An IPC
# namespace (Linux 2.6.19; POSIX queues since 2.6.30) gives its processes a
# set of these names of their own (ipc_namespaces(7)). By the end of this
# lesson you can
#
# * show that an object made in one IPC namespace is invisible in any other;
# * explain how one key can name two different segments at once;
# * see a namespace's POSIX message queues through an `mqueue` mount;
# * say when the objects of an IPC namespace are destroyed.
#
# *Root or not:* this lesson runs as root and as a normal user, with the same
# output; labkit (and `labkit run`) add a user namespace in which you are root
# when you are not. We never make an object in this machine's own IPC namespace.
#
# The functions of this lesson are in `labkit/ipc.py`: read it beside
# ipc_namespaces(7), sysvipc(7) and mq_overview(7).

# %%
import errno
import os
import resource
import signal

import lab  # lessons/lab.py: pictures of namespaces
from labkit import ipc, syscalls
from labkit.join import enter, run_in
from labkit.namespace import Namespace
from labkit.persist import holders
from labkit.spawn import run, spawn

me = os.getpid()  # this notebook's kernel
KEY = 0x6C616221  # the key of our objects: "lab!" in ASCII, so that nobody else uses it by chance

# %% [markdown]
# ## 1. A new IPC namespace starts empty
#
# ipcs(1) lists the System V objects of the namespace it runs in: it reads
# `/proc/sysvipc/shm`, `msg` and `sem`, which always show the *reader's* IPC
# namespace. This machine's list is its own business; a new namespace's list
# is empty, whatever the machine holds:

# %%
!labkit run --ipc ipcs
print("objects in a new IPC namespace:", run(ipc.sysv_objects, namespaces="ipc"))

# %% [markdown]
# ## 2. Objects that only their namespace sees
#
# `box(size)` starts a process in a new IPC namespace. It makes a shared memory
# segment of SIZE bytes, a message queue and a set of one semaphore, all named
# `KEY` (`ipc.create_objects`, which calls shmget(2), msgget(2) and semget(2)
# with `IPC_CREAT`), tells us it is done, and waits.

# %%
def box(size):
    """A process in a new IPC namespace that made objects named KEY, and waits."""
    ready_r, ready_w = os.pipe()

    def make_objects_and_wait():
        os.close(ready_r)
        ipc.create_objects(KEY, size)
        os.write(ready_w, b"!")  # ready
        signal.pause()

    child = spawn(make_objects_and_wait, "ipc")
    os.close(ready_w)
    os.read(ready_r, 1)
    os.close(ready_r)
    return child


a = box(4096)

# %% [markdown]
# ipcs run inside box A's namespace lists the three objects. `labkit enter
# --all PID -- COMMAND` joins the namespaces of process PID and runs COMMAND
# there, as `nsenter --all --target PID COMMAND` does:

# %%
!labkit enter --all {a.pid} -- ipcs

# %% [markdown]
# Here, in this notebook's namespace, the key names nothing. shmget(2) without
# `IPC_CREAT` only looks a key up:

# %%
def try_shmget(key, size=0, flags=0):
    """shmget(2) in the caller's IPC namespace: the segment's id, or the error."""
    try:
        return f"segment id {ipc.shmget(key, size, flags)}"
    except OSError as e:
        return f"{type(e).__name__}: {e}"

print("in this notebook's namespace:", try_shmget(KEY))
print("in box A's namespace:        ", run_in(a.pid, "all", try_shmget, KEY))

# %% [markdown]
# ## 3. One key, two segments
#
# Box B makes objects with the same key in a namespace of its own, and a
# segment of twice the size. In a single namespace the second shmget(2) would
# have found A's segment (and refused the larger size with `EINVAL`); here it
# makes a new one. Each box's ipcs shows its own segment, even with the same
# id, 0, since each namespace counts from 0:

# %%
b = box(8192)
!labkit enter --all {a.pid} -- ipcs -m
!labkit enter --all {b.pid} -- ipcs -m

# %%
print("A and B in the same IPC namespace:", Namespace.of(a.pid, "ipc") == Namespace.of(b.pid, "ipc"))
lab.picture({"this kernel": me, "box A": a.pid, "box B": b.pid}, types=["ipc"])

# %% [markdown]
# The same calls in A's namespace show what would have happened in a shared
# one: the larger size is refused, and `IPC_EXCL` ("create, and fail if the key
# is taken") fails. In a new namespace the key is free:

# %%
CREATE, EXCLUSIVE = ipc.IPC_CREAT | 0o600, ipc.IPC_CREAT | ipc.IPC_EXCL | 0o600
print("A's namespace, 8192 bytes:  ", run_in(a.pid, "all", try_shmget, KEY, 8192, CREATE))
print("A's namespace, exclusively: ", run_in(a.pid, "all", try_shmget, KEY, 4096, EXCLUSIVE))
print("a new namespace, exclusively:", run(try_shmget, KEY, 4096, EXCLUSIVE, namespaces="ipc"))

# %% [markdown]
# ## 4. POSIX message queues
#
# A POSIX message queue is named like a file, `/jobs`, and mq_open(3) finds it
# in the caller's IPC namespace. The queues of a namespace can be seen as files
# in a mount of the `mqueue` file system (mq_overview(7)); the mount shows the
# namespace **of the process that mounted it**, as /proc shows the PID
# namespace of its mounter. So a new IPC namespace wants a new mount namespace
# and a fresh mount, here on `/mnt` (nothing changes outside: the mount
# namespace is new, and private):

# %%
def make_queues_and_look(*names):
    """In a child with new IPC and mount namespaces: make queues NAMES, mount mqueue, list it."""
    for name in names:
        ipc.create_queue(name)  # mq_open(3) with O_CREAT, then mq_close(3)
    ipc.mount_mqueue("/mnt")  # mount -t mqueue none /mnt
    return {queue: " ".join(open(f"/mnt/{queue}").read().split()) for queue in ipc.queues("/mnt")}

print("a namespace that made /jobs sees:", run(make_queues_and_look, "/jobs", namespaces="ipc,mnt"))
print("another new namespace sees:      ", run(make_queues_and_look, namespaces="ipc,mnt"))

# %% [markdown]
# Each queue is a file whose text is the queue's state: the bytes waiting in
# it, and who is to be notified of a new message (mq_notify(3)). The mount with
# commands, in one more new namespace:

# %%
!labkit run --ipc --mount -- sh -c 'mount -t mqueue none /mnt && echo "queues: [$(ls /mnt)]"'

# %% [markdown]
# And in this notebook's namespace the name `/jobs` means nothing: mq_open(3)
# without `O_CREAT` only looks it up.

# %%
try:
    ipc.mq_open("/jobs", os.O_RDONLY)
except OSError as e:
    print(f"{type(e).__name__}: {e}")

# %% [markdown]
# ## 5. The objects end with their namespace
#
# A System V object does not belong to the process that made it: it stays in
# its namespace after that process has ended, until someone removes it
# (`ipcrm`, or `IPC_RMID` in shmctl(2)) or the namespace itself ends. Here a
# second process joins box A's namespace (`labkit.join.enter`, setns(2)), and
# then box A ends:

# %%
keeper = enter(a.pid, "all", ["sleep", "infinity"])
its_ipc = Namespace.of(a.pid, "ipc")
a.kill()
a.wait()
print("what refers to A's namespace now:", [str(h) for h in holders(its_ipc)])
!labkit enter --all {keeper.pid} -- ipcs -m

# %% [markdown]
# The segment outlived its maker. When the keeper ends too, nothing refers to
# the namespace any more: no process in it, no open file or bind mount of its
# `/proc/PID/ns/ipc`, no `mqueue` mount made in it (such a mount shows the
# namespace's queues, so it keeps the namespace alive; namespaces(7)). The
# kernel frees it, and with it every object in it (ipc_namespaces(7)):
# nobody can ever name them again.

# %%
keeper.kill()
keeper.wait()
print("what refers to A's namespace now:", [str(h) for h in holders(its_ipc)])

# %% [markdown]
# **Destroyed, not just out of reach.** Once nothing refers to a namespace,
# nobody can look into it: how do we know that its objects are gone, and not
# merely unreachable? By what they cost. The memory of a POSIX queue counts
# against its creator's `RLIMIT_MSGQUEUE` (mq_overview(7)), and a System V
# segment locked in memory (`SHM_LOCK`, shmctl(2)) against `RLIMIT_MEMLOCK`,
# per user, whatever the IPC namespace. We lower the limits until there is
# room for exactly one object, let a *maker* make one in a new namespace X,
# and ask from other new namespaces whether there is room for one more:
# while X lives, there is not; once X is let go, there is again. X is held by
# an open file descriptor of `/proc/PID/ns/ipc` (`ipc.hold`), or by an
# `mqueue` mount made in it, after the maker has moved to another IPC
# namespace (setns(2)). The whole experiment runs in a user namespace of its
# own, so that the count per user starts at zero whoever runs it.

# %%
SHM_LOCK = 11  # shmctl(2), <sys/shm.h>: lock a segment in memory, charged to RLIMIT_MEMLOCK


def make_queue():
    ipc.create_queue("/jobs")  # 10 messages of 8 KiB: the default size (mq_overview(7))

def make_locked_segment():
    ipc.shmctl(ipc.shmget(KEY, 4096), SHM_LOCK)  # one page

MAKE = {"POSIX queue": make_queue, "System V segment": make_locked_segment}
REMOVE = {"POSIX queue": lambda: ipc.mq_unlink("/jobs"),
          "System V segment": lambda: ipc.shmctl(ipc.shmget(KEY, 0, 0))}


def room_for_one_more(kind):
    """In a new IPC namespace, make an object of KIND and remove it: "yes", or why not."""
    def try_it():
        try:
            MAKE[kind]()
        except OSError as e:
            return f"no, {errno.errorcode[e.errno]}"
        REMOVE[kind]()  # at once, so that it costs nothing any more
        return "yes"
    return run(try_it, namespaces="ipc")


def maker(kind, hold):
    """A process that made one object of KIND in a new IPC namespace, X, and waits.

    With HOLD "mqueue mount" it also mounts X's queues on /mnt (in a new mount
    namespace) and then moves back to our IPC namespace: only the mount holds X.
    """
    ready_r, ready_w = os.pipe()
    ours = os.open("/proc/self/ns/ipc", os.O_RDONLY)

    def make_and_wait():
        MAKE[kind]()
        if hold == "mqueue mount":
            ipc.mount_mqueue("/mnt")
            syscalls.setns(ours, "ipc")
        os.write(ready_w, b"!")
        signal.pause()

    child = spawn(make_and_wait, "ipc,mnt" if hold == "mqueue mount" else "ipc")
    os.close(ready_w)
    os.read(ready_r, 1)
    for fd in (ready_r, ours):
        os.close(fd)
    return child


def destroyed_with_its_namespace(kind, hold):
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (100_000, 100_000))  # one default queue, not two
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (4096, 4096))  # one page
    report = [f"{kind}, X held by {hold}:", f"  room for one: {room_for_one_more(kind)}"]
    child = maker(kind, hold)
    report.append(f"  the maker made one in X. Room for one more: {room_for_one_more(kind)}")
    if hold == "fd":
        fd = ipc.hold(child.pid)
        child.kill()
        child.wait()
        report.append(f"  the maker ended; the fd holds X. Room: {room_for_one_more(kind)}")
        os.close(fd)
    else:
        back = Namespace.of(child.pid, "ipc") == Namespace.of("self", "ipc")
        report.append(f"  the maker left X for our namespace: {back}; its /mnt lists "
                      f"{os.listdir(f'/proc/{child.pid}/root/mnt')}. Room: {room_for_one_more(kind)}")
        child.kill()  # its mount namespace ends, and the mount with it
        child.wait()
    # The kernel frees an IPC namespace in the background (a work queue): we wait for it.
    freed = lab.wait_until(lambda: room_for_one_more(kind) == "yes", "X and its object to be freed")
    report.append(f"  X let go. Room for one: {'yes' if freed else 'no'}")
    return report


for kind, hold in [("POSIX queue", "fd"), ("POSIX queue", "mqueue mount"), ("System V segment", "fd")]:
    print(*run(destroyed_with_its_namespace, kind, hold, namespaces="user,ipc", map_root=True), sep="\n")

# %% [markdown]
# `EMFILE` from mq_open(3) and `ENOMEM` from shmctl(2) mean "over your limit":
# the object in X still counts while anything holds X, even with no process
# in it, and stops counting once X is let go. (The mount kept X alive
# although no process was in X any more: that is the `mqueue` entry in the
# list above.)
#
# This is why a container needs no clean-up of its shared memory: the IPC
# namespace it had takes its objects along. In a namespace that never ends,
# such as this machine's own, a forgotten segment stays until someone removes
# it or the machine reboots.

# %%
b.kill()
b.wait()
print("box B ended; with it, its namespace and its objects")

# %% [markdown]
# ## Check yourself
#
# 1. Process P made a segment with key `0x1234` and exited. Can a process in
#    another IPC namespace attach it with `shmget(0x1234, 0, 0)`?
#    <details><summary>answer</summary>No: it looks the key up in its own
#    namespace, where it names nothing (ENOENT), or names a different
#    segment.</details>
# 2. Two containers run the same database, which creates its shared memory
#    with the key `0x5432`. Do they collide?
#    <details><summary>answer</summary>Not if each has its own IPC namespace: the
#    same key names a different segment in each.</details>
# 3. You run `ls /dev/mqueue` in a shell started with `unshare --ipc sh` and
#    see the host's queues. Why?
#    <details><summary>answer</summary>The mqueue mount shows the IPC namespace
#    of the process that mounted it, the host's. Mount a new one in a new mount
#    namespace: <code>unshare --ipc --mount sh</code>, then
#    <code>mount -t mqueue none /dev/mqueue</code>.</details>
# 4. When are the objects of an IPC namespace destroyed?
#    <details><summary>answer</summary>When the namespace is: once no process is
#    in it, no open file or bind mount of its <code>/proc/PID/ns/ipc</code>
#    and no <code>mqueue</code> mount made in it holds it. (Or earlier, one by
#    one, with <code>ipcrm</code> or <code>mq_unlink</code>.)</details>
# 5. Which IPC mechanisms does an IPC namespace not isolate?
#    <details><summary>answer</summary>Those found through the file system or
#    handed over as descriptors: pipes, FIFOs, UNIX domain sockets (the
#    abstract ones belong to the network namespace), shared files, memfd.
#    </details>
#
# Try one: predict the output, then run it.

# %%
print(run(make_queues_and_look, "/one", "/two", namespaces="ipc,mnt"))

# %% [markdown]
# **Next:** lesson 09, cgroups: namespaces decide what a process sees, cgroups
# what it may use. This lesson has no exercise; the `container` exercise
# (lesson 11, `sudo grader check container`) asks for an IPC namespace among
# the others.
