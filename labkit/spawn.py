"""Run a function or a command in a child process with new namespaces.

This is the work of clone(2) with CLONE_NEW* flags, done the way a Python
program can do it safely: fork(2), then unshare(2) in the child.  We never
unshare in the calling process, for two reasons:

* it would change the caller for good (a notebook's kernel would lose its
  hostname, its mounts, its network);
* CLONE_NEWUSER and CLONE_NEWNS fail with EINVAL in a multi-threaded
  process, and a Jupyter kernel has threads.  A child of fork() has one.

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

See clone(2), unshare(2), user_namespaces(7), pid_namespaces(7), and
unshare(1), whose options this module mirrors.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import sys
from collections.abc import Callable, Sequence

from . import syscalls, user
from .errors import NamespaceError
from .namespace import Namespace
from .nstypes import BY_NAME, encode_flags

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)

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
        """Send SIG to the child (a PID 1 that dies takes its whole namespace along)."""
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
    MAP_ROOT: map the caller to root inside a new user namespace
    (default: on in rootless mode).  HOSTNAME/DOMAINNAME: set in the new UTS
    namespace.  MOUNT_PROC: mount a fresh /proc (implies a mount namespace).
    PROPAGATION: what to make "/" in a new mount namespace (private, slave,
    shared, unchanged); unshare(1) also defaults to private, so that mounts
    made inside never reach the caller.  TIME_OFFSETS: {"monotonic": s,
    "boottime": s} for a new time namespace.  STDIN/STDOUT/STDERR: file
    descriptors to give the child instead of ours.
    """
    flags = encode_flags(namespaces)
    if mount_proc:
        flags |= NEWNS  # a /proc mounted in our own mount namespace would hide the caller's
    if (hostname is not None or domainname is not None) and not flags & NEWUTS:
        raise ValueError("setting a hostname needs a new UTS namespace: add 'uts'")
    if time_offsets and not flags & NEWTIME:
        raise ValueError("time offsets need a new time namespace: add 'time'")
    if os.geteuid() != 0 and flags and not flags & NEWUSER:
        flags |= NEWUSER  # rootless mode
        map_root = True if map_root is None else map_root
    if map_root and not flags & NEWUSER:
        raise ValueError("map_root needs a new user namespace: add 'user'")
    if map_root and (uid_map or gid_map):
        raise ValueError("give either map_root or uid_map/gid_map, not both")
    if not callable(target) and (isinstance(target, (str, bytes)) or not target):
        raise ValueError("target must be a function or a non-empty list of strings")

    status_r, status_w = os.pipe2(os.O_CLOEXEC)  # child -> parent
    go_r, go_w = os.pipe2(os.O_CLOEXEC)  # parent -> child
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # ---------------------------------------------- the child
        os.close(status_r)
        os.close(go_w)
        try:
            _child(parent, flags, status_w, go_r, propagation, time_offsets,
                   hostname, domainname, mount_proc, stdin, stdout, stderr, cwd, env)
            if callable(target):
                os.close(status_w)  # tells the parent we are running
                _exit_with(target, args)
            else:
                # Python ignores SIGPIPE and SIGXFSZ; a command expects the defaults.
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
                os.execvpe(target[0], list(target), os.environ if env is None else env)
        except BaseException as e:  # noqa: BLE001 - everything goes to the parent
            _send(status_w, ("E", _picklable(e, target)))
        os._exit(127)

    # ------------------------------------------------------------- the parent
    os.close(status_w)
    os.close(go_r)
    child = Child(pid, pid)
    try:
        while (msg := _receive(status_r)) is not None:
            kind, value = msg
            if kind == "U":  # the child is in its new user namespace: map it
                if map_root:
                    user.map_root(pid)
                if uid_map:
                    user.write_uid_map(pid, uid_map)
                if gid_map:
                    if os.geteuid() != 0:
                        user.deny_setgroups(pid)
                    user.write_gid_map(pid, gid_map)
                os.write(go_w, b"g")
            elif kind == "P":  # the grandchild that runs the target
                child.pid = value
            elif kind == "E":
                raise value
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # the middle process; its child dies with it
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(status_r)
        os.close(go_w)
    return child


def _child(parent, flags, status_w, go_r, propagation, time_offsets,
           hostname, domainname, mount_proc, stdin, stdout, stderr, cwd, env) -> None:
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
    if flags & NEWUSER:
        _send(status_w, ("U", None))
        if os.read(go_r, 1) != b"g":  # EOF: the parent gave up
            os._exit(1)
    os.close(go_r)
    if flags & NEWNS and propagation and propagation != "unchanged":
        _set_propagation(propagation)
    if time_offsets:
        # Only before the first process enters the namespace: that is our child.
        with open("/proc/self/timens_offsets", "w") as f:
            for clock, seconds in time_offsets.items():
                sec = int(seconds)
                f.write(f"{clock} {sec} {int((seconds - sec) * 1e9)}\n")
    if flags & (NEWPID | NEWTIME):
        _fork_and_wait(status_w)  # returns in the grandchild only
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
    if hostname is not None:
        syscalls.sethostname(hostname)
    if domainname is not None:
        syscalls.setdomainname(domainname)
    if mount_proc:
        # /proc shows the PID namespace of the process that mounts it.
        syscalls.mount("proc", "/proc", "proc",
                       syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    for fd, std in ((stdin, 0), (stdout, 1), (stderr, 2)):
        if fd is not None:
            os.dup2(fd, std)
    if cwd is not None:
        os.chdir(cwd)
    if env is not None and not isinstance(env, dict):
        raise TypeError("env must be a dict")


def _set_propagation(kind: str) -> None:
    flag = {"private": syscalls.MS_PRIVATE, "slave": syscalls.MS_SLAVE,
            "shared": syscalls.MS_SHARED, "unbindable": syscalls.MS_UNBINDABLE}.get(kind)
    if flag is None:
        raise ValueError(f"unknown propagation {kind!r}: private, slave, shared, unbindable or unchanged")
    syscalls.mount("none", "/", None, syscalls.MS_REC | flag)


def _fork_and_wait(status_w: int) -> None:
    """Fork the process that enters the new PID/time namespace; wait for it here.

    Returns only in the grandchild.  The middle process reports the
    grandchild's PID, waits, and ends the way the grandchild ended.
    """
    pid = os.fork()
    if pid == 0:
        return
    try:
        _send(status_w, ("P", pid))
        os.close(status_w)
        # Signals sent to the middle process (a terminal's ^C) go on to the target.
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, lambda s, _f: os.kill(pid, s))
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):  # die of the same signal, as unshare --fork does
            sig = os.WTERMSIG(status)
            if sig != signal.SIGKILL:
                signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    finally:
        os._exit(1)  # never return into the child's code from here


def _exit_with(target: Callable[..., object], args: Sequence[object]) -> None:
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
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
    os._exit(code & 0xFF)


def _picklable(e: BaseException, target) -> BaseException:
    if isinstance(e, OSError) and not isinstance(e, NamespaceError) and not callable(target):
        if e.filename is None:
            e.filename = target[0]
    try:
        pickle.dumps(e)
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
            answer = ("error", _picklable(e, fn))
        try:
            _send(result_w, answer)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            _send(result_w, ("error", TypeError(f"cannot send the result back: {e}")))
        return 0

    try:
        child = start(call_and_send)
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

    pipes = {name: os.pipe2(os.O_CLOEXEC) for name in ("stdin", "stdout", "stderr")}
    try:
        child = spawn(argv, namespaces, stdin=pipes["stdin"][0], stdout=pipes["stdout"][1],
                      stderr=pipes["stderr"][1], **options)
    finally:
        for name, (r, w) in pipes.items():
            os.close(r if name == "stdin" else w)
    stdin_w = pipes["stdin"][1]
    if input:
        os.write(stdin_w, input)  # small inputs only: no deadlock with a pipe's 64 KiB
    os.close(stdin_w)
    out = {pipes["stdout"][0]: b"", pipes["stderr"][0]: b""}
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while out_fds := [fd for fd in out if fd >= 0]:
            left = None if deadline is None else max(0, deadline - time.monotonic())
            ready = select.select(out_fds, [], [], left)[0]
            if not ready:
                child.kill()
                child.wait()
                raise subprocess.TimeoutExpired(list(argv), timeout)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    out[fd] += chunk
                else:
                    os.close(fd)
                    out[-fd - 1] = out.pop(fd)  # remember it, closed
    finally:
        for fd in out:
            if fd >= 0:
                os.close(fd)
    code = child.wait()
    stdout, stderr = (v.decode(errors="replace") for v in out.values())
    return subprocess.CompletedProcess(list(argv), code, stdout, stderr)
