# Lesson 05: PID namespaces.  Source of lessons/05-pid.ipynb
# (build it with `sudo .venv/bin/python lessons/build.py 05-pid`).
# rootless: yes
# exercise: pid1

# %% [markdown]
# # 05 · PID namespaces: every namespace counts from 1
#
# **Goal.** A PID namespace (Linux 2.6.24, pid_namespaces(7)) numbers its
# processes from 1. Namespaces nest, and a process has a PID in its own
# namespace and in every one above it. The first process is the namespace's
# init, with the duties of an init. By the end of this lesson you can
#
# * start a shell as PID 1 and read its PIDs at every level (`NSpid`);
# * explain why its parent is PID 0, and who can see whom in the tree;
# * walk the tree with NS_GET_PARENT and hit the nesting limit of 32;
# * say why a new PID namespace wants a new `/proc`, and a mount namespace to put it in;
# * list PID 1's duties (reap orphans, handle signals, take everybody along
#   when it dies) and solve the exercise `pid1`.
#
# *Root or not:* this lesson runs as root and as a normal user, with the same
# output. As a normal user the shells start in a user namespace in which you
# are root, and labkit adds one by itself (lesson 01, section 6).
#
# The functions of this lesson are in `labkit/pid.py`: read it beside
# pid_namespaces(7). Its last part is an init, as tini is one.

# %%
import os
import signal
import subprocess
import sys

import lab  # lessons/lab.py: shells to type into, pictures, waiting for processes
from labkit import pid
from labkit.join import run_in
from labkit.namespace import Namespace
from labkit.spawn import run, spawn

me = os.getpid()  # this notebook's kernel

# %% [markdown]
# ## 1. PID 1
#
# `unshare --pid --fork --mount-proc sh`: unshare(2) with `CLONE_NEWPID`
# does not move the caller, only its future children, so `--fork` starts the
# shell as a child, the first process of the new namespace.
# (`--mount-proc` is section 6's business.)

# %%
sh = lab.Shell("sh")
sh("unshare --pid --fork --mount-proc sh")
first_shell = sh.current_pid()  # the new shell, as we number it (its $$ is 1)
sh("echo $$")
sh("ps -o pid,ppid,comm")

# %% [markdown]
# The shell is PID 1 and `ps`, its child, PID 2. The same from Python: `run`
# calls a function in a child, here in a new PID namespace, and brings back
# what it returns.

# %%
print("getpid() in a new PID namespace:", run(os.getpid, namespaces="pid"))

# %% [markdown]
# ## 2. One PID per level
#
# The shell is also a process of *our* namespace, where it has another
# number. `/proc/PID/status` lists every PID of a process on its `NSpid:`
# line, from the namespace of that `/proc` down to the process's own.
# Read through our `/proc`, the shell has two; through its own, one:

# %%
levels = pid.nspid(first_shell)
print(f"NSpid through our /proc: PID {levels[0]} for us, then {levels[-1]} in its own namespace")
sh("grep NSpid /proc/$$/status")

# %% [markdown]
# ## 3. The parent across the boundary is 0
#
# The shell's parent is the unshare process, which stayed in our namespace.
# Inside, that process has no number, and getppid(2) returns 0:

# %%
sh("echo $PPID")
parent = pid.parent_pid(first_shell)  # PPid in our /proc
print("its parent, seen from outside:", open(f"/proc/{parent}/comm").read().strip(), f"(PID {parent})")
print("getppid() of PID 1 in a new namespace:", run(os.getppid, namespaces="pid"))

# %% [markdown]
# ## 4. The tree: an ancestor sees its descendants, not the other way round
#
# PID namespaces form a tree. A process sees (and may signal) the processes
# of its own namespace and of every namespace below it; above it, nothing.
# We see the shell. The shell's namespace has no number for this kernel, so
# from inside we cannot even name it: `kill(pid, 0)` asks "may I signal it?"
# without sending anything.

# %%
def may_signal(target):
    try:
        os.kill(target, 0)
        return "yes"
    except ProcessLookupError:
        return "no such process"

print("we may signal the shell:", may_signal(first_shell))
print("a new namespace may signal this kernel:", run(may_signal, me, namespaces="pid"))

# %% [markdown]
# One more level: the shell starts a shell in a namespace of its own. Then a
# picture of the live tree, drawn from `/proc`: each namespace with its
# processes, each process with its PIDs from our level down (`NSpid`), and
# each namespace below its parent, as the ioctl `NS_GET_PARENT` (ioctl_ns(2))
# reports it.

# %%
sh("unshare --pid --fork --mount-proc sh")
sh("ps -o pid,ppid,comm")

# %% [markdown]
# `lab.pid_tree` draws it (read it in lessons/lab.py): this kernel, and the
# first shell with every process below it (`lab.descendants`, from
# `/proc/PID/task/PID/children`).

# %%
tree = {me: "this kernel"}
tree.update({p: lab.program_of(p) for p in lab.descendants(sh.pid)})
lab.pid_tree(tree)

# %% [markdown]
# Read a process's PIDs left to right: ours first, its own last. The inner
# shell is PID 1 at level 2, has a number at level 1 too, and one here. The
# unshare processes stay one level up from the shells they started.
#
# `NS_GET_PARENT` walks up, as far as the caller can see. From outside, the
# inner namespace has two ancestors here; from inside a namespace, none at all
# (the kernel answers EPERM rather than show what lies above):

# %%
names = {Namespace.of(me, "pid"): "ours", Namespace.of(first_shell, "pid"): "the first shell's"}
print("ancestors of the inner namespace:", [names[ns] for ns in pid.ancestors_of(sh.current_pid())])
print("ancestors seen from inside a new namespace:", run(pid.ancestors_of, namespaces="pid"))
try:
    run(lambda: Namespace.of("self", "pid").parent(), namespaces="pid")
except OSError as e:
    print(f"{type(e).__name__}: {e}")

# %% [markdown]
# ## 5. The limit: 32 levels
#
# PID namespaces nest at most 32 levels below the initial one
# (`MAX_PID_NS_LEVEL`). `pid.descend(n, fn)` calls FN n namespaces below us,
# each level a child that creates the next. 32 levels down, NSpid has a PID
# for every level, and one more level is refused:

# %%
def at_the_bottom():
    try:
        run(os.getpid, namespaces="pid")  # unshare(CLONE_NEWPID), then fork
        deeper = "created"
    except OSError as e:
        deeper = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return len(pid.nspid()), deeper

print("this kernel's level:", pid.nesting_level(me))
levels, deeper = pid.descend(32, at_the_bottom)
print("PIDs of a process 32 levels below:", levels)
print("a PID namespace one level deeper:", deeper)

# %% [markdown]
# ## 6. A new PID namespace wants a new /proc
#
# `/proc` shows the PID namespace of the process that *mounted* it, whoever
# reads it. Without a new `/proc`, a process in a new PID namespace is PID 1
# by getpid(), while `/proc/self` names it by our number and `/proc` lists our
# processes:

# %%
def looks_at_proc():
    return {"getpid()": os.getpid(),
            "/proc/self is": int(os.readlink("/proc/self")),
            "processes in /proc": len([e for e in os.listdir("/proc") if e.isdigit()])}

for mount_proc in (False, True):
    seen = run(looks_at_proc, namespaces="pid", mount_proc=mount_proc)
    self_is = 1 if seen["/proc/self is"] == 1 else f"PID {seen['/proc/self is']} (our number)"
    whose = "its own process" if seen["processes in /proc"] == 1 else "ours"
    print(f"mount_proc={mount_proc!s:5}  getpid(): {seen['getpid()']}  /proc/self: {self_is}  "
          f"/proc lists {whose}")

# %% [markdown]
# And why `--mount-proc` implies `--mount`: mounting the new `/proc` in our
# mount namespace would replace `/proc` for every process of the machine. So
# unshare makes a mount namespace first, makes it private (lesson 03), and
# mounts there; strace shows the order (typed into the inner shell, where the
# `[pid N]` of strace is a number of the innermost namespace):

# %%
sh("strace -f -qq -e signal=none -e trace=unshare,mount unshare --pid --fork --mount-proc true")

# %% [markdown]
# ## 7. PID 1's duties: orphans come to it
#
# When a process ends, its children are *reparented*: to the nearest ancestor
# that made itself a subreaper (prctl(2) `PR_SET_CHILD_SUBREAPER`), else to
# PID 1 of their namespace. `pid.parent_of_an_orphan()` makes an orphan and
# returns its new parent, as the orphan sees it:

# %%
print("an orphan's new parent, in a new PID namespace:", run(pid.parent_of_an_orphan, namespaces="pid"))

def as_subreaper():
    pid.become_subreaper()
    return pid.parent_of_an_orphan() == os.getpid()

print("with a subreaper above it, the orphan goes to the subreaper:", run(as_subreaper))

# %% [markdown]
# ## 8. ... and become zombies unless it reaps them
#
# A process that has ended stays a *zombie* (state `Z`) until its parent
# collects its exit status with wait(2). For orphans, that parent is PID 1. A
# PID 1 that never waits, like sleep(1), keeps them forever. The shell below
# leaves an orphan that ends once PID 1 has become `sleep infinity`:

# %%
ORPHAN = '(until pgrep -xf "sleep infinity" > /dev/null; do sleep 0.01; done &); exec sleep infinity'

def ps():
    return subprocess.run(["ps", "-o", "pid,ppid,stat,comm", "--pid", "1", "--ppid", "1"],
                          capture_output=True, text=True).stdout

no_init = spawn(["sh", "-c", ORPHAN], "pid", mount_proc=True)
ns = Namespace.of(no_init.pid, "pid")

def the_orphan_is_a_zombie():  # sh has exec-ed sleep, and the loop it left behind has ended
    sleeping = open(f"/proc/{no_init.pid}/cmdline").read() == "sleep\0infinity\0"
    return sleeping and pid.zombies_in(ns)

lab.wait_until(the_orphan_is_a_zombie, "the orphan to end")
print(run_in(no_init.pid, "all", ps), end="")  # ps inside the namespace, as nsenter would run it
print("zombies:", len(pid.zombies_in(ns)))

# %% [markdown]
# An init that reaps: the same command under `python -m labkit.pid`, a small
# init that does what tini does. The orphan comes to it and is collected: once
# the orphan is gone, only the init and `sleep infinity` are left, and no zombie.

# %%
INIT = [sys.executable, "-m", "labkit.pid"]
with_init = spawn([*INIT, "sh", "-c", ORPHAN], "pid", mount_proc=True)
ns = Namespace.of(with_init.pid, "pid")

def only_init_and_sleep():
    members = pid.processes_in(ns)
    return len(members) == 2 and open(f"/proc/{members[1]}/cmdline").read() == "sleep\0infinity\0"

lab.wait_until(only_init_and_sleep, "the orphan to be reaped")
print(run_in(with_init.pid, "all", ps), end="")
print("zombies:", len(pid.zombies_in(ns)))

# %% [markdown]
# ## 9. PID 1 gets only the signals it has a handler for
#
# The kernel protects an init: a signal whose action would be the default
# (for most signals: to die) is dropped, from inside the namespace and from
# outside alike. Only SIGKILL and SIGSTOP sent from an ancestor namespace are
# forced on it. `sleep` has no handlers. From inside, `kill -KILL 1` does nothing:

# %%
def kill_pid_1():
    os.kill(1, signal.SIGTERM)
    os.kill(1, signal.SIGKILL)

run_in(no_init.pid, "all", kill_pid_1)
print("after SIGTERM and SIGKILL from inside, PID 1 is alive:", no_init.poll() is None)

# %% [markdown]
# From outside (our namespace is an ancestor), SIGTERM is dropped too, and
# SIGKILL is forced:

# %%
no_init.kill(signal.SIGTERM)
print("after SIGTERM from outside, alive:", no_init.poll() is None)
no_init.kill(signal.SIGKILL)
print("then it ended by", signal.Signals(-no_init.wait()).name)

# %% [markdown]
# An init that wants SIGTERM must ask for it. labkit's init blocks the
# signals and takes them with sigwaitinfo(2) (a blocked signal is never
# dropped, it stays pending), and forwards them to its command. So a SIGTERM
# from outside reaches `sleep`, which dies of it, and the init exits with
# 128 + 15, as a shell would report it:

# %%
with_init.kill(signal.SIGTERM)
print("the init exited with", with_init.wait())

# %% [markdown]
# ## 10. When PID 1 dies, the namespace dies
#
# When the init of a namespace ends, the kernel sends SIGKILL to every other
# process in it.

# %%
def commands_in(ns):
    return [lab.program_of(p) for p in pid.processes_in(ns)]

doomed = spawn(["sh", "-c", "sleep infinity & sleep infinity & wait"], "pid", mount_proc=True)
ns = Namespace.of(doomed.pid, "pid")
lab.wait_until(lambda: commands_in(ns) == ["sh", "sleep", "sleep"], "the two sleeps")
members = pid.processes_in(ns)
print("processes in the namespace:", commands_in(ns))
doomed.kill(signal.SIGKILL)  # PID 1 only
doomed.wait()
print("left after PID 1 died:", [p for p in members if os.path.exists(f"/proc/{p}")])

# %% [markdown]
# And nobody can be started there any more: fork(2) into a namespace whose
# init has ended fails with ENOMEM. `unshare --pid` *without* `--fork` shows
# it: the shell it runs stays outside, its first child (`sleep 0`) becomes
# PID 1 of the new namespace and ends at once, and the next fork fails.
# strace shows the failed call (`-Z`: only calls that fail; dash forks with vfork):

# %%
sh("strace -f -qq -Z -e trace=fork,vfork,clone,clone3 -e signal=none "
   "unshare --pid sh -c 'sleep 0; sleep 0; echo not reached'")

# %%
lab.close_all()

# %% [markdown]
# ## Check yourself
#
# 1. A process reads `NSpid: 5120 37 1` in our `/proc/PID/status`. How deep is
#    it, and what does getpid() return to it?
#    <details><summary>answer</summary>Two levels below the namespace of our
#    <code>/proc</code>; getpid() returns 1: the last number is its PID in its own
#    namespace.</details>
# 2. Why does `unshare --pid sh` (without `--fork`) fail at the shell's second
#    command that forks?
#    <details><summary>answer</summary>unshare(CLONE_NEWPID) moves only the
#    caller's future children. The shell's first child becomes PID 1 of the new
#    namespace; when it ends, the namespace's init is gone and fork() fails with
#    ENOMEM (section 10).</details>
# 3. Inside a container, `ps` lists the host's processes. What was forgotten?
#    <details><summary>answer</summary>A fresh <code>/proc</code>: the one in
#    there still shows the PID namespace of whoever mounted it, the host.</details>
# 4. `docker stop` sends SIGTERM to the container's PID 1, a shell script
#    without a `trap`. What happens, and why?
#    <details><summary>answer</summary>Nothing: PID 1 has no handler, so the
#    kernel drops the signal. After its timeout docker sends SIGKILL, which is
#    forced from the ancestor namespace.</details>
# 5. Why do zombies pile up in a container whose PID 1 is a server that
#    never calls wait()?
#    <details><summary>answer</summary>Orphans of the namespace are reparented
#    to PID 1; when they end, only their parent can reap them.</details>
#
# Try one: `pid.descend(3, fn)` calls FN three levels down; each level is a
# `run()`: PID 1 of the level forks a middle process, which creates the next
# namespace and forks its PID 1. Predict the NSpid of the process at the
# bottom (without our own number), then run it.

# %%
print(pid.descend(3, pid.nspid)[1:])

# %% [markdown]
# ## Exercise `pid1`: an init that reaps
#
# Write `exercises/pid1/solution` (EXERCISES.md, section 4):
#
# > `solution COMMAND [ARG...]`
# >
# > The grader starts `solution` as **PID 1 of a new PID namespace** (with a
# > matching `/proc`). `solution` must:
# >
# > - start COMMAND as its child;
# > - reap every process that ends up as its child, including orphans
# >   reparented to it, so that no zombie lives for more than one second;
# > - forward SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 that it
# >   receives to COMMAND;
# > - when COMMAND exits, exit with COMMAND's exit status, or with 128+N if
# >   COMMAND was killed by signal N.
#
# Sections 7 to 9 show each duty; `labkit/pid.py` (its `run_init`) and tini
# are two ways to meet them. Try yours with `labkit run -fp --mount-proc --
# exercises/pid1/solution sh`, then:
#
# ```
# sudo grader check pid1
# ```
