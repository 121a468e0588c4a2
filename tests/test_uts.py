"""labkit.uts against hostname(1), nsenter(1), readlink(1) and uname(1)."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest

from labkit import uts
from labkit.errors import NamespaceError
from labkit.spawn import run, spawn


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout.strip()


def random_name() -> str:
    return "t" + secrets.token_hex(5)


def test_hostname_change_is_invisible_outside():
    host = sh("hostname")
    name = random_name()
    with spawn(["sleep", "infinity"], "uts", hostname=name) as child:
        assert sh("nsenter", "-t", str(child.pid), "-u", "hostname") == name
        assert uts.hostname_of(child.pid) == name
        assert sh("readlink", f"/proc/{child.pid}/ns/uts") != sh("readlink", "/proc/self/ns/uts")
        assert sh("hostname") == host
    assert sh("hostname") == host == uts.hostname()


def test_set_hostname_renames_only_the_new_namespace():
    name = random_name()

    def rename_and_ask_hostname_command() -> str:
        uts.set_hostname(name)
        return subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()

    host = sh("hostname")
    assert run(rename_and_ask_hostname_command, namespaces="uts") == name
    assert sh("hostname") == host


def test_domainname_is_per_namespace():
    host = sh("domainname")
    name = random_name()

    def set_and_read() -> str:
        uts.set_domainname(name)
        return uts.domainname()

    assert run(set_and_read, namespaces="uts") == name
    with spawn(["sleep", "infinity"], "uts", domainname=name) as child:
        assert sh("nsenter", "-t", str(child.pid), "-u", "domainname") == name
    assert sh("domainname") == host == uts.domainname()


def test_two_shells_see_their_own_hostnames():
    host_uts = sh("readlink", "/proc/self/ns/uts")
    demo = uts.two_shells_demo(("sh1", "sh2"))
    assert demo.host_hostname == sh("hostname")
    assert demo.host_uts == host_uts
    assert {name: s.hostname for name, s in demo.shells.items()} == {"sh1": "sh1", "sh2": "sh2"}
    links = {s.uts for s in demo.shells.values()}
    assert len(links) == 2 and host_uts not in links
    assert all(link.startswith("uts:[") for link in links)


def test_kernel_release_is_the_same_inside():
    name = random_name()
    inside = uts.uname_in_new_namespace(name)
    assert inside["nodename"] == name
    assert inside["release"] == sh("uname", "-r") == uts.kernel_release()
    assert inside["version"] == sh("uname", "-v")
    with spawn(["sleep", "infinity"], "uts", hostname=name) as child:
        assert sh("nsenter", "-t", str(child.pid), "-u", "uname", "-r") == sh("uname", "-r")


def test_root_in_a_new_uts_namespace_cannot_change_the_release():
    def write_osrelease() -> None:
        with open("/proc/sys/kernel/osrelease", "w") as f:
            f.write("6.6.6-mine\n")

    with pytest.raises(PermissionError):
        run(write_osrelease, namespaces="uts")
    assert sh("uname", "-r") == uts.kernel_release()


def test_too_long_hostname_says_the_limit():
    with pytest.raises(NamespaceError) as info:
        run(uts.set_hostname, "x" * (uts.HOST_NAME_MAX + 1), namespaces="uts")
    assert "HOST_NAME_MAX" in str(info.value)


def test_setting_the_hostname_outside_a_new_namespace_is_refused_rootless(unprivileged):
    # The caller's own (the machine's) UTS namespace: no CAP_SYS_ADMIN there.
    r = unprivileged.python_code(
        "from labkit import uts\n"
        "try:\n"
        "    uts.set_hostname('hacked')\n"
        "except PermissionError as e:\n"
        "    print('refused:', e)\n")
    assert r.returncode == 0, r.stderr
    assert "refused" in r.stdout and "CAP_SYS_ADMIN" in r.stdout


def test_two_shells_demo_rootless(unprivileged):
    code = (
        "import dataclasses, json, subprocess\n"
        "from labkit import uts\n"
        "from labkit.spawn import spawn\n"
        "demo = uts.two_shells_demo(('one', 'two'))\n"
        "with spawn(['sleep', 'infinity'], 'uts', hostname='rootless') as c:\n"
        "    seen = subprocess.run(['nsenter', '-t', str(c.pid), '-U', '-u', '--preserve-credentials',\n"
        "                           'hostname'], capture_output=True, text=True)\n"
        "    link = subprocess.run(['readlink', f'/proc/{c.pid}/ns/uts'], capture_output=True, text=True)\n"
        "print(json.dumps({'demo': dataclasses.asdict(demo), 'nsenter': seen.stdout.strip(),\n"
        "                  'err': seen.stderr, 'link': link.stdout.strip()}))\n")
    r = unprivileged.python_code(code)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    host_uts = sh("readlink", "/proc/self/ns/uts")
    assert {n: s["hostname"] for n, s in out["demo"]["shells"].items()} == {"one": "one", "two": "two"}
    assert out["demo"]["host_hostname"] == sh("hostname")
    assert out["nsenter"] == "rootless", out["err"]
    assert out["link"].startswith("uts:[") and out["link"] != host_uts


def test_hostname_of_a_process_in_our_own_namespace_needs_no_privilege(unprivileged):
    # setns(2) into one's own UTS namespace still wants CAP_SYS_ADMIN; reading needs none.
    r = unprivileged.python_code(
        "import os, subprocess\n"
        "from labkit import uts\n"
        "p = subprocess.Popen(['sleep', '30'])\n"
        "try:\n"
        "    print(uts.hostname_of(p.pid))\n"
        "finally:\n"
        "    p.kill(); p.wait()\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == sh("hostname")
