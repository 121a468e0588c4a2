"""Exercise 5, ``veth``: wire two hosts together (EXERCISES.md, section 5).

    solution up NS_A ADDR_A NS_B ADDR_B
    solution down NS_A NS_B

    up creates two named network namespaces NS_A and NS_B (listed by
    ip netns list, i.e. bind-mounted under /run/netns), connected by one
    veth pair, one end in each. ADDR_A and ADDR_B are IPv4 addresses with a
    prefix length (e.g. 10.77.3.1/24), assigned to the veth end in NS_A and
    NS_B. Both veth ends and both loopback devices are up; each namespace
    has exactly two links, lo and its veth end; nothing is added to the
    host's network namespace. If NS_A or NS_B already exists, up exits
    non-zero with a message on standard error and changes nothing.

    down deletes both namespaces and with them the veth pair, leaving no
    trace.

Each check is one sentence (or clause) of that text.  ``up`` and ``down``
run one after the other in one sandbox (grader/rerun.py), whose /run is a
tmpfs of its own and whose network namespace is "the host": the machine's
/run/netns and network never change.  Names, addresses and prefix lengths
(a random private network, a /16 to a /30) are drawn for every run.  The
grader reads what the kernel shows from outside (grader/netns.py): the
names in the sandbox's /run/netns and its mount table, each namespace's
links, addresses and routes through a netlink socket of its own in there,
the veth peers by ifindex and netnsid (not by name); and it sends a ping
and a TCP connection from NS_A to NS_B.

See ip-netns(8), ip-link(8) (veth), ip-address(8), network_namespaces(7),
veth(4).
"""

from __future__ import annotations

from ..engine import Exercise, Trial
from ..feedback import Fail
from ..netns import NETNS_TEARDOWN, Lab, Wire, draw_wire, identity, named, names, netns_mounts, ping, tcp, veth_pairs

exercise = Exercise("veth", "wire two hosts together", tools=("nsenter", "ping", "ip"))

HINT_NAMED = ("ip netns add NAME makes a named network namespace: an empty file /run/netns/NAME "
              "with the namespace bind-mounted on it (lessons/06-network.ipynb, section 2); an "
              "unshare(CLONE_NEWNET) alone makes a namespace that has no name and dies with its "
              "last process")
HINT_PAIR = ("ip link add A type veth peer name B makes the pair in the host; ip link set A netns "
             "NS_A and ip link set B netns NS_B put one end in each (or: ip -n NS_A link add A "
             "type veth peer name B netns NS_B)")


@exercise.check(2, "up creates two named network namespaces NS_A and NS_B")
def named_namespaces(trial: Trial) -> None:
    """"up creates two named network namespaces NS_A and NS_B (listed by ip netns list, i.e.
    bind-mounted under /run/netns)"

    Both names are in the sandbox's /run/netns (what ip netns list reads), each is a mount
    there (the sandbox's mountinfo) of a network namespace (ioctl NS_GET_NSTYPE), two
    different ones, neither the host's.
    """
    lab = Lab(trial)
    ran, wire = lab.up(), lab.wire
    listed, mounts = names(lab.pid), netns_mounts(lab.pid)
    missing = [n for n in (wire.a, wire.b) if n not in listed]
    if missing:
        raise Fail(f"ip netns list does not list {' and '.join(missing)}",
                   expected=f"{wire.a} and {wire.b} in /run/netns", seen=f"{listed or 'nothing'}; "
                   + f"`solution up` ended with {ran}", hint=HINT_NAMED)
    with named(lab.pid, wire.a, wire.b) as fds:
        plain = [n for n in (wire.a, wire.b) if fds[n] is None
                 or not any(m.startswith(f"/run/netns/{n} ") for m in mounts)]
        if plain:
            raise Fail(f"/run/netns/{plain[0]} is not a network namespace bind-mounted there",
                       seen=f"mounts under /run/netns: {', '.join(mounts) or 'none'}", hint=HINT_NAMED)
        a_id, b_id = (identity(fds[n]) for n in (wire.a, wire.b))
    if a_id == b_id:
        raise Fail("NS_A and NS_B name one and the same network namespace",
                   seen=f"both are net:[{a_id}]", hint="make two namespaces: ip netns add, twice")
    if lab.host_identity in (a_id, b_id):
        raise Fail("a name in /run/netns names the host's own network namespace",
                   seen=f"net:[{lab.host_identity}]", hint=HINT_NAMED)


@exercise.check(2, "NS_A and NS_B are connected by one veth pair, one end in each",
                needs=[named_namespaces])
def one_veth_pair(trial: Trial) -> None:
    """"connected by one veth pair, one end in each."

    NS_A holds one veth whose peer (IFLA_LINK, in the namespace that IFLA_LINK_NETNSID
    names) is a veth in NS_B that names it back; names of links do not count, and there is
    one such pair.
    """
    lab = Lab(trial)
    lab.up()
    a, b = lab.both()
    found = veth_pairs(a, b)
    seen = f"NS_A: {', '.join(map(str, a.links))}; NS_B: {', '.join(map(str, b.links))}"
    if not found:
        raise Fail("there is no veth pair with one end in NS_A and the other in NS_B", seen=seen,
                   hint=HINT_PAIR + ". Both ends in one namespace, or one left in the host, "
                   "connect nothing")
    if len(found) > 1:
        raise Fail(f"NS_A and NS_B are connected by {len(found)} veth pairs, not one", seen=seen,
                   hint="make the pair once")


@exercise.check(2, "ADDR_A and ADDR_B, with their prefix lengths, are on the veth ends",
                needs=[named_namespaces])
def addresses(trial: Trial) -> None:
    """"ADDR_A and ADDR_B are IPv4 addresses with a prefix length (e.g. 10.77.3.1/24), assigned
    to the veth end in NS_A and NS_B."

    The end in NS_A has ADDR_A with its prefix length, the end in NS_B has ADDR_B
    (RTM_GETADDR in each namespace); addresses and prefix lengths, from a /16 to a /30, are
    drawn for every run.
    """
    lab = Lab(trial)
    lab.up()
    wire, (a, b) = lab.wire, lab.both()
    for where, view, address, other in (("NS_A", a, wire.address_a, wire.address_b),
                                        ("NS_B", b, wire.address_b, wire.address_a)):
        ends = [link for link in view.links if link.kind == "veth"]
        have = [x for end in ends for x in view.addresses_of(end.index)]
        if address in have:
            continue
        ip = address.split("/")[0]
        if not ends:
            hint = f"there is no veth end in {where} to hold the address: " + HINT_PAIR
        elif other in have:
            hint = "the addresses are swapped: ADDR_A goes to the end in NS_A, ADDR_B to NS_B"
        elif any(h.split("/")[0] == ip for h in have):
            hint = ("the address is there, with another prefix length: give it as it came, "
                    "ip addr add ADDR/LEN (without /LEN, ip takes /32)")
        else:
            hint = "ip -n NS addr add ADDR dev END, with ADDR as given (prefix length included)"
        raise Fail(f"the veth end in {where} does not have {address}", expected=address,
                   seen=", ".join(have) or "no address on a veth end there", hint=hint)


@exercise.check(1, "both veth ends and both loopback devices are up", needs=[named_namespaces])
def links_up(trial: Trial) -> None:
    """"Both veth ends and both loopback devices are up"

    IFF_UP is set on lo and on every veth end, in NS_A and in NS_B.
    """
    lab = Lab(trial)
    lab.up()
    a, b = lab.both()
    if not any(link.kind == "veth" for link in a.links + b.links):
        raise Fail("there is no veth end in NS_A or NS_B", hint=HINT_PAIR)
    down = [f"{link.name} in {where}" for where, view in (("NS_A", a), ("NS_B", b))
            for link in view.links if (link.name == "lo" or link.kind == "veth") and not link.up]
    if down:
        raise Fail(f"down: {', '.join(down)}",
                   hint="ip -n NS link set lo up, and the same for the veth end *after* it was "
                        "moved into its namespace (moving a link sets it down)")


@exercise.check(1, "each namespace has exactly two links, lo and its veth end",
                needs=[named_namespaces])
def two_links_each(trial: Trial) -> None:
    """"each namespace has exactly two links, lo and its veth end"

    NS_A's links are lo and one veth, and so are NS_B's.
    """
    lab = Lab(trial)
    lab.up()
    a, b = lab.both()
    for where, view in (("NS_A", a), ("NS_B", b)):
        links = view.links
        kinds = sorted("lo" if link.name == "lo" else link.kind for link in links)
        if kinds != ["lo", "veth"]:
            raise Fail(f"{where} does not hold exactly lo and one veth end",
                       seen=", ".join(map(str, links)) or "nothing",
                       hint="one end of the pair in each namespace, nothing else: "
                            "both ends in one namespace leave the other with lo alone")


@exercise.check(2, "NS_A reaches NS_B through the wire: ping and TCP", needs=[named_namespaces])
def traffic(trial: Trial) -> None:
    """"wire two hosts together ... connected by one veth pair"

    From NS_A, ping(8) (run by nsenter --net from the machine's /usr) gets an answer from
    ADDR_B, and a TCP connection from a socket in NS_A to a socket of the grader's listening
    on ADDR_B in NS_B carries random bytes both ways.
    """
    lab = Lab(trial)
    lab.up()
    ip_b = lab.wire.ip_b
    with named(lab.pid, lab.wire.a, lab.wire.b) as fds:
        if fds[lab.wire.a] is None or fds[lab.wire.b] is None:
            raise Fail("the named namespaces are gone after `up`", hint=HINT_NAMED)
        answered = ping(fds[lab.wire.a], ip_b)
        problem = tcp(fds[lab.wire.a], fds[lab.wire.b], ip_b) if answered else None
    if not answered:
        raise Fail(f"from NS_A, ping {ip_b} gets no answer",
                   hint="both ends up, lo up, ADDR_A and ADDR_B with their prefix length (that "
                        "prefix gives the route to the other end)")
    if problem:
        raise Fail(f"from NS_A, a TCP connection to {ip_b} in NS_B fails", seen=problem, points=1,
                   hint="ADDR_B must be on NS_B's end, and nothing may stop TCP between the two "
                        "(a firewall rule in a namespace?)")


@exercise.check(2, "nothing is added to the host's network namespace", needs=[named_namespaces])
def host_unchanged(trial: Trial) -> None:
    """"nothing is added to the host's network namespace."

    The sandbox's own links, addresses and routes (all tables) after up are those before it.
    """
    lab = Lab(trial)
    lab.up()
    added = lab.added_to_host()
    if added:
        raise Fail("`up` added to the host's network namespace", seen="; ".join(added),
                   hint="configure the namespaces from inside them (ip -n NS ..., ip netns exec "
                        "NS ...), and move both veth ends out of the host")


@exercise.check(2, "if NS_A or NS_B already exists, up refuses and changes nothing",
                needs=[named_namespaces])
def refuses_existing(trial: Trial) -> None:
    """"If NS_A or NS_B already exists, up exits non-zero with a message on standard error and
    changes nothing."

    Twice, in random order: a name that the solution's up made, and one that ip netns add
    made; one of them as NS_A, the other as NS_B. Every name in /run/netns, every
    namespace's links, addresses and routes, and the host's, are the same after as before.
    """
    lab = Lab(trial)
    lab.up()
    made = trial.choice((lab.wire.a, lab.wire.b))
    added = lab.add_namespace()
    # Each existing name once, one as NS_A and the other as NS_B, in random order.
    for existing, as_a in zip(trial.random.sample([made, added], 2), trial.random.sample([True, False], 2),
                              strict=True):
        fresh = draw_wire(trial)
        wire = (Wire(existing, fresh.address_a, fresh.b, fresh.address_b) if as_a
                else Wire(fresh.a, fresh.address_a, existing, fresh.address_b))
        before = lab.everything()
        ran = lab.up(wire)
        after = lab.everything()
        changed = [f"+ {line}" for line in after if line not in before] + \
                  [f"- {line}" for line in before if line not in after]
        said = ran.exit.status != 0 and ran.stderr.strip()
        how = (f"`up {wire.a} ... {wire.b} ...` ({existing} exists) ended with {ran.exit}"
               + ("" if ran.stderr.strip() else ", nothing on standard error"))
        if changed:
            raise Fail(f"`up` with a name that exists changed things ({how})",
                       seen="; ".join(changed[:8]), points=1 if said else 0,
                       hint="check both names before you make anything (test -e /run/netns/NAME, "
                            "or os.path.exists): a refusal after the first name was made is too late")
        if not said:
            raise Fail("`up` with a name that exists did not refuse", seen=how, points=1,
                       hint="exit with a non-zero status and print why on standard error "
                            "(echo ... >&2; exit 1, or sys.exit(\"message\"))")


@exercise.check(2, "down deletes both namespaces and the veth pair, leaving no trace",
                needs=[named_namespaces])
def down_leaves_no_trace(trial: Trial) -> None:
    """"down deletes both namespaces and with them the veth pair, leaving no trace."

    After down: no name and no mount of NS_A or NS_B under /run/netns; no process,
    descriptor or mount of the sandbox keeps either namespace (and so a veth end) alive; the
    host is as before, once the kernel has taken the deleted namespaces apart (it does so
    in its own time, and a veth end left in the host goes with its peer only then).
    """
    lab = Lab(trial)
    lab.up()
    wire = lab.wire
    with named(lab.pid, wire.a, wire.b) as fds:
        identities = {identity(fd) for fd in fds.values() if fd is not None}
    ran = lab.down()
    left = [f"/run/netns/{n}" for n in (wire.a, wire.b) if n in names(lab.pid)]
    left += [m for m in netns_mounts(lab.pid) if m.split()[0] in (f"/run/netns/{wire.a}",
                                                                  f"/run/netns/{wire.b}")]
    left += lab.holders(identities)
    left += [f"in the host: {line}" for line in lab.added_to_host(settle=NETNS_TEARDOWN)]
    if left:
        raise Fail("`down` left traces", seen="; ".join(left[:8]) + f" (`down` ended with {ran.exit})",
                   hint="ip netns delete NS_A and NS_B (it unmounts and removes the file); a "
                        "process still in a namespace keeps it, and its veth end, alive: end it")
