"""Exercise 1, ``uts``: your own hostname (EXERCISES.md, section 1).

    solution HOSTNAME [COMMAND [ARG...]]

    Run COMMAND (default: an interactive /bin/sh) in a new UTS namespace
    whose hostname is HOSTNAME. The hostname of the caller's UTS namespace
    is never changed. COMMAND's standard input, output and terminal are the
    caller's. The exit status of solution is COMMAND's exit status.

Every sentence is a check.  "The caller" is the sandbox's PID 1, which
started the solution: its UTS namespace and hostname are read from outside
(/proc/PID/ns/uts, nsenter(1)) while COMMAND is still running, and compared
with COMMAND's, and the kernel reports every call that sets a hostname
(grader/seccomp.py), so that a change put back at once counts too; so is the default shell's, whatever the shell prints.
The caller's hostname is also watched in every run of every check, from
outside, from the start of the run to its end (CallerHostname): a solution
that changes it only in some runs, or only when it sees no seccomp filter,
fails every check whose run it changed.
COMMAND's exit code is drawn by COMMAND itself and its killing signal by
the grader, and the kernel reports how COMMAND really ended
(grader/exits.py): a solution cannot read its status out of COMMAND's
arguments, nor make one up.  Hostnames and words are random on every run.

See uts_namespaces(7), unshare(2), sethostname(2), credentials(7) for the
controlling terminal, and wait(2) for exit statuses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from .. import observe
from ..engine import Exercise, Trial
from ..feedback import Fail
from ..sandbox import Hook, Session
from ..session import START
from ..seccomp import HostnameWatch
from ..status import exit_code_check, signal_status_check

HINT_CALLER = ("the hostname was set before unshare(CLONE_NEWUTS), or in the parent process: only "
               "the process that made the new namespace (or its children) may call sethostname(2)")


class CallerHostname:
    """Exercise WATCH: "The hostname of the caller's UTS namespace is never changed", in every run.

    The caller's (the sandbox's PID 1) hostname is watched from outside from
    the start of the run to the end of the check (grader/observe.py,
    HostnameWatch): a change left in place, or one that lasts more than a
    few milliseconds, fails whichever check the run belongs to, whether or
    not the run has a seccomp filter to see.
    """

    def __init__(self, run: Session) -> None:
        self.expected = run.box.hostname
        # run.uts is None only for a run that was over before the grader got
        # back from starting it: nothing to watch, and nothing held against it.
        self.watch = observe.HostnameWatch(run.uts, self.expected) if run.uts is not None else None

    def verdict(self) -> None:
        seen = self.watch.close() if self.watch else []
        if seen:
            raise Fail("the hostname of the caller's UTS namespace changed during the run",
                       expected=f"the caller's hostname stays {self.expected}, in every run",
                       seen=f"the caller's hostname was {', '.join(map(repr, seen))}",
                       hint=HINT_CALLER)

    def close(self) -> None:
        if self.watch:
            self.watch.close()


exercise = Exercise("uts", "your own hostname", watch=CallerHostname)

HINT_EXEC = ("run COMMAND with its arguments as they are, e.g. os.execvp(command[0], command) "
             "after the namespace is set up, or subprocess.run(command) and wait for it")


def sleeping_command(token: str, then: str = 'echo "done $0"') -> list[str]:
    """A COMMAND that sleeps until the grader ends its sleep, then runs THEN.

    Its argument vector holds a random token, so the grader finds its
    process among the sandbox's, however the solution started it.
    """
    return ["/bin/sh", "-c", f"sleep 60; {then}", f"uts-{token}"]


def start_sleeping(trial: Trial, hostname: str, then: str = 'echo "done $0"',
                   hook: Hook | None = None) -> tuple[Session, int]:
    """Start the solution with a sleeping COMMAND; return the run and COMMAND's PID."""
    command = sleeping_command(trial.token(), then)
    run = trial.run(hostname, *command, hook=hook)
    pid = run.require(command, HINT_EXEC)
    return run, pid


def wake(pid: int, timeout: float = 5) -> None:
    """End the sleep of the COMMAND with PID, so that it goes on to its end.

    Only once the child runs sleep(1): between fork and exec it is still a
    copy of the shell, whose SIGINT handler would swallow the signal.
    SIGINT, because a shell reports no other signal's death of a child as
    quietly ("Terminated" would land in the transcript).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sleepers = [c for c in observe.children(pid) if observe.cmdline(c) == ["sleep", "60"]]
        if sleepers:
            for child in sleepers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGINT)
            return
        time.sleep(0.01)


@exercise.check(1, "runs COMMAND")
def runs_command(trial: Trial) -> None:
    """"Run COMMAND (default: an interactive /bin/sh) in a new UTS namespace whose hostname is HOSTNAME."

    COMMAND runs at all: COMMAND is /bin/echo with a random word, which must
    appear on the terminal (the contract makes COMMAND's output the caller's).
    """
    word = f"uts-{trial.token()}"
    run = trial.run(trial.hostname(), "/bin/echo", word)
    run.expect(word, timeout=START, what=f"the output of COMMAND '/bin/echo {word}'", hint=HINT_EXEC)


@exercise.check(1, "passes COMMAND's arguments unchanged", needs=[runs_command])
def arguments_unchanged(trial: Trial) -> None:
    """"solution HOSTNAME [COMMAND [ARG...]]"

    Each ARG reaches COMMAND as it is: printf(1) prints random words, one
    with a space, "*", an empty word and one starting with "-", each in
    brackets, on the terminal.
    """
    words = [trial.token(), f"two {trial.token(4)}", "*", "", f"-{trial.token(3)}"]
    expected = "".join(f"[{w}]" for w in words)
    run = trial.run(trial.hostname(), "/usr/bin/printf", "[%s]", *words)
    run.expect(expected, timeout=START, what=f"printf's output {expected!r}",
               hint="pass every ARG as its own argument, without a shell in between and without "
                    "parsing options after COMMAND: spaces, '*', an empty word and a leading '-' "
                    "must all arrive unchanged")


@exercise.check(2, "COMMAND runs in a new UTS namespace", needs=[runs_command])
def new_uts_namespace(trial: Trial) -> None:
    """"Run COMMAND ... in a new UTS namespace"

    COMMAND (a shell that sleeps, found by its random argument vector) has
    another /proc/PID/ns/uts than the caller (the sandbox's PID 1), read
    from outside while it runs.
    """
    run, pid = start_sleeping(trial, trial.hostname())
    inside, outside = observe.namespace(pid, "uts"), observe.namespace(run.init_pid, "uts")
    if inside == outside:
        raise Fail("COMMAND runs in the caller's UTS namespace",
                   expected=f"a UTS namespace other than the caller's {outside}",
                   seen=f"/proc/PID/ns/uts of COMMAND is {inside}",
                   hint="call unshare(CLONE_NEWUTS) (unshare(2)) in the process that then runs "
                        "COMMAND, before setting the hostname (uts_namespaces(7))")


@exercise.check(2, "the hostname in COMMAND's namespace is HOSTNAME", needs=[runs_command])
def hostname_is_set(trial: Trial) -> None:
    """"... in a new UTS namespace whose hostname is HOSTNAME."

    The hostname of COMMAND's UTS namespace, read from outside by
    nsenter --uts hostname while COMMAND runs, is the random HOSTNAME.
    """
    hostname = trial.hostname()
    _, pid = start_sleeping(trial, hostname)
    seen = observe.hostname(pid)
    if seen != hostname:
        raise Fail("COMMAND's UTS namespace has another hostname", expected=hostname, seen=seen,
                   hint="call sethostname(2) with HOSTNAME (argv[1]) after unshare(CLONE_NEWUTS), "
                        "in the same process, before COMMAND starts (the grading sandbox is a "
                        "user namespace: there, as in any rootless container, "
                        "/proc/sys/kernel/hostname cannot be written)")


@exercise.check(2, "the caller's hostname never changes", needs=[runs_command])
def caller_hostname_unchanged(trial: Trial) -> None:
    """"The hostname of the caller's UTS namespace is never changed."

    Read from outside (nsenter) while COMMAND runs, and every call that sets
    a hostname to another name in the caller's UTS namespace, reported by
    the kernel as it happens (seccomp user notification, grader/seccomp.py),
    so that a change put back at once counts too.  Setting the same name is
    no change.
    """
    # Read now and then, the caller's hostname would not show a change undone at
    # once (set it, unshare, which copies it, put it back): the kernel hands the
    # grader every call that sets a hostname, as it happens (grader/seccomp.py).
    watch = trial.keep(HostnameWatch())
    run, pid = start_sleeping(trial, trial.hostname(), hook=watch.hook)
    caller = observe.namespace(run.init_pid, "uts")
    seen = observe.hostname(run.init_pid)
    wake(pid)
    run.wait()
    watch.close()
    if watch.errors:
        raise RuntimeError(f"the hostname watch failed: {watch.errors[0]!r}")
    hint = HINT_CALLER
    if seen != run.box.hostname:
        raise Fail("the hostname changed outside, in the caller's UTS namespace",
                   expected=f"the caller's hostname stays {run.box.hostname}", seen=seen, hint=hint)
    outside = [c for c in watch.changes if c.namespace == caller and c.name != run.box.hostname]
    if outside:
        change = outside[0]
        raise Fail("the hostname was set in the caller's UTS namespace, even if it was put back "
                   "later", expected=f"the caller's hostname stays {run.box.hostname}, untouched",
                   seen=f"{change.call}({change.name!r}) by {change.command or 'a process'} "
                        "in the caller's UTS namespace", hint=hint)


@exercise.check(2, "COMMAND's input, output and terminal are the caller's", needs=[runs_command])
def stdio_is_callers_terminal(trial: Trial) -> None:
    """"COMMAND's standard input, output and terminal are the caller's."

    COMMAND's descriptors 0 and 1 are the grader's pty (/proc/PID/fd);
    a line typed on the terminal reaches COMMAND, whose answer comes back;
    its controlling terminal (tty_nr of /proc/PID/stat) is the pty.
    """
    run, pid = start_sleeping(trial, trial.hostname(), then='read reply; echo "got $reply"')
    fds = {fd: observe.fd_device(pid, fd) for fd in (0, 1)}  # the contract: input and output
    seen = ", ".join(f"{fd}: {observe.fd_target(pid, fd)}" for fd in fds)
    tty = observe.controlling_tty(pid)
    if any(device != run.tty for device in fds.values()):
        raise Fail("COMMAND's standard input or output is not the caller's terminal",
                   expected=f"descriptors 0 and 1 on the terminal {run.tty_name}", seen=seen,
                   hint="COMMAND inherits the solution's descriptors 0, 1 and 2: do not "
                        "redirect them, capture the output (pipes) or close the input")
    wake(pid)
    word = trial.token()
    run.sendline(word)
    run.expect(f"got {word}", what=f"COMMAND to read the line '{word}' typed on the terminal "
               f"and answer 'got {word}'")
    run.wait()
    if tty != run.tty:
        raise Fail("COMMAND's controlling terminal is not the caller's", points=1,
                   expected=f"controlling terminal {run.tty_name}", seen=_tty(tty),
                   hint="do not call setsid(2) (a new session has no controlling terminal), "
                        "or make the terminal controlling again with ioctl(TIOCSCTTY)")


@exercise.check(2, "the default COMMAND is an interactive /bin/sh on the caller's terminal")
def default_shell(trial: Trial) -> None:
    """"Run COMMAND (default: an interactive /bin/sh) in a new UTS namespace whose hostname is HOSTNAME."

    With no COMMAND: a line typed on the terminal is answered by an
    interactive shell ($- holds i); the process is /bin/sh itself
    (/proc/PID/exe), in a new UTS namespace named HOSTNAME (read from
    outside); after "exit N" the solution's status is N.
    """
    hostname = trial.hostname()
    a, b, code = trial.number(100, 999), trial.number(100, 999), trial.number(3, 99)
    run = trial.run(hostname)
    run.sendline(f'case $- in *i*) echo "I{a}+{b}=$(({a}+{b}))";; *) echo "NI{a}+{b}=$(({a}+{b}))";; esac')
    interactive = run.expect(f"I{a}+{b}={a + b}", f"NI{a}+{b}={a + b}", timeout=START,
                             what="a shell's answer to a command typed on the terminal",
                             hint="with no COMMAND, run /bin/sh, with the terminal as its input") == 0
    if not interactive:
        raise Fail("the shell is not interactive ($- has no 'i')", points=1,
                   hint="/bin/sh is interactive when its standard input and error are a terminal: "
                        "let it inherit the caller's")
    # The shell's namespace and hostname are read from outside, as for any COMMAND:
    # what the shell itself prints (cat /proc/sys/kernel/hostname) could be anything.
    shells = [p for p in observe.descendants(run.init_pid) if is_plain_sh(p)]
    where = shells[-1] if shells else None
    namespace, seen = (observe.namespace(where, "uts"), observe.hostname(where)) if where else (None, None)
    run.sendline(f"exit {code}")
    ended = run.wait()
    if where is None:
        raise Fail("the default COMMAND is a shell, but not /bin/sh", points=1,
                   hint="run /bin/sh (the contract names it) when no COMMAND is given")
    if namespace == observe.namespace(run.init_pid, "uts") or seen != hostname:
        caller = "the caller's UTS namespace" if namespace == observe.namespace(run.init_pid, "uts") \
            else f"a UTS namespace named {seen!r}"
        raise Fail("the default shell does not run in a new UTS namespace named HOSTNAME", points=1,
                   expected=f"/bin/sh in a new UTS namespace with the hostname {hostname}",
                   seen=f"/bin/sh in {caller}",
                   hint="set up the namespace first (unshare, sethostname), then start the shell: "
                        "the default COMMAND is a COMMAND like any other")
    if ended.status != code:
        raise Fail("after 'exit N' in the shell, the solution's exit status is not N", points=1,
                   expected=f"exit status {code}", seen=str(ended),
                   hint="the solution's exit status is COMMAND's, for the default shell too")


def is_plain_sh(pid: int) -> bool:
    """Is PID running /bin/sh itself, with no script to run ("sh", "/bin/sh", "-sh -i")?"""
    argv = observe.cmdline(pid)
    return (observe.exe(pid) == os.path.realpath("/bin/sh") and bool(argv)
            and all(a.startswith("-") for a in argv[1:]))


@exercise.check(2, "the exit status is COMMAND's", needs=[runs_command])
def exit_status(trial: Trial) -> None:
    """"The exit status of solution is COMMAND's exit status."

    grader/status.py: COMMAND exits with a code it draws itself; the kernel
    reports how it ended; the solution's status must be that code.
    """
    exit_code_check(trial, lambda command: trial.run(trial.hostname(), *command))


@exercise.check(1, "killed by signal N, COMMAND gives exit status 128+N", needs=[runs_command])
def signal_status(trial: Trial) -> None:
    """"or 128+N if COMMAND was killed by signal N (as a shell reports it; a solution that execs COMMAND and so dies by the same signal meets this too)."

    grader/status.py: the grader kills COMMAND with a usual signal, then a
    rarer one; the solution's status must be 128+N, or death by N.
    """
    signal_status_check(trial, lambda command: trial.run(trial.hostname(), *command))


def _tty(device: int | None) -> str:
    if not device:
        return "none"
    return f"device {os.major(device)}:{os.minor(device)}"
