"""The network a solution built in its sandbox, seen from outside.

Named network namespaces (ip-netns(8)) are bind mounts of nsfs files under
/run/netns, in the mount namespace where they were made: in the sandbox,
whose /run is a tmpfs of its own, so the machine's /run/netns never
changes.  The grader reaches them through /proc/PID/root of a process of
the sandbox, but resolves every path with openat2(2) RESOLVE_IN_ROOT |
RESOLVE_NO_SYMLINKS: a symbolic link that a solution put there cannot send
the grader to a file of the machine's.  A file that is a network namespace
answers the ioctl NS_GET_NSTYPE with CLONE_NEWNET; its inode number is the
namespace's identity (what /proc/PID/ns/net links show).

    names(pid)           what ip netns list lists: the entries of /run/netns
    netns_mounts(pid)    the mounts at /run/netns/*, from /proc/PID/mountinfo
    open_named(pid, n)   a descriptor of the namespace named N, or None
    look(fd, others)     links, addresses, routes of a namespace, and the ids
                         it gives OTHERS (IFLA_LINK_NETNSID refers to them)
    ping, tcp            traffic between two namespaces

The grader never runs a program inside the sandbox's mount namespace (a
solution could have mounted its own over ip); it reads a namespace through
a netlink socket of its own, made there by a thread that setns(2)'d into it
(a network namespace is per thread; pyroute2's IPRoute, the library form of
ip(8)), and runs ping(8) from the machine's /usr through nsenter --net.
The grader keeps no descriptor of a namespace beyond one look, so that a
namespace the solution deletes really goes.

See network_namespaces(7), ip-netns(8), veth(4), rtnetlink(7), openat2(2),
ioctl_ns(2), setns(2).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from labkit import syscalls

from . import observe
from .engine import Trial
from .feedback import Fail
from .rerun import Ran, Rerun

T = TypeVar("T")

NETNS_DIR = "run/netns"  # inside the sandbox's root
NS_GET_NSTYPE = 0xB703  # <linux/nsfs.h>, Linux 4.11
CLONE_NEWNET = 0x40000000
IFF_UP = 0x1
KERNEL_MADE = ("fe80:", "ff00:")  # IPv6 link-local and multicast: the kernel's, once a link is up
NETNS_TEARDOWN = 5.0  # seconds for the kernel to take a deleted namespace apart (a workqueue does)
SYS_OPENAT2 = 437  # x86_64 and aarch64 alike (the syscall table is shared since 5.1)
RESOLVE_NO_SYMLINKS, RESOLVE_IN_ROOT = 0x04, 0x10

_libc = ctypes.CDLL(None, use_errno=True)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_in_root(pid: int, path: str, flags: int = os.O_RDONLY) -> int:
    """openat2(2) PATH as PID's root directory sees it, following no symbolic link."""
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)
        fd = _libc.syscall(SYS_OPENAT2, root, path.lstrip("/").encode(), ctypes.byref(how),
                           ctypes.sizeof(how))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return fd
    finally:
        os.close(root)


def names(pid: int) -> list[str]:
    """The names in /run/netns of PID's mount namespace: what ip netns list lists there."""
    try:
        fd = open_in_root(pid, NETNS_DIR, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return []
    try:
        return sorted(os.listdir(fd))
    finally:
        os.close(fd)


def netns_mounts(pid: int) -> list[str]:
    """The mounts below /run/netns in PID's mount namespace ("/run/netns/red nsfs")."""
    found = []
    for line in observe.mountinfo(pid):
        fields = line.split()
        point, fstype = fields[4], fields[fields.index("-") + 1]
        if point.startswith("/" + NETNS_DIR + "/"):
            found.append(f"{point} {fstype}")
    return found


def open_named(pid: int, name: str) -> int | None:
    """A descriptor of the network namespace that /run/netns/NAME names, or None if it names none."""
    try:
        fd = open_in_root(pid, f"{NETNS_DIR}/{name}")
    except OSError:
        return None
    try:
        if fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET:
            return fd
    except OSError:  # ENOTTY: a plain file, not a namespace
        pass
    os.close(fd)
    return None


def identity(fd: int) -> int:
    """The inode number of a namespace: the N of net:[N]."""
    return os.fstat(fd).st_ino


@contextlib.contextmanager
def named(pid: int, *wanted: str):
    """Descriptors of the namespaces named WANTED (None for a name that is none), closed after."""
    fds = {name: open_named(pid, name) for name in wanted}
    try:
        yield fds
    finally:
        for fd in fds.values():
            if fd is not None:
                os.close(fd)


# Inside a namespace: a thread of our own ----------------------------------------------

def in_netns(fd: int, fn: Callable[[], T]) -> T:
    """FN() called in a new thread that has joined the network namespace open on FD."""
    result: dict[str, object] = {}

    def body() -> None:
        try:
            syscalls.setns(fd, "net")
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            result["error"] = e

    thread = threading.Thread(target=body, name="grader-netns")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str  # "veth", "dummy", ... ("" for lo)
    up: bool  # administratively up (IFF_UP)
    peer_index: int | None  # IFLA_LINK: a veth's peer
    peer_nsid: int | None  # IFLA_LINK_NETNSID: where the peer is (None: in this namespace)

    def __str__(self) -> str:
        return f"{self.name} ({self.kind or 'device'}, {'up' if self.up else 'down'})"


@dataclass
class View:
    """A network namespace as netlink shows it."""

    identity: int = 0  # the namespace's inode number
    links: list[Link] = field(default_factory=list)
    addresses: list[tuple[int, str]] = field(default_factory=list)  # (ifindex, "10.1.2.3/24")
    routes: list[str] = field(default_factory=list)
    nsids: dict[int, int] = field(default_factory=dict)  # identity of another namespace -> its id here

    def link(self, index: int | None) -> Link | None:
        return next((link for link in self.links if link.index == index), None)

    def addresses_of(self, index: int) -> list[str]:
        return [a for i, a in self.addresses if i == index]

    def state(self) -> list[str]:
        """Links, addresses and routes, as lines to compare and show.

        Without what the kernel adds by itself, in its own time, once a link
        is up: IPv6 link-local addresses (after duplicate address detection)
        and their routes, and the multicast route.  Comparing those would
        judge the moment, not the solution.
        """
        return sorted([f"link {link.index} {link}" for link in self.links]
                      + [f"address {a} on {self._name(i)}" for i, a in self.addresses
                         if not a.startswith(KERNEL_MADE)]
                      + [f"route {r}" for r in self.routes if not r.split()[3].startswith(KERNEL_MADE)])

    def _name(self, index: int) -> str:
        link = self.link(index)
        return link.name if link else f"link {index}"


def look(fd: int, others: dict[int, int] | None = None) -> View:
    """The namespace open on FD; OTHERS: descriptors of namespaces whose ids in it we want."""
    # Imported here, before a thread enters the namespace: pyroute2 takes 3 s
    # to import on the lab VM's emulated CPU, and only the network checks need it.
    from pyroute2 import IPRoute

    def read() -> View:
        view = View(identity(fd))
        with IPRoute() as ip:
            for msg in ip.get_links():
                info = msg.get_attr("IFLA_LINKINFO")
                view.links.append(Link(
                    msg["index"], msg.get_attr("IFLA_IFNAME"),
                    (info.get_attr("IFLA_INFO_KIND") if info else None) or "",
                    bool(msg["flags"] & IFF_UP), msg.get_attr("IFLA_LINK"),
                    msg.get_attr("IFLA_LINK_NETNSID")))
            for msg in ip.get_addr():
                address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                view.addresses.append((msg["index"], f"{address}/{msg['prefixlen']}"))
            for family in (socket.AF_INET, socket.AF_INET6):
                for msg in ip.get_routes(family=family, table=0):  # 0: every table
                    view.routes.append(_route(msg))
            for other_fd in (others or {}).values():
                nsid = ip.get_netnsid(fd=other_fd).get("nsid")
                if nsid is not None and nsid >= 0:
                    view.nsids[identity(other_fd)] = nsid
        return view
    return in_netns(fd, read)


def veth_pairs(a: View, b: View) -> list[tuple[Link, Link]]:
    """The veth pairs with one end in A and the other in B, each end naming the other as its peer.

    A veth's peer is IFLA_LINK (an ifindex) in the namespace that
    IFLA_LINK_NETNSID names, an id that only the namespace holding the veth
    gives to the other (RTM_GETNSID): names of links prove nothing.
    """
    found = []
    for end_a in (link for link in a.links if link.kind == "veth"):
        end_b = b.link(end_a.peer_index) if end_a.peer_nsid == a.nsids.get(b.identity) else None
        if (end_b and end_b.kind == "veth" and end_b.peer_index == end_a.index
                and end_b.peer_nsid == b.nsids.get(a.identity)):
            found.append((end_a, end_b))
    return found


def _route(msg) -> str:
    family = "inet6" if msg["family"] == socket.AF_INET6 else "inet"
    destination = msg.get_attr("RTA_DST") or "default"
    gateway = msg.get_attr("RTA_GATEWAY")
    return (f"{family} table {msg.get_attr('RTA_TABLE') or msg['table']} "
            f"{destination}/{msg['dst_len']} oif {msg.get_attr('RTA_OIF')}"
            + (f" via {gateway}" if gateway else ""))


# Traffic -------------------------------------------------------------------------------

def ping(fd: int, address: str) -> bool:
    """Does ADDRESS answer one ping(8) sent from the namespace open on FD (within 3 s)?"""
    try:
        out = subprocess.run(["nsenter", f"--net=/proc/self/fd/{fd}", "ping", "-c", "1", "-W", "3",
                              "-q", address], pass_fds=(fd,), capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def tcp(client: int, server: int, address: str, timeout: float = 3) -> str | None:
    """A TCP connection from the namespace CLIENT to ADDRESS in SERVER, both ways; None if it works.

    Otherwise a short account of what failed.
    """
    listener = in_netns(server, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    try:
        try:
            listener.bind((address, 0))
        except OSError as e:
            return f"{address} is not an address of the server's namespace ({e.strerror})"
        listener.listen(1)
        listener.settimeout(timeout)
        port, there, back = listener.getsockname()[1], secrets.token_hex(8), secrets.token_hex(8)
        caller = in_netns(client, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        with caller:
            caller.settimeout(timeout)
            try:
                caller.connect((address, port))
                peer, _ = listener.accept()
                with peer:
                    peer.settimeout(timeout)
                    caller.sendall(there.encode())
                    got = peer.recv(64).decode()
                    peer.sendall(back.encode())
                    answer = caller.recv(64).decode()
            except OSError as e:
                return f"connect to {address} port {port}: {e.strerror or e}"
        if (got, answer) != (there, back):
            return f"the bytes sent did not arrive unchanged ({got!r}, {answer!r})"
        return None
    finally:
        listener.close()


# Exercise veth's runs: a wire drawn at random, up and down in one sandbox ---------------

PRIVATE = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("172.16.0.0/12"),
           ipaddress.ip_network("192.168.0.0/16"))
PREFIXES = (16, 20, 22, 24, 24, 25, 26, 27, 28, 29, 30, 30)  # mostly a /24 or smaller, to a /30


@dataclass(frozen=True)
class Wire:
    """The arguments of ``up``: two names and two addresses with their prefix length."""

    a: str
    address_a: str
    b: str
    address_b: str

    @property
    def ip_a(self) -> str:
        return self.address_a.split("/")[0]

    @property
    def ip_b(self) -> str:
        return self.address_b.split("/")[0]


def draw_name(trial: Trial) -> str:
    words = ("red", "blue", "green", "left", "right", "east", "west", "alpha", "beta", "ns", "host")
    return f"{trial.choice(words)}-{trial.token(5)}"


def draw_wire(trial: Trial) -> Wire:
    """Two new names, and two addresses of one random private network (a /16 to a /30)."""
    prefix = trial.choice(PREFIXES)
    space = trial.choice(PRIVATE)
    size = 1 << (32 - prefix)
    start = int(space.network_address) + size * trial.number(0, space.num_addresses // size - 1)
    first, second = trial.random.sample(range(1, size - 1), 2)  # neither network nor broadcast
    a, b = draw_name(trial), draw_name(trial)
    while b == a:
        b = draw_name(trial)
    return Wire(a, f"{ipaddress.ip_address(start + first)}/{prefix}",
                b, f"{ipaddress.ip_address(start + second)}/{prefix}")


class Lab:
    """A sandbox where ``solution up`` and ``solution down`` run one after another.

    The host (the sandbox's own network namespace) is read before anything
    runs; WIRE is drawn for the first ``up``.
    """

    def __init__(self, trial: Trial) -> None:
        self.trial = trial
        self.rerun = Rerun(trial)
        self.run = self.rerun.start()
        self.pid = self.rerun.pid
        self.host_identity = os.stat(f"/proc/{self.pid}/ns/net").st_ino
        self.host_before = self.host()
        self.wire = draw_wire(trial)

    def host(self) -> View:
        """The sandbox's own network namespace: "the host"."""
        fd = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return look(fd)
        finally:
            os.close(fd)

    def added_to_host(self, settle: float = 0.0) -> list[str]:
        """The host's links, addresses and routes that were not there before anything ran.

        SETTLE: seconds to wait for them to go.  A namespace that is deleted
        is taken apart later, by the kernel's cleanup work, and a veth end
        whose peer was in it goes only then.
        """
        before, deadline = self.host_before.state(), time.monotonic() + settle
        while True:
            added = [line for line in self.host().state() if line not in before]
            if not added or time.monotonic() >= deadline:
                return added
            time.sleep(0.05)

    def up(self, wire: Wire | None = None) -> Ran:
        w = wire or self.wire
        return self.rerun.solution("up", w.a, w.address_a, w.b, w.address_b)

    def down(self, wire: Wire | None = None) -> Ran:
        w = wire or self.wire
        return self.rerun.solution("down", w.a, w.b)

    def add_namespace(self) -> str:
        """Name a new namespace in the sandbox as ip netns add does; return its random name."""
        name = draw_name(self.trial)
        ip = shutil.which("ip") or "/sbin/ip"
        if self.rerun.command(ip, "netns", "add", name).exit.status != 0:
            raise RuntimeError("ip netns add failed in the sandbox")
        return name

    def both(self) -> tuple[View, View]:
        """The wire's NS_A and NS_B; Fail if a name no longer names a namespace."""
        a, b = self.views()
        if a is None or b is None:
            raise Fail("a namespace that `up` named is gone: /run/netns names no namespace")
        return a, b

    def views(self, a: str | None = None, b: str | None = None) -> tuple[View | None, View | None]:
        """The namespaces named A and B (default: the wire's), each with the other's id in it."""
        a, b = a or self.wire.a, b or self.wire.b
        with named(self.pid, a, b) as fds:
            fa, fb = fds[a], fds[b]
            return (look(fa, {fb: fb} if fb is not None else {}) if fa is not None else None,
                    look(fb, {fa: fa} if fa is not None else {}) if fb is not None else None)

    def everything(self) -> list[str]:
        """Every name in /run/netns with its namespace's links, addresses and routes, and the host's."""
        lines = [f"host: {line}" for line in self.host().state()]
        for name in names(self.pid):
            with named(self.pid, name) as fds:
                if fds[name] is None:
                    lines.append(f"{name}: not a network namespace")
                    continue
                lines += [f"{name}: {line}" for line in look(fds[name]).state()]
        return lines

    def holders(self, identities: set[int]) -> list[str]:
        """What in the sandbox still holds a namespace of IDENTITIES: processes in it, descriptors
        of it, mounts of it (in any mount namespace of the sandbox's processes)."""
        found, wanted = [], {f"net:[{i}]" for i in identities}
        for pid in [self.run.init_pid, *observe.descendants(self.run.init_pid)]:
            command = " ".join(observe.cmdline(pid)) or f"process {pid}"
            if observe.namespace(pid, "net") in wanted:
                found.append(f"{command} runs in it")
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                            found.append(f"{command} holds it open (descriptor {fd})")
            for line in observe.mountinfo(pid):
                fields = line.split()
                if fields[3] in wanted and f"mount {fields[4]}" not in found:
                    found.append(f"mount {fields[4]}")
        return found
