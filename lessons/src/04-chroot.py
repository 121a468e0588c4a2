# Lesson 04: chroot versus a mount namespace and pivot_root.  Source of lessons/04-chroot.ipynb
# (build it with `sudo .venv/bin/python lessons/build.py 04-chroot`).
# rootless: no
# exercise: jail

# %% [markdown]
# # 04 · chroot versus a mount namespace: a jail that holds
#
# **Goal.** chroot(2), as old as Unix Version 7 (1979), changes where one
# process's path lookup starts for "/". It was never meant as a security
# boundary, and root walks out of it. pivot_root(2) in a new mount namespace
# changes the root of a whole namespace, and with a PID and a network
# namespace beside it, the holes close one by one. By the end of this lesson you can
#
# * build a root file system by hand: a shell and the libraries ldd(1) lists;
# * show that chroot leaves the working directory outside, and break out of
#   a chroot jail as root (exercise `escape`);
# * show what a fresh `/proc` and `/sys` reveal inside a plain chroot: the
#   host's processes, which it can kill, and the host's network devices;
# * build a jail with a mount namespace and pivot_root(2), and say which
#   namespace closes which hole (exercise `jail`).
#
# *Root:* this lesson needs real root (`sudo make lab`). Its point is what
# *root* inside a chroot can do, and mounting the host's `/proc` needs
# privilege over the host's PID namespace, which no user namespace gives.
# It never touches the machine: every mount happens in a child with a mount
# namespace of its own, the "host devices" belong to a network namespace we
# make for the purpose, and the only process killed is a `sleep` we started
# to be killed.
#
# The functions of this lesson are in `labkit/jail.py`: read it beside
# chroot(2) and pivot_root(2).

# %%
import ctypes
import inspect
import os
import shutil
import signal
import tempfile

import lab  # lessons/lab.py: pictures of namespaces
from labkit import jail, mount, net, syscalls
from labkit.spawn import run, spawn

me = os.getpid()  # this notebook's kernel
rootfs = tempfile.mkdtemp()  # the jail's root directory, empty for now
outside = tempfile.mkdtemp()  # a directory outside the jail, with a file the jail should not reach
secret = f"{outside}/secret"
with open(secret, "w") as f:
    f.write("the host's secret\n")
print("jail:", rootfs)
print("secret outside it:", secret)

# %% [markdown]
# ## 1. A root file system by hand
#
# chroot(8) runs a command with a directory as its root. Everything the command
# needs must be in there. A program copied alone does not start, and the
# error is misleading: the program is there, yet "No such file or directory".

# %%
os.makedirs(f"{rootfs}/bin")
shutil.copy("/usr/bin/sleep", f"{rootfs}/bin/sleep")  # the program alone
!ls {rootfs}/bin
!chroot {rootfs} /bin/sleep 0

# %% [markdown]
# The missing file is the *dynamic loader*, which the kernel starts first (its
# path is written in the program's ELF header), and which then loads the
# shared libraries. ldd(1) lists both. The addresses it prints change at every
# run (address space layout randomisation), so we cut them off:

# %%
!ldd /bin/sh | sed 's/ (0x[0-9a-f]*)$//'

# %% [markdown]
# `linux-vdso.so.1` lives in the kernel and has no file. The other two must
# be in the jail at the same paths. `jail.copy_program` copies a program and
# what ldd lists:

# %%
for path in jail.copy_program("sh", rootfs, "/bin/sh"):
    print("copied", path)
!cd {rootfs} && find . -type f | sort

# %% [markdown]
# The shell starts now. There is no `ls` in the jail, but the shell's globbing
# lists a directory (`echo /*`). And sleep needs the same two files as sh, so
# it starts too:

# %%
!chroot {rootfs} /bin/sh -c 'echo "hello from the jail; / holds:" /*'
!chroot {rootfs} /bin/sleep 0 && echo "sleep ran"

# %% [markdown]
# ## 2. chroot changes one thing: where "/" starts
#
# chroot(2) changes the root directory of the calling process and nothing
# else: not its working directory, not its open files, not its namespaces.
# chroot(8) therefore does a chdir("/") after it. Without that chdir, the
# process is in the jail and works outside it. A child process does it here
# (`run` calls the function in a child and brings back its result):

# %%
def chroot_without_chdir():
    os.chdir(outside)
    os.chroot(rootfs)  # root moves; the working directory stays in `outside`
    return {"/ holds": sorted(os.listdir("/")),
            ". holds": sorted(os.listdir(".")),
            "reading secret from .": open("secret").read()}

for what, value in run(chroot_without_chdir).items():
    print(f"{what:22} {value!r}")

# %% [markdown]
# The directory the process works in cannot even be named from its root: the
# getcwd system call answers with a path that starts "(unreachable)", and the
# C library's getcwd(3) turns that into ENOENT (since glibc 2.27, getcwd(3), BUGS). We call
# both: the system call through syscall(2) with its number, as ctypes lets us.

# %%
libc = ctypes.CDLL(None, use_errno=True)
SYS_getcwd = {"x86_64": 79, "aarch64": 17, "riscv64": 17}[os.uname().machine]  # <asm/unistd.h>

def where_am_i():
    os.chdir(outside)
    os.chroot(rootfs)
    buffer = ctypes.create_string_buffer(4096)
    libc.syscall(SYS_getcwd, buffer, len(buffer))
    try:
        c_library = os.getcwd()
    except OSError as e:
        c_library = f"{type(e).__name__}: {e}"
    return buffer.value.decode(), c_library

kernel_says, libc_says = run(where_am_i)
print("the system call getcwd:", kernel_says)
print("the C library's getcwd:", libc_says)

# %% [markdown]
# ## 3. chroot does not stack: root walks out
#
# A process keeps the capability `CAP_SYS_CHROOT` inside the jail, so it may
# call chroot again. The kernel keeps one root directory per process, not a
# stack of them, and ".." stops only at that root. The classic escape, in
# labkit's words:

# %%
print(inspect.getsource(jail.escape_chroot))

# %% [markdown]
# In a chroot jail with the working directory inside (as chroot(8) leaves
# it), the secret cannot be reached by its path, until the escape:

# %%
def try_the_secret():
    jail.enter_chroot(rootfs)  # chroot(rootfs), chdir("/")
    before = os.path.exists(secret)
    escaped = jail.escape_chroot()
    return before, escaped, open(secret).read() if escaped else None

before, escaped, text = run(try_the_secret)
print("secret reachable inside the jail:", before)
print("escaped:", escaped)
print("read after the escape:", repr(text))

# %% [markdown]
# That is exercise `escape`: do it yourself, in any language, from a jail the
# grader builds. (The escape needs root; a jail whose processes are not root,
# or cannot call chroot, does not open this way. The holes below do not need
# the escape at all.)
#
# ## 4. A /proc inside the chroot shows the host's processes
#
# A process in a chroot is in the host's PID namespace. If it may mount, it
# mounts `proc` and sees every process of the machine, and root can signal
# them. We show it on a process started to be killed:

# %%
sleeper = spawn(["sleep", "infinity"])  # the sacrificial process; no namespaces of its own
print("the sleeper is process", sleeper.pid)

# %% [markdown]
# The chroot happens in a child that has a mount namespace of its own. That is
# only so that the mount of proc does not appear in the machine's mount table
# and ends with the child: proc shows the PID namespace of the process that
# mounts it, and the child is in ours, as a plain chroot would be.

# %%
def mount_proc_and_kill(victim):
    jail.enter_chroot(rootfs)
    os.makedirs("/proc", exist_ok=True)
    syscalls.mount("proc", "/proc", "proc")
    found = {"sees this notebook's kernel": os.path.exists(f"/proc/{me}"),
             "sees the sleeper": os.path.exists(f"/proc/{victim}"),
             "the sleeper's command line": open(f"/proc/{victim}/cmdline").read().replace("\0", " ").strip()}
    os.kill(victim, signal.SIGKILL)
    return found

for what, value in run(mount_proc_and_kill, sleeper.pid, namespaces="mnt").items():
    print(f"{what:28} {value!r}")
print("the sleeper was killed by", signal.Signals(-sleeper.wait()).name)

# %% [markdown]
# Through that `/proc` also lies `/proc/PID/root` of every process outside,
# each a way back to the host's files (section 6 uses it).
#
# ## 5. A /sys inside the chroot shows the host's network devices
#
# sysfs shows the network devices of the network namespace of whoever mounts
# it. To show this without listing this machine's own devices, the chroot
# runs in a child that plays the host: it has a network namespace of its own,
# with `lo` and a veth pair `eth0`/`wire` (made with labkit.net), and a mount
# namespace so that nothing leaks.

# %%
def as_the_host(fn, *args, **kwargs):
    """In a child with new mount and network namespaces: give it devices, then call FN."""
    def host():
        net.add_veth("eth0", "wire")
        return fn(*args, **kwargs)
    return run(host, namespaces="mnt,net")

def mount_sys_in_chroot():
    devices = sorted(net.links())  # ip link, before the chroot
    jail.enter_chroot(rootfs)
    os.makedirs("/sys", exist_ok=True)
    syscalls.mount("sysfs", "/sys", "sysfs")
    return devices, sorted(os.listdir("/sys/class/net"))

devices, in_sys = as_the_host(mount_sys_in_chroot)
print("the host's devices (ip link):", devices)
print("/sys/class/net in the chroot:", in_sys)

# %% [markdown]
# ## 6. pivot_root in new namespaces closes each hole
#
# `jail.pivot_into` makes the jail the root of a new mount namespace, in the
# order the kernel needs (the steps are in labkit/jail.py's header):
# everything private, a bind mount of the jail on itself, pivot_root(2) with
# the old root under the jail, a fresh `/proc`, and the old root unmounted.
# After that, nothing above the jail is mounted in the namespace: there is no
# ".." to climb to.
#
# Each probe below runs the same checks in a jail, from inside:

# %%
def probe(victim):
    """What a root process in this jail can reach; it only signals VICTIM with signal 0."""
    if not os.path.ismount("/proc"):  # a chroot: mount it ourselves, as in section 4
        os.makedirs("/proc", exist_ok=True)
        syscalls.mount("proc", "/proc", "proc")
    os.makedirs("/sys", exist_ok=True)
    syscalls.mount("sysfs", "/sys", "sysfs")
    try:
        os.kill(victim, 0)  # signal 0: "may I signal it?", nothing is sent
        signal_it = "yes"
    except ProcessLookupError:
        signal_it = "no such process"
    found = {"processes in /proc": len([p for p in os.listdir("/proc") if p.isdigit()]),
             "may signal the sleeper": signal_it,
             "secret via /proc/<kernel>/root": os.path.exists(f"/proc/{me}/root{secret}"),
             "devices in /sys": sorted(os.listdir("/sys/class/net"))}
    escaped = jail.escape_chroot()  # last: it moves our root
    found["chroot escape"] = f"out, read {open(secret).read().strip()!r}" if escaped else "stays in the jail"
    return found

# %% [markdown]
# First in a chroot jail: sections 3, 4 and 5 at once. How many processes
# the host has depends on the machine, so `show` prints whose they are.

# %%
def show(result):
    for what, value in result.items():
        if what == "processes in /proc":
            value = "only the jail's" if value <= 2 else "the host's"
        print(f"{what:31} {value}")

sleeper = spawn(["sleep", "infinity"])
show(as_the_host(jail.call_in_jail, rootfs, probe, sleeper.pid, pivot=False))

# %% [markdown]
# Then pivot_root in a new mount namespace, and nothing else. The escape
# fails, and the mount table holds the jail and its own mounts only. But the
# jail is still in the host's PID namespace: its fresh `/proc` shows the
# host's processes, and `/proc/PID/root` of a process outside leads to the
# host's files without any escape.

# %%
show(as_the_host(jail.call_in_jail, rootfs, probe, sleeper.pid, namespaces="mnt"))

# %% [markdown]
# With a PID namespace too, `/proc` shows the jail's processes only: the jail's
# first process is PID 1 there, and no PID names a process outside.
# `/sys` still shows the host's devices.

# %%
show(as_the_host(jail.call_in_jail, rootfs, probe, sleeper.pid, namespaces="mnt,pid"))

# %% [markdown]
# And with a network namespace, `/sys` shows a network of its own: `lo` and nothing else.

# %%
show(as_the_host(jail.call_in_jail, rootfs, probe, sleeper.pid, namespaces="mnt,pid,net"))
print("the sleeper is still running:", sleeper.poll() is None)

# %% [markdown]
# ## 7. The two jails side by side
#
# Two long-lived jails running `sleep`: one by chroot, one by pivot_root with
# mount, PID and network namespaces. The chroot jail shares every namespace
# with this kernel; only its root directory differs.

# %%
chrooted = jail.spawn_in_jail(rootfs, ["/bin/sleep", "infinity"], pivot=False)
pivoted = jail.spawn_in_jail(rootfs, ["/bin/sleep", "infinity"], namespaces="mnt,pid,net")

lab.picture({"this kernel": me, "chroot jail": chrooted.pid, "pivot_root jail": pivoted.pid},
            types=["mnt", "pid", "net"])

# %% [markdown]
# From outside, `/proc/PID/root` is each jail's root directory. For the chroot
# jail it is our rootfs directory, by its path. The pivot_root jail's root is
# the same directory, but mounted in a namespace we cannot see into, so
# readlink can only say "/"; stat shows it is the same directory.

# %%
ours = os.stat(rootfs)
for name, child in (("chroot jail", chrooted), ("pivot_root jail", pivoted)):
    link = os.readlink(f"/proc/{child.pid}/root")
    st = os.stat(f"/proc/{child.pid}/root/")
    same = (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino)
    print(f"{name:16} root -> {link:18} the jail's directory: {same}")
print("the pivot_root jail's mounts:", [m.mount_point for m in mount.read_mountinfo(pivoted.pid)])

# %%
for child in (chrooted, pivoted, sleeper):
    child.kill()
    child.wait()
shutil.rmtree(rootfs)
shutil.rmtree(outside)

# %% [markdown]
# ## Check yourself
#
# 1. After `chroot("/srv/jail")` without `chdir("/")`, where do relative paths lead?
#    <details><summary>answer</summary>To the old working directory, outside the
#    jail: chroot changes only where lookup of "/" starts.</details>
# 2. Why does the escape work from a chroot and not from a pivot_root jail?
#    <details><summary>answer</summary>In a chroot, the rest of the file system is
#    still mounted above the jail; a second chroot puts the working directory
#    above the new root, and ".." climbs to the real root. After pivot_root and
#    the unmount of the old root, nothing is mounted above the jail in its namespace.</details>
# 3. A jail made with pivot_root in a new mount namespace mounts `/proc`. What can
#    it still reach, and what closes it?
#    <details><summary>answer</summary>Every process of the host's PID namespace:
#    it can signal them, and <code>/proc/PID/root</code> of any of them leads to
#    the host's files. A new PID namespace closes it.</details>
# 4. Which namespace decides what `/sys/class/net` lists?
#    <details><summary>answer</summary>The network namespace of the process that
#    mounted sysfs.</details>
# 5. `chroot /srv/jail /bin/ls` says "No such file or directory", and
#    `/srv/jail/bin/ls` exists. What is missing?
#    <details><summary>answer</summary>Its dynamic loader or libraries: ldd lists
#    them.</details>
#
# Try one: which of these paths can a process reach after `chroot(rootfs)` with
# its working directory still in `outside`? Predict, then run.

# %%
rootfs, outside = tempfile.mkdtemp(), tempfile.mkdtemp()
open(f"{outside}/here", "w").close()

paths = {"here": "here", "/here": "/here", f"{outside}/here": f"{outside}/here",
         "../<outside's name>/here": f"../{os.path.basename(outside)}/here"}

def reach():
    os.chdir(outside)
    os.chroot(rootfs)
    return {label: os.path.exists(path) for label, path in paths.items()}

for label, found in run(reach).items():
    print(f"{label:26} {found}")
shutil.rmtree(rootfs)
shutil.rmtree(outside)

# %% [markdown]
# ## Exercise `escape`: break out of a chroot jail
#
# Write `exercises/escape/solution` with this contract (EXERCISES.md, section 2):
#
# > `solution PATH`
# >
# > The grader starts `solution` as root with its root directory changed by
# > `chroot(2)` to a jail directory and its working directory at the jail's
# > root (as `chroot(8)` does). The jail is writable by root and holds
# > read-only bind mounts of `/usr`, `/bin`, `/lib*` so that any interpreter
# > works, and the solution itself. PATH is an absolute path of a file
# > **outside** the jail. `solution` must print that file's contents to
# > standard output and exit 0.
#
# Section 3 has the steps; the grader checks them:
#
# ```
# sudo grader check escape
# ```
#
# ## Exercise `jail`: a jail that holds
#
# Write `exercises/jail/solution` (EXERCISES.md, section 3):
#
# > `solution ROOTFS COMMAND [ARG...]`
# >
# > Run COMMAND with ROOTFS (a directory holding a small root filesystem, e.g.
# > static busybox) as its root directory, using a **new mount namespace and
# > `pivot_root(2)`**, not `chroot(2)` alone. Inside, `/proc` is a fresh proc
# > mount, and the old root is unmounted and detached: no mount entry shows it,
# > no path under `/` leads to it, and the escape of exercise 2 fails. Mounts made
# > inside do not appear on the host and the host's mount table is unchanged.
# > (Without a PID namespace, `/proc/1/root` still leads to the host's root: the
# > jail does not have to close that; exercise 7 does.) The exit status of
# > `solution` is COMMAND's.
#
# Section 6 and lesson 03 (private propagation first) have the steps; try it
# on a busybox tree (`jail.build_busybox_rootfs`), then:
#
# ```
# sudo grader check jail
# ```
#
# Exercise 7, `container` (lesson 11), adds a PID namespace, which closes
# `/proc/1/root` too, and the other namespaces:
#
# ```
# sudo grader check container
# ```
