"""Independent tools the tests check labkit against, called robustly."""

from __future__ import annotations

import subprocess
from collections.abc import Callable


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def lsns(*args: str, run: Callable[[list[str]], subprocess.CompletedProcess] = _run,
         check: bool = False) -> subprocess.CompletedProcess:
    """lsns(8) ARGS, asked again when it stumbles.

    lsns 2.38 exits 1, silently, when a process vanishes while it reads /proc,
    which happens on a machine where other tests start and end processes.
    RUN lets a test run it as another user (conftest's unprivileged.run).
    """
    for _ in range(5):
        r = run(["lsns", *args])
        if r.returncode == 0 or r.stderr:
            break
    if check:
        r.check_returncode()
    return r
