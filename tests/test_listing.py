"""``labkit ls`` against lsns(8) 2.38.1, run side by side on the same machine.

The machine is live: other people's processes and namespaces come and go
while the two tools look.  So every test creates namespaces of its own with
a known number of processes and compares those column for column; for the
rest of the system it compares what both tools must agree on despite the
churn (see test_json_agrees_with_lsns_on_every_namespace).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pexpect
import pytest
import tools

from labkit.join import enter
from labkit.namespace import Namespace
from labkit.spawn import spawn

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = "NS,TYPE,NPROCS,PID,PPID,UID,USER,COMMAND,PNS,ONS"  # lsns's names for our JSON keys
DEFAULT_KEYS = ("ns", "type", "nprocs", "pid", "user", "command")  # lsns --json without -o


def labkit_ls(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", "ls", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def lsns(*args: str) -> subprocess.CompletedProcess:
    return tools.lsns(*args)


def parsed(r: subprocess.CompletedProcess) -> list[dict]:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["namespaces"]


def by_inode(nodes: list[dict]) -> dict[int, dict]:
    """Flatten a (possibly nested) lsns --json list into {inode: entry without children}."""
    flat = {}
    for node in nodes:
        flat[node["ns"]] = {k: v for k, v in node.items() if k != "children"}
        flat.update(by_inode(node.get("children", [])))
    return flat


def path_to(nodes: list[dict], inode: int, above: tuple = ()) -> tuple | None:
    """The inodes from a root of the tree down to INODE."""
    for node in nodes:
        here = (*above, node["ns"])
        if node["ns"] == inode:
            return here
        found = path_to(node.get("children", []), inode, here)
        if found:
            return found
    return None


def link(pid: int, nstype: str) -> str:
    r = subprocess.run(["readlink", f"/proc/{pid}/ns/{nstype}"], capture_output=True, text=True)
    return r.stdout.strip()


def inode(pid: int, nstype: str) -> int:
    return Namespace.of(pid, nstype).inode


def wait_until(predicate, what: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.02)
    return value


def child_running(parent: int, command: bytes) -> int | None:
    """The PID of a child of PARENT whose command line is COMMAND, once it has exec'd."""
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and cmdline == command:
            return int(entry)
    return None


# Namespaces of our own, with a known number of processes -------------------

@pytest.fixture
def sharing_sleepers():
    """Three sleepers sharing one new UTS and one new IPC namespace."""
    with ExitStack() as stack:
        first = stack.enter_context(spawn(["sleep", "60"], "uts,ipc"))
        others = [stack.enter_context(enter(first.pid, "uts,ipc", ["sleep", "60"])) for _ in range(2)]
        pids = [first.pid] + [c.pid for c in others]
        yield pids, {t: inode(first.pid, t) for t in ("uts", "ipc")}


@pytest.fixture
def pid_chain():
    """Three nested PID namespaces, one process in each: [level 1, level 2, level 3] inodes."""
    nested = ["unshare", "--pid", "--fork", "unshare", "--pid", "--fork", "sleep", "60"]
    with spawn(nested, "pid") as top:
        middle = wait_until(lambda: child_running(top.pid, b"unshare\0--pid\0--fork\0sleep\x0060\0"),
                            "the second unshare")
        bottom = wait_until(lambda: child_running(middle, b"sleep\x0060\0"), "the sleeper")
        yield [inode(p, "pid") for p in (top.pid, middle, bottom)], [top.pid, middle, bottom]


@pytest.fixture
def ghost_user_namespace():
    """A user namespace with no process of its own, parent of one that has a sleeper.

    unshare -r makes A and runs sh in it; sh starts a second unshare -r (B,
    a child of A) in the background and exits, leaving A without processes.
    The sleeper is reparented to the test runner, a child subreaper.
    """
    r = subprocess.run(["unshare", "-Ur", "sh", "-c", "unshare -Ur sleep 60 >/dev/null 2>&1 & echo $!"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    sleeper = int(r.stdout)
    wait_until(lambda: open(f"/proc/{sleeper}/cmdline", "rb").read() == b"sleep\x0060\0", "the sleeper")
    try:
        child = Namespace.of(sleeper, "user")
        yield child.parent().inode, child.inode, sleeper
    finally:
        os.kill(sleeper, signal.SIGKILL)
        os.waitpid(sleeper, 0)


# The flat listing ------------------------------------------------------------

def test_own_namespaces_match_lsns_column_for_column(sharing_sleepers, pid_chain):
    pids, shared = sharing_sleepers
    chain, chain_pids = pid_chain
    ours = by_inode(parsed(labkit_ls("--json", "-o", COLUMNS)))
    theirs = by_inode(parsed(lsns("--json", "-o", COLUMNS)))
    for nstype, ino in shared.items():
        assert ours[ino] == theirs[ino]
        assert ours[ino]["type"] == nstype and ours[ino]["nprocs"] == 3
        assert ours[ino]["pid"] == min(pids) and ours[ino]["ppid"] == os.getpid()
        assert (ours[ino]["user"], ours[ino]["command"]) == ("root", "sleep 60")
    for ino, pid in zip(chain, chain_pids, strict=True):
        assert ours[ino] == theirs[ino]
        assert (ours[ino]["nprocs"], ours[ino]["pid"]) == (1, pid)
    assert ours[chain[0]]["pns"] == inode(os.getpid(), "pid")
    assert (ours[chain[1]]["pns"], ours[chain[2]]["pns"]) == (chain[0], chain[1])


def test_json_agrees_with_lsns_on_every_namespace(sharing_sleepers):
    """Both tools, taken in turns, must see the same namespaces.

    labkit, lsns, labkit: a namespace that labkit saw both times with the
    same lowest PID lived all along, so lsns must list it, with the same
    type, PID, user and command when those did not change either.  A
    namespace that only lsns listed must have been short-lived: by now its
    process is no longer in it.
    """
    before = by_inode(parsed(labkit_ls("--json")))
    theirs = by_inode(parsed(lsns("--json")))
    after = by_inode(parsed(labkit_ls("--json")))

    lived = [i for i in before if i in after and (before[i]["type"], before[i]["pid"])
             == (after[i]["type"], after[i]["pid"]) and before[i]["nprocs"]]  # 2.38 lists no NPROCS 0
    assert set(sharing_sleepers[1].values()) <= set(lived)
    assert [i for i in lived if i not in theirs] == []
    for i in lived:
        assert theirs[i]["type"] == before[i]["type"]
        if all(before[i][k] == after[i][k] for k in ("pid", "user", "command")):
            assert {k: theirs[i][k] for k in ("pid", "user", "command")} == \
                   {k: before[i][k] for k in ("pid", "user", "command")}
        assert [type(before[i][k]) for k in DEFAULT_KEYS] == [type(theirs[i][k]) for k in DEFAULT_KEYS]
    only_lsns = [e for i, e in theirs.items() if i not in before and i not in after]
    assert [e for e in only_lsns if link(e["pid"], e["type"]) == f"{e['type']}:[{e['ns']}]"] == []


def test_json_has_lsns_keys_and_o_adds_more():
    assert list(parsed(labkit_ls("--json"))[0]) == list(DEFAULT_KEYS) == \
        list(parsed(lsns("--json"))[0])
    entry = parsed(labkit_ls("--json", "-o", "+PPID,UID,PNS,ONS"))[0]
    assert list(entry) == [*DEFAULT_KEYS, "ppid", "uid", "pns", "ons"]
    assert list(parsed(labkit_ls("-J", "--output-all"))[0]) == \
        list(parsed(lsns("-J", "--output-all"))[0]) == [c.lower() for c in lsns_columns()]


def lsns_columns() -> list[str]:
    """The columns lsns --help lists, in its order."""
    text = lsns("--help").stdout
    return [line.split()[0] for line in text.split("Available output columns:")[1].splitlines()
            if line.strip() and line.split()[0].isupper()]


def test_type_filter_lists_only_those_types(sharing_sleepers):
    _, shared = sharing_sleepers
    ours = by_inode(parsed(labkit_ls("--json", "-t", "uts", "-t", "ipc")))
    theirs = by_inode(parsed(lsns("--json", "-t", "uts", "-t", "ipc")))
    assert {e["type"] for e in ours.values()} == {e["type"] for e in theirs.values()} == {"uts", "ipc"}
    for ino in shared.values():
        assert {k: ours[ino][k] for k in DEFAULT_KEYS} == theirs[ino]
    # unshare(1)'s spelling of a type is accepted too
    assert {e["type"] for e in parsed(labkit_ls("--json", "-t", "mount"))} == {"mnt"}


def test_unknown_type_is_a_clear_error():
    r = labkit_ls("-t", "bogus")
    assert r.returncode != 0 and r.stdout == ""
    assert "unknown namespace type 'bogus'" in r.stderr and "uts" in r.stderr
    assert "Traceback" not in r.stderr


def test_plain_output_parses_into_the_json_rows(sharing_sleepers):
    _, shared = sharing_sleepers
    lines = labkit_ls("-l").stdout.splitlines()
    assert lines[0].split() == ["NS", "TYPE", "NPROCS", "PID", "USER", "COMMAND"]
    rows = {}
    for line in lines[1:]:
        ns, nstype, nprocs, pid, user, *command = line.split(None, 5)
        rows[int(ns)] = {"ns": int(ns), "type": nstype, "nprocs": int(nprocs), "pid": int(pid),
                         "user": user, "command": command[0] if command else ""}
    as_json = by_inode(parsed(labkit_ls("--json")))
    for ino in shared.values():
        assert rows[ino] == {k: as_json[ino][k] for k in DEFAULT_KEYS}


def test_command_with_newline_and_tab_is_written_as_lsns_writes_it():
    argv = [sys.executable, "-c", "import time\ntime.sleep(60)", "a\tb", "é"]
    with spawn(argv, "uts") as child:
        ns = inode(child.pid, "uts")
        ours_text = [line for line in labkit_ls("-l", "-t", "uts").stdout.splitlines()
                     if line.startswith(str(ns))]
        theirs_text = lsns("-l", "-t", "uts", "--noheadings", "-o", "NS,COMMAND").stdout.splitlines()
        ours_json = by_inode(parsed(labkit_ls("--json", "-t", "uts")))[ns]
        theirs_json = by_inode(parsed(lsns("--json", "-t", "uts")))[ns]
    assert ours_json["command"] == theirs_json["command"] == " ".join(argv)
    command = ours_text[0].split(None, 5)[5]
    assert command == f"{sys.executable} -c import time\\x0atime.sleep(60) a\\x09b é"
    assert [line for line in theirs_text if line.split(None, 1) == [str(ns), command]]


# Trees -------------------------------------------------------------------------

def test_parent_tree_shows_the_pid_namespace_chain(pid_chain):
    chain, _ = pid_chain
    ours = parsed(labkit_ls("--json", "--tree=parent"))
    theirs = parsed(lsns("--json", "--tree=parent"))
    assert path_to(ours, chain[2]) == (inode(os.getpid(), "pid"), *chain)
    assert path_to(ours, chain[2]) == path_to(theirs, chain[2])


def test_parent_tree_shows_a_user_namespace_without_processes(ghost_user_namespace):
    ghost, child, sleeper = ghost_user_namespace
    ours = parsed(labkit_ls("--json", "--tree=parent", "-t", "user"))
    theirs = parsed(lsns("--json", "--tree=parent", "-t", "user"))
    assert path_to(ours, child) == (inode(os.getpid(), "user"), ghost, child) == path_to(theirs, child)
    entry = {k: by_inode(ours)[ghost][k] for k in DEFAULT_KEYS}
    assert entry == by_inode(theirs)[ghost] == {"ns": ghost, "type": "user", "nprocs": 0, "pid": None,
                                                "user": "root", "command": None}
    assert by_inode(ours)[child]["pid"] == sleeper
    assert ghost not in by_inode(parsed(labkit_ls("--json"))) | by_inode(parsed(lsns("--json")))


def test_owner_tree_matches_lsns(sharing_sleepers, ghost_user_namespace):
    _, shared = sharing_sleepers
    ghost, child, sleeper = ghost_user_namespace
    ours = parsed(labkit_ls("--json", "-Towner"))
    theirs = parsed(lsns("--json", "--tree=owner"))
    init_user = inode(os.getpid(), "user")
    for ino in shared.values():
        assert path_to(ours, ino) == (init_user, ino) == path_to(theirs, ino)
    sleeper_uts = inode(sleeper, "uts")  # unshare -U makes only a user namespace: the machine's uts
    assert path_to(ours, sleeper_uts) == (init_user, sleeper_uts)
    assert path_to(ours, child) == (init_user, ghost, child) == path_to(theirs, child)


def test_process_tree_matches_lsns_default_view():
    # sh in a new UTS namespace; its child sleep in a new IPC namespace as well.
    with spawn(["sh", "-c", "unshare --ipc sleep 60; :"], "uts") as shell:
        sleeper = wait_until(lambda: child_running(shell.pid, b"sleep\x0060\0"), "the sleeper")
        try:
            ipc, uts = inode(sleeper, "ipc"), inode(shell.pid, "uts")
            assert ipc != inode(shell.pid, "ipc")
            ours = parsed(labkit_ls("--json", "--tree=process"))
            theirs = parsed(lsns("--json"))  # lsns's default view is this tree
        finally:
            os.kill(sleeper, signal.SIGKILL)  # sh reaps it and ends
        assert path_to(ours, ipc) == path_to(theirs, ipc)
        if uts < ipc:  # listed first, so the sleeper's line hangs under it
            assert path_to(ours, ipc) == (uts, ipc)


def test_tree_text_output_draws_the_nesting(pid_chain):
    chain, _ = pid_chain
    lines = labkit_ls("--tree=parent", "-t", "pid").stdout.splitlines()
    assert lines[0].split()[:2] == ["NS", "TYPE"]

    def column(ino: int) -> int:  # where the inode starts on its line, after the tree's guides
        return next(line.index(str(ino)) for line in lines if line.lstrip("│├└─ ").startswith(str(ino)))

    assert column(inode(os.getpid(), "pid")) < column(chain[0]) < column(chain[1]) < column(chain[2])
    assert f"└─{chain[2]}" in "\n".join(lines)


@pytest.mark.parametrize("tree", [[], ["--tree=parent"]])
def test_terminal_output_is_drawn_by_rich(sharing_sleepers, tree):
    _, shared = sharing_sleepers
    term = pexpect.spawn(sys.executable, ["-m", "labkit", "ls", *tree], cwd=str(ROOT),
                         dimensions=(60, 220), env={**os.environ, "TERM": "xterm"}, encoding="utf-8")
    out = term.read()
    term.close()
    assert term.exitstatus == 0, out
    assert str(shared["uts"]) in out
    assert "┃" in out  # rich's table: its heavy header border
    assert "└─" in out if tree else "NPROCS" in out


# Rootless ----------------------------------------------------------------------

def test_rootless_listing_shows_only_the_users_own_namespaces(unprivileged):
    uid = str(unprivileged.uid)
    argv = ["setpriv", f"--reuid={uid}", f"--regid={unprivileged.gid}", "--clear-groups",
            "unshare", "--user", "--uts", "--ipc", "sleep", "60"]
    with spawn(argv) as sleeper:
        wait_until(lambda: open(f"/proc/{sleeper.pid}/cmdline", "rb").read() == b"sleep\x0060\0",
                   "the sleeper")
        own = {t: inode(sleeper.pid, t) for t in ("user", "uts", "ipc", "mnt")}
        ours = by_inode(parsed(unprivileged.labkit("ls", "--json", "-o", COLUMNS)))
        theirs = by_inode(parsed(tools.lsns("--json", "-o", COLUMNS, run=unprivileged.run)))
    name = ours[own["user"]]["user"]
    for nstype in ("user", "uts", "ipc"):
        entry = ours[own[nstype]]
        assert entry == theirs[own[nstype]]
        assert (entry["nprocs"], entry["pid"], entry["command"]) == (1, sleeper.pid, "sleep 60")
    assert ours[own["uts"]]["ons"] == own["user"]  # owned by the user's own user namespace
    assert own["mnt"] in ours and own["mnt"] in theirs  # the machine's, seen through the user's processes
    assert {e["user"] for e in ours.values()} == {e["user"] for e in theirs.values()} == {name} != {"root"}
    assert not [e for e in ours.values() if e["pid"] == 1]  # PID 1, as root's processes, is not ours to read


# The text lsns prints, on namespaces of our own (their lines do not churn) --------------

@pytest.mark.parametrize("options", [
    [], ["-l"], ["-r"], ["-n"], ["-J"], ["-o", "PID,PPID,UID,USER,PATH,NS,TYPE,NPROCS,PNS,ONS"],
    ["-o", "+PATH"], ["-u", "-W"], ["--output-all", "-l"], ["-r", "-n", "-o", "PID,COMMAND"],
])
def test_namespace_argument_prints_what_lsns_prints(sharing_sleepers, options):
    """lsns NSID: the processes in one namespace, in a process tree, PID PPID USER COMMAND."""
    _, shared = sharing_sleepers
    for ino in shared.values():
        ours, theirs = labkit_ls(*options, str(ino)), lsns(*options, str(ino))
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)
        assert ours.stdout.count("sleep") == 3 or "COMMAND" not in ours.stdout


def test_numbers_are_right_aligned_as_lsns_aligns_them(sharing_sleepers):
    pids, shared = sharing_sleepers
    lines = labkit_ls("-l", "-o", "NS,TYPE,NPROCS,PID,PPID,UID,USER,COMMAND", "-p", str(pids[0])).stdout
    header, *rows = lines.splitlines()
    for column in ("NS", "NPROCS", "PID", "PPID", "UID"):
        end = header.index(column) + len(column)
        for row in rows:
            assert row[end - 1].isdigit() and row[end] == " ", (column, row)
    assert {int(row.split()[0]) for row in rows} >= set(shared.values())
    ours = [row.split()[:2] for row in rows]
    theirs = lsns("-l", "-n", "-o", "NS,TYPE", "-p", str(pids[0])).stdout.splitlines()
    theirs = [row.split()[:2] for row in theirs]
    assert ours == theirs  # -p: the namespaces of that process, all eight


def test_option_errors_are_lsns_errors():
    for args, message in ((["-o", "BOGUS"], "unknown column: BOGUS"), (["-J", "-r"], "mutually exclusive"),
                          (["-T", "sideways"], "invalid namespace argument: 'sideways'"),
                          (["--tree=sideways"], "unknown tree type: sideways"),
                          (["-p", "1", "4026531836"], "--task is mutually exclusive with <namespace>"),
                          (["1"], "not found namespace: 1"), (["--bogus"], "unrecognized option '--bogus'")):
        ours, theirs = labkit_ls(*args), lsns(*args)
        assert ours.returncode == theirs.returncode == 1, (args, ours, theirs)
        assert message in ours.stderr and message in theirs.stderr, (ours.stderr, theirs.stderr)


# util-linux's own tests (tests/ts/lsns/*), with labkit in place of lsns and unshare ------

def in_own_namespaces(script: str) -> subprocess.CompletedProcess:
    """Run SCRIPT (sh) in new mount and network namespaces, where $LABKIT is labkit:
    its netns files, bind mounts and veths end with it."""
    env = {**os.environ, "LABKIT": f"{sys.executable} -m labkit"}
    script = "mount -t tmpfs nslab-test-netns /run/netns\n" + script  # ip netns add's files: ours
    return subprocess.run(["unshare", "--mount", "--net", "sh", "-euc", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("run", ["unshare", "$LABKIT run"])
@pytest.mark.parametrize("ls", ["lsns", "$LABKIT ls"])
def test_util_linux_ioctl_ns(run, ls):
    """ts/lsns/ioctl_ns: NS,PNS,ONS of a child user and PID namespace, with -t and NSID."""
    result = in_own_namespaces(f"""
        {run} --user --pid --mount-proc --fork --kill-child sleep 60 &
        while ! child=$(pgrep -x -P $! sleep); do sleep 0.05; done
        my_userns=$(stat -c %i -L /proc/self/ns/user); my_pidns=$(stat -c %i -L /proc/self/ns/pid)
        child_userns=$(stat -c %i -L /proc/$child/ns/user); child_pidns=$(stat -c %i -L /proc/$child/ns/pid)
        test "$({ls} -t user -n -o NS,PNS,ONS $child_userns | uniq)" = "$child_userns $my_userns $my_userns"
        test "$({ls} -t pid -n -o NS,PNS,ONS $child_pidns | uniq)" = "$child_pidns $my_pidns $child_userns"
        echo ok
        kill -KILL $!
    """)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")


@pytest.mark.parametrize("ls", ["lsns", "$LABKIT ls"])
def test_util_linux_nsfs(ls, tmp_path):
    """ts/lsns/nsfs: the NSFS column lists every bind mount of a netns, one a line or, -W, a list."""
    result = in_own_namespaces(f"""
        PATH2={tmp_path}/XYZ
        ip netns add ABC
        touch $PATH2
        mount --bind /run/netns/ABC $PATH2
        ip netns exec ABC sleep 60 &
        while [ "$(readlink /proc/$!/ns/net)" = "$(readlink /proc/self/ns/net)" ]; do sleep 0.05; done
        {ls} -n -o NSFS --type net --task $! | while read VAL; do echo $VAL; done
        {ls} -n -o NSFS --nowrap --type net --task $!
        kill $!
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["/run/netns/ABC", f"{tmp_path}/XYZ",
                                          f"/run/netns/ABC,{tmp_path}/XYZ"]


@pytest.mark.parametrize("ls", ["lsns", "$LABKIT ls"])
def test_util_linux_netnsid(ls):
    """ts/lsns/netnsid: NETNSID is the link-netnsid that ip link shows for a veth's peer."""
    result = in_own_namespaces(f"""
        ip netns add LSNS-TEST-NETNSID-NS
        ip link add name lsns-vetha type veth peer name lsns-vethb
        ip link set lsns-vethb netns LSNS-TEST-NETNSID-NS
        ip netns exec LSNS-TEST-NETNSID-NS sleep 60 &
        while [ "$(readlink /proc/$!/ns/net)" = "$(readlink /proc/self/ns/net)" ]; do sleep 0.05; done
        IP_ID=$(ip -o link show dev lsns-vetha | sed -ne 's/.* *link-netnsid *\\([0-9]*\\)/\\1/p')
        [ -n "$IP_ID" ] || IP_ID=$(ip netns list-id | awk '/name: LSNS-TEST-NETNSID-NS/ {{ print $2 }}')
        echo $IP_ID
        {ls} -n -o NETNSID --type net --task $! | {{ read VAL; echo $VAL; }}
        {ls} -n -o NETNSID --type net --task $$ | {{ read VAL; echo $VAL; }}
        kill $!
    """)
    assert result.returncode == 0, result.stderr
    ip_id, lsns_id, own = result.stdout.split()
    assert (lsns_id, own) == (ip_id, "unassigned")


def test_util_linux_netnsid_for_persistent_namespaces():
    """ts/lsns/netnsid-for-persistent-namespaces (util-linux 2.40): a netns that no process
    is in, held by ip netns add, is listed with its NETNSID, TYPE and NSFS."""
    result = in_own_namespaces("""
        ip netns add LSNS-TEST-NETNSID-NS-FOR-PN
        ip netns set LSNS-TEST-NETNSID-NS-FOR-PN 4242
        $LABKIT ls --raw --noheadings -o NETNSID,TYPE,NSFS,NPROCS,PID | grep '^4242 '
    """)
    assert (result.returncode, result.stdout) == (0, "4242 net /run/netns/LSNS-TEST-NETNSID-NS-FOR-PN 0 \n")


def test_util_linux_filedesc():
    """ts/lsns/filedesc (util-linux 2.40): a netns held only by an open file descriptor."""
    result = in_own_namespaces("""
        ip netns add LSNS-TEST-FILEDESC-NS
        exec 4</run/netns/LSNS-TEST-FILEDESC-NS
        ip netns delete LSNS-TEST-FILEDESC-NS
        inode=$(stat -L -c %i /proc/$$/fd/4)
        $LABKIT ls -n --raw -o NS,TYPE,NPROCS,USER | grep "^$inode " | cut -d' ' -f2-
        findmnt -t nsfs -n | wc -l
    """)
    assert (result.returncode, result.stdout) == (0, "net 0 root\n0\n")


@pytest.mark.parametrize("ls", ["lsns", "$LABKIT ls"])
def test_util_linux_filter_as_a_namespace_argument(ls):
    """ts/lsns/filter asks -Q 'NS == inode && NPROCS == 1' (2.40); lsns 2.38 says it with NSID."""
    result = in_own_namespaces(f"""
        unshare --user sleep 60 &
        while [ "$(readlink /proc/$!/ns/user)" = "$(readlink /proc/self/ns/user)" ]; do sleep 0.05; done
        {ls} -n --raw -o PID,NPROCS $(stat -L -c %i /proc/$!/ns/user)
        echo $!
        kill $!
    """)
    assert result.returncode == 0, result.stderr
    line, pid = result.stdout.splitlines()
    assert line == f"{pid} 1"


def test_parent_tree_of_pid_namespaces_brings_their_owner_along(pid_chain):
    """lsns --tree=parent -t pid: a PID namespace without a parent has its owner shown first."""
    chain, _ = pid_chain
    ours = parsed(labkit_ls("-J", "--tree=parent", "-t", "pid"))
    theirs = parsed(lsns("-J", "--tree=parent", "-t", "pid"))
    init_user, init_pid = inode(os.getpid(), "user"), inode(os.getpid(), "pid")
    first_two = [(e["ns"], e["type"], e["nprocs"]) for e in ours[:2]]
    assert first_two == [(e["ns"], e["type"], e["nprocs"]) for e in theirs[:2]]
    assert first_two[0] == (init_user, "user", 0) and first_two[1][:2] == (init_pid, "pid")
    assert path_to(ours, chain[2]) == (init_pid, *chain) == path_to(theirs, chain[2])


FOREIGN_SOCKET = """
import os, socket, sys
from labkit import syscalls
home = os.open("/proc/self/ns/net", os.O_RDONLY)
syscalls.unshare("net")
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # made in the new namespace
netns = os.stat("/proc/self/ns/net").st_ino
syscalls.setns(home, "net")  # back home: no process is left in the new one
print(os.getpid(), sock.fileno(), netns, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def foreign_socket():
    """A process in our network namespace holding a socket made in another one (test_mkfds
    foreign-sockets): (pid, fd, inode of the socket's namespace)."""
    proc = subprocess.Popen([sys.executable, "-c", FOREIGN_SOCKET], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        pid, fd, netns = (int(x) for x in proc.stdout.readline().split())
        yield pid, fd, netns
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_util_linux_netns_from_sock(foreign_socket):
    """ts/lsns/netns-from-sock (util-linux 2.40): a network namespace that only a socket holds."""
    _, _, netns = foreign_socket
    expected = {"NS": str(netns), "TYPE": "net", "NPROCS": "0", "PID": "", "USER": "root", "COMMAND": ""}
    for column, value in expected.items():
        rows = labkit_ls("--noheadings", "--raw", "--output", f"NS,{column}").stdout.splitlines()
        assert [row.split(" ", 1)[1] for row in rows if row.split(" ", 1)[0] == str(netns)] == [value]


def test_util_linux_nsenter_enter_via_socket(foreign_socket):
    """ts/nsenter/enter-via-socket (util-linux 2.40): --net-socket FD of --target PID."""
    pid, fd, netns = foreign_socket
    result = subprocess.run([sys.executable, "-m", "labkit", "enter", "--target", str(pid), "--net-socket",
                             str(fd), "readlink", "/proc/self/ns/net"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"net:[{netns}]\n")
