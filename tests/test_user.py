"""labkit.user: user namespaces, id maps and their rules, capabilities, ownership.

The kernel's view is read from outside with independent tools: /proc/PID/uid_map
read by the test runner, stat(1), lsns(8), capsh(1).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest
import tools

from labkit import spawn, user
from labkit.errors import MapRuleError

# A child in a user namespace of its own, with no map yet, that waits for us.
UNMAPPED_CHILD = "from labkit.spawn import spawn\nchild = spawn(['sleep', '60'], 'user')\n"


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


@contextmanager
def held_by_nobody(unprivileged, code: str):
    """Run CODE as the unprivileged user; it prints a PID and keeps it alive until we let go."""
    code += "\nprint(child.pid, flush=True)\nimport sys; sys.stdin.read()\nchild.kill(); child.wait()\n"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(unprivileged.code_dir)}
    proc = subprocess.Popen(
        ["setpriv", f"--reuid={unprivileged.uid}", f"--regid={unprivileged.gid}", "--clear-groups",
         "--inh-caps=-all", unprivileged.python, "-c", code],
        env=env, cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"no PID from the unprivileged child: {line!r}"
        yield int(line)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def as_nobody(unprivileged, code: str) -> str:
    result = unprivileged.python_code(textwrap.dedent(code))
    assert result.returncode == 0, result.stderr
    return result.stdout


# --- a new user namespace, unmapped -----------------------------------------

@pytest.mark.rootless
def test_unprivileged_user_namespace_is_created_without_privilege_and_starts_unmapped(unprivileged):
    with held_by_nobody(unprivileged, UNMAPPED_CHILD) as pid:
        assert read(f"/proc/{pid}/uid_map") == ""
        assert read(f"/proc/{pid}/gid_map") == ""
        ns = tools.lsns("-n", "-r", "-t", "user", "-o", "NS", "-p", str(pid), check=True).stdout.strip()
        assert int(ns) != os.stat("/proc/self/ns/user").st_ino
        assert sh("stat", "-L", "-c", "%u", f"/proc/{pid}") == str(unprivileged.uid)


def test_unmapped_ids_read_as_the_overflow_id_inside():
    def inside():
        files = sh("stat", "-c", "%u:%g", "/etc/passwd")  # root-owned outside, unmapped here
        return os.getuid(), os.getgid(), files

    uid, gid, files = spawn.run(inside, namespaces="user")
    assert (uid, gid) == user.overflow_ids() == (user.OVERFLOW_ID, user.OVERFLOW_ID)
    assert files == f"{user.OVERFLOW_ID}:{user.OVERFLOW_ID}"
    assert sh("stat", "-c", "%u:%g", "/etc/passwd") == "0:0"


# --- writing the maps -------------------------------------------------------

@pytest.mark.rootless
def test_unprivileged_map_root_maps_root_to_own_ids_and_denies_setgroups(unprivileged):
    code = UNMAPPED_CHILD.replace("'user')", "'user', map_root=True)")
    with held_by_nobody(unprivileged, code) as pid:
        assert read(f"/proc/{pid}/uid_map").split() == ["0", str(unprivileged.uid), "1"]
        assert read(f"/proc/{pid}/gid_map").split() == ["0", str(unprivileged.gid), "1"]
        assert read(f"/proc/{pid}/setgroups").strip() == "deny"
        assert sh("stat", "-L", "-c", "%u", f"/proc/{pid}") == str(unprivileged.uid)


def test_root_may_map_a_range_of_other_ids_and_keep_setgroups():
    with spawn.spawn(["sleep", "60"], "user", uid_map="0 100000 65536",
                     gid_map="0 100000 65536") as child:
        assert read(f"/proc/{child.pid}/uid_map").split() == ["0", "100000", "65536"]
        assert user.read_map(child.pid, "gid_map") == [(0, 100000, 65536)]
        assert read(f"/proc/{child.pid}/setgroups").strip() == "allow"


RULE_PROBE = """
    import json, os
    from labkit import user
    from labkit.spawn import spawn
    child = spawn(["sleep", "60"], "user")
    try:
        {steps}
        print(json.dumps(None))
    except OSError as e:
        print(json.dumps([type(e).__name__, e.errno, str(e)]))
    finally:
        child.kill(); child.wait()
"""


def broken_rule(run_code, steps: str) -> tuple[str, int, str]:
    result = json.loads(run_code(textwrap.dedent(RULE_PROBE).replace("{steps}", steps)))
    assert result is not None, "the kernel accepted a write that breaks a rule"
    return tuple(result)


def run_as_root(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("who", ["root", "nobody"])
def test_second_write_of_a_map_names_the_write_once_rule(who, unprivileged):
    run_code = run_as_root if who == "root" else (lambda c: as_nobody(unprivileged, c))
    steps = "uid = os.geteuid(); user.write_uid_map(child.pid, f'0 {uid} 1'); " \
            "user.write_uid_map(child.pid, f'0 {uid} 1')"
    kind, err, message = broken_rule(run_code, steps)
    assert (kind, err) == ("MapRuleError", errno.EPERM)
    assert "written only once" in message and "uid_map" in message


@pytest.mark.rootless
def test_unprivileged_writer_mapping_another_id_names_the_own_id_rule(unprivileged):
    kind, err, message = broken_rule(lambda c: as_nobody(unprivileged, c),
                                     "user.write_uid_map(child.pid, '0 0 1')")
    assert (kind, err) == ("MapRuleError", errno.EPERM)
    assert "may map only its own effective id" in message
    assert f"'0 {unprivileged.uid} 1'" in message  # what to write instead


@pytest.mark.rootless
def test_unprivileged_gid_map_before_setgroups_deny_names_the_setgroups_rule(unprivileged):
    kind, err, message = broken_rule(lambda c: as_nobody(unprivileged, c),
                                     "user.write_gid_map(child.pid, f'0 {os.getegid()} 1')")
    assert (kind, err) == ("MapRuleError", errno.EPERM)
    assert "must write 'deny' to /proc/PID/setgroups before gid_map" in message
    assert "3.19" in message


def test_setgroups_deny_after_gid_map_names_the_rule():
    with spawn.spawn(["sleep", "60"], "user", map_root=True) as child:
        with pytest.raises(MapRuleError, match="only before gid_map is written"):
            user.deny_setgroups(child.pid)
        assert read(f"/proc/{child.pid}/setgroups").strip() == "allow"


def test_malformed_map_names_the_format_rule():
    with spawn.spawn(["sleep", "60"], "user") as child:
        with pytest.raises(MapRuleError, match="INSIDE OUTSIDE COUNT") as info:
            user.write_uid_map(child.pid, "0 0 1\n0 1 1")  # two lines for inside id 0
        assert info.value.errno == errno.EINVAL
        assert read(f"/proc/{child.pid}/uid_map") == ""


# --- capabilities -----------------------------------------------------------

def test_capability_names_follow_the_numbers_of_capabilities_7():
    bounding = int(read("/proc/self/status").split("CapBnd:")[1].split()[0], 16)
    for mask in (0x1, 0x3FFFFFFFFF, 0x1FFFFFFFFFF, bounding):
        expected = sh("capsh", f"--decode={mask:#x}").split("=", 1)[1].split(",")
        assert ["cap_" + name for name in user.decode_capabilities(mask)] == expected
    assert user.CAPABILITIES.index("sys_admin") == 21


@pytest.mark.rootless
def test_capabilities_are_full_inside_a_user_namespace_and_empty_outside(unprivileged):
    out = as_nobody(unprivileged, """
        import json
        from labkit import spawn, user
        def inside():
            with open("/proc/self/status") as f:
                raw = [l.split()[1] for l in f if l.startswith("CapEff:")][0]
            return raw, sorted(user.capabilities()), sorted(user.capabilities(which="CapBnd"))
        print(json.dumps([sorted(user.capabilities()), spawn.run(inside, namespaces="user", map_root=True)]))
    """)
    outside, (raw_inside, inside, bounding) = json.loads(out)
    assert outside == []
    assert inside == bounding and "sys_admin" in inside
    decoded = sh("capsh", f"--decode=0x{raw_inside}").split("=", 1)[1].split(",")
    assert sorted(name.removeprefix("cap_") for name in decoded) == inside


# --- every other type, owned by the user namespace --------------------------

@pytest.mark.rootless
def test_other_namespace_types_need_cap_sys_admin_without_a_user_namespace(unprivileged):
    result = unprivileged.python_code("from labkit import syscalls; syscalls.unshare('uts')")
    assert result.returncode != 0
    assert "MissingCapability" in result.stderr and "CAP_SYS_ADMIN" in result.stderr


@pytest.mark.rootless
def test_every_other_type_is_created_without_root_and_owned_by_the_new_user_namespace(unprivileged):
    code = "from labkit.spawn import start_owning_all\nchild = start_owning_all(['sleep', '60'])"
    with held_by_nobody(unprivileged, code) as pid:
        listed = tools.lsns("-n", "-r", "-o", "NS,TYPE,ONS", "-p", str(pid), check=True).stdout
        rows = [line.split() for line in listed.strip().splitlines()]
        by_type = {kind: (int(ns), int(owner)) for ns, kind, owner in rows}
        userns = by_type.pop("user")[0]
        assert userns != os.stat("/proc/self/ns/user").st_ino
        assert sorted(by_type) == sorted(user.OTHER_TYPES)
        for kind, (ns, owner) in by_type.items():
            assert ns != os.stat(f"/proc/self/ns/{kind}").st_ino, kind
            assert owner == userns, kind
        assert {k: ns.inode for k, ns in user.owners(pid).items()} == dict.fromkeys(by_type, userns)


# --- ownership seen from outside --------------------------------------------

@pytest.mark.parametrize("who", ["root", "nobody"])
def test_owner_uid_of_a_user_namespace_is_its_creator(who, unprivileged):
    code = "from labkit.spawn import spawn\nchild = spawn(['sleep', '60'], 'user', map_root=True)"
    if who == "root":
        with spawn.spawn(["sleep", "60"], "user", map_root=True) as child:
            assert user.owner_uid(child.pid) == 0
        return
    with held_by_nobody(unprivileged, code) as pid:
        assert user.owner_uid(pid) == unprivileged.uid
        assert user.owner_uid() == 0  # the initial user namespace: created by the kernel as root


@pytest.mark.rootless
def test_files_created_by_root_inside_are_owned_by_the_outside_uid(unprivileged):
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)
        out = as_nobody(unprivileged, f"""
            import os
            from labkit import spawn
            def create():
                with open("{tmp}/made-inside", "w"):
                    pass
                st = os.stat("{tmp}/made-inside")
                return os.getuid(), st.st_uid, st.st_gid
            print(*spawn.run(create, namespaces="user", map_root=True))
        """)
        assert out.split() == ["0", "0", "0"]  # root inside, and the file is root's inside
        assert sh("stat", "-c", "%u:%g", f"{tmp}/made-inside") == f"{unprivileged.uid}:{unprivileged.gid}"
