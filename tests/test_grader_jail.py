"""Exercise jail: the grader's premises, seen by other tools, and hostile solutions.

The references, the starter and the mutants are graded by
tests/test_grader_selftest.py (once for the whole suite); here some of
them are looked at closer.

The checks rest on two facts of the kernel, tested here with nsenter(1)
and stat(1) as independent witnesses:

* setns(2) into a mount namespace puts the caller at the namespace's root
  mount: the jail's ROOTFS after pivot_root, the host's root after chroot;
* /proc/PID/mountinfo, read by the grader, is what COMMAND itself reads
  in /proc/self/mountinfo.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from grader import selftest
from grader.engine import Exercise, Trial, grade_exercise
from grader.exercises import all_exercises
from grader.exercises.escape import in_sandbox
from grader.exercises.jail import Jail, every_mount_of, look_from_inside, namespace_view
from grader.feedback import Status
from grader.sandbox import hidden_paths

KIT = Path(__file__).resolve().parent.parent
JAIL = all_exercises()["jail"]
MUTANTS = [c for c in selftest.cases(JAIL) if c.kind == "mutant"]
REFERENCE = KIT / "solutions" / "jail"


def grade(folder: Path, exercise: Exercise = JAIL):
    result = grade_exercise(exercise, folder, hidden_paths(folder.parent))
    return {c.name: c for c in result.checks}, result


# The premises, seen by other tools ------------------------------------------------------

def observed(folder: Path, look) -> dict:
    """Grade FOLDER with one check that holds a COMMAND in a Jail and calls LOOK(jail, pid, facts)."""
    facts: dict = {}
    probe = Exercise("jail", "probe")

    @probe.check(1, "look")
    def look_at_it(trial: Trial) -> None:
        with Jail(trial) as jail:
            pid = jail.hold()
            look(jail, pid, facts)
            jail.release()

    checks, _ = grade(folder, probe)
    assert checks["look_at_it"].status is Status.PASSED, checks["look_at_it"].message
    return facts


def nsenter(pid: int, *argv: str, root: bool = False) -> str:
    # With --root, also --pid: the jail's /proc shows the sandbox's PID namespace,
    # where a process of ours has no /proc/self unless it joins it.
    options = ["--pid", "--root", "--wd"] if root else []
    out = subprocess.run(["nsenter", f"--target={pid}", "--mount", *options, *argv],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    return out.stdout


def look_at_namespace(jail: Jail, pid: int, facts: dict) -> None:
    facts["view"] = namespace_view(pid)
    facts["rootfs"] = jail.rootfs_id
    # stat(1) of "/" after nsenter --mount, without --root: the namespace's root.
    # The jail's busybox has stat; the host's root has /usr/bin/stat.
    facts["nsenter_root"] = nsenter(pid, "stat", "-L", "-c", "%d %i", "/").split()
    facts["command_mountinfo"] = nsenter(pid, "cat", "/proc/self/mountinfo", root=True)
    facts["grader_mountinfo"] = Path(f"/proc/{pid}/mountinfo").read_text()
    facts["rootfs_path"] = jail.rootfs
    facts["host_file"] = os.path.exists(in_sandbox(jail.warden, jail.outside))


def test_setns_lands_at_the_rootfs_of_a_pivot_root_jail():
    facts = observed(REFERENCE, look_at_namespace)
    root, table = facts["view"]
    assert root == facts["rootfs"]
    assert tuple(int(n) for n in facts["nsenter_root"]) == facts["rootfs"]
    top = [m for m in table if m.mount_point == "/"]
    assert len(top) == 1 and top[0].root.endswith(os.path.basename(facts["rootfs_path"]))
    assert {m.mount_point for m in table} == {"/", "/proc"}
    # What COMMAND reads itself is what the grader reads from outside.
    assert facts["command_mountinfo"] == facts["grader_mountinfo"]
    assert facts["host_file"]  # the file the escape looks for is there, outside


def test_setns_lands_at_the_hosts_root_when_the_jail_is_a_chroot():
    chroot_only = next(c.folder for c in MUTANTS if c.folder.name == "chroot_only")
    facts = observed(chroot_only, look_at_namespace)
    root, table = facts["view"]
    assert root != facts["rootfs"]
    assert tuple(int(n) for n in facts["nsenter_root"]) == root
    assert any(m.mount_point == "/" and m.fstype != "tmpfs" for m in table)


def test_with_rootfs_bound_over_slash_setns_lands_in_rootfs_but_commands_own_table_has_no_root():
    # The cheat that pivot_not_chroot's second half catches: the namespace looks
    # pivoted from setns(2), but COMMAND's root is a directory of the old tree.
    over = next(c.folder for c in MUTANTS if c.folder.name == "rootfs_over_slash")
    facts = observed(over, look_at_namespace)
    root, _ = facts["view"]
    assert root == facts["rootfs"] == tuple(int(n) for n in facts["nsenter_root"])
    assert "/" not in [line.split()[4] for line in facts["command_mountinfo"].splitlines()]


MOVED = next(c for c in MUTANTS if c.folder.name == "moved_over_slash")


@pytest.mark.skipif(not MOVED.runs_here(), reason="listmount(2) came with Linux 6.8")
def test_a_root_moved_over_slash_hides_the_old_root_from_mountinfo_but_not_from_listmount():
    def look(jail: Jail, pid: int, facts: dict) -> None:
        facts["mountinfo"] = nsenter(pid, "cat", "/proc/self/mountinfo", root=True)
        facts["every"] = every_mount_of(pid)
        st = os.stat(in_sandbox(jail.warden, "/"))
        facts["host_root"] = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"

    facts = observed(MOVED.folder, look)
    assert facts["host_root"] not in [line.split()[2] for line in facts["mountinfo"].splitlines()]
    assert (facts["host_root"], "/") in facts["every"]  # still mounted, below ROOTFS


def test_a_part_of_the_old_root_kept_at_a_hidden_place_leads_to_the_hosts_files():
    # hidden_bind's jail: COMMAND (nsenter --root, where it stands) reads a file
    # that exists only outside ROOTFS, through the old /tmp bound at /dev/.cache.
    def look(jail: Jail, pid: int, facts: dict) -> None:
        facts["read"] = nsenter(pid, "cat", "/dev/.cache" + jail.outside.removeprefix("/tmp"), root=True)
        facts["text"] = jail.outside_text

    hidden = next(c.folder for c in MUTANTS if c.folder.name == "hidden_bind")
    facts = observed(hidden, look)
    assert facts["read"] == facts["text"]


def test_the_escape_from_commands_place_gets_out_of_a_chroot_and_not_out_of_a_pivot():
    def look(jail: Jail, pid: int, facts: dict) -> None:
        facts["inside"] = look_from_inside(pid, jail.outside)
        facts["text"] = jail.outside_text

    chroot_only = next(c.folder for c in MUTANTS if c.folder.name == "chroot_only")
    escaped = observed(chroot_only, look)
    assert escaped["inside"].escaped == escaped["text"] and escaped["inside"].cwd_inside
    held = observed(REFERENCE, look)
    assert held["inside"].escaped is None and held["inside"].cwd_inside
    no_chdir = next(c.folder for c in MUTANTS if c.folder.name == "no_chdir")
    assert not observed(no_chdir, look)["inside"].cwd_inside


def test_root_file_systems_and_files_are_new_on_every_run():
    def look(jail: Jail, pid: int, facts: dict) -> None:
        facts["values"] = (jail.rootfs, jail.outside, jail.outside_text, jail.tag)

    first, second = observed(REFERENCE, look)["values"], observed(REFERENCE, look)["values"]
    assert all(a != b for a, b in zip(first, second, strict=True))


# Hostile solutions stay in the sandbox --------------------------------------------------

def test_a_solution_that_wrecks_the_sandboxs_mounts_and_processes_is_contained(tmp_path):
    folder = tmp_path / "jail"
    folder.mkdir()
    (folder / "solution").write_text("""#!/bin/sh
mount -t tmpfs wreck /tmp
umount -l /proc
mount --make-rshared /
mount -t tmpfs wreck /usr/share
kill -9 -1
""")
    (folder / "solution").chmod(0o755)
    checks, result = grade(folder)
    assert result.score == 0
    for name, check in checks.items():
        assert check.message and "not your fault" not in check.message, name
