"""labkit.nstypes: the table of namespace types against the kernel's own headers."""

from __future__ import annotations

import os
import subprocess

import pytest

from labkit import nstypes
from labkit.nstypes import TYPES, decode_flags, encode_flags, format_flags, lookup, parse_mask

C_PROGRAM = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
int main(void) {
    printf("cgroup %d\n", CLONE_NEWCGROUP);
    printf("ipc %d\n", CLONE_NEWIPC);
    printf("net %d\n", CLONE_NEWNET);
    printf("mnt %d\n", CLONE_NEWNS);
    printf("pid %d\n", CLONE_NEWPID);
    printf("time %d\n", CLONE_NEWTIME);
    printf("user %d\n", CLONE_NEWUSER);
    printf("uts %d\n", CLONE_NEWUTS);
    return 0;
}
"""


@pytest.fixture(scope="module")
def header_flags(tmp_path_factory) -> dict[str, int]:
    """The CLONE_NEW* values as a C compiler reads them from <sched.h>."""
    tmp = tmp_path_factory.mktemp("flags")
    (tmp / "flags.c").write_text(C_PROGRAM)
    subprocess.run(["gcc", "-o", str(tmp / "flags"), str(tmp / "flags.c")], check=True)
    out = subprocess.run([str(tmp / "flags")], capture_output=True, text=True, check=True).stdout
    return {name: int(value) for name, value in (line.split() for line in out.splitlines())}


def test_flag_values_match_the_c_header(header_flags):
    assert {t.name: t.flag for t in TYPES} == header_flags


def test_every_type_has_a_link_in_proc():
    assert {t.name for t in TYPES} <= set(os.listdir("/proc/self/ns"))


def test_constants_are_named_as_in_the_header():
    assert [t.constant for t in TYPES] == [
        "CLONE_NEWCGROUP", "CLONE_NEWIPC", "CLONE_NEWNET", "CLONE_NEWNS",
        "CLONE_NEWPID", "CLONE_NEWTIME", "CLONE_NEWUSER", "CLONE_NEWUTS"]


def test_each_flag_is_a_single_distinct_bit():
    flags = [t.flag for t in TYPES]
    assert all(f & (f - 1) == 0 for f in flags)
    assert len(set(flags)) == len(flags) == 8
    assert nstypes.ALL_FLAGS == sum(flags)


def test_decode_splits_an_strace_mask_into_types(header_flags):
    mask = header_flags["mnt"] | header_flags["uts"]
    assert mask == 0x04020000
    assert [t.name for t in decode_flags(mask)] == ["mnt", "uts"]
    assert decode_flags(0) == []
    assert [t.name for t in decode_flags(nstypes.ALL_FLAGS)] == [t.name for t in TYPES]


def test_decode_refuses_bits_that_are_not_namespace_flags():
    with pytest.raises(ValueError, match=r"0x4020100 has bits that are not CLONE_NEW\* flags: 0x100"):
        decode_flags(0x04020000 | 0x100)  # CLONE_FILES is not a namespace
    with pytest.raises(ValueError, match="negative"):
        decode_flags(-1)


@pytest.mark.parametrize("spelling, expected", [
    ("mnt,uts", 0x04020000),
    ("uts,mnt", 0x04020000),
    ("CLONE_NEWNS|CLONE_NEWUTS", 0x04020000),
    (" mount , UTS ", 0x04020000),
    (["mnt", "uts"], 0x04020000),
    (("net",), 0x40000000),
    (0x04020000, 0x04020000),
    ("", 0),
    ([], 0),
])
def test_encode_accepts_the_usual_spellings(spelling, expected):
    assert encode_flags(spelling) == expected


def test_encode_takes_type_objects_and_single_flags():
    uts = lookup("uts")
    assert encode_flags(uts) == 0x04000000
    assert encode_flags([uts, 0x20000]) == 0x04020000


@pytest.mark.parametrize("alias, name", [
    ("mount", "mnt"), ("ns", "mnt"), ("newns", None), ("network", "net"), ("NET", "net"),
    ("clone_newuser", "user"), ("CLONE_NEWTIME", "time"), ("newtime", None),
    ("cgroup", "cgroup"), ("ipc", "ipc"), ("pid", "pid"),
])
def test_aliases_name_the_same_type(alias, name):
    if name is None:
        with pytest.raises(ValueError):
            lookup(alias)
    else:
        assert lookup(alias).name == name


def test_lookup_by_flag_and_errors_name_the_known_types():
    assert lookup(0x80).name == "time"
    with pytest.raises(ValueError, match="not a single CLONE_NEW"):
        lookup(0x04020000)
    with pytest.raises(ValueError, match=r"unknown namespace type 'utz' \(known: cgroup, ipc, net"):
        lookup("utz")
    with pytest.raises(ValueError, match="unknown namespace type"):
        encode_flags("mnt,bogus")


def test_format_writes_masks_as_strace_does():
    assert format_flags(0x04020000) == "CLONE_NEWNS|CLONE_NEWUTS"
    assert format_flags(0x10000000) == "CLONE_NEWUSER"
    assert format_flags(0) == "0"
    with pytest.raises(ValueError):
        format_flags(0x1)


@pytest.mark.parametrize("text, mask", [
    ("0x4000000", 0x4000000), ("67108864", 0x4000000), ("0o400000000", 0x4000000),
    ("CLONE_NEWNS|CLONE_NEWUTS", 0x04020000), ("mnt,uts", 0x04020000), ("  0x80 ", 0x80),
])
def test_parse_mask_reads_numbers_and_names(text, mask):
    assert parse_mask(text) == mask


@pytest.mark.parametrize("text", ["0x1", "-5", "0x", "utsx", "0x04020001"])
def test_parse_mask_refuses_what_is_not_a_namespace_mask(text):
    with pytest.raises(ValueError):
        parse_mask(text)


def test_type_rows_name_their_man_page_and_release():
    assert {t.name: (t.manpage, t.kernel) for t in TYPES} == {
        "cgroup": ("cgroup_namespaces(7)", "4.6"),
        "ipc": ("ipc_namespaces(7)", "2.6.19"),
        "net": ("network_namespaces(7)", "2.6.29"),
        "mnt": ("mount_namespaces(7)", "2.4.19"),
        "pid": ("pid_namespaces(7)", "2.6.24"),
        "time": ("time_namespaces(7)", "5.6"),
        "user": ("user_namespaces(7)", "3.8"),
        "uts": ("uts_namespaces(7)", "2.6.19"),
    }
    assert repr(lookup("uts")) == "<uts CLONE_NEWUTS 0x04000000>"
