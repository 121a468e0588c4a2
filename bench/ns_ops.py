#!/usr/bin/env python3
"""What does a child in new namespaces cost?  labkit against its floors.

For each namespace type, and for all eight together, this measures one
round trip: make a child in new namespaces, let it do something trivial,
reap it with waitpid(2).  Six ways of doing that run in the same process,
interleaved, so that they can be compared:

    bare Python    os.fork(); unshare(2) through ctypes; fork once more   labkit's floor
                   for pid/time; os._exit(0); waitpid
    labkit fn      labkit.spawn.spawn(a Python function that returns)     a notebook's way
    labkit exec    labkit.spawn.spawn(["/bin/true"])                      what `labkit run` does
    unshare(1)     subprocess.run(["unshare", "--uts", ..., "/bin/true"])  life without labkit
    C clone3       clone3(2) with the flags, _exit, waitpid, in C         the kernel's floor
    C clone3+exec  the same, the child execs /bin/true                    the floor with an exec

Why each baseline exists:

* bare Python is the least a Python program can do.  Python cannot run
  Python code in a raw clone(2) child, so it must fork(2) and unshare(2) in
  the child; a new PID or time namespace only takes the caller's *future*
  children (pid_namespaces(7)), so for those it forks once more.  What
  labkit adds on top (two pipes, pickled status messages, prctl(2)
  PR_SET_PDEATHSIG, making / private in a new mount namespace, the user
  namespace handshake) is labkit's overhead.  Goal: labkit fn within 1.2x.
* unshare(1) is what a notebook would do without labkit: start the unshare
  program, which unshares and execs the command (forking first for pid and
  time, --fork).  That is one execve(2) more than labkit exec, but
  subprocess starts it with vfork(2), which copies no page tables.
  Goal: labkit exec faster than unshare(1).
* clone_bench.c shows the kernel's own cost: clone3(2) puts the child
  straight into the new namespaces, and the process copied is a small C
  program, not a Python interpreter whose page tables fork(2) must copy.
  It times its own iterations, so starting it costs nothing here.  The bench
  compiles it with gcc into a temporary directory on each run.

Why Python pays so much more than C: after fork(2) parent and child share
every page copy-on-write, and CPython writes to each object it touches (its
reference count), so each step a forked Python process takes copies pages.
The third table counts those minor page faults (getrusage(2)); every extra
line of Python in labkit's child shows up there.  The page tables to copy
grow with the parent's size: --ballast makes the bench as big as a
notebook's kernel.

How the numbers are made fair on a noisy, shared machine: every method is
warmed up first for each type; then the methods take turns in blocks of a
few iterations, the order rotating each round, so that a burst of noise
lands on all of them alike; the tables show medians (and the 90th
percentile), which one slow outlier cannot move.

Network namespaces are special: creating one sets up a whole network stack
(loopback, sysctls, per-netns tables), and freeing one is asynchronous, done
by cleanup_net() in a kernel workqueue after an RCU grace period.  So the
bench also reports the CPU time of the kernel's worker threads per round
trip, and lets them finish after a row with "net" before the next one.

Last, the start time of the labkit command against `python -c pass` with the
same interpreter, with byte code cached as it is after the first run
(PYTHONPYCACHEPREFIX points to a temporary directory, so that the checkout
gets no __pycache__).  Goal: within 1.5x.  `python -c 'import argparse'` is
shown too: the floor of any command line parsed with argparse.

The goals are reported, never asserted: timing belongs to the machine.

Usage (as root, as every namespace type needs CAP_SYS_ADMIN)::

    make bench
    .venv/bin/python bench/ns_ops.py --iterations 50 --types uts,net --json out.json

See clone(2), unshare(2), fork(2), namespaces(7), unshare(1).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/ns_ops.py` works without installing labkit

from labkit.nstypes import ALL_FLAGS, BY_NAME, TYPES, decode_flags, lookup  # noqa: E402
from labkit.output import table  # noqa: E402
from labkit.spawn import spawn  # noqa: E402

TRUE = "/bin/true"
NEWPID, NEWTIME, NEWNET = (BY_NAME[n].flag for n in ("pid", "time", "net"))
LABKIT_GOAL = 1.2  # labkit fn / bare Python
CLI_GOAL = 1.5  # labkit command / python -c pass
SETTLE = 1.0  # seconds to wait after a row with new network namespaces

libc = ctypes.CDLL(None, use_errno=True)


class BenchError(Exception):
    """A method did not do its job (a child failed): its timings would be meaningless."""


# ---------------------------------------------------------------- the methods
#
# Each method makes N children in new namespaces (FLAGS), one after the
# other, and returns the time of each round trip in nanoseconds and the
# minor page faults of all of them together.

Timings = tuple[list[int], int]  # (ns of each round trip, page faults in all of them)


def minor_faults() -> int:
    """Minor page faults so far, ours and our reaped descendants' (getrusage(2)).

    After fork(2) parent and child share every page copy-on-write: the first
    write to a page on either side faults and copies it.  CPython writes to
    each object it touches (its reference count), so a forked Python
    process faults far more often than a C one.
    """
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt)


def time_each(n: int, once: Callable[[], None]) -> Timings:
    """Call ONCE N times; return the duration of each call in ns, and the page faults."""
    durations = []
    faults = minor_faults()
    for _ in range(n):
        start = time.perf_counter_ns()
        once()
        durations.append(time.perf_counter_ns() - start)
    return durations, minor_faults() - faults


def expect_success(code: int, what: str) -> None:
    if code != 0:
        raise BenchError(f"{what}: the child exited with {code}")


def do_nothing() -> None:
    """labkit fn's target: the trivial Python work."""


def labkit_function(flags: int, n: int) -> Timings:
    return time_each(n, lambda: expect_success(spawn(do_nothing, flags).wait(), "labkit fn"))


def labkit_exec(flags: int, n: int) -> Timings:
    return time_each(n, lambda: expect_success(spawn([TRUE], flags).wait(), "labkit exec"))


def fork_unshare_exit(flags: int) -> int:
    """The least Python can do: fork, unshare in the child, exit; return the exit code."""
    pid = os.fork()
    if pid == 0:
        try:
            if libc.unshare(flags) != 0:  # the C library's wrapper, as a C program calls it
                os._exit(1)
            if flags & (NEWPID | NEWTIME):
                # unshare() moved only our future children: make one, so that
                # a process really lives in the new PID/time namespace.
                inner = os.fork()
                if inner == 0:
                    os._exit(0)
                os.waitpid(inner, 0)
            os._exit(0)
        finally:
            os._exit(2)  # never return into the bench's code from a child
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def bare_python(flags: int, n: int) -> Timings:
    return time_each(n, lambda: expect_success(fork_unshare_exit(flags), "bare Python"))


UNSHARE_OPTIONS = {"cgroup": "--cgroup", "ipc": "--ipc", "net": "--net", "mnt": "--mount",
                   "pid": "--pid", "time": "--time", "user": "--user", "uts": "--uts"}


def unshare_argv(flags: int) -> list[str]:
    argv = ["unshare"] + [UNSHARE_OPTIONS[t.name] for t in TYPES if flags & t.flag]
    if flags & (NEWPID | NEWTIME):
        argv.append("--fork")  # else /bin/true would not be in the new namespace
    return argv + [TRUE]


def unshare_command(flags: int, n: int) -> Timings:
    argv = unshare_argv(flags)
    return time_each(n, lambda: expect_success(subprocess.run(argv).returncode, "unshare(1)"))


def c_clone(binary: Path, exec_true: bool, flags: int, n: int) -> Timings:
    """Let clone_bench time N clone3 round trips itself, and read its times and faults."""
    argv = [str(binary), f"{flags:#x}", str(n)] + (["exec"] if exec_true else [])
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchError(result.stderr.strip() or f"clone_bench exited with {result.returncode}")
    *times, faults = result.stdout.splitlines()  # the last line is "faults N"
    return [int(t) for t in times], int(faults.split()[1])


def compile_clone_bench(directory: str) -> Path:
    """gcc bench/clone_bench.c into DIRECTORY (a temporary one: no binary is kept)."""
    binary = Path(directory) / "clone_bench"
    source = Path(__file__).with_name("clone_bench.c")
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(source)],
                   check=True, capture_output=True, text=True)
    return binary


def all_methods(clone_bench: Path | None) -> dict[str, Callable[[int, int], Timings]]:
    methods = {"bare Python": bare_python, "labkit fn": labkit_function,
               "labkit exec": labkit_exec, "unshare(1)": unshare_command}
    if clone_bench is not None:
        methods["C clone3"] = partial(c_clone, clone_bench, False)
        methods["C clone3+exec"] = partial(c_clone, clone_bench, True)
    return methods


# ---------------------------------------------------------------- measuring

def measure_row(flags: int, methods: dict, iterations: int, block: int, warmup: int
                ) -> tuple[dict[str, list[int]], dict[str, int], dict[str, str]]:
    """Time every method for one set of FLAGS, interleaved.

    Returns (samples in ns by method, page faults by method, reason by method
    that could not run).
    """
    unavailable = {}
    for name, method in methods.items():
        try:
            method(flags, warmup)
        except (OSError, BenchError) as e:
            unavailable[name] = str(e)
    running = [name for name in methods if name not in unavailable]
    samples: dict[str, list[int]] = {name: [] for name in running}
    faults = dict.fromkeys(running, 0)
    for first in range(0, iterations if running else 0, block):
        n = min(block, iterations - first)
        turn = (first // block) % len(running)
        for name in running[turn:] + running[:turn]:  # the order rotates each round
            durations, block_faults = methods[name](flags, n)
            samples[name] += durations
            faults[name] += block_faults
    return samples, faults, unavailable


def kernel_worker_cpu_ms() -> float:
    """CPU time the kernel's worker threads (kworker/*) have used so far, in ms.

    cleanup_net() runs in one of them, from a workqueue, after the last
    process has left a network namespace: work a round trip causes but does
    not wait for.  Other work runs there too, so compare rows.
    """
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        if stat[stat.index("(") + 1:].startswith("kworker"):
            fields = stat[stat.rindex(")") + 2:].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime: proc(5) fields 14 and 15
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the CLI's start

BASELINE = "python -c pass"
# What any command line parsed with argparse pays first: argparse imports re, enum, gettext.
ARGPARSE = "python -c 'import argparse'"


def cli_commands(python: str) -> dict[str, tuple[list[str], bool]]:
    """label -> (argv, on a terminal?): the baseline, the argparse floor, then labkit."""
    labkit = str(Path(python).with_name("labkit"))
    commands = {BASELINE: ([python, "-c", "pass"], False),
                ARGPARSE: ([python, "-c", "import argparse"], False),
                "python -m labkit flags 0x4000000": ([python, "-m", "labkit", "flags", "0x4000000"], False)}
    if os.access(labkit, os.X_OK):
        commands["labkit flags 0x4000000"] = ([labkit, "flags", "0x4000000"], False)
        commands["labkit --help"] = ([labkit, "--help"], False)
        # On a terminal labkit.output draws with rich, as a student sees it.
        commands["labkit flags 0x4000000 (terminal)"] = ([labkit, "flags", "0x4000000"], True)
    return commands


def start_and_wait(argv: list[str], env: dict[str, str], stdout: int) -> tuple[int, int]:
    """Run ARGV with STDOUT, output thrown away; return its duration and its CPU time, in ns.

    The CPU time (from wait4(2)) hardly depends on what else the machine is
    doing; the duration is what a person waits.
    """
    actions = [(os.POSIX_SPAWN_DUP2, stdout, 1), (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter_ns() - start
    if status != 0:  # a broken command would be timed fast, and wrongly
        raise BenchError(f"{' '.join(argv)} failed (exit code {os.waitstatus_to_exitcode(status)})")
    return elapsed, round((usage.ru_utime + usage.ru_stime) * 1e9)


def drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except BlockingIOError:
        pass


def measure_cli(python: str, runs: int, warmup: int, pycache: str
                ) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Start each command RUNS times, interleaved; return durations and CPU times in ns by label."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache  # byte code cached, as after a first run
    commands = cli_commands(python)
    devnull = os.open(os.devnull, os.O_WRONLY)
    terminal, terminal_side = os.openpty()
    os.set_blocking(terminal, False)
    durations: dict[str, list[int]] = {label: [] for label in commands}
    cpu: dict[str, list[int]] = {label: [] for label in commands}
    try:
        for i in range(-warmup, runs):  # negative i: warm-up, not recorded
            for label, (argv, on_terminal) in commands.items():
                elapsed, used = start_and_wait(argv, env, terminal_side if on_terminal else devnull)
                drain(terminal)  # a few hundred bytes each time: far below what a pty buffers
                if i >= 0:
                    durations[label].append(elapsed)
                    cpu[label].append(used)
    finally:
        for fd in (devnull, terminal, terminal_side):
            os.close(fd)
    return durations, cpu


# ---------------------------------------------------------------- statistics and output

def p90(values: list[float]) -> float:
    """The 90th percentile, nearest rank: 9 in 10 samples are at most this."""
    ordered = sorted(values)
    return ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)]


def summarize(samples_ns: dict[str, list[int]], baseline: str, unit: float) -> dict[str, dict]:
    """Median, p90 and ratio to BASELINE's median for each method, in UNIT ns."""
    summary = {}
    base = statistics.median(samples_ns[baseline]) if samples_ns.get(baseline) else None
    for name, values in samples_ns.items():
        m = statistics.median(values)
        summary[name] = {"median": round(m / unit, 1), "p90": round(p90(values) / unit, 1),
                         "ratio": round(m / base, 3) if base else None,
                         "samples": [round(v / unit, 1) for v in values]}
    return summary


def print_spawn_tables(rows: dict[str, dict], method_names: list[str]) -> None:
    headers = ["TYPE", *method_names]
    medians, p90s, faults = [], [], []
    for label, row in rows.items():
        stats = row["methods"]
        cells, tails, faulted = [label], [label], [label]
        for name in method_names:
            if name not in stats:
                for line in (cells, tails, faulted):
                    line.append("n/a")
                continue
            s = stats[name]
            ratio = f" ({s['ratio']:.2f}x)" if name != "bare Python" and s["ratio"] else ""
            cells.append(f"{s['median']:.0f}{ratio}")
            tails.append(f"{s['p90']:.0f}")
            faulted.append(f"{s['faults_per_round_trip']:.0f}")
        medians.append(cells)
        p90s.append(tails)
        faults.append(faulted)
    table(headers, medians, title="Spawn, run, reap: median µs (ratio to bare Python)")
    print()
    table(headers, p90s, title="Spawn, run, reap: 90th percentile µs")
    print()
    table(headers, faults, title="Minor page faults per round trip, all processes (copy-on-write after fork)")
    print()


def spawn_goals(rows: dict[str, dict]) -> list[dict]:
    goals = []
    for label, row in rows.items():
        s = row["methods"]
        if "labkit fn" in s and "bare Python" in s:
            ratio = s["labkit fn"]["ratio"]
            goals.append({"type": label, "goal": f"labkit fn within {LABKIT_GOAL}x of bare Python",
                          "value": f"{ratio:.2f}x", "met": ratio <= LABKIT_GOAL})
        if "labkit exec" in s and "unshare(1)" in s:
            ratio = s["labkit exec"]["median"] / s["unshare(1)"]["median"]
            goals.append({"type": label, "goal": "labkit exec faster than unshare(1)",
                          "value": f"{ratio:.2f}x unshare(1)", "met": ratio < 1})
    return goals


def print_goals(goals: list[dict]) -> None:
    table(("TYPE", "GOAL", "MEASURED", "MET"),
          [(g["type"], g["goal"], g["value"], "yes" if g["met"] else "NO") for g in goals],
          title="Goals (reported, not asserted)")
    print()


def print_cli_table(stats: dict[str, dict]) -> None:
    rows = [(label, f"{s['median']:.1f}", f"{s['p90']:.1f}", f"{s['ratio']:.2f}x",
             f"{s['cpu_median']:.1f} ({s['cpu_ratio']:.2f}x)",
             "" if label in (BASELINE, ARGPARSE) else ("yes" if s["ratio"] <= CLI_GOAL else "NO"))
            for label, s in stats.items()]
    table(("COMMAND", "MEDIAN ms", "P90 ms", "RATIO", "CPU ms", f"WITHIN {CLI_GOAL}x"), rows,
          title="Start time of the labkit command against python -c pass (same interpreter)")
    print()


# ---------------------------------------------------------------- the command line

def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def natural_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 0")
    return int(text)


def parse_types(text: str) -> dict[str, int]:
    """'uts,net,all' -> {"uts": CLONE_NEWUTS, "net": ..., "all": every flag}."""
    rows = {}
    for word in filter(None, (w.strip() for w in text.split(","))):
        if word == "all":
            rows["all"] = ALL_FLAGS
            continue
        try:
            t = lookup(word)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{e}, or all") from None
        rows[t.name] = t.flag
    if not rows:
        raise argparse.ArgumentTypeError("no namespace type given")
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Time a child in new namespaces: labkit, bare Python, unshare(1), C clone3; "
        "and the labkit command's start time.",
        epilog="Goals (reported, not asserted): labkit fn within 1.2x of bare Python, labkit exec "
        "faster than unshare(1), the labkit command within 1.5x of python -c pass.")
    p.add_argument("--iterations", "-n", type=positive_int, default=200, metavar="N",
                   help="measured round trips per type and method (default 200)")
    p.add_argument("--types", "-t", type=parse_types, metavar="LIST",
                   default=",".join([t.name for t in TYPES] + ["all"]),
                   help="namespace types, comma-separated; all = the eight at once (default: each, and all)")
    p.add_argument("--block", type=positive_int, default=5, metavar="N",
                   help="iterations a method does before the next one takes its turn (default 5)")
    p.add_argument("--warmup", type=positive_int, default=3, metavar="N",
                   help="unmeasured round trips per type and method first (default 3)")
    p.add_argument("--cli-runs", type=natural_int, default=40, metavar="N",
                   help="starts of each command for the start-time table; 0 skips it (default 40)")
    p.add_argument("--ballast", type=natural_int, default=0, metavar="MIB",
                   help="make the bench process MIB MiB bigger first, as big as a notebook's kernel: "
                   "fork(2) copies the page tables of all of it (default 0)")
    p.add_argument("--json", type=argparse.FileType("w"), metavar="FILE",
                   help="also write every number (and every sample) to FILE as JSON")
    return p


def resident_kib() -> int:
    """This process's resident memory (VmRSS), whose page tables fork(2) copies."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def machine_facts() -> dict:
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "executable": sys.executable, "uid": os.geteuid(), "bench_rss_kib": resident_kib()}


def print_machine(facts: dict) -> None:
    print(f"Linux {facts['kernel']}, {facts['cpus']} CPUs, Python {facts['python']}, "
          f"bench process {facts['bench_rss_kib'] // 1024} MiB resident (the Python paths fork it)")
    print()


def explain_results(rows: dict[str, dict], notes: list[str]) -> None:
    """Add the notes a reader needs to make sense of the numbers."""
    quiet = [row["kworker_us_per_round_trip"] for row in rows.values() if "net" not in row["types"]]
    for label, row in rows.items():
        if "net" in row["types"]:
            others = f" (rows without net: {max(quiet):.0f} µs at most)" if quiet else ""
            notes.append(
                f"{label}: the kernel's worker threads used {row['kworker_us_per_round_trip']:.0f} µs of CPU "
                f"per round trip{others}, during the row and the {SETTLE:.0f} s after it. That is mostly "
                "cleanup_net() freeing network namespaces asynchronously: a cost the timings above do not "
                "include, and a backlog a fast loop leaves behind.")
    slower = [label for label, row in rows.items()
              if {"bare Python", "unshare(1)"} <= row["methods"].keys()
              and row["methods"]["bare Python"]["median"] >= row["methods"]["unshare(1)"]["median"]]
    if slower:
        notes.append(
            f"{', '.join(slower)}: even bare Python, which execs nothing, is not faster than unshare(1). "
            "subprocess starts unshare(1) with vfork(2), which copies no page tables, while every "
            "Python path forks the whole interpreter (see --ballast): here no fork()-based path "
            "can beat unshare(1).")


def run_spawn_rows(args, methods: dict, notes: list[str]) -> dict[str, dict]:
    rows = {}
    for label, flags in args.types.items():
        workers_before = kernel_worker_cpu_ms()
        start = time.monotonic()
        samples, faults, unavailable = measure_row(flags, methods, args.iterations, args.block,
                                                   args.warmup)
        print(f"  {label:<7} {time.monotonic() - start:5.1f} s", file=sys.stderr)
        if flags & NEWNET:
            time.sleep(SETTLE)  # let cleanup_net() finish here, not during the next row
        round_trips = (args.iterations + args.warmup) * len(methods)
        rows[label] = {"flags": f"{flags:#010x}", "types": [t.name for t in decode_flags(flags)],
                       "unavailable": unavailable,
                       "kworker_us_per_round_trip": (kernel_worker_cpu_ms() - workers_before) * 1000
                       / round_trips,
                       "methods": summarize(samples, "bare Python", 1e3)}
        for name, count in faults.items():
            rows[label]["methods"][name]["faults_per_round_trip"] = round(count / args.iterations, 1)
        for name, reason in unavailable.items():
            notes.append(f"{label}: {name} could not run: {reason}")
    return rows


def measure(args: argparse.Namespace, scratch: str) -> dict:
    """Every measurement, in a dict ready for JSON; SCRATCH is a temporary directory."""
    notes: list[str] = []
    result: dict = {"machine": machine_facts(), "settings": {
        "iterations": args.iterations, "block": args.block, "warmup": args.warmup,
        "cli_runs": args.cli_runs, "ballast_mib": args.ballast}}
    try:
        clone_bench = compile_clone_bench(scratch)
    except (OSError, subprocess.CalledProcessError) as e:
        clone_bench = None
        notes.append(f"C columns skipped: could not compile clone_bench.c with gcc: "
                     f"{getattr(e, 'stderr', None) or e}")
    methods = all_methods(clone_bench)
    print(f"timing {len(methods)} methods x {args.iterations} round trips per type:", file=sys.stderr)
    rows = run_spawn_rows(args, methods, notes)
    cli = {}
    if args.cli_runs > 0:
        print(f"timing the labkit command's start, {args.cli_runs} runs each", file=sys.stderr)
        durations, cpu = measure_cli(sys.executable, args.cli_runs, 2, str(Path(scratch) / "pycache"))
        cli = summarize(durations, BASELINE, 1e6)
        for label, used in summarize(cpu, BASELINE, 1e6).items():
            cli[label]["cpu_median"], cli[label]["cpu_ratio"] = used["median"], used["ratio"]
    explain_results(rows, notes)
    goals = spawn_goals(rows) + [
        {"type": "cli", "goal": f"{label} within {CLI_GOAL}x of {BASELINE}",
         "value": f"{s['ratio']:.2f}x", "met": s["ratio"] <= CLI_GOAL}
        for label, s in cli.items() if label not in (BASELINE, ARGPARSE)]
    result.update(methods=list(methods), spawn=rows, cli=cli, goals=goals, notes=notes)
    return result


def report(result: dict) -> None:
    print_machine(result["machine"])
    print_spawn_tables(result["spawn"], result["methods"])
    print_goals([g for g in result["goals"] if g["type"] != "cli"])
    if result["cli"]:
        print_cli_table(result["cli"])
    for note in result["notes"]:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        print("ns_ops.py: run the bench as root (sudo make bench): the bare Python, unshare(1) and C "
              "paths create namespaces without a user namespace, which needs CAP_SYS_ADMIN.",
              file=sys.stderr)
        return 2
    # The children that labkit fn makes flush sys.stdout when they end; print
    # nothing before the measurements, or a child would print it again.
    sys.stdout.flush()
    ballast = b"\1" * (args.ballast << 20)  # written, so resident, like a notebook kernel's heap
    try:
        with tempfile.TemporaryDirectory(prefix="nslab-bench-") as scratch:
            result = measure(args, scratch)
    except BenchError as e:
        print(f"ns_ops.py: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # every child has ended by now: each round trip reaps its own
        return 130
    del ballast
    report(result)
    if args.json:
        json.dump(result, args.json, indent=1)
        args.json.write("\n")
        args.json.close()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `ns_ops.py | head` ends quietly
    raise SystemExit(main())
