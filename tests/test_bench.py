"""bench/ns_ops.py runs end to end with tiny counts: a smoke test, never a timing test.

The numbers themselves belong to the machine and are not checked.  What is
checked: the bench finishes, prints its tables, writes well-formed JSON with
every method for every row, really creates the namespaces it claims to time
(strace(1) watches the unshare(2) and clone3(2) calls of all its processes),
and refuses bad input with a message instead of a traceback.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "ns_ops.py"
METHODS = ["bare Python", "labkit fn", "labkit exec", "unshare(1)", "C clone3", "C clone3+exec"]
CLI_COMMANDS = ["python -c pass", "python -c 'import argparse'", "python -m labkit flags 0x4000000",
                "labkit flags 0x4000000", "labkit --help", "labkit flags 0x4000000 (terminal)"]


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    """One run over uts, net and all at once, 2 round trips per method, 1 start per command."""
    out = tmp_path_factory.mktemp("bench") / "result.json"
    result = bench("--iterations", "2", "--warmup", "1", "--block", "1", "--types", "uts,net,all",
                   "--cli-runs", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    return result, json.loads(out.read_text())


def test_json_has_every_method_for_every_row(tiny_run):
    _, data = tiny_run
    assert list(data["spawn"]) == ["uts", "net", "all"]
    assert data["spawn"]["uts"]["flags"] == "0x04000000"
    assert data["spawn"]["all"]["types"] == ["cgroup", "ipc", "net", "mnt", "pid", "time", "user", "uts"]
    for label, row in data["spawn"].items():
        assert row["unavailable"] == {}, label
        assert list(row["methods"]) == METHODS, label
        for name, stats in row["methods"].items():
            assert len(stats["samples"]) == 2, (label, name)
            assert all(s > 0 for s in stats["samples"]), (label, name)
            assert min(stats["samples"]) <= stats["median"] <= stats["p90"] <= max(stats["samples"])
            assert stats["faults_per_round_trip"] > 0, (label, name)  # a fork always copies a page
        assert row["methods"]["bare Python"]["ratio"] == 1.0


def test_json_has_cli_start_times_against_python(tiny_run):
    _, data = tiny_run
    assert list(data["cli"]) == CLI_COMMANDS
    assert data["cli"]["python -c pass"]["ratio"] == 1.0
    assert all(len(s["samples"]) == 1 and s["median"] > 0 for s in data["cli"].values())
    assert all(s["cpu_median"] > 0 for s in data["cli"].values())


def test_goals_are_reported_for_each_row_and_command(tiny_run):
    _, data = tiny_run
    goals = {(g["type"], g["goal"]) for g in data["goals"]}
    for label in ("uts", "net", "all"):
        assert (label, "labkit fn within 1.2x of bare Python") in goals
        assert (label, "labkit exec faster than unshare(1)") in goals
    assert ("cli", "labkit --help within 1.5x of python -c pass") in goals
    assert all(isinstance(g["met"], bool) for g in data["goals"])


def test_tables_are_plain_text_in_a_pipe(tiny_run):
    result, _ = tiny_run
    out = result.stdout
    assert "Spawn, run, reap: median µs (ratio to bare Python)" in out
    assert re.search(r"^TYPE +bare Python +labkit fn +labkit exec +unshare\(1\) +C clone3", out, re.M)
    assert re.search(r"^uts +\d+ +\d+ \(\d+\.\d\dx\)", out, re.M)
    assert "Minor page faults per round trip" in out
    assert re.search(r"^labkit --help +\d+\.\d +\d+\.\d +\d+\.\d\dx +\d+\.\d \(\d+\.\d\dx\) +(yes|NO)$",
                     out, re.M)
    assert "\x1b[" not in out  # no terminal colours in a pipe


def test_net_rows_report_the_kernels_cleanup_work(tiny_run):
    result, data = tiny_run
    assert "kworker_us_per_round_trip" in data["spawn"]["net"]
    assert sum("cleanup_net()" in note for note in data["notes"]) == 2  # net and all
    assert "net: the kernel's worker threads used" in result.stdout


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_every_method_really_creates_the_namespace(tmp_path):
    """strace -f sees each path's own unshare(2) or clone3(2) with CLONE_NEWUTS."""
    trace = tmp_path / "trace"
    result = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=unshare,clone3", "-o", str(trace),
         sys.executable, str(BENCH), "--iterations", "1", "--warmup", "1", "--types", "uts",
         "--cli-runs", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    calls = trace.read_text()
    # bare Python, labkit fn, labkit exec, unshare(1): one unshare each per round trip (2 each)
    assert len(re.findall(r"unshare\(CLONE_NEWUTS\) += 0", calls)) == 8
    # clone_bench: its own warm-up and 1 round trip, started twice per method (warm-up, run)
    assert len(re.findall(r"clone3\(\{flags=CLONE_NEWUTS, exit_signal=SIGCHLD", calls)) == 8


def test_unknown_type_is_refused_without_a_traceback():
    result = bench("--types", "uts,bogus", timeout=30)
    assert result.returncode == 2
    assert "unknown namespace type 'bogus'" in result.stderr
    assert "Traceback" not in result.stderr


def test_zero_iterations_are_refused_without_a_traceback():
    result = bench("--iterations", "0", timeout=30)
    assert result.returncode == 2
    assert "at least 1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.rootless
def test_non_root_is_told_to_run_as_root(unprivileged, tmp_path):
    # The unprivileged copy of the code has labkit; put the bench beside it.
    bench_dir = unprivileged.code_dir / "bench"
    bench_dir.mkdir(exist_ok=True)
    shutil.copy(BENCH, bench_dir / BENCH.name)
    (bench_dir / BENCH.name).chmod(0o644)
    bench_dir.chmod(0o755)
    result = unprivileged.run([unprivileged.python, str(bench_dir / BENCH.name), "--types", "uts"])
    assert result.returncode == 2
    assert "run the bench as root" in result.stderr
    assert "Traceback" not in result.stderr
