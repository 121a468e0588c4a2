"""Rootless mode: spawn, join and the labkit command as an unprivileged user (uid 65534).

Each check runs a small program as the user (conftest's ``unprivileged``)
that starts children with labkit and reads them from outside, from the
unprivileged parent: readlink of /proc/PID/ns, /proc/PID/uid_map, status.
It prints JSON; the test decides.
"""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from labkit.nstypes import TYPES

pytestmark = pytest.mark.rootless

ALL = [t.name for t in TYPES]

PRELUDE = f"""
import json, os, socket, subprocess, sys
from labkit.spawn import run, run_command, spawn
from labkit.join import enter, run_in
ALL = {ALL!r}

def readlink(pid, name):
    return subprocess.run(["readlink", f"/proc/{{pid}}/ns/{{name}}"], capture_output=True,
                          text=True).stdout.strip()

def differing(pid):
    return sorted(n for n in ALL if readlink(pid, n) != readlink(os.getpid(), n))

def read(path):
    with open(path) as f:
        return f.read().split()
"""


def as_user(unprivileged, body: str):
    """Run BODY (which prints one JSON value) as the unprivileged user; return the value."""
    result = unprivileged.python_code(PRELUDE + body)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def each_type_alone(unprivileged):
    """For each type: the types that differ from the parent's, and the maps, read from outside."""
    return as_user(unprivileged, """
seen = {}
for name in ALL + ["all"]:
    with spawn(["sleep", "60"], ALL if name == "all" else name) as child:
        seen[name] = {"differ": differing(child.pid),
                      "uid_map": read(f"/proc/{child.pid}/uid_map"),
                      "gid_map": read(f"/proc/{child.pid}/gid_map"),
                      "setgroups": read(f"/proc/{child.pid}/setgroups"),
                      "owner_uid": child.namespaces["user"].owner_uid()}
print(json.dumps(seen))
""")


@pytest.mark.parametrize("name", ALL)
def test_each_type_alone_gets_a_user_namespace_added(each_type_alone, name, unprivileged):
    seen = each_type_alone[name]
    assert seen["differ"] == sorted({name, "user"})
    assert seen["owner_uid"] == unprivileged.uid
    if name == "user":  # asked for explicitly: left unmapped, as unshare --user does
        assert (seen["uid_map"], seen["gid_map"], seen["setgroups"]) == ([], [], ["allow"])
        return
    assert seen["uid_map"] == ["0", str(unprivileged.uid), "1"]
    assert seen["gid_map"] == ["0", str(unprivileged.gid), "1"]
    assert seen["setgroups"] == ["deny"]  # the Linux 3.19 rule for an unprivileged gid_map


def test_all_types_together(each_type_alone):
    assert each_type_alone["all"]["differ"] == sorted(ALL)


def test_maps_are_in_place_before_the_target_runs(unprivileged):
    seen = as_user(unprivileged, """
def first_act():
    return read("/proc/self/uid_map"), read("/proc/self/gid_map"), os.getuid(), os.getgid()
print(json.dumps([run(first_act, namespaces="uts"),
                  run_command(["id", "-u"], "mnt").stdout.strip()]))
""")
    (uid_map, gid_map, uid, gid), id_u = seen
    assert uid_map == ["0", str(unprivileged.uid), "1"] and gid_map == ["0", str(unprivileged.gid), "1"]
    assert (uid, gid, id_u) == (0, 0, "0")


def test_explicit_maps_work_rootless(unprivileged):
    seen = as_user(unprivileged, """
out = run_command(["cat", "/proc/self/uid_map", "/proc/self/gid_map", "/proc/self/setgroups"],
                  "uts", uid_map=f"5 {os.getuid()} 1", gid_map=f"7 {os.getgid()} 1")
print(json.dumps(out.stdout.split()))
""")
    assert seen == ["5", str(unprivileged.uid), "1", "7", str(unprivileged.gid), "1", "deny"]


def test_mapping_another_users_id_is_a_map_rule_error(unprivileged):
    seen = as_user(unprivileged, """
from labkit.errors import MapRuleError
try:
    spawn(["true"], "user", uid_map="0 0 1")
except MapRuleError as e:
    print(json.dumps([e.errno, str(e)]))
""")
    assert seen[0] == 1 and "user_namespaces(7)" in seen[1]


def test_hostname_acceptance_test_rootless(unprivileged):
    before = socket.gethostname()
    result = unprivileged.labkit("run", "-u", "--hostname", "box", "--", "hostname")
    assert (result.returncode, result.stdout, result.stderr) == (0, "box\n", "")
    assert subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip() == before


def test_run_options_rootless(unprivileged):
    assert unprivileged.labkit("run", "-fp", "sh", "-c", "echo $$").stdout == "1\n"
    assert unprivileged.labkit("run", "-r", "id", "-u").stdout == "0\n"
    result = unprivileged.labkit("run", "-fp", "--mount-proc", "--", "ps", "-e", "-o", "pid=,comm=")
    assert [line.split() for line in result.stdout.splitlines()] == [["1", "ps"]]
    assert unprivileged.labkit("run", "-n", "--", "ip", "-o", "link").stdout.count("\n") == 1
    result = unprivileged.labkit("run", "-m", "--", "sh", "-c",
                                 "mount -t tmpfs rootless /mnt && findmnt -n -o SOURCE /mnt")
    assert result.stdout == "rootless\n"
    assert subprocess.run(["findmnt", "/mnt"], capture_output=True).returncode == 1


def test_mount_proc_without_a_pid_namespace_explains_itself(unprivileged):
    result = unprivileged.labkit("run", "--mount-proc", "--", "true")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "add a new PID namespace" in result.stderr


def test_exit_statuses_rootless(unprivileged):
    assert unprivileged.labkit("run", "-u", "--", "sh", "-c", "exit 3").returncode == 3
    assert unprivileged.labkit("run", "-u", "--", "sh", "-c", "kill -TERM $$").returncode == -15
    assert unprivileged.labkit("run", "-fu", "sh", "-c", "kill -TERM $$").returncode == -15
    result = unprivileged.labkit("run", "-u", "--", "no-such-command-here")
    assert result.returncode == 127 and "failed to execute no-such-command-here" in result.stderr


def test_time_offsets_rootless(unprivileged):
    seen = as_user(unprivileged, """
import time
def clocks():
    return float(read("/proc/uptime")[0]), time.clock_gettime(time.CLOCK_MONOTONIC)
before = clocks()
inside = run(clocks, namespaces="time", time_offsets={"boottime": 50000, "monotonic": -1.5})
after = clocks()
print(json.dumps([before, inside, after]))
""")
    before, inside, after = seen
    assert before[0] + 50000 - 1 <= inside[0] <= after[0] + 50000 + 60
    assert before[1] - 1.5 - 1 <= inside[1] <= after[1] - 1.5 + 60


def test_run_returns_values_and_raises_errors_rootless(unprivileged):
    seen = as_user(unprivileged, """
answers = [run(socket.gethostname, namespaces="uts", hostname="rootless"),
           run(os.getpid, namespaces="pid"), run(os.getuid, namespaces="net")]
try:
    spawn(["no-such-command-here"], "uts")
except FileNotFoundError as e:
    answers.append(e.filename)
print(json.dumps(answers))
""")
    assert seen == ["rootless", 1, 0, "no-such-command-here"]


def test_join_own_namespaces_rootless(unprivileged):
    seen = as_user(unprivileged, """
from labkit.errors import MissingCapability
with spawn(["sleep", "60"], "uts,pid,mnt,net,ipc", hostname="own") as child:
    links = run_in(child.pid, "all", lambda: {n: os.readlink(f"/proc/self/ns/{n}") for n in ALL})
    answers = {
        "all": links == {n: readlink(child.pid, n) for n in ALL},
        "user,uts": run_in(child.pid, "user,uts", socket.gethostname),
        "pid": run_in(child.pid, "user,pid", os.getpid),
        "cli": subprocess.run([sys.executable, "-m", "labkit", "enter", str(child.pid), "-a", "--",
                               "hostname"], capture_output=True, text=True).stdout,
        "nsenter": subprocess.run(["nsenter", "-t", str(child.pid), "-U", "--preserve-credentials",
                                   "-u", "hostname"],
                                  capture_output=True, text=True).stdout,
    }
    try:
        run_in(child.pid, "uts", socket.gethostname)
    except MissingCapability as e:
        answers["uts alone"] = str(e).splitlines()[0]
print(json.dumps(answers))
""")
    assert seen["all"] is True
    assert seen["user,uts"] == "own"
    assert seen["pid"] > 1
    assert seen["cli"] == seen["nsenter"] == "own\n"
    # Without joining the user namespace we have no capability over the UTS namespace.
    assert seen["uts alone"] == "setns(CLONE_NEWUTS): Operation not permitted"


def test_spawn_from_a_threaded_process_rootless(unprivileged):
    seen = as_user(unprivileged, """
import threading
stop = threading.Event()
worker = threading.Thread(target=stop.wait)
worker.start()
try:
    print(json.dumps([threading.active_count(),
                      run(lambda: os.readlink("/proc/self/ns/user"), namespaces="user,mnt"),
                      os.readlink("/proc/self/ns/user")]))
finally:
    stop.set()
    worker.join()
""")
    threads, inside, outside = seen
    assert threads == 2 and inside != outside
