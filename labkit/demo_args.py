"""The options of ``labkit demo``, in a module of their own.

labkit.cli lists them in ``labkit --help`` without loading labkit.demo (and
its tmux machinery), and labkit.demo reads its own command line with them
(``python -m labkit.demo``): both import this module, neither the other.
"""

from __future__ import annotations

import argparse


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `labkit demo` (labkit.demo plays it; its module loads only then)."""
    p.add_argument("lesson", nargs="?", metavar="LESSON",
                   help="a lesson (uts, overview, 02, 02-uts) or a .demo file; none: list them")
    p.add_argument("--auto", action="store_true", help="go on without waiting for Enter")
    p.add_argument("--delay", type=float, default=1.5, metavar="SECS",
                   help="with --auto: pause after each step (default 1.5)")
    p.add_argument("--socket", metavar="NAME", help="tmux socket name (default: nslab-demo-PID)")
