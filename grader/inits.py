"""Watching an init from outside: does it reap, does it pass signals on?

Exercise 4's contract (pid1) is judged again wherever an init of the
solution's stands between the grader and COMMAND (exercise container):

* watch_zombies: the state of every process below the init, read every
  few milliseconds from /proc/PID/stat; a zombie that is the init's to
  reap (not COMMAND's own child) must not live more than one second.
* forward_and_collect: COMMAND (trapping_command, a shell) traps the six
  signals and prints a line for each; the grader sends each to the init's
  PID, never to COMMAND, and collects the lines that come.

See pid_namespaces(7), wait(2), signal(7), proc(5).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable

from labkit import procfs

from . import observe
from .feedback import Fail
from .session import Session, signal_name

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)
ZOMBIE_LIMIT = 1.0  # seconds, exercise 4's contract
REPORT_WAIT = 2.0  # seconds the grader waits for COMMAND's report of a signal before the next


def stat_of(pid: int) -> tuple[str, int] | None:
    """State letter and parent PID of PID, from /proc/PID/stat (None if it is gone)."""
    try:
        fields = procfs.stat_fields(pid)
    except (OSError, ValueError):
        return None
    return fields[0], int(fields[1])


def watch_zombies(init: int, command: int, until: float) -> int | None:
    """A zombie of INIT's that lives more than ZOMBIE_LIMIT seconds, or None.

    A zombie is the init's to reap unless its parent is COMMAND (COMMAND's
    own children are COMMAND's business), or COMMAND is the init itself
    (an exec).  Lifetimes count from the start of the watch, which ends at
    UNTIL, or as soon as no orphan is left, neither running nor a zombie.
    """
    seen: dict[int, float] = {}
    while time.monotonic() < until:
        now, left = time.monotonic(), False
        for pid in observe.descendants(init):
            state = stat_of(pid)
            if pid == command or not state or (state[1] == command and command != init):
                continue
            left = True  # an orphan, running or a zombie
            if state[0] == "Z" and now - seen.setdefault(pid, now) > ZOMBIE_LIMIT:
                return pid
        if not left:
            return None
        time.sleep(0.02)
    return None


def trapping_command(tag: str) -> list[str]:
    """A shell COMMAND that prints "got-SIGNAME-TAG" for each of the six signals, and waits."""
    traps = "".join(f'trap "echo got-{signal_name(s)}-$0" {signal_name(s)[3:]}; ' for s in FORWARDED)
    return ["/bin/sh", "-c", traps + 'echo "ready $0"; while :; do sleep 1 & wait $!; done', tag]


def forward_and_collect(run: Session, init: int, tag: str, order: list[int],
                        expect: Callable | None = None,
                        between: Callable[[int], None] | None = None) -> tuple[set[str], list[str]]:
    """Send the signals of ORDER to INIT, one at a time; return the reports COMMAND printed, and the missing.

    ORDER may name a signal more than once (an init that passes a signal on
    only the first time, or expects them in a fixed order, is caught then).
    After each signal the grader waits for COMMAND's report of it, up to
    REPORT_WAIT seconds, before it sends the next: a correct init forwards in
    milliseconds, and a report that comes late still counts, as long as it
    comes before the end (a signal that could not be sent, the init gone,
    counts as missing).  BETWEEN(i), if given, is called after the I-th
    signal's wait (e.g. to stop and continue COMMAND).  A signal is missing
    when fewer reports of it came than it was sent.  EXPECT is the
    Session.expect to read with (a warden's, for instance).
    """
    expect = expect or run.expect
    wanted = {f"got-{signal_name(s)}-{tag}": s for s in FORWARDED}
    pattern = re.compile("|".join(re.escape(w) for w in wanted))
    counts: Counter[int] = Counter()
    sent: Counter[int] = Counter()

    def read_until(done: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            try:
                expect(pattern, timeout=max(0.1, deadline - time.monotonic()),
                       what="COMMAND's report of a signal")
            except Fail:  # a timeout, or the end: what came is what counts
                return False
            counts[wanted[run.match.group(0)]] += 1
        return done()

    for i, sig in enumerate(order):
        run.transcript.note(f"sends {signal_name(sig)} to the init")
        try:
            os.kill(init, sig)  # as `docker stop` does to a container's PID 1
        except ProcessLookupError:
            break
        sent[sig] += 1
        if not read_until(lambda s=sig: counts[s] >= sent[s], REPORT_WAIT):
            if (stat_of(init) or ('Z',))[0] in 'ZX':  # the init is gone
                break
        if between is not None:
            between(i)
    read_until(lambda: all(counts[s] >= sent[s] for s in sent), 1.0)
    got = {w for w, s in wanted.items() if counts[s]}
    missing = [f"{signal_name(s)} ({counts[s]} of {n} reported)" if counts[s] else signal_name(s)
               for s, n in sorted(Counter(order).items()) if counts[s] < n]
    return got, missing
