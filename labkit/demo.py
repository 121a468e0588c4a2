"""Play a lesson in the terminal, for a talk: ``labkit demo LESSON``.

A demo is a short script of shell commands, one per lesson, in
``lessons/demos/NN-name.demo``.  Each step shows its command, types it into
a shell, shows the output, and waits for Enter before the next (``--auto``
goes on by itself).  The shells are tmux(1) panes side by side, so that a
lesson that needs two shells at once can show them: in the UTS demo, sh1
keeps its hostname while sh2 renames a namespace of its own, and sh3 joins
sh2's namespace with nsenter(1).

The script format, one line each::

    title: The UTS namespace: two shells, two hostnames
    panes: sh1 sh2 sh3          the shells, left to right
    needs: root                 refuse to start without root
    > text                      said before the next step
    sh2# unshare --uts sh       typed into pane sh2, then Enter
    check: sh2 has a new uts namespace
    sh3# nsenter --target {pid:sh2} --uts sh

``{pid:sh2}`` is the PID of the shell that now reads sh2's commands (the
one that ``unshare --uts sh`` started).  ``check:`` stops the demo unless
that shell is in a namespace other than ours: it stands before every step
that would otherwise change this machine (``hostname bizarro`` typed into a
shell that failed to unshare would rename the machine).

How it runs.  The tmux server has a socket of its own (``tmux -L
nslab-demo-PID``) and is killed at the end, so nothing is left behind.  On
a terminal, a narrator pane on top shows the steps and reads Enter, and
``labkit demo`` attaches the terminal to the session.  Without a terminal
(``--auto`` in a script or a test) the narrator is this process: it prints
the steps and, at the end, what each pane shows.

See tmux(1), unshare(1), nsenter(1), and lessons/README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .namespace import Namespace
from .nstypes import lookup

DEMOS = Path(__file__).resolve().parent.parent / "lessons" / "demos"
STEP_TIMEOUT = 30.0  # seconds for one command to give its prompt back
EXIT_USAGE = 2
PID_FIELD = re.compile(r"\{pid:(\w+)\}")  # in a command: the PID of the shell reading that pane


class DemoError(Exception):
    """A demo that cannot start or go on, with the reason for the presenter."""


# The script ----------------------------------------------------------------------

@dataclass
class Step:
    kind: str  # "say", "run" or "check"
    text: str  # what to say, the command, or the namespace type to check
    pane: str = ""
    line: int = 0


@dataclass
class Script:
    path: Path
    title: str = ""
    panes: list[str] = field(default_factory=list)
    needs_root: bool = False
    steps: list[Step] = field(default_factory=list)

    @property
    def commands(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "run"]


def parse(path: Path) -> Script:
    """Read a demo script; a line it cannot read is a DemoError naming file and line."""
    script = Script(path)
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        where = f"{path}:{number}"
        if not line or line.startswith("#"):
            continue
        if m := re.fullmatch(r"(title|panes|needs):\s*(.*)", line):
            key, value = m[1], m[2]
            if key == "title":
                script.title = value
            elif key == "panes":
                script.panes = value.split()
            elif value != "root":
                raise DemoError(f"{where}: 'needs:' knows only 'root'")
            else:
                script.needs_root = True
        elif line.startswith(">"):
            script.steps.append(Step("say", line[1:].strip(), line=number))
        elif m := re.fullmatch(r"check:\s*(\w+) has a new (\w+) namespace", line):
            try:
                nstype = lookup(m[2]).name
            except ValueError as e:
                raise DemoError(f"{where}: {e}") from None
            script.steps.append(_in_a_pane(Step("check", nstype, m[1], number), script, where))
        elif m := re.fullmatch(r"(\w+)[#$] (.+)", line):
            script.steps.append(_in_a_pane(Step("run", m[2], m[1], number), script, where))
        else:
            raise DemoError(f"{where}: expected 'PANE# command', '> text', 'check: ...', "
                            f"or title:/panes:/needs:, not {line!r}")
    if not script.panes or not script.commands:
        raise DemoError(f"{path}: a demo needs a 'panes:' line and at least one command")
    return script


def _in_a_pane(step: Step, script: Script, where: str) -> Step:
    """STEP, if the panes it names (its own and any {pid:PANE}) were declared."""
    for pane in [step.pane, *PID_FIELD.findall(step.text)]:
        if pane not in script.panes:
            raise DemoError(f"{where}: no pane {pane!r} (panes: {' '.join(script.panes) or 'none'})")
    return step


def find(lesson: str) -> Path:
    """The script for LESSON: a file, or a name in lessons/demos ("uts", "02", "02-uts")."""
    if lesson.endswith(".demo") or os.sep in lesson:
        if not os.path.isfile(lesson):
            raise DemoError(f"no demo file {lesson}")
        return Path(lesson)
    for path in sorted(DEMOS.glob("*.demo")):
        number, _, name = path.stem.partition("-")
        if lesson in (path.stem, number, name):
            return path
    raise DemoError(f"no demo for {lesson!r}; there are: {', '.join(available()) or 'none'} "
                    f"(in {DEMOS})")


def available() -> list[str]:
    return [p.stem for p in sorted(DEMOS.glob("*.demo"))]


# The panes: a tmux server of our own -----------------------------------------------

class Tmux:
    """tmux(1) on its own socket (-L NAME), so that we never touch the user's sessions."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self.panes: dict[str, str] = {}  # our name -> tmux's pane id (%3)
        self.socket_path = ""  # the server's socket file, known once it runs

    def __call__(self, *args: str) -> str:
        # -f /dev/null: the user's ~/.tmux.conf could change keys, prompts and layout.
        result = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                                capture_output=True, text=True, timeout=STEP_TIMEOUT)
        if result.returncode != 0:
            raise DemoError(f"tmux {' '.join(args[:2])}: {result.stderr.strip()}")
        return result.stdout

    def start(self, names: list[str], width: int = 200, height: int = 50) -> None:
        """A detached session with one shell pane per name, side by side."""
        for i, name in enumerate(names):
            # PS1 and PATH through env(1): tmux drops or overrides both when given
            # with -e.  Exported, PS1 reaches the shells started inside (unshare ... sh).
            shell = ["-c", os.getcwd(), "-P", "-F", "#{pane_id}",
                     shlex.join(["env", f"PS1={name}# ", f"PATH={_path()}", "sh"])]
            if i == 0:
                pane = self("new-session", "-d", "-s", "demo", "-x", str(width), "-y", str(height), *shell)
                self.socket_path = self("display-message", "-p", "#{socket_path}").strip()
            else:
                pane = self("split-window", "-d", "-h", "-t", "demo", *shell)
            self.panes[name] = pane.strip()
            self("select-pane", "-t", self.panes[name], "-T", name)
        self("select-layout", "-t", "demo", "even-horizontal")
        for option in (("pane-border-status", "top"), ("pane-border-format", " #{pane_title} "),
                       ("status", "off")):
            self("set-option", "-g", *option)
        for name in names:
            self.wait_for_prompt(name, 0)

    def text(self, name: str) -> str:
        """Everything pane NAME shows, scrollback included, as a terminal would."""
        return self("capture-pane", "-p", "-J", "-S", "-", "-t", self.panes[name]).rstrip("\n")

    def prompts(self, name: str) -> int:
        return sum(1 for line in self.text(name).splitlines() if line.startswith(f"{name}#"))

    def wait_for_prompt(self, name: str, seen: int, timeout: float = STEP_TIMEOUT) -> None:
        """Wait until pane NAME shows more than SEEN prompts and waits at the last one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.text(name).splitlines()
            if lines and sum(line.startswith(f"{name}#") for line in lines) > seen \
                    and lines[-1].rstrip() == f"{name}#":
                return
            time.sleep(0.05)
        raise DemoError(f"{name}: no prompt after {timeout:.0f} s (a command waiting for input?)")

    def type(self, name: str, command: str) -> None:
        """Type COMMAND into pane NAME and press Enter, then wait for the next prompt."""
        seen = self.prompts(name)
        self("send-keys", "-t", self.panes[name], "-l", command)  # -l: literally, "Enter" is no key
        self("send-keys", "-t", self.panes[name], "Enter")
        self.wait_for_prompt(name, seen)

    def shell_pid(self, name: str) -> int:
        """The shell that now reads pane NAME's commands: the pane's last descendant.

        After ``unshare --uts sh`` that is the new shell (unshare(1) became it
        with execve), the child of the pane's first shell.
        """
        pid = int(self("display-message", "-p", "-t", self.panes[name], "#{pane_pid}"))
        while children := _children(pid):
            pid = children[-1]
        return pid

    def kill(self) -> None:
        """End the server and every process in its panes (they get SIGHUP), and remove the socket."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=STEP_TIMEOUT)
        if self.socket_path:  # tmux leaves the file behind
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass


def _path() -> str:
    """PATH for the panes, with this Python's bin directory first (the labkit command)."""
    return os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "/usr/bin:/bin")])


def _children(pid: int) -> list[int]:
    """PID's children, oldest first (read from /proc/*/stat, as ps(1) does)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # field 4, ppid; field 22, start time
            found.append((int(fields[19]), int(entry)))
    return [p for _, p in sorted(found)]


# Playing ----------------------------------------------------------------------------

class Narrator:
    """Shows the steps and, unless AUTO, waits for Enter between them."""

    def __init__(self, auto: bool, delay: float, stream=None) -> None:
        from rich.console import Console

        self.auto, self.delay = auto, delay
        self.console = Console(file=stream or sys.stdout, highlight=False, soft_wrap=True)

    def say(self, text: str, style: str = "") -> None:
        from rich.markup import escape

        self.console.print(f"[{style}]{escape(text)}[/]" if style else escape(text))

    def before(self, number: int, total: int, pane: str, command: str) -> None:
        from rich.markup import escape

        self.console.print(f"[dim]\\[{number}/{total}][/] [bold cyan]{escape(pane)}#[/] "
                           f"[bold]{escape(command)}[/]", end="" if not self.auto else "\n")
        if not self.auto:
            input("   [Enter]")

    def after(self) -> None:
        if self.auto:
            time.sleep(self.delay)


def play(script: Script, tmux: Tmux, narrator: Narrator) -> None:
    """Run every step of SCRIPT in TMUX's panes; a failed check raises DemoError."""
    narrator.say(script.title, "bold underline")
    total, number = len(script.commands), 0
    for step in script.steps:
        if step.kind == "say":
            narrator.say(step.text, "italic")
        elif step.kind == "check":
            require_new_namespace(tmux, step.pane, step.text)
        else:
            number += 1
            command = expand(step.text, tmux)
            narrator.before(number, total, step.pane, command)
            tmux.type(step.pane, command)
            narrator.after()


def expand(command: str, tmux: Tmux) -> str:
    """Replace each {pid:PANE} in COMMAND by the PID of the shell reading PANE's commands."""
    return PID_FIELD.sub(lambda m: str(tmux.shell_pid(m[1])), command)


def require_new_namespace(tmux: Tmux, pane: str, nstype: str) -> None:
    """Stop the demo unless pane PANE's shell is in a NSTYPE namespace other than ours."""
    pid = tmux.shell_pid(pane)
    theirs, ours = Namespace.of(pid, nstype), Namespace.of("self", nstype)
    if theirs == ours:
        raise DemoError(f"{pane} is still in this machine's {nstype} namespace ({ours}): the "
                        f"previous step did not make a new one. Stopping here, before a step "
                        f"that would change this machine.")


# The command ---------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `labkit demo`, defined once, in labkit.demo_args."""
    from .demo_args import add_demo_arguments
    add_demo_arguments(p)


def register(subparsers) -> argparse.ArgumentParser:
    """Add `labkit demo` to the labkit command's subparsers."""
    p = subparsers.add_parser("demo", help="play a lesson's demo in the terminal (tmux panes)",
                              description="Play a lesson for a talk: each step shows its command "
                              "and output and waits for Enter; --auto runs unattended.")
    add_arguments(p)
    return p


def demo_command(args: argparse.Namespace) -> int:
    """`labkit demo LESSON [--auto]`: 0 when the demo ran to its end."""
    try:
        if not args.lesson:
            print("demos:", ", ".join(available()) or "none", f"(in {DEMOS})")
            return EXIT_USAGE
        try:
            script = parse(find(args.lesson))
        except (OSError, UnicodeDecodeError) as e:
            raise DemoError(f"cannot read the demo: {e}") from None
        if script.needs_root and os.geteuid() != 0:
            raise DemoError(f"the {script.path.stem} demo types commands that need root "
                            "(unshare, nsenter, hostname): run it with sudo. The lesson's "
                            "notebook works without root.")
        if not shutil.which("tmux"):
            raise DemoError("tmux is not installed (apt-get install tmux)")
        on_terminal = sys.stdin.isatty() and sys.stdout.isatty()
        if not on_terminal and not args.auto:
            raise DemoError("without a terminal nobody can press Enter: add --auto")
    except DemoError as e:
        _error(str(e))
        return EXIT_USAGE
    tmux = Tmux(args.socket or f"nslab-demo-{os.getpid()}")
    try:
        if on_terminal:
            return _attached(script, tmux, args)
        return _headless(script, tmux, args)
    except DemoError as e:
        _error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        tmux.kill()


def _headless(script: Script, tmux: Tmux, args: argparse.Namespace) -> int:
    """Play with this process as the narrator; print what each pane shows at the end."""
    tmux.start(script.panes)
    try:
        play(script, tmux, Narrator(True, args.delay))
    finally:
        for name in script.panes:
            print(f"\n----- pane {name} -----\n{tmux.text(name)}")
    return 0


def _attached(script: Script, tmux: Tmux, args: argparse.Namespace) -> int:
    """Play in a narrator pane on top of the shells, with this terminal attached to tmux."""
    size = shutil.get_terminal_size()
    tmux.start(script.panes, size.columns, size.lines)
    with tempfile.NamedTemporaryFile("r", prefix="nslab-demo-") as status:
        narrate = [sys.executable, "-m", "labkit.demo", "--narrate", "--socket", tmux.socket,
                   "--status", status.name, "--delay", str(args.delay), str(script.path.resolve())]
        if args.auto:
            narrate.append("--auto")
        os.chmod(status.name, 0o600)
        labkit_dir = f"PYTHONPATH={Path(__file__).resolve().parent.parent}"  # labkit, even uninstalled
        pane = tmux("split-window", "-v", "-f", "-b", "-l", "8", "-t", "demo", "-P", "-F", "#{pane_id}",
                    shlex.join(["env", labkit_dir, *narrate]))
        tmux("select-pane", "-t", pane.strip(), "-T", "demo")
        # TMUX unset: a demo started inside tmux may still attach to its own server.
        subprocess.run(["tmux", "-L", tmux.socket, "attach", "-t", "demo"],
                       env={k: v for k, v in os.environ.items() if k != "TMUX"})
        result = status.read().split("\n", 1)
    if result[0] == "0":
        return 0
    _error(result[1] if len(result) > 1 else "the demo was closed before its end")
    return 1


def _narrate(args: argparse.Namespace) -> int:
    """The narrator pane's process: play, wait for a last Enter, close the session."""
    script = parse(Path(args.lesson))
    tmux = Tmux(args.socket)
    for line in tmux("list-panes", "-t", "demo", "-F", "#{pane_title} #{pane_id}").splitlines():
        title, pane = line.rsplit(" ", 1)
        if title in script.panes:
            tmux.panes[title] = pane
    narrator = Narrator(args.auto, args.delay)
    code, message = "0", ""
    try:
        play(script, tmux, narrator)
    except DemoError as e:
        code, message = "1", str(e)
        _error(message)
    with open(args.status, "w") as f:
        f.write(f"{code}\n{message}")
    if args.auto and code == "0":
        narrator.say("The end.", "bold")
        time.sleep(max(args.delay, 3.0))  # a moment to see the last step
    else:
        narrator.say("The end. Enter closes the demo.", "bold")
        input()
    tmux.kill()  # ends the session, and so `tmux attach` in demo_command
    return int(code)


def _error(message: str) -> None:
    from .output import error
    error(message)


def main(argv: list[str] | None = None) -> int:
    """`python -m labkit.demo`: the same as `labkit demo`, and the narrator pane's entry."""
    parser = argparse.ArgumentParser(prog="labkit demo", description="Play a lesson's demo.")
    add_arguments(parser)
    parser.add_argument("--narrate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--status", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.narrate:
        return _narrate(args)
    return demo_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
