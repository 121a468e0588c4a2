"""The labkit command: namespaces from the shell, in util-linux's manner.

    labkit check                      what this kernel and machine can do
    labkit ls [lsns options]          every namespace, as lsns(8) lists them
    labkit run [unshare options] CMD  CMD in new namespaces, as unshare(1)
    labkit enter [nsenter options] CMD  CMD in PID's namespaces, as nsenter(1)
    labkit container ROOTFS -- CMD    CMD in a small container (labkit.container)
    labkit demo LESSON [--auto]       play a lesson in tmux panes, for a talk
    labkit flags MASK                 0x04000000 -> CLONE_NEWUTS, and back

run, enter and ls read util-linux's command lines with util-linux's own
parser (labkit.options, getopt_long's rules), in labkit.unshare,
labkit.nsenter and labkit.listing; the other subcommands use argparse.
Modules are imported by the subcommand that needs them, so that the command
starts about as fast as Python itself.  Errors print one clear message and
exit non-zero; they never print a traceback.
"""

from __future__ import annotations

import functools
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at every start
if TYPE_CHECKING:  # argparse itself is imported where it is used: run, enter and ls never need it
    import argparse

EXIT_USAGE = 2

# The subcommands that are util-linux tools, each with its own module and parser.
TOOLS = {"run": ("unshare", "run a command in new namespaces (like unshare)"),
         "enter": ("nsenter", "run a command in other processes' namespaces (like nsenter)"),
         "ls": ("listing", "list namespaces (like lsns)")}


def _formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's help formatter, told the terminal's width.

    Left to find the width itself, HelpFormatter imports shutil (and with it
    bz2 and lzma) at the first add_argument(): milliseconds at every start.
    """
    import argparse

    try:
        width = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size().columns
    except (ValueError, OSError):
        width = 80
    return argparse.HelpFormatter(prog, width=width - 2)


def build_parser() -> argparse.ArgumentParser:
    """labkit's own subcommands (argparse is imported here: run, enter and ls never need it)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="labkit", description="A Linux namespaces lab kit.",
        epilog="See `labkit COMMAND --help`, and namespaces(7).", formatter_class=_formatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=functools.partial(
        argparse.ArgumentParser, formatter_class=_formatter))

    sub.add_parser("check", help="what this machine supports (like lxc-checkconfig)",
                   description="Check each namespace type, rootless mode, limits, cgroups and tools.")

    for name, (_, summary) in TOOLS.items():  # listed here, parsed by their own modules
        sub.add_parser(name, help=summary, add_help=False)

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
    from .demo_args import add_demo_arguments
    add_demo_arguments(p)

    p = sub.add_parser("flags", help="decode or encode a CLONE_NEW* mask",
                       description="Decode a mask as seen in strace (0x04020000) or encode names (mnt,uts).")
    p.add_argument("mask", metavar="MASK", help="a number (0x4000000, 67108864) or names (CLONE_NEWUTS|mnt)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in TOOLS:
        return run_tool(argv[0], argv[1:])
    parser = build_parser()
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
    return _report(lambda: COMMANDS[args.command](args))


def run_tool(name: str, argv: list[str]) -> int:
    """labkit run/enter/ls: util-linux's tool in labkit's module; usage errors as util-linux words them."""
    import importlib

    from .options import UsageError

    module = importlib.import_module(f".{TOOLS[name][0]}", __package__)

    def call() -> int:
        try:
            return module.main(argv)
        except UsageError as e:
            return _fail(f"{e}\nTry 'labkit {name} --help' for more information.")

    return _report(call)


def _report(command) -> int:
    """Run COMMAND(); turn what it raises into a message and an exit status, never a traceback."""
    try:
        code = command()
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


COMMANDS = {"check": cmd_check, "container": cmd_container, "demo": cmd_demo, "flags": cmd_flags}

if __name__ == "__main__":
    raise SystemExit(main())
