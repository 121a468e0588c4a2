"""Exercise userns: the grader's premises, seen by other tools.

The references, the starter, the mutants and the unusual solutions are
graded by tests/test_grader_selftest.py (once for the whole suite).

Here: the user the grader draws has no account and is not nobody; the
sandbox copy of the folder is the user's; and what the grader reads from
outside (grader/credentials.py) is what COMMAND itself reads inside its
namespace (/proc/self/uid_map, gid_map, id(1)).
"""

from __future__ import annotations

import grp
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from grader import credentials
from grader.credentials import start_as_user
from grader.engine import Exercise, Trial, grade_exercise
from grader.feedback import Status
from grader.sandbox import hidden_paths

KIT = Path(__file__).resolve().parent.parent
REFERENCE = KIT / "solutions" / "userns"


def test_the_drawn_user_and_group_have_no_account_and_are_not_nobody():
    class Values:
        random = Trial.random
        number = Trial.number

    for _ in range(50):
        uid, gid = credentials.unused_ids(Values())
        assert uid != gid and credentials.NOBODY not in (uid, gid)
        for lookup, number in ((pwd.getpwuid, uid), (grp.getgrgid, gid)):
            try:
                lookup(number)
            except KeyError:
                continue
            raise AssertionError(f"{number} has an entry")


def test_what_the_grader_reads_from_outside_is_what_command_reads_inside():
    facts: dict = {}
    probe = Exercise("userns", "probe")

    @probe.check(1, "look")
    def look(trial: Trial) -> None:
        tag = f"userns-{trial.token()}"
        script = ('echo "uid_map $(cat /proc/self/uid_map)"; echo "gid_map $(cat /proc/self/gid_map)"; '
                  'echo "id $(id -u) $(id -g)"; ls -ln /tmp/exercise/solution; echo "ready $0"; '
                  'sleep 3600; echo end')
        command = ["/bin/sh", "-c", script, tag]
        run, uid, gid = start_as_user(trial, *command)
        run.expect(f"ready {tag}", timeout=10)
        pid = run.require(command, "")
        facts.update(uid=uid, gid=gid, said=run.transcript.text,
                     uid_map=credentials.read_inside(pid, f"/proc/{pid}/uid_map"),
                     gid_map=credentials.read_inside(pid, f"/proc/{pid}/gid_map"),
                     status=credentials.read_inside(pid, f"/proc/{pid}/status"),
                     caps=credentials.capabilities(pid))

    result = grade_exercise(probe, REFERENCE, hidden_paths())
    assert result.checks[0].status is Status.PASSED, result.checks[0].message
    uid, gid, said = facts["uid"], facts["gid"], facts["said"].replace("\r\n", "\n")
    assert credentials.id_map(facts["uid_map"]) == [(0, uid, 1)]
    assert credentials.id_map(facts["gid_map"]) == [(0, gid, 1)]
    told = {line.split()[0]: line.split(None, 1)[1] for line in said.splitlines()
            if line.startswith(("uid_map ", "gid_map "))}  # what COMMAND read itself
    assert credentials.id_map(told["uid_map"]) == credentials.id_map(facts["uid_map"])
    assert credentials.id_map(told["gid_map"]) == credentials.id_map(facts["gid_map"])
    assert "id 0 0" in said
    assert credentials.ids(facts["status"], "Uid") == [0, 0, 0, 0]
    # Inside, the solution's copy belongs to root: it belongs to U outside.
    assert re.search(r"^-\S+\s+\d+\s+0\s+0\s.*/tmp/exercise/solution$", said, re.MULTILINE), said
    effective, bounding = facts["caps"]
    assert effective == bounding and effective != 0


def test_capability_names_say_which_are_missing():
    assert credentials.capability_names(1 << 21 | 1 << 12) == "cap_net_admin, cap_sys_admin"
    assert credentials.capability_names(0) == "none"


def test_the_starters_try_it_command_works_as_printed_with_the_reference():
    """`setpriv --reuid=65534 --regid=65534 --clear-groups ./solution id` prints uid=0(root) gid=0(root)."""
    text = (KIT / "exercises" / "userns" / "solution").read_text()
    line = text.split("Try it:")[1].splitlines()[0].strip()
    assert line == "setpriv --reuid=65534 --regid=65534 --clear-groups ./solution id"
    folder = Path(tempfile.mkdtemp(prefix="nslab-userns-"))  # readable by 65534, unlike the checkout
    try:
        folder.chmod(0o755)
        shutil.copy(REFERENCE / "solution", folder / "solution")
        (folder / "solution").chmod(0o755)
        out = subprocess.run(line, shell=True, cwd=folder, capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(folder)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("uid=0(root) gid=0(root)"), out.stdout
