"""The leak check itself (tests/leaks.py): it sees what a test leaves behind.

A check that cannot see a kind of object passes every test that leaks it.
Here the object is made and removed by an independent tool or a plain libc
call, and the snapshot must show it while it exists and not after.
"""

from __future__ import annotations

import secrets
import subprocess
import sys

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
