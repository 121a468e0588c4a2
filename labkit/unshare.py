"""``labkit run``: unshare(1), step by step, in Python.

unshare(1) is a small program around one system call: it calls unshare(2)
on *itself* and then execs COMMAND, which inherits the new namespaces.
``labkit run`` does the same, with the same options, in the same order, so
that a util-linux command line means the same here::

    labkit run -r id -u                  # 0: root in a new user namespace
    labkit run -n ip -o link             # only lo, and it is down
    labkit run -fp --mount-proc ps ax    # PS is PID 1, and alone

(labkit.spawn is the library's way, for notebooks and the grader: it never
changes its caller, and does every step in a child.  A command line tool
may change itself: it is about to become COMMAND anyway.)

The steps of main(), in util-linux's order, which is the kernel's::

    helpers forked first       a binder for --uts=FILE (and the other FILE forms)
                               when the mount or user namespace changes under us;
                               an id mapper for --map-users/--map-groups/--map-auto
    unshare(flags)             the user namespace is made first, the others owned by it
    the helpers' turn          newuidmap/newgidmap (or a root write) for our maps
    timens_offsets             --monotonic, --boottime: before anyone enters
    fork()                     -f: the child is the first process of a new PID
                               (and time) namespace; we wait and die as it dies
    bind mounts                /proc/PID/ns/TYPE -> FILE  (ip netns add does it too)
    PR_SET_PDEATHSIG           --kill-child
    uid_map, setgroups, gid_map  -r, -c, --map-user, --map-group (we may write our own)
    mount --make-rprivate /    --propagation (default private)
    chroot, chdir              -R, -w
    mount -t proc proc /proc   --mount-proc
    setgroups, setgid, setuid  -S, -G
    ambient capabilities       --keep-caps
    execvp(COMMAND)            or $SHELL as a login shell

Why -p needs -f: unshare(CLONE_NEWPID) moves only our future children into
the new PID namespace (pid_namespaces(7)).  Without -f, COMMAND keeps its
PID; its first child is PID 1 there, and once that child has ended the
namespace takes no new process: fork() fails with ENOMEM ("sh: Cannot
fork").  Lesson 05 shows exactly this.

See unshare(1), unshare(2), user_namespaces(7), pid_namespaces(7),
time_namespaces(7), mount_namespaces(7), capabilities(7), newuidmap(1).
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import resource
import select
import signal
import sys

from . import syscalls, timens, user
from .errors import NamespaceError, error_for
from .nstypes import BY_NAME
from .options import NONE, OPTIONAL, REQUIRED, Option, UsageError, help_text, parse
from .procfs import write_once

# unshare(1)'s options: (short, long, argument, metavar, its --help, what it maps to).
NAMESPACES = (
    Option("m", "mount", OPTIONAL, "<file>", "unshare mounts namespace", "unshare(CLONE_NEWNS)"),
    Option("u", "uts", OPTIONAL, "<file>", "unshare UTS namespace (hostname etc)", "unshare(CLONE_NEWUTS)"),
    Option("i", "ipc", OPTIONAL, "<file>", "unshare System V IPC namespace", "unshare(CLONE_NEWIPC)"),
    Option("n", "net", OPTIONAL, "<file>", "unshare network namespace", "unshare(CLONE_NEWNET)"),
    Option("p", "pid", OPTIONAL, "<file>", "unshare pid namespace", "unshare(CLONE_NEWPID)"),
    Option("U", "user", OPTIONAL, "<file>", "unshare user namespace", "unshare(CLONE_NEWUSER)"),
    Option("C", "cgroup", OPTIONAL, "<file>", "unshare cgroup namespace", "unshare(CLONE_NEWCGROUP)"),
    Option("T", "time", OPTIONAL, "<file>", "unshare time namespace", "unshare(CLONE_NEWTIME)"),
)
# The namespace file that --TYPE=FILE bind-mounts: for pid and time, the one our
# children will be in (we stay where we are).
OPTION_TYPE = {"mount": "mnt", "uts": "uts", "ipc": "ipc", "net": "net", "pid": "pid",
               "user": "user", "cgroup": "cgroup", "time": "time"}
PERSIST_FILE = {"mnt": "mnt", "uts": "uts", "ipc": "ipc", "net": "net", "user": "user",
                "cgroup": "cgroup", "pid": "pid_for_children", "time": "time_for_children"}

MAPPING = (
    Option("", "map-user", REQUIRED, "<uid>|<name>", "map current user to uid (implies --user)",
           "/proc/self/uid_map"),
    Option("", "map-group", REQUIRED, "<gid>|<name>", "map current group to gid (implies --user)",
           "/proc/self/setgroups, gid_map"),
    Option("r", "map-root-user", NONE, "", "map current user to root (implies --user)",
           "uid_map \"0 EUID 1\", gid_map"),
    Option("c", "map-current-user", NONE, "", "map current user to itself (implies --user)",
           "uid_map \"EUID EUID 1\", gid_map"),
    Option("", "map-auto", NONE, "", "map users and groups automatically (implies --user)",
           "/etc/subuid, /etc/subgid, newuidmap(1)"),
    Option("", "map-users", REQUIRED, "<inner>:<outer>:<count>",
           "map count users from outeruid to inneruid (implies --user)", "newuidmap(1), or uid_map as root"),
    Option("", "map-groups", REQUIRED, "<inner>:<outer>:<count>",
           "map count groups from outergid to innergid (implies --user)", "newgidmap(1), or gid_map as root"),
)
PROCESS = (
    Option("f", "fork", NONE, "", "fork before launching <program>", "fork(2)"),
    Option("", "kill-child", OPTIONAL, "<signame>",
           "when dying, kill the forked child (implies --fork)", "prctl(PR_SET_PDEATHSIG)"),
    Option("", "forward-signals", NONE, "", "forward SIGTERM and SIGINT to child (implies --fork)",
           "kill(2)"),
    Option("", "mount-proc", OPTIONAL, "<dir>", "mount proc filesystem first (implies --mount)",
           "mount(\"proc\", DIR, \"proc\")"),
    Option("", "propagation", REQUIRED, "slave|shared|private|unchanged",
           "modify mount propagation in mount namespace", "mount(\"none\", \"/\", MS_REC|MS_*)"),
    Option("", "setgroups", REQUIRED, "allow|deny", "control the setgroups syscall in user namespaces",
           "/proc/self/setgroups"),
    Option("", "keep-caps", NONE, "", "retain capabilities granted in user namespaces",
           "capset(2), PR_CAP_AMBIENT"),
    Option("R", "root", REQUIRED, "<dir>", "run the command with root directory set to <dir>", "chroot(2)"),
    Option("w", "wd", REQUIRED, "<dir>", "change working directory to <dir>", "chdir(2)"),
    Option("S", "setuid", REQUIRED, "<uid>", "set uid in entered namespace", "setuid(2)"),
    Option("G", "setgid", REQUIRED, "<gid>", "set gid in entered namespace", "setgroups(2), setgid(2)"),
    Option("", "monotonic", REQUIRED, "<offset>",
           "set clock monotonic offset (seconds) in time namespaces", "/proc/self/timens_offsets"),
    Option("", "boottime", REQUIRED, "<offset>",
           "set clock boottime offset (seconds) in time namespaces", "/proc/self/timens_offsets"),
)
LABKIT_ONLY = (
    Option("", "hostname", REQUIRED, "<name>", "hostname of the new UTS namespace (needs -u)",
           "sethostname(2)"),
    Option("", "domainname", REQUIRED, "<name>", "NIS domain name of the new UTS namespace (needs -u)",
           "setdomainname(2)"),
)
HELP = (Option("h", "help", NONE, "", "display this help"),)
TABLE = NAMESPACES + MAPPING + PROCESS + LABKIT_ONLY + HELP

USAGE = "labkit run [options] [<program> [<argument>...]]"
ABOUT = ("Run a program with some namespaces unshared from the parent, as unshare(1) does:\n"
         "same options, same order of steps, same exit status (options end at <program>;\n"
         "`--` is optional).")
DIFFERENCES = """\
Where labkit differs from unshare(1) 2.38, on purpose:
 * as a normal user without -U, labkit adds -U and -r (unshare(1) fails with EPERM),
   so that `labkit run -u` works rootless;
 * --hostname and --domainname are labkit's own; --forward-signals is util-linux 2.40's;
 * --monotonic and --boottime also take fractions of a second;
 * with -f, a program killed by SIGKILL kills labkit with SIGKILL (unshare 2.38 means
   to, but exits 1: "sigprocmask unblock failed");
 * as root, --map-users/--map-groups/--map-auto write the maps directly instead of
   running newuidmap(1)/newgidmap(1); with -r or -c as well, the one id is cut out of
   the ranges (two lines of a map may not overlap) rather than shifted as unshare does;
 * not supported: --mount-binfmt, -l/--load-interp, --owner, --map-subids,
   --clear-env, --whitelist-env (newer than 2.38), -V/--version.

For more details see unshare(1)."""

# mount_namespaces(7): what --propagation makes "/" (0: leave it as it is).
PROPAGATION = {"slave": syscalls.MS_REC | syscalls.MS_SLAVE,
               "private": syscalls.MS_REC | syscalls.MS_PRIVATE,
               "shared": syscalls.MS_REC | syscalls.MS_SHARED,
               "unchanged": 0}

PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 47, 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class IdRange:
    """One line of a uid_map or gid_map: INNER.. inside are OUTER.. outside, COUNT of them."""

    __slots__ = ("inner", "outer", "count")

    def __init__(self, inner: int, outer: int, count: int) -> None:
        self.inner, self.outer, self.count = inner, outer, count

    def __str__(self) -> str:
        return f"{self.inner} {self.outer} {self.count}"


class Settings:
    """What the command line asked for (plain attributes: no dataclasses at start)."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.flags = 0
        self.persist: dict[str, str] = {}  # type -> FILE
        self.fork = self.forward_signals = self.keep_caps = False
        self.kill_child = 0
        self.mount_proc: str | None = None
        self.map_user: int | None = None
        self.map_group: int | None = None
        self.user_ranges: list[IdRange] = []
        self.group_ranges: list[IdRange] = []
        self.setgroups: str | None = None
        self.propagation = PROPAGATION["private"]
        self.root: str | None = None
        self.wd: str | None = None
        self.uid: int | None = None
        self.gid: int | None = None
        self.offsets: dict[str, float] = {}
        self.hostname: str | None = None
        self.domainname: str | None = None


# Reading the command line ------------------------------------------------------

def read_command_line(argv: list[str]) -> Settings:
    """The Settings of ARGV, or UsageError / ValueError with unshare's message."""
    found, command = parse(argv, TABLE)
    s = Settings(command)
    euid, egid = os.geteuid(), os.getegid()
    for name, value in found:
        if name in OPTION_TYPE:
            nstype = OPTION_TYPE[name]
            s.flags |= BY_NAME[nstype].flag
            if value is not None:
                s.persist[nstype] = value
        elif name == "fork":
            s.fork = True
        elif name == "kill-child":
            s.fork, s.kill_child = True, signal_number(value) if value else signal.SIGKILL
        elif name == "forward-signals":
            s.fork = s.forward_signals = True
        elif name == "mount-proc":
            s.flags |= NEWNS
            s.mount_proc = value or "/proc"
        elif name == "map-user":
            s.flags |= NEWUSER
            s.map_user = _id(value, pwd.getpwnam, "uid")
        elif name == "map-group":
            s.flags |= NEWUSER
            s.map_group = _id(value, grp.getgrnam, "gid")
        elif name == "map-root-user":
            s.flags |= NEWUSER
            s.map_user = s.map_group = 0
        elif name == "map-current-user":
            s.flags |= NEWUSER
            s.map_user, s.map_group = euid, egid
        elif name == "map-auto":
            s.flags |= NEWUSER
            s.user_ranges.append(subid_range("/etc/subuid", euid))
            s.group_ranges.append(subid_range("/etc/subgid", euid))
        elif name in ("map-users", "map-groups"):
            s.flags |= NEWUSER
            ranges, which = ((s.user_ranges, "uid") if name == "map-users" else (s.group_ranges, "gid"))
            if value == "auto":
                ranges.append(subid_range(f"/etc/sub{which}", euid))
            elif value == "all":
                ranges.extend(IdRange(i, i, n) for i, _, n in user.read_map("self", f"{which}_map"))
            else:
                ranges.append(map_range(value))
        elif name == "setgroups":
            if value not in ("allow", "deny"):
                raise ValueError(f"unsupported --setgroups argument '{value}'")
            s.setgroups = value
        elif name == "propagation":
            if value not in PROPAGATION:
                raise ValueError(f"unsupported propagation mode: {value}")
            s.propagation = PROPAGATION[value]
        elif name == "keep-caps":
            s.keep_caps = True
        elif name == "root":
            s.root = value
        elif name == "wd":
            s.wd = value
        elif name == "setuid":
            s.uid = _number(value, "uid")
        elif name == "setgid":
            s.gid = _number(value, "gid")
        elif name in ("monotonic", "boottime"):
            try:
                s.offsets[name] = float(value)
            except ValueError:
                raise ValueError(f"failed to parse {name} offset: '{value}'") from None
            timens.offset_line(name, s.offsets[name])  # a finite number of seconds
        elif name == "hostname":
            s.hostname = value
        elif name == "domainname":
            s.domainname = value
    if s.offsets and not s.flags & NEWTIME:
        raise ValueError("options --monotonic and --boottime require unsharing of a time namespace (-T)")
    if (s.hostname is not None or s.domainname is not None) and not s.flags & NEWUTS:
        raise ValueError("--hostname and --domainname need a new UTS namespace: add -u")
    if euid != 0 and s.flags and not s.flags & NEWUSER:
        # labkit's rootless mode, where unshare(1) would fail with EPERM.
        s.flags |= NEWUSER
        if s.map_user is None and not s.user_ranges:
            s.map_user = 0
        if s.map_group is None and not s.group_ranges and s.setgroups != "allow":
            s.map_group = 0
    return s


NEWUSER, NEWNS, NEWPID, NEWTIME, NEWUTS = (BY_NAME[n].flag for n in ("user", "mnt", "pid", "time", "uts"))


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"failed to parse {what}: '{text}'")
    return int(text)


def _id(text: str, by_name, what: str) -> int:
    """A uid or gid given as a number or a name (--map-user=nobody)."""
    if text.isdigit():
        return int(text)
    try:
        entry = by_name(text)
    except KeyError:
        raise ValueError(f"failed to parse {what} '{text}'") from None
    return entry[2]


def signal_number(name: str) -> int:
    """KILL, SIGKILL, kill or 9 -> 9."""
    if name.isdigit():
        return int(name)
    try:
        return int(signal.Signals["SIG" + name.upper().removeprefix("SIG")])
    except KeyError:
        raise ValueError(f"unknown signal: {name}") from None


def map_range(text: str) -> IdRange:
    """inner:outer:count, or util-linux 2.38's outer,inner,count."""
    for sep, order in ((":", (0, 1, 2)), (",", (1, 0, 2))):
        parts = text.split(sep)
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            values = [int(parts[k]) for k in order]
            return IdRange(*values)
    raise ValueError(f"invalid mapping '{text}'")


def subid_range(path: str, uid: int) -> IdRange:
    """The caller's first range in /etc/subuid or /etc/subgid, mapped from 0 inside."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        raise ValueError(f"you (user {uid}) don't exist.") from None
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ValueError(f"could not open '{path}': {e.strerror}") from None
    for line in lines:
        owner, _, rest = line.partition(":")
        start, _, count = rest.partition(":")
        if owner in (name, str(uid)) and start.isdigit() and count.strip().isdigit():
            return IdRange(0, int(start), int(count))
    raise ValueError(f'no line matching user "{name}" in {path}')


def with_single_id(ranges: list[IdRange], inner: int, outer: int) -> list[IdRange]:
    """RANGES plus "INNER OUTER 1" first, with that id cut out of any range it overlaps.

    Two lines of a map may not overlap (user_namespaces(7)): --map-auto
    --map-current-user would otherwise map EUID twice.
    """
    result = [IdRange(inner, outer, 1)]
    for r in ranges:
        skip = sorted({k for k in (inner - r.inner, outer - r.outer) if 0 <= k < r.count})
        start = 0
        for k in [*skip, r.count]:
            if k > start:
                result.append(IdRange(r.inner + start, r.outer + start, k - start))
            start = k + 1
    return result


# The helpers forked before unshare(2) ------------------------------------------------

def fork_helper(work) -> tuple[int, int]:
    """Fork a process that waits for our word, then does WORK() and exits 0.

    Returns (its pid, the pipe to give the word on).  It runs in the
    namespaces we had before unshare(2): there it may mount and write maps.
    """
    r, w = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        code = 1
        try:
            if os.read(r, 1) == b"g":
                work()
                code = 0
        except OSError as e:
            from .output import error
            error(str(e))
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(r)
    return pid, w


def let_helper_go(pid: int, w: int) -> None:
    """Give the helper its word and wait; its failure is ours (exit with its status)."""
    os.write(w, b"g")
    os.close(w)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(code if code > 0 else 1)


def bind_namespace_files(pid: int, persist: dict[str, str]) -> None:
    """mount --bind /proc/PID/ns/TYPE FILE for each FILE asked for (as ip netns add does)."""
    for nstype in ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt", "time"):
        if nstype in persist:
            syscalls.mount(f"/proc/{pid}/ns/{PERSIST_FILE[nstype]}", persist[nstype], None,
                           syscalls.MS_BIND)


def write_id_maps(pid: int, uids: list[IdRange], gids: list[IdRange]) -> None:
    """Write PID's maps from outside its user namespace: as root ourselves, else by the setuid helpers."""
    for ranges, which, helper in ((uids, "uid_map", "newuidmap"), (gids, "gid_map", "newgidmap")):
        if not ranges:
            continue
        if os.geteuid() == 0:
            write = user.write_uid_map if which == "uid_map" else user.write_gid_map
            write(pid, _lines(ranges))
            continue
        child = os.fork()
        if child == 0:  # newuidmap PID INNER OUTER COUNT ...
            try:
                os.execvp(helper, [helper, str(pid), *(str(x) for r in ranges for x in
                                                       (r.inner, r.outer, r.count))])
            except OSError as e:
                print(f"labkit: failed to execute {helper}: {e.strerror}", file=sys.stderr)
            os._exit(127)
        _, status = os.waitpid(child, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def _lines(ranges: list[IdRange]) -> str:
    return "".join(f"{r}\n" for r in ranges)


# Ending as the child ended -----------------------------------------------------------

def exit_as(status: int) -> None:
    """Exit with the wait STATUS of our child: its exit code, or death by its signal.

    A shell that waits for us sees what it would have seen of the child:
    ``unshare -f sh -c 'kill -TERM $$'`` dies of SIGTERM, not "exit 143".
    """
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the child dumped core already
        if sig != signal.SIGKILL:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
    raise SystemExit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


# Credentials and the program ----------------------------------------------------------

def set_credentials(uid: int | None, gid: int | None, groups_dropped: bool = False) -> None:
    """-S, -G: drop the supplementary groups, then setgid, then setuid (the order matters:
    after setuid we could no longer change our group).

    GROUPS_DROPPED: nsenter dropped them already, before setns(2); a user
    namespace with setgroups "deny" then refuses the second setgroups(2).
    """
    call = "setgroups"
    try:
        if gid is not None:
            try:
                os.setgroups([])
            except PermissionError:
                if not groups_dropped:
                    raise
            call = "setgid"
            os.setgid(gid)
        if uid is not None:
            call = "setuid"
            os.setuid(uid)
    except OSError as e:
        raise error_for(call, e.errno, detail=str(uid if call == "setuid" else gid)) from None


def keep_capabilities() -> None:
    """--keep-caps: raise every permitted capability into the ambient set.

    execve(2) of a program without file capabilities clears the permitted
    set of a process that is not root by uid; ambient capabilities
    (Linux 4.3) survive it, if they are also inheritable (capabilities(7)).
    """
    import ctypes

    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # two of {effective, permitted, inheritable}
    syscalls.call_libc("capget", header, data)
    data[2], data[5] = data[1], data[4]  # inheritable = permitted
    syscalls.call_libc("capset", header, data)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    permitted = data[1] | data[4] << 32
    for cap in range(last + 1):
        if permitted >> cap & 1:
            syscalls.call_libc("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0)


def exec_program(command: list[str]) -> None:
    """execvp(3) COMMAND, or $SHELL as a login shell ("-bash") as util-linux's exec_shell does.

    Exits 127 if it is not found and 126 if it cannot run, as a shell does.
    """
    syscalls.restore_default_signals()  # Python ignores SIGPIPE; a program expects it
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if command:
        path, argv = command[0], command
    else:
        path = os.environ.get("SHELL") or "/bin/sh"
        argv = ["-" + os.path.basename(path)]
    sys.stdout.flush()
    try:
        os.execvp(path, argv)
    except OSError as e:
        from .output import error
        error(f"failed to execute {path}: {e.strerror}")
        raise SystemExit(127 if e.errno == errno.ENOENT else 126) from None


# unshare(1) ------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    """labkit run ARGV: never returns on success (it becomes the program)."""
    if any(name == "help" for name, _ in parse(argv, TABLE)[0]):
        print(help_text(USAGE, ABOUT, (("Namespaces (with =<file>: bind-mount it there)", NAMESPACES),
                                       ("User and group ids", MAPPING), ("Process", PROCESS),
                                       ("labkit's own", LABKIT_ONLY), ("", HELP)), DIFFERENCES),
              end="")
        return 0
    s = read_command_line(argv)
    euid, egid = os.geteuid(), os.getegid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    # 1. Helpers that must stay behind in our present namespaces.
    binder = None
    if s.persist and s.flags & (NEWNS | NEWUSER):
        parent = os.getpid()
        binder = fork_helper(lambda: bind_namespace_files(parent, s.persist))
    uids, gids = s.user_ranges, s.group_ranges
    if uids and s.map_user is not None:
        uids, s.map_user = with_single_id(uids, s.map_user, euid), None
    if gids and s.map_group is not None:
        gids, s.map_group = with_single_id(gids, s.map_group, egid), None
    mapper = None
    if uids or gids:
        parent = os.getpid()
        mapper = fork_helper(lambda: write_id_maps(parent, uids, gids))

    # 2. The system call.
    syscalls.unshare(s.flags)
    if mapper:
        let_helper_go(*mapper)

    # 3. Time offsets, before the first process enters the new time namespace.
    if s.offsets:
        timens.write_offsets("self", s.offsets)

    # 4. -f: the child goes on; we wait for it and end as it ends.
    child = 0
    if s.fork:
        child = fork_and_wait(s, binder)
    if s.persist and (child or not s.fork):
        if binder:
            let_helper_go(*binder)
        else:
            bind_namespace_files(os.getpid(), s.persist)
    if child:
        _, status = os.waitpid(child, 0)
        exit_as(status)

    # 5. The rest happens in the process that becomes the program.
    if s.map_user is not None:
        user.write_uid_map("self", f"{s.map_user} {euid} 1")
    if s.map_group is not None:
        if s.setgroups == "allow":
            raise ValueError("options --setgroups=allow and --map-group are mutually exclusive")
        _setgroups("deny")  # the Linux 3.19 rule: before an unprivileged gid_map
        user.write_gid_map("self", f"{s.map_group} {egid} 1")
    if s.setgroups:
        _setgroups(s.setgroups)
    if s.flags & NEWNS and s.propagation:
        syscalls.mount("none", "/", None, s.propagation)
    if s.root:
        os.chroot(s.root)
        s.wd = s.wd or "/"
    if s.wd:
        os.chdir(s.wd)
    if s.mount_proc:
        mount_proc(s.mount_proc, private_first=not s.root and s.propagation != PROPAGATION["private"])
    if s.hostname is not None:
        syscalls.sethostname(s.hostname)
    if s.domainname is not None:
        syscalls.setdomainname(s.domainname)
    set_credentials(s.uid, s.gid)
    if s.keep_caps and s.flags & NEWUSER:
        keep_capabilities()
    exec_program(s.command)
    return 1


def fork_and_wait(s: Settings, binder) -> int:
    """fork(2) for -f: return the child's pid in the parent, 0 in the child.

    The parent blocks SIGINT and SIGTERM, as unshare(1) does (the "impatient
    parent": a ^C reaches the child through the terminal, and the parent
    then dies of it with the child); with --forward-signals it passes them on.
    """
    watched = (signal.SIGINT, signal.SIGTERM)
    if not s.forward_signals:
        signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    parent_fd = os.pidfd_open(os.getpid()) if s.kill_child else -1
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
        if binder:
            os.close(binder[1])
        if parent_fd >= 0:
            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, s.kill_child)
            if select.select([parent_fd], [], [], 0)[0]:
                os._exit(1)  # the parent is gone already: nobody wants our exit status
            os.close(parent_fd)
        return 0
    if s.forward_signals:
        for sig in watched:
            signal.signal(sig, lambda n, _frame: os.kill(pid, n))
    return pid


def _setgroups(word: str) -> None:
    """Write /proc/self/setgroups; a kernel without the file (before 3.19) needs nothing."""
    try:
        write_once("/proc/self/setgroups", word)
    except FileNotFoundError:
        pass
    except OSError as e:
        hint = user.MAP_RULES["setgroups-late"] if e.errno == errno.EPERM else ""
        raise NamespaceError(e.errno, f"write /proc/self/setgroups {word!r}", hint) from None


def mount_proc(target: str, private_first: bool) -> None:
    """--mount-proc: a proc for our PID namespace at TARGET.

    With another --propagation than private, TARGET is made private first,
    so that the new proc does not propagate back to the caller's namespace.
    """
    from .pid import mount_fresh_proc  # its error says what a rootless mount of proc needs

    if private_first:
        try:
            syscalls.mount("none", target, None, syscalls.MS_PRIVATE | syscalls.MS_REC)
        except OSError as e:
            if e.errno != errno.EINVAL:  # nothing mounted there: nothing to make private
                raise
    mount_fresh_proc(target)


__all__ = ["main", "read_command_line", "UsageError"]
