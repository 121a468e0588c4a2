"""A COMMAND that pauses until the grader lets it go on, without a terminal.

Checks that look at COMMAND while it runs give it a shell that says it is
ready and then reads a line from a FIFO (fifo(7)): ``read go < FIFO``.  The
grader writes that line from outside when it has looked.  Nothing is typed
on COMMAND's terminal, so a solution that gives COMMAND no standard input,
or runs it in a process group of its own (where a read of the terminal
would stop it with SIGTTIN), is held the same way as any other: the
contracts say nothing of COMMAND's standard input unless they say so.

A shell's read(2) of a FIFO waits for no child (a shell waiting for a child
reaps every child it has, which would hide an init's missing reaping).

    pause(path)          the shell words that pause on the FIFO PATH
    go_on(candidates)    write the line into the one FIFO that has a reader

See fifo(7), open(2) (O_NONBLOCK on a FIFO: ENXIO while nobody reads).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable


def pause(path: str) -> str:
    """Shell words that wait for a line on the FIFO PATH."""
    return f"read go < {path}"


def go_on(candidates: Callable[[], Iterable[str]], timeout: float = 5) -> bool:
    """Write a line into the FIFO, among CANDIDATES() (paths as the grader reaches them), that has a reader.

    A FIFO that nobody reads refuses a writer that does not wait (ENXIO),
    so only the FIFO that COMMAND is reading now gets the line.  False if
    none had a reader within TIMEOUT seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in candidates():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                with contextlib.suppress(OSError):
                    os.write(fd, b"go\n")
                return True
            finally:
                os.close(fd)
        time.sleep(0.02)
    return False
