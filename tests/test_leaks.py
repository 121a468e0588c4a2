"""The leak check itself (tests/leaks.py): it sees what a test leaves behind.

A check that cannot see a kind of object passes every test that leaks it.
Here the object is made and removed by an independent tool or a plain libc
call, and the snapshot must show it while it exists and not after.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import leaks

MQ = ("import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); name = sys.argv[2].encode(); "
      "ok = libc.mq_open(name, os.O_CREAT | os.O_RDWR, 0o600, None) >= 0 if sys.argv[1] == 'open' "
      "else libc.mq_unlink(name) == 0; sys.exit(0 if ok else ctypes.get_errno())")


def mq(action: str, name: str) -> None:
    subprocess.run([sys.executable, "-c", MQ, action, name], check=True)


def test_a_posix_queue_left_in_the_machines_ipc_namespace_is_seen_until_it_is_removed():
    name = f"nslab-leak-{secrets.token_hex(4)}"
    assert f"mqueue {name}" not in leaks.snapshot()["IPC objects"]
    mq("open", f"/{name}")
    try:
        assert f"mqueue {name}" in leaks.snapshot()["IPC objects"]
        # The same queue, seen through a mqueue mount of a throwaway mount namespace.
        listed = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 "mount -t mqueue none /mnt && ls -1 /mnt"],
                                capture_output=True, text=True, check=True).stdout.split()
        assert name in listed
    finally:
        mq("unlink", f"/{name}")
    assert f"mqueue {name}" not in leaks.snapshot()["IPC objects"]


def test_a_queue_in_a_new_ipc_namespace_is_not_the_machines():
    name = f"nslab-leak-{secrets.token_hex(4)}"
    # unshare(1) --ipc: the queue lives and dies with that namespace.
    subprocess.run(["unshare", "--ipc", sys.executable, "-c", MQ, "open", f"/{name}"], check=True)
    assert f"mqueue {name}" not in leaks.snapshot()["IPC objects"]


def test_the_veths_seen_are_those_ip_link_lists_as_veth():
    # In a network namespace of the test's own, with a veth pair, a bridge
    # and lo: only the pair is veth, as `ip -o link show type veth` says.
    script = ("ip link add nslab-a type veth peer name nslab-b && ip link add nslab-br type bridge && "
              "ip -o link show type veth && "
              f"{sys.executable} -c 'import leaks; print(\"seen:\", *sorted(leaks._veths()))'")
    out = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                          "PYTHONPATH": str(Path(leaks.__file__).parent)}).stdout
    listed = sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
                    if not line.startswith("seen:"))
    seen = next(line for line in out.splitlines() if line.startswith("seen:")).split()[1:]
    assert listed == ["nslab-a", "nslab-b"] and seen == listed


def test_the_descendants_are_the_process_tree_below_the_runner():
    child = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 30
        want = ["sh", "sleep", "sleep"]
        while sorted(leaks.descendants().values()) != want and time.monotonic() < deadline:
            time.sleep(0.05)
        # ps(1) agrees: the sleeps are the shell's children.
        ps = subprocess.run(["ps", "-o", "pid=", "--ppid", str(child.pid)], capture_output=True,
                            text=True).stdout.split()
        # Both ways: the children files (where the kernel has them) and every /proc/PID/stat.
        for way in (leaks.descendants, leaks._descendants_from_stat):
            found = way(os.getpid())
            assert sorted(found.values()) == want, way
            assert set(found) == {child.pid, *map(int, ps)}, way
            assert way(child.pid) == {int(p): "sleep" for p in ps}, way
    finally:
        subprocess.run(["pkill", "-KILL", "-P", str(child.pid)])  # the sleeps, then their shell
        child.kill()
        child.wait()
        leaks.reap_zombies()
