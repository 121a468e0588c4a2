"""A class at a time: the engine of `grader check --class DIR`.

Each student is graded by a worker process of its own, forked from the
grader (so it holds every module the grader has loaded, and nothing a
solution could swap in later), up to JOBS at a time.  A worker writes its
student's report as JSON into the *store*, a folder next to the CSV
(``grades.csv`` -> ``grades.csv.d/STUDENT.json``), then exits; the grader
reads the reports back from there.  What is kept there is reused by the
next run of the same command, as long as it still holds:

* the same exercises were asked for (the same list),
* the student's exercise folders hash to the same value (every file's
  path, type, mode and content; a link's target), and
* the grader is the same (a hash of its source files).

Otherwise the student is graded again.  Delete the folder to regrade
everyone.

Ctrl-C (SIGINT, or SIGTERM) stops the run at once: each worker gets
SIGINT, which unwinds its check (every sandbox is killed, its cgroup and
staging folder removed) and exits without writing a report.  A worker
that has not ended after ``STOP_GRACE`` seconds (or at a second Ctrl-C)
is killed, and the cgroups it made (named after its PID) are killed and
removed for it.  Students graded before are in the report; the others are
"not graded".

Why a process per student and not a thread: a thread cannot be
interrupted where it waits, a process can, and each process unwinds its
own sandboxes; they also grade in parallel without sharing one GIL.

The default number at a time comes from what grading costs (see
``default_jobs``): a student's grading mostly waits (for a solution to
start, to answer, to time out), measured by bench/grade_class.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import selectors
import shutil
import signal
import stat
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .engine import CheckResult, ExerciseResult, Report, grade
from .feedback import Status

STORE_FORMAT = "nslab-grader-student/1"
STOP_GRACE = 15.0  # seconds a worker gets to clean up after SIGINT before SIGKILL
NOT_GRADED = "not graded"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# What grading one student costs, measured with bench/grade_class.py on the
# 2-core lab machine (30 students + 1 hostile x 8 exercises, -j 1): 2.0 CPU
# seconds (grader, sandboxes, solutions) in 32 s of wall time, a share of
# 0.063; the rest is waiting for solutions.  The kernel's own work of making
# and ending namespaces (kworkers, charged to no process) comes on top:
# twice 0.1 leaves room for it.  -j 10 (this value, 2 CPUs) was 4.5x faster
# than -j 1 and -j 20 4.9x: past it, little more is gained.
CPU_SHARE = 0.2
# At most this many sandboxes of one student at once (a check that holds
# a run while it starts another), and the worker process itself.
SANDBOXES_AT_ONCE = 2
WORKER_MEMORY = 100 << 20  # a forked grader: its own pages after fork, generously
WORKER_PIDS = 8  # the worker and its threads (exit watch, seccomp notify)
MAX_DEFAULT_JOBS = 32


# The default -j -----------------------------------------------------------------------

@dataclass(frozen=True)
class Machine:
    cpus: int
    memory: int  # bytes available (MemAvailable)
    pids: int  # processes and threads that may still be made (pid_max, threads-max)


def this_machine() -> Machine:
    cpus = len(os.sched_getaffinity(0))
    memory = 1 << 30
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/meminfo") as f:
            memory = next(int(line.split()[1]) * 1024 for line in f
                          if line.startswith("MemAvailable:"))
    room = []
    for path in ("/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"):
        with contextlib.suppress(OSError, ValueError):
            room.append(int(Path(path).read_text()))
    with contextlib.suppress(OSError, ValueError):
        used = int(Path("/proc/loadavg").read_text().split()[3].split("/")[1])
        room = [r - used for r in room]
    return Machine(cpus, memory, max(min(room, default=32768), 0))


def default_jobs(exercises: Sequence, machine: Machine | None = None) -> tuple[int, str]:
    """How many students to grade at once here, and why (one line for the progress line).

    As many as keep the CPUs busy (CPUs / CPU_SHARE), bounded so that the
    students graded at once fit, at their limits, in half the available
    memory and half the processes the kernel may still make: each student
    has at most SANDBOXES_AT_ONCE sandboxes, each with the exercise's
    memory and pids limits (or the build's, for make), and a worker.
    """
    from .engine import BUILD_LIMITS

    m = machine or this_machine()
    memory = max([BUILD_LIMITS.memory, *(SANDBOXES_AT_ONCE * e.limits.memory for e in exercises)])
    pids = max([BUILD_LIMITS.pids, *(SANDBOXES_AT_ONCE * e.limits.pids for e in exercises)])
    bounds = {
        "CPUs": max(1, int(m.cpus / CPU_SHARE)),
        "memory": (m.memory // 2) // (memory + WORKER_MEMORY),
        "pids": (m.pids // 2) // (pids + WORKER_PIDS),
        "cap": MAX_DEFAULT_JOBS,
    }
    jobs = max(1, min(bounds.values()))
    limit = min(bounds, key=bounds.get)
    why = {"CPUs": f"{m.cpus} CPUs, each student keeps about {CPU_SHARE:g} of one busy",
           "memory": f"{m.memory >> 20} MiB of memory available, {(memory + WORKER_MEMORY) >> 20} MiB "
                     "per student at its limits",
           "pids": f"room for {m.pids} more processes, {pids + WORKER_PIDS} per student at its "
                   "limits",
           "cap": "the most the grader picks by itself"}[limit]
    return jobs, why


# Kept results -------------------------------------------------------------------------

def store_for(target: Path | None) -> Path | None:
    """The folder of kept results for the CSV (or report) TARGET: TARGET.d next to it."""
    return None if target is None else target.with_name(target.name + ".d")


def kept_path(store: Path, folder: Path) -> Path:
    return store / (folder.name + ".json")


def workspace_hash(workspace: Path, exercises: Sequence[str]) -> str:
    """A hash of what grading reads from WORKSPACE: each exercise folder's files."""
    h = hashlib.sha256()
    for name in exercises:
        top = workspace / name
        h.update(b"\0exercise\0" + name.encode())
        if not top.is_dir():
            h.update(b"\0absent")
            continue
        for here, dirs, files in os.walk(top):
            dirs.sort()
            for entry in sorted(files + [d for d in dirs if os.path.islink(os.path.join(here, d))]):
                path = os.path.join(here, entry)
                h.update(b"\0path\0" + os.fsencode(os.path.relpath(path, top)))
                try:
                    st = os.lstat(path)
                    h.update(f"\0{stat.S_IFMT(st.st_mode)}:{stat.S_IMODE(st.st_mode):o}".encode())
                    if stat.S_ISLNK(st.st_mode):
                        h.update(os.fsencode(os.readlink(path)))
                    elif stat.S_ISREG(st.st_mode):
                        with open(path, "rb") as f:
                            while chunk := f.read(1 << 20):
                                h.update(chunk)
                except OSError as e:
                    h.update(f"\0error {e.errno}".encode())
            for d in dirs:
                h.update(b"\0dir\0" + os.fsencode(os.path.relpath(os.path.join(here, d), top)))
    return h.hexdigest()


def grader_hash() -> str:
    """A hash of the grader's source: a kept result from another grader is not reused."""
    h = hashlib.sha256()
    top = Path(__file__).resolve().parent
    for path in sorted(top.rglob("*.py")):
        h.update(str(path.relative_to(top)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def report_to_dict(report: Report) -> dict:
    data = dataclasses.asdict(report)
    for e in data["exercises"]:
        for c in e["checks"]:
            c["status"] = c["status"].value
    return data


def report_from_dict(data: dict) -> Report:
    return Report(data["student"], [
        ExerciseResult(e["name"], e["title"],
                       [CheckResult(**{**c, "status": Status(c["status"])}) for c in e["checks"]])
        for e in data["exercises"]])


def load_kept(path: Path, exercises: Sequence[str], digest: str, grader: str) -> Report | None:
    """The report kept in PATH if it still holds for these exercises, workspace and grader."""
    try:
        data = json.loads(path.read_text())
        if (data.get("format") != STORE_FORMAT or data.get("exercises") != list(exercises)
                or data.get("workspace") != digest or data.get("grader") != grader):
            return None
        return report_from_dict(data["report"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def keep(path: Path, report: Report, exercises: Sequence[str], digest: str, grader: str,
         seconds: float) -> None:
    """Write the student's result to PATH, whole or not at all (a rename)."""
    data = {"format": STORE_FORMAT, "student": report.student, "exercises": list(exercises),
            "workspace": digest, "grader": grader,
            "graded_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "seconds": round(seconds, 3), "report": report_to_dict(report)}
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(partial, path)


# Grading ------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What a class run gave: a report per graded student, in the class's order."""

    students: list[str]  # every student, printable, in order
    reports: dict[str, Report] = field(default_factory=dict)
    graded_now: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # the grader itself failed on them
    interrupted: bool = False

    @property
    def not_graded(self) -> list[str]:
        return [s for s in self.students if s not in self.reports]

    @property
    def graded(self) -> list[Report]:
        return [self.reports[s] for s in self.students if s in self.reports]


@dataclass
class _Worker:
    pid: int
    pidfd: int
    pipe: int
    folder: Path
    name: str
    started: float
    buffer: bytes = b""
    stopped: bool = False  # sent SIGINT


def grade_class(folders: Sequence[Path], names: Sequence[str], exercises: Sequence,
                hide: Sequence[str], jobs: int, store: Path | None, board) -> Outcome:
    """Grade each of FOLDERS (students NAMES), JOBS at a time; keep results in STORE."""
    asked = [e.name for e in exercises]
    outcome = Outcome(list(names))
    running: dict[int, _Worker] = {}
    stop = {"at": None}

    def on_signal(signum, frame) -> None:  # forward, and start no one else
        if stop["at"] is None:
            stop["at"] = time.monotonic()
        else:  # a second Ctrl-C: no grace
            stop["at"] = time.monotonic() - STOP_GRACE - 1
        _forward(running)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    selector = selectors.DefaultSelector()
    run_tmp = None
    try:
        run_tmp = Path(tempfile.mkdtemp(prefix="nslab-class-"))
        keep_dir = store or run_tmp / "kept"
        keep_dir.mkdir(parents=True, exist_ok=True)
        for stale in keep_dir.glob(".*.part"):
            with contextlib.suppress(OSError):
                stale.unlink()
        hide = [*hide, str(run_tmp), str(keep_dir.resolve())]
        grader = grader_hash()
        todo = []
        for folder, name in zip(folders, names, strict=True):
            if stop["at"] is not None:
                break
            digest = workspace_hash(folder, asked)
            report = load_kept(kept_path(keep_dir, folder), asked, digest, grader)
            if report is not None:
                report.student = name
                outcome.reports[name] = report
                outcome.kept.append(name)
            else:
                todo.append((folder, name, digest))
        board.begin(len(names), len(todo), len(outcome.kept), jobs)
        queue = list(reversed(todo))
        while running or (queue and stop["at"] is None):
            while queue and len(running) < jobs and stop["at"] is None:
                folder, name, digest = queue.pop()
                w = _start(folder, name, digest, exercises, asked, hide, grader,
                           kept_path(keep_dir, folder), run_tmp, running)
                running[w.pid] = w
                selector.register(w.pipe, selectors.EVENT_READ, ("pipe", w))
                selector.register(w.pidfd, selectors.EVENT_READ, ("exit", w))
                board.started(name)
            if stop["at"] is not None:
                _forward(running)  # a worker forked as the signal came did not get it
            if stop["at"] is not None and time.monotonic() - stop["at"] > STOP_GRACE:
                for w in running.values():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(w.pid, signal.SIGKILL)
            for key, _ in selector.select(timeout=0.5):
                kind, w = key.data
                if w.pid not in running:  # its exit came first in this batch: read and closed
                    continue
                if kind == "pipe":
                    _read(w, board)
                    continue
                os.waitpid(w.pid, 0)  # the pidfd is readable: it has ended
                _read(w, board)
                for fd in (w.pipe, w.pidfd):
                    selector.unregister(fd)
                    os.close(fd)
                del running[w.pid]
                _remove_groups_of(w.pid)  # a worker killed in the middle leaves its cgroups
                report = load_kept(kept_path(keep_dir, w.folder), asked,
                                   _digest_of(todo, w.folder), grader)
                if report is not None:
                    report.student = w.name
                    outcome.reports[w.name] = report
                    outcome.graded_now.append(w.name)
                elif stop["at"] is None:
                    outcome.failed.append(w.name)
                board.finished(w.name, report, time.monotonic() - w.started)
    finally:
        for w in running.values():  # only on a bug of ours: leave nothing running
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(w.pid, 0)
            _remove_groups_of(w.pid)
        selector.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if run_tmp is not None:
            shutil.rmtree(run_tmp, ignore_errors=True)
        board.end()
    outcome.interrupted = stop["at"] is not None
    return outcome


def _forward(running: dict[int, _Worker]) -> None:
    """Ask each worker not asked yet to stop: SIGINT unwinds its check and its sandboxes."""
    for w in running.values():
        if not w.stopped:
            w.stopped = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGINT)


def _digest_of(todo, folder: Path) -> str:
    return next(d for f, _, d in todo if f == folder)


def _read(w: _Worker, board) -> None:
    """Progress lines from the worker: EXERCISE TAB CHECK-TITLE."""
    while True:
        try:
            chunk = os.read(w.pipe, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        w.buffer += chunk
    *lines, w.buffer = w.buffer.split(b"\n")
    for line in lines:
        exercise, _, title = line.decode(errors="replace").partition("\t")
        board.advanced(w.name, exercise, title)


def _start(folder: Path, name: str, digest: str, exercises: Sequence, asked: list[str],
           hide: Sequence[str], grader: str, target: Path, run_tmp: Path,
           running: dict[int, _Worker]) -> _Worker:
    r, w = os.pipe2(os.O_CLOEXEC)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    # SIGINT is held over the fork: the worker takes it once its own handler is in place.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    pid = -1
    try:
        pid = os.fork()
    finally:
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if pid == 0:  # the worker; never returns
        try:
            os.close(r)
            for other in running.values():
                for fd in (other.pipe, other.pidfd):
                    with contextlib.suppress(OSError):
                        os.close(fd)
            _work(folder, name, digest, exercises, asked, hide, grader, target, run_tmp, w)
        finally:
            os._exit(3)
    os.close(w)
    os.set_blocking(r, False)
    return _Worker(pid, os.pidfd_open(pid), r, folder, name, time.monotonic())


def _work(folder: Path, name: str, digest: str, exercises: Sequence, asked: list[str],
          hide: Sequence[str], grader: str, target: Path, run_tmp: Path, pipe: int) -> None:
    """In the worker: grade one student, keep the result, exit (0: kept, 130: stopped)."""
    code = 3
    try:
        def stop(signum, frame):  # once: the cleanup that follows must not be interrupted
            for s in STOP_SIGNALS:
                signal.signal(s, signal.SIG_IGN)
            raise KeyboardInterrupt

        for s in STOP_SIGNALS:
            signal.signal(s, stop)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__  # not a progress bar's proxies
        own_tmp = run_tmp / f"worker-{os.getpid()}"
        own_tmp.mkdir()
        tempfile.tempdir = str(own_tmp)  # staging copies: removed with the run's folder at worst

        def advance(exercise: str, result: CheckResult) -> None:
            with contextlib.suppress(OSError):
                os.write(pipe, f"{exercise}\t{result.title}\n".encode(errors="replace"))

        start = time.monotonic()
        report = grade(name, folder, exercises, hide, advance)
        keep(target, report, asked, digest, grader, time.monotonic() - start)
        code = 0
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - a bug of ours; the grader says the student is not graded
        if os.environ.get("NSLAB_GRADER_DEBUG"):
            traceback.print_exc()
    finally:
        os._exit(code)


def _remove_groups_of(pid: int) -> None:
    """Kill and remove the cgroups process PID made (labkit names them PREFIX-PID-XXXXXX)."""
    from labkit.cgroup import Cgroup, CgroupError, layout, prefix

    where = layout()
    homes = {where.unified, *where.v1.values()} - {None}
    names: dict[str, dict[str, str]] = {}
    start = f"{prefix()}-{pid}-"
    for home in homes:
        with contextlib.suppress(OSError):
            for entry in os.listdir(home):
                if entry.startswith(start) and len(entry) == len(start) + 6:
                    names.setdefault(entry, {})[home] = f"{home}/{entry}"
    for name, dirs in names.items():
        with contextlib.suppress(CgroupError, OSError):
            Cgroup(name, dirs, where).remove()


# Output -------------------------------------------------------------------------------

def csv_text(outcome: Outcome, exercises: Sequence[str], to_csv: Callable) -> str:
    """The report's CSV for the graded students, "not graded" in every column for the others."""
    import csv
    import io

    graded = outcome.graded
    lines = to_csv(graded, exercises).splitlines(keepends=True)
    header, rows = lines[0], dict(zip((r.student for r in graded), lines[1:], strict=True))
    out = io.StringIO()
    out.write(header)
    writer = csv.writer(out)
    for student in outcome.students:
        if student in rows:
            out.write(rows[student])
        else:
            writer.writerow([student, *([NOT_GRADED] * (len(exercises) + 2))])
    return out.getvalue()


class Board:
    """What the grader says while it grades a class, on stderr.

    The first line always: how many students, how many at a time.  On a
    terminal, a bar per student being graded and one for the class; in a
    pipe, a line per student graded.
    """

    def __init__(self, jobs_why: str, store: Path | None, total_checks: int) -> None:
        self.why, self.store, self.total_checks = jobs_why, store, total_checks
        self.bar = None
        self.tasks: dict[str, object] = {}
        self.overall = None

    def begin(self, students: int, todo: int, kept: int, jobs: int) -> None:
        line = f"grading {todo} students, {min(jobs, max(todo, 1))} at a time"
        if kept:
            line = (f"grading {todo} of {students} students, {min(jobs, max(todo, 1))} at a time "
                    f"({kept} kept from an earlier run in {self.store})")
        if self.why:
            line += f" (default -j {jobs}: {self.why})"
        print(line, file=sys.stderr, flush=True)
        if sys.stderr.isatty() and todo:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            # No auto refresh: its thread would be copied into each forked worker.
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[check]}"), console=Console(file=sys.stderr),
                                transient=True, auto_refresh=False)
            self.bar.start()
            self.overall = self.bar.add_task("class", total=todo, check="")
            self.bar.refresh()

    def started(self, student: str) -> None:
        if self.bar is not None:
            self.tasks[student] = self.bar.add_task(student, total=self.total_checks, check="")
            self.bar.refresh()

    def advanced(self, student: str, exercise: str, title: str) -> None:
        if self.bar is not None and student in self.tasks:
            self.bar.update(self.tasks[student], advance=1, check=f"{exercise}: {title}")
            self.bar.refresh()

    def finished(self, student: str, report: Report | None, seconds: float) -> None:
        from .report import num

        if self.bar is not None:
            if student in self.tasks:
                self.bar.remove_task(self.tasks.pop(student))
            if report is not None:
                self.bar.update(self.overall, advance=1)
            self.bar.refresh()
        elif report is not None:
            print(f"graded {student}: {num(report.score)}/{num(report.max_score)} "
                  f"({seconds:.1f} s)", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
