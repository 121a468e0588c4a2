"""grader/seccomp.py: every call that sets a hostname, handed to the grader as it happens.

A sandbox runs scripts under the filter.  What the watch reports is checked
against the kernel's own files, read from outside: the UTS namespace links
in /proc/PID/ns, the hostname nsenter(1) reads there at the end, and the
Seccomp field of /proc/PID/status.
"""

from __future__ import annotations

from pathlib import Path

from grader import observe
from grader.sandbox import Limits, Sandbox, hidden_paths
from grader.seccomp import HostnameWatch

QUICK = Limits(wall=10, pids=32, memory=64 << 20)


def run_watched(tmp_path: Path, script: str, shell: str = "/bin/sh", end: str = "echo the-end; read line"):
    """Run SCRIPT in a sandbox under the filter; return the watch, the caller's namespace,
    the caller's hostname at the end (END waits for a line meanwhile) and what the script printed."""
    folder = tmp_path / "ex"
    folder.mkdir()
    (folder / "solution").write_text(f"#!{shell}\n{script}\n{end}\n")
    (folder / "solution").chmod(0o755)
    watch = HostnameWatch()
    box = Sandbox(str(folder), hide=hidden_paths(tmp_path), limits=QUICK)
    try:
        with box.start(["/tmp/exercise/solution"], hook=watch.hook) as run:
            caller = observe.namespace(run.init_pid, "uts")
            run.expect("the-end")
            hostname = observe.hostname(run.init_pid)
            run.sendline("bye")
            run.wait()
            out = run.transcript.text
    finally:
        watch.close()
    assert not watch.errors, watch.errors
    return watch, caller, hostname, box.hostname, out


def test_a_hostname_set_in_the_callers_namespace_and_put_back_is_reported(tmp_path):
    script = ('old=$(hostname); hostname changed-x; hostname "$old"\n'
              "unshare --uts sh -c 'hostname inside-y; echo \"ns=$(readlink /proc/self/ns/uts)\"'")
    watch, caller, hostname, original, out = run_watched(tmp_path, script)
    assert hostname == original  # a look at the end sees nothing ...
    calls = [(c.call, c.name, c.namespace == caller) for c in watch.changes]
    assert ("sethostname", "changed-x", True) in calls  # ... the kernel's report does
    assert ("sethostname", original, True) in calls
    assert ("sethostname", "inside-y", False) in calls
    inside = next(c for c in watch.changes if c.name == "inside-y")
    assert f"ns={inside.namespace}" in out  # the namespace the grader noted is the one it ran in


def test_a_write_to_proc_sys_kernel_hostname_is_refused_by_the_kernel_in_the_sandbox(tmp_path):
    # The sandbox is a user namespace: the uts sysctls answer to the machine's root only
    # (as in any rootless container), so this way round sethostname(2) is closed before the
    # filter would see a write.
    watch, caller, hostname, original, out = run_watched(
        tmp_path, "echo by-proc > /proc/sys/kernel/hostname")
    assert "Permission denied" in out
    assert hostname == original
    assert watch.changes == []


def test_the_filter_is_on_everything_the_solution_starts_and_io_uring_is_refused(tmp_path):
    script = """
import ctypes, os, subprocess
print("mine", [l for l in open("/proc/self/status") if l.startswith("Seccomp:")])
child = subprocess.run(["grep", "^Seccomp:", "/proc/self/status"], capture_output=True, text=True)
print("child", child.stdout)
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
print("io_uring_setup", libc.syscall(425, 1, params), os.strerror(ctypes.get_errno()))
"""
    watch, _, _, _, out = run_watched(tmp_path, script, shell="/usr/bin/env python3",
                                      end='print("the-end"); input()')
    assert "mine ['Seccomp:\\t2\\n']" in out and "child Seccomp:\t2" in out
    assert "io_uring_setup -1 Operation not permitted" in out
    assert watch.changes == []
    assert "Seccomp:\t0" in Path("/proc/self/status").read_text()  # the grader itself is not filtered
