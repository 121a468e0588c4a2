"""``labkit enter``: nsenter(1), step by step, in Python.

nsenter(1) opens the namespace files it is given (``--uts=FILE``) or those
of a target process (``-t PID -u`` is /proc/PID/ns/uts), joins them with
setns(2), and execs the program::

    labkit enter -t PID -u hostname            # PID's hostname
    labkit enter --net=/run/netns/blue ip a    # a namespace kept by ip netns add
    labkit enter -t PID -a sh                  # every namespace of PID

The steps of main(), in nsenter's order:

    open every file first      once we are in another mount or user namespace,
                               /proc/PID/ns may show something else, or refuse us
    setns(2), two passes       everything but the user namespace, errors ignored;
                               then what is left, the user namespace first: its
                               capabilities let us join what it owns (JOIN_ORDER)
    fchdir, chroot, chdir      -r (PID's root), -w (PID's cwd), -W (a dir inside)
    fork()                     a joined PID namespace holds our *children* only,
                               so nsenter forks (unless -F) and waits, and ends
                               as its child ends
    setgroups, setgid, setuid  -S, -G; 0 and 0 by default with -U, unless
                               --preserve-credentials
    execvp(program)            or $SHELL as a login shell

labkit.join is the library's way (it never changes the caller); this is
the command line tool's, which may change itself before it execs.

See nsenter(1), setns(2), pid_namespaces(7), user_namespaces(7).
"""

from __future__ import annotations

import os
import signal

from . import syscalls
from .listing import socket_netns
from .namespace import proc_file_error
from .nstypes import BY_NAME
from .options import NONE, OPTIONAL, REQUIRED, Option, help_text, parse
from .unshare import exec_program, exit_as, keep_capabilities, set_credentials

# nsenter(1)'s options: (short, long, argument, metavar, its --help, what it maps to).
NAMESPACES = (
    Option("m", "mount", OPTIONAL, "<file>", "enter mount namespace", "setns(CLONE_NEWNS)"),
    Option("u", "uts", OPTIONAL, "<file>", "enter UTS namespace (hostname etc)", "setns(CLONE_NEWUTS)"),
    Option("i", "ipc", OPTIONAL, "<file>", "enter System V IPC namespace", "setns(CLONE_NEWIPC)"),
    Option("n", "net", OPTIONAL, "<file>", "enter network namespace", "setns(CLONE_NEWNET)"),
    Option("p", "pid", OPTIONAL, "<file>", "enter pid namespace", "setns(CLONE_NEWPID)"),
    Option("C", "cgroup", OPTIONAL, "<file>", "enter cgroup namespace", "setns(CLONE_NEWCGROUP)"),
    Option("U", "user", OPTIONAL, "<file>", "enter user namespace", "setns(CLONE_NEWUSER)"),
    Option("T", "time", OPTIONAL, "<file>", "enter time namespace", "setns(CLONE_NEWTIME)"),
)
OPTION_TYPE = {"mount": "mnt", "uts": "uts", "ipc": "ipc", "net": "net", "pid": "pid",
               "cgroup": "cgroup", "user": "user", "time": "time"}
OTHERS = (
    Option("a", "all", NONE, "", "enter all namespaces", "/proc/PID/ns/*"),
    Option("t", "target", REQUIRED, "<pid>", "target process to get namespaces from", "/proc/PID/ns/TYPE"),
    Option("N", "net-socket", REQUIRED, "<fd>", "enter socket's network namespace (needs --target)",
           "pidfd_getfd(2), ioctl SIOCGSKNS"),
    Option("S", "setuid", REQUIRED, "<uid>", "set uid in entered namespace (or 'follow')", "setuid(2)"),
    Option("G", "setgid", REQUIRED, "<gid>", "set gid in entered namespace (or 'follow')",
           "setgroups(2), setgid(2)"),
    Option("", "preserve-credentials", NONE, "", "do not touch uids or gids"),
    Option("", "keep-caps", NONE, "", "retain capabilities granted in user namespaces",
           "capset(2), PR_CAP_AMBIENT"),
    Option("r", "root", OPTIONAL, "<dir>", "set the root directory", "chroot(2) to /proc/PID/root"),
    Option("w", "wd", OPTIONAL, "<dir>", "set the working directory", "fchdir(2) to /proc/PID/cwd"),
    Option("W", "wdns", REQUIRED, "<dir>", "set the working directory in namespace", "chdir(2) after setns"),
    Option("e", "env", NONE, "", "inherit environment variables from target process", "/proc/PID/environ"),
    Option("F", "no-fork", NONE, "", "do not fork before exec'ing <program>", "fork(2)"),
    Option("h", "help", NONE, "", "display this help"),
)
TABLE = NAMESPACES + OTHERS

# The user namespace first or last, the mount namespace late (nsenter.c's table).
JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt", "time")

USAGE = "labkit enter [options] [<program> [<argument>...]]"
ABOUT = ("Run a program with namespaces of other processes, as nsenter(1) does: same options,\n"
         "same steps, same exit status (options end at <program>; `--` is optional).")
DIFFERENCES = """\
Where labkit differs from nsenter(1) 2.38, on purpose:
 * -a enters the namespaces of PID that are not ours already (nsenter also "enters"
   the ones we share, which needs privilege over them: it fails rootless);
 * in a user namespace whose setgroups is "deny", -U leaves the supplementary groups
   alone (nsenter fails: "setgroups failed"); uid and gid are set as nsenter sets them;
 * without -t, a first argument that is a number is the target PID, and options may
   follow it (`labkit enter PID -u hostname`, labkit's older spelling);
 * -e/--env, -N/--net-socket and --keep-caps come from util-linux 2.40;
 * not supported: -Z/--follow-context (SELinux: this kit's machines run without it),
   -c/--join-cgroup, --user-parent, =:<nsid> (util-linux 2.40+), -V/--version.

For more details see nsenter(1)."""


def main(argv: list[str]) -> int:
    """labkit enter ARGV: never returns on success (it becomes the program)."""
    found, rest = parse(argv, TABLE)
    found = [_without_equals(name, value) for name, value in found]
    targets = [value for name, value in found if name == "target"]
    if not targets and rest and rest[0].isdigit() and _ended_by_program(argv, rest):
        targets = [rest[0]]  # labkit's own spelling: labkit enter PID [options] [program]
        more, rest = parse(rest[1:], TABLE)
        found += [_without_equals(name, value) for name, value in more]
    names = [name for name, _ in found]
    if "help" in names:
        print(help_text(USAGE, ABOUT, (("Namespaces (with =<file>: that namespace file)", NAMESPACES),
                                       ("Options", OTHERS)), DIFFERENCES), end="")
        return 0
    if len(targets) > 1:
        raise ValueError("option --target may be given only once")
    pid = _pid(targets[0]) if targets else None

    # 1. Which namespaces, from which files: every file is opened before the first setns.
    wanted: dict[str, str | None] = {}  # type -> file, or None for /proc/PID/ns/TYPE
    for name, value in found:
        if name in OPTION_TYPE:
            wanted[OPTION_TYPE[name]] = value
    if "all" in names:
        if pid is None:
            raise ValueError("no target PID specified for --all")
        for nstype in JOIN_ORDER:
            if nstype not in wanted and _differs(pid, nstype):
                wanted[nstype] = None
    fds = {nstype: _open(pid, f"ns/{nstype}", path) for nstype, path in wanted.items()}
    for name, value in found:
        if name == "net-socket":  # util-linux 2.40: the namespace a socket of PID was made in
            if pid is None:
                raise ValueError("no target PID specified for --net-socket")
            if "net" in fds:
                os.close(fds["net"])
            fds["net"] = socket_netns(pid, _number(value, "file descriptor"))
    fds = dict(sorted(fds.items(), key=lambda item: JOIN_ORDER.index(item[0])))
    root_fd = wd_fd = -1
    wdns = None
    environ = None
    uid = gid = None
    preserve = "preserve-credentials" in names
    groups_dropped = False
    for name, value in found:
        if name == "root":
            root_fd = _open(pid, "root", value)
        elif name == "wd":
            wd_fd = _open(pid, "cwd", value)
        elif name == "wdns":
            wdns = value
        elif name == "env":
            environ = _read_environ(pid)
        elif name in ("setuid", "setgid"):
            number = _follow(pid, name) if value == "follow" else _number(value, name[3:])
            uid, gid = (number, gid) if name == "setuid" else (uid, number)
    if wd_fd >= 0 and wdns is not None:
        raise ValueError("--wd and --wdns are mutually exclusive")
    fork = "pid" in fds and "no-fork" not in names
    if "user" in fds and not preserve:
        uid = 0 if uid is None else uid  # nsenter -U becomes root in the user namespace
        gid = 0 if gid is None else gid
        try:
            os.setgroups([])  # now while we may; again after setns below
            groups_dropped = True
        except OSError:
            pass

    # 2. setns(2) in two passes.
    join_in_two_passes(fds)

    # 3. Root and working directory.
    if root_fd >= 0 and wd_fd < 0 and wdns is None:
        wd_fd = os.open(".", os.O_RDONLY | os.O_CLOEXEC)  # keep our directory, under the new root
    if root_fd >= 0:
        os.fchdir(root_fd)
        os.chroot(".")
        os.chdir("/")
        os.close(root_fd)
    if wdns is not None:
        wd_fd = os.open(wdns, os.O_RDONLY | os.O_CLOEXEC)
    if wd_fd >= 0:
        os.fchdir(wd_fd)
        os.close(wd_fd)
    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)

    # 4. Into the joined PID namespace: our child is.
    if fork:
        continue_as_child()

    # 5. Credentials, capabilities, the program.
    if "user" in fds and _setgroups_denied():
        groups_dropped = True  # setgroups(2) is refused here for good: nothing to drop
    set_credentials(uid, gid, groups_dropped)
    if "keep-caps" in names and "user" in fds:
        keep_capabilities()
    exec_program(rest)
    return 1


def _without_equals(name: str, value: str | None) -> tuple[str, str | None]:
    """-u=FILE, -w=DIR: nsenter drops the "=" that a short option keeps (getopt gives "=FILE")."""
    if value and value.startswith("=") and (name in OPTION_TYPE or name in ("wd", "wdns")):
        value = value[1:]
    return name, value


def _ended_by_program(argv: list[str], rest: list[str]) -> bool:
    """Did the options end at REST's first word itself (not at a `--` before it)?"""
    return len(argv) == len(rest) or argv[len(argv) - len(rest) - 1] != "--"


def _pid(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise ValueError(f"failed to parse pid: '{text}'")
    return int(text)


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"failed to parse {what}: '{text}'")
    return int(text)


def _differs(pid: int, nstype: str) -> bool:
    """--all's test: our kernel has the type, and PID's namespace of it is not ours.

    nsenter(1) joins the ones we share too (all but the user namespace:
    setns(2) into one's own is EINVAL), which needs privilege over them.
    """
    try:
        mine = os.stat(f"/proc/self/ns/{nstype}").st_ino
    except FileNotFoundError:
        return False
    try:
        return os.stat(f"/proc/{pid}/ns/{nstype}").st_ino != mine
    except OSError as e:
        raise proc_file_error(pid, f"/proc/{pid}/ns/{nstype}", e, "stat") from None


def _open(pid: int | None, what: str, path: str | None) -> int:
    """Open PATH, or /proc/PID/WHAT when no path is given (nsenter's open_target_fd)."""
    if path is None:
        if pid is None:
            raise ValueError(f"neither filename nor target pid supplied for {what}")
        path = f"/proc/{pid}/{what}"
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        if pid is not None and path.startswith(f"/proc/{pid}/"):
            raise proc_file_error(pid, path, e) from None
        raise


def _read_environ(pid: int | None) -> dict[str, str]:
    fd = _open(pid, "environ", None)
    with os.fdopen(fd, "rb") as f:
        entries = f.read().split(b"\0")
    return dict(e.decode(errors="surrogateescape").partition("=")[::2] for e in entries if b"=" in e)


def _follow(pid: int | None, name: str) -> int:
    """-S follow, -G follow: the owner of /proc/PID."""
    st = os.fstat(fd := _open(pid, "", None))
    os.close(fd)
    return st.st_uid if name == "setuid" else st.st_gid


def join_in_two_passes(fds: dict[str, int]) -> None:
    """setns() into each of FDS: first all but the user namespace, as far as our
    privilege goes (errors ignored); then the user namespace and the rest, errors
    reported.  A privileged caller so keeps its power until the end; an
    unprivileged one gains, from the user namespace, the power to join the rest.
    """
    left = {}
    for nstype, fd in fds.items():
        try:
            if nstype == "user":
                raise PermissionError
            syscalls.setns(fd, BY_NAME[nstype].flag)
            os.close(fd)
        except OSError:
            left[nstype] = fd
    for nstype, fd in left.items():  # JOIN_ORDER put "user" first
        syscalls.setns(fd, BY_NAME[nstype].flag)
        os.close(fd)


def _setgroups_denied() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "deny"
    except OSError:
        return False


def continue_as_child() -> None:
    """fork(2); the parent waits and ends as the child ends.  Returns in the child.

    A stopped child (^Z) stops us too, so that the shell sees a stopped job,
    and both go on together with SIGCONT.
    """
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    child = os.fork()
    if child == 0:
        return
    while True:
        _, status = os.waitpid(child, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            break
        os.kill(os.getpid(), signal.SIGSTOP)
        os.kill(child, signal.SIGCONT)
    exit_as(status)
