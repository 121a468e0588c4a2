"""Exercise 2, ``escape``: break out of a chroot jail (EXERCISES.md, section 2).

    solution PATH

    The grader starts solution as root with its root directory changed by
    chroot(2) to a jail directory and its working directory at the jail's
    root (as chroot(8) does). The jail is writable by root and holds
    read-only bind mounts of /usr, /bin, /lib* so that any interpreter
    works, and the solution itself. PATH is an absolute path of a file
    outside the jail. solution must print that file's contents to standard
    output and exit 0.

The contract asks two things of the solution: the file's contents on
standard output, and exit status 0.  Those are the two checks; what the
solution leaves behind (a directory made in the jail, a mount, a changed
mode) is its own business, and the sandbox removes it with the run.

The grader builds the jail and plants the file in the sandbox, at paths
and with contents chosen at random on every run, then starts the solution
chrooted.  The contents are drawn after the sandbox is up and written from
outside (through /proc/PID/root of the warden, grader/warden.py), so that
they are in the file and nowhere else a solution could look: not in the
memory of the sandbox's processes, which are forked copies of the grader.
Standard output is the terminal; standard error goes to a file of the
sandbox's, so that only what reaches standard output counts as printed.

See chroot(2), chroot(8), chdir(2), path_resolution(7) (why ".." stops at
the process's root and nowhere else), mount_namespaces(7), proc(5).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from labkit import mount as mounts

from ..engine import Exercise, Trial
from ..feedback import Fail, Timeout
from ..sandbox import EXERCISE_DIR
from ..session import Exit
from ..warden import SCRATCH, Warden, in_sandbox, output

exercise = Exercise("escape", "break out of a chroot jail")

# What the jail holds of the sandbox's root (EXERCISES.md: /usr, /bin, /lib*), and /sbin.
JAILED = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
NAMES = ("secret", "flag", "treasure", "key")  # PATH's name and its neighbours', with a random tail


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
    mounts.remount_readonly(target)


def plant_secret(path: str, text: str, owner: int) -> None:
    """Write TEXT to a new file PATH, readable by OWNER only (the sandbox's root, as the machine
    numbers it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchown(f.fileno(), owner, owner)
        f.write(text)


def jailed(jail: str) -> Callable[[list[str]], None]:
    """ENTER step of the warden: chroot(2) to JAIL and chdir("/"), as chroot(8) does."""
    def enter(argv: list[str]) -> None:
        os.chroot(jail)
        os.chdir("/")
    return enter



# A run of the exercise ---------------------------------------------------------------

class Escape:
    """One run: a jail and a secret at random places, the solution chrooted in the jail."""

    def __init__(self, trial: Trial) -> None:
        token = trial.token
        self.jail = (f"{trial.choice(SCRATCH)}/{token(6)}/"
                     f"{trial.choice(['jail', 'cell', 'chroot'])}-{token(4)}")
        # PATH at a random depth under a random folder; other readable files lie
        # beside it: in its folder, in a sibling folder under the same name, and
        # in the folder above.  Only PATH's contents may be printed.
        folder = "/".join([trial.choice(SCRATCH), *(token(6) for _ in range(trial.number(1, 3)))])
        name = f"{trial.choice(NAMES)}-{token(6)}.txt"
        self.path = f"{folder}/{name}"
        self.folders = [folder, f"{os.path.dirname(folder)}/{token(6)}"]
        self.neighbours = [f"{folder}/{trial.choice(NAMES)}-{token(6)}.txt",
                           f"{self.folders[1]}/{name}",
                           f"{os.path.dirname(folder)}/{trial.choice(NAMES)}-{token(6)}.txt"]
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
            self.others = {path: f"nslab-{token(12)}\n{token(20)}\n" for path in self.neighbours}
            files = [(self.path, self.secret), *self.others.items()]
            trial.random.shuffle(files)
            for path, text in files:
                plant_secret(in_sandbox(self.warden, path), text, self.run.ids.outside(0))
            self.warden.go()
        except BaseException:
            self.warden.close()
            raise

    def _prepare(self, argv: list[str]) -> None:
        build_jail(self.jail)
        for folder in self.folders:
            os.makedirs(folder, mode=0o700)

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

    def printed_others(self) -> list[str]:
        """The files beside PATH whose contents (any line of them) are in the output."""
        printed = output(self.run)
        return [path for path, text in self.others.items()
                if any(line in printed for line in text.split())]

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
    """"solution must print that file's contents to standard output"

    The file's contents (random, written from outside after the sandbox is
    up, at a random path and depth outside the jail) must appear on standard
    output, the terminal; standard error goes to a file of the sandbox's and
    does not count.  Other readable files lie beside PATH (in its folder, in
    a sibling folder under PATH's name, in the folder above), with contents
    of the same shape: none of theirs may be printed (1 point of 4 then).
    The solution may take its time (up to 15 s) and leave anything behind.
    """
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
        others = run.printed_others()
        if others:
            raise Fail(f"besides the contents of {run.path}, the output holds those of other files",
                       points=1, expected=f"the contents of {run.path} only",
                       seen=f"the contents of {', '.join(others)} too",
                       hint="open and print the one file PATH (sys.argv[1]) names, once out of "
                            "the jail: not a fixed path, not every file of its folder")


@exercise.check(1, "exits with status 0", needs=[prints_secret])
def exits_zero(trial: Trial) -> None:
    """"... and exit 0."

    The solution's exit status, as the warden that started it saw it with
    waitpid(2), is 0.
    """
    with Escape(trial) as run:
        ended = run.finished()
        if ended.status != 0:
            raise Fail("the solution did not exit with status 0", expected="exit status 0",
                       seen=str(ended), hint="end with exit status 0 once the file is printed "
                       "(sys.exit(True) is status 1)")

