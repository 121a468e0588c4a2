"""Exercise veth: the grader's premises, seen by other tools, and its machinery.

The references, the starter, the mutants and the unusual solutions are
graded by tests/test_grader_selftest.py (once for the whole suite).

Here: the sandbox driver (grader/rerun.py) reports each run's status and
standard error and survives a run that hangs; what grader/netns.py reads
from outside is what ip(8) shows from inside the sandbox (names, veth
peers, addresses); a symbolic link in the sandbox's /run/netns cannot send
the grader to the machine's namespace; and the machine's /run/netns, links
and addresses are the same after grading as before (the conftest leak
check compares them after every test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grader.engine import Exercise, Trial, grade_exercise
from grader.exercises import all_exercises
from grader.feedback import Status, Timeout
from grader.netns import Lab, draw_wire, named, names, open_named
from grader.rerun import Rerun
from grader.sandbox import hidden_paths

KIT = Path(__file__).resolve().parent.parent
VETH = all_exercises()["veth"]
REFERENCE = KIT / "solutions" / "veth"


def probe(folder: Path, look) -> dict:
    """Grade FOLDER with one check that calls LOOK(trial, facts); return the facts."""
    facts: dict = {}
    exercise = Exercise("veth", "probe")

    @exercise.check(1, "look")
    def look_at_it(trial: Trial) -> None:
        look(trial, facts)

    result = grade_exercise(exercise, folder, hidden_paths(folder.parent))
    check = result.checks[0]
    assert check.status is Status.PASSED, check.message
    return facts


def inside(lab: Lab, *argv: str) -> str:
    """ARGV run by a tool of the machine in the sandbox's mount and network namespaces."""
    return subprocess.run(["nsenter", f"--target={lab.pid}", "--mount", "--net", *argv],
                          capture_output=True, text=True, timeout=10, check=True).stdout


def test_what_the_grader_reads_is_what_ip_shows_inside_the_sandbox():
    def look(trial: Trial, facts: dict) -> None:
        lab = Lab(trial)
        facts["up"] = lab.up()
        facts["wire"] = lab.wire
        facts["names"] = names(lab.pid)
        facts["ip netns list"] = json.loads(inside(lab, "ip", "-j", "netns", "list") or "[]")
        a, b = lab.views()
        facts["views"] = a, b
        facts["ip a"] = json.loads(inside(lab, "ip", "-j", "-d", "-n", lab.wire.a, "address"))
        facts["ip b"] = json.loads(inside(lab, "ip", "-j", "-d", "-n", lab.wire.b, "address"))

    facts = probe(REFERENCE, look)
    wire, (a, b) = facts["wire"], facts["views"]
    assert facts["up"].exit.status == 0 and facts["up"].stderr == ""
    assert sorted(n["name"] for n in facts["ip netns list"]) == facts["names"] == sorted([wire.a, wire.b])
    for view, shown, address in ((a, facts["ip a"], wire.address_a), (b, facts["ip b"], wire.address_b)):
        veth = next(link for link in shown if link.get("linkinfo", {}).get("info_kind") == "veth")
        ours = next(link for link in view.links if link.kind == "veth")
        assert (ours.index, ours.name) == (veth["ifindex"], veth["ifname"])
        assert ours.peer_index == veth["link_index"]
        assert ours.peer_nsid == veth["link_netnsid"]
        assert address in [f"{i['local']}/{i['prefixlen']}" for i in veth["addr_info"]]
        assert address in view.addresses_of(ours.index)


def test_the_driver_reports_each_runs_status_and_standard_error(tmp_path):
    folder = tmp_path / "veth"
    folder.mkdir()
    (folder / "solution").write_text('#!/bin/sh\necho "out $*"; echo "err $1" >&2; exit $2\n')
    (folder / "solution").chmod(0o755)

    def look(trial: Trial, facts: dict) -> None:
        rerun = Rerun(trial)
        run = rerun.start()
        facts["first"] = rerun.solution("one", "3")
        facts["second"] = rerun.solution("two", "0")
        facts["tool"] = rerun.command("/bin/sh", "-c", "kill -TERM $$")
        facts["transcript"] = run.transcript.text

    facts = probe(folder, look)
    assert (facts["first"].exit.code, facts["first"].stderr) == (3, "err one\n")
    assert (facts["second"].exit.code, facts["second"].stderr) == (0, "err two\n")
    assert facts["tool"].exit.signal == 15
    assert "out one 3" in facts["transcript"] and "out two 0" in facts["transcript"]


def test_a_run_that_hangs_is_a_timeout_and_leaves_nothing(tmp_path):
    folder = tmp_path / "veth"
    folder.mkdir()
    (folder / "solution").write_text("#!/bin/sh\nsleep 1000\n")
    (folder / "solution").chmod(0o755)

    def look(trial: Trial, facts: dict) -> None:
        rerun = Rerun(trial)
        rerun.start()
        with pytest.raises(Timeout):
            rerun.solution("up", timeout=0.5)

    probe(folder, look)  # the conftest fixture fails the test if the sleep survived


def test_a_symbolic_link_in_run_netns_does_not_lead_the_grader_out(tmp_path):
    folder = tmp_path / "veth"
    folder.mkdir()
    # "up" names the sandbox's own namespace twice: as a link to /proc/1/ns/net
    # (which the grader, outside, would resolve to the machine's PID 1) and as a
    # plain file.
    (folder / "solution").write_text("#!/bin/sh\nmkdir -p /run/netns\n"
                                     'ln -s /proc/1/ns/net "/run/netns/$2"\ntouch "/run/netns/$4"\n')
    (folder / "solution").chmod(0o755)

    def look(trial: Trial, facts: dict) -> None:
        lab = Lab(trial)
        lab.up()
        facts["names"] = names(lab.pid)
        facts["opened"] = [open_named(lab.pid, n) for n in (lab.wire.a, lab.wire.b)]
        with named(lab.pid, lab.wire.a, lab.wire.b) as fds:
            facts["named"] = dict(fds)

    facts = probe(folder, look)
    assert len(facts["names"]) == 2
    assert facts["opened"] == [None, None]
    assert list(facts["named"].values()) == [None, None]


def test_the_grader_says_why_a_link_in_run_netns_is_not_a_named_namespace(tmp_path):
    folder = tmp_path / "veth"
    folder.mkdir()
    (folder / "solution").write_text("#!/bin/sh\nmkdir -p /run/netns\n"
                                     'ln -s /proc/1/ns/net "/run/netns/$2"\n'
                                     'ln -s /proc/1/ns/net "/run/netns/$4"\n')
    (folder / "solution").chmod(0o755)
    result = grade_exercise(VETH, folder, hidden_paths(folder.parent))
    first = result.checks[0]
    assert first.name == "named_namespaces" and first.status is Status.FAILED
    assert "not a network namespace bind-mounted there" in first.message
    assert result.score == 0


def test_drawn_addresses_are_two_hosts_of_one_private_network():
    import ipaddress

    class Values:
        random = Trial.random
        token, number, choice = Trial.token, Trial.number, Trial.choice

    values = Values()
    prefixes = set()
    for _ in range(200):
        wire = draw_wire(values)
        a, b = ipaddress.ip_interface(wire.address_a), ipaddress.ip_interface(wire.address_b)
        assert a.network == b.network and a.network.is_private and a.ip != b.ip
        assert a.ip not in (a.network.network_address, a.network.broadcast_address)
        assert b.ip not in (b.network.network_address, b.network.broadcast_address)
        assert wire.a != wire.b and "/" not in wire.a + wire.b
        prefixes.add(a.network.prefixlen)
    assert {24, 30} <= prefixes and len(prefixes) > 4


def test_grading_leaves_the_machines_run_netns_as_it_was():
    before = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    result = grade_exercise(VETH, REFERENCE, hidden_paths())
    assert result.score == result.max_score, [c.message for c in result.checks if not c.passed]
    after = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    assert after == before


def machine_network() -> dict[str, object]:
    """The machine's own /run/netns, links and addresses, as ip(8) shows them."""
    def ip(*args: str) -> list:
        return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True,
                                         check=True).stdout or "[]")
    return {"netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
            "links": sorted((link["ifindex"], link["ifname"]) for link in ip("link")),
            "addresses": sorted((a["ifname"], i["local"], i["prefixlen"])
                                for a in ip("address") for i in a.get("addr_info", []))}


def test_grader_check_veth_userns_gives_the_references_full_marks_and_the_starters_zero():
    before = machine_network()
    full = f"{VETH.max_score + all_exercises()['userns'].max_score:g}"
    for workspace, score in ((KIT / "solutions", f"{full}/{full}"), (KIT / "exercises", f"0/{full}")):
        out = subprocess.run([sys.executable, "-m", "grader", "check", "veth", "userns",
                              "--student", str(workspace)], cwd=KIT, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == (1 if score.startswith("0/") else 0), out.stdout + out.stderr
        assert f"total: {score}" in out.stdout, out.stdout
    assert machine_network() == before


def test_the_starters_try_it_commands_work_as_printed_with_the_reference():
    """The starter prints one script that makes a sandbox and tries up and down: it works, with a solution."""
    text = (KIT / "exercises" / "veth" / "solution").read_text()
    after = text.split("Try it in namespaces of your own, never on the machine's own network:\n\n")[1]
    block = []
    for line in after.splitlines():
        if not line.startswith("    "):
            break
        block.append(line[4:])
    script = "\n".join(block)
    assert script.startswith("sudo unshare --mount --net sh -c '") and "./solution down red blue'" in script
    out = subprocess.run(script.removeprefix("sudo "), shell=True, cwd=REFERENCE,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "red (id:" in out.stdout or "red\n" in out.stdout
    assert "inet 10.77.3.1/24" in out.stdout and "1 received" in out.stdout
