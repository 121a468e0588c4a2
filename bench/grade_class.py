#!/usr/bin/env python3
"""bench/grade_class.py: what grading a whole class costs, and where the time goes.

    sudo .venv/bin/python bench/grade_class.py [-n STUDENTS] [--jobs 1,default] [--json FILE]

It makes a class of N student workspaces with every exercise the grader
knows, each folder drawn (with a fixed seed) from what the kit has:
references and correct-but-unusual solutions, the self-test's mutants, the
starters; and one hostile student whose every solution floods its output,
forks without bound or hangs.  Then, in one run:

* ``grader check --class`` at each -j of --jobs ("default" = no -j): wall
  time, CPU time (user + system of the grader and everything it started),
  peak memory (the largest resident set among them: the grader), seconds
  and CPU seconds per student, and the projection to 300 students;
* the hostile student alone, with its time limits;
* the floor: the same folders run bare (make if there is a Makefile, then
  the solution once with a trivial COMMAND), in namespaces of their own
  but without the grader's sandbox, checks or waits;
* where the time goes: each check of one reference student and one
  starter, timed in-process (``--no-profile`` skips it).

Nothing is asserted: the goal (300 students x 8 exercises within 5 minutes
on 2 cores) is reported beside the figures.  Everything it makes is under
one temporary folder, removed at the end (--keep DIR keeps the class).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_STUDENTS, GOAL_SECONDS = 300, 300.0  # 300 students x 8 exercises in 5 minutes, 2 cores

# A hostile solution per kind: each must cost only its own time limits.
HOSTILE = {
    "flood": "#!/bin/sh\nexec yes 'all work and no play'\n",
    "fork bomb": "#!/bin/bash\nb() { b | b & }; b\nsleep 30\n",
    "hang": "#!/bin/sh\nexec sleep 3600\n",
}


# The class --------------------------------------------------------------------------

def pool(name: str) -> dict[str, list[Path]]:
    """The folders the kit has for exercise NAME, by kind: right, wrong, starter."""
    found: dict[str, list[Path]] = {"right": [], "wrong": [], "starter": []}
    references = ROOT / "solutions" / name
    for folder in [references, *sorted(p for p in references.glob("*") if p.is_dir())]:
        if (folder / "solution").exists() or (folder / "Makefile").exists():
            found["right"].append(folder)
    selftest = ROOT / "grader" / "selftest" / name
    for table, kind in (("unusual.toml", "right"), ("mutants.toml", "wrong")):
        if (selftest / table).exists():
            found[kind] += [selftest / case for case in tomllib.loads((selftest / table).read_text())]
    if (ROOT / "exercises" / name).is_dir():
        found["starter"].append(ROOT / "exercises" / name)
    return found


def make_class(top: Path, students: int, exercises: list[str], seed: int = 11) -> dict[str, dict]:
    """STUDENTS workspaces under TOP, plus one hostile; return what each folder is."""
    rng = random.Random(seed)
    pools = {name: pool(name) for name in exercises}
    made: dict[str, dict] = {}
    for i in range(students):
        student = f"student{i + 1:03d}"
        made[student] = {}
        for name in exercises:
            # A class that has worked: most right, some wrong, a few not started.
            kind = rng.choices(["right", "wrong", "starter"], weights=[55, 35, 10])[0]
            choices = pools[name][kind] or pools[name]["right"] or pools[name]["starter"]
            if not choices:
                continue
            source = rng.choice(choices)
            shutil.copytree(source, top / student / name, symlinks=True,
                            ignore=shutil.ignore_patterns("solution.o", "__pycache__"))
            made[student][name] = f"{kind}:{source.relative_to(ROOT)}"
    hostile = "zz-hostile"
    made[hostile] = {}
    kinds = list(HOSTILE)
    for i, name in enumerate(exercises):
        kind = kinds[i % len(kinds)]
        folder = top / hostile / name
        folder.mkdir(parents=True)
        (folder / "solution").write_text(HOSTILE[kind])
        (folder / "solution").chmod(0o755)
        made[hostile][name] = f"hostile:{kind}"
    return made


# Measuring --------------------------------------------------------------------------

CGROUP_PREFIX = f"nslab-bench{os.getpid()}"  # the grader's cgroups in these runs: no one else's


class Sandboxes(threading.Thread):
    """Every 20 ms, the grader's sandboxes (its cgroups): how many at once, and the most
    memory and processes one of them held (memory.peak where the kernel has it)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.at_once = self.memory = self.pids = 0

    def run(self) -> None:
        from labkit.cgroup import layout

        where = layout()
        memory, pids = where.home_of("memory"), where.home_of("pids")
        while not self.done.wait(0.02):
            with contextlib.suppress(OSError):
                names = [n for n in os.listdir(memory) if n.startswith(CGROUP_PREFIX + "-")]
                self.at_once = max(self.at_once, len(names))
                for name in names:
                    for home, files, attr in (
                            (memory, ("memory.peak", "memory.current", "memory.max_usage_in_bytes"),
                             "memory"), (pids, ("pids.peak", "pids.current"), "pids")):
                        for f in files:
                            with contextlib.suppress(OSError, ValueError):
                                value = int(Path(home, name, f).read_text())
                                setattr(self, attr, max(getattr(self, attr), value))
                                break

    def stop(self) -> dict:
        self.done.set()
        self.join()
        return {"sandboxes_at_once": self.at_once, "sandbox_peak_memory_mib": self.memory / 2**20,
                "sandbox_peak_pids": self.pids}


def measured(argv: list[str], timeout: float | None = None) -> dict:
    """Run ARGV; its wall time, CPU time (it and every descendant it reaped), peak RSS, and
    what its sandboxes held."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = machine_busy()
    sandboxes = Sandboxes()
    sandboxes.start()
    start = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "NSLAB_CGROUP_PREFIX": CGROUP_PREFIX})
    wall = time.monotonic() - start
    busy = machine_busy() - busy
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "machine_cpu": busy, "peak_rss_mib": after.ru_maxrss / 1024,
            "returncode": out.returncode, "stderr": out.stderr[-2000:], "stdout": out.stdout,
            "stderr_head": out.stderr[:500], **sandboxes.stop()}


def machine_busy() -> float:
    """CPU seconds the whole machine has spent not idle: kernel threads too (ending a
    network namespace is a kworker's job, charged to no process), and anything else
    that runs meanwhile (an upper bound on a shared machine)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def grade_class(grader: str, top: Path, jobs: str, csv: Path) -> dict:
    argv = [grader, "check", "--class", str(top), "--csv", str(csv)]
    if jobs != "default":
        argv += ["-j", jobs]
    result = measured(argv)
    if result["returncode"] not in (0, 1):
        raise SystemExit(f"grade_class: grader check --class failed ({result['returncode']}):\n"
                         f"{result['stderr']}")
    return result


# The floor: the same folders, run bare ----------------------------------------------

BARE_WRAPPER = ("mount -t tmpfs nslab-bench /run/netns 2>/dev/null || "
                "{ mkdir -p /run/netns && mount -t tmpfs nslab-bench /run/netns; }; "
                'cd "$1" && shift && exec "$@"')


def bare_argv(name: str, rootfs: str, outside: str) -> list[str] | None:
    """A plausible argument vector for one bare run of a solution of NAME."""
    return {
        "uts": ["./solution", "bench-host", "/bin/true"],
        "escape": ["./solution", outside],
        "jail": ["./solution", rootfs, "/bin/true"],
        "pid1": ["./solution", "/bin/true"],
        "veth": ["./solution", "up", "bench-a", "10.77.0.1/24", "bench-b", "10.77.0.2/24"],
        "userns": ["./solution", "/bin/true"],
        "container": ["./solution", rootfs, "bench-box", "/bin/true"],
        "timens": ["./solution", "86400", "/bin/true"],
    }.get(name)


def floor(top: Path, made: dict[str, dict], rootfs: str, outside: str) -> dict:
    """Make and run once each folder of the class (but the hostile student's), bare.

    Each run gets its own namespaces (unshare(1): mount, UTS, IPC, network,
    PID) so that nothing touches this machine, a /proc of its PID namespace
    (tools such as `unshare --net=FILE` find a process by its PID there: the
    machine's /proc would name another process), a tmpfs on /run/netns, and
    a time limit of 10 s; no sandbox, no checks, no waits.
    """
    start = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    runs = failures = 0
    for student, folders in made.items():
        if student.startswith("zz-hostile"):
            continue
        for name in folders:
            argv = bare_argv(name, rootfs, outside)
            if argv is None:
                continue
            with tempfile.TemporaryDirectory(prefix="nslab-floor-") as tmp:
                work = Path(tmp) / name
                shutil.copytree(top / student / name, work, symlinks=True)
                wrap = ["unshare", "--mount", "--propagation", "private", "--uts", "--ipc", "--net",
                        "--pid", "--fork", "--mount-proc", "--",
                        "sh", "-c", BARE_WRAPPER, "floor", str(work)]
                try:
                    if (work / "Makefile").exists():
                        subprocess.run(wrap + ["make", "-s"], capture_output=True, timeout=60)
                    out = subprocess.run(wrap + argv, capture_output=True, timeout=10,
                                         stdin=subprocess.DEVNULL)
                    failures += out.returncode != 0
                except subprocess.TimeoutExpired:
                    failures += 1
                runs += 1
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": time.monotonic() - start, "runs": runs, "nonzero": failures,
            "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


# Where the time goes: each check, timed in-process ----------------------------------

def profile(top: Path, students: list[str], exercises: list[str]) -> list[dict]:
    """Seconds per check for STUDENTS, graded one check at a time in this process."""
    from grader import engine
    from grader.exercises import all_exercises
    from grader.sandbox import hidden_paths

    known = all_exercises()
    timings: list[dict] = []
    original = engine.run_check

    def timed(check, exercise, staging):
        start = time.monotonic()
        result = original(check, exercise, staging)
        timings.append({"exercise": exercise.name, "check": check.name,
                        "seconds": time.monotonic() - start, "status": result.status.value})
        return result

    engine.run_check = timed
    try:
        for student in students:
            before = len(timings)
            engine.grade(student, top / student, [known[n] for n in exercises],
                         hidden_paths(top))
            for t in timings[before:]:
                t["student"] = student
    finally:
        engine.run_check = original
    return timings


# Output -----------------------------------------------------------------------------

def report(figures: dict, out=sys.stdout) -> None:
    n = figures["students"]
    print(f"class: {n} students + 1 hostile, {len(figures['exercises'])} exercises "
          f"({', '.join(figures['exercises'])}), seed {figures['seed']}", file=out)
    print(f"machine: {os.cpu_count()} CPUs, Linux {os.uname().release}", file=out)
    print("", file=out)
    print(f"{'grader check --class':24} {'wall s':>8} {'CPU s':>8} {'peak MiB':>9} "
          f"{'s/student':>10} {'CPU/student':>12} {'300 students':>13}", file=out)
    for jobs, r in figures["class"].items():
        per = r["wall"] / (n + 1)
        print(f"{'-j ' + jobs:24} {r['wall']:8.1f} {r['cpu']:8.1f} {r['peak_rss_mib']:9.0f} "
              f"{per:10.2f} {r['cpu'] / (n + 1):12.2f} {per * GOAL_STUDENTS:12.0f}s", file=out)
    runs = figures["class"]
    base_jobs = "1" if "1" in runs else next(iter(runs), None)
    if base_jobs is not None and len(runs) > 1:
        base = runs[base_jobs]
        print(f"\nagainst -j {base_jobs} (same class, same run):", file=out)
        for jobs, r in runs.items():
            if jobs == base_jobs:
                continue
            same = "same CSV" if r.get("csv") == base.get("csv") else "CSV DIFFERS"
            print(f"  -j {jobs:10} {base['wall'] / r['wall']:5.2f}x faster, CPU x"
                  f"{r['cpu'] / base['cpu']:.2f}, {same}", file=out)
        print(f"  CPU share at -j {base_jobs}: {base['cpu'] / base['wall']:.3f} CPU s per wall s "
              "(the default -j takes CPUs / this share; grader/roster.py CPU_SHARE)", file=out)
        if "machine_cpu" in base:
            print(f"  the whole machine meanwhile: {base['machine_cpu'] / base['wall']:.3f} CPU s "
                  "per wall s (kernel threads and anything else running too)", file=out)
    first = runs.get("default", {}).get("stderr_head", "").splitlines()[:1]
    if first:
        print(f"  default: {first[0]}", file=out)
    print("\nsandboxes (sampled every 20 ms):", file=out)
    for jobs, r in runs.items():
        if "sandboxes_at_once" in r:
            print(f"  -j {jobs:10} at most {r['sandboxes_at_once']} at once; one held at most "
                  f"{r['sandbox_peak_memory_mib']:.0f} MiB and {r['sandbox_peak_pids']} processes",
                  file=out)
    h = figures.get("hostile")
    if h:
        print(f"{'hostile student alone':24} {h['wall']:8.1f} {h['cpu']:8.1f} "
              f"{h['peak_rss_mib']:9.0f}", file=out)
    f = figures.get("floor")
    if f:
        print(f"{'floor (bare, once each)':24} {f['wall']:8.1f} {f['cpu']:8.1f} {'':9} "
              f"{f['wall'] / n:10.2f} {f['cpu'] / n:12.2f} {f['wall'] / n * GOAL_STUDENTS:12.0f}s",
              file=out)
    best = min(r["wall"] for r in figures["class"].values()) / (n + 1) * GOAL_STUDENTS
    verdict = "met" if best <= GOAL_SECONDS else "missed"
    print(f"\ngoal: {GOAL_STUDENTS} students x 8 exercises within {GOAL_SECONDS:.0f} s: "
          f"{verdict} (best projection {best:.0f} s)", file=out)
    timings = figures.get("profile")
    if timings:
        print("\nwhere the time goes (one reference student and one starter, each check):", file=out)
        by_exercise: dict[str, float] = {}
        for t in timings:
            by_exercise[f"{t['student']}/{t['exercise']}"] = \
                by_exercise.get(f"{t['student']}/{t['exercise']}", 0) + t["seconds"]
        for key, seconds in by_exercise.items():
            print(f"  {key:40} {seconds:6.1f} s", file=out)
        slowest = sorted(timings, key=lambda t: -t["seconds"])[:10]
        print("  slowest checks:", file=out)
        for t in slowest:
            name = f"{t['student']}/{t['exercise']}.{t['check']}"
            print(f"    {name:46} {t['seconds']:5.2f} s ({t['status']})", file=out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--students", type=int, default=20, help="students in the class (default 20)")
    p.add_argument("--jobs", default="1,default", help='-j values to time, "default" = no -j '
                   '(default: 1,default)')
    p.add_argument("--exercises", default="", help="comma-separated (default: every exercise)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--no-floor", action="store_true", help="skip the bare runs")
    p.add_argument("--no-profile", action="store_true", help="skip the per-check timings")
    p.add_argument("--no-hostile", action="store_true", help="skip grading the hostile student alone")
    p.add_argument("--json", type=Path, help="write every figure to this file")
    p.add_argument("--keep", type=Path, help="make the class in this (new) folder and keep it")
    args = p.parse_args(argv)
    if args.students < 1:
        p.error("--students needs 1 or more")
    if os.geteuid() != 0:
        p.error("the grader runs solutions as root: run this as root (sudo make bench)")

    from grader.exercises import all_exercises
    from labkit import jail

    known = list(all_exercises())
    exercises = [e for e in args.exercises.split(",") if e] or known
    unknown = [e for e in exercises if e not in known]
    if unknown:
        p.error(f"unknown exercise(s): {', '.join(unknown)} (the grader knows {', '.join(known)})")
    grader = str(Path(sys.executable).with_name("grader"))
    if not os.access(grader, os.X_OK):
        p.error(f"no grader command next to {sys.executable}: run make setup")

    scratch = Path(tempfile.mkdtemp(prefix="nslab-bench-class-"))
    try:
        top = args.keep or scratch / "class"
        top.mkdir(parents=True)
        print(f"making a class of {args.students} students in {top} ...", file=sys.stderr)
        made = make_class(top, args.students, exercises, args.seed)
        figures: dict = {"students": args.students, "exercises": exercises, "seed": args.seed,
                         "class": {}, "workspaces": made}
        for jobs in [j.strip() for j in args.jobs.split(",") if j.strip()]:
            print(f"grader check --class (-j {jobs}) ...", file=sys.stderr)
            figures["class"][jobs] = grade_class(grader, top, jobs, scratch / f"grades-{jobs}.csv")
            figures["class"][jobs]["csv"] = (scratch / f"grades-{jobs}.csv").read_text()
        if not args.no_hostile:
            print("the hostile student alone ...", file=sys.stderr)
            hostile = measured([grader, "check", "--student", str(top / "zz-hostile")])
            figures["hostile"] = {k: hostile[k] for k in ("wall", "cpu", "peak_rss_mib", "returncode")}
        if not args.no_floor:
            print("the floor: each folder run bare ...", file=sys.stderr)
            rootfs = jail.build_busybox_rootfs(str(scratch / "rootfs"))
            outside = scratch / "outside.txt"
            outside.write_text("outside\n")
            figures["floor"] = floor(top, made, rootfs, str(outside))
        if not args.no_profile:
            print("where the time goes: one reference student and one starter ...", file=sys.stderr)
            profile_top = scratch / "profile"
            ref, starter = profile_top / "reference", profile_top / "starter"
            for name in exercises:
                right, first = pool(name)["right"], pool(name)["starter"]
                if right:
                    shutil.copytree(right[0], ref / name, symlinks=True)
                if first:
                    shutil.copytree(first[0], starter / name, symlinks=True)
            figures["profile"] = profile(profile_top, ["reference", "starter"], exercises)
        report(figures)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
