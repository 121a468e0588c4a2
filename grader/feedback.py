"""What a check tells a student when a solution does not meet the contract.

A check that finds a problem raises ``Fail``: what went wrong, what was
expected, what was seen, and a hint that names the concept (a man page, a
system call, an order of steps).  The status says what kind of problem it
is; the student sees it next to the check's title:

    failed    the solution ran and did something else than the contract says
    error     the solution could not run, or crashed (missing file, not
              executable, a Python traceback, a segmentation fault)
    timeout   the solution did not answer, or did not end, in time
    skipped   a check this one needs did not pass, so it was not run

``points`` lets a check give partial credit while failing.
"""

from __future__ import annotations

import enum
import re


class Status(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"


class Fail(Exception):
    """The solution did not do what the contract says."""

    status = Status.FAILED

    def __init__(self, what: str, *, expected: object = None, seen: object = None,
                 hint: str = "", points: float = 0) -> None:
        super().__init__(what)
        self.what, self.expected, self.seen, self.hint, self.points = what, expected, seen, hint, points

    def feedback(self) -> str:
        """The lines a student reads: what, expected, seen, hint."""
        lines = [self.what]
        if self.expected is not None:
            lines.append(f"expected: {printable(str(self.expected))}")
        if self.seen is not None:
            lines.append(f"seen:     {printable(str(self.seen))}")
        if self.hint:
            lines.append(f"hint:     {self.hint}")
        return "\n".join(lines)


class Timeout(Fail):
    """The solution did not answer, or did not end, within the time limit."""

    status = Status.TIMEOUT


class SolutionError(Fail):
    """The solution could not be run, or it crashed."""

    status = Status.ERROR


# Control characters other than newline and tab would move a student's
# cursor, change colours or ring bells: show them as escapes instead.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str, limit: int = 4000) -> str:
    """TEXT made safe for a terminal and a report: escapes for control characters, at most LIMIT."""
    text = text.replace("\r\n", "\n")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if len(text) > limit:
        half = limit // 2
        text = f"{text[:half]}\n[... {len(text) - limit} characters left out ...]\n{text[-half:]}"
    return text


def differences(before: dict | list, after: dict | list, limit: int = 6) -> str:
    """The first LIMIT entries added, removed or changed between two snapshots."""
    if isinstance(before, list):
        before, after = dict.fromkeys(before, ()), dict.fromkeys(after, ())
    lines = [f"+ {k}" for k in after if k not in before]
    lines += [f"- {k}" for k in before if k not in after]
    lines += [f"~ {k}" for k in before if k in after and before[k] != after[k]]
    more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n  ".join(lines[:limit]) + more

