"""User namespaces: uid and gid maps, capabilities, and root without root.

user_namespaces(7), Linux 3.8 (the last namespace type to be finished, and
the one that lets an unprivileged user create all the others).

A new user namespace starts with no mapping: every id inside reads as the
overflow id 65534 (``/proc/sys/kernel/overflowuid``) until somebody writes
``/proc/PID/uid_map`` and ``/proc/PID/gid_map``.  A line of a map says
"ids FIRST_INSIDE.. are FIRST_OUTSIDE.. for COUNT ids"::

    0 1000 1        # root inside is uid 1000 outside, and nothing else is mapped

The rules of user_namespaces(7), which the kernel enforces (EPERM, or
EINVAL for a malformed map); ``MAP_RULES`` below names each one, and a
broken rule raises ``MapRuleError`` with that rule's text:

* each map may be written once, in one write(2);
* the writer must be in PID's user namespace or in its parent;
* the writer needs CAP_SETUID (CAP_SETGID for gid_map) in the *parent* user
  namespace, or must be an unprivileged process mapping only its own
  effective id (a single line with count 1);
* an unprivileged writer of gid_map must first write ``deny`` to
  ``/proc/PID/setgroups``.  Since Linux 3.19: otherwise a user could drop a
  group with setgroups(2) inside the namespace and so escape a "negative"
  permission (a file mode that denies access to that group).

Because a process loses its capabilities at execve(2) unless its ids are
mapped, the maps are written by the *parent* while the child waits: the
handshake of ``userns_child_exec.c`` that ``labkit.spawn`` performs.

The creator of a user namespace gets every capability *in it*
(``capabilities()`` reads them from /proc/PID/status), and with them the
power to create every other namespace type, which the new user namespace
then owns: ``labkit.spawn.start_owning_all()``.  Those capabilities count only for
objects the namespace owns; outside it the process is as weak as before.

See user_namespaces(7), proc(5) (/proc/PID/uid_map, /proc/PID/status),
capabilities(7), ioctl_ns(2) (NS_GET_OWNER_UID, Linux 4.11).
"""

from __future__ import annotations

import errno
import os

from .errors import MapRuleError, error_for, teach
from .namespace import Namespace
from .procfs import read_text, status_field, write_once

OVERFLOW_ID = 65534  # what an unmapped id looks like; see /proc/sys/kernel/overflowuid

# Every other type, in the order of namespaces(7): what a user namespace can own.
OTHER_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "uts")

# The rules of user_namespaces(7), "Defining user and group ID mappings", by name.
MAP_RULES = {
    "once": "a map is written only once: the second write to uid_map or gid_map fails, "
            "even with the same text.",
    "format": "each line is 'INSIDE OUTSIDE COUNT' with COUNT > 0, at most 340 lines "
              "(5 before Linux 4.15), written in one write(2), and no two ranges may overlap.",
    "where": "the writer must be in the user namespace of PID or in its parent user namespace.",
    "own-id": "a writer without CAP_SETUID (CAP_SETGID for gid_map) in the parent user "
              "namespace may map only its own effective id, in one line of count 1, "
              "e.g. '0 {own} 1'.",
    "setgroups-first": "an unprivileged writer must write 'deny' to /proc/PID/setgroups "
                       "before gid_map (the Linux 3.19 fix: a user who could call setgroups(2) "
                       "inside could drop a group that denies access to a file).",
    "setgroups-late": "setgroups can be set to 'deny' only before gid_map is written; "
                      "afterwards it is fixed.",
    "mapped-outside": "the outside ids must themselves be mapped in the parent user namespace.",
}

# A refused write that _broken_rule() cannot pin on one rule is answered with them all.
teach("uid_map", "gid_map", "setgroups", cls=MapRuleError, hints=dict.fromkeys(
    (errno.EPERM, errno.EACCES, errno.EINVAL),
    "user_namespaces(7): " + " ".join(rule.format(own="EUID") for rule in MAP_RULES.values())))

# capabilities(7): the bit number of each capability (<linux/capability.h>).
CAPABILITIES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
    "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
    "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
    "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
    "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
)


# --- Writing the maps -------------------------------------------------------

def deny_setgroups(pid: int | str) -> None:
    """Write "deny" to /proc/PID/setgroups: needed before an unprivileged gid_map."""
    _write_proc(pid, "setgroups", "deny")


def write_uid_map(pid: int | str, lines: str) -> None:
    """Write /proc/PID/uid_map, e.g. "0 1000 1" (inside outside count)."""
    _write_proc(pid, "uid_map", _normalize(lines))


def write_gid_map(pid: int | str, lines: str) -> None:
    """Write /proc/PID/gid_map, e.g. "0 1000 1" (inside outside count)."""
    _write_proc(pid, "gid_map", _normalize(lines))


def map_root(pid: int | str, uid: int | None = None, gid: int | None = None) -> None:
    """Map root inside PID's user namespace to UID and GID outside (default: ours).

    This is ``unshare --map-root-user``: the unprivileged recipe, which needs
    the setgroups ``deny`` first; as root we leave setgroups alone, so that
    root inside may still call setgroups(2).
    """
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    write_uid_map(pid, f"0 {uid} 1")
    if os.geteuid() != 0:
        deny_setgroups(pid)
    write_gid_map(pid, f"0 {gid} 1")


def read_map(pid: int | str = "self", which: str = "uid_map") -> list[tuple[int, int, int]]:
    """The lines of /proc/PID/uid_map (or gid_map) as (inside, outside, count)."""
    with open(f"/proc/{pid}/{which}") as f:
        return [tuple(int(x) for x in line.split()) for line in f if line.strip()]


def _normalize(lines: str) -> str:
    return "".join(line.strip() + "\n" for line in lines.strip().splitlines())


def _write_proc(pid: int | str, name: str, text: str) -> None:
    path = f"/proc/{pid}/{name}"
    try:
        write_once(path, text)  # a map written in pieces would be a second write, refused
    except OSError as e:
        rule = _broken_rule(pid, name, text, e.errno)
        if rule is None:
            raise error_for(name, e.errno, detail=f"({path}: {text.strip()!r})") from None
        raise MapRuleError(e.errno, f"write {path} {text.strip()!r}",
                           f"user_namespaces(7) rule broken: {rule}") from None


def _broken_rule(pid: int | str, name: str, text: str, err: int) -> str | None:
    """Which rule of user_namespaces(7) the refused write broke, or None if unknown.

    The kernel says only EPERM or EINVAL; we look at the state it looked at.
    """
    if err == errno.EINVAL:
        return MAP_RULES["format"]
    if err != errno.EPERM:
        return None
    if name == "setgroups":
        return MAP_RULES["setgroups-late"] if read_map(pid, "gid_map") else None
    if read_map(pid, name):
        return MAP_RULES["once"]
    theirs, ours = Namespace.of(pid, "user"), Namespace.of("self", "user")
    try:
        in_parent = theirs.parent() == ours
    except OSError:  # the parent lies outside our view: we are not in it
        in_parent = False
    if theirs != ours and not in_parent:
        return MAP_RULES["where"]
    capability = "setuid" if name == "uid_map" else "setgid"
    if in_parent and capability in capabilities():
        return MAP_RULES["mapped-outside"]  # privileged: only the outside ids can be wrong
    if name == "gid_map" and read_text(f"/proc/{pid}/setgroups") == "allow":
        return MAP_RULES["setgroups-first"]
    own = os.geteuid() if name == "uid_map" else os.getegid()
    lines = text.split("\n")[:-1]
    if in_parent and (len(lines) != 1 or lines[0].split()[1:] != [str(own), "1"]):
        return MAP_RULES["own-id"].format(own=own)
    return None


# --- Capabilities and ownership ---------------------------------------------

def decode_capabilities(mask: int) -> list[str]:
    """Bit mask -> capability names in bit order: 0x3 -> ["chown", "dac_override"]."""
    names = [name for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1]
    names += [f"cap_{bit}" for bit in range(len(CAPABILITIES), mask.bit_length()) if mask >> bit & 1]
    return names


def capabilities(pid: int | str = "self", which: str = "CapEff") -> set[str]:
    """The capabilities in set WHICH (CapEff, CapPrm, CapBnd, ...) of process PID.

    They are capabilities in PID's own user namespace: "all of them" inside a
    new user namespace means nothing for what the namespace does not own.
    """
    try:
        mask = int(status_field(pid, which), 16)
    except LookupError:
        raise ValueError(f"no {which} line in /proc/{pid}/status (try CapEff, CapPrm, CapBnd)") from None
    return set(decode_capabilities(mask))


def overflow_ids() -> tuple[int, int]:
    """The uid and gid an unmapped id shows as (/proc/sys/kernel/overflow{uid,gid})."""
    return (int(read_text("/proc/sys/kernel/overflowuid")),
            int(read_text("/proc/sys/kernel/overflowgid")))


def owner_uid(pid: int | str = "self") -> int:
    """NS_GET_OWNER_UID: the uid, as we see it, that created PID's user namespace."""
    return Namespace.of(pid, "user").owner_uid()


def owners(pid: int | str = "self") -> dict[str, Namespace]:
    """The user namespace that owns each namespace of PID (NS_GET_USERNS)."""
    return {name: Namespace.of(pid, name).owner() for name in OTHER_TYPES}
