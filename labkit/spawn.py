"""Run a function or a command in a child process with new namespaces.

This is the work of clone(2) with CLONE_NEW* flags, done the way a Python
program can do it safely: fork(2), then unshare(2) in the child.  We never
unshare in the calling process, for two reasons:

* it would change the caller for good (a notebook's kernel would lose its
  hostname, its mounts, its network);
* a Jupyter kernel has threads, and namespaces do not fit threads:
  unshare(CLONE_NEWUSER) fails with EINVAL in a multi-threaded process, and
  unshare(CLONE_NEWNS) moves only the calling thread, leaving the others in
  the old mount namespace.  A child of fork() has one thread.

The child does its steps in the order the kernel needs them::

    parent                               child
    ------                               -----
    fork() ------------------------->    prctl(PR_SET_PDEATHSIG, SIGKILL)
                                         unshare(flags)    user ns first, then the rest
    write uid_map, gid_map  <---- "U"    wait for the maps (userns_child_exec.c)
                            ----> "go"   make / private    (unshare(1)'s default)
                                         write timens_offsets
                                         fork() again if pid/time: the grandchild
                            <---- "P"    is PID 1 and the first process in the
                                         new time namespace
                                         sethostname, mount /proc
    EOF on the status pipe  <----------  execve() closes the pipe (O_CLOEXEC)

Why the extra fork: unshare(CLONE_NEWPID) and unshare(CLONE_NEWTIME) do not
move the caller, only its future children (``pid_for_children``).  The
middle process waits for the grandchild and passes on its exit status, as
``unshare --fork`` does.

Why the handshake: a process's capabilities in its new user namespace are
lost at execve(2) when its uid is unmapped, so the maps must be in place
before the child goes on; only a process outside can write them for an
unprivileged user.

Rootless mode: when the caller is not root and asks for any namespace, a
user namespace is added that maps the caller to root inside, so that the
other types can be created without privilege.

The child dies with its parent (PR_SET_PDEATHSIG), so that a crashed
notebook leaves no namespace behind.  prctl(2) counts the parent *thread*:
call spawn() from a thread that outlives the child (the main thread).

See clone(2), unshare(2), user_namespaces(7), pid_namespaces(7), and
unshare(1), whose options this module mirrors.
"""

from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import struct
import sys
from collections.abc import Callable, Sequence

from . import syscalls, timens, user
from .errors import MissingCapability
from .namespace import Namespace
from .nstypes import BY_NAME, encode_flags

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)

# The propagation types of mount_namespaces(7), as spawn(propagation=...) names them.
PROPAGATION = {"private": syscalls.MS_PRIVATE, "slave": syscalls.MS_SLAVE,
               "shared": syscalls.MS_SHARED, "unbindable": syscalls.MS_UNBINDABLE}

NEWUSER, NEWNS, NEWPID, NEWTIME, NEWUTS = (
    BY_NAME[n].flag for n in ("user", "mnt", "pid", "time", "uts"))


class Child:
    """A process started by spawn(): its pid, its namespaces, its end.

    ``pid`` is the process that runs the target (in a new PID namespace it
    is PID 1 there; this is its PID as we see it).  Use it as a context
    manager to be sure it is killed and reaped::

        with spawn(["sleep", "60"], "uts") as child:
            print(child.namespaces["uts"])
    """

    def __init__(self, pid: int, direct: int) -> None:
        self.pid = pid  # runs the target
        self._direct = direct  # our own child, whom we wait for (== pid without pid/time ns)
        self.returncode: int | None = None

    @property
    def namespaces(self) -> dict[str, Namespace]:
        """The child's namespaces, read from /proc/PID/ns now."""
        return Namespace.all_of(self.pid)

    def poll(self) -> int | None:
        """The return code if the child has ended, else None (never blocks)."""
        if self.returncode is None:
            pid, status = os.waitpid(self._direct, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child and return its exit code, or -N if signal N killed it.

        Raises TimeoutError if TIMEOUT seconds pass first.
        """
        if self.returncode is None and timeout is not None:
            fd = os.pidfd_open(self._direct)  # readable when the process has ended
            try:
                if not select.select([fd], [], [], timeout)[0]:
                    raise TimeoutError(f"process {self.pid} still running after {timeout} s")
            finally:
                os.close(fd)
        if self.returncode is None:
            _, status = os.waitpid(self._direct, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send SIG to the child (a PID 1 that dies takes its whole namespace along).

        A PID 1 ignores every signal it has no handler for, except SIGKILL
        and SIGSTOP sent from outside its namespace (pid_namespaces(7)).
        """
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        self.wait()

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"returncode={self.returncode}"
        return f"<Child pid={self.pid} {state}>"


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
) -> Child:
    """Start TARGET in a child process with new NAMESPACES and return a Child.

    TARGET is a function (called with ARGS; its return value, an int or None,
    becomes the exit code) or a command line for execvp(3).
    NAMESPACES: names ("uts,mnt", ["net", "ipc"]) or a CLONE_NEW* mask.
    UID_MAP/GID_MAP: map lines written by the parent ("0 1000 1").
    MAP_ROOT: map the caller to root inside a new user namespace (implies
    "user"; the default when rootless mode adds the user namespace and no
    maps are given; a "user" asked for is left unmapped, as by unshare -U).
    HOSTNAME/DOMAINNAME: set in the new UTS namespace.  MOUNT_PROC: mount a
    fresh /proc (implies a mount namespace).  PROPAGATION: what to make "/"
    in a new mount namespace (private, slave, shared, unbindable,
    unchanged); unshare(1) also defaults to private, so that mounts made
    inside never reach the caller.  TIME_OFFSETS: {"monotonic": s,
    "boottime": s} for a new time namespace.  STDIN/STDOUT/STDERR: file
    descriptors to give the child instead of ours.  CWD, ENV: as for
    subprocess.  Errors in the child before the target starts (a refused
    unshare, a bad hostname, a command not found) are raised here, and the
    child is gone.
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
    status_r, status_w = os.pipe2(os.O_CLOEXEC)  # child -> parent
    go_r, go_w = os.pipe2(os.O_CLOEXEC)  # parent -> child
    parent = os.getpid()
    _flush_std_streams()  # or the child would write our buffered output a second time
    pid = os.fork()
    if pid == 0:  # ---------------------------------------------- the child
        os.close(status_r)
        os.close(go_w)
        try:
            _child(parent, flags, status_w, go_r, handshake=handshake, propagation=propagation,
                   time_offsets=time_offsets, hostname=hostname, domainname=domainname,
                   mount_proc=mount_proc, stdio=(stdin, stdout, stderr), cwd=cwd)
            if callable(target):
                os.close(status_w)  # tells the parent we are running
                _exit_with(target, args)
            _exec(target, env)
        except BaseException as e:  # noqa: BLE001 - everything goes to the parent
            _send(status_w, ("E", _picklable(e)))
        os._exit(127)

    # ------------------------------------------------------------- the parent
    os.close(status_w)
    os.close(go_r)
    child = Child(pid, pid)
    try:
        while (msg := _receive(status_r)) is not None:
            kind, value = msg
            if kind == "U":  # the child is in its new user namespace: map it
                _write_maps(pid, map_root, uid_map, gid_map)
                os.write(go_w, b"g")
            elif kind == "P":  # the grandchild that runs the target
                child.pid = value
            elif kind == "E":  # the child failed, and ends by itself
                child.wait()
                raise value
    except BaseException:
        if child.returncode is None:  # we failed (a map, ^C): end the child
            os.kill(pid, signal.SIGKILL)  # the middle process; its child dies with it
            child.wait()
        raise
    finally:
        os.close(status_r)
        os.close(go_w)
    return child


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


def _check_options(flags: int, target, *, map_root, uid_map, gid_map, hostname, domainname,
                   propagation, time_offsets, env) -> None:
    """Refuse combinations that cannot work, before anything is started."""
    if propagation not in (None, "unchanged", *PROPAGATION):
        raise ValueError(f"unknown propagation {propagation!r}: "
                         f"{', '.join(PROPAGATION)} or unchanged")
    if (hostname is not None or domainname is not None) and not flags & NEWUTS:
        raise ValueError("setting a hostname needs a new UTS namespace: add 'uts'")
    if time_offsets and not flags & NEWTIME:
        raise ValueError("time offsets need a new time namespace: add 'time'")
    if (uid_map or gid_map) and not flags & NEWUSER:
        raise ValueError("uid_map and gid_map need a new user namespace: add 'user'")
    if map_root and (uid_map or gid_map):
        raise ValueError("give either map_root or uid_map/gid_map, not both")
    if not callable(target) and (isinstance(target, (str, bytes)) or not target):
        raise ValueError("target must be a function or a non-empty list of strings")
    if env is not None and not isinstance(env, dict):
        raise TypeError("env must be a dict")


def _child(parent: int, flags: int, status_w: int, go_r: int, *, handshake, propagation, time_offsets,
           hostname, domainname, mount_proc, stdio, cwd) -> None:
    """The child's steps between fork() and exec, in the order the kernel needs them."""
    # Die with the parent, so that a crashed notebook leaves no namespace behind.
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
    # If the parent died before prctl, we have a new parent (0 if we are the
    # first process of a PID namespace the parent had joined: the parent is
    # then outside our namespace, where getppid() cannot name it).
    if os.getppid() not in (parent, 0):
        os._exit(1)
    if flags:
        syscalls.unshare(flags)
    if handshake:
        _send(status_w, ("U", None))
        if os.read(go_r, 1) != b"g":  # EOF: the parent gave up
            os._exit(1)
    os.close(go_r)
    if flags & NEWNS and propagation and propagation != "unchanged":
        _set_propagation(propagation)
    if time_offsets:
        # Only before the first process enters the namespace: that is our child.
        timens.write_offsets("self", time_offsets)
    if flags & (NEWPID | NEWTIME):
        _fork_and_wait(status_w)  # returns in the grandchild only
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
    if hostname is not None:
        syscalls.sethostname(hostname)
    if domainname is not None:
        syscalls.setdomainname(domainname)
    if mount_proc:
        _mount_proc()
    _redirect(*stdio)
    if cwd is not None:
        os.chdir(cwd)


def _mount_proc() -> None:
    """Mount a fresh /proc: it shows the PID namespace of the process that mounts it."""
    try:
        syscalls.mount("proc", "/proc", "proc",
                       syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    except MissingCapability as e:
        # The kernel asks for CAP_SYS_ADMIN over the PID namespace too, and a
        # rootless child without a PID namespace of its own is still in ours.
        raise MissingCapability(e.errno, e.syscall, (
            "Mounting proc needs CAP_SYS_ADMIN in the user namespace that owns the "
            "mounter's PID namespace. In rootless mode, add a new PID namespace too "
            "('pid'; labkit run -p --mount-proc).")) from None


def _redirect(stdin: int | None, stdout: int | None, stderr: int | None) -> None:
    """Put the given descriptors at 0, 1, 2, and point Python's sys.std* there too.

    A command finds them at 0, 1, 2; a Python function prints to sys.stdout,
    which in a test runner or a notebook is not descriptor 1 at all.
    """
    for fd, std, name, mode in ((stdin, 0, "stdin", "r"), (stdout, 1, "stdout", "w"),
                                (stderr, 2, "stderr", "w")):
        if fd is not None:
            os.dup2(fd, std)
            setattr(sys, name, open(std, mode, buffering=1, closefd=False))


def _exec(argv: Sequence[str], env: dict[str, str] | None) -> None:
    """execvpe(3) ARGV with the signal state a new program expects."""
    # An ignored signal stays ignored across execve(2), and a blocked one stays
    # blocked: a command expects neither (Python ignores SIGPIPE, for one).
    syscalls.restore_default_signals()
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    try:
        os.execvpe(argv[0], list(argv), os.environ if env is None else env)
    except OSError as e:
        e.filename = argv[0]  # the command as given, not the last PATH entry tried
        raise


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or odd stream is no reason to fail
            pass


def _set_propagation(kind: str) -> None:
    """mount --make-rKIND /: what mounts in the new namespace share with the old one."""
    syscalls.mount("none", "/", None, syscalls.MS_REC | PROPAGATION[kind])


def _fork_and_wait(status_w: int) -> None:
    """Fork the process that enters the new PID/time namespace; wait for it here.

    Returns only in the grandchild.  The middle process reports the
    grandchild's PID, passes signals on to it, and ends the way it ended.
    """
    pid = os.fork()
    if pid == 0:
        return
    try:
        _send(status_w, ("P", pid))
        # Keep no descriptor of the caller's: a copy of a pipe's write end here
        # would keep the target from ever reading EOF on it.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        status = _forward_signals_until_exit(pid)
        if os.WIFSIGNALED(status):  # die of the same signal, as unshare --fork does
            sig = os.WTERMSIG(status)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the target dumped core already
            if sig != signal.SIGKILL:
                signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    finally:
        os._exit(1)  # never return into the child's code from here


def _forward_signals_until_exit(pid: int) -> int:
    """Pass signals sent to us (a terminal's ^C) on to PID until it ends; return its wait status.

    An init's loop, as in tini: block the signals and take them one at a time
    with sigwaitinfo(2), SIGCHLD among them, so that no Python handler ever
    runs here (each one would copy pages shared with the parent).  A SIGCHLD
    that came before the block is not lost: waitpid(WNOHANG) comes first.
    """
    wanted = (*FORWARDED_SIGNALS, signal.SIGCHLD)
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    while True:
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped:
            return status
        sig = signal.sigwaitinfo(wanted).si_signo
        if sig != signal.SIGCHLD:
            os.kill(pid, sig)


def _exit_with(target: Callable[..., object], args: Sequence[object]) -> None:
    """Call TARGET(*ARGS) in the child and exit with its code (an int result, or 0)."""
    # The target starts with no signal blocked, whatever our caller held back
    # while it started us (labkit run does, so that no signal slips past it).
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    code = 0
    try:
        result = target(*args)
        code = result if isinstance(result, int) and not isinstance(result, bool) else 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - show it, as Python would at exit
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        _flush_std_streams()
    os._exit(code & 0xFF)


def _picklable(e: BaseException) -> BaseException:
    """E itself if it survives the trip through pickle, else a RuntimeError that names it."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(e).__name__}: {e}")


def _send(fd: int, message: tuple) -> None:
    data = pickle.dumps(message)
    os.write(fd, struct.pack("I", len(data)) + data)


def _receive(fd: int) -> tuple | None:
    """The next message on the status pipe, or None at EOF (the child is running)."""
    head = _read_exactly(fd, 4)
    if not head:
        return None
    return pickle.loads(_read_exactly(fd, struct.unpack("I", head)[0]))


def _read_exactly(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def run(fn: Callable[..., object], *args: object, namespaces: object = (), **options) -> object:
    """Call FN(*ARGS) in a child with new NAMESPACES and return what it returns.

    The value (or the exception) comes back pickled through a pipe, so a
    notebook can ask a question inside a namespace and get a Python answer::

        run(socket.gethostname, namespaces="uts", hostname="box")   # -> "box"

    OPTIONS are spawn()'s.
    """
    return collect(lambda target: spawn(target, namespaces, **options), fn, args)


def collect(start: Callable[[Callable[[], int]], Child], fn: Callable[..., object],
            args: Sequence[object]) -> object:
    """Start FN(*ARGS) with START (spawn, enter, ...) and return its result.

    The child sends ("ok", value) or ("error", exception) through a pipe.
    """
    result_r, result_w = os.pipe2(os.O_CLOEXEC)

    def call_and_send() -> int:
        os.close(result_r)
        try:
            answer = ("ok", fn(*args))
        except BaseException as e:  # noqa: BLE001 - the parent re-raises it
            answer = ("error", _picklable(e))
        try:
            _send(result_w, answer)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            _send(result_w, ("error", TypeError(f"cannot send the result back: {e}")))
        return 0

    try:
        child = start(call_and_send)
    except BaseException:
        os.close(result_r)
        raise
    finally:
        os.close(result_w)
    try:
        answer = _receive(result_r)
    finally:
        os.close(result_r)
        child.wait()
    if answer is None:
        raise ChildProcessError(f"the child ended without an answer (exit code {child.returncode})")
    kind, value = answer
    if kind == "error":
        raise value
    return value


def run_command(argv: Sequence[str], namespaces: object = (), *, input: bytes | None = None,
                timeout: float | None = 30, **options):
    """Run ARGV in new NAMESPACES and capture its output, like subprocess.run.

    Returns a subprocess.CompletedProcess with text stdout and stderr.  On
    TIMEOUT the child is killed and subprocess.TimeoutExpired raised.
    """
    import subprocess
    import time

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
    import time

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
