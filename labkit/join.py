"""Join the namespaces of a running process: setns(2), as nsenter(1) does.

To enter a namespace a process opens the namespace's file (``/proc/PID/ns/uts``)
and calls setns(2) on the descriptor.  Two rules shape the code:

* **Open everything first, then join.**  Once we have joined the target's
  mount namespace, ``/proc/PID/ns`` may no longer show what we want (or we
  may have entered a user namespace that cannot open it), so all the files
  are opened up front and joined one by one.

* **Joining a PID (or time) namespace takes effect for children only.**
  setns(CLONE_NEWPID) changes ``pid_for_children``, not the caller's own PID,
  which never changes.  So after joining we fork once more, and it is the
  grandchild that runs the command inside, as ``nsenter --fork`` does.

The user namespace is joined first: joining it gives the caller all
capabilities there, which an unprivileged caller needs to join the others
(nsenter(1) does the same).  The mount namespace goes last but one, and
setns(CLONE_NEWNS) also moves the caller's root and working directory to
the namespace's root; then we chdir to the target's working directory.

As with labkit.spawn, all of this happens in a child process, never in the
caller.

See setns(2), nsenter(1), pid_namespaces(7).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from . import syscalls
from .errors import NamespaceError
from .nstypes import TYPES, lookup
from .spawn import Child, _exit_with, _fork_and_wait, _picklable, _receive, _send, collect

# The order in which we join: user first (for the capabilities), mount late.
JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "net", "pid", "time", "mnt")


def enter(pid: int, namespaces: object, target: Callable[..., object] | Sequence[str],
          *, args: Sequence[object] = (), cwd: str | None = None) -> Child:
    """Start TARGET in the NAMESPACES of process PID and return a Child.

    NAMESPACES: names ("uts,net"), a mask, or "all" for every namespace the
    target process has that differs from ours.
    """
    if namespaces == "all":
        wanted = [t.name for t in TYPES if _differs(pid, t.name)]
    else:
        from .nstypes import decode_flags, encode_flags
        wanted = [t.name for t in decode_flags(encode_flags(namespaces))]
    # Open before fork: an error (no such process, no permission) is ours to raise.
    fds = {}
    try:
        for name in sorted(wanted, key=JOIN_ORDER.index):
            fds[name] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        root_fd = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY) \
            if "mnt" in fds else -1
    except OSError as e:
        for fd in fds.values():
            os.close(fd)
        raise NamespaceError(e.errno, f"open {e.filename}", (
            f"is there a process {pid}? Opening another process's namespace files needs "
            "ptrace access to it: the same uid, or CAP_SYS_PTRACE.")) from None

    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    child_pid = os.fork()
    if child_pid == 0:
        os.close(status_r)
        try:
            for name, fd in fds.items():
                syscalls.setns(fd, lookup(name).flag)
            if root_fd >= 0:
                os.fchdir(root_fd)
                os.chroot(".")  # the target's root, which may be a pivot_root'ed one
            if cwd is not None:
                os.chdir(cwd)
            if "pid" in fds or "time" in fds:
                _fork_and_wait(status_w)  # only the grandchild returns
            if callable(target):
                os.close(status_w)
                _exit_with(target, args)
            os.execvp(target[0], list(target))
        except BaseException as e:  # noqa: BLE001 - everything goes to the parent
            _send(status_w, ("E", _picklable(e, target)))
        os._exit(127)

    os.close(status_w)
    for fd in list(fds.values()) + ([root_fd] if root_fd >= 0 else []):
        os.close(fd)
    child = Child(child_pid, child_pid)
    try:
        while (msg := _receive(status_r)) is not None:
            kind, value = msg
            if kind == "P":
                child.pid = value
            elif kind == "E":
                child.wait()
                raise value
    finally:
        os.close(status_r)
    return child


def _differs(pid: int, name: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/{name}").st_ino != os.stat(f"/proc/self/ns/{name}").st_ino
    except OSError:
        return False


def run_in(pid: int, namespaces: object, fn: Callable[..., object], *args: object) -> object:
    """Call FN(*ARGS) inside the NAMESPACES of process PID and return its result."""
    return collect(lambda target: enter(pid, namespaces, target), fn, args)
