# Lesson 11: a container in a page.  Source of lessons/11-container.ipynb
# (build it with `sudo .venv/bin/python lessons/build.py 11-container`).
# rootless: yes
# exercise: container

# %% [markdown]
# # 11 · A container in a page
#
# **Goal.** The kernel has no "container" object. A container is a process
# that was given a namespace of each kind, a root file system of its own, and
# usually cgroup limits and fewer privileges. This lesson puts together what
# lessons 01 to 10 showed one at a time. By the end of it you can
#
# * list the steps that start a container, in the order the kernel needs them;
# * start one with `labkit.container` and look at it from inside and from the host;
# * find the container's PID 1 among the host's processes;
# * enter a running container with setns(2), as `lxc-attach`, `docker exec` and
#   `nsenter` do;
# * say what LXC, systemd-nspawn and Docker add to this: images, cgroup
#   limits, dropped capabilities, seccomp;
# * solve the exercise `container`.
#
# *Root or not:* this lesson runs as root and as a normal user, with the same
# output. The container below always gets a user namespace in which its root
# is mapped to you (`user=True`): as a normal user labkit would add it anyway,
# and as root it confines the container's root, who is uid 0 outside too but
# has capabilities only over what the container's user namespace owns
# (lesson 07).
#
# Read `labkit/container.py` beside this lesson: its header draws the steps,
# and each step is a few lines that call the modules of the earlier lessons.

# %%
import os
import shutil
import subprocess
import tempfile

import lab  # lessons/lab.py: pictures of namespaces
from labkit import container, ipc, pid, user
from labkit.join import enter, run_in
from labkit.namespace import Namespace
from labkit.output import table

me = os.getpid()  # this notebook's kernel

# %% [markdown]
# ## 1. The steps
#
# | step | what | lesson |
# | --- | --- | --- |
# | 1 | clone the first process into new user, PID, mount, UTS, IPC, network and cgroup namespaces | 01 |
# | 2 | write its `uid_map` and `gid_map` from outside, while it waits | 07 |
# | 3 | make `/` private, so that no mount leaks out | 03 |
# | 4 | prepare `/dev` in the new root file system, bind-mount the root onto itself | 03, 04 |
# | 5 | `pivot_root(".", ".")`, mount a fresh `/proc` (it shows the new PID namespace), detach the old root | 04, 05 |
# | 6 | set the hostname | 02 |
# | 7 | bring `lo` up (and, if asked, a veth end that the host moved in) | 06 |
# | 8 | run the command under a small init that reaps orphans and forwards signals | 05 |
#
# The IPC and cgroup namespaces need no step of their own (lessons 08 and 09).
# A cgroup with limits would need one, and early: the cgroup namespace takes
# as its root the cgroup its creator is in, so runc unshares it only after the
# container's first process has been moved into its cgroup (lesson 09, section 5).
# labkit's container makes these namespaces:

# %%
print("namespaces of a labkit container:", container.NAMESPACES, "+ user")

# %% [markdown]
# ## 2. A root file system
#
# A container image is, at bottom, a directory tree. Ours is the smallest
# useful one: a static busybox, one binary that acts as `sh`, `ls`, `ps`, `ip`
# and some 300 other commands, linked under each name in `/bin`:

# %%
rootfs = container.busybox_rootfs(tempfile.mkdtemp())
print("top directories:", sorted(os.listdir(rootfs)))
print("/bin/sh ->", os.readlink(f"{rootfs}/bin/sh"), "  /bin/ps ->", os.readlink(f"{rootfs}/bin/ps"))

# %% [markdown]
# ## 3. Start it
#
# `container.start(rootfs, argv, hostname=...)` does the eight steps and returns
# once the container is ready; its PID 1 is labkit's init, which runs ARGV as
# its child. We run `sleep infinity`, so that the container stays up while we
# look at it.

# %%
box = container.start(rootfs, ["sleep", "infinity"], hostname="box", user=True)
sleeper = lab.wait_for_child(box.pid, "sleep")  # the init has started the command
print("the container is running:", box.poll() is None)

# %% [markdown]
# ## 4. Seen from the host
#
# The container is a process tree like any other: `box.pid` is its init in
# the host's numbering. `/proc/PID/status` lists one PID per PID namespace
# level (`NSpid:`, lesson 05): the host's and the container's.

# %%
host_pid, inside_pid = pid.nspid(box.pid)
print(f"the container's init: host PID {host_pid}; inside the container it is number {inside_pid}")
print(f"its command: the sleep, host PID {sleeper}; inside it is number {pid.nspid(sleeper)[-1]}")
with open(f"/proc/{box.pid}/comm") as f:
    print("the init's program name:", f.read().strip(), "(a fork of this Python)")
print("runs as our own uid outside:", os.stat(f"/proc/{box.pid}").st_uid == os.geteuid())

# %% [markdown]
# Its namespaces, compared with ours: every type is new except the time
# namespace (a container has no use for one, unless it is being restored,
# lesson 10):

# %%
for name, ns in Namespace.all_of(box.pid).items():
    print(f"{name:18} {'new' if ns != Namespace.of(me, name) else 'shared with the host'}")

# %%
lab.picture({"this kernel": me, "container's init": box.pid, "container's sleep": sleeper},
            types=["user", "pid", "mnt", "net", "uts"])

# %% [markdown]
# ## 5. Entering it with setns(2)
#
# `lxc-attach`, `docker exec` (through runc's `runc exec`) and
# `nsenter --all` all work the same way: open `/proc/PID/ns/*` of a process in
# the container, call setns(2) for each (the user namespace first, lesson 07),
# change root to the container's root (`/proc/PID/root`), fork once more so that
# the child is inside the PID namespace, and exec the command there.
# `labkit.join.enter(pid, "all", argv)` is that; `attach` catches its output.
# (`machinectl shell` is different: it joins nothing itself, but asks the
# container's own systemd, over D-Bus, to start the shell as a service inside,
# so the shell is a child of the container's init, not of machinectl.)

# %%
def attach(*argv):
    """Run ARGV inside the container, as lxc-attach does; return what it printed (stdout and stderr)."""
    out_r, out_w = os.pipe()
    joined = enter(box.pid, "all", list(argv), stdout=out_w, stderr=out_w)
    os.close(out_w)
    with open(out_r) as out:
        text = out.read()
    joined.wait()
    return text.rstrip("\n")


print(attach("ps", "-o", "pid,user,comm"))

# %% [markdown]
# Inside, `ps` sees three processes: the init (1), the sleep (2) and itself
# (3); /proc is the container's own. The users are numbers because the
# busybox tree has no `/etc/passwd`. The other namespaces, one command each:

# %%
print("hostname:", attach("hostname"))
print("uid, gid:", attach("id", "-u"), attach("id", "-g"))  # not `id`: its groups= part shows the caller's supplementary groups
print("/ holds:", attach("ls", "/").split())
print("network devices:", attach("sh", "-c", "ip -o link | cut -d' ' -f2,3"))
print("cgroup paths in /proc/self/cgroup:", set(attach("cut", "-d:", "-f3", "/proc/self/cgroup").split()))
print("System V IPC objects:", run_in(box.pid, "all", ipc.sysv_objects))

# %% [markdown]
# nsenter(1) does the same from a shell, given the types to join and
# `--root --wd` for the root directory; `--preserve-credentials` keeps our
# uid, which is root in the container's user namespace already:

# %%
!nsenter --target {box.pid} --user --preserve-credentials --mount --uts --ipc --net --pid --cgroup --root --wd hostname

# %% [markdown]
# ## 6. What our container does not have
#
# Root inside has every capability of its user namespace; that is enough to
# mount a file system, over the container's own `/tmp`:

# %%
print("capabilities inside include sys_admin:", "sys_admin" in run_in(box.pid, "all", user.capabilities))
print(attach("sh", "-c", "mount -t tmpfs none /tmp && echo mounted a tmpfs on /tmp"))

# %% [markdown]
# Docker would refuse that mount: it drops `CAP_SYS_ADMIN` and most other
# capabilities, and its seccomp filter blocks a list of system calls. A real
# container engine adds such layers around the same namespaces:
#
# | | labkit.container | LXC | systemd-nspawn | Docker |
# | --- | --- | --- | --- | --- |
# | made for | learning | "system containers": a whole distribution with its init | a distribution tree or OS image, for development and services | one application per container |
# | root file system | a directory (busybox) | a directory, from templates or downloaded images | a directory or disk image; `machinectl pull-tar` | layered OCI images from a registry, on overlayfs |
# | namespaces | all but time | all but time; user for unprivileged containers | PID, mount, UTS, IPC, cgroup; network with `-n`, user with `-U` | all but time; cgroup on v2 hosts; user only with `userns-remap` or in rootless mode |
# | cgroup limits | none (lesson 09 shows how) | `lxc.cgroup2.*` keys in the config | a systemd scope; `--property=MemoryMax=...` | `--memory`, `--pids-limit`, `--cpus` |
# | capabilities | all, within its user namespace | drops some (`lxc.cap.drop`) | a reduced default set | 14 by default; no `CAP_SYS_ADMIN` |
# | seccomp | none | a default deny list (`lxc.seccomp.profile`) | a default filter | a default profile that blocks dozens of calls (`kexec_load`, `keyctl`, ...) |
# | LSM | none | AppArmor or SELinux profile | SELinux context option | AppArmor (`docker-default`) or SELinux |
# | network | `lo`, optional veth | veth on a bridge (`lxcbr0`) | host's, or veth (`-n`) | veth on `docker0`, with NAT |
# | enter | `labkit enter --all PID` | `lxc-attach` | `machinectl shell`, `nsenter` | `docker exec` |
# | PID 1 | labkit's init | the distribution's init | the tree's init (`-b`) or the command | the command (`--init`: tini) |
#
# Every column shares the same kernel with the host (lesson 01, section 11):
# namespaces divide what one kernel shows, and the extra layers narrow what a
# process may ask of it.
#
# **A real engine, read from inside.** util-linux's unshare(1), from Debian's
# `util-linux`, has the options of a small engine: every namespace, a root
# mapped to us (`--map-root-user`), a fresh `/proc` (`--mount-proc`) and a root
# directory (`--root`, a chroot(2) there). We start it on the same busybox
# tree, and read from inside each container what the table compares: the
# namespaces (the links in `/proc/self/ns`), the cgroup, the capabilities,
# seccomp and no_new_privs (`/proc/self/status`, proc(5)):

# %%
PROBE = ("for ns in cgroup ipc mnt net pid user uts; do readlink /proc/self/ns/$ns; done; "
         "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; "
         "echo cgroup: $(cut -d: -f3 /proc/self/cgroup | sort -u)")
ENGINE = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child", "--mount",
          "--uts", "--ipc", "--net", "--cgroup", "--mount-proc"]  # and --root=DIR


def read_probe(text):
    """What PROBE printed, as verdicts that hold on any kernel and cgroup layout."""
    lines = text.splitlines()
    links = [line for line in lines if ":[" in line]
    status = dict(line.split(":", 1) for line in lines if ":[" not in line)
    status = {key: value.strip() for key, value in status.items()}
    return {
        "new namespaces": sum(os.readlink(f"/proc/{me}/ns/{link.split(':')[0]}") != link for link in links),
        "cgroup is /": status["cgroup"] == "/",
        "capabilities": "all of the bounding set" if status["CapEff"] == status["CapBnd"] else "fewer",
        "seccomp mode": status["Seccomp"],
        "no_new_privs": status["NoNewPrivs"],
    }


seen = {
    "labkit.container": read_probe(attach("sh", "-c", PROBE)),
    "unshare(1)": read_probe(subprocess.run([*ENGINE, f"--root={rootfs}", "sh", "-c", PROBE],
                                            capture_output=True, text=True, check=True).stdout),
}
table(("", *seen), [(fact, *(str(facts[fact]) for facts in seen.values())) for fact in seen["unshare(1)"]])

# %% [markdown]
# Seven new namespaces out of the seven types compared, a cgroup namespace
# rooted at the container's cgroup, every capability of its user namespace,
# no seccomp filter (mode 0) and no_new_privs off: unshare(1), like labkit,
# adds namespaces and nothing else. capsh(1) says the same of the engine's
# root in words, run in the same namespaces without the chroot, since the
# busybox tree has no capsh:

# %%
capsh = subprocess.run([*ENGINE, "capsh", "--print"], capture_output=True, text=True, check=True).stdout
print(*[line for line in capsh.splitlines() if line.startswith(("Current:", "Ambient", "Securebits"))], sep="\n")

# %% [markdown]
# `=ep`: every capability, effective and permitted. In the engines of the
# other columns the same probe reads differently: systemd-nspawn and Docker
# leave out `CAP_SYS_ADMIN` and others (`CapEff` below `CapBnd` of the host),
# and run the command under a seccomp filter, `Seccomp: 2`; Docker sets
# no_new_privs with `--security-opt no-new-privileges`. Those are the layers
# that make the mount of this section fail there.

# %% [markdown]
# ## 7. The end of a container
#
# When the init, PID 1 of the container's PID namespace, dies, the kernel
# kills every other process in that namespace (lesson 05). The other
# namespaces then have no process left, and end with it:

# %%
its_pid_namespace = Namespace.of(box.pid, "pid")
box.kill()
print("the init's exit code:", box.wait())
print("processes left in the container:", len(lab.processes_in(its_pid_namespace)))

# %% [markdown]
# The exit status of a container is its command's. From a shell, `labkit
# container ROOTFS --hostname NAME -- COMMAND` runs one, waits for it and exits
# with its status, as `docker run` does. PID 1 is then the init of the
# `labkit` command, and `ps` is number 4: number 3 was `hostname`, which
# has ended.

# %%
!labkit container {rootfs} --hostname short -- sh -c 'hostname; ps -o pid,comm; exit 3'; echo "exit status: $?"
shutil.rmtree(rootfs)

# %% [markdown]
# ## Check yourself
#
# 1. Why is `/proc` mounted after `pivot_root` and before the old root is
#    detached, and not before the PID namespace exists?
#    <details><summary>answer</summary>A proc mount shows the PID namespace of
#    the process that mounts it, so the container's PID 1 mounts it; and in a
#    user namespace the kernel mounts a proc only while another proc is fully
#    visible, which the old root still provides.</details>
# 2. From the host, how do you find the container's PID 1, and what does
#    `NSpid:` in its `/proc/PID/status` show?
#    <details><summary>answer</summary>It is the process the engine started
#    (<code>box.pid</code>, <code>docker inspect -f '{{.State.Pid}}'</code>,
#    <code>lxc-info -p</code>); <code>NSpid:</code> shows its host PID and 1.</details>
# 3. What does `docker exec` do that `docker run` does not?
#    <details><summary>answer</summary>It makes no namespace: it joins the
#    namespaces of the running container with setns(2), changes root into it,
#    and runs the command there, as <code>attach</code> above.</details>
# 4. Root in our container can mount a tmpfs; root in a Docker container
#    cannot. Which two mechanisms stop it in Docker?
#    <details><summary>answer</summary>Docker drops <code>CAP_SYS_ADMIN</code>,
#    and its seccomp profile blocks <code>mount</code> for processes without
#    it (AppArmor's <code>docker-default</code> denies mounts as well).</details>
# 5. Which of the container's namespaces would keep it from seeing the host's
#    shared memory segments, and which from killing the host's processes?
#    <details><summary>answer</summary>The IPC namespace (lesson 08), and the
#    PID namespace: the host's processes have no PID inside, so they cannot be
#    named in kill(2).</details>
#
# Try one: predict the output (which PID does a shell that `attach` starts
# have inside?), then run it.

# %%
rootfs = container.busybox_rootfs(tempfile.mkdtemp())
with container.start(rootfs, ["sleep", "infinity"], hostname="try-me", user=True) as box:
    lab.wait_for_child(box.pid, "sleep")
    print(attach("sh", "-c", 'echo "$(hostname): my PID is $$"'))
shutil.rmtree(rootfs)

# %% [markdown]
# ## Exercise `container`: all of it together
#
# Write `exercises/container/solution`, an executable (Python, a shell script,
# C, ...) with this contract (EXERCISES.md, section 7):
#
# > `solution ROOTFS HOSTNAME COMMAND [ARG...]`
# >
# > Run COMMAND as a small container:
# >
# > - new PID namespace, in which COMMAND (or an init of the solution's, which
# >   then meets exercise 4's contract) is PID 1;
# > - new mount namespace with ROOTFS as root via `pivot_root(2)` (as in
# >   exercise 3) and a fresh `/proc` that shows only the container's processes;
# > - new UTS namespace with hostname HOSTNAME;
# > - new IPC namespace: no System V IPC object of the host is visible;
# > - new network namespace holding only `lo`, which is up;
# > - new cgroup namespace: `/proc/self/cgroup` shows the container's cgroup
# >   as the root (`/`).
# >
# > The exit status of `solution` is COMMAND's.
#
# Hints: follow the table of section 1 (without the user namespace: the grader
# runs `solution` as root); your solutions of `uts`, `jail` and `pid1` are three
# of the steps. Try it by hand
# (`sudo exercises/container/solution /path/to/rootfs box sh`, a busybox tree
# made as in section 2), then let the grader check it:
#
# ```
# sudo grader check container
# ```
