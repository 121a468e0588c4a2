"""The child process behind spawn() and enter(): from fork(2) to the target, and back.

labkit.spawn (new namespaces) and labkit.join (existing ones) start their
target the same way; this module is the part they share:

    parent                                child
    ------                                -----
    flush_std_streams()
    fork() -------------------------->    die_with_parent()      PR_SET_PDEATHSIG
                                          ... the namespace steps of spawn or join ...
                                          fork_into_pid_namespace()
             <-------- "P" grandchild     (only with a new or joined PID namespace)
                                          setup()                the caller's own step, if any
                                          redirect_stdio()
    wait_until_running()                  run_target():
             <-------- EOF                  execve() closes the status pipe (O_CLOEXEC),
                                            or a function's child closes it itself
             <-------- "E" error          report_failure(): any step failed

The **status pipe** carries short pickled messages from the child to its
parent (send_message, receive_message) and is opened with O_CLOEXEC, so
that a successful execve(2) closes it: EOF tells the parent that the target
runs, and an "E" message carries the exception of the step that failed,
which the parent raises as if the step had failed in its own process.

**A new PID namespace needs one more fork.**  unshare(CLONE_NEWPID) and
setns(CLONE_NEWPID) move only the caller's future children (its
``pid_for_children``), so the target runs in a grandchild (PID 1 of a new
namespace), and the child in the middle waits for it, passes signals on to
it and exits as it exited, as ``unshare --fork`` and ``nsenter --fork`` do.

Child.wait(timeout) waits on a pidfd (pidfd_open(2), Linux 5.3), which
select(2) reports readable once the process has ended.

See fork(2), execve(2), prctl(2) (PR_SET_PDEATHSIG), pipe(2) (O_CLOEXEC),
sigwaitinfo(2), pidfd_open(2), and pid_namespaces(7).
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

from . import syscalls
from .namespace import Namespace

# What a terminal or a supervisor sends to stop or wake a process: passed on to
# the target by the middle process here, by labkit run (cli), and by labkit.pid's init.
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)


class Child:
    """A process started by spawn() or enter(): its pid, its namespaces, its end.

    ``pid`` is the process that runs the target (in a new PID namespace it
    is PID 1 there; this is its PID as we see it).  Use it as a context
    manager to be sure it is killed and reaped::

        with spawn(["sleep", "60"], "uts") as child:
            print(child.namespaces["uts"])
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid  # runs the target; fork_into_pid_namespace's report changes it
        self._direct = pid  # our own child, whom we wait for (the middle one, with a PID namespace)
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


# Before the fork ------------------------------------------------------------------

def flush_std_streams() -> None:
    """Write out Python's buffered output, or the child would write it a second time."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or odd stream is no reason to fail
            pass


# The child's first and last steps -----------------------------------------------

def die_with_parent(parent: int) -> None:
    """PR_SET_PDEATHSIG: SIGKILL us when our parent ends, so that a crashed notebook
    leaves no namespace behind.  prctl(2) counts the parent *thread*: start children
    from a thread that outlives them (the main thread).
    """
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
    # If the parent died before prctl, we have a new parent already (getppid() 0
    # means one outside our PID namespace: the parent had made or joined a new
    # one, and we are its first process).
    if os.getppid() not in (parent, 0):
        os._exit(1)


def fork_into_pid_namespace(status_w: int) -> None:
    """Fork the process that enters the new PID (or time) namespace; wait for it here.

    Returns only in the grandchild.  The middle process reports the
    grandchild's PID ("P"), passes signals on to it, and ends the way it ended.
    """
    pid = os.fork()
    if pid == 0:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)  # die with the middle one
        return
    try:
        send_message(status_w, ("P", pid))
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


def redirect_stdio(stdin: int | None, stdout: int | None, stderr: int | None) -> None:
    """Put the given descriptors at 0, 1, 2, and point Python's sys.std* there too.

    A command finds them at 0, 1, 2; a Python function prints to sys.stdout,
    which in a test runner or a notebook is not descriptor 1 at all.
    """
    for fd, std, name, mode in ((stdin, 0, "stdin", "r"), (stdout, 1, "stdout", "w"),
                                (stderr, 2, "stderr", "w")):
        if fd is not None:
            os.dup2(fd, std)
            setattr(sys, name, open(std, mode, buffering=1, closefd=False))


def run_target(target: Callable[..., object] | Sequence[str], args: Sequence[object],
               env: dict[str, str] | None, status_w: int) -> None:
    """Become TARGET: call a function and exit with its code, or execvpe(3) a command.

    Never returns; a command that cannot be run raises OSError (report it
    with report_failure).  Either way the parent sees EOF on STATUS_W once
    the target runs.
    """
    if callable(target):
        os.close(status_w)
        _exit_with(target, args)
    exec_command(target, env)


def exec_command(argv: Sequence[str], env: dict[str, str] | None = None) -> None:
    """execvpe(3) ARGV with the signal state a new program expects; OSError if it cannot run.

    An ignored signal stays ignored across execve(2), and a blocked one stays
    blocked: a command expects neither (Python ignores SIGPIPE, for one).
    """
    syscalls.restore_default_signals()
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    try:
        os.execvpe(argv[0], list(argv), os.environ if env is None else env)
    except OSError as e:
        e.filename = argv[0]  # the command as given, not the last PATH entry tried
        raise


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
        flush_std_streams()
    os._exit(code & 0xFF)


def report_failure(status_w: int, e: BaseException) -> None:
    """Send the error of a failed step to the parent ("E") and exit 127: nothing ran."""
    try:
        send_message(status_w, ("E", picklable(e)))
    finally:
        os._exit(127)


# The parent's side ------------------------------------------------------------------

def wait_until_running(child: Child, status_r: int,
                       on_user_namespace: Callable[[], None] | None = None) -> None:
    """Read the child's reports until EOF, which means that the target runs.

    "U": the child has made its user namespace and waits for its maps:
    ON_USER_NAMESPACE writes them.  "P": the PID of the grandchild that
    runs the target.  "E": a step failed in the child: its error is raised
    here.  Whatever fails (the child, the maps, a ^C), the child is killed
    and reaped before the error goes on, so no half-made namespace stays.
    """
    try:
        while (message := receive_message(status_r)) is not None:
            kind, value = message
            if kind == "U" and on_user_namespace is not None:
                on_user_namespace()
            elif kind == "P":
                child.pid = value
            elif kind == "E":  # the child (and any grandchild) ends by itself
                child.wait()
                raise value
    except BaseException:
        if child.returncode is None:  # we failed (a map, ^C): end the child
            os.kill(child._direct, signal.SIGKILL)  # the middle one; its child dies with it
            child.wait()
        raise


def collect(start: Callable[[Callable[[], int]], Child], fn: Callable[..., object],
            args: Sequence[object]) -> object:
    """Start FN(*ARGS) with START (spawn, enter, ...) and return its result.

    The child sends ("ok", value) or ("error", exception) through a pipe of
    its own, and the parent returns the value or raises the exception.
    """
    result_r, result_w = os.pipe2(os.O_CLOEXEC)

    def call_and_send() -> int:
        os.close(result_r)
        try:
            answer = ("ok", fn(*args))
        except BaseException as e:  # noqa: BLE001 - the parent re-raises it
            answer = ("error", picklable(e))
        try:
            send_message(result_w, answer)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            send_message(result_w, ("error", TypeError(f"cannot send the result back: {e}")))
        return 0

    try:
        child = start(call_and_send)
    except BaseException:
        os.close(result_r)
        raise
    finally:
        os.close(result_w)
    try:
        answer = receive_message(result_r)
    finally:
        os.close(result_r)
        child.wait()
    if answer is None:
        raise ChildProcessError(f"the child ended without an answer (exit code {child.returncode})")
    kind, value = answer
    if kind == "error":
        raise value
    return value


# Messages on a pipe: a length, then a pickle ------------------------------------------

def send_message(fd: int, message: tuple) -> None:
    data = pickle.dumps(message)
    os.write(fd, struct.pack("I", len(data)) + data)


def receive_message(fd: int) -> tuple | None:
    """The next message on the pipe, or None at EOF."""
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


def picklable(e: BaseException) -> BaseException:
    """E itself if it survives the trip through pickle, else a RuntimeError that names it."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(e).__name__}: {e}")
