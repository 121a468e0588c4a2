"""Jails: chroot(2), the way out of it, and pivot_root(2), which holds.

Read beside chroot(2) and pivot_root(2).  chroot is as old as Unix (Version 7,
1979); pivot_root came with Linux 2.3.41, and the mount namespaces it works
in with 2.4.19 (see labkit.mount).

**chroot(2) changes one thing of one process**: the directory where path
lookup starts for "/".  Nothing else moves: the mount table, the working
directory, open files are the same.  The man page says it plainly: it "is
not intended to be used for any kind of security purpose".  A process with
CAP_SYS_CHROOT inside the jail leaves it like this (escape_chroot below)::

    mkdir("x"); chroot("x")        root moves down, the working directory stays above it
    chdir("..") many times         ".." stops only at the process's root, which is below us
    chroot(".")                    we are at the real root: make it ours again

**pivot_root(2) changes the root mount of the whole mount namespace**, in a
namespace of our own.  After the old root is unmounted there is nothing
above the jail to climb to: the same escape ends where it started.  The
steps of pivot_into, in the order the kernel needs them:

    1. mount("", "/", MS_REC|MS_PRIVATE)      our mount events must not reach the
                                              host, and pivot_root refuses shared mounts
    2. mount(new, new, MS_BIND|MS_REC)        new_root must be a mount point
    3. pivot_root(new, new/.oldroot)          the old root moves to /.oldroot
    4. chdir("/")
    5. mount("proc", "/proc", "proc")         a /proc of our own (labkit.spawn.mount_fresh_proc)
    6. umount2("/.oldroot", MNT_DETACH)       cut the last path back; then rmdir it

pivot_root(".", ".") does the same without a put_old directory; see
pivot_into_with_dot.

One path out stays open without a PID namespace: /proc/1/root, the root
directory of the host's init (or /proc/PID/root of any process outside),
read through the fresh /proc.  So the jails started here get a PID
namespace too, unless asked otherwise.

A root file system is a directory tree with the programs the jail runs.
copy_program builds one by hand (a binary and the shared libraries ldd(1)
lists, dynamic loader included); build_busybox_rootfs builds a small
one from a static busybox(1).

Everything here changes the calling process for good, so it runs in a child:
spawn_in_jail, call_in_jail and run_in_jail do that with labkit.spawn.

See chroot(2), pivot_root(2), mount_namespaces(7), umount(2), ld.so(8),
ldd(1), busybox(1), and the pivot_root(8) and switch_root(8) commands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from . import syscalls
from .child import exec_command
from .errors import error_for
from .nstypes import encode_flags
from .spawn import Child, mount_fresh_proc, run, spawn

# Building a root file system -----------------------------------------------


def shared_libraries(program: str) -> list[str]:
    """The files PROGRAM needs to start: its shared libraries and the dynamic loader.

    ldd(1) prints them, for instance::

        linux-vdso.so.1 (0x00007ffd...)                  in the kernel: no file to copy
        libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
        /lib64/ld-linux-x86-64.so.2 (0x...)              the loader, named in the ELF header

    Use ldd on trusted programs only: it may run the program to ask it.
    A static program (busybox here) needs nothing: "not a dynamic executable".
    """
    out = subprocess.run(["ldd", program], capture_output=True, text=True)
    if "not a dynamic executable" in out.stdout + out.stderr:
        return []
    if out.returncode != 0:
        raise FileNotFoundError(f"ldd {program}: {(out.stderr or out.stdout).strip()}")
    files = []
    for line in out.stdout.splitlines():
        words = line.split()
        path = words[words.index("=>") + 1] if "=>" in words else words[0]
        if path == "not":  # "libfoo.so => not found"
            raise FileNotFoundError(f"{program} needs {words[0]}, which ldd cannot find")
        if path.startswith("/"):
            files.append(path)
    return files


def copy_program(program: str, root: str, dest: str | None = None) -> list[str]:
    """Copy PROGRAM and its shared libraries into ROOT, at the same paths.

    The program goes to DEST (default: its own path) under ROOT.  Symbolic
    links are followed: the jail gets files, not links that point outside.
    Returns the paths copied, as seen inside the jail.
    """
    path = shutil.which(program)
    if path is None:
        raise FileNotFoundError(f"no program {program!r} in PATH")
    copied = []
    for source, inside in [(path, dest or path)] + [(lib, lib) for lib in shared_libraries(path)]:
        target = Path(root) / inside.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied.append(inside)
    return copied


# Busybox is one static binary that acts as the command it is called as.
APPLETS = ("sh", "ls", "cat", "echo", "mkdir", "rmdir", "rm", "touch", "ln", "cp", "mv",
           "mount", "umount", "ps", "kill", "sleep", "hostname", "uname", "id", "pwd", "env",
           "test", "[", "true", "false", "grep", "head", "wc", "stat", "readlink", "chroot",
           "printf", "cut", "sed", "find")


def build_busybox_rootfs(root: str, busybox: str = "/usr/bin/busybox",
                         applets: Sequence[str] = APPLETS) -> str:
    """Build a small root file system in directory ROOT and return its path.

    /bin/busybox, a symbolic link /bin/APPLET -> busybox for each applet,
    and the directories a system expects: /proc and /sys to mount on, /dev,
    /etc, /root and a world-writable /tmp.
    """
    top = Path(root)
    for d in ("bin", "proc", "sys", "dev", "etc", "root", "tmp"):
        (top / d).mkdir(parents=True, exist_ok=True)
    (top / "tmp").chmod(0o1777)
    copy_program(busybox, root, "/bin/busybox")  # with its libraries, should it not be static
    for applet in applets:
        link = top / "bin" / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    return str(top)


# chroot, and the way out ---------------------------------------------------

def _chroot(path: str) -> None:
    try:
        os.chroot(path)
    except OSError as e:
        raise error_for("chroot", e.errno, detail=path) from None


def enter_chroot(root: str) -> None:
    """chroot(8): make ROOT this process's root directory, and go there.

    Without the chdir the working directory would stay outside the new root.
    """
    _chroot(root)
    os.chdir("/")


def escape_chroot(workdir: str = ".escape", climb: int = 256) -> bool:
    """The classic way out of a chroot jail; True if this process's root moved.

    Needs CAP_SYS_CHROOT (root, or root in a user namespace) and a writable
    working directory.  In a pivot_root jail the same steps end at the
    jail's own root, and the function returns False.
    """
    before = os.stat("/")
    os.makedirs(workdir, exist_ok=True)
    _chroot(workdir)  # the root is now below our working directory ...
    for _ in range(climb):
        os.chdir("..")  # ... so ".." never meets it, and stops only at the namespace's root
    _chroot(".")
    os.chdir("/")
    after = os.stat("/")
    return (before.st_dev, before.st_ino) != (after.st_dev, after.st_ino)


# pivot_root, done right ----------------------------------------------------

def pivot_into(rootfs: str, mount_proc: bool = True, put_old: str = ".oldroot") -> None:
    """Make ROOTFS the root of the caller's mount namespace, with no way back.

    The caller must be alone in a new mount namespace (labkit.spawn with
    "mnt"): step 1 changes every mount of the namespace.
    """
    new_root = os.path.abspath(rootfs)
    # 1. Private, so that the bind, pivot and unmount below stay in this namespace.
    syscalls.mount("none", "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    # 2. A bind mount of the directory on itself turns it into a mount point.
    syscalls.mount(new_root, new_root, None, syscalls.MS_BIND | syscalls.MS_REC)
    # 3. The old root goes to a directory under the new one.
    os.makedirs(os.path.join(new_root, put_old), exist_ok=True)
    syscalls.pivot_root(new_root, os.path.join(new_root, put_old))
    # 4. pivot_root moves the root and working directory of the processes that
    #    were at the old root; chdir makes sure of ours.
    os.chdir("/")
    # 5. A /proc of our own, while the old root is still attached: in a user
    #    namespace the kernel mounts a proc only while another proc is fully
    #    visible in the mount namespace, and the old root's is the one it finds.
    if mount_proc:
        mount_fresh_proc()
    # 6. MNT_DETACH: the old root is busy (our own open files may be on it), so
    #    it is cut off now and freed when the last user lets go.
    syscalls.umount("/" + put_old, syscalls.MNT_DETACH)
    os.rmdir("/" + put_old)


def pivot_into_with_dot(rootfs: str, mount_proc: bool = True) -> None:
    """pivot_into without a put_old directory: pivot_root(".", "."), as runc does.

    pivot_root(2)'s NOTES: with new_root and put_old the same directory, the
    old root is mounted *on top of* the new root at "/".  umount2(".")
    detaches the topmost mount there, the old root, and the new root shows
    through.  Nothing is created in ROOTFS, so it may be read-only.
    """
    new_root = os.path.abspath(rootfs)
    syscalls.mount("none", "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    syscalls.mount(new_root, new_root, None, syscalls.MS_BIND | syscalls.MS_REC)
    os.chdir(new_root)
    syscalls.pivot_root(".", ".")
    if mount_proc:
        mount_fresh_proc()  # "/proc" is looked up in the new root, below the stacked old one
    syscalls.umount(".", syscalls.MNT_DETACH)
    os.chdir("/")


def enter_jail(rootfs: str, pivot: bool = True, mount_proc: bool = True) -> None:
    """In a child: pivot_into ROOTFS, or just enter_chroot it (PIVOT False)."""
    if pivot:
        pivot_into(rootfs, mount_proc)
    else:
        enter_chroot(rootfs)


# Running things in a jail, in a child process ------------------------------

def jail_options(pivot: bool, namespaces: object = None) -> dict:
    """The spawn() namespaces and options for a jail.

    pivot_root needs a mount namespace; by default a PID namespace comes
    with it, so that the fresh /proc shows only the jail's processes (and
    /proc/1/root, the init's root, is the jail).  A chroot jail needs no
    namespace as root; a normal user gets CAP_SYS_CHROOT from a user
    namespace in which they are root.
    """
    if namespaces is None:
        namespaces = ("mnt", "pid") if pivot else ()
    flags = encode_flags(namespaces)
    if pivot:
        flags |= encode_flags("mnt")
    options: dict = {"namespaces": flags}
    if os.geteuid() != 0 and not flags:
        options = {"namespaces": encode_flags("user"), "map_root": True}
    return options


def spawn_in_jail(rootfs: str, argv: Sequence[str], *, pivot: bool = True, mount_proc: bool = True,
                  namespaces: object = None, **spawn_options) -> Child:
    """Start ARGV with ROOTFS as its root; return when it is jailed (a labkit.spawn Child).

    ARGV is looked up inside the jail.  If the jail cannot be built, the
    error is raised here; if ARGV cannot be run, the child prints why and
    exits with 127, as a shell (and chroot(8)) does.
    """
    rootfs = _directory(rootfs)
    return spawn(_exec_or_say_why, args=(rootfs, list(argv)),
                 setup=lambda: enter_jail(rootfs, pivot, mount_proc),
                 **jail_options(pivot, namespaces), **spawn_options)


def _exec_or_say_why(rootfs: str, argv: list[str]) -> None:
    try:
        exec_command(argv)
    except OSError as e:
        # Straight to file descriptor 2: sys.stderr may buffer, and _exit does not flush.
        os.write(2, f"labkit.jail: cannot run {argv[0]} in {rootfs}: {e.strerror}\n".encode())
        os._exit(127 if isinstance(e, FileNotFoundError) else 126)


def call_in_jail(rootfs: str, fn: Callable[..., object], *args: object, pivot: bool = True,
                 mount_proc: bool = True, namespaces: object = None) -> object:
    """Call FN(*ARGS) in a child jailed in ROOTFS and return what it returns.

    FN runs as Python code already loaded, so the jail needs no Python: a
    busybox tree will do.
    """
    return run(_jail_then_call, _directory(rootfs), pivot, mount_proc, fn, args,
               **jail_options(pivot, namespaces))


def _directory(rootfs: str) -> str:
    if not os.path.isdir(rootfs):
        raise NotADirectoryError(f"no root file system at {rootfs}: it is not a directory")
    return os.path.abspath(rootfs)


def _jail_then_call(rootfs: str, pivot: bool, mount_proc: bool, fn: Callable[..., object],
                    args: Sequence[object]) -> object:
    enter_jail(rootfs, pivot, mount_proc)
    return fn(*args)


def run_in_jail(rootfs: str, argv: Sequence[str], *, pivot: bool = True, mount_proc: bool = True,
                namespaces: object = None, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ARGV in a jail on ROOTFS and capture its output, like subprocess.run.

    With PIVOT (the default) the jail is a new mount and PID namespace with
    ROOTFS as its root via pivot_root; with PIVOT=False it is chroot(2) alone.
    """
    return call_in_jail(rootfs, _run_captured, list(argv), timeout, pivot=pivot,
                        mount_proc=mount_proc, namespaces=namespaces)


def _run_captured(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    # input="" gives the command an empty pipe: a jail may have no /dev/null to open.
    return subprocess.run(argv, input="", capture_output=True, text=True, timeout=timeout)
