"""The grading sandbox: where a student's program runs, and why it cannot hurt.

Every run of a solution gets a sandbox of its own, built with labkit (the
grader uses the lab's own library) and torn down completely afterwards::

    grader (root of the machine)        the sandbox
    ------                              -----------
    cgroup with pids and memory limits
    openpty(); draw ids B..B+65535
    spawn(init) --> before(), still the machine's root, in a mount namespace M0:
                      join the cgroup; fresh tmpfs on /tmp /run /var/tmp /dev/shm,
                      owned by uid B; copy the exercise folder into /tmp/exercise
                      (owned by B); empty tmpfs over the grader, the workspaces,
                      /root and /home; / read-only
                    unshare(user, mnt, uts, net, ipc, pid, cgroup): the kernel
                      makes the user namespace first and the others owned by it;
                      the new mount namespace is a copy of M0, every mount LOCKED
    write uid_map and gid_map "0 B 65536"
                    fork: PID 1, "init": setresuid(0) (= B outside), hostname,
                      fresh /proc, sysfs and mqueue of the new namespaces,
                      setsid() + TIOCSCTTY: the pty is its terminal
                      fork() -> the solution: default signals, empty signal mask,
                                rlimits, the check's hook, descriptors 0-2 only,
                                execve() in /tmp/scratch
    pexpect on the pty master <--------> the solution's terminal
    status pipe <---------------------- "started", "exit" + raw wait status
    kill PID 1: the kernel kills every process of its PID namespace;
    kill and remove the cgroup; the namespaces end with their last process.

Why each piece:

* The user namespace is the wall.  The solution is root *of a user
  namespace of the grader's*: uid 0 there is uid B outside, an id no user
  of the machine has, drawn for each run.  Its capabilities count only
  for namespaces that its user namespace owns (user_namespaces(7)), so it
  may mount, pivot_root, make veths, set clocks of its own time namespace,
  but the kernel checks everything else against uid B: the machine's files
  owned by root are read-only or unreadable to it; it cannot mount a disk,
  load a module, write /proc/sys, open_by_handle_at(2), or ptrace a
  process of the machine.
* The covers cannot be lifted.  They are made in M0, a mount namespace
  owned by the machine's user namespace; the sandbox's mount namespace is
  a copy of M0 made for a less privileged user namespace, and the kernel
  locks such copies (mount_namespaces(7), "Restrictions on mount
  namespaces"): a locked mount cannot be unmounted, a read-only one not
  made writable, and a bind of "/" must take the covers along (a bind
  without MS_REC of a tree with locked mounts below fails with EINVAL).
* The PID namespace is the off switch.  When its PID 1 dies the kernel
  SIGKILLs every process in it, daemons and double forks included, and no
  process can leave a PID namespace.  ``kill -9 -1`` inside reaches only the
  sandbox's own processes (and not PID 1, which ignores signals from its
  namespace unless it has a handler).  PID 1 holds nothing of the grader's:
  once the solution's process is forked it execs REAPER (below), which the
  solution may ptrace or read, by design.  Until then it is a forked copy
  of the grader that is not dumpable (it changed its uid), and its memory
  belongs to the machine's user namespace: out of the solution's reach.
* The cgroup bounds what a PID namespace cannot: a fork bomb (pids.max), a
  memory hog (the OOM killer acts inside the group only).  Its files belong
  to the machine's root: the solution cannot raise its limits.
* Fresh tmpfs file systems hold every file the solution writes; /run/netns
  starts empty.  UTS, network and IPC namespaces hold hostnames, links,
  addresses, named network namespaces and System V objects.  All of them
  end with the sandbox.

What a root solution can still see: the machine's files that every user may
read (/usr, /etc without /etc/shadow), outside the covered folders; the
kernel's version and its global /proc files; nothing it can change.

Talking to the solution once it runs (the pty, pexpect, the transcript,
its exit status) is grader/session.py.

A check chooses how the solution starts with a *hook*: a function called in
the sandbox, in the solution's process, right before execve(2).  It gets
the argument vector and may return another; it may chroot(2), drop to
another user, or create a PID namespace and fork (see grader/hooks.py).

See namespaces(7), user_namespaces(7), mount_namespaces(7),
pid_namespaces(7), cgroups(7), pty(7), credentials(7).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import resource
import secrets
import shutil
import signal
import struct
import sys
import tarfile
import termios
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labkit import procfs, syscalls
from labkit.cgroup import Cgroup
from labkit.spawn import spawn

from .session import Exit, Session, signal_name

__all__ = ["EXERCISE_DIR", "SCRATCH_DIR", "KIT", "Exit", "Hook", "IdMap", "Limits", "Sandbox",
           "Session", "hidden_paths", "signal_name"]

MiB = 1 << 20
KIT = Path(__file__).resolve().parent.parent  # the kit: labkit, grader, solutions

# Paths inside the sandbox.
EXERCISE_DIR = "/tmp/exercise"  # the copy of the student's exercise folder
SCRATCH_DIR = "/tmp/scratch"  # the solution's working directory
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# In one unshare(2): the kernel makes the user namespace first, the others owned by it.
NAMESPACES = ("user", "mnt", "uts", "net", "ipc", "pid", "cgroup")
ID_COUNT = 65536  # ids 0-65535 of the sandbox: root, and the users exercise userns draws

# Capabilities no exercise needs.  In the sandbox's user namespace they are
# worth little (loading a module or setting the clock needs them in the
# machine's), but no solution has a reason to hold them: dropped from the
# bounding set, they are gone after execve(2).
CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_BOOT, CAP_SYS_TIME = 16, 17, 22, 25
PR_CAPBSET_DROP, PR_SET_NAME, PR_SET_DUMPABLE = 24, 15, 4
_INIT_NAME = ctypes.create_string_buffer(b"sandbox-init")  # what ps shows for the sandbox's PID 1

# Directories a solution may write to: each gets a fresh tmpfs.
SCRATCH_MOUNTS = ("/tmp", "/run", "/var/tmp", "/dev/shm")
# Never hidden, whatever a caller asks: the sandbox needs them.
ESSENTIAL = ("/bin", "/dev", "/etc", "/lib", "/proc", "/run", "/sbin", "/sys", "/tmp", "/usr")

Hook = Callable[[list[str]], "list[str] | None"]



@dataclass(frozen=True)
class Limits:
    """How much a run may use; an exercise may ask for other values."""

    wall: float = 20.0  # seconds the whole run may last
    cpu: int = 10  # RLIMIT_CPU: seconds of CPU for each process
    pids: int = 128  # processes and threads in the sandbox at once
    memory: int = 256 * MiB  # the cgroup's memory limit
    output: int = 1 * MiB  # bytes of output the grader reads before it stops the run
    tmpfs: int = 64 * MiB  # size of each scratch tmpfs
    drop_capabilities: tuple[int, ...] = (CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_BOOT, CAP_SYS_TIME)


def hidden_paths(*extra: str | os.PathLike) -> list[str]:
    """Folders to cover with an empty tmpfs in every sandbox.

    The kit (grader, reference solutions, starters), the virtual environment
    the grader runs from (if it is one), home directories (where copies of other work
    live), and EXTRA (the student's workspace, the class folder).
    """
    venv = sys.prefix if sys.prefix != sys.base_prefix else ""
    paths = [KIT, venv, "/root", "/home", *extra]
    return sorted({os.path.realpath(p) for p in paths if p})


@dataclass(frozen=True)
class IdMap:
    """The sandbox's ids on the machine: id N inside is BASE + N outside, for N < ID_COUNT."""

    base: int

    @property
    def line(self) -> str:
        """The uid_map and gid_map line: "0 BASE 65536"."""
        return f"0 {self.base} {ID_COUNT}"

    def outside(self, inside: int) -> int:
        return self.base + inside

    def inside(self, outside: int) -> int | None:
        """The sandbox's id for the machine's id OUTSIDE; None if it has none (nobody, 65534)."""
        return outside - self.base if self.base <= outside < self.base + ID_COUNT else None

    @classmethod
    def draw(cls) -> IdMap:
        """A block of ids no user of the machine has: above 2**31, away from /etc/sub[ug]id ranges."""
        taken = _subordinate_ranges()
        while True:
            base = (1 << 31) + secrets.randbelow(32000) * ID_COUNT
            if not any(start < base + ID_COUNT and base < start + count for start, count in taken):
                return cls(base)


def _subordinate_ranges() -> list[tuple[int, int]]:
    """The (start, count) ranges of /etc/subuid and /etc/subgid (rootless containers' ids)."""
    ranges = []
    for path in ("/etc/subuid", "/etc/subgid"):
        with contextlib.suppress(OSError):
            with open(path) as f:
                for line in f:
                    fields = line.strip().split(":")
                    if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                        ranges.append((int(fields[1]), int(fields[2])))
    return ranges


# The grader's side -----------------------------------------------------------

# Only one sandbox is started at a time: between openpty() and spawn() the
# pty's slave end is open in the grader, and a fork in another thread would
# copy it into a long-lived process and delay that session's end of file.
_START_LOCK = threading.Lock()


@dataclass
class Sandbox:
    """Where runs happen: SOURCE is copied into each run's sandbox.

    SOURCE is a folder on the host (the grader's staging copy of the
    student's exercise folder); HIDE the host folders to cover.
    """

    source: str
    hide: Sequence[str] = ()
    limits: Limits = field(default_factory=Limits)
    hostname: str = field(default_factory=lambda: f"sandbox-{secrets.token_hex(3)}")

    def start(self, argv: Sequence[str], *, hook: Hook | None = None, cwd: str = SCRATCH_DIR,
              env: dict[str, str] | None = None, export: bool = False) -> Session:
        """Start ARGV (argv[0] a path inside the sandbox) in a new sandbox.

        HOOK runs in the solution's process right before execve.  EXPORT
        brings the sandbox's /tmp/exercise back to SOURCE when the run is
        closed (used to run make once and keep what it built).
        """
        group = Cgroup.create()
        try:
            group.limit_pids(self.limits.pids)
            group.limit_memory(self.limits.memory)
            return self._spawn(list(argv), group, hook, cwd, env, export)
        except BaseException:
            group.remove()
            raise

    def _spawn(self, argv: list[str], group: Cgroup, hook: Hook | None, cwd: str,
               env: dict[str, str] | None, export: bool) -> Session:
        env = env or {"PATH": PATH, "HOME": SCRATCH_DIR, "TERM": "dumb", "LANG": "C.UTF-8"}
        ids = IdMap.draw()
        # What make built comes back as a tar archive that PID 1 writes, with the
        # solution's own rights, into a file only the grader and PID 1 hold.
        archive = os.memfd_create("sandbox-export", os.MFD_CLOEXEC) if export else -1
        with _START_LOCK:
            for stream in (sys.stdout, sys.stderr):  # the init is a fork: no buffered text into the pty
                with contextlib.suppress(Exception):
                    stream.flush()
            master, slave = os.openpty()
            tty, tty_name = os.fstat(slave).st_rdev, os.ttyname(slave)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            status_r, status_w = os.pipe2(os.O_CLOEXEC)
            source = os.open(self.source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            plan = _Plan(group, status_w, source, archive, ids, argv, hook, cwd, env,
                         self.limits, list(self.hide))
            try:
                init = spawn(_init, NAMESPACES, args=(plan,), before=lambda: _build_root(plan),
                             uid_map=ids.line, gid_map=ids.line, hostname=self.hostname,
                             mount_proc=True, stdin=slave, stdout=slave, stderr=slave)
            except BaseException:
                for fd in (master, status_r, archive):
                    if fd >= 0:
                        os.close(fd)
                raise
            finally:
                for fd in (slave, status_w, source):
                    os.close(fd)
        os.set_blocking(status_r, False)
        unpack = (lambda: _unpack(archive, self.source)) if export else None
        return Session(self, argv, init, group, master, status_r, tty, tty_name, ids=ids,
                       uts=_hold_namespace(init.pid, "uts"), on_close=unpack)


def _hold_namespace(pid: int, nstype: str) -> int | None:
    """A descriptor of PID's namespace NSTYPE, or None if PID has already ended.

    Taken the moment spawn() returns, while PID 1 still builds the sandbox:
    a watch that opened /proc/PID/ns/uts later, on a loaded machine, could
    find a quick run already over (and the grader failed inside a check of
    a correct solution).
    """
    try:
        return os.open(f"/proc/{pid}/ns/{nstype}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _unpack(archive: int, folder: str) -> None:
    """Replace FOLDER's contents with the archive PID 1 wrote, if it wrote one."""
    try:
        with os.fdopen(archive, "rb") as f:
            f.seek(0)
            if not f.read(1):
                return  # PID 1 did not get to write it (make failed, or was killed)
            f.seek(0)
            with tarfile.open(fileobj=f, mode="r:") as tar:  # PID 1 writes it uncompressed
                members = tar.getmembers()
                _empty(folder)
                _extract(tar, members, folder)
    except (OSError, tarfile.TarError):
        pass  # what make built is lost; the grader then finds no solution and says so


def _extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], folder: str) -> None:
    """Unpack the solution's archive as the machine's root, safely: only into FOLDER.

    The archive is the solution's work, so only folders, regular files and
    symbolic links (written as links, never followed: each step of a path
    is opened with O_NOFOLLOW) are unpacked; no ".." or absolute path, no
    device, no set-user-ID bit.  (tarfile's filter="data" does this from
    Python 3.11.4; Debian 12 has 3.11.2.)
    """
    top = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for member in members:
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if not parts or ".." in parts or member.name.startswith("/"):
                continue
            opened: list[int] = []
            try:
                here = top
                for part in parts[:-1]:
                    here = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=here)
                    opened.append(here)
                _extract_one(tar, member, parts[-1], here)
            except OSError:
                continue  # a path through a link, or a name twice: skipped
            finally:
                for fd in opened:
                    os.close(fd)
    finally:
        os.close(top)


def _extract_one(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, here: int) -> None:
    mode = member.mode & 0o777
    if member.isdir():
        os.mkdir(name, mode | 0o700, dir_fd=here)
    elif member.issym():
        os.symlink(member.linkname, name, dir_fd=here)
    elif member.isfile():
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=here)
        with os.fdopen(fd, "wb") as out, tar.extractfile(member) as data:
            shutil.copyfileobj(data, out)


def _empty(folder: str) -> None:
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


# The sandbox's side: its root file system, PID 1 and the solution's process ----------
#
# Everything below runs in forked copies of the grader.  It reports through
# the status pipe, never on the terminal (which belongs to the student's
# program), and imports nothing: once the kit's folder is hidden, a module
# that is not loaded yet cannot be.

@dataclass
class _Plan:
    group: Cgroup
    status_w: int
    source: int
    archive: int  # -1, or where PID 1 writes the exercise folder's archive at the end
    ids: IdMap
    argv: list[str]
    hook: Hook | None
    cwd: str
    env: dict[str, str]
    limits: Limits
    hide: list[str]


def _build_root(plan: _Plan) -> None:
    """Still the machine's root, in spawn's child: the mount namespace M0 the sandbox will copy.

    Everything made here is made by the machine's root, so that the copy
    the kernel makes for the sandbox's user namespace holds it locked.
    """
    syscalls.unshare("mnt")
    syscalls.mount("none", "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)  # nothing leaks out
    plan.group.add(0)  # before the cgroup namespace: this cgroup becomes its "/"
    _mount_scratch(plan.limits.tmpfs, plan.ids.base)
    _copy_in(plan.source, plan.ids.base)
    os.close(plan.source)
    _hide(plan.hide)
    syscalls.mount("none", "/", None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY)


def _mount_scratch(size: int, owner: int) -> None:
    flags = syscalls.MS_NOSUID | syscalls.MS_NODEV
    for path in SCRATCH_MOUNTS:
        if os.path.isdir(path) and not os.path.islink(path):
            mode = "755" if path == "/run" else "1777"
            syscalls.mount("tmpfs", path, "tmpfs", flags,
                           f"size={size},mode={mode},uid={owner},gid={owner}")


def _copy_in(source: int, owner: int) -> None:
    """Copy the host's folder (still reachable through its descriptor) in; root inside owns it."""
    os.fchdir(source)
    shutil.copytree(".", EXERCISE_DIR, symlinks=True)
    os.mkdir(SCRATCH_DIR)
    os.chmod(SCRATCH_DIR, 0o1777)
    for here, dirs, files in os.walk(EXERCISE_DIR):
        for name in [here, *(os.path.join(here, n) for n in dirs + files)]:
            os.lchown(name, owner, owner)
    os.lchown(SCRATCH_DIR, owner, owner)
    os.chdir("/")


def _hide(paths: list[str]) -> None:
    """An empty read-only tmpfs over each path (and so over everything below it)."""
    done: list[str] = []
    for path in sorted(paths):
        if path == "/" or any(e == path or e.startswith(path + "/") for e in ESSENTIAL):
            continue  # hiding it would hide the sandbox's own tools
        if any(path.startswith(d.rstrip("/") + "/") for d in done):
            continue  # already under a hidden one
        if os.path.isdir(path) and not os.path.islink(path):
            syscalls.mount("tmpfs", path, "tmpfs", syscalls.MS_RDONLY | syscalls.MS_NOSUID
                           | syscalls.MS_NODEV | syscalls.MS_NOEXEC, "size=4k,mode=755")
            done.append(path)


def _init(plan: _Plan) -> None:
    """PID 1 of the sandbox: finish it, start the solution, then become a clean reaper.

    The solution may read /proc/1/root (a chroot's classic way out goes
    through it), and what lets it do so (ptrace access: same uid, same
    user namespace) would also let it read PID 1's memory.  So PID 1 does
    not stay a forked copy of the grader: once the solution's process is
    forked, PID 1 execs REAPER, a few lines of Python that hold nothing but
    the solution's PID and the status pipe.  The solution's process waits
    until REAPER has named itself and ignores the terminal's signals (it
    closes the pipe the solution's process reads).

    Until the exec it ends with os._exit, never by returning: a normal exit
    would flush the grader's Python buffers into the student's terminal.
    """
    try:
        _build(plan)
        hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(hold_w)
            os.read(hold_r, 1)  # EOF: PID 1 is REAPER, and holds no copy of the grader any more
            os.close(hold_r)
            _exec_solution(plan)
        _report(plan, event="started", pid=pid)
        os.close(hold_r)
        for fd in (plan.status_w, plan.archive, hold_w):
            if fd >= 0:
                os.set_inheritable(fd, True)
        os.execve(PYTHON, ["sandbox-init", "-I", "-S", "-c", REAPER,
                           str(pid), str(plan.status_w), str(plan.archive), EXERCISE_DIR, str(hold_w)], {})
    except BaseException as e:  # noqa: BLE001 - the grader reads it; the terminal is the student's
        _report(plan, event="setup_error", message=f"{type(e).__name__}: {e}",
                where=traceback.format_exc(limit=-2))
    os._exit(1)


# The machine's Python (not the grader's virtual environment, which is hidden).
PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))

# PID 1 once the solution runs: reap every child (orphans come to PID 1) until
# the solution ends, report its wait status; for make, archive what it built,
# once every other process is killed (kill(-1) from PID 1 reaches them all).
# It holds nothing a solution could use: a root solution that ptraces it
# could only report its own exit status, which it chooses anyway.
# It starts once per run, so it imports only what Python has built in
# (_signal, not signal: that one imports enum; no json, no ctypes): half of
# the startup, and the reaper was a quarter of all a selftest's CPU time.
REAPER = """
import _signal, os, sys
with open("/proc/self/comm", "w") as comm:
    comm.write("sandbox-init")  # what ps shows; exec named it python3.11
for sig in (_signal.SIGINT, _signal.SIGQUIT, _signal.SIGTSTP, _signal.SIGTTIN, _signal.SIGTTOU,
            _signal.SIGHUP):
    _signal.signal(sig, _signal.SIG_IGN)
pid, status_w, archive = (int(a) for a in sys.argv[1:4])
os.close(int(sys.argv[5]))  # the solution's process starts now
while True:
    reaped, status = os.waitpid(-1, 0)
    if reaped == pid:
        break
os.write(status_w, b'{"event": "exit", "status": %d}\\n' % status)
if archive >= 0:
    import tarfile
    try:
        os.kill(-1, _signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        while True:
            os.waitpid(-1, 0)
    except ChildProcessError:
        pass
    with os.fdopen(archive, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
        tar.add(sys.argv[4], arcname=".")
os._exit(0)
"""


def _build(plan: _Plan) -> None:
    _forget_command_line()
    _become_root()
    # PID 1 of a namespace gets only signals it has a handler for; the
    # terminal's ^C must not reach Python's KeyboardInterrupt handler here.
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN,
                signal.SIGTTOU, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty becomes the session's controlling terminal
    flags = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
    syscalls.mount("sysfs", "/sys", "sysfs", flags)  # the sandbox's network devices; no cgroup mounts
    if os.path.isdir("/dev/mqueue"):
        syscalls.mount("mqueue", "/dev/mqueue", "mqueue", flags)  # this IPC namespace's queues


def _become_root() -> None:
    """Become uid 0 and gid 0 of the sandbox's user namespace (uid B of the machine).

    We came into the user namespace as the machine's root, an id it does
    not map: the kernel would still judge our file accesses as uid 0.
    Changing ids also makes us not dumpable: the solution cannot ptrace
    us or read our memory, which is a copy of the grader's.
    """
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    syscalls.prctl(PR_SET_DUMPABLE, 0)


def _forget_command_line() -> None:
    """Blank the grader's command line and environment that /proc/1/cmdline and environ show.

    This process is a forked copy of the grader, and the solution may read
    /proc/1/ of its namespace: the grader's arguments (a class folder, a
    CSV file) and environment (an instructor's tokens) are none of its
    business.  Both are strings on the stack where execve(2) put them,
    fields 48 to 51 of /proc/self/stat; Python keeps its own copies.
    """
    fields = procfs.stat_fields("self")
    arg_start, arg_end, env_start, env_end = (int(x) for x in fields[45:49])  # fields 48-51
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        for start, end in ((arg_start, arg_end), (env_start, env_end)):
            mem.seek(start)
            mem.write(bytes(end - start))
    syscalls.prctl(PR_SET_NAME, ctypes.addressof(_INIT_NAME))


def _exec_solution(plan: _Plan) -> None:
    """In the solution's process: a clean start, the check's hook, execve. Never returns."""
    try:
        # The contract: default signal dispositions and an empty signal mask.
        for sig in signal.valid_signals():
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
        syscalls.restore_default_signals()  # also 32 and 33, which make(1) ignores
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        resource.setrlimit(resource.RLIMIT_CPU, (plan.limits.cpu, plan.limits.cpu))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # The OOM killer's first choice is the solution, never the sandbox's init
        # (raising one's own score needs no privilege; lowering init's would).
        syscalls.prctl(PR_SET_DUMPABLE, 1)  # /proc/self is ours again (we inherited PID 1's 0)
        _write("/proc/self/oom_score_adj", "1000")
        syscalls.prctl(PR_SET_DUMPABLE, 0)  # the hook's processes (a warden) are grader copies too;
        # execve(2) makes the solution dumpable again
        for cap in plan.limits.drop_capabilities:
            syscalls.prctl(PR_CAPBSET_DROP, cap)
        os.chdir(plan.cwd)
        argv = plan.argv
        if plan.hook is not None:
            argv = plan.hook(list(argv)) or argv
        # Only 0, 1 and 2 go to the solution: whatever the grader inherited from
        # whoever started it (a test runner's pipe, a terminal) stays here.
        os.closerange(3, plan.status_w)  # the status pipe closes itself at execve (O_CLOEXEC)
        os.closerange(plan.status_w + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        os.execve(argv[0], argv, plan.env)
    except OSError as e:
        _report(plan, event="exec_error", errno=e.errno or 0,
                message=f"{e.strerror or e}: {e.filename or plan.argv[0]}")
    except BaseException as e:  # noqa: BLE001 - a hook's bug: the grader's error, not the student's
        _report(plan, event="setup_error", message=f"hook: {type(e).__name__}: {e}")
    finally:
        os._exit(127)


def _report(plan: _Plan, **event: object) -> None:
    with contextlib.suppress(OSError):
        os.write(plan.status_w, json.dumps(event).encode() + b"\n")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
