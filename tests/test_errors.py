"""labkit.errors: each teaching error, raised by the kernel in the real situation.

Every failing call is made in a child process (labkit.spawn.run with no new
namespaces, or inside new ones), never in the test runner; the error then
crosses back to the parent pickled, which is how a notebook sees it.
"""

from __future__ import annotations

import base64
import errno
import os
import pickle
import threading

import pytest

from labkit import errors, syscalls
from labkit.errors import (
    MapRuleError,
    MissingCapability,
    NamespaceError,
    NamespaceLimitError,
    ThreadedProcessError,
    error_for,
)
from labkit.namespace import Namespace
from labkit.nstypes import BY_NAME
from labkit.spawn import run, spawn

CLONE_NEWUTS = BY_NAME["uts"].flag
CLONE_NEWUSER = BY_NAME["user"].flag
CLONE_NEWNS = BY_NAME["mnt"].flag

# Run as the unprivileged user: call FN in a child and print how it failed.
REPORT = """
import base64, pickle
from labkit import syscalls
from labkit.spawn import run, spawn
try:
    run({call})
except OSError as e:
    print(base64.b64encode(pickle.dumps(e)).decode())
"""


def unprivileged_error(unprivileged, call: str, prelude: str = "") -> OSError:
    """The exception that run(CALL) raised in the unprivileged user's child.

    PRELUDE is Python code run first (to define a function for CALL).
    """
    code = prelude + REPORT.format(call=call)
    result = unprivileged.python_code(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout, "the call did not fail"
    return pickle.loads(base64.b64decode(result.stdout))


# --- EPERM: a missing capability ---------------------------------------------

def test_unprivileged_uts_namespace_needs_cap_sys_admin(unprivileged):
    e = unprivileged_error(unprivileged, "syscalls.unshare, 'uts'")
    assert type(e) is MissingCapability
    assert isinstance(e, PermissionError) and e.errno == errno.EPERM
    text = str(e)
    assert text.startswith("unshare(CLONE_NEWUTS): Operation not permitted")
    assert "CAP_SYS_ADMIN" in text and "uts namespace" in text
    assert "rootless mode" in text
    assert f"euid {unprivileged.uid}" in text


def test_unprivileged_user_namespace_with_uts_is_allowed(unprivileged):
    """The same call with CLONE_NEWUSER added succeeds: the contrast the hint teaches."""
    code = ("from labkit import syscalls\nfrom labkit.spawn import run\n"
            "run(syscalls.unshare, 'user,uts')\nprint('created')")
    result = unprivileged.python_code(code)
    assert result.stdout.strip() == "created", result.stderr


def test_unprivileged_setns_needs_cap_sys_admin(unprivileged):
    prelude = ("import os\nfrom labkit import syscalls\n"
               "def join_own():\n"
               "    syscalls.setns(os.open('/proc/self/ns/uts', os.O_RDONLY), 'uts')\n")
    e = unprivileged_error(unprivileged, "join_own", prelude)
    assert type(e) is MissingCapability and e.errno == errno.EPERM
    assert str(e).startswith("setns(CLONE_NEWUTS): Operation not permitted")
    assert "CAP_SYS_ADMIN in the user namespace that owns it" in str(e)


def test_unprivileged_setns_into_a_namespace_it_owns_needs_its_own_capability_too(unprivileged):
    """The owner's capability is not enough: the kernel asks for CAP_SYS_ADMIN in the caller's too."""
    prelude = ("import atexit, os, signal\nfrom labkit import syscalls\nfrom labkit.spawn import spawn\n"
               "holder = spawn(signal.pause, 'uts')  # rootless: a user namespace we own, and a uts\n"
               "atexit.register(lambda: (holder.kill(), holder.wait()))\n"
               "def join_holders_uts():\n"
               "    syscalls.setns(os.open(f'/proc/{holder.pid}/ns/uts', os.O_RDONLY), 'uts')\n")
    e = unprivileged_error(unprivileged, "join_holders_uts", prelude)
    assert type(e) is MissingCapability and e.errno == errno.EPERM
    assert "and in the caller's own user namespace" in e.hint
    assert "join the owning user namespace first" in e.hint


def test_unprivileged_sethostname_needs_its_own_uts_namespace(unprivileged):
    e = unprivileged_error(unprivileged, "syscalls.sethostname, 'box'")
    assert type(e) is MissingCapability
    assert str(e).startswith("sethostname 'box': Operation not permitted")
    assert "UTS namespace together with a user namespace" in str(e)


# --- EINVAL: the multi-threaded process ---------------------------------------

def with_a_thread(call, *args):
    """Start a thread, then make CALL: what a Jupyter kernel would do."""
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert errors.thread_count() == 2
        return call(*args)
    finally:
        stop.set()
        worker.join()


@pytest.mark.parametrize("flags", ["user", "user,mnt", "user,uts"])
def test_unshare_user_namespace_in_a_threaded_process_is_einval(flags):
    with pytest.raises(ThreadedProcessError) as info:
        run(with_a_thread, syscalls.unshare, flags)
    e = info.value
    assert e.errno == errno.EINVAL
    assert "single-threaded process" in str(e) and "labkit.spawn" in str(e)


def mount_namespace_of_each_thread() -> set[str]:
    syscalls.unshare("mnt")
    return {os.readlink(f"/proc/self/task/{tid}/ns/mnt") for tid in os.listdir("/proc/self/task")}


def test_unshare_mount_namespace_in_a_threaded_process_moves_only_the_calling_thread():
    namespaces = run(with_a_thread, mount_namespace_of_each_thread)
    assert len(namespaces) == 2  # the other thread stayed behind
    assert os.readlink("/proc/self/ns/mnt") in namespaces


def test_single_threaded_child_may_unshare_user_and_mount():
    def unshare_alone() -> str:
        syscalls.unshare("user,mnt")
        return os.readlink("/proc/self/ns/user")

    assert run(unshare_alone) != os.readlink("/proc/self/ns/user")


def join(path: str, nstype: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        syscalls.setns(fd, nstype)
    finally:
        os.close(fd)


@pytest.mark.parametrize("nstype, err", [("user", errno.EINVAL), ("mnt", errno.EINVAL),
                                         ("time", errno.EUSERS)])
def test_setns_in_a_threaded_process_is_refused(nstype, err):
    with spawn(["sleep", "60"], "user,mnt,time", map_root=True) as child:
        path = f"/proc/{child.pid}/ns/{nstype}"
        with pytest.raises(ThreadedProcessError) as info:
            run(with_a_thread, join, path, nstype)
        assert info.value.errno == err
        assert run(join, path, nstype) is None  # one thread: fine


# --- ENOSPC: limits, per user namespace ---------------------------------------

def lower_limit_and_unshare(host_userns: Namespace, kind: str) -> None:
    """In a new user namespace, set max_KIND_namespaces to 0 and try one more."""
    # The max_* files belong to the reader's user namespace; make sure that is not the host's.
    assert Namespace.of("self", "user") != host_userns
    with open(f"/proc/sys/user/max_{kind}_namespaces", "w") as f:
        f.write("0")
    syscalls.unshare(kind)


def read_host_limit(kind: str) -> str:
    with open(f"/proc/sys/user/max_{kind}_namespaces") as f:
        return f.read()


@pytest.mark.parametrize("kind", ["uts", "net", "ipc"])
def test_lowered_limit_in_a_user_namespace_gives_enospc_naming_the_file(kind):
    before = read_host_limit(kind)
    with pytest.raises(NamespaceLimitError) as info:
        run(lower_limit_and_unshare, Namespace.of("self", "user"), kind,
            namespaces="user", map_root=True)
    assert info.value.errno == errno.ENOSPC
    assert f"/proc/sys/user/max_{kind}_namespaces is 0" in str(info.value)
    assert read_host_limit(kind) == before  # the machine's own limit is untouched


def test_lowered_limit_rootless(unprivileged):
    prelude = ("import os\nfrom labkit import syscalls\n"
               "HOST = os.readlink('/proc/self/ns/user')\n"
               "def lower():\n"
               "    assert os.readlink('/proc/self/ns/user') != HOST\n"
               "    open('/proc/sys/user/max_uts_namespaces', 'w').write('0')\n"
               "    syscalls.unshare('uts')\n")
    e = unprivileged_error(unprivileged, "lower, namespaces='user', map_root=True", prelude)
    assert type(e) is NamespaceLimitError and e.errno == errno.ENOSPC
    assert "/proc/sys/user/max_uts_namespaces is 0" in str(e)


def nest_pid_namespaces() -> int:
    """unshare(CLONE_NEWPID) and fork, level after level, until the kernel says no."""
    for depth in range(1, 40):
        try:
            syscalls.unshare("pid")
        except NamespaceLimitError as e:
            return depth, e
        pid = os.fork()
        if pid:  # every level waits for the next and passes its exit status up
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status))
    raise AssertionError("no nesting limit")


def test_pid_namespaces_nest_32_deep():
    """The 33rd level fails with ENOSPC, and the message names the nesting limit."""
    depth, e = run(nest_pid_namespaces)
    assert depth == 33
    assert e.errno == errno.ENOSPC
    assert "PID namespaces go at most 32 levels below the initial one" in str(e)
    assert "/proc/sys/user/max_pid_namespaces" in str(e)
    # The kernel says ENOSPC for both limits; here the depth is the cause, and the hint leads with it.
    assert e.hint.startswith("PID namespaces go at most 32 levels below the initial one")
    assert "is 32 levels down already" in e.hint


# --- setns: EINVAL ------------------------------------------------------------

def test_setns_with_the_wrong_type_is_einval():
    with pytest.raises(NamespaceError) as info:
        run(join, "/proc/self/ns/uts", "net")
    assert info.value.errno == errno.EINVAL
    assert str(info.value).startswith("setns(CLONE_NEWNET): Invalid argument")
    assert "not a namespace of the type given" in str(info.value)


def test_setns_into_ones_own_user_namespace_is_einval():
    with pytest.raises(NamespaceError) as info:
        run(join, "/proc/self/ns/user", "user")
    assert info.value.errno == errno.EINVAL
    assert "cannot rejoin its own user namespace" in str(info.value)


# --- other teaching errors ------------------------------------------------------

def test_a_hostname_longer_than_64_bytes_is_einval():
    with pytest.raises(NamespaceError) as info:
        run(syscalls.sethostname, "x" * 65, namespaces="uts")
    assert info.value.errno == errno.EINVAL
    assert "64 bytes" in str(info.value)
    assert run(syscalls.sethostname, "x" * 64, namespaces="uts") is None


def test_parent_of_the_initial_pid_namespace_is_hidden():
    with pytest.raises(NamespaceError) as info:
        Namespace.of("self", "pid").parent()
    assert info.value.errno == errno.EPERM
    assert "outside the caller's own namespace tree" in str(info.value)


# --- the classes themselves ----------------------------------------------------

@pytest.mark.parametrize("err, cls, base", [
    (error_for("unshare", errno.EPERM, CLONE_NEWUTS), MissingCapability, PermissionError),
    (error_for("unshare", errno.ENOSPC, CLONE_NEWUTS), NamespaceLimitError, OSError),
    (error_for("uid_map", errno.EINVAL, detail="x"), MapRuleError, OSError),
    (error_for("setns", errno.EINVAL, CLONE_NEWNS), NamespaceError, OSError),
    (error_for("mount", errno.ENOENT, detail="/mnt"), NamespaceError, OSError),
])
def test_errors_pickle_with_class_errno_and_lesson(err, cls, base):
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is cls and isinstance(copy, base)
    assert (copy.errno, copy.strerror, copy.syscall, copy.hint, str(copy)) == \
        (err.errno, err.strerror, err.syscall, err.hint, str(err))
    assert copy.filename is None


def test_notes_and_attributes_survive_pickling():
    e = error_for("unshare", errno.EPERM, CLONE_NEWUTS)
    e.add_note("raised in child 1234")
    copy = pickle.loads(pickle.dumps(e))
    assert copy.__notes__ == ["raised in child 1234"] and copy.hint == e.hint


def test_error_text_is_call_strerror_and_hint():
    e = error_for("unshare", errno.EPERM, CLONE_NEWUTS | CLONE_NEWNS)
    first, second = str(e).split("\n")
    assert first == "unshare(CLONE_NEWNS|CLONE_NEWUTS): Operation not permitted"
    assert second.startswith("  Creating a mnt, uts namespace needs CAP_SYS_ADMIN")
    assert str(error_for("mount", errno.ENOENT, detail="/x")) == "mount /x: No such file or directory"


def test_eperm_with_clone_newuser_blames_the_user_namespace():
    """With CLONE_NEWUSER the other types would be owned by the new namespace: no capability lacks."""
    e = error_for("unshare", errno.EPERM, CLONE_NEWUSER | CLONE_NEWUTS)
    assert "needs no capability" in str(e) and "CAP_SYS_ADMIN" not in str(e)


def test_map_errors_are_map_rule_errors():
    for name in ("uid_map", "gid_map", "setgroups"):
        for err in (errno.EPERM, errno.EINVAL, errno.EACCES):
            e = error_for(name, err)
            assert type(e) is MapRuleError and "user_namespaces(7)" in str(e)


def test_check_passes_results_through_and_raises_on_minus_one():
    assert errors.check(5, "x") == 5
    import ctypes
    ctypes.set_errno(errno.EPERM)
    with pytest.raises(MissingCapability):
        errors.check(-1, "unshare", CLONE_NEWUTS)


def pivot_with_put_old_outside(directory: str) -> None:
    """Both on mounts of their own (else EBUSY), but put_old beside new_root, not under it."""
    syscalls.mount("tmpfs", directory, "tmpfs")
    os.mkdir(f"{directory}/new")
    os.mkdir(f"{directory}/old")
    syscalls.mount("tmpfs", f"{directory}/new", "tmpfs")
    syscalls.pivot_root(f"{directory}/new", f"{directory}/old")


def test_pivot_root_errors_say_what_it_wants(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "old").mkdir()
    with pytest.raises(NamespaceError) as info:  # new_root is on the current root mount
        run(syscalls.pivot_root, str(tmp_path / "new"), str(tmp_path / "old"), namespaces="mnt")
    assert info.value.errno == errno.EBUSY
    assert "bind-mount it onto itself" in str(info.value)
    with pytest.raises(NamespaceError) as info:
        run(pivot_with_put_old_outside, str(tmp_path), namespaces="mnt")
    assert info.value.errno == errno.EINVAL
    assert "put_old at or under new_root" in str(info.value)
