# Lesson 09: cgroups and cgroup namespaces.  Source of lessons/09-cgroup.ipynb
# (build it with `sudo .venv/bin/python lessons/build.py 09-cgroup`).
# rootless: no

# %% [markdown]
# # 09 · Cgroups: what a process may use, and the cgroup namespace
#
# **Goal.** Namespaces decide what a process **sees**; control groups (cgroups,
# cgroups(7)) decide how much it may **use**: how many processes, how much
# memory, CPU time, I/O. A container needs both. The cgroup *namespace* (Linux
# 4.6, cgroup_namespaces(7)) then hides where on the host its cgroup is. By the
# end of this lesson you can
#
# * show that a process in new namespaces can still use as much as it likes;
# * make a cgroup, set a limit by writing a file, and put a process in it;
# * stop a fork loop with `pids.max`, and watch the OOM killer enforce a memory limit;
# * read `/proc/self/cgroup` inside and outside a cgroup namespace, and say why
#   the order "join the cgroup, then unshare" matters.
#
# *Root:* this lesson needs root. Cgroup files belong to root (unless a cgroup
# is delegated to you, as systemd does for user sessions), and a normal user
# cannot make a cgroup with a limit. Every cgroup made here is removed at the
# end, and its name starts with `$NSLAB_CGROUP_PREFIX` (default `nslab`).
#
# *Machines differ.* Cgroups come in two versions: v1 has a hierarchy per
# controller (`/sys/fs/cgroup/pids`, `/sys/fs/cgroup/memory`, ...), v2 one tree
# for all of them. The lab VM (Debian 12, systemd) mounts v2 only, at
# `/sys/fs/cgroup`; some machines mount both ("hybrid": the controllers in v1,
# an empty v2 tree at `/sys/fs/cgroup/unified`). `labkit/cgroup.py` finds the
# layout and hides the difference, so this lesson prints nothing that depends
# on it. Read it beside cgroups(7) and cgroup_namespaces(7).

# %%
import errno
import os
import signal

import lab  # lessons/lab.py: pictures of namespaces
from labkit import cgroup
from labkit.namespace import Namespace
from labkit.spawn import collect, run

me = os.getpid()  # this notebook's kernel
layout = cgroup.layout()  # read from /proc/self/mountinfo, as findmnt -t cgroup,cgroup2 does
print("controllers this lesson needs:", {c: layout.home_of(c) is not None for c in ("pids", "memory")})

# %% [markdown]
# ## 1. A namespace limits nothing
#
# `fork_up_to(n)` forks up to N children that wait, counts how many forks
# worked, ends them, and says how the first refused fork failed. The loop is
# bounded: a real fork bomb (`:(){ :|:& };:`) is not, and would take the
# machine down. In new PID, mount, UTS, IPC and network namespaces, nothing
# stops it:

# %%
def fork_up_to(n):
    """Fork up to N children that wait; return (forks that worked, errno of the first refusal)."""
    children, refused = [], None
    for _ in range(n):
        try:
            pid = os.fork()
        except OSError as e:
            refused = errno.errorcode[e.errno]
            break
        if pid == 0:
            signal.pause()  # wait for our SIGKILL
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return len(children), refused

print("in new namespaces: (forks, refusal) =", run(fork_up_to, 20, namespaces="pid,mnt,uts,ipc,net"))

# %% [markdown]
# ## 2. A cgroup is a directory
#
# Making a directory in a cgroup file system makes a cgroup; its files are the
# controls. `cgroup.Cgroup.create()` makes one with the `pids` and `memory`
# controllers (on v1 a directory in each controller's hierarchy, on v2 one
# directory, after enabling the controllers in the parent's
# `cgroup.subtree_control`). We keep its `pids` directory in `pids_dir`:

# %%
group = cgroup.Cgroup.create(controllers=("pids", "memory"))
pids_dir = group.dir_for("pids")
print("a new cgroup:", group.name.startswith(cgroup.prefix()))
!cat {pids_dir}/pids.max {pids_dir}/pids.current

# %% [markdown]
# No limit yet (`max`), and no process in it. A limit is a number written to a
# file; `group.limit_pids(10)` writes it too:

# %%
!echo 10 > {pids_dir}/pids.max
!cat {pids_dir}/pids.max

# %% [markdown]
# ## 3. `pids.max` stops the fork loop
#
# `cgroup.spawn_in(group, target)` starts a child that first writes its own PID
# to the group's `cgroup.procs` (joining it in every hierarchy), then runs
# TARGET. Its children are born in the group. With at most 10 processes, the
# forker and 9 children fill it, and the tenth fork(2) fails with `EAGAIN`:

# %%
def in_group(fn, *args, namespaces=(), new_cgroup_namespace=False):
    """Call FN(*ARGS) in a child that is in GROUP (and in new NAMESPACES); return its result."""
    return collect(lambda target: cgroup.spawn_in(group, target, namespaces,
                                                  new_cgroup_namespace=new_cgroup_namespace), fn, args)

print("in the cgroup: (forks, refusal) =", in_group(fork_up_to, 20))
print("forks the limit refused (pids.events, max):", group.pids_refused())

# %% [markdown]
# The limit counts every process and thread in the group, whatever namespaces
# they are in: in new namespaces, as in section 1, the loop stops at the same
# place. A container cannot fork its way around its cgroup.

# %%
print("in the cgroup and new namespaces: (forks, refusal) =",
      in_group(fork_up_to, 20, namespaces="pid,mnt,uts,ipc,net"))

# %% [markdown]
# ## 4. A memory limit, and the OOM killer
#
# `hog(mib)` allocates memory one MiB at a time and writes to it (memory never
# written is only promised, not used). Outside any limit it gets what it asks for:

# %%
def hog(mib):
    """Allocate and fill MIB mebibytes, one at a time; return how many it got."""
    chunks = [b"x" * (1 << 20) for _ in range(mib)]
    return f"allocated {len(chunks)} MiB"

print(run(hog, 256))

# %% [markdown]
# In a cgroup whose limit is 32 MiB (`memory.max` on v2,
# `memory.limit_in_bytes` on v1, and no swap), the kernel's OOM killer kills it
# with `SIGKILL` once the group would go over; `run` reports the child's death:

# %%
group.limit_memory(32 << 20)
try:
    print(in_group(hog, 256))
except ChildProcessError as e:
    print("ChildProcessError:", e)
print("processes the OOM killer killed in the group:", group.oom_kills())

# %% [markdown]
# ## 5. The cgroup namespace
#
# `/proc/PID/cgroup` says which cgroup a process is in, one line per hierarchy:
# `HIERARCHY-ID:CONTROLLERS:PATH`. The path is relative to the root of the
# *reader's* cgroup namespace. A process that unshares a cgroup namespace
# (`CLONE_NEWCGROUP`) makes its **present** cgroup the root of its view.
#
# `in_group(fn, new_cgroup_namespace=True)` joins the group and *then*
# unshares. `pids_path()` is the path in the hierarchy that holds the `pids`
# controller, wherever that is mounted. Seen from here, the process is in our
# group; seen from inside, it is at the root, `/`, in every hierarchy:

# %%
def pids_path(pid="self"):
    """The cgroup path of PID in the hierarchy of the pids controller (v1 or v2)."""
    v2 = layout.home_of("pids") == layout.unified
    return cgroup.path_of(pid, "" if v2 else "pids")

outside = in_group(pids_path)
print("seen from outside:", outside.replace(group.name, "<our group>"))
print("seen from inside: ", in_group(pids_path, new_cgroup_namespace=True))
print("every line inside:", in_group(lambda: {m.path for m in cgroup.memberships()}, new_cgroup_namespace=True))

# %% [markdown]
# A process outside the namespace's root, such as this notebook's kernel, shows
# from inside with a path that climbs out of it, `/..`:

# %%
print("the kernel's cgroup, seen from inside, starts with '/..':",
      in_group(pids_path, me, new_cgroup_namespace=True).startswith("/.."))

# %% [markdown]
# The root is fixed when the namespace is made: a process that moves to another
# cgroup afterwards sees the new one relative to that root. Here the child joins
# the group, unshares, and then moves into a cgroup `later` below the group
# (made with mkdir(2) in each of the group's directories). That is also why
# `spawn_in` joins first and unshares second: the other way round, a container
# would see the host's cgroup as its root, and its own as a subdirectory.

# %%
for directory in group.dirs.values():  # one per hierarchy the group is in
    os.mkdir(f"{directory}/later")


def move_to_later():
    """In the child, after the unshare: move ourselves into GROUP/later, in every hierarchy."""
    for directory in group.dirs.values():
        with open(f"{directory}/later/cgroup.procs", "w") as f:
            f.write("0")  # 0: the writer itself
    return pids_path()

print("moved after unshare, seen from inside:", in_group(move_to_later, new_cgroup_namespace=True))

# %% [markdown]
# A picture of a process in the group with a cgroup namespace of its own, next
# to this kernel, for the types a container would have:

# %%
ready_r, ready_w = os.pipe()


def say_ready_and_wait():
    os.write(ready_w, b"!")
    signal.pause()


member = cgroup.spawn_in(group, say_ready_and_wait, "pid,ipc,uts")
os.read(ready_r, 1)  # it has joined the group and unshared its cgroup namespace
lab.picture({"this kernel": me, "process in the group": member.pid}, types=["cgroup", "pid", "ipc"])

# %%
print("processes in the group:", len(group.pids()))
print("its cgroup namespace is new:", Namespace.of(member.pid, "cgroup") != Namespace.of(me, "cgroup"))
member.kill()
member.wait()
for fd in (ready_r, ready_w):
    os.close(fd)
group.remove()  # kill what is left, rmdir in every hierarchy
print("the group is gone:", not os.path.exists(pids_dir))

# %% [markdown]
# ## Check yourself
#
# 1. A process runs in new PID, mount and network namespaces. Can it use all
#    of the machine's memory?
#    <details><summary>answer</summary>Yes: namespaces change what it sees, not
#    what it may use. A memory cgroup limits it.</details>
# 2. `pids.max` of a group is 5 and the group holds 1 process. How many more
#    forks succeed, and what does the next one return?
#    <details><summary>answer</summary>4; the fifth fails with
#    <code>EAGAIN</code> ("Resource temporarily unavailable"), and the group's
#    <code>pids.events</code> counts it under <code>max</code>.</details>
# 3. A process in cgroup `/lab/box` calls `unshare(CLONE_NEWCGROUP)`. What does
#    its `/proc/self/cgroup` show, and what does it show for a process in `/lab`?
#    <details><summary>answer</summary><code>/</code> for itself, and
#    <code>/..</code> for the process in <code>/lab</code>.</details>
# 4. Why does a container runtime put the container's first process in its
#    cgroup before it unshares the cgroup namespace?
#    <details><summary>answer</summary>The namespace's root is the cgroup the
#    process is in when it unshares. Otherwise the container would see the
#    host's cgroup as its root and its own cgroup as a subdirectory.</details>
# 5. The OOM killer killed a process in a group with a memory limit. What did
#    the parent see?
#    <details><summary>answer</summary>A child killed by <code>SIGKILL</code>
#    (exit status -9 in Python, 137 in a shell); the group's
#    <code>memory.events</code> (v2) or <code>memory.oom_control</code> (v1)
#    counts an <code>oom_kill</code>.</details>
#
# Try one: predict the output, then run it (it makes and removes a group).

# %%
with cgroup.Cgroup.create(controllers=("pids",)) as small:
    small.limit_pids(3)
    print(collect(lambda target: cgroup.spawn_in(small, target), fork_up_to, (20,)))

# %% [markdown]
# **Next:** lesson 10, time namespaces. This lesson has no exercise; the
# `container` exercise (lesson 11, `sudo grader check container`) asks for a
# cgroup namespace.
