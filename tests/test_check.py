"""labkit.check: what the machine supports, compared with /proc, findmnt and the shell."""

from __future__ import annotations

import os
import subprocess

from labkit import check, syscalls
from labkit.nstypes import TYPES
from labkit.spawn import run


def sh(command: str) -> str:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout


def test_namespace_types_are_the_links_in_proc_self_ns():
    listed = set(sh("ls /proc/self/ns").split())
    items = check.namespace_types()
    assert [i.name for i in items] == [t.name for t in TYPES]
    for item in items:
        assert item.ok == (item.name in listed)
        assert item.group == "namespaces" and item.required


def test_limits_are_the_sysctl_values():
    for item in check.limits():
        kind = item.name.removeprefix("max_").removesuffix("_namespaces")
        value = sh(f"sysctl -n user.max_{kind}_namespaces").strip()
        assert item.detail == value and item.ok == (int(value) > 0)
        assert not item.required


def limits_in_a_user_namespace_with_uts_at_zero() -> dict[str, tuple[bool, str]]:
    with open("/proc/sys/user/max_uts_namespaces", "w") as f:
        f.write("0")
    return {i.name: (i.ok, i.detail) for i in check.limits()}


def test_limits_are_those_of_the_readers_user_namespace():
    seen = run(limits_in_a_user_namespace_with_uts_at_zero, namespaces="user", map_root=True)
    assert seen["max_uts_namespaces"] == (False, "0")
    assert {i.name: i.detail for i in check.limits()}["max_uts_namespaces"] != "0"  # ours unchanged


def test_rootless_item_agrees_with_unshare_as_a_normal_user(unprivileged):
    item = check.unprivileged_userns()
    works = unprivileged.run(["unshare", "--user", "true"]).returncode == 0
    assert item.ok == works
    assert item.group == "rootless" and not item.required


def test_cgroup_layout_agrees_with_findmnt():
    v1 = sh("findmnt -n -l -t cgroup -o TARGET").split()
    v2 = sh("findmnt -n -l -t cgroup2 -o TARGET").split()
    item = check.cgroup_layout()
    assert item.ok == bool(v1 or v2)
    if v1 and v2:
        assert item.detail == f"hybrid: v1 controllers, v2 at {v2[0]}"
    elif v2:
        assert item.detail == f"v2 (unified) at {v2[0]}"
    else:
        assert item.detail == "v1 only"


def layout_without_cgroup_mounts() -> tuple[bool, str, str]:
    """In a mount namespace of our own, detach every cgroup mount and check again."""
    syscalls.umount("/sys/fs/cgroup", syscalls.MNT_DETACH)
    for target in sh("findmnt -n -l -t cgroup,cgroup2 -o TARGET").split():
        syscalls.umount(target, syscalls.MNT_DETACH)
    item = check.cgroup_layout()
    return item.ok, item.detail, sh("findmnt -n -t cgroup,cgroup2")


def test_cgroup_layout_reads_this_processs_mount_table():
    ok, detail, findmnt = run(layout_without_cgroup_mounts, namespaces="mnt")
    assert (ok, detail, findmnt) == (False, "no cgroup file system mounted", "")


def test_tools_are_what_the_shell_finds():
    for item in check.tools():
        found = sh(f"command -v {item.name}").strip()
        assert item.ok == bool(found)
        assert item.detail == (found or "not on PATH")
        assert item.required == (item.name != "dot")


def test_report_is_every_check_in_order():
    items = check.report()
    groups = [i.group for i in items]
    assert groups == sorted(groups, key=["namespaces", "rootless", "limits", "cgroups", "tools"].index)
    assert len(items) == 8 + 1 + 8 + 1 + len(check.TOOLS)
    assert repr(items[0]).startswith("<namespaces/cgroup ok: CLONE_NEWCGROUP, Linux 4.6")
    assert all(os.path.exists(f"/proc/self/ns/{i.name}") for i in items if i.group == "namespaces")
