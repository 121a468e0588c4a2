"""labkit.container: `labkit container ROOTFS -- COMMAND`, all namespaces together.

Each test runs the real command line, as root and (where the kernel allows)
as an unprivileged user, and asks busybox tools inside the container what
they see: hostname, ps, /proc, ip link, /proc/sysvipc (what ipcs(1) reads),
/proc/self/cgroup, a marker file in the root.  The veth option runs only
inside a sandbox network namespace (labkit.net.sandbox), never on the host.
"""

from __future__ import annotations

import inspect
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from labkit import net
from labkit.container import busybox_rootfs

ROOT = Path(__file__).resolve().parent.parent
both = pytest.mark.parametrize("who", ["root", pytest.param("nobody", marks=pytest.mark.rootless)])


@pytest.fixture(scope="module")
def rootfs():
    """A busybox root file system that uid 65534 can read, with a random marker file."""
    path = tempfile.mkdtemp(prefix="nslab-rootfs-")
    busybox_rootfs(path)
    marker = secrets.token_hex(8)
    Path(path, "MARKER").write_text(marker + "\n")
    os.chmod(Path(path, "MARKER"), 0o644)
    yield path, marker
    shutil.rmtree(path)


def labkit(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)}, **kw)


def container(who, unprivileged, rootfs: str, script: str, *options: str, **kw):
    """Run `labkit container ROOTFS OPTIONS -- sh -c SCRIPT` as WHO; return the CompletedProcess."""
    args = ["container", rootfs, *options, "--", "sh", "-c", script]
    return unprivileged.labkit(*args) if who == "nobody" else labkit(*args, **kw)


def veths() -> str:
    return subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True).stdout


def sections(text: str) -> dict[str, list[str]]:
    """Split output at lines '== NAME' into {NAME: lines}."""
    found, current = {}, None
    for line in text.splitlines():
        if line.startswith("== "):
            current = found.setdefault(line[3:], [])
        elif current is not None:
            current.append(line)
    return found


PROBE = """
echo "== hostname"; hostname
echo "== marker"; cat /MARKER
echo "== me"; echo $$; cut -d' ' -f4 /proc/$$/stat
echo "== init"; tr '\\0' ' ' < /proc/1/cmdline; echo
echo "== ps"; ps -o pid,comm
echo "== proc"; ls /proc | grep -E '^[0-9]+$'
echo "== mounts"; cut -d' ' -f2 /proc/mounts
echo "== links"; ip -o link
echo "== id"; id -u; cat /proc/self/uid_map
"""


@both
def test_container_has_its_hostname_its_root_and_only_its_own_processes(who, unprivileged, rootfs):
    path, marker = rootfs
    hostname = "box-" + secrets.token_hex(3)
    result = container(who, unprivileged, path, PROBE, "--hostname", hostname)
    assert result.returncode == 0, result.stderr
    seen = sections(result.stdout)
    assert seen["hostname"] == [hostname] and socket.gethostname() != hostname
    assert seen["marker"] == [marker]  # / is the rootfs
    assert seen["me"] == ["2", "1"]  # COMMAND is PID 2, the child of PID 1...
    assert "labkit" in seen["init"][0]  # ...which is labkit's init
    pids = [int(line.split()[0]) for line in seen["ps"][1:]]
    assert pids[0] == 1 and len(pids) <= 4 and max(pids) < 10
    assert 1 in map(int, seen["proc"]) and len(seen["proc"]) <= 4  # a /proc of this PID namespace
    # The old root is gone: only the container's own mounts are left.
    assert set(seen["mounts"]) <= {"/", "/proc", "/dev", *(f"/dev/{d}" for d in
                                   ("null", "zero", "full", "random", "urandom", "tty"))}


@both
def test_container_network_is_lo_alone_and_up(who, unprivileged, rootfs):
    result = container(who, unprivileged, rootfs[0], "ip -o link")
    assert result.returncode == 0, result.stderr
    (lo,) = result.stdout.splitlines()
    assert lo.split()[1] == "lo:" and "<LOOPBACK,UP,LOWER_UP>" in lo


@pytest.mark.rootless
def test_rootless_container_is_root_inside_mapped_to_the_user_outside(unprivileged, rootfs):
    result = container("nobody", unprivileged, rootfs[0], PROBE)
    assert result.returncode == 0, result.stderr
    seen = sections(result.stdout)
    assert seen["id"][0] == "0"
    assert seen["id"][1].split() == ["0", str(unprivileged.uid), "1"]


def test_user_option_maps_root_as_root(unprivileged, rootfs):
    result = container("root", unprivileged, rootfs[0], PROBE, "--user")
    assert result.returncode == 0, result.stderr
    assert sections(result.stdout)["id"][1].split() == ["0", "0", "1"]


def test_container_sees_no_ipc_object_of_its_host(rootfs):
    def host_with_a_segment():
        # A "host" with an IPC namespace of its own, so that we can make an object.
        made = subprocess.run(["ipcmk", "-M", "4096"], capture_output=True, text=True, check=True)
        shmid = made.stdout.split()[-1]
        in_host = subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout
        inside = container("root", None, rootfs[0], "cat /proc/sysvipc/shm /proc/sysvipc/msg "
                           "/proc/sysvipc/sem")
        return shmid, in_host, inside.returncode, inside.stdout

    from labkit.spawn import run
    shmid, in_host, code, inside = run(host_with_a_segment, namespaces="ipc")
    assert shmid in in_host.split()  # ipcs on the "host" shows it
    assert code == 0
    assert len(inside.splitlines()) == 3  # three headers, no object (the files ipcs reads)
    assert shmid not in inside.split()


def test_container_cgroup_is_the_root_of_its_cgroup_namespace(rootfs):
    # Put the container in a cgroup of its own, so that "/" is not simply where it already was.
    group = Path("/sys/fs/cgroup/unified", os.environ.get("NSLAB_CGROUP_PREFIX", "nslab") + "-ctr")
    if not group.parent.is_dir():
        group = Path("/sys/fs/cgroup", group.name)  # a pure v2 machine
    group.mkdir()
    try:
        result = container("root", None, rootfs[0], "cat /proc/self/cgroup",
                           preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())))
        outside = (group / "cgroup.procs").read_text()
    finally:
        group.rmdir()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "0::/" in lines  # the v2 line: our cgroup, seen as the root
    assert all(line.endswith(":/") for line in lines)
    assert outside == ""


@pytest.mark.parametrize("script, status", [
    ("exit 7", 7), ("true", 0), ("kill -TERM $$", 128 + 15), ("kill -KILL $$", 128 + 9)])
def test_exit_status_is_commands_as_a_shell_reports_it(script, status, rootfs):
    assert container("root", None, rootfs[0], script).returncode == status


def test_missing_command_exits_127_with_a_message(rootfs):
    result = labkit("container", rootfs[0], "--", "no-such-cmd")
    assert result.returncode == 127
    assert "no-such-cmd" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("bad, says", [("/nonexistent-rootfs", "No such file"),
                                       ("/etc/passwd", "Not a directory"),
                                       ("/var/empty-root", "no /proc directory")])
def test_bad_root_file_system_gives_a_clear_message(bad, says, tmp_path):
    if bad == "/var/empty-root":
        bad = str(tmp_path)
    result = container("root", None, bad, "true")
    assert result.returncode == 1
    assert result.stderr.startswith("labkit: ") and says in result.stderr
    assert "Traceback" not in result.stderr


def test_a_root_file_system_the_user_cannot_reach_is_named_as_such(unprivileged, tmp_path):
    hidden = tmp_path / "hidden"
    (hidden / "rootfs" / "proc").mkdir(parents=True)
    hidden.chmod(0o700)  # root's: user 65534 may not search it
    result = container("nobody", unprivileged, str(hidden / "rootfs"), "true")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Permission denied" in result.stderr and "may not be searched by this user" in result.stderr


def test_bad_veth_option_gives_a_clear_message(rootfs):
    result = container("root", None, rootfs[0], "true", "--veth", "10.0.0.1")
    assert result.returncode == 1 and "HOST_ADDR,CONTAINER_ADDR" in result.stderr


@pytest.mark.rootless
def test_rootless_veth_outside_a_network_namespace_of_ones_own_is_refused(unprivileged, rootfs):
    result = container("nobody", unprivileged, rootfs[0], "true", "--veth", "10.200.9.1/24,10.200.9.2/24")
    assert result.returncode == 1
    assert "CAP_NET_ADMIN" in result.stderr and "Traceback" not in result.stderr


# --- the veth to the host side, only inside a sandbox ---------------------------

def wired_container(rootfs_path: str, root: str) -> dict:
    """In a sandbox: run a container wired to us by veth; ping us and send us a line over TCP."""
    import os
    import socket
    import subprocess
    import sys

    from labkit import net

    net.set_up("lo")
    host, inside = "10.200.7.1", "10.200.7.2"
    server = socket.socket()
    # IP_FREEBIND (15, ip(7)): listen on the host address before the veth that carries it exists.
    server.setsockopt(socket.SOL_IP, 15, 1)
    server.bind((host, 0))
    server.listen()
    port = server.getsockname()[1]
    script = (f"ip -o addr show eth0; ping -c1 -W10 {host} >/dev/null && echo ping-ok; "
              f"echo hello from the container | nc {host} {port}")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "labkit", "container", rootfs_path, "--veth", f"{host}/24,{inside}/24",
         "--", "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": root})
    server.settimeout(60)
    conn, peer = server.accept()
    with conn:
        received = conn.makefile().readline()
    server.close()
    out, err = launcher.communicate(timeout=60)
    return {"code": launcher.returncode, "out": out, "err": err, "received": received, "peer": peer[0],
            "links after": net.links(),
            "veths after": subprocess.run(["ip", "-o", "link", "show", "type", "veth"],
                                          capture_output=True, text=True).stdout}


@both
def test_veth_wires_the_container_to_its_callers_network_namespace(who, unprivileged, rootfs):
    before = veths()
    if who == "root":
        seen = net.sandbox(wired_container, rootfs[0], str(ROOT))
    else:
        args = f"{rootfs[0]!r}, {str(unprivileged.code_dir)!r}"
        code = (inspect.getsource(wired_container) + "\nimport json\nfrom labkit import net\n"
                f"print(json.dumps(net.sandbox(wired_container, {args})))")
        result = unprivileged.python_code(code)
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout)
    assert seen["code"] == 0, seen["err"]
    assert "eth0" in seen["out"] and "10.200.7.2/24" in seen["out"]
    assert "ping-ok" in seen["out"]
    assert seen["received"] == "hello from the container\n" and seen["peer"] == "10.200.7.2"
    assert seen["links after"] == {"lo": "up"}  # the pair went with the container's namespace
    assert seen["veths after"] == ""
    assert veths() == before
