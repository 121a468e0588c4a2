"""Control groups: make one, put processes in it, limit them, kill them all.

A cgroup is a directory in a cgroup file system.  Making the directory makes
the group; writing a PID to its ``cgroup.procs`` moves that process in (its
future children are born there); writing a number to ``pids.max`` or a
memory file sets a limit the kernel enforces on the whole group; removing
the directory (once it is empty) removes the group.  Nothing else is needed,
no library and no daemon: ``mkdir``, ``echo`` and ``rmdir`` are the API.

Two versions of the file system exist (cgroups(7)):

* **v1** (Linux 2.6.24): one hierarchy per controller, each mounted on its
  own, e.g. ``/sys/fs/cgroup/pids`` and ``/sys/fs/cgroup/memory``.  A group
  is a directory of the same name in each hierarchy you want.
* **v2**, the unified hierarchy (Linux 4.5): one tree for every controller.
  A controller must be enabled in the parent's ``cgroup.subtree_control``
  before its files (``pids.max``, ``memory.max``) appear in the children.

Many machines mount both ("hybrid"): v1 hierarchies for the controllers and
a v2 tree at ``/sys/fs/cgroup/unified`` that holds no controller, only the
membership.  A controller can be bound to one version at a time, so limits
go where the controller is.  We find out which layout we have by reading
``/proc/self/mountinfo``, as ``findmnt -t cgroup,cgroup2`` does.

Killing everything in a group is the reason a grader or a container runtime
wants one: a process can double-fork, change its process group or session,
but it cannot leave its cgroup without write access to the file system.
``cgroup.kill`` (v2, Linux 5.14) kills the whole subtree at once; otherwise
we send SIGKILL to every PID in ``cgroup.procs`` until none is left (a
process forked in between appears in the next read).

A **cgroup namespace** (cgroup_namespaces(7), Linux 4.6) virtualizes
``/proc/self/cgroup``: the cgroup a process is in when it calls
``unshare(CLONE_NEWCGROUP)`` becomes the root ``/`` of its view, so a
container does not learn (or depend on) where the host put it.

Cgroups made here are named with the prefix in ``$NSLAB_CGROUP_PREFIX``
(default ``nslab``) and created at the top of each hierarchy.

See cgroups(7), cgroup_namespaces(7), and the kernel's
Documentation/admin-guide/cgroup-v2.rst and cgroup-v1/pids.rst.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import syscalls
from .errors import CgroupError
from .mount import parse_mountinfo_line
from .nstypes import BY_NAME
from .procfs import read_text, write_once
from .spawn import Child, spawn

CLONE_NEWCGROUP = BY_NAME["cgroup"].flag
DEFAULT_PREFIX = "nslab"


def prefix() -> str:
    """The prefix every cgroup we make starts with ($NSLAB_CGROUP_PREFIX)."""
    return os.environ.get("NSLAB_CGROUP_PREFIX") or DEFAULT_PREFIX


# Which layout: reading /proc/self/mountinfo ---------------------------------

@dataclass(frozen=True)
class Layout:
    """Where the cgroup file systems are mounted.

    unified   the v2 mount point, or None
    v1        controller name -> mount point of its v1 hierarchy
    """

    unified: str | None = None
    v1: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if self.unified and self.v1:
            return "hybrid"
        return "v2" if self.unified else "v1" if self.v1 else "none"

    def v2_controllers(self) -> list[str]:
        """Controllers the unified hierarchy can enable (none on most hybrids)."""
        if not self.unified:
            return []
        return read_text(f"{self.unified}/cgroup.controllers").split()

    def home_of(self, controller: str) -> str | None:
        """The mount point where CONTROLLER's files live, or None."""
        if controller in self.v1:
            return self.v1[controller]
        return self.unified if controller in self.v2_controllers() else None

    def homes_for(self, controllers: Sequence[str]) -> list[str]:
        """The hierarchies a group with CONTROLLERS needs a directory in: v2 (if
        mounted: it holds the membership, cgroup.kill and the cgroup namespaces'
        view) and the v1 hierarchy of each controller that is bound to v1.
        """
        if self.kind == "none":
            raise CgroupError(errno.ENODEV, "find a cgroup file system",
                              "no cgroup or cgroup2 file system is mounted: mount one at "
                              "/sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)")
        homes = [self.unified] if self.unified else []
        for controller in controllers:
            home = self.home_of(controller)
            if home is None:
                raise CgroupError(errno.ENOENT, f"find the {controller} controller",
                                  f"no mounted hierarchy offers '{controller}' (see /proc/cgroups); "
                                  "the kernel may lack it, or another v1 mount holds it")
            if home not in homes:
                homes.append(home)
        return homes


def controllers_of_kernel() -> set[str]:
    """The controllers this kernel has: the first column of /proc/cgroups."""
    try:
        lines = read_text("/proc/cgroups").splitlines()[1:]
    except OSError:
        return set()
    return {line.split()[0] for line in lines if line.strip()}


def layout(mountinfo: str = "/proc/self/mountinfo") -> Layout:
    """Read the cgroup mounts from MOUNTINFO (proc(5) describes its fields).

    A v1 mount's super options name its controllers ("rw,cpu,cpuacct"),
    among other options ("xattr", "name=systemd"): the controllers are the
    ones /proc/cgroups knows.
    """
    known = controllers_of_kernel()
    unified, v1 = None, {}
    with open(mountinfo) as f:
        mounts = [parse_mountinfo_line(line) for line in f if line.strip()]
    for m in mounts:
        if m.fstype == "cgroup2" and unified is None:
            unified = m.mount_point
        elif m.fstype == "cgroup":
            for option in m.super_options.split(","):
                if option in known:
                    v1.setdefault(option, m.mount_point)
    return Layout(unified, v1)


# Membership: /proc/PID/cgroup ---------------------------------------------

@dataclass(frozen=True)
class Membership:
    """One line of /proc/PID/cgroup: hierarchy-ID:controller-list:cgroup-path.

    The v2 hierarchy is the line with ID 0 and no controllers.  In a cgroup
    namespace the path is relative to the namespace's root.
    """

    hierarchy: int
    controllers: tuple[str, ...]
    path: str


def memberships(pid: int | str = "self") -> list[Membership]:
    """The cgroups process PID is in, as the reader's cgroup namespace shows them."""
    found = []
    for line in read_text(f"/proc/{pid}/cgroup").splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        found.append(Membership(int(hierarchy), tuple(c for c in controllers.split(",") if c), path))
    return found


def path_of(pid: int | str = "self", controller: str = "") -> str:
    """The cgroup path of PID in CONTROLLER's hierarchy ("" for the v2 hierarchy).

    A controller bound to no v1 hierarchy (every controller, on a v2-only
    machine such as Debian 12) is in the v2 hierarchy: its line has ID 0.
    """
    found = memberships(pid)
    if controller and not any(controller in m.controllers for m in found) \
            and controller in layout().v2_controllers():
        controller = ""
    for m in found:
        if (controller and controller in m.controllers) or (not controller and m.hierarchy == 0):
            return m.path
    raise CgroupError(errno.ENOENT, f"read /proc/{pid}/cgroup",
                      f"no hierarchy with controller {controller or 'v2'} is mounted on this machine")


# A cgroup -----------------------------------------------------------------

class Cgroup:
    """One group: a directory of the same name in each hierarchy it needs.

    ``dirs`` maps each hierarchy's mount point to the group's directory
    there.  Use it as a context manager to be sure the group is emptied and
    removed::

        with Cgroup.create() as cg:
            cg.limit_pids(32)
            cg.add(pid)
    """

    def __init__(self, name: str, dirs: dict[str, str], layout_: Layout) -> None:
        self.name, self.dirs, self.layout = name, dirs, layout_

    @classmethod
    def create(cls, name: str | None = None,
               controllers: Sequence[str] = ("pids", "memory")) -> Cgroup:
        """Make a new cgroup with CONTROLLERS available; NAME gets a random default.

        The group gets a directory in each hierarchy Layout.homes_for names;
        in v2 the controllers must be enabled in the parent first.
        """
        name = name or f"{prefix()}-{os.getpid()}-{secrets.token_hex(3)}"
        if not name.startswith(prefix()) or "/" in name:
            raise ValueError(f"cgroup name {name!r} must start with {prefix()!r} and hold no '/'")
        where = layout()
        homes = where.homes_for(controllers)
        group = cls(name, {}, where)
        try:
            if where.unified:
                _enable_controllers(where.unified, [c for c in controllers
                                                    if where.home_of(c) == where.unified])
            for home in homes:
                group.dirs[home] = _mkdir(f"{home}/{name}")
        except BaseException:
            group.remove()
            raise
        return group

    def dir_for(self, controller: str) -> str:
        """The directory that holds CONTROLLER's files for this group."""
        home = self.layout.home_of(controller)
        if home not in self.dirs:
            raise ValueError(f"cgroup {self.name} was not made with the {controller} controller")
        return self.dirs[home]

    @property
    def v2_dir(self) -> str | None:
        """The group's directory in the unified (v2) hierarchy, if there is one."""
        return self.dirs.get(self.layout.unified or "")

    # Moving processes in --------------------------------------------------

    def add(self, pid: int = 0) -> None:
        """Move process PID into the group in every hierarchy (0: the caller).

        The PID is read in the writer's PID namespace; "0" means "me".
        Children forked afterwards start in the group.
        """
        for path in self.dirs.values():
            _write(f"{path}/cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        """Every process in the group or in any group below it."""
        found = set()
        for top in self.dirs.values():
            for here, _, _ in os.walk(top):
                try:
                    found |= {int(p) for p in read_text(f"{here}/cgroup.procs").split()}
                except FileNotFoundError:  # removed while we walked
                    pass
        return found

    # Limits -----------------------------------------------------------------

    def limit_pids(self, maximum: int) -> None:
        """At most MAXIMUM processes and threads: fork(2) fails with EAGAIN past it."""
        _write(f"{self.dir_for('pids')}/pids.max", str(maximum))

    def limit_memory(self, maximum: int) -> None:
        """At most MAXIMUM bytes of memory, swap included: past it the OOM killer acts."""
        path = self.dir_for("memory")
        if path == self.v2_dir:
            _write(f"{path}/memory.max", str(maximum))
            if os.path.exists(f"{path}/memory.swap.max"):
                _write(f"{path}/memory.swap.max", "0")
        else:  # v1: memsw (memory + swap) must stay >= the memory limit
            _write(f"{path}/memory.limit_in_bytes", str(maximum))
            if os.path.exists(f"{path}/memory.memsw.limit_in_bytes"):
                _write(f"{path}/memory.memsw.limit_in_bytes", str(maximum))

    def oom_kills(self) -> int:
        """How many processes the OOM killer has killed in this group."""
        path = self.dir_for("memory")
        name = "memory.events" if path == self.v2_dir else "memory.oom_control"
        return _counter(f"{path}/{name}", "oom_kill")

    def pids_refused(self) -> int:
        """How many forks the pids limit has refused (the "max" event)."""
        return _counter(f"{self.dir_for('pids')}/pids.events", "max")

    # Ending it ----------------------------------------------------------------

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL every process in the group until it is empty."""
        v2 = self.v2_dir
        if v2 and os.path.exists(f"{v2}/cgroup.kill"):
            _write(f"{v2}/cgroup.kill", "1")  # Linux 5.14: the whole subtree, at once
        deadline = time.monotonic() + timeout
        while pids := self.pids():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise CgroupError(errno.EBUSY, f"kill the processes of cgroup {self.name}",
                                  f"processes {sorted(pids)} are still there after SIGKILL: "
                                  "they may be stuck in the kernel (state D in ps)")
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left, then remove the group's directories, deepest first."""
        self.kill()
        for top in self.dirs.values():
            _remove_directories(top)
        self.dirs = {}

    def __enter__(self) -> Cgroup:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<Cgroup {self.name} {sorted(self.dirs)}>"


def remove_stale() -> list[str]:
    """Remove empty cgroups left by our processes that have died (killed before cleaning up).

    Only names of the form PREFIX-PID-XXXXXX (what create() makes) whose
    PID no longer exists are touched; returns the directories removed.
    """
    where, removed = layout(), []
    homes = {where.unified, *where.v1.values()} - {None}
    pattern = re.compile(rf"{re.escape(prefix())}-(\d+)-[0-9a-f]{{6}}")
    for home in homes:
        for name in os.listdir(home):
            m = pattern.fullmatch(name)
            if not m or os.path.exists(f"/proc/{m.group(1)}"):
                continue
            try:
                _remove_directories(f"{home}/{name}")
                removed.append(f"{home}/{name}")
            except CgroupError:
                pass  # not empty: a process still lives in it; leave it to its owner
    return removed


# A process in a cgroup and its own cgroup namespace --------------------------

def spawn_in(group: Cgroup, target: Callable[..., object] | Sequence[str],
             namespaces: object = (), *, new_cgroup_namespace: bool = True,
             args: Sequence[object] = (), **options) -> Child:
    """Start TARGET (as labkit.spawn.spawn does) inside GROUP; return the Child.

    The child joins GROUP first and only then calls unshare(CLONE_NEWCGROUP),
    because a cgroup namespace takes as its root the cgroup its creator is
    in at that moment: asking spawn() for "cgroup" would root the namespace
    at the parent's cgroup instead.
    """
    def join_group() -> None:
        group.add(0)  # "0": the writer itself
        if new_cgroup_namespace:
            syscalls.unshare(CLONE_NEWCGROUP)

    return spawn(target, namespaces, args=args, setup=join_group, **options)


def namespace_views(group: Cgroup) -> dict[str, str]:
    """/proc/PID/cgroup of a process in GROUP with a cgroup namespace of its own,
    as the process itself reads it ("inside": GROUP is "/") and as we read
    it ("outside": the path from the root of each hierarchy).
    """
    inside_r, inside_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)

    def report_then_wait() -> int:
        os.close(inside_r)
        os.close(done_w)
        with open("/proc/self/cgroup", "rb") as f:
            os.write(inside_w, f.read())
        os.close(inside_w)
        os.read(done_r, 1)  # stay in the group until the parent has looked at us
        return 0

    try:
        child = spawn_in(group, report_then_wait)
    finally:
        os.close(inside_w)
        os.close(done_r)
    try:
        inside = b""
        while chunk := os.read(inside_r, 65536):
            inside += chunk
        outside = read_text(f"/proc/{child.pid}/cgroup")
    finally:
        for fd in (inside_r, done_w):
            os.close(fd)
        child.wait()
    return {"inside": inside.decode(), "outside": outside}


# Files ------------------------------------------------------------------------

def _write(path: str, value: str) -> None:
    try:
        write_once(path, value)  # cgroup.procs, for one, takes one PID per write(2)
    except OSError as e:
        raise _error(e, f"write {value!r} to {path}") from None


def _mkdir(path: str) -> str:
    try:
        os.mkdir(path)
    except OSError as e:
        raise _error(e, f"mkdir {path}") from None
    return path


def _remove_directories(top: str) -> None:
    """rmdir TOP and every group below it, deepest first: rmdir removes an empty group only."""
    for here, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
        _rmdir(here)


def _rmdir(path: str) -> None:
    for _ in range(100):  # a process that just died may leave the group a moment later
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise _error(e, f"rmdir {path}") from None
            time.sleep(0.01)
    raise _error(OSError(errno.EBUSY, "busy"), f"rmdir {path}")


def _counter(path: str, key: str) -> int:
    for line in read_text(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def _enable_controllers(root: str, controllers: Sequence[str]) -> None:
    """v2: a child's pids.max and memory.max exist only once the parent enables them."""
    enabled = read_text(f"{root}/cgroup.subtree_control").split()
    missing = [c for c in controllers if c not in enabled]
    if missing:
        _write(f"{root}/cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


def _error(e: OSError, action: str) -> CgroupError:
    hints = {
        errno.EACCES: "cgroup files belong to root: run as root (or in a cgroup delegated to you).",
        errno.EPERM: "cgroup files belong to root: run as root (or in a cgroup delegated to you).",
        errno.EBUSY: "the cgroup still holds processes or child cgroups: kill them and "
                     "remove the children first (an rmdir removes an empty group only).",
        errno.ENOENT: "no such cgroup or file: it was removed, or this controller is not "
                      "enabled here (v2: see the parent's cgroup.subtree_control).",
        errno.ESRCH: "no such process: it has ended, or its PID is not visible in the "
                     "writer's PID namespace.",
        errno.EINVAL: "the kernel refused the value; in v2, a cgroup with processes cannot "
                      "enable controllers for children ('no internal processes' rule).",
        errno.EOPNOTSUPP: "v2 'no internal processes' rule: put processes in leaf cgroups only.",
    }
    return CgroupError(e.errno or errno.EIO, action, hints.get(e.errno, ""))
