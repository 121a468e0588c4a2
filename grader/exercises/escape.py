"""Exercise 2, ``escape``: break out of a chroot jail (EXERCISES.md, section 2).

    solution PATH

    The grader starts solution as root with its root directory changed by
    chroot(2) to a jail directory and its working directory at the jail's
    root (as chroot(8) does). The jail is writable by root and holds
    read-only bind mounts of /usr, /bin, /lib* so that any interpreter
    works, and the solution itself. PATH is an absolute path of a file
    outside the jail. solution must print that file's contents to standard
    output and exit 0.

The grader builds the jail and plants the secret file in the sandbox, at
paths and with contents chosen at random on every run, then starts the
solution chrooted.  The contents are drawn after the sandbox is up and
written from outside (through /proc/PID/root), so that they are in the
file and nowhere else a solution could look: not in the memory of the
sandbox's processes, which are forked copies of the grader.  Besides the output and the exit status it looks at
what the escape did on its way, from outside: the secret file, the jail's
files and the sandbox's mount table must be as they were (a good escape
reads; it does not leave a mess in the jail or mounts behind).  Standard
output is the terminal; standard error goes to a file of the sandbox's, so
that only what reaches standard output counts as printed.

The start is done by a *warden* (below): the sandbox's hook forks, the
child is chrooted and runs the solution, the parent waits for it and stays,
so that the grader can compare the sandbox before and after the solution.
The jail exercise (grader/exercises/jail.py) uses the warden too.

See chroot(2), chroot(8), chdir(2), path_resolution(7) (why ".." stops at
the process's root and nowhere else), mount_namespaces(7), proc(5).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
import time
from collections.abc import Callable

import pexpect

from labkit import mount as mounts
from labkit import syscalls

from .. import observe
from ..engine import Exercise, Trial
from ..feedback import Fail, Timeout
from ..sandbox import EXERCISE_DIR
from ..session import Exit, Session

exercise = Exercise("escape", "break out of a chroot jail")

# Where the sandbox has fresh tmpfs file systems to build jails and hide secrets in.
SCRATCH = ("/tmp", "/run", "/var/tmp", "/dev/shm")
# What the jail holds of the sandbox's root (EXERCISES.md: /usr, /bin, /lib*), and /sbin.
JAILED = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")


# The warden: start the solution, and keep the sandbox for a look afterwards ----------
#
# The sandbox's PID 1 ends as soon as the solution does, and the sandbox
# with it.  A check that compares the sandbox before and after the solution
# needs a process that outlives the solution and holds the sandbox open.
# (The engine's grader/hooks.py starts solutions in other ways too; this is
# the one that also keeps the sandbox, which a shared hook could offer.)

class Warden:
    """Start the solution from a process that waits for it and then stays: the warden.

    The sandbox calls ``hook`` in the solution's process, right before
    execve(2).  The hook does::

        prepare(argv)            build what the solution needs (a jail, a secret)
        "ready"  ----------->    the grader takes its "before" look (Warden.started)
                 <-----------    "go"                             (Warden.go)
        fork() ------------->    the child: enter(argv) (chroot ...), execve(solution)
        the warden: waitpid(child)
        "exit STATUS" ------>    the grader takes its "after" look (Warden.finished)
                 <-----------    "end"                            (Warden.release)
        exit as the solution did, so that Session.wait() sees its status

    PREPARE and ENTER run in the sandbox, after the kit's folders are hidden:
    they may use only modules that are already imported.  They may return
    another argument vector.
    """

    def __init__(self, prepare: Callable[[list[str]], list[str] | None] | None = None,
                 enter: Callable[[list[str]], list[str] | None] | None = None) -> None:
        self.prepare, self.enter = prepare, enter
        self.events_r, self.events_w = os.pipe2(os.O_CLOEXEC)  # sandbox -> grader
        self.orders_r, self.orders_w = os.pipe2(os.O_CLOEXEC)  # grader -> sandbox
        self.pid: int | None = None  # the warden, as the grader numbers it
        self.exit: Exit | None = None
        self._ready = False
        self._events = b""
        self._sandbox_ends_open = True

    # In the sandbox: the hook ----------------------------------------------------

    def hook(self, argv: list[str]) -> list[str]:
        os.close(self.events_r)
        os.close(self.orders_w)
        try:
            argv = (self.prepare(argv) if self.prepare else None) or argv
        except BaseException as e:  # noqa: BLE001 - the grader's fault: say so, and stop
            self._send(f"error preparing the sandbox: {type(e).__name__}: {e}")
            os._exit(127)
        self._send("ready")
        if self._order() != b"g":
            os._exit(127)
        child = os.fork()
        if child == 0:
            try:
                return (self.enter(argv) if self.enter else None) or argv
            except BaseException as e:  # noqa: BLE001
                self._send(f"error starting the solution: {type(e).__name__}: {e}")
                os._exit(127)
            finally:
                os.close(self.events_w)
                os.close(self.orders_r)
        self._watch(child)

    def _watch(self, child: int) -> None:
        """The warden's life: wait for the solution, report, wait for "end", end like it."""
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):  # the terminal is the solution's: no output of ours, no hold on it
            os.dup2(null, fd)
        _, status = os.waitpid(child, 0)
        self._send(f"exit {status}")
        self._order()
        if os.WIFSIGNALED(status):
            os.kill(os.getpid(), os.WTERMSIG(status))  # default dispositions: ends us the same way
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(os.WEXITSTATUS(status))

    def _send(self, event: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self.events_w, event.encode() + b"\n")

    def _order(self) -> bytes:
        try:
            return os.read(self.orders_r, 1)
        except OSError:
            return b""

    # In the grader ---------------------------------------------------------------

    def started(self, run: Session, timeout: float = 15) -> int:
        """Wait until the sandbox is prepared; return the warden's PID (nothing runs yet)."""
        self._close_sandbox_ends()
        self._next_event("ready", run, timeout)
        self.pid = run.solution_pid()
        if self.pid is None:
            raise RuntimeError("the sandbox's warden process is gone before it started the solution")
        return self.pid

    def go(self) -> None:
        """Let the warden start the solution."""
        os.write(self.orders_w, b"g")

    def solution_pid(self, timeout: float = 5) -> int | None:
        """The PID of the solution's process (the warden's only child), once it runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = observe.children(self.pid) if self.pid else []
            if kids:
                return kids[0]
            if self.exit is not None:
                return None
            time.sleep(0.01)
        return None

    def expect(self, run: Session, pattern: str, timeout: float = 5, what: str = "",
               hint: str = "") -> None:
        """Session.expect, but it also notices when the solution ends (its warden stays)."""
        what = what or repr(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                run.expect(pattern, timeout=0.2, what=what, hint=hint)
                return
            except Timeout:
                if run.transcript.flooded:
                    raise
            self._poll_events()
            if self.exit is not None:
                with contextlib.suppress(Timeout):
                    run.expect(pattern, timeout=0.5, what=what, hint=hint)
                    return
                raise Fail(f"the solution ended ({self.exit}) before it printed {what}",
                           expected=what, seen=run.transcript.tail(), hint=hint)
            if time.monotonic() > deadline:
                raise Timeout(f"no answer within {timeout:g} s: waited for {what}",
                              expected=what, seen=run.transcript.tail(), hint=hint)

    def _poll_events(self) -> None:
        if select.select([self.events_r], [], [], 0)[0]:
            self._read_events()
        else:
            self._check_warden()

    def finished(self, run: Session, timeout: float = 5) -> Exit:
        """Wait for the solution to end, reading its output; the sandbox stays as it left it."""
        if self.exit is None:
            self._next_event("exit", run, timeout)
        return self.exit

    def release(self) -> None:
        """Let the warden end (as the solution ended), and the sandbox with it."""
        with contextlib.suppress(OSError):
            os.write(self.orders_w, b"e")

    def close(self) -> None:
        self._close_sandbox_ends()
        for fd in (self.events_r, self.orders_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Warden:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _close_sandbox_ends(self) -> None:
        # The sandbox's processes have their own copies (fork); ours would only
        # keep the pipes open.
        if self._sandbox_ends_open:
            self._sandbox_ends_open = False
            os.close(self.events_w)
            os.close(self.orders_r)

    def _next_event(self, kind: str, run: Session, timeout: float) -> None:
        """Read events until one of KIND ("ready", "exit") came, and the solution's output meanwhile."""
        deadline = time.monotonic() + timeout
        terminal: int | None = run.term.child_fd
        while not (self._ready if kind == "ready" else self.exit is not None):
            left = deadline - time.monotonic()
            if left <= 0 and kind == "ready":
                raise RuntimeError(f"the grader waited {timeout:g} s for the sandbox to be ready")
            if left <= 0:
                raise Timeout(f"the solution did not end within {timeout:g} s",
                              seen=run.transcript.tail(),
                              hint="it must end by itself once it has done its work")
            watched = [self.events_r] + ([terminal] if terminal is not None else [])
            ready, _, _ = select.select(watched, [], [], min(left, 0.5))
            if terminal in ready and not _read_output(run):
                terminal = None  # end of file: nobody holds the terminal any more
            if self.events_r in ready:
                self._read_events()
            elif not ready:
                self._check_warden()
        if kind == "exit":
            _drain(run)

    def _read_events(self) -> None:
        chunk = os.read(self.events_r, 4096)
        if not chunk:  # every copy of the pipe is closed: the sandbox is gone
            self._check_warden()
            raise RuntimeError("the sandbox ended before the grader's warden reported")
        self._events += chunk
        while True:
            line, newline, rest = self._events.partition(b"\n")
            if not newline:
                return
            self._events = rest
            word, _, detail = line.decode().partition(" ")
            if word == "error":
                raise RuntimeError(detail)
            self._ready = self._ready or word == "ready"
            if word == "exit":
                self.exit = Exit.from_wait_status(int(detail))

    def _check_warden(self) -> None:
        """A warden that is gone without a word was killed: by the solution, inside the sandbox."""
        if self.pid is None or self.exit is not None:
            return
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            state = "gone"
        if state in ("Z", "X", "gone"):
            raise Fail("the run was cut short: the process of the grader's that started the "
                       "solution and waits for it was killed",
                       hint="kill only processes that you started (not kill -1, not every PID)")


def _read_output(run: Session) -> bool:
    """Read what the program printed into the run's transcript; False at end of file."""
    try:
        run.term.read_nonblocking(65536, timeout=0)
    except pexpect.TIMEOUT:
        if run.transcript.flooded:
            raise Fail(f"the program printed more than {run.limits.output // 1024} KiB; the grader "
                       "stopped reading and ended it",
                       hint="print only what the exercise asks for") from None
    except pexpect.EOF:
        return False
    return True


def _drain(run: Session) -> None:
    """Read what is still on its way from the terminal."""
    while select.select([run.term.child_fd], [], [], 0.05)[0]:
        if not _read_output(run):
            return


def output(run: Session) -> str:
    """Everything the solution printed so far, without the grader's notes."""
    text = run.transcript.text.replace("\r\n", "\n")
    return "\n".join(line for line in text.split("\n") if not line.startswith("[grader]"))


# The jail and the secret, built in the sandbox by the hook --------------------------

def build_jail(jail: str) -> None:
    """A directory writable by root, with read-only /usr, /bin, /lib* and the solution.

    On a merged-/usr system /bin, /lib ... are symbolic links into /usr: the
    jail gets the same links.  The exercise folder appears at the same
    path inside, so the solution's path is the same in and out.
    """
    os.makedirs(jail, mode=0o755)
    for name in JAILED:
        host, inside = f"/{name}", f"{jail}/{name}"
        if os.path.islink(host):
            os.symlink(os.readlink(host), inside)
        elif os.path.isdir(host):
            os.mkdir(inside)
            _bind_readonly(host, inside)
    os.makedirs(jail + EXERCISE_DIR)
    _bind_readonly(EXERCISE_DIR, jail + EXERCISE_DIR)


def _bind_readonly(source: str, target: str) -> None:
    mounts.bind_mount(source, target, recursive=True)
    syscalls.mount("none", target, None,
                   syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY)


def plant_secret(path: str, text: str) -> None:
    """Write TEXT to a new file PATH, readable by root only, with a fixed mtime to compare later."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.utime(path, (1_000_000_000, 1_000_000_000))


def jailed(jail: str) -> Callable[[list[str]], None]:
    """ENTER step of the warden: chroot(2) to JAIL and chdir("/"), as chroot(8) does."""
    def enter(argv: list[str]) -> None:
        os.chroot(jail)
        os.chdir("/")
    return enter


# Looking from outside: through the warden, whose root is the sandbox's ---------------

def in_sandbox(warden: Warden, path: str) -> str:
    """PATH of the sandbox, as the grader reaches it: through /proc/PID/root of the warden."""
    return f"/proc/{warden.pid}/root{path}"


def file_state(path: str) -> tuple | None:
    """What a reader could notice of a file: its inode, mode, owner, size, mtime and text."""
    try:
        st = os.lstat(path)
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError:
        return None
    return (st.st_ino, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, data)


def tree(top: str, limit: int = 5000) -> dict[str, tuple]:
    """The files under TOP: relative path -> (type and mode, owner, size, target of a link).

    Mount points are listed but not entered (/usr is a whole system).
    """
    found: dict[str, tuple] = {}
    top_dev = os.lstat(top).st_dev
    todo = [""]
    while todo and len(found) < limit:
        here = todo.pop()
        try:
            entries = list(os.scandir(os.path.join(top, here)))
        except OSError:
            continue
        for entry in entries:
            rel = os.path.join(here, entry.name)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            link = os.readlink(entry.path) if stat.S_ISLNK(st.st_mode) else None
            found[rel] = (stat.filemode(st.st_mode), st.st_uid, st.st_gid,
                          st.st_size if stat.S_ISREG(st.st_mode) else 0, link)
            if stat.S_ISDIR(st.st_mode) and st.st_dev == top_dev:
                todo.append(rel)
    return found


def mount_table(pid: int) -> list[str] | None:
    """PID's mount table, one "mount point (type source, options)" per mount; None if PID is gone.

    Mount IDs are left out: a mount taken down and put back as it was is
    the same table to a reader.
    """
    lines = observe.mountinfo(pid)
    if not lines:
        return None
    table = []
    for line in lines:
        m = mounts.parse_mountinfo_line(line)
        part = "" if m.root == "/" else f" [{m.root}]"
        table.append(f"{m.mount_point} ({m.fstype} {m.source}{part}, {m.options})")
    return table


def differences(before: dict | list, after: dict | list, limit: int = 6) -> str:
    """The first LIMIT entries added, removed or changed between two snapshots."""
    if isinstance(before, list):
        before, after = dict.fromkeys(before, ()), dict.fromkeys(after, ())
    lines = [f"+ {k}" for k in after if k not in before]
    lines += [f"- {k}" for k in before if k not in after]
    lines += [f"~ {k}" for k in before if k in after and before[k] != after[k]]
    more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n  ".join(lines[:limit]) + more


# A run of the exercise ---------------------------------------------------------------

class Escape:
    """One run: a jail and a secret at random places, the solution chrooted in the jail."""

    def __init__(self, trial: Trial) -> None:
        token = trial.token
        self.jail = (f"{trial.choice(SCRATCH)}/{token(6)}/"
                     f"{trial.choice(['jail', 'cell', 'chroot'])}-{token(4)}")
        self.path = (f"{trial.choice(SCRATCH)}/{token(6)}/"
                     f"{trial.choice(['secret', 'flag', 'treasure', 'key'])}-{token(6)}.txt")
        # The contract wants the file on standard output: standard error goes to a
        # file of the sandbox's, shown in the transcript, never taken for output.
        self.errors = f"/run/.grader-stderr-{token(8)}"
        self.stderr: str | None = None
        self.warden = Warden(prepare=self._prepare, enter=self._enter)
        try:
            self.run = trial.run(self.path, hook=self.warden.hook)
            self.warden.started(self.run)
            # The secret is drawn only now, and written from outside: no process of
            # the sandbox (forked copies of the grader) ever held it in its memory.
            self.secret = f"nslab-{token(12)}\n{token(20)}\n"
            plant_secret(in_sandbox(self.warden, self.path), self.secret)
            self.before_jail = tree(in_sandbox(self.warden, self.jail))
            self.before_mounts = mount_table(self.warden.pid)
            self.before_secret = file_state(in_sandbox(self.warden, self.path))
            self.warden.go()
        except BaseException:
            self.warden.close()
            raise

    def _prepare(self, argv: list[str]) -> None:
        build_jail(self.jail)
        os.makedirs(os.path.dirname(self.path), mode=0o700)

    def _enter(self, argv: list[str]) -> None:
        errors = os.open(self.errors, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(errors, 2)
        os.close(errors)
        jailed(self.jail)(argv)

    def finished(self) -> Exit:
        """Wait for the solution to end; keep what it wrote to standard error."""
        ended = self.warden.finished(self.run)
        if self.stderr is None:
            try:
                with open(in_sandbox(self.warden, self.errors), errors="replace") as f:
                    self.stderr = f.read(16384)
            except OSError:
                self.stderr = ""
            for line in self.stderr.splitlines():
                self.run.transcript.note(f"standard error: {line}")
        return ended

    def seen(self, size: int = 600) -> str:
        """The end of the solution's standard output and error, for a failure's "seen:"."""
        out = output(self.run).strip()[-size:] or "(nothing)"
        err = (self.stderr or "").strip()[-size:]
        return f"{out}\n(standard error:) {err}" if err else out

    def printed_secret(self) -> bool:
        return self.secret.strip() in output(self.run)

    def close(self) -> None:
        self.warden.close()

    def __enter__(self) -> Escape:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


HINT_ESCAPE = ("chroot(2) changes where \"/\" starts for one process, nothing else: the working "
               "directory may stay outside the new root, and \"..\" stops only at the root. So: "
               "mkdir a directory, chroot into it (without chdir), chdir(\"..\") many times, then "
               "chroot(\".\") and open PATH (lessons/04-chroot.ipynb)")


@exercise.check(4, "prints the contents of the file PATH outside the jail")
def prints_secret(trial: Trial) -> None:
    with Escape(trial) as run:
        ended = "it did not end"
        with contextlib.suppress(Timeout):  # whether it ends is exits_zero's question
            ended = f"it ended: {run.finished()}"
        if not run.printed_secret():
            if run.stderr and run.secret.strip() in run.stderr.replace("\r\n", "\n"):
                raise Fail(f"the contents of {run.path} went to standard error, not to standard "
                           "output", points=2, hint="print to standard output (descriptor 1): "
                           "print(), sys.stdout, cat")
            raise Fail(f"the contents of {run.path} are not in the output ({ended})",
                       expected=run.secret.strip(), seen=run.seen(), hint=HINT_ESCAPE)


@exercise.check(1, "exits with status 0", needs=[prints_secret])
def exits_zero(trial: Trial) -> None:
    with Escape(trial) as run:
        ended = run.finished()
        if ended.status != 0:
            raise Fail("the solution did not exit with status 0", expected="exit status 0",
                       seen=str(ended), hint="end with exit status 0 once the file is printed "
                       "(sys.exit(True) is status 1)")


@exercise.check(1, "leaves the file PATH as it was", needs=[prints_secret])
def secret_unchanged(trial: Trial) -> None:
    with Escape(trial) as run:
        run.finished()
        after = file_state(in_sandbox(run.warden, run.path))
        if after is None:
            raise Fail(f"the file {run.path} is gone, or the grader cannot read it any more",
                       hint="open it for reading only: O_RDONLY, open(path) or cat")
        if after != run.before_secret:
            raise Fail(f"the file {run.path} changed: its contents, mode, owner or time",
                       hint="open it for reading only (O_RDONLY, mode 'r'); do not move, copy "
                            "back or touch it")


@exercise.check(1, "leaves the jail's files as it found them", needs=[prints_secret])
def jail_unchanged(trial: Trial) -> None:
    with Escape(trial) as run:
        run.finished()
        try:
            after = tree(in_sandbox(run.warden, run.jail))
        except OSError:
            raise Fail("the jail directory is gone", hint="leave the jail where it was") from None
        if after != run.before_jail:
            raise Fail("the solution left the jail changed (+ added, - removed, ~ changed)",
                       seen=differences(run.before_jail, after),
                       hint="remove what you created in the jail once you are out (you can "
                            "still reach it: keep a descriptor of the jail's root open, "
                            "os.open('/', O_RDONLY) before escaping, and rmdir(name, "
                            "dir_fd=...)), or chroot into a directory that already exists")


@exercise.check(1, "leaves the mount table as it found it", needs=[prints_secret])
def mounts_unchanged(trial: Trial) -> None:
    with Escape(trial) as run:
        run.finished()
        after = mount_table(run.warden.pid)
        if after is None:
            raise Fail("the grader could not read the mount table after the solution ended",
                       hint="do not kill processes you did not start")
        if after != run.before_mounts:
            raise Fail("the mount table of the sandbox changed (+ added, - removed)",
                       seen=differences(run.before_mounts, after),
                       hint="unmount what you mounted (umount2(2)), or mount it in a mount "
                            "namespace of your own (unshare(CLONE_NEWNS)), which ends with you")

