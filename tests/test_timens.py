"""Time namespaces (labkit.timens), checked with /proc/uptime, cat, nsenter and unshare(1).

No test measures a duration: a reading inside is bracketed by readings
outside taken just before and just after, so load on the machine cannot
make a test fail.
"""

from __future__ import annotations

import errno
import json
import os

import pytest

from labkit import syscalls, timens
from labkit.errors import NamespaceError
from labkit.spawn import run, spawn

EPS = 1e-6  # float rounding of clock readings near 1.8e9 s


def output_of(argv: list[str], namespaces: str = "", **options) -> str:
    """ARGV's standard output (run in new NAMESPACES if any); ARGV must succeed."""
    r, w = os.pipe()
    with spawn(argv, namespaces, stdout=w, **options) as child:
        os.close(w)
        with os.fdopen(r) as f:
            text = f.read()
        assert child.wait(timeout=20) == 0
    return text


def uptime_of(text: str) -> float:
    return float(text.split()[0])


def shifted_back(uptime: float, offset: float) -> float:
    """UPTIME minus OFFSET, in /proc/uptime's hundredths (so that 2766.03 - 1000 == 1766.03)."""
    return round(uptime - offset, 2)


def test_uptime_inside_exceeds_outside_by_the_offset():
    offsets = {"monotonic": 1000, "boottime": 1000}
    before = timens.uptime()
    labkit_inside = uptime_of(output_of(["cat", "/proc/uptime"], "time", time_offsets=offsets))
    # --fork: cat must be a child of the unsharer.  Without it, cat is exec'ed
    # in the unsharer itself, which enters the new namespace at execve on
    # Linux 6.2 and later only (the lab VM's 6.1 would show the host's uptime).
    unshare_inside = uptime_of(output_of(["unshare", "--time", "--fork", "--monotonic", "1000",
                                          "--boottime", "1000", "cat", "/proc/uptime"]))
    after = timens.uptime()
    assert before <= shifted_back(labkit_inside, 1000) <= after
    assert before <= shifted_back(unshare_inside, 1000) <= after  # util-linux agrees


def test_monotonic_and_boottime_move_but_realtime_does_not():
    before = timens.clocks()
    inside = timens.readings_in_new_namespace({"monotonic": 500, "boottime": 1000})
    after = timens.clocks()
    assert before["monotonic"] - EPS <= inside["monotonic"] - 500 <= after["monotonic"] + EPS
    assert before["boottime"] - EPS <= inside["boottime"] - 1000 <= after["boottime"] + EPS
    assert before["realtime"] - EPS <= inside["realtime"] <= after["realtime"] + EPS


def test_offsets_show_in_timens_offsets_and_in_uptime_via_nsenter():
    offsets = {"monotonic": 7, "boottime": 11.5}
    with spawn(["sleep", "30"], "time", time_offsets=offsets) as child:
        assert timens.read_offsets(child.pid) == offsets
        assert timens.read_offsets("self") == {"monotonic": 0, "boottime": 0}
        before = timens.uptime()
        joined = uptime_of(output_of(["nsenter", "-t", str(child.pid), "-T", "cat", "/proc/uptime"]))
        after = timens.uptime()
        assert before <= shifted_back(joined, 11.5) <= after


def test_writing_offsets_after_a_process_entered_fails_with_eacces():
    with spawn(["sleep", "30"], "time", time_offsets={"boottime": 100}) as child:
        with pytest.raises(NamespaceError) as info:
            timens.write_offsets(child.pid, {"boottime": 200})
        assert info.value.errno == errno.EACCES
        assert "before the first process enters" in str(info.value)
        assert timens.read_offsets(child.pid)["boottime"] == 100  # unchanged


def test_time_for_children_differs_from_time_until_the_fork():
    steps = timens.time_for_children_steps()
    before, after, child = steps["before unshare"], steps["after unshare"], steps["in the child"]
    assert before["time"] == before["time_for_children"]
    assert after["time"] == before["time"]  # the caller stays where it was ...
    assert after["time_for_children"] != before["time"]  # ... its children get the new one
    assert child["time"] == child["time_for_children"] == after["time_for_children"]


def unshare_and_write(offsets: dict[str, float]) -> dict[str, float]:
    syscalls.unshare("time")
    timens.write_offsets("self", offsets)
    return timens.read_offsets("self")


def test_negative_offsets_are_fine_down_to_zero():
    assert run(unshare_and_write, {"boottime": -1.5})["boottime"] == -1.5


@pytest.mark.parametrize(("offsets", "err"), [
    ({"monotonic": -10**9}, errno.ERANGE),  # the clock would go below zero
    ({"realtime": 3600}, errno.EINVAL),  # CLOCK_REALTIME is not namespaced
])
def test_impossible_offsets_are_refused(offsets, err):
    with pytest.raises(NamespaceError) as info:
        run(unshare_and_write, offsets)
    assert info.value.errno == err and info.value.hint


# Rootless: CAP_SYS_TIME in a user namespace of our own is enough -----------------------

@pytest.mark.rootless
def test_rootless_uptime_is_shifted(unprivileged):
    before = timens.uptime()
    out = unprivileged.labkit("run", "-fT", "--monotonic", "1000", "--boottime", "1000", "--",
                              "cat", "/proc/uptime")
    after = timens.uptime()
    assert out.returncode == 0, out.stderr
    assert before <= shifted_back(uptime_of(out.stdout), 1000) <= after


@pytest.mark.rootless
def test_rootless_offsets_freeze_with_eacces(unprivileged):
    code = """if True:
        import json
        from labkit import timens
        from labkit.spawn import spawn
        with spawn(["sleep", "30"], "time", time_offsets={"boottime": 100}) as child:
            try:
                timens.write_offsets(child.pid, {"boottime": 200})
                err = 0
            except OSError as e:
                err = e.errno
            print(json.dumps([timens.read_offsets(child.pid), err]))
    """
    out = unprivileged.python_code(code)
    assert out.returncode == 0, out.stderr
    offsets, err = json.loads(out.stdout)
    # EACCES, not EPERM: we own the user namespace, so we have CAP_SYS_TIME there;
    # it is only too late.
    assert offsets == {"monotonic": 0, "boottime": 100} and err == errno.EACCES


def test_time_for_children_steps_rootless(unprivileged):
    out = unprivileged.python_code(
        "from labkit import timens\n"
        "s = timens.time_for_children_steps()\n"
        "b, a, c = s['before unshare'], s['after unshare'], s['in the child']\n"
        "print(a['time'] == b['time'], a['time_for_children'] != b['time'],\n"
        "      c['time'] == a['time_for_children'])\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True"]
