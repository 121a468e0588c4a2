"""Join the namespaces of a running process: setns(2), as nsenter(1) does.

To enter a namespace a process opens the namespace's file (``/proc/PID/ns/uts``)
and calls setns(2) on the descriptor.  Three rules shape the code:

* **Open everything first, then join.**  Once we have joined the target's
  mount namespace, ``/proc/PID/ns`` may no longer show what we want (or we
  may have entered a user namespace that cannot open it), so all the files
  are opened up front and joined one by one.

* **The user namespace first or last.**  Joining a user namespace gives the
  caller every capability in it, which an unprivileged caller needs to
  join the namespaces it owns; but a privileged caller that joins it first
  loses the capabilities it had over namespaces owned higher up.  nsenter(1)
  therefore joins in two passes, and so do we: everything but the user
  namespace, as far as our privilege goes; then the user namespace, then
  the rest.  A process cannot "join" the user namespace it is in (EINVAL),
  so that one is skipped.

* **Joining a PID namespace takes effect for children only.**
  setns(CLONE_NEWPID) changes ``pid_for_children``, not the caller's own
  PID, which never changes.  So after joining we fork once more, and it is
  the grandchild that runs the command inside, as ``nsenter --fork`` does.
  (A time namespace, unlike unshare(CLONE_NEWTIME), moves the caller at once.)

setns(CLONE_NEWNS) moves the caller's root and working directory to the
root of the mount namespace; we then change root to the target's own root
(which may be a pivot_root'ed or chroot'ed one) and start there, unless
CWD says otherwise.

As with labkit.spawn, all of this happens in a child process, never in the
caller; labkit.child has the fork, the status pipe and the Child they share.

setns(2) came with Linux 3.0 (for ipc, net and uts; the other types as
they gained their /proc/PID/ns files, by 3.8), and takes a pidfd since 5.8.

See setns(2), nsenter(1), pid_namespaces(7), time_namespaces(7).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from . import syscalls
from .child import (
    Child,
    collect,
    die_with_parent,
    flush_std_streams,
    fork_into_pid_namespace,
    redirect_stdio,
    report_failure,
    run_target,
    wait_until_running,
)
from .errors import MissingCapability
from .namespace import Namespace, proc_file_error
from .nstypes import decode_flags, encode_flags, lookup

# nsenter(1)'s order: user first (when it can be), the mount namespace late.
JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt", "time")


def enter(pid: int, namespaces: object, target: Callable[..., object] | Sequence[str],
          *, args: Sequence[object] = (), cwd: str | None = None, stdin: int | None = None,
          stdout: int | None = None, stderr: int | None = None,
          setup: Callable[[], object] | None = None) -> Child:
    """Start TARGET in the NAMESPACES of process PID and return a Child.

    NAMESPACES: names ("uts,net"), a mask, or "all" for every namespace the
    target process has that differs from ours.  TARGET is a function
    (called with ARGS) or a command line, as for labkit.spawn.spawn, and
    so are CWD, STDIN/STDOUT/STDERR and SETUP.
    """
    if namespaces == "all":
        wanted = [name for name in JOIN_ORDER if _differs(pid, name)]
    else:
        wanted = [t.name for t in decode_flags(encode_flags(namespaces))]
        if "user" in wanted and not _differs(pid, "user"):
            wanted.remove("user")  # setns() into one's own user namespace is EINVAL
    fds = _open_namespaces(pid, sorted(wanted, key=JOIN_ORDER.index))
    root_fd = fds.pop("root", -1)

    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    parent = os.getpid()
    flush_std_streams()
    child_pid = os.fork()
    if child_pid == 0:  # ---------------------------------------------- the child
        os.close(status_r)
        try:
            die_with_parent(parent)
            _join_in_two_passes(fds)
            if root_fd >= 0:
                os.fchdir(root_fd)
                os.chroot(".")  # the target's root, which may be a pivot_root'ed one
            if cwd is not None:
                os.chdir(cwd)
            redirect_stdio(stdin, stdout, stderr)
            if "pid" in fds:
                fork_into_pid_namespace(status_w)  # only the grandchild returns
            if setup is not None:
                setup()
            run_target(target, args, None, status_w)
        except BaseException as e:  # noqa: BLE001 - everything goes to the parent
            report_failure(status_w, e)

    # ------------------------------------------------------------- the parent
    os.close(status_w)
    for fd in [*fds.values(), root_fd]:
        if fd >= 0:
            os.close(fd)
    child = Child(child_pid)
    try:
        wait_until_running(child, status_r)
    finally:
        os.close(status_r)
    return child


def _open_namespaces(pid: int, names: list[str]) -> dict[str, int]:
    """Open /proc/PID/ns/NAME for each name (and PID's root, for "mnt"), in our namespaces.

    An error here (no such process, no permission) is the caller's, so it is
    raised before anything is forked.
    """
    fds: dict[str, int] = {}
    path = ""
    try:
        for name in names:
            path = f"/proc/{pid}/ns/{name}"
            fds[name] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        if "mnt" in fds:
            path = f"/proc/{pid}/root"
            fds["root"] = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY)
    except OSError as e:
        for fd in fds.values():
            os.close(fd)
        raise proc_file_error(pid, path, e) from None
    return fds


def _join_in_two_passes(fds: dict[str, int]) -> None:
    """setns() into each of FDS, nsenter's way: the user namespace first or last.

    Pass one joins what our present capabilities allow, leaving out the
    user namespace; pass two joins the user namespace and, with the
    capabilities it gives, whatever pass one could not.
    """
    left = {}
    for name, fd in fds.items():
        if name == "user":
            left[name] = fd
            continue
        try:
            syscalls.setns(fd, lookup(name).flag)
        except MissingCapability:
            left[name] = fd
    for name, fd in left.items():  # "user" comes first: JOIN_ORDER put it there
        syscalls.setns(fd, lookup(name).flag)


def _differs(pid: int, name: str) -> bool:
    """Is PID's namespace NAME not ours?"""
    return Namespace.of(pid, name) != Namespace.of("self", name)


def run_in(pid: int, namespaces: object, fn: Callable[..., object], *args: object) -> object:
    """Call FN(*ARGS) inside the NAMESPACES of process PID and return its result."""
    return collect(lambda target: enter(pid, namespaces, target), fn, args)
