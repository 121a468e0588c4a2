# Lesson 06: network namespaces.  Source of lessons/06-network.ipynb
# (build it with `sudo .venv/bin/python lessons/build.py 06-network`).
# rootless: yes
# exercise: veth

# %% [markdown]
# # 06 · Network namespaces: a network stack of one's own
#
# **Goal.** A network namespace (usable since Linux 2.6.29,
# network_namespaces(7)) holds a whole network stack: devices, addresses,
# routes, firewall rules, port numbers, `/proc/net`, and the abstract UNIX
# socket names. A new one has a single device, `lo`, and it is down. By the end
# of this lesson you can
#
# * name network namespaces with `ip netns` and wire two of them with a veth pair;
# * give them addresses and routes, and ping from one to the other;
# * show that ports, `/sys/class/net` and abstract UNIX sockets are per namespace;
# * explain how a process whose only device, `lo`, is down can serve a connection;
# * solve the exercise `veth`.
#
# *Root or not:* this lesson runs as root and as a normal user, with the same
# output. As a normal user the shell starts in a user namespace in which you
# are root, and labkit adds one by itself.
#
# *The machine's network is never touched.* Everything happens in a sandbox:
# a shell with new mount, network and UTS namespaces and a private `/run`
# (where `ip netns` keeps its names), or `labkit.net.sandbox(fn)`, which does
# the same for a Python function. Traffic flows only between namespaces made
# here, and they end with the sandbox.
#
# The functions of this lesson are in `labkit/net.py`: read it beside
# network_namespaces(7), ip-netns(8) and veth(4).

# %%
import errno
import os
import signal
import socket
import subprocess
import tempfile

import lab  # lessons/lab.py: shells to type into, pictures
from labkit import net
from labkit.namespace import Namespace
from labkit.spawn import run, spawn

me = os.getpid()  # this notebook's kernel

# %% [markdown]
# ## 1. A new network namespace: lo, down
#
# `labkit.net.links()` asks the kernel over netlink (rtnetlink(7), with
# pyroute2), as `ip link` does. In a child with a new network namespace:

# %%
print(run(net.links, namespaces="net"))

# %% [markdown]
# Now the sandbox shell. `unshare --mount --net --uts sh` gives it new mount,
# network and UTS namespaces. Its `/run` becomes a tmpfs of its own, and its
# `/sys` a sysfs of its own: sysfs shows the network devices of the namespace
# of whoever mounts it (section 5), and the machine's `/sys` would show the
# machine's.

# %%
sh = lab.Shell("sh")
sh("unshare --mount --net --uts sh")
sh("mount -t tmpfs tmpfs /run && mount -t sysfs sysfs /sys")
sh("hostname sandbox")
sh("ip link")

# %% [markdown]
# `state DOWN`: not even the loopback works until somebody brings it up.

# %%
sh("ping -c 1 -W 1 127.0.0.1")
sh("ip link set lo up")
sh("ping -c 1 -W 1 127.0.0.1 > /dev/null && echo 'lo answers'")

# %% [markdown]
# ## 2. Named namespaces: ip netns
#
# A network namespace lives while a process is in it, or a file refers to it.
# `ip netns add NAME` creates one and keeps it alive with a bind mount of its
# `/proc/PID/ns/net` on `/run/netns/NAME`, so that no process has to stay in
# it (lesson 01, section 8). Two "hosts", red and blue:

# %%
sh("ip netns add red")
sh("ip netns add blue")
sh("ip netns list")
sh("findmnt --raw --noheadings --output TARGET,SOURCE --submounts --mountpoint /run | grep netns/ | sort")

# %% [markdown]
# `ip -n NAME ...` (short for `ip netns exec NAME ip ...`) runs ip in the
# namespace: each has its own `lo`, down.

# %%
sh("ip -n red -brief link")
sh("ip -n blue -brief link")

# %% [markdown]
# ## 3. A veth pair: a cable with two plugs
#
# A veth pair (veth(4)) is two devices: what one sends, the other receives.
# Both ends are made in red; then one is moved to blue. A device belongs to
# one namespace at a time.

# %%
sh("ip -n red link add veth-red type veth peer name veth-blue")
sh("ip -n red -brief link")
sh("ip -n red link set veth-blue netns blue")
sh("ip -n red -brief link")
sh("ip -n blue -brief link")

# %% [markdown]
# Before the move, ip names each end's peer (`veth-red@veth-blue`); after it,
# `veth-red@if2` gives only the peer's interface index: device 2 of another
# namespace. Now both ends up, both loopbacks up, and an address on each end:

# %%
sh("ip -n red link set veth-red up && ip -n red link set lo up")
sh("ip -n blue link set veth-blue up && ip -n blue link set lo up")
sh("ip -n red address add 10.0.0.1/24 dev veth-red")
sh("ip -n blue address add 10.0.0.2/24 dev veth-blue")
sh("ip -n red -4 address show dev veth-red | grep inet")

# %% [markdown]
# Adding an address with a prefix also adds a route to the prefix's network,
# through that device. It is the only route red has: no default route, no way
# out of the two namespaces.

# %%
sh("ip -n red route")
sh("ip -n blue route")

# %% [markdown]
# Red reaches blue. An address on no route does not even send a packet:

# %%
sh("ip netns exec red ping -c 1 -W 2 10.0.0.2 > /dev/null && echo 'red reaches blue'")
sh("ip netns exec red ping -c 1 -W 1 10.0.1.1")

# %% [markdown]
# labkit does the same steps, in the same order, with pyroute2:
# `net.connect("red", "10.0.0.1/24", "blue", "10.0.0.2/24")` (read it in
# labkit/net.py). Here in a fresh sandbox, with a TCP connection across the wire:

# %%
def wire_and_talk():
    net.add("red")
    net.add("blue")
    net.connect("red", "10.0.0.1/24", "blue", "10.0.0.2/24")
    with net.socket_in("blue") as server, net.socket_in("red") as client:
        server.bind(("10.0.0.2", 7))
        server.listen()
        client.connect(("10.0.0.2", 7))
        conn, (address, _) = server.accept()
        return {"red's links": net.links("red"), "blue's links": net.links("blue"),
                "blue accepted a connection from": address}

for what, value in net.sandbox(wire_and_talk).items():
    print(f"{what:32} {value}")

# %% [markdown]
# ## 4. A picture of the live topology
#
# Drawn from the sandbox as it is now by `lab.topology(pid)` (read it in
# lessons/lab.py): a child joins the shell's namespaces (`labkit.join.run_in`,
# as `nsenter` does), asks the sandbox's own network namespace and every one
# named under `/run/netns` for its devices and addresses over netlink, and
# pairs the veth ends: each end knows its peer's interface index, the `@if2`
# of section 3.

# %%
lab.topology(sh.current_pid())

# %% [markdown]
# The machine's own network namespace, where this kernel is, is not in the
# picture: the lesson never touched it.

# %%
sandbox_net = Namespace.of(sh.current_pid(), "net")
print("the sandbox shell's network namespace is ours:", sandbox_net == Namespace.of(me, "net"))

# %% [markdown]
# ## 5. Each namespace has its own ports, /sys/class/net and abstract sockets
#
# Port numbers belong to a namespace: two servers bind port 8080 on
# 127.0.0.1, one in red and one in blue, and each client reaches the server of
# its own namespace. A second bind in the same namespace fails. (`net.socket_in(NAME)`
# creates a socket in namespace NAME, in a child that joins it, and hands it
# back: a socket stays in the namespace where it was made.)

# %%
def same_port_twice():
    servers = {}
    for name in ("red", "blue"):
        net.add(name)
        net.set_up("lo", name)
        servers[name] = net.socket_in(name)
        servers[name].bind(("127.0.0.1", 8080))
        servers[name].listen()
    answers = []
    for name in ("red", "blue"):
        with net.socket_in(name) as client:
            client.connect(("127.0.0.1", 8080))
            conn, _ = servers[name].accept()
            conn.sendall(f"the server in {name}".encode())
            answers.append(f"a client in {name} reached {client.recv(100).decode()}")
    try:
        net.socket_in("red").bind(("127.0.0.1", 8080))
    except OSError as e:
        answers.append(f"a second bind in red: {e.strerror}")
    return answers

print("\n".join(net.sandbox(same_port_twice)))

# %% [markdown]
# `/sys/class/net` lists the devices of the namespace of whoever mounted
# sysfs. `ip netns exec` therefore mounts a fresh `/sys` for the command it
# runs (in a mount namespace of its own); our sandbox shell mounted one too:

# %%
sh("ls /sys/class/net")
sh("ip netns exec red ls /sys/class/net")
sh("ip netns exec blue ls /sys/class/net")

# %% [markdown]
# UNIX sockets come in two kinds. One bound to a path is a file, found
# through the file system, whatever the namespace. One bound to an *abstract*
# name (the name starts with a zero byte, unix(7)) is found in a table of the
# network namespace the socket was created in:

# %%
def unix_sockets(directory):
    net.add("red")
    net.add("blue")
    named = {"abstract name": "\0nslab-lesson", "path": f"{directory}/socket"}
    answers = []
    for kind, address in named.items():
        with net.socket_in("red", socket.AF_UNIX) as server:
            server.bind(address)
            server.listen()
            for name in ("red", "blue"):
                with net.socket_in(name, socket.AF_UNIX) as client:
                    try:
                        client.connect(address)
                        found = "connected"
                    except OSError as e:
                        found = e.strerror
                answers.append(f"server in red, {kind:13}: a client in {name:4} {found}")
    return answers

directory = tempfile.mkdtemp()
print("\n".join(net.sandbox(unix_sockets, directory)))
os.unlink(f"{directory}/socket")
os.rmdir(directory)

# %% [markdown]
# (So a container with a network namespace of its own cannot reach the
# host's abstract sockets, such as an X server's `@/tmp/.X11-unix/X0`; a
# socket file bind-mounted into it, like `/var/run/docker.sock`, it can.)
#
# ## 6. A worker with no network serves a connection
#
# A socket belongs to the namespace it was created in, whichever process
# holds it later. A process in a new network namespace, whose only device
# `lo` is down, can still make sockets, bind and listen: what it lacks is a
# way to reach anything, and a way for anything to reach it. A process
# without network tries, and then we try to reach it from here:

# %%
def without_network(ready_w):
    """In a new network namespace: try what sockets can still do; then wait, listening."""
    def attempt(what, call):
        try:
            call()
            return f"{what}: yes"
        except OSError as e:
            return f"{what}: no, {errno.errorcode[e.errno]}"

    tcp, unix = socket.socket(), socket.socket(socket.AF_UNIX)
    report = [
        attempt("listen on TCP, any address (INADDR_ANY)", lambda: (tcp.bind(("0.0.0.0", 0)), tcp.listen())),
        attempt("connect to that listener at 127.0.0.1",
                lambda: socket.create_connection(("127.0.0.1", tcp.getsockname()[1]), timeout=5)),
        attempt("listen on the abstract UNIX name @nslab-no-net",
                lambda: (unix.bind("\0nslab-no-net"), unix.listen())),
        attempt("connect to it, in the same namespace",
                lambda: socket.socket(socket.AF_UNIX).connect("\0nslab-no-net")),
    ]
    os.write(ready_w, "\n".join(report).encode())
    os.close(ready_w)
    signal.pause()

ready_r, ready_w = os.pipe()
with spawn(without_network, "net", args=(ready_w,)) as no_net:
    os.close(ready_w)
    with open(ready_r) as inside:
        print(inside.read())
    with socket.socket(socket.AF_UNIX) as outside:
        try:
            outside.connect("\0nslab-no-net")
            print("from our namespace, connect to @nslab-no-net: yes")
        except OSError as e:
            print(f"from our namespace, connect to @nslab-no-net: no, {errno.errorcode[e.errno]}")

# %% [markdown]
# It listens, but its TCP port is on a device that is down and linked to
# nothing, and its abstract name is in its own namespace's table (section 5).
# Only a socket file in the file system (section 5), or a descriptor handed
# over, could connect it to anyone. `net.Worker(handle)` is such a process,
# and we hand it a descriptor: we accept a connection in our namespace and
# pass the connected socket to the worker over a UNIX socket (SCM_RIGHTS,
# unix(7)); the worker answers on it.

# %%
def isolated_worker():
    net.set_up("lo")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def handle(conn):
        request = conn.recv(100).decode()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5)
            reach = "it could connect"
        except OSError as e:
            reach = f"its own connection attempt: {e.strerror}"
        conn.sendall(f"{request.upper()} (from a process whose links are {net.links()}; {reach})".encode())

    with net.Worker(handle) as worker, socket.create_connection(("127.0.0.1", port)) as client:
        conn, _ = listener.accept()
        worker.hand_over(conn)  # SCM_RIGHTS; our copy is closed
        client.sendall(b"hello worker")
        return client.recv(300).decode()

print(net.sandbox(isolated_worker))

# %% [markdown]
# This is how a server can confine the code that handles requests: the
# dangerous part runs where there is no network to misuse, and gets only the
# connection it must serve.
#
# ## 7. Taking it down
#
# `ip netns delete` unmounts and removes the name; the namespace ends, since
# nothing else refers to it, and the devices in it go with it, including the
# veth end whose peer lived in the other namespace. The kernel dismantles a
# namespace in the background (a work queue), so we wait until blue's end is gone:

# %%
sh("ip netns exec blue ls /sys/class/net")
sh("ip netns delete red")
sh("while ip -n blue link show veth-blue > /dev/null 2>&1; do sleep 0.05; done")
sh("ip netns exec blue ls /sys/class/net")
sh("ip netns delete blue")
sh("ip netns list")

# %%
lab.close_all()  # the sandbox shell ends, and with it its namespaces

# %% [markdown]
# ## Check yourself
#
# 1. In a fresh network namespace, `ping 127.0.0.1` fails. Why, and what fixes it?
#    <details><summary>answer</summary><code>lo</code> is down (and has no address
#    until it is up): <code>ip link set lo up</code>.</details>
# 2. What keeps a namespace made by `ip netns add red` alive, with no process in it?
#    <details><summary>answer</summary>A bind mount of its nsfs file on
#    <code>/run/netns/red</code>.</details>
# 3. After `ip link set veth-blue netns blue`, which namespace lists veth-blue,
#    and what became of its addresses?
#    <details><summary>answer</summary>Only blue. A moved device arrives down
#    and without addresses: they belonged to the old namespace.</details>
# 4. Two containers each run a web server on port 80. Why is there no conflict?
#    <details><summary>answer</summary>Each has its own network namespace, and
#    port numbers are per namespace.</details>
# 5. A process in a network namespace with only `lo`, down, answers on a TCP
#    connection from far away. How?
#    <details><summary>answer</summary>It was handed a connected socket (over a
#    UNIX socket, SCM_RIGHTS). The socket belongs to the namespace it was made in.</details>
#
# Try one: in a new network namespace, a veth pair `a`/`b` is made and `a` is
# set up. Predict what `ip link` lists, and which devices are up, then run it.

# %%
def pair_with_one_end_up():
    net.add_veth("a", "b")
    net.set_up("a")
    return net.links()

print(run(pair_with_one_end_up, namespaces="net"))

# %% [markdown]
# And question 3, tried: the end `b` gets an address and is set up, then it
# is moved to a namespace `blue`.

# %%
def end_b(netns=None):
    """What `ip` says about device b: its state and its IPv4 addresses."""
    where = ["-n", netns] if netns else []
    shown = subprocess.run(["ip", *where, "-4", "-brief", "address", "show", "dev", "b"],
                           capture_output=True, text=True).stdout.split()
    return f"b is {net.links(netns)['b']}, with {' '.join(shown[2:]) or 'no address'}"

def move_a_configured_end():
    net.add("blue")
    net.add_veth("a", "b")
    net.add_address("b", "10.0.0.2/24")
    net.set_up("b")
    before = end_b()
    net.move_link("b", "blue")
    return f"before the move: {before}\nin blue after it: {end_b('blue')}"

print(net.sandbox(move_a_configured_end))

# %% [markdown]
# ## Exercise `veth`: wire two hosts together
#
# Write `exercises/veth/solution` (EXERCISES.md, section 5):
#
# > `solution up NS_A ADDR_A NS_B ADDR_B`
# > `solution down NS_A NS_B`
# >
# > `up` creates two **named network namespaces** NS_A and NS_B (listed by
# > `ip netns list`, i.e. bind-mounted under `/run/netns`), connected by one
# > **veth pair**, one end in each. ADDR_A and ADDR_B are IPv4 addresses with a
# > prefix length (e.g. `10.77.3.1/24`), assigned to the veth end in NS_A and
# > NS_B. Both veth ends and both loopback devices are up; each namespace has
# > exactly two links, `lo` and its veth end; nothing is added to the host's
# > network namespace. If NS_A or NS_B already exists, `up` exits non-zero with a
# > message on standard error and changes nothing.
# >
# > `down` deletes both namespaces and with them the veth pair, leaving no trace.
#
# Sections 2, 3 and 7 are the steps. Try it in a sandbox of your own
# (`sudo unshare --mount --net sh -c 'mount -t tmpfs tmpfs /run; exec sh'`),
# never on the machine's network. Then let the grader check every sentence of
# the contract: it runs `up` and `down` in a sandbox of its own, with names and
# addresses it draws at random, and sends a ping and a TCP connection from
# NS_A to NS_B:
#
# ```
# sudo grader check veth
# ```
