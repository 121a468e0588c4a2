"""Exercise 7, ``container``: all of it together (EXERCISES.md, section 7).

    solution ROOTFS HOSTNAME COMMAND [ARG...]

    Run COMMAND as a small container:
    - new PID namespace, in which COMMAND (or an init of the solution's,
      which then meets exercise 4's contract) is PID 1;
    - new mount namespace with ROOTFS as root via pivot_root(2) (as in
      exercise 3) and a fresh /proc that shows only the container's
      processes;
    - new UTS namespace with hostname HOSTNAME;
    - new IPC namespace: no System V IPC object of the host is visible;
    - new network namespace holding only lo, which is up;
    - new cgroup namespace: /proc/self/cgroup shows the container's cgroup
      as the root (/).
    The exit status of solution is COMMAND's.

Every sentence is a check, judged from outside while COMMAND (a busybox
shell that waits for a line on its terminal) runs.  "The host" is the
sandbox's PID 1, the caller: each of COMMAND's namespace links must differ
from the caller's, and then:

* PID: the PID 1 of COMMAND's namespace (the last NSpid of /proc/PID/status)
  is COMMAND or one of its ancestors, an init of the solution's; such an
  init is held to exercise 4 (grader/inits.py): orphans that COMMAND leaves
  are reaped within a second, and the six signals sent to the init reach
  COMMAND.
* Mount: as exercise 3 judges it (grader/rootview.py): COMMAND's root is
  ROOTFS (and holds the random marker file), the root mount of its
  namespace is ROOTFS (pivot_root, not chroot), no mount shows the host's
  files outside ROOTFS, and neither COMMAND's working directory, its open
  directories nor exercise 2's escape lead out.
* /proc: COMMAND's /proc is a proc mount of its own, and every process it
  lists is in COMMAND's PID namespace (the grader reads
  /proc/PID/root/proc/N/ns/pid from outside).
* UTS, IPC, network, cgroup: nsenter(1) joins that one namespace of
  COMMAND's (grader/views.py): hostname(1); /proc/sysvipc, where the System
  V objects the grader made with a random key before the run must not be;
  ip link (only lo, UP); /proc/PID/cgroup (every line ends in "/").
* An interactive shell (COMMAND /bin/sh on the pty, driven with pexpect)
  reads the marker, its hostname and its /proc from inside.

ROOTFS (a busybox root at a random path, built in the sandbox before the
solution starts), its marker, HOSTNAME and the IPC key are random on every
run.  See namespaces(7), pivot_root(2), pid_namespaces(7),
cgroup_namespaces(7), network_namespaces(7), ipc_namespaces(7).
"""

from __future__ import annotations

import os
import re
import time

from labkit import ipc as labipc
from labkit import jail as labjail
from labkit import mount as mounts

from .. import observe, pause, views
from ..engine import Exercise, Trial
from ..exits import SHELL_RANDOM
from ..feedback import Fail
from ..inits import FORWARDED, ZOMBIE_LIMIT, forward_and_collect, trapping_command, watch_zombies
from ..rootview import (
    KERNEL_VIEWS,
    describe,
    every_mount_of,
    host_files_shown,
    look_from_inside,
    namespace_view,
    place_of,
    same_file,
)
from ..session import START, Session
from ..status import exit_code_check, signal_status_check
from ..warden import SCRATCH

exercise = Exercise("container", "all of it together", tools=("busybox", "nsenter", "ip"),
                    namespaces=("cgroup",))

HINT_EXEC = ("once the container is built, run COMMAND with its arguments as they are "
             "(os.execvp), looked up in the new root")
HINT_STEPS = ("unshare(CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET|"
              "CLONE_NEWCGROUP), fork (the child is PID 1), and in the child: make / private, "
              "sethostname, lo up, bind ROOTFS on itself, pivot_root, mount a fresh proc, "
              "unmount the old root, exec COMMAND (lessons/11-container.ipynb)")
HINT_PIVOT = ("in the new mount namespace: make / private (MS_REC|MS_PRIVATE), bind-mount ROOTFS "
              "on itself, chdir(ROOTFS), pivot_root(\".\", \".\"), mount proc, umount2(\".\", "
              "MNT_DETACH), chdir(\"/\") (exercise 3, lessons/04-chroot.ipynb)")


# One run: a busybox ROOTFS, a marker, an IPC object, all random ------------------------

class Container:
    """A busybox ROOTFS with a marker file and a host IPC object; the solution run on them."""

    def __init__(self, trial: Trial) -> None:
        self.trial, token = trial, trial.token
        self.rootfs = f"{trial.choice(SCRATCH)}/{token(6)}/{trial.choice(['rootfs', 'root', 'fs'])}-{token(4)}"
        self.hostname = trial.hostname()
        self.marker = f"/{trial.choice(['etc', 'root', 'tmp'])}/marker-{token(6)}"
        self.marker_text = f"marker-{token(16)}"
        self.outside = f"/tmp/{token(6)}/outside-{token(6)}"  # a file of the host, outside ROOTFS
        self.ipc_key = trial.number(0x1000, 0x7FFFFFFF)
        self.tag = f"container-{token()}"
        self.fifo = f"/.pause-{token()}"  # in ROOTFS: where COMMAND pauses (grader/pause.py)
        self.run: Session | None = None

    def _prepare(self, argv: list[str]) -> None:
        """In the sandbox, right before the solution starts: build what it gets."""
        labjail.build_busybox_rootfs(self.rootfs)
        with open(self.rootfs + self.marker, "w") as f:
            f.write(self.marker_text + "\n")
        os.mkfifo(self.rootfs + self.fifo, 0o600)
        os.makedirs(os.path.dirname(self.outside))
        with open(self.outside, "w") as f:
            f.write("outside")
        labipc.create_objects(self.ipc_key)  # in the sandbox's IPC namespace: the host's

    def start(self, *command: str) -> Session:
        """Run ``solution ROOTFS HOSTNAME COMMAND...``."""
        self.run = self.trial.run(self.rootfs, self.hostname, *command, hook=self._prepare)
        return self.run

    def hold(self, before: str = "") -> int:
        """Start a COMMAND that runs BEFORE, says ready and pauses on a FIFO; return its PID.

        The FIFO is in ROOTFS, made by the grader; COMMAND's terminal is not
        read (the contract says nothing of COMMAND's standard input).
        """
        # "until": a shell that is PID 1 itself gets the SIGCHLD of every orphan of the
        # container, which may interrupt its read.
        command = ["/bin/sh", "-c", before + f'echo "ready $0"; until {pause.pause(self.fifo)}; '
                   'do :; done; echo "got bye $0"', self.tag]
        run = self.start(*command)
        run.expect(f"ready {self.tag}", timeout=START, what=f"COMMAND's first line 'ready {self.tag}'",
                   hint=HINT_EXEC)
        self.pid = run.require(command, HINT_EXEC)
        self.look_at_host()
        return self.pid

    def look_at_host(self) -> None:
        """The caller's side: its namespaces, its mounts, where ROOTFS is."""
        caller = self.run.init_pid
        st = os.stat(f"/proc/{caller}/root{self.rootfs}")
        self.rootfs_id = (st.st_dev, st.st_ino)
        table = [mounts.parse_mountinfo_line(line) for line in observe.mountinfo(caller)]
        self.host_procs = {m.major_minor for m in table if m.fstype == "proc"}
        self.host_files = {m.major_minor for m in table if m.fstype not in KERNEL_VIEWS}
        self.rootfs_place = place_of(table, self.rootfs)

    def caller(self, nstype: str) -> str | None:
        return observe.namespace(self.run.init_pid, nstype)

    def release(self) -> None:
        """Let the holding COMMAND end, and wait for the solution."""
        pause.go_on(lambda: [f"/proc/{self.run.init_pid}/root{self.rootfs}{self.fifo}",
                             f"/proc/{self.pid}/root{self.fifo}"])
        self.run.wait()


def expect_new(box: Container, pid: int, nstype: str, what: str, hint: str = HINT_STEPS) -> None:
    """Fail unless COMMAND's NSTYPE namespace is not the caller's."""
    inside, caller = observe.namespace(pid, nstype), box.caller(nstype)
    if inside is None:
        raise Fail("COMMAND ended before the grader could look at it",
                   hint="COMMAND must run until it ends by itself")
    if inside == caller:
        raise Fail(f"COMMAND runs in the caller's {what} namespace",
                   expected=f"a {what} namespace other than the caller's {caller}",
                   seen=f"/proc/PID/ns/{nstype} of COMMAND is {inside}", hint=hint)


def namespace_init(pid: int) -> int | None:
    """The PID 1 of PID's PID namespace, if it is PID or one of its ancestors (host PIDs)."""
    own = observe.namespace(pid, "pid")
    here: int | None = pid
    while here and here > 1:
        if observe.namespace(here, "pid") != own:
            return None
        if (observe.status_field(here, "NSpid") or "").split()[-1:] == ["1"]:
            return here
        parent = observe.status_field(here, "PPid")
        here = int(parent) if parent and parent.isdigit() else None
    return None


# The checks ---------------------------------------------------------------------------

@exercise.check(1, "runs COMMAND")
def runs_command(trial: Trial) -> None:
    """"Run COMMAND as a small container"

    COMMAND runs at all: COMMAND is busybox's echo with a random word, which
    must appear on the terminal.
    """
    box = Container(trial)
    box.start("/bin/echo", box.tag)
    box.run.expect(box.tag, timeout=START, what=f"the output of COMMAND '/bin/echo {box.tag}'",
                   hint=HINT_EXEC)


@exercise.check(1, "passes COMMAND's arguments unchanged", needs=[runs_command])
def arguments_unchanged(trial: Trial) -> None:
    """"solution ROOTFS HOSTNAME COMMAND [ARG...]"

    Each ARG reaches COMMAND as it is: busybox's printf prints random words,
    one with a space, "*", an empty word and one starting with "-".
    """
    words = [trial.token(), f"two {trial.token(4)}", "*", "", f"-{trial.token(3)}"]
    expected = "".join(f"[{w}]" for w in words)
    box = Container(trial)
    box.start("/bin/printf", "[%s]", *words)
    box.run.expect(expected, timeout=START, what=f"printf's output {expected!r}",
                   hint="pass every ARG as its own argument, without a shell in between")


@exercise.check(2, "COMMAND, or an init of the solution's, is PID 1 of a new PID namespace",
                needs=[runs_command])
def pid_namespace(trial: Trial) -> None:
    """"new PID namespace, in which COMMAND (or an init of the solution's ... ) is PID 1"

    COMMAND's /proc/PID/ns/pid differs from the caller's, and COMMAND or one
    of its ancestors in the same PID namespace has 1 as the last NSpid of
    /proc/PID/status.
    """
    box = Container(trial)
    pid = box.hold()
    expect_new(box, pid, "pid", "PID", hint="unshare(CLONE_NEWPID), then fork(2): the child is "
               "PID 1 of the new namespace (unshare(2) moves only the children)")
    init = namespace_init(pid)
    box.release()
    if init is None:
        raise Fail("neither COMMAND nor a process above it is PID 1 of COMMAND's PID namespace",
                   hint="the first child after unshare(CLONE_NEWPID) is PID 1: run COMMAND there "
                        "(exec), or an init there that starts COMMAND")


@exercise.check(2, "an init of the solution's reaps every orphan within 1 s (exercise 4)",
                needs=[pid_namespace])
def init_reaps(trial: Trial) -> None:
    """"or an init of the solution's, which then meets exercise 4's contract ... reap every process that ends up as its child, including orphans reparented to it, so that no zombie lives for more than one second"

    COMMAND leaves orphans ((sleep T &)), reparented to the container's PID
    1; when that is an init of the solution's (not COMMAND), the grader
    reads the state of every process below it (grader/inits.py): none may
    stay a zombie for more than one second.
    """
    box = Container(trial)
    times = sorted(trial.number(1, 4) / 10 for _ in range(trial.number(2, 4)))
    pid = box.hold(f"for t in {' '.join(map(str, times))}; do (sleep $t &); done; ")
    init = namespace_init(pid)
    worst = None
    if init is not None and init != pid:  # COMMAND itself as PID 1 needs no init
        box.run.transcript.note(f"COMMAND left {len(times)} orphans, which end after "
                                f"{' '.join(map(str, times))} s; the grader watches for zombies")
        worst = watch_zombies(init, pid, until=time.monotonic() + max(times) + ZOMBIE_LIMIT + 0.3)
    box.release()
    if worst:
        raise Fail("the container's init left an orphan a zombie (state Z) for more than 1 s",
                   seen=f"PID {worst} (as the grader numbers it), still in state Z",
                   hint="an init must wait for every child, not only COMMAND: loop on "
                        "waitpid(-1, ...) whenever SIGCHLD comes (exercise pid1), or exec "
                        "COMMAND as PID 1 and let it be the init")


@exercise.check(2, "an init of the solution's forwards the six signals to COMMAND (exercise 4)",
                needs=[pid_namespace])
def init_forwards(trial: Trial) -> None:
    """"or an init of the solution's, which then meets exercise 4's contract ... forward SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 that it receives to COMMAND"

    When the container's PID 1 is an init of the solution's, the grader
    sends it the six signals in random order; COMMAND traps each and prints
    a line (grader/inits.py).
    """
    box = Container(trial)
    command = trapping_command(box.tag)
    run = box.start(*command)
    run.expect(f"ready {box.tag}", timeout=START, what=f"COMMAND's first line 'ready {box.tag}'",
               hint=HINT_EXEC)
    pid = run.require(command, HINT_EXEC)
    init = namespace_init(pid)
    if init is None or init == pid:  # COMMAND itself as PID 1 needs no init
        return
    order = list(FORWARDED)
    trial.random.shuffle(order)
    got, missing = forward_and_collect(run, init, box.tag, order)
    if missing:
        raise Fail(f"COMMAND did not receive {', '.join(missing)}, sent to the container's init",
                   expected="each of the six signals passed on to COMMAND (kill(2))",
                   seen=f"COMMAND reported {len(got)} of 6", points=round(2 * len(got) / 6, 2),
                   hint="as PID 1 the init gets only signals it handles: install a handler (or "
                        "block them and take them with sigwaitinfo(2)) and kill(COMMAND, sig) "
                        "(exercise pid1)")


@exercise.check(2, "ROOTFS is the root, by pivot_root(2) in a new mount namespace",
                needs=[runs_command])
def root_by_pivot(trial: Trial) -> None:
    """"new mount namespace with ROOTFS as root via pivot_root(2) (as in exercise 3)"

    COMMAND's mount namespace is not the caller's; /proc/PID/root of COMMAND
    is ROOTFS and holds the random marker; a child of the grader that joins
    the namespace with setns(2) lands at ROOTFS (the root mount, which
    pivot_root moves and chroot does not), and COMMAND's mountinfo has that
    same mount at "/" (grader/rootview.py).
    """
    box = Container(trial)
    pid = box.hold()
    expect_new(box, pid, "mnt", "mount", hint="unshare(CLONE_NEWNS) before any mount: "
               + HINT_PIVOT)
    inside = same_file(f"/proc/{pid}/root", box.rootfs_id)
    try:
        with open(f"/proc/{pid}/root{box.marker}") as f:
            marker = f.read().strip()
    except OSError:
        marker = None
    view = namespace_view(pid)
    own = [mounts.parse_mountinfo_line(line) for line in observe.mountinfo(pid)]
    box.release()
    if not inside or marker != box.marker_text:
        raise Fail("COMMAND's root directory is not ROOTFS",
                   expected=f"/proc/PID/root of COMMAND is {box.rootfs}, with {box.marker} in it",
                   seen=f"{box.marker} " + ("is not there" if marker is None else f"holds {marker!r}"),
                   hint=HINT_PIVOT)
    if view is None:
        raise Fail("the grader could not enter COMMAND's mount namespace")
    root, table = view
    top = [m for m in table if m.mount_point == "/"]
    mine = [m for m in own if m.mount_point == "/"]
    if root != box.rootfs_id or not top or not mine or mine[-1].mount_id != top[-1].mount_id:
        raise Fail("ROOTFS is COMMAND's root, but not the root mount of its namespace: it got "
                   "there by chroot(2), not pivot_root(2)",
                   seen=f"/ of the namespace is {describe(top[-1]) if top else 'something else'}",
                   hint="chroot(2) changes the root of one process; pivot_root(2) changes the root "
                        "mount of the whole namespace. " + HINT_PIVOT)


@exercise.check(2, "the old root is unmounted and detached, and nothing leads back to it",
                needs=[runs_command])
def old_root_detached(trial: Trial) -> None:
    """"via pivot_root(2) (as in exercise 3) ... the old root is unmounted and detached: no mount entry shows it, no path under / leads to it, and the escape of exercise 2 fails."

    No mount of COMMAND's namespace (mountinfo, and listmount(2) on Linux
    6.8+) shows a file system of the caller's outside ROOTFS; a child of the
    grader standing where COMMAND stands (its namespace, root, working
    directory, open directories) finds no way out and fails exercise 2's
    escape (grader/rootview.py).
    """
    box = Container(trial)
    pid = box.hold()
    view, inside = namespace_view(pid), look_from_inside(pid, box.outside)
    every = every_mount_of(pid)  # None before Linux 6.8: mountinfo only, then
    box.release()
    if view is None or inside is None:
        raise Fail("the grader could not enter COMMAND's mount namespace")
    found = [(m.major_minor, m.root, describe(m)) for m in view[1]]
    found += [(mm, root, f"{mm} {root}") for mm, root in every or []]
    shown = host_files_shown(box.host_files, box.rootfs_place, found)
    if shown:
        raise Fail("a mount in COMMAND's namespace still shows the host's files, outside ROOTFS",
                   seen=", ".join(shown[:4]),
                   hint="after pivot_root, umount2(old root, MNT_DETACH): it has mounts below it, "
                        "so only a lazy unmount takes it all; and bind nothing of it into ROOTFS")
    if inside.leaking_fds or not inside.cwd_inside or inside.escaped is not None:
        raise Fail("from COMMAND, a way leads out of ROOTFS into the host's files",
                   seen=("open directory descriptors " + ", ".join(map(str, inside.leaking_fds))
                         if inside.leaking_fds else "its working directory, or exercise 2's escape"),
                   hint="chdir(\"/\") after pivot_root, open nothing of the old root without "
                        "O_CLOEXEC, and unmount the old root")


@exercise.check(1, "a fresh /proc shows only the container's processes", needs=[runs_command])
def fresh_proc(trial: Trial) -> None:
    """"and a fresh /proc that shows only the container's processes"

    COMMAND's mountinfo has a proc at /proc that is none of the caller's,
    and every process listed in it (read from outside through
    /proc/PID/root/proc) is in COMMAND's PID namespace, PID 1 among them.
    """
    box = Container(trial)
    pid = box.hold()
    table = [mounts.parse_mountinfo_line(line) for line in observe.mountinfo(pid)]
    own_ns = observe.namespace(pid, "pid")
    proc = f"/proc/{pid}/root/proc"
    try:
        listed = [n for n in os.listdir(proc) if n.isdigit()]
    except OSError:
        listed = []
    strangers = [n for n in listed if observe_link(f"{proc}/{n}/ns/pid") not in (own_ns, None)]
    box.release()
    procs = [m for m in table if m.mount_point == "/proc"]
    if not procs or procs[-1].fstype != "proc":
        raise Fail("there is no proc file system at /proc in the container",
                   seen=describe(procs[-1]) if procs else "nothing mounted at /proc",
                   hint="after pivot_root, in the new PID namespace: "
                        "mount(\"proc\", \"/proc\", \"proc\", 0, NULL)")
    if procs[-1].major_minor in box.host_procs or strangers or "1" not in listed:
        raise Fail("/proc in the container shows processes outside the container",
                   seen=f"{len(strangers)} of the {len(listed)} processes it lists are in another "
                        "PID namespace" if strangers else "the host's proc, bound in",
                   hint="mount a new proc from a process of the new PID namespace (its PID 1 or "
                        "a child): a proc shows the PID namespace of the process that mounted it; "
                        "a bind of the host's /proc shows the host's")


def observe_link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


@exercise.check(2, "the hostname is HOSTNAME, in a new UTS namespace", needs=[runs_command])
def hostname(trial: Trial) -> None:
    """"new UTS namespace with hostname HOSTNAME"

    COMMAND's UTS namespace is not the caller's, and hostname(1) run there
    with nsenter(1) prints HOSTNAME (random).
    """
    box = Container(trial)
    pid = box.hold()
    expect_new(box, pid, "uts", "UTS")
    seen = observe.hostname(pid)
    box.release()
    if seen != box.hostname:
        raise Fail("COMMAND's UTS namespace has another hostname", expected=box.hostname, seen=seen,
                   hint="sethostname(2) with HOSTNAME (argv[2]) after unshare(CLONE_NEWUTS)")


@exercise.check(1, "no System V IPC object of the host is visible (a new IPC namespace)",
                needs=[runs_command])
def ipc_namespace(trial: Trial) -> None:
    """"new IPC namespace: no System V IPC object of the host is visible"

    Before the solution starts, the grader makes a shared memory segment, a
    message queue and a semaphore set with a random key in the caller's IPC
    namespace; COMMAND's IPC namespace is not the caller's, and
    /proc/sysvipc read in it (nsenter --ipc) lists no object with that key.
    """
    box = Container(trial)
    pid = box.hold()
    expect_new(box, pid, "ipc", "IPC")
    keys = views.sysv_keys(pid)
    box.release()
    if keys is None:
        raise Fail("the grader could not read COMMAND's IPC namespace")
    if box.ipc_key in keys:
        raise Fail("a System V object of the host is visible in the container",
                   seen=f"key {box.ipc_key:#010x}, made by the grader in the caller's namespace",
                   hint="unshare(CLONE_NEWIPC): a new IPC namespace starts empty")


@exercise.check(2, "the network namespace holds only lo, which is up", needs=[runs_command])
def network(trial: Trial) -> None:
    """"new network namespace holding only lo, which is up"

    COMMAND's network namespace is not the caller's; ip -json link run in
    it (nsenter --net) lists lo and nothing else, with the UP flag.
    """
    box = Container(trial)
    pid = box.hold()
    expect_new(box, pid, "net", "network", hint="unshare(CLONE_NEWNET), then bring lo up in it "
               "(ip link set lo up, or SIOCSIFFLAGS with IFF_UP)")
    links = views.links(pid)
    box.release()
    if links is None:
        raise Fail("the grader could not read COMMAND's network namespace")
    if set(links) != {"lo"}:
        raise Fail("COMMAND's network namespace holds other links than lo",
                   expected="lo only", seen=", ".join(sorted(links)) or "no link at all",
                   hint="a new network namespace holds only lo: add nothing to it")
    if "UP" not in links["lo"]:
        raise Fail("lo is down in COMMAND's network namespace", points=1,
                   expected="lo UP", seen=f"lo <{','.join(links['lo'])}>",
                   hint="a new network namespace starts with lo down: set IFF_UP on it "
                        "(ip link set lo up) before COMMAND starts")


@exercise.check(1, "/proc/self/cgroup shows / (a new cgroup namespace)", needs=[runs_command])
def cgroup_namespace(trial: Trial) -> None:
    """"new cgroup namespace: /proc/self/cgroup shows the container's cgroup as the root (/)."

    COMMAND's cgroup namespace is not the caller's (whose own cgroup is "/"
    too: the sandbox has a cgroup namespace), and COMMAND's /proc/PID/cgroup,
    read from inside its cgroup namespace (nsenter --cgroup), ends every
    line in "/".
    """
    box = Container(trial)
    pid = box.hold()
    expect_new(box, pid, "cgroup", "cgroup", hint="unshare(CLONE_NEWCGROUP) in the process that "
               "then starts COMMAND: its cgroup at that moment becomes \"/\"")
    lines = views.cgroup_lines(pid)
    box.release()
    if lines is None:
        raise Fail("the grader could not read COMMAND's cgroup namespace")
    others = [line for line in lines if not line.endswith(":/")]
    if others:
        raise Fail("COMMAND's /proc/self/cgroup does not show its cgroup as /",
                   seen="\n".join(others[:4]),
                   hint="unshare(CLONE_NEWCGROUP) after the container's process is in its cgroup, "
                        "and move nothing to another cgroup afterwards")


SHELL_REPLY = re.compile(r"I=(\S*) H=(\S*) P=(\S*)")


@exercise.check(1, "an interactive shell in the container sees ROOTFS, HOSTNAME and its /proc",
                needs=[runs_command])
def interactive_shell(trial: Trial) -> None:
    """"Run COMMAND as a small container"

    From inside: COMMAND is busybox's /bin/sh, given lines on its terminal
    with pexpect; it must find the marker in ROOTFS, HOSTNAME, and a handful
    of processes in /proc.  (A solution that gives COMMAND no terminal is not
    judged here: the contract says nothing of COMMAND's standard input.)
    """
    box = Container(trial)
    run = box.start("/bin/sh")
    shell = run.find(["/bin/sh"], timeout=START)
    if shell is None:
        raise Fail("COMMAND /bin/sh did not start: no process in the sandbox runs it", hint=HINT_EXEC)
    if observe.fd_device(shell, 0) != run.tty:
        run.transcript.note("COMMAND's standard input is not the terminal: nothing to type at")
        return
    a, b = trial.number(100, 999), trial.number(100, 999)
    run.sendline(f'echo "I=$(cat {box.marker}) H=$(hostname) P=$(ls /proc | grep -c "^[0-9]") '
                 f'{a}+{b}=$(({a}+{b}))"')
    run.expect(re.compile(SHELL_REPLY.pattern + f" {a}\\+{b}={a + b}"), timeout=START,
               what="the shell's answer to a line typed on the terminal",
               hint="COMMAND's standard input and output are the terminal the solution got")
    marker, name, count = run.match.group(1), run.match.group(2), run.match.group(3)
    run.sendline("exit 0")
    run.wait()
    if marker != box.marker_text or name != box.hostname or not count.isdigit() or int(count) > 10:
        raise Fail("the shell in the container does not see the container",
                   expected=f"{box.marker} holding {box.marker_text}, hostname {box.hostname}, "
                            "a handful of processes in /proc",
                   seen=f"marker {marker!r}, hostname {name!r}, {count} processes in /proc",
                   hint=HINT_STEPS)


def start_box(trial: Trial):
    """How the status checks start the solution: in a fresh container."""
    return lambda command: Container(trial).start(*command)


@exercise.check(1, "the exit status is COMMAND's", needs=[runs_command])
def exit_status(trial: Trial) -> None:
    """"The exit status of solution is COMMAND's."

    grader/status.py: COMMAND exits with a code it draws itself (busybox's
    $RANDOM); the kernel reports how it ended; the solution's status must be
    that code.
    """
    exit_code_check(trial, start_box(trial), random=SHELL_RANDOM)


@exercise.check(1, "killed by signal N, COMMAND gives exit status 128+N", needs=[runs_command])
def signal_status(trial: Trial) -> None:
    """"or 128+N if COMMAND was killed by signal N (as a shell reports it; a solution that execs COMMAND and so dies by the same signal meets this too)."

    grader/status.py: the grader kills COMMAND with a usual signal, then a
    rarer one (SIGKILL when COMMAND is itself the container's PID 1, which
    ignores the others); the solution's status must be 128+N, or death by N.
    """
    signal_status_check(trial, start_box(trial))
