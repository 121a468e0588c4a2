"""Run a function or a command in a child process with new namespaces.

This is the work of clone(2) with CLONE_NEW* flags, done the way a Python
program can do it safely: fork(2), then unshare(2) in the child.  We never
unshare in the calling process, for two reasons:

* it would change the caller for good (a notebook's kernel would lose its
  hostname, its mounts, its network);
* a Jupyter kernel has threads, and namespaces do not fit threads:
  unshare(CLONE_NEWUSER) fails with EINVAL in a multi-threaded process, and
  unshare(CLONE_NEWNS) succeeds but moves only the calling thread, leaving
  the others in the old mount namespace.  A child of fork() has one thread.

The child does its steps in the order the kernel needs them (_child_steps)::

    parent                               child
    ------                               -----
    fork() ------------------------->    prctl(PR_SET_PDEATHSIG, SIGKILL)
                                         unshare(flags)    user ns first, then the rest
    write uid_map, gid_map  <---- "U"    wait for the maps (userns_child_exec.c)
                            ----> "go"   make / private    (unshare(1)'s default)
                                         write timens_offsets
                            <---- "P"    fork() again if pid/time: the grandchild
                                         is PID 1 and the first process in the
                                         new time namespace
                                         sethostname, mount /proc
    EOF on the status pipe  <----------  execve() closes the pipe (O_CLOEXEC)

Why the extra fork: unshare(CLONE_NEWPID) and unshare(CLONE_NEWTIME) do not
move the caller, only its future children (``pid_for_children``).  The
middle process waits for the grandchild and passes on its exit status, as
``unshare --fork`` does.  labkit.child has that fork, the status pipe and
the Child class, which labkit.join shares.

Why the handshake: a process's capabilities in its new user namespace are
lost at execve(2) when its uid is unmapped, so the maps must be in place
before the child goes on; only a process outside can write them for an
unprivileged user.

Rootless mode: when the caller is not root and asks for any namespace, a
user namespace is added that maps the caller to root inside, so that the
other types can be created without privilege.

clone(2) has taken CLONE_NEWNS since Linux 2.4.19 and unshare(2) exists
since 2.6.16; the other flags came with their namespace types (nstypes).

See clone(2), unshare(2), user_namespaces(7), pid_namespaces(7), and
unshare(1), whose options this module mirrors.
"""

from __future__ import annotations

import errno
import math
import os
import select
import subprocess
import time
from collections.abc import Callable, Sequence

from . import syscalls, user
from .child import (
    Child,
    collect,
    die_with_parent,
    flush_std_streams,
    fork_into_pid_namespace,
    redirect_stdio,
    report_failure,
    run_target,
    send_message,
    wait_until_running,
)
from .errors import MissingCapability, error_for, teach
from .nstypes import BY_NAME, encode_flags
from .procfs import write_once

NEWUSER, NEWNS, NEWPID, NEWTIME, NEWUTS = (
    BY_NAME[n].flag for n in ("user", "mnt", "pid", "time", "uts"))


def spawn(
    target: Callable[..., object] | Sequence[str],
    namespaces: object = (),
    *,
    args: Sequence[object] = (),
    uid_map: str | None = None,
    gid_map: str | None = None,
    map_root: bool | None = None,
    hostname: str | None = None,
    domainname: str | None = None,
    mount_proc: bool = False,
    propagation: str | None = "private",
    time_offsets: dict[str, float] | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    setup: Callable[[], object] | None = None,
    before: Callable[[], object] | None = None,
) -> Child:
    """Start TARGET in a child process with new NAMESPACES and return a Child.

    TARGET        a function, called with ARGS (its int result, else 0, is the
                  exit code), or a command line for execvp(3)
    NAMESPACES    names ("uts,mnt", ["net", "ipc"]) or a CLONE_NEW* mask
    UID_MAP       map lines the parent writes ("0 1000 1"); GID_MAP likewise
    MAP_ROOT      map the caller to root in a new user namespace (implies
                  "user"; the default when rootless mode adds the user namespace
                  and no maps are given; a "user" asked for is left unmapped, as
                  by unshare -U)
    HOSTNAME      set in the new UTS namespace; DOMAINNAME likewise
    MOUNT_PROC    mount a fresh /proc (implies a mount namespace)
    PROPAGATION   what to make "/" in a new mount namespace: private (as
                  unshare(1) does, so that mounts made inside never reach the
                  caller), slave, shared, unbindable or unchanged
    TIME_OFFSETS  {"monotonic": s, "boottime": s} for a new time namespace
    STDIN ...     STDIN, STDOUT, STDERR: descriptors to give the child instead of ours
    CWD, ENV      as for subprocess
    SETUP         a function the child calls after its namespace steps, just
                  before TARGET (labkit.cgroup.spawn_in joins a cgroup so)
    BEFORE        a function the child calls first, before any namespace step,
                  with the caller's privileges (the grader builds there the
                  mount namespace that a new user namespace will copy, and lock)

    Errors in the child before the target starts (a refused unshare, a bad
    hostname, SETUP's, a command not found) are raised here, and the child
    is gone.
    """
    flags = encode_flags(namespaces)
    if mount_proc:
        flags |= NEWNS  # a /proc mounted in our own mount namespace would hide the caller's
    if map_root:
        flags |= NEWUSER  # as unshare --map-root-user implies --user
    if os.geteuid() != 0 and flags and not flags & NEWUSER:
        flags |= NEWUSER  # rootless mode
        if map_root is None and not (uid_map or gid_map):
            map_root = True
    _check_options(flags, target, map_root=map_root, uid_map=uid_map, gid_map=gid_map,
                   hostname=hostname, domainname=domainname, propagation=propagation,
                   time_offsets=time_offsets, env=env)

    # The child waits for the parent only if the parent has maps to write.
    handshake = bool(flags & NEWUSER and (map_root or uid_map or gid_map))
    status_r, status_w = os.pipe2(os.O_CLOEXEC)  # child -> parent: "U", "P", "E", or EOF
    go_r, go_w = os.pipe2(os.O_CLOEXEC)  # parent -> child: the maps are written
    parent = os.getpid()
    flush_std_streams()
    pid = os.fork()
    if pid == 0:  # ---------------------------------------------- the child
        os.close(status_r)
        os.close(go_w)
        try:
            die_with_parent(parent)
            if before is not None:
                before()
            _child_steps(flags, status_w, go_r, handshake=handshake, propagation=propagation,
                         time_offsets=time_offsets, hostname=hostname, domainname=domainname,
                         mount_proc=mount_proc)
            if setup is not None:
                setup()
            redirect_stdio(stdin, stdout, stderr)
            if cwd is not None:
                os.chdir(cwd)
            run_target(target, args, env, status_w)
        except BaseException as e:  # noqa: BLE001 - everything goes to the parent
            report_failure(status_w, e)

    # ------------------------------------------------------------- the parent
    os.close(status_w)
    os.close(go_r)
    child = Child(pid)

    def write_maps_and_go_on() -> None:  # the child is in its user namespace, and waits
        _write_maps(pid, map_root, uid_map, gid_map)
        os.write(go_w, b"g")

    try:
        wait_until_running(child, status_r, on_user_namespace=write_maps_and_go_on)
    finally:
        os.close(status_r)
        os.close(go_w)
    return child


def _check_options(flags: int, target, *, map_root, uid_map, gid_map, hostname, domainname,
                   propagation, time_offsets, env) -> None:
    """Refuse combinations that cannot work, before anything is started."""
    if propagation not in (None, "unchanged", *syscalls.PROPAGATION):
        raise ValueError(f"unknown propagation {propagation!r}: "
                         f"{', '.join(syscalls.PROPAGATION)} or unchanged")
    if (hostname is not None or domainname is not None) and not flags & NEWUTS:
        raise ValueError("setting a hostname needs a new UTS namespace: add 'uts'")
    if time_offsets and not flags & NEWTIME:
        raise ValueError("time offsets need a new time namespace: add 'time'")
    for clock, seconds in (time_offsets or {}).items():
        offset_line(clock, seconds)  # ValueError for an offset that is no finite number
    if (uid_map or gid_map) and not flags & NEWUSER:
        raise ValueError("uid_map and gid_map need a new user namespace: add 'user'")
    if map_root and (uid_map or gid_map):
        raise ValueError("give either map_root or uid_map/gid_map, not both")
    if not callable(target) and (isinstance(target, (str, bytes)) or not target):
        raise ValueError("target must be a function or a non-empty list of strings")
    if env is not None and not isinstance(env, dict):
        raise TypeError("env must be a dict")


# The child's steps, in the order the kernel needs them ---------------------------

def _child_steps(flags: int, status_w: int, go_r: int, *, handshake, propagation, time_offsets,
                 hostname, domainname, mount_proc) -> None:
    """Between fork() and the target: new namespaces, maps, mounts, names.

    Returns in the process that runs the target: the grandchild, with a new
    PID or time namespace.
    """
    # 1. All the namespaces in one call: the kernel makes the user namespace
    #    first, and the others owned by it.
    if flags:
        syscalls.unshare(flags)
    # 2. Wait until the parent has written our maps: without them we are
    #    "nobody" in the new user namespace, and execve would drop our capabilities.
    if handshake:
        send_message(status_w, ("U", None))
        if os.read(go_r, 1) != b"g":  # EOF: the parent gave up
            os._exit(1)
    os.close(go_r)
    # 3. Our mounts must not reach the caller's namespace (and theirs not us).
    if flags & NEWNS and propagation and propagation != "unchanged":
        syscalls.mount("none", "/", None, syscalls.MS_REC | syscalls.PROPAGATION[propagation])
    # 4. Time offsets can be written only before the first process enters the
    #    new time namespace: that is our child, forked next.
    if time_offsets:
        write_offsets("self", time_offsets)
    # 5. The new PID and time namespaces are for our children: fork the one
    #    that runs the target.
    if flags & (NEWPID | NEWTIME):
        fork_into_pid_namespace(status_w)  # returns in the grandchild only
    # 6. What the new namespaces should hold.
    if hostname is not None:
        syscalls.sethostname(hostname)
    if domainname is not None:
        syscalls.setdomainname(domainname)
    if mount_proc:
        mount_fresh_proc()  # after the fork: a proc shows the PID namespace of its mounter


# The parent's step --------------------------------------------------------------

def _write_maps(pid: int, map_root: bool | None, uid_map: str | None, gid_map: str | None) -> None:
    """The parent's half of the handshake: write the child's uid and gid maps."""
    if map_root:
        user.map_root(pid)
    if uid_map:
        user.write_uid_map(pid, uid_map)
    if gid_map:
        if os.geteuid() != 0:
            user.deny_setgroups(pid)  # the Linux 3.19 rule, before gid_map
        user.write_gid_map(pid, gid_map)


# Steps of other types, taken here --------------------------------------------------
#
# A fresh /proc (pid_namespaces(7)) and the time offsets (time_namespaces(7))
# are steps of spawn, as --mount-proc and --monotonic/--boottime are steps of
# unshare(1).  labkit.pid and labkit.timens explain them and use spawn to show
# them: they stand above this module, and labkit.user (whose maps spawn writes)
# below it.  start_owning_all() is user_namespaces(7)'s point that the creator
# of a user namespace may make every other type in it.

def mount_fresh_proc(target: str = "/proc") -> None:
    """mount -t proc proc TARGET: a /proc that shows the caller's PID namespace.

    Do it in a mount namespace of one's own: in the caller's, the new /proc
    would replace /proc for every process that shares the mount namespace.
    The kernel asks for CAP_SYS_ADMIN over the PID namespace that the proc
    will show as well as over the mount namespace, so a normal user needs
    a PID namespace of their own too (labkit run -fp --mount-proc); and in a
    user namespace it mounts a proc only while another proc is fully
    visible in the mount namespace (nothing mounted over parts of it), since
    a new one would reveal what such mounts hide.
    """
    os.makedirs(target, exist_ok=True)
    try:
        syscalls.mount("proc", target, "proc",
                       syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    except MissingCapability as e:
        raise MissingCapability(e.errno, e.syscall, (
            "Mounting proc needs CAP_SYS_ADMIN in the user namespace that owns the "
            "mounter's PID namespace, as well as the mount namespace. In rootless mode, "
            "add a new PID namespace too ('pid'; labkit run -fp --mount-proc).")) from None


# What a refused write of timens_offsets means (time_namespaces(7)).
teach("timens_offsets", hints={
    errno.EPERM: "Writing time offsets needs CAP_SYS_TIME in the user namespace that owns "
                 "the time namespace.",
    errno.EACCES: "Time offsets can be written only before the first process enters the new "
                  "time namespace (after unshare(CLONE_NEWTIME), before fork).",
    errno.ERANGE: "The offset would make the clock negative (or absurdly large): a negative "
                  "offset may be at most the clock's current value.",
    errno.EINVAL: "Each line is 'CLOCK SECONDS NANOSECONDS' with CLOCK monotonic or boottime "
                  "and 0 <= NANOSECONDS < 1000000000 (negative offsets go in SECONDS).",
})


def offset_line(clock: str, seconds: float) -> str:
    """One line for timens_offsets: -1.5 s is "-2 500000000" (nanoseconds are never negative)."""
    if not math.isfinite(seconds):
        raise ValueError(f"a {clock} offset is a finite number of seconds, not {seconds}")
    whole, nanoseconds = divmod(round(seconds * 1_000_000_000), 1_000_000_000)
    return f"{clock} {whole} {nanoseconds}\n"


def write_offsets(pid: int | str, offsets: dict[str, float]) -> None:
    """Set the offsets of PID's time_for_children namespace: before anyone enters it.

    All lines go in one write(2): the kernel takes them all or none.  A
    refusal becomes labkit's teaching error (EACCES: too late, someone has
    entered; EPERM: no CAP_SYS_TIME; ERANGE: below zero; EINVAL: bad line).
    """
    path = f"/proc/{pid}/timens_offsets"
    text = "".join(offset_line(clock, seconds) for clock, seconds in offsets.items())
    try:
        write_once(path, text)
    except OSError as e:
        raise error_for("timens_offsets", e.errno, detail=f"({path}: {text.strip()!r})") from None


def start_owning_all(argv: Sequence[str]) -> Child:
    """Start ARGV in a new user namespace and, owned by it, one of every other type.

    No privilege needed: unshare(2) creates the user namespace first, and
    the child's capabilities in it are enough for all the rest.  Root
    inside is mapped to the caller.  Returns a Child.
    """
    return spawn(list(argv), ("user", *user.OTHER_TYPES), map_root=True)


# A function's answer, a command's output -------------------------------------------

def run(fn: Callable[..., object], *args: object, namespaces: object = (), **options) -> object:
    """Call FN(*ARGS) in a child with new NAMESPACES and return what it returns.

    The value (or the exception) comes back pickled through a pipe, so a
    notebook can ask a question inside a namespace and get a Python answer::

        run(socket.gethostname, namespaces="uts", hostname="box")   # -> "box"

    OPTIONS are spawn()'s.
    """
    return collect(lambda target: spawn(target, namespaces, **options), fn, args)


def run_command(argv: Sequence[str], namespaces: object = (), *, input: bytes | None = None,
                timeout: float | None = 30, **options) -> subprocess.CompletedProcess:
    """Run ARGV in new NAMESPACES and capture its output, like subprocess.run.

    Returns a subprocess.CompletedProcess with text stdout and stderr.  On
    TIMEOUT the child is killed and subprocess.TimeoutExpired raised.
    """
    (in_r, in_w), (out_r, out_w), (err_r, err_w) = (os.pipe2(os.O_CLOEXEC) for _ in range(3))
    try:
        child = spawn(argv, namespaces, stdin=in_r, stdout=out_w, stderr=err_w, **options)
    except BaseException:
        for fd in (in_w, out_r, err_r):
            os.close(fd)
        raise
    finally:
        for fd in (in_r, out_w, err_w):  # the child's ends
            os.close(fd)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        stdout, stderr = _communicate(in_w, out_r, err_r, input or b"", deadline)
        code = child.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        child.kill()
        child.wait()
        raise subprocess.TimeoutExpired(list(argv), timeout) from None
    return subprocess.CompletedProcess(list(argv), code, stdout.decode(errors="replace"),
                                       stderr.decode(errors="replace"))


def _communicate(in_w: int, out_r: int, err_r: int, data: bytes,
                 deadline: float | None) -> tuple[bytes, bytes]:
    """Feed DATA to IN_W and read OUT_R and ERR_R until both end; close all three.

    One select(2) loop for all three pipes, so that a child that writes much
    before it reads cannot block us, nor we it.  TimeoutError at DEADLINE.
    """
    output = {out_r: bytearray(), err_r: bytearray()}
    reading, writing = [out_r, err_r], [in_w]
    try:
        while reading or writing:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            readable, writable, _ = select.select(reading, writing, [], left)
            if not (readable or writable):
                raise TimeoutError
            if writable:
                try:
                    data = data[os.write(in_w, data[:select.PIPE_BUF]):]
                except BrokenPipeError:  # the child does not read its input: fine
                    data = b""
                if not data:
                    writing.clear()
                    os.close(in_w)
                    in_w = -1
            for fd in readable:
                chunk = os.read(fd, 65536)
                if chunk:
                    output[fd] += chunk
                else:
                    reading.remove(fd)
    finally:
        for fd in (in_w, out_r, err_r):
            if fd >= 0:
                os.close(fd)
    return bytes(output[out_r]), bytes(output[err_r])
