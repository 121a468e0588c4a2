"""The labkit command: namespaces from the shell, in util-linux's manner.

    labkit check                      what this kernel and machine can do
    labkit ls [--json] [--tree ...]   every namespace, as lsns(8) lists them
    labkit run [-umpniUCT] -- CMD     CMD in new namespaces, as unshare(1)
    labkit enter PID [-a] -- CMD      CMD in PID's namespaces, as nsenter(1)
    labkit container ROOTFS -- CMD    CMD in a small container (labkit.container)
    labkit demo LESSON [--auto]       play a lesson in tmux panes, for a talk
    labkit flags MASK                 0x04000000 -> CLONE_NEWUTS, and back

Modules are imported by the subcommand that needs them, so that the command
starts about as fast as Python itself.  Errors print one clear message and
exit non-zero; they never print a traceback.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

# (short option, long option, namespace type) in unshare(1)'s spelling.
NS_OPTIONS = (
    ("-m", "--mount", "mnt"), ("-u", "--uts", "uts"), ("-i", "--ipc", "ipc"),
    ("-n", "--net", "net"), ("-p", "--pid", "pid"), ("-U", "--user", "user"),
    ("-C", "--cgroup", "cgroup"), ("-T", "--time", "time"),
)

EXIT_USAGE = 2


def _add_ns_options(p: argparse.ArgumentParser, verb: str) -> None:
    g = p.add_argument_group("namespaces")
    for short, long, name in NS_OPTIONS:
        g.add_argument(short, long, dest=f"ns_{name}", action="store_true",
                       help=f"{verb} the {name} namespace")


def _selected(args: argparse.Namespace) -> list[str]:
    return [name for _, _, name in NS_OPTIONS if getattr(args, f"ns_{name}")]


def _formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's help formatter, told the terminal's width.

    Left to find the width itself, HelpFormatter imports shutil (and with it
    bz2 and lzma) at the first add_argument(): milliseconds at every start.
    """
    try:
        width = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size().columns
    except (ValueError, OSError):
        width = 80
    return argparse.HelpFormatter(prog, width=width - 2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labkit", description="A Linux namespaces lab kit.",
        epilog="See `labkit COMMAND --help`, and namespaces(7).", formatter_class=_formatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=functools.partial(
        argparse.ArgumentParser, formatter_class=_formatter))

    sub.add_parser("check", help="what this machine supports (like lxc-checkconfig)",
                   description="Check each namespace type, rootless mode, limits, cgroups and tools.")

    p = sub.add_parser("ls", help="list namespaces (like lsns)",
                       description="List every namespace on the system, as lsns(8) does.")
    p.add_argument("--json", "-J", action="store_true", help="print JSON (the shape of lsns --json)")
    p.add_argument("--tree", "-T", choices=("parent", "owner", "process"),
                   help="show a tree by parent (PID and user namespaces), by owner, or by process")
    p.add_argument("-t", "--type", action="append", dest="types", metavar="TYPE",
                   help="only namespaces of TYPE (repeatable)")

    p = sub.add_parser("run", help="run a command in new namespaces (like unshare)",
                       description="Run COMMAND in new namespaces, as unshare(1) does. "
                       "As a normal user a user namespace mapping you to root is added.")
    _add_ns_options(p, "new")
    p.add_argument("-r", "--map-root", action="store_true",
                   help="map the current user to root in the new user namespace")
    p.add_argument("--mount-proc", action="store_true", help="mount a fresh /proc (implies -m)")
    p.add_argument("--hostname", metavar="NAME", help="hostname of the new UTS namespace")
    p.add_argument("--domainname", metavar="NAME", help="NIS domain name of the new UTS namespace")
    p.add_argument("--propagation", choices=("private", "shared", "slave", "unchanged"),
                   default="private", help="propagation of / in a new mount namespace (default private)")
    p.add_argument("--monotonic", type=float, metavar="SECS", help="CLOCK_MONOTONIC offset (with -T)")
    p.add_argument("--boottime", type=float, metavar="SECS", help="CLOCK_BOOTTIME offset (with -T)")
    p.add_argument("-f", "--fork", action="store_true",
                   help="accepted for unshare(1) compatibility: labkit always forks for -p and -T, "
                   "so that COMMAND is in the new namespace (PID 1)")
    p.add_argument("argv", nargs="*", metavar="COMMAND", help="command and arguments (default: $SHELL)")

    p = sub.add_parser("enter", help="run a command in a process's namespaces (like nsenter)",
                       description="Run COMMAND in the namespaces of process PID, as nsenter(1) does.")
    p.add_argument("pid", type=int, metavar="PID", help="the process whose namespaces to join")
    _add_ns_options(p, "enter")
    p.add_argument("-a", "--all", action="store_true",
                   help="enter every namespace of PID that differs from ours")
    p.add_argument("argv", nargs="*", metavar="COMMAND", help="command and arguments (default: $SHELL)")

    p = sub.add_parser("container", help="run a command in a small container",
                       description="Run COMMAND as a small container: ROOTFS as its root via "
                       "pivot_root, PID 1 init, fresh /proc, own hostname, lo up, own IPC and "
                       "cgroup namespaces; rootless with --user.")
    p.add_argument("rootfs", metavar="ROOTFS", help="root file system directory (e.g. a busybox tree)")
    p.add_argument("--hostname", default="container", help="hostname inside (default: container)")
    p.add_argument("-U", "--user", action="store_true",
                   help="add a user namespace mapping you to root (default when not root)")
    p.add_argument("--veth", metavar="HOST_ADDR,CONTAINER_ADDR",
                   help="wire a veth pair to the host side, e.g. 10.200.1.1/24,10.200.1.2/24")
    p.add_argument("argv", nargs="*", metavar="COMMAND", help="command and arguments (default: /bin/sh)")

    p = sub.add_parser("demo", help="play a lesson's demo in the terminal (tmux panes)",
                       description="Play a lesson for a talk: each step shows its command "
                       "and output and waits for Enter; --auto runs unattended.")
    add_demo_arguments(p)

    p = sub.add_parser("flags", help="decode or encode a CLONE_NEW* mask",
                       description="Decode a mask as seen in strace (0x04020000) or encode names (mnt,uts).")
    p.add_argument("mask", metavar="MASK", help="a number (0x4000000, 67108864) or names (CLONE_NEWUTS|mnt)")
    return parser


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `labkit demo` (labkit.demo plays it; its module loads only then)."""
    p.add_argument("lesson", nargs="?", metavar="LESSON",
                   help="a lesson (uts, overview, 02, 02-uts) or a .demo file; none: list them")
    p.add_argument("--auto", action="store_true", help="go on without waiting for Enter")
    p.add_argument("--delay", type=float, default=1.5, metavar="SECS",
                   help="with --auto: pause after each step (default 1.5)")
    p.add_argument("--socket", metavar="NAME", help="tmux socket name (default: nslab-demo-PID)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    # Everything after "--" is the command, options and all (argparse would
    # otherwise read `sh -c` as an option of ours).
    command = None
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    if command is not None:
        if not hasattr(args, "argv"):
            parser.error(f"'labkit {args.command}' takes no command after --")
        args.argv = args.argv + command
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # now, so that a reader gone away is caught below, not at exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        import signal

        # The reader has gone (labkit check | head -1).  Point stdout at /dev/null
        # so that Python's flush at exit does not complain, and end as a shell tool would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (FileNotFoundError, PermissionError) as e:
        if e.filename is None or args.command not in ("run", "enter"):
            return _fail(e)
        # As a shell and unshare(1) report it: 127 not found, 126 not executable.
        _fail(f"failed to execute {e.filename}: {e.strerror}")
        return 127 if isinstance(e, FileNotFoundError) else 126
    except (OSError, ValueError) as e:
        return _fail(e)


def _fail(e: object) -> int:
    from .output import error
    error(str(e))
    return 1


def cmd_flags(args: argparse.Namespace) -> int:
    from .nstypes import decode_flags, format_flags, parse_mask
    from .output import table

    mask = parse_mask(args.mask)
    print(f"{mask:#010x} = {format_flags(mask)}")
    table(("TYPE", "FLAG", "CONSTANT", "LINUX", "MAN PAGE"),
          [(t.name, f"{t.flag:#010x}", t.constant, t.kernel, t.manpage) for t in decode_flags(mask)])
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .check import report
    from .output import table

    items = report()
    table(("GROUP", "CHECK", "STATUS", "DETAIL"),
          [(i.group, i.name, "ok" if i.ok else ("MISSING" if i.required else "warning"), i.detail)
           for i in items])
    return 0 if all(i.ok for i in items if i.required) else 1


def cmd_container(args: argparse.Namespace) -> int:
    from .container import parse_veth, start

    veth = parse_veth(args.veth) if args.veth else None
    return run_as_shell(lambda: start(args.rootfs, args.argv or ["/bin/sh"],
                                      hostname=args.hostname, user=args.user, veth=veth))


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo_command
    return demo_command(args)


def cmd_ls(args: argparse.Namespace) -> int:
    from .listing import ls_command
    return ls_command(args)


def _command_line(argv: list[str]) -> list[str]:
    return argv or [os.environ.get("SHELL") or "/bin/sh"]


def run_as_shell(start) -> int:
    """Start a child with START() and wait for it as a shell does; 128+N for signal N.

    START is spawn, enter or container.start with their arguments given: it
    returns a labkit.child.Child.

    ^C and ^\\ from the terminal reach the child directly (it is in our
    foreground process group), so we ignore them; other signals sent to us
    are passed on.  They are held back while the child starts, so that none
    arrives before the handler that passes it on.
    """
    import signal  # here, not at the top: its enums cost every start of labkit a millisecond

    from .child import FORWARDED_SIGNALS

    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    try:
        child = start()
        for sig in FORWARDED_SIGNALS:
            if sig in (signal.SIGINT, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_IGN)
            else:
                signal.signal(sig, lambda s, _f: child.kill(s))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    code = child.wait()
    return 128 - code if code < 0 else code


def cmd_run(args: argparse.Namespace) -> int:
    from .spawn import spawn

    namespaces = _selected(args)
    offsets = {k: v for k, v in (("monotonic", args.monotonic), ("boottime", args.boottime)) if v}
    if offsets and "time" not in namespaces:
        raise ValueError("--monotonic and --boottime need a new time namespace: add -T")
    if (args.hostname is not None or args.domainname is not None) and "uts" not in namespaces:
        raise ValueError("--hostname and --domainname need a new UTS namespace: add -u")
    return run_as_shell(lambda: spawn(
        _command_line(args.argv), namespaces, map_root=args.map_root or None,
        hostname=args.hostname, domainname=args.domainname, mount_proc=args.mount_proc,
        propagation=args.propagation, time_offsets=offsets or None))


def cmd_enter(args: argparse.Namespace) -> int:
    from .join import enter

    namespaces = "all" if args.all else _selected(args)
    if not namespaces:
        raise ValueError("say which namespaces to enter (-u, -m, -p, -n, -i, -U, -C, -T) or -a for all")
    return run_as_shell(lambda: enter(args.pid, namespaces, _command_line(args.argv)))


COMMANDS = {"check": cmd_check, "ls": cmd_ls, "run": cmd_run, "enter": cmd_enter,
            "container": cmd_container, "demo": cmd_demo, "flags": cmd_flags}

if __name__ == "__main__":
    raise SystemExit(main())
