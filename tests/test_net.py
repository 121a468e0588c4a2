"""labkit.net: network namespaces, named with ip-netns(8), wired with veth, an isolated worker.

Everything runs inside labkit.net.sandbox (new mnt+net+uts namespaces and a
private /run), as root and as an unprivileged user.  The kernel's view is
read with ip(8), ping(8), busybox nc, findmnt(8) and nsenter(1).  Each
scenario is a self-contained function, so that the rootless run can ship its
source to the unprivileged interpreter.
"""

from __future__ import annotations

import errno
import inspect
import json
import os
import subprocess
import textwrap

import pytest

from labkit import net

SIOCGSKNS = 0x894C  # <linux/sockios.h>: an fd of the network namespace a socket belongs to (4.9)
A, B = "10.77.3.1/24", "10.77.3.2/24"


def in_sandbox(who, unprivileged, scenario, *args):
    """Run SCENARIO(*ARGS) in net.sandbox as root or as the unprivileged user; return its result."""
    if who == "root":
        return net.sandbox(scenario, *args)
    code = (inspect.getsource(scenario) + "\nimport json\nfrom labkit import net\n"
            f"print(json.dumps(net.sandbox({scenario.__name__}, *{args!r})))\n")
    result = unprivileged.python_code(code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def host_veths() -> list[str]:
    return subprocess.run(["ip", "-o", "link", "show", "type", "veth"],
                          capture_output=True, text=True, check=True).stdout.splitlines()


both = pytest.mark.parametrize("who", ["root", pytest.param("nobody", marks=pytest.mark.rootless)])


# --- a new network namespace --------------------------------------------------

def scenario_fresh():
    import subprocess

    from labkit import net
    return net.links(), subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


@both
def test_new_network_namespace_holds_only_lo_and_it_is_down(who, unprivileged):
    links, ip_link = in_sandbox(who, unprivileged, scenario_fresh)
    assert links == {"lo": "down"}
    lines = ip_link.splitlines()
    assert len(lines) == 1 and ": lo: " in lines[0] and "state DOWN" in lines[0]


# --- named namespaces, both ways with ip netns ----------------------------------

def scenario_named_by_labkit():
    import os
    import subprocess

    from labkit import net

    def sh(*argv):
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip()

    path = net.add("red")
    seen = {
        "path": path,
        "ip netns list": sh("ip", "netns", "list"),
        "fstype": sh("findmnt", "-n", "-o", "FSTYPE", path),
        "ip -n red link": sh("ip", "-n", "red", "-o", "link"),
        "same ns": sh("ip", "netns", "exec", "red", "stat", "-L", "-c", "%i", "/proc/self/ns/net")
        == str(os.stat(path).st_ino),
        "not ours": os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino,
    }
    net.delete("red")
    seen["after"] = [sh("ip", "netns", "list"), sh("findmnt", "-n", path), os.path.exists(path)]
    return seen


@both
def test_namespace_named_by_labkit_is_a_bind_mount_that_ip_netns_sees(who, unprivileged):
    seen = in_sandbox(who, unprivileged, scenario_named_by_labkit)
    assert seen["path"] == "/run/netns/red"
    assert seen["ip netns list"] == "red"
    assert seen["fstype"] == "nsfs"  # a namespace file bind-mounted on /run/netns/red
    assert len(seen["ip -n red link"].splitlines()) == 1 and "lo:" in seen["ip -n red link"]
    assert seen["same ns"] and seen["not ours"]
    assert seen["after"] == ["", "", False]


def scenario_named_by_ip():
    import subprocess

    from labkit import net

    def sh(*argv):
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

    sh("ip", "netns", "add", "blue")
    seen = {"names": net.names(), "links": net.links("blue")}
    net.set_up("lo", "blue")
    seen["ip -n blue link"] = sh("ip", "-n", "blue", "-o", "link", "show", "lo")
    net.delete("blue")
    seen["after"] = sh("ip", "netns", "list")
    return seen


@both
def test_namespace_named_by_ip_netns_add_is_usable_and_deletable_by_labkit(who, unprivileged):
    seen = in_sandbox(who, unprivileged, scenario_named_by_ip)
    assert seen["names"] == ["blue"]
    assert seen["links"] == {"lo": "down"}
    assert "<LOOPBACK,UP,LOWER_UP>" in seen["ip -n blue link"]
    assert seen["after"] == ""


def scenario_bad_names():
    from labkit import net

    net.add("green")
    errors = []
    for bad in ("green", "a/b", ".."):
        try:
            net.add(bad)
        except OSError as e:
            errors.append([type(e).__name__, e.errno, str(e)])
    for action in (lambda: net.links("nowhere"), lambda: net.set_up("eth9"),
                   lambda: net.delete("nowhere")):
        try:
            action()
        except OSError as e:
            errors.append([type(e).__name__, e.errno, str(e)])
    names = net.names()
    net.delete("green")
    return errors, names


def test_bad_names_and_missing_things_give_teaching_errors_and_change_nothing():
    errors, names = net.sandbox(scenario_bad_names)
    assert names == ["green"]
    exists, slash, dots, no_ns, no_dev, no_name = errors
    assert exists[1] == errno.EEXIST and "ip netns delete" in exists[2]
    assert slash[1] == dots[1] == errno.EINVAL and "no '/'" in slash[2]
    assert no_ns[1] == errno.ENOENT and "ip netns list" in no_ns[2]
    assert no_dev[1] == errno.ENODEV and "eth9" in no_dev[2]
    assert no_name[1] == errno.ENOENT
    assert all(kind == "NamespaceError" for kind, *_ in errors)


@pytest.mark.rootless
def test_unprivileged_outside_a_sandbox_is_refused_with_the_capability_named(unprivileged):
    result = unprivileged.python_code(textwrap.dedent("""
        from labkit import net
        for attempt in (lambda: net.add("never"), lambda: net.add_veth("lk-never0", "lk-never1")):
            try:
                attempt()
                print("allowed")
            except OSError as e:
                print(type(e).__name__, "|", str(e).replace(chr(10), " "))
    """))
    assert result.returncode == 0, result.stderr
    add, veth = result.stdout.splitlines()
    assert add.startswith("MissingCapability") and "sandbox" in add
    assert veth.startswith("MissingCapability") and "CAP_NET_ADMIN" in veth
    assert not os.path.exists("/run/netns/never")


# --- a veth wire, ping and TCP --------------------------------------------------

def scenario_wire(a, b, runner):
    import subprocess

    from labkit import net

    def sh(*argv, check=True):
        return subprocess.run(argv, capture_output=True, text=True, check=check).stdout.strip()

    net.add("left")
    net.add("right")
    net.connect("left", a, "right", b)
    ip_b = b.split("/")[0]
    seen = {
        "left": sh("ip", "-n", "left", "-br", "addr"),
        "right": sh("ip", "-n", "right", "-br", "link"),
        "links": [net.links("left"), net.links("right")],
        "ping": subprocess.run(["ip", "netns", "exec", "left", "ping", "-c1", "-W10", ip_b],
                               capture_output=True).returncode,
    }
    # TCP: a server socket made in "right", a busybox nc client run in "left".
    with net.socket_in("right") as server:
        server.bind((ip_b, 0))
        server.listen()
        port = str(server.getsockname()[1])
        client = subprocess.Popen(["ip", "netns", "exec", "left", "busybox", "nc", ip_b, port],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        conn, peer = server.accept()
        with conn:
            client.stdin.write("ping over tcp\n")
            client.stdin.flush()
            seen["server got"] = conn.recv(100).decode()
            seen["peer"] = peer[0]
            conn.sendall(b"pong\n")
        client.stdin.close()
        seen["client got"] = client.stdout.read()
        client.wait(timeout=10)
    if runner:  # root can look at the test runner's own namespace meanwhile: no veth there
        seen["host veths"] = sh("nsenter", f"--net=/proc/{runner}/ns/net", "ip", "-o", "link",
                                "show", "type", "veth")
    net.delete("left")
    net.delete("right")
    seen["after"] = [sh("ip", "netns", "list"), sh("ip", "-o", "link", "show", "type", "veth")]
    return seen


@both
def test_veth_pair_carries_ping_and_tcp_between_two_named_namespaces(who, unprivileged):
    before = host_veths()
    seen = in_sandbox(who, unprivileged, scenario_wire, A, B, os.getpid() if who == "root" else 0)
    assert "veth0" in seen["left"] and "UP" in seen["left"] and A in seen["left"]
    veth1 = [line.split() for line in seen["right"].splitlines() if line.startswith("veth1@")]
    assert len(veth1) == 1 and veth1[0][1] == "UP"
    assert seen["links"] == [{"lo": "up", "veth0": "up"}, {"lo": "up", "veth1": "up"}]
    assert seen["ping"] == 0
    assert seen["server got"] == "ping over tcp\n" and seen["peer"] == A.split("/")[0]
    assert seen["client got"] == "pong\n"
    if who == "root":
        assert seen["host veths"].splitlines() == before
    assert seen["after"] == ["", ""]  # deleting the names destroyed the pair
    assert host_veths() == before


def scenario_move():
    import os
    import subprocess

    from labkit import net

    def sh(*argv):
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    net.add("x")
    net.add("y")
    net.add_veth("m0", "m1", "x")
    net.add_address("m1", "10.9.9.1/24", "x")
    net.move_link("m1", "y", "x")  # by name: IFLA_NET_NS_FD
    net.move_link("m0", os.getpid(), "x")  # to our own namespace, by PID: IFLA_NET_NS_PID
    seen = [sh("ip", "-n", "x", "-o", "link"), sh("ip", "-n", "y", "-o", "link"),
            sh("ip", "-n", "y", "-o", "addr", "show", "m1"), sh("ip", "-o", "link")]
    net.delete("x")
    net.delete("y")
    return seen


def test_move_link_moves_a_device_to_another_namespace_without_its_addresses():
    in_x, in_y, addr_in_y, ours = net.sandbox(scenario_move)
    assert "m0" not in in_x and "m1" not in in_x
    assert " m1@" in in_y and "state DOWN" in in_y
    assert "10.9.9.1" not in addr_in_y
    assert " m0@" in ours


# --- the isolated worker ----------------------------------------------------------

def scenario_worker():
    import json
    import os
    import socket
    import subprocess

    from labkit import net

    def handle(conn):
        request = conn.recv(100).decode().strip()
        try:  # the worker tries to reach the same listener itself: its lo is down
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            reach = "reached"
        except OSError as e:
            reach = errno_name(e.errno)
        answer = {"reply": request.upper(), "devices": [n for _, n in socket.if_nameindex()],
                  "reach": reach, "netns": os.readlink("/proc/self/ns/net")}
        conn.sendall(json.dumps(answer).encode() + b"\n")

    def errno_name(number):
        import errno
        return errno.errorcode[number]

    net.set_up("lo")  # the sandbox's own loopback: where the client connects
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with net.Worker(handle) as worker:
            ip_link = subprocess.run(["nsenter", "-t", str(worker.child.pid), "-n", "ip", "-br", "link"],
                                     capture_output=True, text=True).stdout.splitlines()
            client = subprocess.Popen(["busybox", "nc", "127.0.0.1", str(port)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            conn, _ = listener.accept()
            worker.hand_over(conn)
            client.stdin.write("compute this\n")
            client.stdin.flush()
            answer = json.loads(client.stdout.readline())
            client.stdin.close()
            client.wait(timeout=10)
        code = worker.child.returncode
    return answer, ip_link, os.readlink("/proc/self/ns/net"), code


@both
def test_worker_without_a_network_serves_a_connection_passed_with_scm_rights(who, unprivileged):
    answer, ip_link, sandbox_netns, code = in_sandbox(who, unprivileged, scenario_worker)
    assert answer["reply"] == "COMPUTE THIS"  # computed by the worker, sent on our connection
    assert answer["devices"] == ["lo"]
    assert len(ip_link) == 1 and ip_link[0].split()[:2] == ["lo", "DOWN"]  # nsenter + ip agree
    assert answer["reach"] == "ENETUNREACH"
    assert answer["netns"] != sandbox_netns
    assert code == 0


def scenario_socket_home():
    import fcntl
    import os
    import socket

    from labkit import net

    def netns_of(sock):
        fd = fcntl.ioctl(sock.fileno(), SIOCGSKNS)
        try:
            return os.fstat(fd).st_ino
        finally:
            os.close(fd)

    path = net.add("home")
    with net.socket_in("home") as s:
        s.bind(("127.0.0.1", 0))  # the namespace's own 127.0.0.1, though its lo is down
        home = netns_of(s)
    with socket.socket() as ours:
        here = netns_of(ours)
    seen = [home == os.stat(path).st_ino, here == os.stat("/proc/self/ns/net").st_ino, home != here]
    net.delete("home")
    try:
        net.socket_in("home")
    except OSError as e:
        seen.append([type(e).__name__, e.errno])
    return seen


def test_socket_made_in_a_named_namespace_belongs_to_it():
    assert net.sandbox(scenario_socket_home) == [True, True, True, ["NamespaceError", errno.ENOENT]]
