"""Every command the kit prints works exactly as printed.

A student types what the README, a lesson, a starter or a grader hint shows:
`sudo grader check uts`, not `sudo .venv/bin/grader check uts`.  This file
collects those commands from where they are printed and runs each one
literally with bash, as root and, where it is printed without sudo, as the
student (uid 65534, from the readable copy of the kit).

Each run is in namespaces of its own (mount, UTS, IPC; not network: the
grader's proc connector works only in the first one), with a private /tmp when
it runs as root, so a printed command cannot change the
machine.  /usr/local/bin there holds what `make setup` puts in it: the links
`labkit` and `grader`, made by the Makefile's own `commands` step for this
checkout.  So `sudo` (which `make setup` installs) finds them through its
secure_path, and the student's shell through PATH, as on a student's machine.

Commands that are placeholders for a value the student chooses (DIR, PID,
ROOTFS) get a real one.  A printed command that this file neither runs nor
names in ELSEWHERE (with the test that covers it) fails the collection test:
a new printed command is either tested or says where it is.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)
STUDENT_PATH = "/usr/local/bin:/usr/bin:/bin"
TYPED = ("sudo ", "grader ", "labkit ")  # what a bare ``` block of a lesson holds to be typed

# Printed commands that a test elsewhere runs the way a person does.
ELSEWHERE = {
    r"^sudo make (lab|test|setup)\b": "make lab: tests/test_lab_browser.py; make test, which runs "
                                      "make setup, is this suite",
    r"^make lab\b": "tests/test_lab_browser.py serves JupyterLab as make lab does",
    r"^vagrant |cd /nslab": "tests/vm (make vm-test) runs vagrant up and the lab in the VM",
    r"^sudo \.venv/bin/python lessons/build\.py": "tests/test_lessons.py runs lessons/build.py --check, "
                                                 "as root and (from the readable kit) --as-user",
    r"^sudo labkit demo ": "tests/test_demo.py plays the demos in tmux",
    r"^sudo make vm-test": "tests/vm",
    r"^sudo make bench": "tests/test_bench.py",
    r"^grader classroom init ": "tests/test_grader_classroom.py runs grader classroom init",
    r"^sudo \.venv/bin/python tests/classroom_dryrun\.py": "tests/test_grader_classroom.py runs "
                                                          "the same dry run (DryRun, run)",
}


@dataclass(frozen=True)
class Printed:
    where: str    # file, for the report
    cwd: str      # folder the command is typed in, relative to the kit
    text: str     # the command, as printed (one line, or a block run as one script)

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


# Collecting -----------------------------------------------------------------------

def _strip_comment(line: str) -> str:
    """'cmd   # what it does' -> 'cmd' (a comment after two spaces, as the README writes them)."""
    return re.split(r"\s{2,}#\s", line, maxsplit=1)[0].strip()


def from_markdown(text: str, where: str, cwd: str = ".") -> list[Printed]:
    """Lines of ```sh (or bare ```) blocks, and inline `sudo ...` commands."""
    found, fence = [], None
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fence = None if fence is not None else line.strip()[3:].strip()
            continue
        if fence is not None:
            command = _strip_comment(line)
            # A ```sh block is commands; a bare ``` block may be a file or an output.
            if command and (fence in ("sh", "bash") or fence == "" and command.startswith(TYPED)):
                found.append(Printed(where, cwd, command))
            continue
        found += [Printed(where, cwd, m) for m in re.findall(r"`(sudo [^`]+)`", line)]
    return found


def from_lesson_source(path: Path) -> list[Printed]:
    """The markdown cells of a lesson source ('# ' lines after '# %% [markdown]')."""
    markdown, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith("# %%"):
            inside = "[markdown]" in line
        elif inside and (line.startswith("# ") or line == "#"):
            markdown.append(line[2:])
    # The JupyterLab terminal, and a notebook's `!` lines, start in the kit's folder.
    return from_markdown("\n".join(markdown), f"lessons/src/{path.name}")


def from_starter(path: Path) -> list[Printed]:
    """A starter's 'Try it:' and 'Grade it:' commands, typed in the exercise's folder."""
    lines, found = path.read_text().splitlines(), []
    where, cwd = str(path.relative_to(ROOT)), str(path.parent.relative_to(ROOT))
    for i, line in enumerate(lines):
        m = re.match(r"^(Try it|Grade it)\b[^:]*:\s*(.*)$", line)
        if not m:
            continue
        if m.group(2):  # on the line, and maybe on the lines below, aligned with it
            column, aside = line.index(m.group(2)), 0
            for more in [line, *lines[i + 1:]]:
                if more is not line and (more[:column].strip() or not more[column:].strip()):
                    break
                text = more[column:].strip()
                if aside or text.startswith("("):  # "(inside: ...)": a remark, over some lines
                    aside += text.count("(") - text.count(")")
                    continue
                command = re.sub(r"\s{2,}\(.*$", "", text).strip()
                if command:
                    found.append(Printed(where, cwd, command))
        else:  # an indented block after a blank line: one script
            block = []
            for more in lines[i + 2:]:
                if not more.startswith("    "):
                    break
                if not more.strip().startswith("("):
                    block.append(more[4:])
            found.append(Printed(where, cwd, "\n".join(block)))
    return found


def printed_commands() -> list[Printed]:
    found = from_markdown((ROOT / "README.md").read_text(), "README.md")
    found += from_markdown((ROOT / "lessons" / "README.md").read_text(), "lessons/README.md")
    for src in sorted((ROOT / "lessons" / "src").glob("*.py")):
        found += from_lesson_source(src)
    for starter in sorted((ROOT / "exercises").glob("*/solution")):
        found += from_starter(starter)
    return list(dict.fromkeys(found))


def elsewhere(command: Printed) -> str | None:
    return next((why for pattern, why in ELSEWHERE.items() if re.search(pattern, command.text)), None)


def once_each(commands: list[Printed]) -> list[Printed]:
    """One run per command typed in one folder; its `where` names every place that prints it.

    `sudo grader check container` is printed in four lessons and a starter:
    typed in the same folder it is the same run, and a grading is slow on
    an emulated CPU (the lab VM in CI).
    """
    places: dict[tuple[str, str], list[str]] = {}
    for c in commands:
        places.setdefault((c.cwd, c.text), []).append(c.where)
    return [Printed(", ".join(where), cwd, text) for (cwd, text), where in places.items()]


COMMANDS = printed_commands()
RUN_HERE = once_each([c for c in COMMANDS if not elsewhere(c)])


# Running --------------------------------------------------------------------------

@dataclass
class Machine:
    """What the namespaces of a run are given: /usr/local/bin, placeholders, the kit."""
    root_bin: Path      # /usr/local/bin for root: `make commands` links to this checkout
    student_bin: Path   # /usr/local/bin for the student: links into the readable kit
    kit: object         # the readable kit (lessons/kitcopy.py)
    uid: int
    workspace: Path     # DIR of `grader check --student DIR`: uts solved
    klass: Path         # DIR of `grader check --class DIR`: two students
    rootfs: Path        # ROOTFS: a busybox tree
    top: Path           # the folder that holds them


@pytest.fixture(scope="module")
def machine(unprivileged) -> Machine:
    top = Path(tempfile.mkdtemp(prefix="nslab-printed-"))
    top.chmod(0o755)  # the student reaches ROOTFS
    root_bin, student_bin = top / "root-bin", top / "student-bin"
    root_bin.mkdir()
    student_bin.mkdir()
    venv = os.path.relpath(VENV, ROOT)
    made = subprocess.run(["make", "--no-print-directory", "-o", f"{venv}/.installed", "commands",
                           f"BINDIR={root_bin}", f"VENV={venv}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stdout + made.stderr
    for name in ("labkit", "grader"):
        (student_bin / name).symlink_to(unprivileged.kit.bin / name)
    workspace = top / "workspace"
    (workspace / "uts").mkdir(parents=True)
    shutil.copy2(ROOT / "solutions" / "uts" / "solution", workspace / "uts" / "solution")
    klass = top / "class"
    for student in ("ada", "linus"):
        shutil.copytree(workspace, klass / student)
    from labkit.jail import build_busybox_rootfs
    rootfs = top / "rootfs"
    build_busybox_rootfs(str(rootfs))
    for path in [rootfs, *rootfs.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o555 if path.is_dir() else path.stat().st_mode | 0o444)
    yield Machine(root_bin, student_bin, unprivileged.kit, unprivileged.uid, workspace, klass, rootfs, top)
    shutil.rmtree(top)


def with_placeholders(text: str, m: Machine) -> str:
    """The student's values for what a command leaves to them (DIR, PID, ROOTFS, COMMAND)."""
    dir_ = m.klass if "--class" in text else m.workspace
    text = re.sub(r"\bDIR\b", str(dir_), text)
    text = re.sub(r"\bROOTFS\b|/path/to/rootfs", str(m.rootfs), text)
    text = re.sub(r"\bPID\b", "$PID", text)  # a process of the run's own, started below
    return re.sub(r"^labkit COMMAND --help$", "labkit run --help", text)


def run_printed(command: Printed, m: Machine, as_student: bool = False, solved: bool = False,
                timeout: float = 240) -> subprocess.CompletedProcess:
    """Run COMMAND with bash, literally, in namespaces of its own.

    SOLVED binds the reference solutions' folders over the starters' first
    (in this run's mount namespace only), as a student's finished work.  $PID is a
    process of the run's own, for the commands that name one.
    """
    kit = m.kit.root if as_student else ROOT
    setup = ["mount --make-rprivate /",
             f"mount --bind {m.student_bin if as_student else m.root_bin} /usr/local/bin"]
    if not as_student:  # a /tmp of its own for what the command writes there
        setup += ["mount --rbind /tmp /mnt", "mount -t tmpfs tmpfs /tmp"]
        for keep in (ROOT, m.top):  # the kit (cloned to /tmp/...?) and the placeholders stay
            if keep.is_relative_to("/tmp"):
                setup += [f"mkdir -p {keep}", f"mount --bind /mnt/{keep.relative_to('/tmp')} {keep}"]
    if solved:
        setup += [f"mount --bind {ROOT}/solutions/{ex.name} {kit}/exercises/{ex.name}"
                  for ex in sorted((ROOT / "exercises").iterdir()) if (ROOT / "solutions" / ex.name).is_dir()]
    shell = ["bash", "-c", with_placeholders(command.text, m)]
    if as_student:
        shell = ["setpriv", f"--reuid={m.uid}", f"--regid={m.uid}", "--clear-groups", "--inh-caps=-all",
                 *shell]
    script = "\n".join([*setup, "sleep 60 & export PID=$!", f"cd {shlex.quote(f'{kit}/{command.cwd}')}",
                        shlex.join(shell), "status=$?", "kill $PID", "exit $status"])
    env = {"PATH": STUDENT_PATH if as_student else f"/usr/local/sbin:{STUDENT_PATH}:/usr/sbin:/sbin",
           "HOME": "/tmp" if as_student else "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
    return subprocess.run(["unshare", "--mount", "--uts", "--ipc", "--", "bash", "-c", script],
                          env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def missing_exercise(command: Printed) -> str | None:
    """The exercise a command is about, if the grader does not know it yet (no starter in exercises/)."""
    name = re.search(r"grader check (\w+)$|exercises/(\w+)/solution", command.text)
    name = name and (name.group(1) or name.group(2))
    if name and not (ROOT / "exercises" / name).is_dir():
        return name
    return None


def worked(result: subprocess.CompletedProcess) -> str:
    """'' if the command ran as a command (found, executable, no traceback), else why not."""
    out = result.stdout + result.stderr
    if result.returncode in (126, 127) or "command not found" in out or "No such file" in out:
        return f"not found or not executable (exit {result.returncode})"
    if "Traceback" in out:
        return "a traceback"
    return ""


def report(command: Printed, result: subprocess.CompletedProcess) -> str:
    return f"{command}\nexit {result.returncode}\n{(result.stdout + result.stderr)[-3000:]}"


# The collection -------------------------------------------------------------------

def test_the_commands_are_found_where_they_are_printed():
    texts = [c.text for c in COMMANDS]
    assert "sudo grader check uts" in texts and "sudo grader list" in texts
    for starter in sorted((ROOT / "exercises").glob("*/solution")):
        grade = f"sudo grader check {starter.parent.name}"
        assert any(c.text == grade and c.where.startswith("exercises/") for c in COMMANDS), grade
    assert any(c.where.startswith("lessons/src/") and c.text == "sudo grader check uts" for c in COMMANDS)
    assert any(c.text.startswith("labkit run") for c in COMMANDS)


def test_the_printed_commands_name_no_virtualenv_path():
    # `.venv/bin/grader` works only from the kit's folder and not through sudo's PATH.
    assert not [str(c) for c in COMMANDS if re.search(r"\.venv/bin/(grader|labkit)", c.text)]


# Running them ---------------------------------------------------------------------

@pytest.mark.timeout(600)
@pytest.mark.parametrize("command", RUN_HERE, ids=str)
def test_printed_command_works_as_root(command, machine):
    result = run_printed(command, machine)
    if name := missing_exercise(command):
        # A contract whose starter and checks are still to come: the grader says
        # so clearly, and lessons/README.md marks the exercise (*).
        if "grader check" in command.text:
            assert result.returncode == 2 and f"unknown exercise {name}" in result.stderr, \
                report(command, result)
        pytest.skip(f"exercise {name} has no starter in exercises/ yet")
    assert not worked(result), worked(result) + "\n" + report(command, result)
    if "grader check" in command.text and "--student" not in command.text:
        # The starters are not done: the grader grades them and says what is left.
        assert result.returncode == 1 and "TODO" in result.stdout, report(command, result)
    elif "solution" in command.text:
        # Trying a starter by hand: it runs, and says it is not done.
        assert result.returncode == 1 and "TODO" in result.stderr, report(command, result)
    else:
        assert result.returncode == 0, report(command, result)


SOLVED = [c for c in RUN_HERE if re.search(r"solution|grader check \w+$", c.text) and not missing_exercise(c)]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("command", SOLVED, ids=str)
def test_printed_command_works_on_a_finished_solution(command, machine):
    result = run_printed(command, machine, solved=True)
    assert not worked(result) and "TODO" not in result.stdout + result.stderr, report(command, result)
    assert result.returncode == 0, report(command, result)
    if grade := re.search(r"grader check (\w+)$", command.text):
        assert re.search(rf"^{grade.group(1)}: (\d+)/\1$", result.stdout, re.M), report(command, result)
    if "solution box hostname" in command.text:
        assert result.stdout.splitlines()[0] == "box", report(command, result)


# Printed without sudo: a student types them as themself.  (`labkit enter PID`
# joins a process of one's own; that as a normal user is tests/test_rootless.py's.)
STUDENT = [c for c in RUN_HERE if c.text.startswith("labkit ") and "PID" not in c.text]


@pytest.mark.rootless
@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", STUDENT, ids=str)
def test_printed_command_works_as_the_student(command, machine):
    result = run_printed(command, machine, as_student=True)
    assert not worked(result), worked(result) + "\n" + report(command, result)
    assert result.returncode == 0, report(command, result)


def test_labkit_run_prints_the_hostname_it_gives_as_root_and_as_the_student(machine):
    command = next(c for c in STUDENT if c.text == "labkit run -u --hostname box hostname")
    for as_student in (False, True):
        result = run_printed(command, machine, as_student=as_student)
        assert result.stdout == "box\n", report(command, result)


# The grader's hints -----------------------------------------------------------------

BREAKAGES = {
    # what a student gets wrong: (how to break the file, where the hint's command is typed)
    "not executable": (lambda f: f.chmod(0o644), "."),
    "Windows line endings": (lambda f: f.write_bytes(f.read_bytes().replace(b"\n", b"\r\n")), "uts"),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mistake", BREAKAGES)
def test_the_command_a_grader_hint_prints_fixes_what_it_names(mistake, tmp_path):
    # The hint's command, typed as printed in the workspace folder (or the
    # exercise's), turns a broken copy of the reference solution into full marks.
    breaks, typed_in = BREAKAGES[mistake]
    workspace = tmp_path / "workspace"
    (workspace / "uts").mkdir(parents=True)
    solution = workspace / "uts" / "solution"
    shutil.copy2(ROOT / "solutions" / "uts" / "solution", solution)
    breaks(solution)

    def grade() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "grader", "check", "uts", "--student", str(workspace)],
                              capture_output=True, text=True, timeout=240)

    before = grade()
    hint = re.search(r"hint:\s+(?:[a-z ]+: )?(chmod \S+ \S+|sed -i '[^']*' \S+)", before.stdout)
    assert before.returncode == 1 and hint, before.stdout + before.stderr
    typed = subprocess.run(["bash", "-c", hint.group(1)], cwd=workspace / typed_in, capture_output=True,
                           text=True, timeout=30)
    assert typed.returncode == 0, typed.stderr
    after = grade()
    assert after.returncode == 0 and re.search(r"^uts: (\d+)/\1$", after.stdout, re.M), after.stdout
