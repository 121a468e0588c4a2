"""Every mount of a mount namespace, hidden ones too: listmount(2) and statmount(2).

/proc/PID/mountinfo lists the mounts that PID can reach from its root
directory.  A mount that is covered where nothing can reach it, the old
root left below a new root mounted over "/" (the way switch_root(8)
works), is in the namespace all the same, and listed by no mountinfo.
Linux 6.8 added two system calls that list the mounts below a mount, by
their unique 64-bit IDs (listmount), and describe a mount (statmount): its
parent, its file system's device, and which directory of that file system
it shows; with CAP_SYS_ADMIN, also the mounts that our root directory
cannot reach.

On an older kernel there is no such list: ``every_mount`` says None, and
the caller makes do with mountinfo.

See listmount(2), statmount(2), statx(2) and <linux/mount.h>.
"""

from __future__ import annotations

import ctypes
import errno
import struct

SYS_statx, SYS_statmount, SYS_listmount = 332, 457, 458  # x86_64
AT_FDCWD, STATX_MNT_ID_UNIQUE = -100, 0x4000
STATMOUNT_SB_BASIC, STATMOUNT_MNT_BASIC, STATMOUNT_MNT_ROOT = 0x1, 0x2, 0x8

# struct mnt_id_req { u32 size, spare; u64 mnt_id, param; }   (the first version: 24 bytes)
_REQUEST = struct.Struct("=IIQQ")
# struct statmount: size, (opts), mask, sb_dev_major, sb_dev_minor, ..., then at 104 the
# offsets of mnt_root and mnt_point in the strings that start at 512.
_SB_DEV = struct.Struct("=II")
_SB_DEV_AT, _PARENT_AT, _MNT_ROOT_AT, _STRINGS_AT = 16, 48, 104, 512
_STX_MNT_ID_AT = 144  # struct statx's stx_mnt_id

_libc = ctypes.CDLL(None, use_errno=True)


def _children(mount_id: int) -> list[int]:
    request = _REQUEST.pack(_REQUEST.size, 0, mount_id, 0)
    ids = (ctypes.c_uint64 * 4096)()
    n = _libc.syscall(SYS_listmount, request, ids, len(ids), 0)
    if n < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"listmount: {errno.errorcode.get(err, err)}")
    return list(ids[:n])


def _statmount(mount_id: int, mask: int) -> bytes:
    request = _REQUEST.pack(_REQUEST.size, 0, mount_id, mask)
    buffer = ctypes.create_string_buffer(8192)
    if _libc.syscall(SYS_statmount, request, buffer, len(buffer), 0) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"statmount: {errno.errorcode.get(err, err)}")
    return buffer.raw


def _describe(mount_id: int) -> tuple[str, str]:
    """("major:minor", root) of a mount, as mountinfo's fields 3 and 4 would say."""
    raw = _statmount(mount_id, STATMOUNT_SB_BASIC | STATMOUNT_MNT_ROOT)
    major, minor = _SB_DEV.unpack_from(raw, _SB_DEV_AT)
    root_at = struct.unpack_from("=I", raw, _MNT_ROOT_AT)[0]
    root = raw[_STRINGS_AT + root_at:].split(b"\0", 1)[0].decode(errors="surrogateescape")
    return f"{major}:{minor}", root


def _parent(mount_id: int) -> int:
    return struct.unpack_from("=Q", _statmount(mount_id, STATMOUNT_MNT_BASIC), _PARENT_AT)[0]


def _root_mount() -> int:
    """The unique ID of the mount at our root directory (statx(2), STATX_MNT_ID_UNIQUE)."""
    buffer = ctypes.create_string_buffer(256)
    if _libc.syscall(SYS_statx, AT_FDCWD, b"/", 0, STATX_MNT_ID_UNIQUE, buffer) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"statx: {errno.errorcode.get(err, err)}")
    return struct.unpack_from("=Q", buffer.raw, _STX_MNT_ID_AT)[0]


def every_mount() -> list[tuple[str, str]] | None:
    """("major:minor", root) of every mount of the caller's namespace; None before Linux 6.8.

    listmount(2) lists what is below a mount; the mounts below our root
    directory's mount, down to the namespace's own root, are found by
    walking up their parents (statmount(2): a root mount is its own
    parent).  Older kernels list the children of a mount only, newer ones
    the whole tree: walking down and keeping each ID once works with both.
    """
    try:
        top = _root_mount()
        while (parent := _parent(top)) != top:
            top = parent
        found, todo, seen = [_describe(top)], [top], {top}
        while todo:
            for mount_id in _children(todo.pop()):
                if mount_id not in seen:
                    seen.add(mount_id)
                    found.append(_describe(mount_id))
                    todo.append(mount_id)
        return found
    except OSError as e:
        if e.errno in (errno.ENOSYS, errno.EINVAL):  # no listmount, or statx without unique IDs
            return None
        raise
