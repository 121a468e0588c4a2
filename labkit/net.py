"""Network namespaces: devices, named namespaces, a veth wire, an isolated worker.

network_namespaces(7), Linux 2.6.29.  A network namespace has its own
devices, addresses, routes, firewall, port numbers and /proc/net.  A new one
holds exactly one device, the loopback ``lo``, and it is *down*: until
somebody brings it up, not even 127.0.0.1 works.

Named namespaces (ip-netns(8)).  A network namespace lives as long as a
process is in it or a file refers to it.  ``ip netns add NAME`` keeps one
alive without a process by bind-mounting ``/proc/PID/ns/net`` of a short-lived
child onto the empty file ``/run/netns/NAME``; ``ip netns delete`` unmounts
and removes the file.  ``add``/``names``/``delete`` below do the same through
pyroute2.netns, so the two tools see each other's namespaces.  (Like ip,
pyroute2 makes /run/netns a shared mount first, so that mount namespaces made
later still see new names appear and old ones go.)

Devices move, sockets stay.  A device belongs to one namespace at a time and
can be moved to another (``move_link``: IFLA_NET_NS_FD in an RTM_NEWLINK
message).  A veth pair is a cable with two ends; put one end in each of two
namespaces and they can talk (``connect``).  A socket belongs for good to the
namespace it was created in, whichever process holds it later: a worker in a
namespace with no usable device at all can still serve a connection accepted
elsewhere and handed to it over a UNIX socket (``Worker``, SCM_RIGHTS).

Configuration goes through netlink (rtnetlink(7)) with pyroute2's IPRoute,
the library counterpart of ip(8).  An IPRoute is opened per call and inside
the process that needs it: a netlink socket, like any socket, belongs to the
namespace it was created in.

All of this changes the network of whoever calls it.  ``sandbox(fn)`` runs
FN in a child with its own mount, network and UTS namespaces and a private
/run, so that names, devices and wires made there vanish with it.

See network_namespaces(7), ip-netns(8), veth(4), rtnetlink(7), unix(7)
(SCM_RIGHTS), and pyroute2's documentation.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pyroute2 import IPRoute, NetlinkError
from pyroute2 import netns as pyroute2_netns

from . import syscalls
from .errors import MissingCapability, NamespaceError, error_for
from .spawn import Child, run, spawn

NETNS_DIR = "/run/netns"  # where ip-netns(8) keeps the names
IFF_UP = 0x1  # <net/if.h>: the device is administratively up


# --- A place to try it all -------------------------------------------------

def sandbox(fn: Callable[..., object], *args: object) -> object:
    """Call FN(*ARGS) in a child with new mnt, net and UTS namespaces and a private /run.

    The private /run (a tmpfs in the child's own mount namespace) gives it an
    empty /run/netns, so ``ip netns`` inside lists only what FN makes.
    Returns FN's return value.  As a normal user a user namespace is added.
    """
    return run(_in_sandbox, fn, args, namespaces="mnt,net,uts")


def _in_sandbox(fn: Callable[..., object], args: tuple) -> object:
    syscalls.mount("tmpfs", "/run", "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "mode=0755")
    return fn(*args)


# --- Named network namespaces: ip netns add / list / delete ----------------

def path_of(name: str, netns_dir: str = NETNS_DIR) -> str:
    """The file that names network namespace NAME, as ip netns would use it."""
    if not name or "/" in name or name in (".", ".."):
        raise NamespaceError(errno.EINVAL, f"netns name {name!r}",
                             "a name is one file name under /run/netns: no '/', not '.' or '..'")
    return os.path.join(netns_dir, name)


def add(name: str, netns_dir: str = NETNS_DIR) -> str:
    """``ip netns add NAME``: a new network namespace, kept alive by a bind mount.

    Returns the path of the file it is mounted on.
    """
    path = path_of(name, netns_dir)
    if os.path.exists(path):
        raise NamespaceError(errno.EEXIST, f"ip netns add {name}",
                             f"{path} exists: a network namespace of that name is there already "
                             "(ip netns delete it first)")
    try:
        # In a forked child: unshare(CLONE_NEWNET), then mount --bind /proc/self/ns/net PATH.
        pyroute2_netns.create(path)
    except OSError as e:
        if os.path.exists(path) and not os.path.ismount(path):
            os.unlink(path)  # the empty file of a namespace that was never mounted there
        if e.errno in (errno.EPERM, errno.EACCES):
            raise MissingCapability(e.errno, f"ip netns add {name}", (
                f"naming a network namespace needs write access to {netns_dir} and CAP_SYS_ADMIN "
                "(to unshare(CLONE_NEWNET) and to bind-mount /proc/PID/ns/net), in the user "
                "namespace that owns the mount namespace. As a normal user, do it inside a mount "
                "and network namespace of your own: labkit.net.sandbox(fn).")) from None
        raise error_for("ip netns add", e.errno or errno.EIO, detail=name) from None
    return path


def names(netns_dir: str = NETNS_DIR) -> list[str]:
    """``ip netns list``: the names under NETNS_DIR."""
    return sorted(pyroute2_netns.listnetns(netns_dir))


def delete(name: str, netns_dir: str = NETNS_DIR) -> None:
    """``ip netns delete NAME``: unmount and remove the name.

    The namespace itself, and the devices in it, end when nothing else
    refers to it; the other end of a veth pair goes with it.
    """
    path = path_of(name, netns_dir)
    if not os.path.exists(path):
        raise NamespaceError(errno.ENOENT, f"ip netns delete {name}",
                             f"there is no {path}: see names() or ip netns list")
    pyroute2_netns.remove(path)  # umount2(MNT_DETACH), then unlink


# --- Devices and addresses (rtnetlink through pyroute2) --------------------

@contextmanager
def rtnl(netns: str | None = None, action: str = "netlink") -> Iterator[IPRoute]:
    """An IPRoute talking to network namespace NETNS, closed afterwards.

    NETNS: a name under /run/netns, a path (/proc/PID/ns/net, a file under
    another directory), or None for the caller's own namespace.  A failed
    request raises a NamespaceError named after ACTION.
    """
    path = None if netns is None else _existing(netns, action)
    try:
        # flags=0: never create a namespace by accident (pyroute2's default is O_CREAT).
        ipr = IPRoute() if netns is None else IPRoute(netns=path, flags=0)
    except OSError as e:
        raise error_for("setns", e.errno or errno.EPERM, detail=f"{netns} (CLONE_NEWNET)") from None
    try:
        with ipr:
            yield ipr
    except NetlinkError as e:
        raise _netlink_error(e, action) from None


def _existing(netns: str, action: str) -> str:
    """The path of NETNS (a name or a path), which must exist."""
    path = netns if "/" in netns else path_of(netns)
    if not os.path.exists(path):
        raise NamespaceError(errno.ENOENT, f"{action} in {netns}",
                             f"no network namespace at {path} (ip netns list shows the names)")
    return path


def _netlink_error(e: NetlinkError, action: str) -> NamespaceError:
    if e.code == errno.EPERM:
        return MissingCapability(e.code, action, (
            "Changing network devices needs CAP_NET_ADMIN in the user namespace that owns the "
            "network namespace. As a normal user, work in a network namespace of your own "
            "(rootless mode: labkit.net.sandbox, or labkit run -n)."))
    hints = {errno.EEXIST: "a device or address of that name is there already",
             errno.ENODEV: "no such device in that namespace (it may have moved)"}
    return NamespaceError(e.code or errno.EIO, action, hints.get(e.code, str(e)))


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise NamespaceError(errno.ENODEV, f"device {ifname}",
                             "no such device in this network namespace; ip link lists them")
    return found[0]


def links(netns: str | None = None) -> dict[str, str]:
    """``ip link``: each device of NETNS and whether it is "up" or "down"."""
    with rtnl(netns, "ip link show") as ipr:
        return {msg.get("ifname"): "up" if msg["flags"] & IFF_UP else "down"
                for msg in ipr.get_links()}


def set_up(ifname: str, netns: str | None = None) -> None:
    """``ip link set IFNAME up`` in NETNS."""
    with rtnl(netns, f"ip link set {ifname} up") as ipr:
        ipr.link("set", index=_index(ipr, ifname), state="up")


def add_address(ifname: str, address: str, netns: str | None = None) -> None:
    """``ip addr add ADDRESS dev IFNAME`` in NETNS; ADDRESS with its prefix, e.g. 10.0.0.1/24."""
    interface = ipaddress.ip_interface(address)
    with rtnl(netns, f"ip addr add {address} dev {ifname}") as ipr:
        ipr.addr("add", index=_index(ipr, ifname), address=str(interface.ip),
                 prefixlen=interface.network.prefixlen)


def move_link(ifname: str, to: str | int, netns: str | None = None) -> None:
    """``ip link set IFNAME netns TO``: move a device from NETNS to TO (a name, path or PID).

    The device disappears from NETNS and appears in TO, down and without
    its addresses: they belonged to the old namespace's configuration.
    """
    with rtnl(netns, f"ip link set {ifname} netns {to}") as ipr:
        index = _index(ipr, ifname)
        if isinstance(to, int):
            ipr.link("set", index=index, net_ns_pid=to)  # IFLA_NET_NS_PID: that process's namespace
            return
        fd = os.open(to if "/" in to else path_of(to), os.O_RDONLY | os.O_CLOEXEC)
        try:
            ipr.link("set", index=index, net_ns_fd=fd)  # IFLA_NET_NS_FD: an open namespace file
        finally:
            os.close(fd)


def add_veth(ifname: str, peer: str, netns: str | None = None) -> None:
    """``ip link add IFNAME type veth peer name PEER`` in NETNS: both ends start there."""
    with rtnl(netns, f"ip link add {ifname} type veth peer name {peer}") as ipr:
        ipr.link("add", ifname=ifname, kind="veth", peer=peer)


def connect(ns_a: str, address_a: str, ns_b: str, address_b: str,
            ends: tuple[str, str] = ("veth0", "veth1")) -> None:
    """Wire named namespaces NS_A and NS_B with a veth pair, addressed and up.

    The steps of ip-netns(8)'s example, in order.
    """
    end_a, end_b = ends
    add_veth(end_a, end_b, ns_a)  # 1. a cable with both plugs in NS_A
    move_link(end_b, ns_b, ns_a)  # 2. carry one plug over to NS_B
    for netns, end, address in ((ns_a, end_a, address_a), (ns_b, end_b, address_b)):
        add_address(end, address, netns)  # 3. an address on each end
        set_up(end, netns)  # 4. both ends up (a veth has carrier only when both are)
        set_up("lo", netns)


def socket_in(netns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket created in network namespace NETNS, for use in ours.

    A child process enters NETNS, creates the socket and passes it back
    (pyroute2.netns.create_socket): it stays in NETNS for good.
    """
    path = _existing(netns, "socket")
    return pyroute2_netns.create_socket(path, family, kind, flags=0)


# --- The isolated worker: sockets passed with SCM_RIGHTS -------------------

def send_socket(channel: socket.socket, sock: socket.socket) -> None:
    """Pass SOCK to the process at the other end of the UNIX socket CHANNEL."""
    socket.send_fds(channel, [b"s"], [sock.fileno()])  # SCM_RIGHTS: the kernel dups the fd over


def receive_socket(channel: socket.socket) -> socket.socket | None:
    """The next socket passed over CHANNEL, or None when the sender has closed it."""
    message, fds, _, _ = socket.recv_fds(channel, 1, 1)
    if not message:
        return None
    return socket.socket(fileno=fds[0])


class Worker:
    """A process in a network namespace with no device up, that serves connections we hand it.

    It cannot open a connection or listen for one: its only device, lo, is
    down.  Yet each connected socket we pass it still works, because the
    socket belongs to the namespace it was made in, not to its holder.  This
    is how a server can confine the code that handles requests::

        with Worker(lambda conn: conn.sendall(conn.recv(100).upper())) as worker:
            conn, _ = listener.accept()
            worker.hand_over(conn)
    """

    def __init__(self, handle: Callable[[socket.socket], object]) -> None:
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.child: Child = spawn(_serve, "net", args=(theirs, self.channel, handle))
        finally:
            theirs.close()

    def hand_over(self, conn: socket.socket) -> None:
        """Give CONN to the worker; our copy is closed."""
        send_socket(self.channel, conn)
        conn.close()

    def close(self) -> int:
        """Tell the worker to finish (EOF on the channel) and return its exit code."""
        self.channel.close()
        return self.child.wait()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _serve(channel: socket.socket, parents_end: socket.socket,
           handle: Callable[[socket.socket], object]) -> None:
    parents_end.close()  # or we would never see EOF when the parent closes its end
    while (conn := receive_socket(channel)) is not None:
        with conn:
            handle(conn)
