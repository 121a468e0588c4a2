# Lesson 02: the UTS namespace.  Source of lessons/02-uts.ipynb
# (build it with `sudo .venv/bin/python lessons/build.py 02-uts`).
# rootless: yes
# exercise: uts

# %% [markdown]
# # 02 · The UTS namespace: two shells, two hostnames
#
# **Goal.** A UTS namespace (Linux 2.6.19, uts_namespaces(7)) holds two
# strings: the hostname and the NIS domain name. It is the simplest namespace,
# so every move a namespace allows is easy to see with it: create one, change
# what it holds, compare `/proc/PID/ns` links, join it, watch it end. By the
# end of this lesson you can
#
# * give a shell a hostname of its own without renaming the machine;
# * prove from `/proc/PID/ns` which processes share a UTS namespace;
# * join the UTS namespace of a running process;
# * say which parts of uname(2) a UTS namespace owns and which belong to the kernel;
# * solve the exercise `uts`.
#
# *Root or not:* this lesson runs as root and as a normal user, with the same
# output. As a normal user the shells below start in a user namespace in which
# you are root (see lesson 01, section 6, and `lessons/lab.py`). The stored
# outputs were recorded in a UTS namespace whose hostname is `vm` (lesson 01
# says where).
#
# The functions of this lesson are in `labkit/uts.py`: read it beside
# uts_namespaces(7) and sethostname(2).

# %%
import os
import socket

import lab  # lessons/lab.py: shells to type into, pictures of namespaces
from labkit import uts
from labkit.namespace import Namespace
from labkit.spawn import run

me = os.getpid()  # this notebook's kernel
print("this kernel's hostname:", uts.hostname())

# %% [markdown]
# ## 1. Two shells on one machine
#
# The classic demonstration (Michael Kerrisk, "Namespaces in operation", LWN
# 2013) uses two terminals. Here each is a `lab.Shell`: a real interactive
# sh(1) on a pseudo-terminal, into which a cell types a command and Enter.

# %%
sh1 = lab.Shell("sh1")
sh2 = lab.Shell("sh2")
sh1("hostname")
sh2("hostname")

# %% [markdown]
# Both print this machine's hostname because both are in the same UTS
# namespace. Their `/proc/$$/ns/uts` links name the same inode:

# %%
sh1("readlink /proc/$$/ns/uts")
sh2("readlink /proc/$$/ns/uts")
print("same UTS namespace:", Namespace.of(sh1.current_pid(), "uts") == Namespace.of(sh2.current_pid(), "uts"))

# %% [markdown]
# ## 2. sh2 makes a UTS namespace of its own
#
# `unshare --uts sh` calls `unshare(CLONE_NEWUTS)`, which moves the calling
# process into a new UTS namespace, and then runs (execve) a new shell, which
# stays in it. The new namespace starts as a copy of the old one, hostname
# included; from then on, the two are independent.

# %%
sh2("unshare --uts sh")
sh2("hostname")  # a copy: the same name, for now
sh2("hostname bizarro")
sh2("hostname")

# %%
sh1("hostname")

# %% [markdown]
# The new name is sh2's alone: sh1 still sees the machine's. The links say why:

# %%
sh1("readlink /proc/$$/ns/uts")
sh2("readlink /proc/$$/ns/uts")
print("same UTS namespace:", Namespace.of(sh1.current_pid(), "uts") == Namespace.of(sh2.current_pid(), "uts"))

# %% [markdown]
# The picture shows each process and the UTS namespace it is in, with the
# hostname that namespace holds. The hostname of another namespace cannot be
# read from a file: `/proc/sys/kernel/hostname` always answers for the reader's
# namespace. So `labkit.uts.hostname_of(pid)` does what `nsenter --uts` does: a
# child process joins PID's namespace with setns(2) and reads it there.

# %%
lab.picture({"this kernel": me, "sh1": sh1, "sh2's first shell": sh2.pid, "sh2": sh2},
            note=lambda pid: f"hostname {lab.hostname_seen_by(pid)}")

# %% [markdown]
# "sh2's first shell" is still in the old namespace. unshare(1) moved only
# itself before it became the new shell; the first shell is its parent, and
# waits for it, as it waits for any command.

# %% [markdown]
# ## 3. A third shell joins with nsenter
#
# `nsenter --target PID --uts sh` opens `/proc/PID/ns/uts`, calls setns(2) on
# the descriptor, and runs a shell. PID is the shell that now reads sh2's
# commands (`sh2.current_pid()` asks it for `$$`):

# %%
sh3 = lab.Shell("sh3")
sh3("hostname")
sh3(f"nsenter --target {sh2.current_pid()} --uts sh")
sh3("hostname")

# %%
sh3("readlink /proc/$$/ns/uts")
print("sh3 is in sh2's UTS namespace:",
      Namespace.of(sh3.current_pid(), "uts") == Namespace.of(sh2.current_pid(), "uts"))

# %% [markdown]
# One namespace, one hostname: a change made in sh3 is seen in sh2, and
# nowhere else.

# %%
sh3("hostname bizarro-world")
sh2("hostname")
sh1("hostname")

# %%
lab.picture({"this kernel": me, "sh1": sh1, "sh2": sh2, "sh3": sh3},
            note=lambda pid: f"hostname {lab.hostname_seen_by(pid)}")

# %% [markdown]
# ## 4. The NIS domain name
#
# The other string of a UTS namespace is the NIS domain name, used by Sun's old
# Network Information Service (yp). It has nothing to do with DNS domains. It
# is "(none)" until somebody sets it with setdomainname(2), as domainname(1) does:

# %%
sh2("domainname")
sh2("domainname lab.example")
sh2("domainname")
sh1("domainname")

# %% [markdown]
# `/proc/sys/kernel/hostname` and `/proc/sys/kernel/domainname` show the two
# strings of the reader's UTS namespace, so the same files read differently in
# sh1 and in sh2:

# %%
sh2("cat /proc/sys/kernel/hostname /proc/sys/kernel/domainname")
sh1("cat /proc/sys/kernel/hostname /proc/sys/kernel/domainname")

# %% [markdown]
# ## 5. What a UTS namespace cannot change
#
# uname(2) fills a `struct utsname` with six strings. A UTS namespace owns two
# of them, `nodename` (the hostname) and `domainname`. The others describe the
# one kernel that every namespace shares, such as the release:

# %%
sh2("uname --kernel-name --nodename --kernel-release")
sh1("uname --kernel-name --nodename --kernel-release")

# %% [markdown]
# Not even root in its own UTS namespace may change the release: the file is
# read-only (mode 0444) for everybody, root included.

# %%
sh2("cat /proc/sys/kernel/osrelease")
sh2("stat -c 'mode %a: %A' /proc/sys/kernel/osrelease")
sh2("echo 9.9.9 > /proc/sys/kernel/osrelease")

# %% [markdown]
# The same from Python: `uts.uname_in_new_namespace(name)` calls uname(2) in a
# child with a new UTS namespace and hostname `name`.

# %%
fresh = uts.uname_in_new_namespace("fresh")
print("nodename:", fresh["nodename"])
print("release is ours:", fresh["release"] == os.uname().release)

# %% [markdown]
# A hostname has at most 64 bytes (`HOST_NAME_MAX`); sethostname(2) refuses a
# longer one with `EINVAL`. labkit's error says so:

# %%
try:
    run(uts.set_hostname, "x" * 65, namespaces="uts")
except OSError as e:
    print(f"{type(e).__name__}: {e}")

# %% [markdown]
# ## 6. Who may rename a namespace
#
# sethostname(2) needs `CAP_SYS_ADMIN` in the user namespace that owns the UTS
# namespace. An unprivileged process cannot rename the namespace it is in
# (`lab.AS_NOBODY` runs a command as nobody, as in lesson 01):

# %%
!{lab.AS_NOBODY} hostname not-allowed

# %% [markdown]
# With a user namespace of its own, it can: the new UTS namespace is then owned
# by the new user namespace, where the process has every capability. labkit's
# `spawn` and `run` add that user namespace by themselves when they are not run
# by root ("rootless mode"):

# %%
!{lab.AS_NOBODY} unshare --user --map-root-user --uts sh -c 'hostname mine; hostname'
print(run(socket.gethostname, namespaces="uts", hostname="from-labkit"))
print("this kernel's hostname:", uts.hostname())

# %% [markdown]
# ## 7. The end of a namespace
#
# The namespace that sh2 made lives while a process is in it: sh2's second
# shell and sh3's. When both leave, nothing refers to it and the kernel frees it.

# %%
bizarro = Namespace.of(sh2.current_pid(), "uts")
print(f"processes in {bizarro}:", len(lab.processes_in(bizarro)))
sh2("exit")
sh3("exit")
print(f"processes in {bizarro}:", len(lab.processes_in(bizarro)))

# %%
sh2("hostname")  # the first shells were in our namespace all along
sh3("hostname")
lab.close_all()
print("this kernel's hostname:", uts.hostname())

# %% [markdown]
# ## Check yourself
#
# 1. In a shell started by `unshare --uts sh` you set the hostname to `x` and
#    type `exit`. What does `hostname` print now, and what happened to `x`?
#    <details><summary>answer</summary>The machine's name: you are back in the
#    first shell, which never left the old namespace. <code>x</code> was
#    freed with the new namespace, whose last process just ended.</details>
# 2. sh3 joined sh2's namespace with nsenter. If sh2 exits first, does the
#    namespace end?
#    <details><summary>answer</summary>No: sh3 is still in it. It ends with the
#    last process (or open file, or bind mount) that refers to it.</details>
# 3. Why does `uname -r` print the same in every UTS namespace?
#    <details><summary>answer</summary>The release describes the kernel, and
#    all namespaces share one kernel; a UTS namespace owns only the hostname
#    and the NIS domain name.</details>
# 4. A normal user types `unshare --uts sh`. What happens, and what works instead?
#    <details><summary>answer</summary><code>unshare failed: Operation not
#    permitted</code> (no CAP_SYS_ADMIN). <code>unshare --user --map-root-user
#    --uts sh</code> works, and so does <code>labkit run -u</code>.</details>
# 5. Which two processes of section 3 would you name to show, with
#    `readlink`, that sh3 joined sh2's namespace?
#    <details><summary>answer</summary>The shells that read the commands
#    (<code>current_pid()</code>): sh2's second shell and sh3's second shell.
#    The first shells stayed in the old namespace.</details>
#
# Try one: predict the output, then run it.

# %%
print(run(socket.gethostname, namespaces="uts"))  # a new namespace, no hostname given

# %% [markdown]
# ## Exercise `uts`: your own hostname
#
# Write `exercises/uts/solution`, an executable (Python, a shell script, C,
# ...) with this contract (EXERCISES.md, section 1):
#
# > `solution HOSTNAME [COMMAND [ARG...]]`
# >
# > Run COMMAND (default: an interactive `/bin/sh`) in a **new UTS namespace**
# > whose hostname is HOSTNAME. The hostname of the caller's UTS namespace is
# > never changed. COMMAND's standard input, output and terminal are the
# > caller's. The exit status of `solution` is COMMAND's exit status.
#
# Hints: the order is unshare(2), sethostname(2), execve(2), as in section 2;
# exec the command rather than waiting for it, and its exit status is yours.
# Try it by hand (`sudo exercises/uts/solution box hostname`, then `hostname`),
# then let the grader check every sentence of the contract:
#
# ```
# sudo grader check uts
# ```
