"""A container: every namespace at once, set up in the order the kernel needs.

namespaces(7): a "container" is no kernel object, only a process that was
given one namespace of each kind and a root file system of its own.  The
last piece used here is the cgroup namespace (Linux 4.6); user namespaces
(Linux 3.8) make all of it possible without root.  The steps, in order::

    caller (labkit)                         container (PID 1 inside)
    ---------------                         ------------------------
    clone(NEWPID|NEWNS|NEWUTS|NEWIPC|       (labkit.spawn: fork, unshare, and one
          NEWNET|NEWCGROUP [|NEWUSER])       more fork so that we are PID 1)
    write uid_map, gid_map      ------>     make / private (mounts stay inside)
    [--veth: make a veth pair, move         a minimal /dev in ROOTFS
     one end into the container]            bind-mount ROOTFS onto itself   (labkit.jail:
                                            pivot_root(".", ".")             pivot_into_
                                            mount /proc (our PID namespace)  with_dot)
                                            unmount the old root
                                            sethostname(HOSTNAME)
                                 "go" ->    lo up [eth0: address, up]
                                <- "!"      init: fork + execve(COMMAND), reap, forward

Why each step is where it is:

* The maps come first: until they are written, a rootless child is
  "nobody" in its own namespace and would lose its capabilities at execve.
* / is made private before anything is mounted (spawn does it), or the
  mounts would propagate to the host; pivot_root(2) refuses a shared root too.
* /dev is a tmpfs with a few of the host's device files bind-mounted in,
  which also works rootless (a user namespace may not mknod(2) devices).  It
  is made before the pivot, while the host's /dev can still be reached.
* pivot_root(".", ".") stacks the old root on top of the new one, and
  umount2(".", MNT_DETACH) takes it away (pivot_root(2), NOTES): afterwards no
  path leads out, which chroot(2) alone would not ensure.  No directory for
  the old root is needed, so a read-only ROOTFS works.
* /proc is mounted by PID 1 of the new PID namespace, before the old root
  goes: proc shows the PID namespace of its mounter, so the container sees
  only its own processes; and in a user namespace the kernel mounts a proc
  only while another proc is fully visible (the old root's).
* The network is configured last but one, because the caller's end of the
  veth can be moved in only once the container's network namespace exists.
* COMMAND runs under a small init (labkit.pid) that reaps orphans and passes
  on signals: PID 1 gets no signal it has no handler for.

The IPC namespace needs no step: it starts empty (no System V object, no
POSIX queue of the host).  Nor does the cgroup namespace: our cgroup at
the time of unshare becomes "/" in /proc/self/cgroup.

See namespaces(7), pivot_root(2), mount_namespaces(7), pid_namespaces(7),
cgroup_namespaces(7), network_namespaces(7), user_namespaces(7), and
"Containers from scratch" style write-ups; `labkit container ROOTFS -- CMD`.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import pickle
import stat
import subprocess
from collections.abc import Sequence

from . import net, syscalls
from .child import picklable
from .errors import NamespaceError
from .jail import build_busybox_rootfs, pivot_into_with_dot
from .pid import run_init
from .spawn import Child, spawn

NAMESPACES = ("pid", "mnt", "uts", "ipc", "net", "cgroup")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
PATH = "/bin:/sbin:/usr/bin:/usr/sbin"


# --- A root file system -------------------------------------------------------

def busybox_rootfs(path: str, busybox: str = "/usr/bin/busybox") -> str:
    """labkit.jail's busybox root file system, with every applet (ip, ping, nc, ps, ...).

    Readable by all, so that a rootless container can use it too.
    """
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    build_busybox_rootfs(path, busybox, [a for a in applets.stdout.split() if a != "busybox"])
    os.chmod(path, 0o755)
    return path


# --- The caller's side --------------------------------------------------------

def start(rootfs: str, argv: Sequence[str] = ("/bin/sh",), *, hostname: str = "container",
          user: bool = False, veth: tuple[str, str] | None = None) -> Child:
    """Start ARGV in a new container on ROOTFS; return once it runs, or raise what went wrong.

    USER: add a user namespace that maps the caller to root (implied when
    not root).  VETH: (host address, container address), both with a
    prefix, for a veth pair whose host end stays in the caller's network
    namespace and whose other end is the container's eth0.
    """
    rootfs = os.path.abspath(rootfs)
    _check_rootfs(rootfs)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)  # container -> us: b"!" when ready, else the error
    go_r, go_w = os.pipe2(os.O_CLOEXEC)  # us -> container: "the network is yours"
    try:
        inside = (rootfs, list(argv), hostname, veth[1] if veth else None, ready_w, go_r, (ready_r, go_w))
        child = spawn(_container, NAMESPACES + (("user",) if user else ()), args=inside,
                      map_root=True if user else None)
    except BaseException:
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
        raise
    os.close(ready_w)
    os.close(go_r)
    with open(ready_r, "rb") as ready:
        try:
            if veth:
                wire_host_side(child.pid, veth[0])
            os.write(go_w, b"g")
            if ready.read(1) == b"!":
                return child
            error = ready.read()  # the pickled error, up to EOF when the container has gone
        except BaseException:
            child.kill()
            child.wait()
            raise
        finally:
            os.close(go_w)
    code = child.wait()
    raise pickle.loads(error) if error else NamespaceError(
        errno.ECHILD, "container", f"it ended before it was ready (exit code {code})")


def _check_rootfs(rootfs: str) -> None:
    """Refuse, before anything starts, a ROOTFS that is no directory we can use."""
    make_one = ("give a directory that holds a root file system, e.g. one made with "
                "python -c 'from labkit.container import busybox_rootfs; busybox_rootfs(\"DIR\")'")
    for path, hint in ((rootfs, make_one),
                       (f"{rootfs}/proc", "it has no /proc directory to mount proc on "
                                          "(busybox_rootfs makes /proc and /dev)"),
                       (f"{rootfs}/dev", "it has no /dev directory to mount a tmpfs on "
                                         "(busybox_rootfs makes /proc and /dev)")):
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            if e.errno == errno.EACCES:
                hint = (f"{os.path.dirname(path)} may not be searched by this user (euid "
                        f"{os.geteuid()}): a rootless container needs a root file system "
                        "it can read, e.g. one under /tmp made readable to all")
            raise NamespaceError(e.errno, f"root file system {path}", hint) from None
        if not stat.S_ISDIR(mode):
            raise NamespaceError(errno.ENOTDIR, f"root file system {path}", hint)


def wire_host_side(pid: int, host_address: str) -> str:
    """Make a veth pair here, move one end into PID's network namespace; return our end's name."""
    ours, theirs = f"lkveth{pid}", f"lkpeer{pid}"  # names unique here: the PID is ours
    net.add_veth(ours, theirs)
    try:
        net.move_link(theirs, pid)  # it becomes eth0 inside
        net.add_address(ours, host_address)
        net.set_up(ours)
    except BaseException:
        with net.rtnl() as ipr:  # deleting one end deletes the pair
            ipr.link("del", ifname=ours)
        raise
    return ours


# --- The container's side: PID 1 in its new namespaces ------------------------

def _container(rootfs: str, argv: list[str], hostname: str, address: str | None,
               ready_w: int, go_r: int, parents_ends: tuple[int, int]) -> int:
    for fd in parents_ends:
        os.close(fd)
    term = os.environ.get("TERM", "dumb")
    try:
        enter_rootfs(rootfs)
        syscalls.sethostname(hostname)
        if os.read(go_r, 1) != b"g":  # EOF: the caller gave up
            return 1
        network_up(address)
        os.environ.clear()  # a container starts with an environment of its own
        os.environ.update(PATH=PATH, HOME="/root", HOSTNAME=hostname, TERM=term)
    except BaseException as e:  # noqa: BLE001 - the caller reports it
        os.write(ready_w, pickle.dumps(picklable(e)))
        return 1
    os.write(ready_w, b"!")
    os.close(ready_w)
    os.close(go_r)
    return run_init(argv)


def enter_rootfs(rootfs: str) -> None:
    """Make ROOTFS our root, with a fresh /proc and a minimal /dev, and detach the old root.

    /dev is prepared first, while the host's device files can still be
    reached; the recursive bind mount of ROOTFS that pivot_into_with_dot
    makes carries it along.
    """
    make_dev(f"{rootfs}/dev")
    # Private /, bind ROOTFS on itself, pivot_root(".", "."), mount /proc, unmount the old root.
    pivot_into_with_dot(rootfs, mount_proc=True)


def make_dev(dev: str) -> None:
    """A tmpfs on DEV with the host's harmless device files bind-mounted in."""
    syscalls.mount("tmpfs", dev, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NOEXEC, "mode=0755")
    for name in DEVICES:
        target = f"{dev}/{name}"
        open(target, "w").close()  # a file to mount on
        syscalls.mount(f"/dev/{name}", target, None, syscalls.MS_BIND)
    for name, points_to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                            ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(points_to, f"{dev}/{name}")


def network_up(address: str | None) -> None:
    """lo up; with ADDRESS, the veth end the caller moved in becomes eth0, addressed and up."""
    net.set_up("lo")
    if address is None:
        return
    with net.rtnl(action="ip link set eth0") as ipr:
        (peer,) = [link.get("ifname") for link in ipr.get_links()
                   if link.get("ifname", "").startswith("lkpeer")]
        ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], ifname="eth0")
    net.add_address("eth0", address)
    net.set_up("eth0")


# --- The command line: labkit container ROOTFS [--veth A,B] (labkit.cli) ------

def parse_veth(text: str) -> tuple[str, str]:
    """ "10.200.1.1/24,10.200.1.2/24" -> ("10.200.1.1/24", "10.200.1.2/24"), checked."""
    parts = text.split(",")
    try:
        if len(parts) != 2 or not all("/" in p for p in parts):
            raise ValueError
        host, inside = (ipaddress.ip_interface(p.strip()) for p in parts)
    except ValueError:
        raise ValueError(f"--veth {text!r}: give HOST_ADDR,CONTAINER_ADDR with prefixes, "
                         "e.g. 10.200.1.1/24,10.200.1.2/24") from None
    if host.network != inside.network or host.ip == inside.ip:
        raise ValueError(f"--veth {text!r}: the two addresses must differ and share a network")
    return str(host), str(inside)

