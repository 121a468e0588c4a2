"""What the lesson notebooks share: shells to type into, pictures of namespaces, processes.

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

``pid_tree`` and ``topology``
    Two more drawings from the live system: the tree of PID namespaces with
    each process's PIDs (lesson 05), and the network namespaces of a
    sandbox with their devices, addresses and veth pairs (lesson 06).

``AS_NOBODY`` and ``become_nobody``
    Run a command, or the rest of a child process, as an unprivileged user,
    to show what the kernel refuses without privilege.

``wait_until``, ``program_of``, ``children``, ``descendants``, ``wait_for_child``
    Finding and waiting for the processes that another one starts, read
    from /proc, with a time limit so that a lesson never hangs.

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
import socket
import sys
import time
from collections.abc import Callable, Iterable

import graphviz
import pexpect

from labkit import pid as pidns
from labkit import uts
from labkit.join import run_in
from labkit.namespace import Namespace
from labkit.procfs import read_text

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
    first one waits for it.  Both are PIDs as this notebook numbers them.
    """

    def __init__(self, name: str, timeout: float = 30) -> None:
        self.name, self.timeout = name, timeout
        # PS1 is exported, so shells started inside (unshare ... sh) use it too.
        # TERM=dumb keeps colours and cursor movement out of the output.
        env = dict(os.environ, PS1=PROMPT, PS2="", TERM="dumb")
        argv = _shell_command()
        self._sh = pexpect.spawn(argv[0], argv[1:], env=env, echo=False, encoding="utf-8",
                                 codec_errors="replace", dimensions=(40, 120), timeout=timeout)
        # pexpect waits 50 ms before each send, for terminals that echo late; ours does not echo.
        self._sh.delaybeforesend = None
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
        """The PID, as we number it, of the shell that now reads our commands.

        ``echo $$`` alone is not enough: a shell answers with its PID in its
        own PID namespace (1 after ``unshare --pid --fork sh``), and that
        number names another process here.  So we look below the first
        shell for a shell whose *last* NSpid number (its PID in its own
        namespace, pid_namespaces(7)) is that one; should there be several,
        the one in the deepest namespace.  ``echo`` is built into the shell,
        so asking starts no process and uses up no PID.
        """
        inside = int(self.output("echo $$"))
        program = program_of(self.pid)

        def is_it(pid: int) -> bool:
            try:
                return pidns.nspid(pid)[-1] == inside and program_of(pid) == program
            except OSError:  # it ended meanwhile
                return False

        found = [pid for pid in descendants(self.pid) if is_it(pid)]
        if not found:
            raise LookupError(f"{self.name}: no shell below process {self.pid} has PID {inside} "
                              "in its own PID namespace")
        return max(found, key=lambda pid: len(pidns.nspid(pid)))

    def close(self) -> None:
        """End the shell and every shell started inside it (they get SIGHUP)."""
        if self in _shells:
            _shells.remove(self)
        self._sh.close(force=True)

    def __repr__(self) -> str:
        return f"<Shell {self.name} pid={self.pid}>"


def _shell_command() -> list[str]:
    # An interactive sh(1) has job control, as in a terminal: it gives the
    # terminal to each command it runs and takes it back afterwards.  That
    # matters after `unshare --pid --fork sh` ... `exit`: the inner shell
    # cannot give the terminal back to a process group of a namespace above
    # its own ("Cannot set tty process group"), so the outer one must take it.
    sh = ["sh"]
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


# Processes, read from /proc ----------------------------------------------------

def wait_until(condition: Callable[[], object], what: str, timeout: float = 20) -> object:
    """Poll CONDITION until it returns something true, and return that.

    The time limit only keeps a lesson from hanging when something went
    wrong; no lesson measures how long anything takes.
    """
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting for {what} after {timeout:.0f} s")
        time.sleep(0.01)
    return result


def program_of(pid: int) -> str:
    """The program process PID runs, as ps(1) shows it (/proc/PID/comm)."""
    return read_text(f"/proc/{pid}/comm")


def children(pid: int) -> list[int]:
    """The children of process PID, oldest first (/proc/PID/task/PID/children, proc(5)).

    That file lists the children of one thread, here PID's main thread:
    enough for the shells and the single-threaded processes of the lessons.
    """
    try:
        return [int(child) for child in read_text(f"/proc/{pid}/task/{pid}/children").split()]
    except FileNotFoundError:  # PID has ended
        return []


def descendants(top: int) -> list[int]:
    """TOP and every process below it: its children, their children, and so on."""
    found, todo = [], [top]
    while todo:
        found.append(todo.pop())
        todo.extend(children(found[-1]))
    return sorted(found)


def wait_for_child(parent: int, program: str, timeout: float = 20) -> int:
    """The PID of PARENT's child that runs PROGRAM, once there is one."""
    def child_running_it() -> int | None:
        for child in children(parent):
            try:
                if program_of(child) == program:
                    return child
            except FileNotFoundError:
                continue
        return None
    return wait_until(child_running_it, f"a child of process {parent} running {program}", timeout)


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


# The hostname that process PID sees (a note for ``picture``): labkit.uts.hostname_of
# joins PID's UTS namespace, as ``nsenter -u`` does, and reads our own for ours.
hostname_seen_by = uts.hostname_of


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


COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")  # one per process
FONT = {"fontname": "Helvetica", "fontsize": "11"}


def picture(processes: dict[str, int | Shell], types: Iterable[str] = ("uts",),
            note: Callable[[int], str] | None = None) -> Picture:
    """Draw PROCESSES ({label: pid or Shell}) and the namespaces of TYPES they are in.

    A namespace is one node however many processes are in it: that is the
    whole idea of "same link target, same namespace".  Each type gets a box
    of its own, with the processes on the left (in one colour each, in every
    box) and that type's namespaces on the right; one box per type keeps
    the arrows from crossing.  NOTE(pid), if given, adds a line to each
    namespace node, read through one of its processes (e.g. the hostname of
    a UTS namespace).
    """
    members = [(label, p.current_pid() if isinstance(p, Shell) else p) for label, p in processes.items()]
    g = graphviz.Digraph(graph_attr={"rankdir": "LR", "nodesep": "0.15", "ranksep": "0.6"},
                         node_attr={**FONT, "height": "0.35"})
    lines = []
    boxes = []
    for nstype in types:
        groups: dict[Namespace, list[int]] = {}  # namespace -> indexes of MEMBERS in it
        for i, (_, pid) in enumerate(members):
            groups.setdefault(Namespace.of(pid, nstype), []).append(i)
        box = graphviz.Digraph(name=f"cluster_{nstype}", graph_attr={
            "label": f"{nstype} namespaces", "labeljust": "l", "style": "dashed", **FONT})
        # Node names are ids of our own: graphviz would read "uts:[...]" as node "uts", port "[...]".
        for i, (label, _) in enumerate(members):
            colour = COLOURS[i % len(COLOURS)]
            box.node(f"{nstype}-process-{i}", label, shape="box", style="rounded",
                     color=colour, fontcolor=colour)
        for n, (ns, inside) in enumerate(groups.items()):
            extra = note(members[inside[0]][1]) if note else ""
            box.node(f"{nstype}-ns-{n}", str(ns) + (f"\\n{extra}" if extra else ""), shape="ellipse")
            for i in inside:
                box.edge(f"{nstype}-process-{i}", f"{nstype}-ns-{n}", color=COLOURS[i % len(COLOURS)])
            head = f"{str(ns):18}  {extra:24}" if extra else f"{str(ns):18}"
            lines.append(f"{head}  <- {', '.join(members[i][0] for i in inside)}")
        boxes.append(box)
    for box in reversed(boxes):  # with rankdir LR graphviz puts the first cluster at the bottom
        g.subgraph(box)
    return Picture(g, "\n".join(lines))


# The tree of PID namespaces (lesson 05) ------------------------------------------

def pid_tree(processes: dict[int, str]) -> Picture:
    """Draw the PID namespaces of PROCESSES ({pid: label}) as the tree they form.

    Each namespace is placed below its parent, as the ioctl NS_GET_PARENT
    (ioctl_ns(2)) reports it, with its level and its processes; each process
    shows its PIDs from our level down to its own (the NSpid line of
    /proc/PID/status).  Our own PID namespace is the root of the drawing.
    """
    ours = Namespace.of("self", "pid")
    spaces: dict[Namespace, list[tuple[int, str]]] = {}
    for pid, label in processes.items():
        spaces.setdefault(Namespace.of(pid, "pid"), []).append((pid, label))
    g = graphviz.Digraph(graph_attr={"rankdir": "TB"}, node_attr=FONT)
    lines: list[str] = []

    def draw(ns: Namespace, depth: int) -> None:
        node = f"ns-{ns.inode}"
        g.node(node, f"{ns}\\nlevel {depth}", shape="ellipse")
        names = []
        for i, (pid, label) in enumerate(spaces.get(ns, [])):
            ids = " / ".join(map(str, pidns.nspid(pid)))
            g.node(f"{node}-{i}", f"{label}\\nPID {ids}", shape="box", style="rounded")
            g.edge(node, f"{node}-{i}", style="dashed", arrowhead="none")
            names.append(f"{label} (PID {ids})")
        lines.append("   " * depth + f"{ns}: " + ", ".join(names))
        for child in spaces:
            if child != ours and child.parent() == ns:  # NS_GET_PARENT
                g.edge(node, f"ns-{child.inode}", penwidth="2")
                draw(child, depth + 1)

    draw(ours, 0)
    return Picture(g, "\n".join(lines))


# The network namespaces of a sandbox (lesson 06) -----------------------------------

def topology(pid: int, name: str = "sandbox") -> Picture:
    """Draw the network namespace of process PID (called NAME) and those named in its /run/netns.

    A child joins PID's namespaces (labkit.join.run_in, as nsenter does) and
    asks each network namespace for its devices and IPv4 addresses over
    netlink, as ``ip link`` and ``ip address`` do.  The two ends of a veth
    pair are in different namespaces; each knows the other's interface index
    (IFLA_LINK, the "@if2" of ``ip link``), which is how they are matched.
    """
    spaces = run_in(pid, "all", _network_namespaces, name)
    g = graphviz.Graph(graph_attr={"rankdir": "LR"}, node_attr=FONT, edge_attr={**FONT, "fontsize": "10"})
    lines, ends = [], {}
    for space, (inode, devices) in spaces.items():
        with g.subgraph(name=f"cluster_{space}") as box:
            box.attr(label=f"{space}\\nnet:[{inode}]", style="dashed", **FONT)
            for index, dev in sorted(devices.items()):
                addresses = ", ".join(dev["addresses"]) or "no address"
                state = "up" if dev["up"] else "down"
                box.node(f"{space}-{index}", f"{dev['name']}\\n{addresses}\\n{state}",
                         shape="box", style="rounded")
                lines.append(f"{space:8} {dev['name']:10} {state:5} {addresses}")
                if dev["kind"] == "veth":
                    ends[(space, index)] = dev["peer"]
    for (space, index), peer in ends.items():
        for (other, other_index), other_peer in ends.items():
            if space < other and (other_index, other_peer) == (peer, index):
                g.edge(f"{space}-{index}", f"{other}-{other_index}", label="veth", penwidth="2")
                lines.append(f"veth pair: {space} {spaces[space][1][index]['name']} <-> "
                             f"{other} {spaces[other][1][other_index]['name']}")
    return Picture(g, "\n".join(lines))


def _network_namespaces(name: str) -> dict[str, tuple[int, dict[int, dict]]]:
    """In the sandbox: {namespace name: (nsfs inode, {ifindex: device})} for ours and /run/netns/*."""
    from labkit import net  # pyroute2: imported only by the lessons that draw a network

    spaces = {}
    for space in (name, *net.names()):
        where = None if space == name else space
        with net.rtnl(where) as ipr:
            devices = {msg["index"]: {"name": msg.get("ifname"), "peer": msg.get("link"),  # IFLA_LINK
                                      "kind": msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
                                      "up": bool(msg["flags"] & net.IFF_UP), "addresses": []}
                       for msg in ipr.get_links()}
            for a in ipr.get_addr(family=socket.AF_INET):
                devices[a["index"]]["addresses"].append(f"{a.get('address')}/{a['prefixlen']}")
        inode = os.stat("/proc/self/ns/net" if where is None else net.path_of(space)).st_ino
        spaces[space] = (inode, devices)
    return spaces
