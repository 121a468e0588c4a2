"""Exercise 3, ``jail``: a jail that holds (EXERCISES.md, section 3).

    solution ROOTFS COMMAND [ARG...]

    Run COMMAND with ROOTFS (a directory holding a small root filesystem,
    e.g. static busybox) as its root directory, using a new mount namespace
    and pivot_root(2), not chroot(2) alone. Inside, /proc is a fresh proc
    mount, and the old root is unmounted and detached: no mount entry shows
    it, no path under / leads to it, and the escape of exercise 2 fails.
    Mounts made inside do not appear on the host and the host's mount table
    is unchanged. (Without a PID namespace, /proc/1/root still leads to the
    host's root: the jail does not have to close that; exercise 7 does.)
    The exit status of solution is COMMAND's.

Every sentence is a check, judged from outside while COMMAND runs (a
busybox shell that pauses on a FIFO in ROOTFS, grader/pause.py):

* COMMAND's root is ROOTFS: /proc/PID/root of COMMAND is the directory.
* pivot_root, not chroot: the grader joins COMMAND's mount namespace with
  setns(2), which puts a process at the namespace's root mount (what
  pivot_root moves; chroot(2) moves only one process's root), and looks at
  that root and at the mount table from there; and COMMAND's own
  /proc/PID/mountinfo must show that same mount at "/" (after a chroot,
  even into a ROOTFS also bound over "/", its root is a directory of the
  old tree, not the root of a mount).
* A fresh /proc: a proc mounted anew has a super block of its own (Linux
  5.8 and later), so a device number that no proc of the host has; a bind
  mount of the host's /proc shares the host's.
* The old root is detached: no mount of the namespace shows files of the
  host outside ROOTFS (a mount of a disk or tmpfs that the host has too,
  with a root that is not ROOTFS or below it): neither the old root nor a
  part of it bound at a hidden place, nor, where the kernel can list them
  (listmount(2), Linux 6.8), the old tree left below a ROOTFS moved over
  "/".  Detached, no path can lead to it; nor may COMMAND hold a
  descriptor of a directory out there.
* The escape fails: the grader joins COMMAND's mount namespace, root and
  working directory (as nsenter --mount --root --wd does) and tries
  exercise 2's escape, then reads a file that exists only outside ROOTFS.
* Mounts inside stay inside: COMMAND mounts a tmpfs; the host's mount
  table (the warden's, grader/warden.py) shows none of it, and is
  the same after the solution as before it.

ROOTFS and file names are random on every run; COMMAND draws its own exit
code and the grader its killing signal, and the kernel reports how
COMMAND really ended (grader/exits.py).

See pivot_root(2), mount_namespaces(7), chroot(2), setns(2), proc(5),
umount(2) (MNT_DETACH), busybox(1).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from labkit import jail as labjail
from labkit import mount as mounts

from .. import observe, pause
from ..engine import Exercise, Trial
from ..exits import SHELL_RANDOM
from ..feedback import Fail, differences
from ..observe import mount_table
from ..rootview import (
    KERNEL_VIEWS,
    describe,
    every_mount_of,
    host_files_shown,
    link_or_reason,
    look_from_inside,
    namespace_view,
    others_leading_out,
    place_of,
    same_file,
)
from ..session import START, Session
from ..status import Started, exit_code_check, signal_status_check
from ..warden import SCRATCH, Warden, in_sandbox

exercise = Exercise("jail", "a jail that holds", tools=("busybox",))

HINT_EXEC = ("after the jail is built, exec COMMAND with its arguments as they are (os.execvp), "
             "looked up in the new root")
HINT_PIVOT = ("in a new mount namespace (unshare(CLONE_NEWNS)): make / private (mount with "
              "MS_REC|MS_PRIVATE), bind-mount ROOTFS on itself, pivot_root(ROOTFS, ROOTFS/old), "
              "chdir(\"/\"), mount proc, umount2(\"/old\", MNT_DETACH) (lessons/04-chroot.ipynb)")


# One run: a root file system at a random place, COMMAND in a jail on it -------------

class Jail:
    """A busybox ROOTFS and a file outside it, at random paths; the solution run on them."""

    def __init__(self, trial: Trial) -> None:
        self.trial, token = trial, trial.token
        self.rootfs = (f"{trial.choice(SCRATCH)}/{token(6)}/"
                       f"{trial.choice(['rootfs', 'root', 'fs'])}-{token(4)}")
        # Outside ROOTFS, on the file system of the solution's working directory
        # (/tmp/scratch): a jail that leaves COMMAND there leads to it.
        self.outside = f"/tmp/{token(6)}/outside-{token(6)}"
        self.outside_text = f"outside-{token(16)}"
        self.tag = f"jail-{token()}"
        self.fifo = f"/.pause-{token()}"  # in ROOTFS: where COMMAND pauses (grader/pause.py)
        self.warden = Warden(prepare=self._prepare)
        self.run: Session | None = None
        self.command_pid: int | None = None

    def _prepare(self, argv: list[str]) -> None:
        labjail.build_busybox_rootfs(self.rootfs)
        os.mkfifo(self.rootfs + self.fifo, 0o600)
        os.makedirs(os.path.dirname(self.outside))
        with open(self.outside, "w") as f:
            f.write(self.outside_text)

    def start(self, *command: str) -> Session:
        """Run ``solution ROOTFS COMMAND...``; take the host's measures before it starts."""
        self.run = self.trial.run(self.rootfs, *command, hook=self.warden.hook)
        warden = self.warden.started(self.run)
        st = os.stat(in_sandbox(self.warden, self.rootfs))
        self.rootfs_id = (st.st_dev, st.st_ino)
        table = [mounts.parse_mountinfo_line(line) for line in observe.mountinfo(warden)]
        self.host_procs = {m.major_minor for m in table if m.fstype == "proc"}
        # The host's files: every mount of a file system that holds files (a disk,
        # a tmpfs), and where in its file system ROOTFS is.
        self.host_files = {m.major_minor for m in table if m.fstype not in KERNEL_VIEWS}
        self.rootfs_place = place_of(table, self.rootfs)
        self.host_mounts = mount_table(warden)
        # The host's mount table is watched for the whole run, not only before and after.
        self.host_watch = (self.trial.keep(observe.MountTableWatch(warden, self.host_mounts))
                           if self.host_mounts else None)
        self.host_mnt = observe.namespace(warden, "mnt")
        self.warden.go()
        return self.run

    def hold(self, before: str = "") -> int:
        """Start a COMMAND that runs BEFORE, says ready and pauses on a FIFO; return its PID.

        The FIFO is in ROOTFS, made by the grader; COMMAND's terminal is not
        read (the contract says nothing of COMMAND's standard input).
        """
        command = ["/bin/sh", "-c", before + f'echo "ready $0"; {pause.pause(self.fifo)}; echo "got bye $0"',
                   self.tag]
        run = self.start(*command)
        self.expect(f"ready {self.tag}", what=f"COMMAND's first line 'ready {self.tag}'")
        self.command_pid = run.find(command) or run.find(self.tag)
        if self.command_pid is None:
            raise Fail("COMMAND printed its first line, but then no process in the sandbox runs it",
                       hint="COMMAND must keep running until it ends by itself")
        return self.command_pid

    def expect(self, pattern: str, what: str, hint: str = HINT_EXEC) -> None:
        self.warden.expect(self.run, pattern, timeout=START, what=what, hint=hint)

    def release(self) -> None:
        """Let the holding COMMAND end, and wait for the solution."""
        pause.go_on(lambda: [in_sandbox(self.warden, self.rootfs + self.fifo)])
        self.warden.finished(self.run)

    def close(self) -> None:
        self.warden.close()

    def __enter__(self) -> Jail:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# The checks ---------------------------------------------------------------------------

@exercise.check(1, "runs COMMAND")
def runs_command(trial: Trial) -> None:
    """"Run COMMAND with ROOTFS ... as its root directory"

    COMMAND runs at all: /bin/echo of ROOTFS (busybox) with a random word,
    which must appear on the terminal.
    """
    with Jail(trial) as jail:
        jail.start("/bin/echo", jail.tag)
        jail.expect(jail.tag, what=f"the output of COMMAND '/bin/echo {jail.tag}'")


@exercise.check(1, "passes COMMAND's arguments unchanged", needs=[runs_command])
def arguments_unchanged(trial: Trial) -> None:
    """"solution ROOTFS COMMAND [ARG...]"

    Each ARG reaches COMMAND as it is: printf(1) prints random words, one
    with a space, "*", an empty word and one starting with "-".
    """
    words = [trial.token(), f"two {trial.token(4)}", "*", "", f"-{trial.token(3)}"]
    expected = "".join(f"[{w}]" for w in words)
    with Jail(trial) as jail:
        jail.start("/bin/printf", "[%s]", *words)
        jail.expect(expected, what=f"printf's output {expected!r}",
                    hint="pass every ARG as its own argument, without a shell in between")


@exercise.check(2, "COMMAND's root directory is ROOTFS", needs=[runs_command])
def root_is_rootfs(trial: Trial) -> None:
    """"Run COMMAND with ROOTFS (a directory holding a small root filesystem, e.g. static busybox) as its root directory"

    /proc/PID/root of COMMAND (a busybox shell that pauses) is the ROOTFS
    directory (same device and inode), seen from outside.
    """
    with Jail(trial) as jail:
        pid = jail.hold()
        inside = same_file(f"/proc/{pid}/root", jail.rootfs_id)
        seen = link_or_reason(f"/proc/{pid}/root")
        jail.release()
        if not inside:
            raise Fail("COMMAND's root directory is not ROOTFS",
                       expected=f"/proc/PID/root of COMMAND is {jail.rootfs}",
                       seen=f"it is {seen!r} (as the grader sees it)", hint=HINT_PIVOT)


@exercise.check(1, "COMMAND runs in a new mount namespace", needs=[runs_command])
def new_mount_namespace(trial: Trial) -> None:
    """"using a new mount namespace and pivot_root(2), not chroot(2) alone."

    COMMAND's /proc/PID/ns/mnt differs from the caller's (the warden's).
    """
    with Jail(trial) as jail:
        pid = jail.hold()
        inside = observe.namespace(pid, "mnt")
        jail.release()
        if inside == jail.host_mnt:
            raise Fail("COMMAND is in the caller's mount namespace",
                       expected=f"a mount namespace other than the caller's {jail.host_mnt}",
                       seen=f"/proc/PID/ns/mnt of COMMAND is {inside}",
                       hint="unshare(CLONE_NEWNS) first: every mount, and pivot_root itself, then "
                            "stays in the jail (mount_namespaces(7))")


@exercise.check(2, "ROOTFS is the root of the mount namespace (pivot_root, not chroot)",
                needs=[runs_command])
def pivot_not_chroot(trial: Trial) -> None:
    """"using a new mount namespace and pivot_root(2), not chroot(2) alone."

    A child of the grader joins COMMAND's mount namespace (setns(2) lands at
    the namespace's root mount, which pivot_root moves and chroot does not):
    that root is ROOTFS, and COMMAND's own /proc/PID/mountinfo has that same
    mount at "/".
    """
    with Jail(trial) as jail:
        pid = jail.hold()
        view = namespace_view(pid)
        own = [mounts.parse_mountinfo_line(line) for line in observe.mountinfo(pid)]
        jail.release()
        if view is None:
            raise Fail("the grader could not enter COMMAND's mount namespace")
        root, table = view
        top = [m for m in table if m.mount_point == "/"]
        if root != jail.rootfs_id:
            raise Fail("the root of COMMAND's mount namespace is not ROOTFS",
                       expected=f"{jail.rootfs} at / of the namespace (setns(2) into it lands there)",
                       seen=f"/ of the namespace is {describe(top[-1]) if top else 'something else'}",
                       hint="chroot(2) changes the root of one process; pivot_root(2) changes the "
                            "root mount of the whole namespace. " + HINT_PIVOT)
        # COMMAND's own table (/proc/PID/mountinfo lists what is below its root) has
        # that same mount at "/" only if COMMAND's root is the root of that mount,
        # as pivot_root leaves it; a chroot(2) into ROOTFS, even with ROOTFS also
        # bound over "/", leaves COMMAND's root in a directory of the old tree.
        mine = [m for m in own if m.mount_point == "/"]
        if not top or not mine or mine[-1].mount_id != top[-1].mount_id:
            raise Fail("COMMAND's root directory is not the root mount of its namespace: it got "
                       "there by chroot(2)",
                       seen="COMMAND's /proc/self/mountinfo has " + (
                           f"another mount at / ({describe(mine[-1])})" if mine else "no mount at /"),
                       hint="a mount over \"/\" and chroot(2) hide the old root without removing it; "
                            "pivot_root(2) moves it away so that it can be unmounted. " + HINT_PIVOT)


@exercise.check(1, "/proc inside is a fresh proc mount", needs=[runs_command])
def fresh_proc(trial: Trial) -> None:
    """"Inside, /proc is a fresh proc mount"

    COMMAND's mount table has a proc at /proc whose device number (its own
    super block, Linux 5.8) no proc of the host has; a bind of the host's
    /proc shares the host's.
    """
    with Jail(trial) as jail:
        pid = jail.hold()
        table = [mounts.parse_mountinfo_line(line) for line in observe.mountinfo(pid)]
        jail.release()
        procs = [m for m in table if m.mount_point == "/proc"]
        if not procs or procs[-1].fstype != "proc":
            raise Fail("there is no proc file system at /proc in the jail",
                       seen=describe(procs[-1]) if procs else "nothing mounted at /proc",
                       hint="after pivot_root: mount(\"proc\", \"/proc\", \"proc\", 0, NULL)")
        if procs[-1].major_minor in jail.host_procs:
            raise Fail("/proc in the jail is the host's proc, not a fresh one",
                       seen=f"{describe(procs[-1])}, device {procs[-1].major_minor}, as the host's /proc",
                       hint="a bind mount shows the same proc; mount a new one: "
                            "mount(\"proc\", \"/proc\", \"proc\", 0, NULL), after pivot_root")


@exercise.check(2, "the old root is unmounted and detached, and nothing leads back to it",
                needs=[runs_command])
def old_root_detached(trial: Trial) -> None:
    """"the old root is unmounted and detached: no mount entry shows it, no path under / leads to it"

    No mount of COMMAND's namespace (mountinfo, and listmount(2) where the
    kernel has it) shows the host's files outside ROOTFS; no directory
    descriptor COMMAND holds, and not its working directory, leads out by
    "..", nor do those of any other process in COMMAND's mount namespace (a
    helper the solution left beside COMMAND, reachable through /proc/PID/):
    its root, working directory and directory descriptors.  Seen by a child
    of the grader that takes COMMAND's place (nsenter --mount --root --wd).
    """
    with Jail(trial) as jail:
        pid = jail.hold()
        view, inside = namespace_view(pid), look_from_inside(pid, jail.outside)
        every = every_mount_of(pid)  # None before Linux 6.8: mountinfo only, then
        others = others_leading_out(pid, observe.descendants(jail.run.init_pid))
        jail.release()
        if view is None or inside is None:
            raise Fail("the grader could not enter COMMAND's mount namespace")
        shown = host_files_shown(jail.host_files, jail.rootfs_place, [(m.major_minor, m.root, describe(m)) for m in view[1]])
        if shown:
            raise Fail("a mount in COMMAND's namespace still shows the host's files, outside ROOTFS",
                       seen=", ".join(shown),
                       hint="after pivot_root(new, put_old) and chdir(\"/\"), "
                            "umount2(put_old, MNT_DETACH): the old root has mounts below it "
                            "(/proc, /sys ...), so only a lazy unmount takes it all (umount(2)); "
                            "and keep no part of it mounted elsewhere in the jail (a recursive "
                            "bind of /dev brings the host's /dev/shm along: mount a fresh tmpfs "
                            "there instead)")
        hidden = host_files_shown(jail.host_files, jail.rootfs_place, [(mm, root, f"{mm} {root}") for mm, root in every or []])
        if hidden:
            raise Fail("the host's files are still mounted in COMMAND's namespace, where no mount "
                       "table lists them: below ROOTFS, mounted over \"/\"",
                       seen="mounts of the host's file systems (device, directory): "
                            + ", ".join(hidden[:4]) + (f" and {len(hidden) - 4} more" if len(hidden) > 4 else ""),
                       hint="a mount over \"/\" (mount --move, as switch_root(8) does) hides the "
                            "old root without removing it; pivot_root(2) moves it away so that it "
                            "can be unmounted. " + HINT_PIVOT)
        if inside.leaking_fds:
            fds = ", ".join(map(str, inside.leaking_fds))
            raise Fail(f"COMMAND holds open descriptors ({fds}) of directories outside its root: "
                       "fchdir(2) there leads into the host's files",
                       hint="open descriptors survive execve(2): open the old root with O_CLOEXEC, "
                            "or close it before COMMAND starts")
        if not inside.cwd_inside:
            raise Fail("COMMAND's working directory is outside its root: \"..\" from there leads "
                       "into the host's files", hint="chdir(\"/\") after pivot_root(2): it moves "
                       "only a working directory that was the old root itself (see its NOTES)")
        if others:
            raise Fail("a process that stays beside COMMAND, in its mount namespace, leads out of "
                       "the jail: COMMAND reaches it through /proc/PID/root, cwd or fd",
                       seen=", ".join(others),
                       hint="leave no process of yours in the jail's mount namespace with a root, "
                            "working directory or open directory outside ROOTFS: exec COMMAND in "
                            "the process that did pivot_root, or let a helper chdir(\"/\") and "
                            "close what it opened of the old root")


@exercise.check(2, "the escape of exercise 2 fails in the jail", needs=[runs_command])
def escape_fails(trial: Trial) -> None:
    """"and the escape of exercise 2 fails."

    A child of the grader takes COMMAND's mount namespace, root and working
    directory, does exercise 2's escape (mkdir, chroot, climb, chroot ".")
    and tries to read a random file that exists only outside ROOTFS.
    """
    with Jail(trial) as jail:
        pid = jail.hold()
        inside = look_from_inside(pid, jail.outside)
        jail.release()
        if inside is None:
            raise Fail("the grader could not enter COMMAND's mount namespace")
        found = inside.escaped
        if found is not None:
            raise Fail(f"from COMMAND's root and working directory, the chroot escape reached "
                       f"{jail.outside}, a file outside ROOTFS", seen=found,
                       hint="after pivot_root, chdir(\"/\") (pivot_root(2) does not move a working "
                            "directory that is not the old root) and unmount the old root: then "
                            "\"..\" has nowhere to go")


@exercise.check(1, "mounts made inside do not appear on the host", needs=[runs_command])
def mounts_stay_inside(trial: Trial) -> None:
    """"Mounts made inside do not appear on the host"

    COMMAND mounts a tmpfs with a random source name; COMMAND's mount table
    has it, the host's (the warden's /proc/PID/mountinfo) does not.
    """
    with Jail(trial) as jail:
        source = f"nslab-{trial.token()}"
        pid = jail.hold(f"mount -t tmpfs {source} /tmp; ")
        inside = [m for m in mounts.read_mountinfo(pid) if m.source == source]
        host = [line for line in mount_table(jail.warden.pid) or [] if source in line]
        jail.release()
        if not inside:
            raise Fail("COMMAND's tmpfs is not in its own mount table",
                       hint="the jail's mount namespace must hold COMMAND's mounts")
        if host:
            raise Fail("a tmpfs that COMMAND mounted in the jail appears in the host's mount table",
                       seen="\n".join(host),
                       hint="unshare(CLONE_NEWNS), and make / private before anything else "
                            "(mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE, NULL)), or mount "
                            "events propagate to the host (mount_namespaces(7))")


@exercise.check(1, "the host's mount table is unchanged", needs=[runs_command])
def host_mounts_unchanged(trial: Trial) -> None:
    """"and the host's mount table is unchanged."

    The host's mount table (the warden's, mount IDs left out) is the one
    from before the solution, after it and all the time it runs: the kernel
    tells the grader of each change of that table (poll(2) on
    /proc/PID/mountinfo, grader/observe.py), and the grader reads it then.
    """
    with Jail(trial) as jail:
        jail.hold(f"mount -t tmpfs nslab-{trial.token()} /tmp; ")
        jail.release()
        after = mount_table(jail.warden.pid)
        during = jail.host_watch.close() if jail.host_watch else []
        hint = ("build the jail in a new mount namespace (unshare(CLONE_NEWNS)) with / made "
                "private first: the bind mount, pivot_root and every mount then stay in it, and "
                "vanish with it")
        if after != jail.host_mounts:
            raise Fail("the host's mount table changed (+ added, - removed)",
                       seen=differences(jail.host_mounts, after or []), hint=hint)
        if during:
            raise Fail("the host's mount table changed while COMMAND ran, even if it was put back "
                       "afterwards (+ added, - removed)",
                       seen=differences(jail.host_mounts, during[0]), hint=hint)


def start_jailed(trial: Trial) -> Callable[[list[str]], Started]:
    """How the status checks start the solution: ``solution ROOTFS COMMAND...`` in a new Jail."""
    def start(command: list[str]) -> Started:
        jail = trial.keep(Jail(trial))
        run = jail.start(*command)
        return Started(run, lambda: jail.warden.finished(run))
    return start


@exercise.check(1, "the exit status is COMMAND's", needs=[runs_command])
def exit_status(trial: Trial) -> None:
    """"The exit status of solution is COMMAND's."

    grader/status.py: COMMAND exits with a code it draws itself (busybox's
    $RANDOM); the kernel reports how it ended; the solution's status must be
    that code.
    """
    exit_code_check(trial, start_jailed(trial), random=SHELL_RANDOM, exec_hint=HINT_EXEC,
                    hint="exec COMMAND in the jailed process (os.execvp), or wait for it and "
                         "exit with its status")


@exercise.check(1, "killed by signal N, COMMAND gives exit status 128+N", needs=[runs_command])
def signal_status(trial: Trial) -> None:
    """"or 128+N if COMMAND was killed by signal N (as a shell reports it; a solution that execs COMMAND and so dies by the same signal meets this too)."

    grader/status.py: the grader kills COMMAND with a usual signal, then a
    rarer one; the solution's status must be 128+N, or death by N.
    """
    signal_status_check(trial, start_jailed(trial), exec_hint=HINT_EXEC,
                        hint="exec COMMAND, or exit with 128+WTERMSIG(status) when it was "
                             "killed (wait(2))")
