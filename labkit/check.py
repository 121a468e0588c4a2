"""Can this machine do namespaces?  A check in the spirit of lxc-checkconfig.

Everything is read from the running kernel, not from a config file:

* a namespace type is available when ``/proc/self/ns/TYPE`` exists;
* unprivileged user namespaces are allowed unless a sysctl says otherwise
  (Debian's ``kernel.unprivileged_userns_clone``, Ubuntu's AppArmor
  restriction) or ``max_user_namespaces`` is 0;
* ``/proc/sys/user/max_*_namespaces`` caps how many of each type a user may
  own (ENOSPC past it);
* the cgroup layout is v1, v2 ("unified") or the hybrid of both;
* the tools the lessons call are on PATH.

See namespaces(7) (/proc/sys/user), cgroups(7), lxc-checkconfig(1).
"""

from __future__ import annotations

import os
import shutil

from .cgroup import layout
from .nstypes import TYPES
from .procfs import read_text

TOOLS = ("ip", "nsenter", "unshare", "lsns", "busybox", "findmnt", "ipcs", "setpriv", "dot")


class Item:
    """One line of the report: what, whether it is fine, and the detail."""

    def __init__(self, group: str, name: str, ok: bool, detail: str, required: bool = True) -> None:
        self.group, self.name, self.ok, self.detail, self.required = group, name, ok, detail, required

    def __repr__(self) -> str:
        return f"<{self.group}/{self.name} {'ok' if self.ok else 'MISSING'}: {self.detail}>"


def _read(path: str) -> str | None:
    try:
        return read_text(path)
    except OSError:
        return None


def namespace_types() -> list[Item]:
    return [Item("namespaces", t.name, os.path.exists(f"/proc/self/ns/{t.name}"),
                 f"{t.constant}, Linux {t.kernel}, {t.manpage}") for t in TYPES]


def limits() -> list[Item]:
    items = []
    for t in TYPES:
        value = _read(f"/proc/sys/user/max_{t.name}_namespaces")
        ok = value is not None and int(value) > 0
        items.append(Item("limits", f"max_{t.name}_namespaces", ok,
                          value if value is not None else "not present", required=False))
    return items


def unprivileged_userns() -> Item:
    """May a normal user create a user namespace (and so use rootless mode)?"""
    reasons = []
    if _read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        reasons.append("kernel.unprivileged_userns_clone = 0")
    if _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        reasons.append("kernel.apparmor_restrict_unprivileged_userns = 1")
    if _read("/proc/sys/user/max_user_namespaces") == "0":
        reasons.append("user.max_user_namespaces = 0")
    return Item("rootless", "unprivileged user namespaces", not reasons,
                "; ".join(reasons) or "allowed (rootless mode works)", required=False)


def cgroup_layout() -> Item:
    """v2 alone, v1 alone, or hybrid (v1 controllers plus a v2 'unified' mount)."""
    where = layout()
    detail = {"hybrid": f"hybrid: v1 controllers, v2 at {where.unified}",
              "v2": f"v2 (unified) at {where.unified}",
              "v1": "v1 only",
              "none": "no cgroup file system mounted"}[where.kind]
    return Item("cgroups", "layout", where.kind != "none", detail)


def tools() -> list[Item]:
    return [Item("tools", tool, bool(shutil.which(tool)), shutil.which(tool) or "not on PATH",
                 required=tool not in ("dot",)) for tool in TOOLS]


def report() -> list[Item]:
    """Every check, in the order they are printed."""
    return [*namespace_types(), unprivileged_userns(), *limits(), cgroup_layout(), *tools()]
