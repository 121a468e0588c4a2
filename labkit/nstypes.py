"""The eight namespace types, as the kernel numbers them.

Every namespace type has a ``CLONE_NEW*`` flag (from ``<linux/sched.h>``) that
clone(2), unshare(2) and setns(2) take, and a link in ``/proc/PID/ns`` that
names the namespace a process is in.  This table is the one fact the rest of
labkit is built on; ``namespaces(7)`` has the same table.

A flag *mask* is several flags or-ed together, as one reads it in an strace::

    unshare(CLONE_NEWNS|CLONE_NEWUTS)  ==  unshare(0x04020000)

``decode_flags(0x04020000)`` turns the number back into names, and
``encode_flags("mnt,uts")`` goes the other way.

See namespaces(7), clone(2), unshare(2).
"""

from __future__ import annotations

from collections.abc import Iterable


class NamespaceType:
    """One row of the table in namespaces(7).

    name      the link name in /proc/PID/ns, and lsns's TYPE column
    flag      the CLONE_NEW* constant
    constant  the constant's name in <linux/sched.h>
    kernel    the Linux release that completed the type
    manpage   where to read about it
    isolates  what a process in a namespace of its own gets its own copy of
    nesting   for the two types that form a tree (PID, user): how many levels
              below the initial namespace the kernel lets them go; else None
    """

    __slots__ = ("name", "flag", "constant", "kernel", "manpage", "isolates", "nesting")

    def __init__(self, name: str, flag: int, constant: str, kernel: str,
                 manpage: str, isolates: str, nesting: int | None = None) -> None:
        self.name, self.flag, self.constant = name, flag, constant
        self.kernel, self.manpage, self.isolates = kernel, manpage, isolates
        self.nesting = nesting

    def __repr__(self) -> str:
        return f"<{self.name} {self.constant} {self.flag:#010x}>"


# Order: the order of namespaces(7), which is roughly the order of history.
# Nesting: the kernel's MAX_PID_NS_LEVEL (32) for PID namespaces, and for user
# namespaces create_user_ns() refusing a parent at level > 32 (user_namespaces(7)
# says 32; the kernel lets the 33rd level be made).  A 33rd PID level, or a 34th
# user level, fails with ENOSPC (EINVAL and EUSERS before Linux 4.9).
TYPES: tuple[NamespaceType, ...] = (
    NamespaceType("cgroup", 0x02000000, "CLONE_NEWCGROUP", "4.6",
                  "cgroup_namespaces(7)", "cgroup root directory"),
    NamespaceType("ipc", 0x08000000, "CLONE_NEWIPC", "2.6.19",
                  "ipc_namespaces(7)", "System V IPC, POSIX message queues"),
    NamespaceType("net", 0x40000000, "CLONE_NEWNET", "2.6.29",
                  "network_namespaces(7)", "network devices, stacks, ports"),
    NamespaceType("mnt", 0x00020000, "CLONE_NEWNS", "2.4.19",
                  "mount_namespaces(7)", "mount points"),
    NamespaceType("pid", 0x20000000, "CLONE_NEWPID", "2.6.24",
                  "pid_namespaces(7)", "process IDs", nesting=32),
    NamespaceType("time", 0x00000080, "CLONE_NEWTIME", "5.6",
                  "time_namespaces(7)", "boot and monotonic clocks"),
    NamespaceType("user", 0x10000000, "CLONE_NEWUSER", "3.8",
                  "user_namespaces(7)", "user and group IDs", nesting=33),
    NamespaceType("uts", 0x04000000, "CLONE_NEWUTS", "2.6.19",
                  "uts_namespaces(7)", "hostname and NIS domain name"),
)

BY_NAME = {t.name: t for t in TYPES}
BY_FLAG = {t.flag: t for t in TYPES}

ALL_FLAGS = sum(t.flag for t in TYPES)  # each flag is a bit of its own, so the sum is their or

# Other spellings people use for the same types: unshare(1)'s long options,
# the constant names ("clone_newuts") and their tails ("ns" for mnt).
ALIASES = {"mount": "mnt", "network": "net"}
for _t in TYPES:
    ALIASES[_t.constant.lower()] = _t.name
    ALIASES[_t.constant.lower().removeprefix("clone_new")] = _t.name
del _t


def lookup(name: str | int | NamespaceType) -> NamespaceType:
    """Return the type called NAME ("uts", "mount", "CLONE_NEWUTS"), or with that flag."""
    if isinstance(name, NamespaceType):
        return name
    if isinstance(name, int):
        if name in BY_FLAG:
            return BY_FLAG[name]
        raise ValueError(f"{name:#x} is not a single CLONE_NEW* flag")
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in BY_NAME:
        return BY_NAME[key]
    known = ", ".join(t.name for t in TYPES)
    raise ValueError(f"unknown namespace type {name!r} (known: {known})")


def decode_flags(mask: int) -> list[NamespaceType]:
    """Split a flag mask into namespace types: 0x04020000 -> [mnt, uts].

    Raises ValueError if the mask has bits that are not CLONE_NEW* flags,
    because a half-decoded number teaches the wrong thing.
    """
    if mask < 0:
        raise ValueError(f"{mask} is negative: a flag mask is a number >= 0")
    unknown = mask & ~ALL_FLAGS
    if unknown:
        raise ValueError(f"{mask:#x} has bits that are not CLONE_NEW* flags: {unknown:#x}")
    return [t for t in TYPES if mask & t.flag]


def encode_flags(types: str | int | NamespaceType | Iterable[str | int | NamespaceType]) -> int:
    """Or together the flags of TYPES: "mnt,uts" or ["mnt", "uts"] -> 0x04020000."""
    if isinstance(types, int):
        decode_flags(types)  # validate
        return types
    if isinstance(types, NamespaceType):
        types = [types]
    elif isinstance(types, str):
        types = types.replace("|", ",").split(",")
    mask = 0
    for t in types:
        if isinstance(t, str) and not t.strip():
            continue
        mask |= lookup(t).flag
    return mask


def format_flags(mask: int) -> str:
    """Write a mask the way strace does: CLONE_NEWNS|CLONE_NEWUTS."""
    return "|".join(t.constant for t in decode_flags(mask)) or "0"


def parse_mask(text: str) -> int:
    """Read a mask typed by a person: 0x4000000, 67108864, CLONE_NEWNS|CLONE_NEWUTS, mnt,uts.

    Raises ValueError for a number with bits that are not CLONE_NEW* flags.
    """
    text = text.strip()
    try:
        number = int(text, 0)
    except ValueError:
        return encode_flags(text)
    return encode_flags(number)  # checks the bits
