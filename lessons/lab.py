"""What the lesson notebooks share: shells to type into, pictures of namespaces.

A notebook cell should show one fact about the kernel, so the plumbing that
several lessons need lives here, where a curious student can read it:

``Shell``
    An interactive sh(1) on a pseudo-terminal, driven with pexpect.  A cell
    types a command into it and prints what a terminal would show::

        sh1 = Shell("sh1")
        sh1("hostname")          # prints "sh1# hostname" and then "vm"

    The shell keeps its state between cells, as a terminal does: after
    ``sh2("unshare --uts sh")`` the next command runs in the new shell, in
    the new UTS namespace.  Several shells side by side are the classic
    namespace demo (uts_namespaces(7), Kerrisk's "Namespaces in operation").

``picture``
    Which process is in which namespace, read from /proc/PID/ns and drawn
    with graphviz.  Jupyter shows the drawing; the text under it (grouped by
    namespace) is what the lesson tests compare.

``AS_NOBODY`` and ``become_nobody``
    Run a command, or the rest of a child process, as an unprivileged user,
    to show what the kernel refuses without privilege.

Rootless: the notebooks run as root and as a normal user, with the same
output.  As a normal user the shells start inside one user namespace in
which you are root (``unshare --user --map-root-user``, see user_namespaces(7)),
so that ``unshare --uts`` and ``nsenter`` typed into them work as they do
for root.  Everything else uses labkit, which adds such a user namespace on
its own when it is not run as root.

Importing this module also puts the virtualenv's ``bin`` directory first on
PATH, so that ``!labkit ...`` in a notebook finds the labkit command even
when Jupyter was started without activating the virtualenv.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable

import graphviz
import pexpect

from labkit import uts
from labkit.namespace import Namespace

# The labkit command lives next to the kernel's Python (.venv/bin/labkit).
_BIN = os.path.dirname(sys.executable)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")

ROOT = os.geteuid() == 0
NOBODY = 65534  # the overflow uid: "nobody" on Debian

# Prefix for a shell command that must run without privilege.  As root we
# drop to nobody with setpriv(1); a normal user is unprivileged already.
AS_NOBODY = f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups" if ROOT else ""


def become_nobody() -> None:
    """In a child process: give up root for good (a normal user stays as is).

    The order matters: supplementary groups and the gid first, because once
    the uid is no longer 0 the process may not change them any more.
    """
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)


# Shells ---------------------------------------------------------------------

PROMPT = "<nslab-prompt>"  # what the shells print when they wait; never shown
_shells: list[Shell] = []  # open shells; as a normal user they share one user namespace


class Shell:
    """An interactive sh(1) that cells type commands into.

    ``sh(command)`` prints the command after a prompt made of the shell's
    name, then the command's output; ``sh.output(command)`` returns the
    output instead.  ``sh.pid`` is the shell started first;
    ``sh.current_pid()`` the shell now reading commands, which differs after
    ``unshare ... sh`` or ``nsenter ... sh``: those run a new shell, and the
    first one waits for it.
    """

    def __init__(self, name: str, timeout: float = 30) -> None:
        self.name, self.timeout = name, timeout
        # PS1 is exported, so shells started inside (unshare ... sh) use it too.
        # TERM=dumb keeps colours and cursor movement out of the output.
        env = dict(os.environ, PS1=PROMPT, PS2="", TERM="dumb")
        argv = _shell_command()
        self._sh = pexpect.spawn(argv[0], argv[1:], env=env, echo=False, encoding="utf-8",
                                 codec_errors="replace", dimensions=(40, 120), timeout=timeout)
        try:
            self._sh.expect_exact(PROMPT)
        except (pexpect.EOF, pexpect.TIMEOUT):
            self._sh.close(force=True)
            raise OSError(f"{name}: `{' '.join(argv)}` gave no prompt: {self._sh.before.strip()!r}") from None
        self.pid: int = self._sh.pid
        _shells.append(self)

    def __call__(self, command: str) -> None:
        """Type COMMAND and Enter, and print what a terminal would show."""
        output = self.output(command)
        print(f"{self.name}# {command}")
        print(output, end="" if not output or output.endswith("\n") else "\n")

    def output(self, command: str) -> str:
        """Type COMMAND and Enter, wait for the next prompt, and return the output."""
        self._sh.sendline(command)
        try:
            self._sh.expect_exact(PROMPT)
        except pexpect.TIMEOUT:
            raise TimeoutError(f"{self.name}: `{command}` did not finish within "
                               f"{self.timeout} s (is it waiting for input?)") from None
        except pexpect.EOF:
            raise EOFError(f"{self.name}: the shell ended during `{command}`") from None
        return self._sh.before.replace("\r\n", "\n")

    def current_pid(self) -> int:
        """The PID of the shell that now reads our commands ($$ in that shell)."""
        return int(self.output("echo $$"))

    def close(self) -> None:
        """End the shell and every shell started inside it (they get SIGHUP)."""
        if self in _shells:
            _shells.remove(self)
        self._sh.close(force=True)

    def __repr__(self) -> str:
        return f"<Shell {self.name} pid={self.pid}>"


def _shell_command() -> list[str]:
    # +m: no job control, so no "[1] 4242" or "Done" lines in the transcript.
    sh = ["sh", "+m"]
    if ROOT:
        return sh
    for other in _shells:
        if other._sh.isalive():  # join the user namespace the open shells are in
            return ["nsenter", f"--target={other.pid}", "--user", "--preserve-credentials", *sh]
    return ["unshare", "--user", "--map-root-user", *sh]


def close_all() -> None:
    """Close every shell the notebook opened (the last cell of a lesson calls this)."""
    for sh in list(_shells):
        sh.close()


# Who is in which namespace -----------------------------------------------------

def processes_in(ns: Namespace) -> list[int]:
    """The PIDs of the processes in NS that we may look at (lsns(8) does the same walk)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Namespace.of(int(entry), ns.type.name) == ns:
                    found.append(int(entry))
            except OSError:  # gone meanwhile, or another user's process
                continue
    return sorted(found)


def hostname_seen_by(pid: int) -> str:
    """The hostname that process PID sees (a note for ``picture``).

    labkit.uts.hostname_of joins PID's UTS namespace, as ``nsenter -u``
    does.  Joining needs CAP_SYS_ADMIN even for the namespace one is in
    already, which a normal user lacks in its own namespaces: so for the
    namespace we share with PID we just read our own hostname.
    """
    if Namespace.of(pid, "uts") == Namespace.of("self", "uts"):
        return uts.hostname()
    return uts.hostname_of(pid)


class Picture:
    """A graphviz drawing that Jupyter shows as SVG, with a text version under it.

    Notebooks keep both: the SVG for the student, the text for nbval, which
    compares it with a fresh run.
    """

    def __init__(self, graph: graphviz.Digraph, text: str) -> None:
        self.graph, self.text = graph, text

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        return {"image/svg+xml": self.graph.pipe(format="svg", encoding="utf-8"),
                "text/plain": self.text}

    def __repr__(self) -> str:
        return self.text


COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")  # one per process's arrows


def picture(processes: dict[str, int | Shell], types: Iterable[str] = ("uts",),
            note: Callable[[int], str] | None = None) -> Picture:
    """Draw PROCESSES ({label: pid or Shell}) and the namespaces of TYPES they are in.

    A namespace is one node however many processes are in it: that is the
    whole idea of "same link target, same namespace".  NOTE(pid), if given,
    adds a line to each namespace node, read through one of its processes
    (e.g. the hostname of a UTS namespace).
    """
    members = [(f"process-{i}", label, p.current_pid() if isinstance(p, Shell) else p)
               for i, (label, p) in enumerate(processes.items())]
    types = list(types)
    # One type: processes left, namespaces right.  Several: processes on top and
    # a column of namespaces per type below, which crosses fewer edges.
    g = graphviz.Digraph(graph_attr={"rankdir": "LR", "nodesep": "0.25", "ranksep": "1.2"},
                         node_attr={"fontname": "Helvetica", "fontsize": "11"})
    # Node names are ids of our own: graphviz would read "uts:[...]" as node "uts", port "[...]".
    for node, label, _ in members:
        g.node(node, label, shape="box", style="rounded")
    colour = {node: COLOURS[i % len(COLOURS)] for i, (node, _, _) in enumerate(members)}
    lines = []
    for nstype in types:
        groups: dict[Namespace, list[tuple[str, str, int]]] = {}
        for member in members:
            groups.setdefault(Namespace.of(member[2], nstype), []).append(member)
        with g.subgraph(name=f"cluster_{nstype}") as cluster:
            cluster.attr(label=f"{nstype} namespaces", fontname="Helvetica", style="dashed")
            for ns, inside in groups.items():
                extra = note(inside[0][2]) if note else ""
                cluster.node(f"ns-{ns.inode}", str(ns) + (f"\\n{extra}" if extra else ""), shape="ellipse")
                for node, _, _ in inside:
                    g.edge(node, f"ns-{ns.inode}", color=colour[node])
                head = f"{str(ns):18}  {extra:24}" if extra else f"{str(ns):18}"
                lines.append(f"{head}  <- {', '.join(label for _, label, _ in inside)}")
    return Picture(g, "\n".join(lines))
