"""Everything the grader runs, loaded before the first solution does (issue 9).

A solution is root and hostile.  Were it ever to reach the kit's files, any
module the grader imported after it ran would be the solution's code, and
the report the solution's verdict (a wrapper appended to grader/report.py
that marks every check passed was enough once).  So `grader check` and
`grader selftest` call `preload()` before the first sandbox starts: every
module of the grader (the exercises, the report formats), and whatever the
report writers import only when they first run (rich draws its tables with
Unicode width tables it loads on first use; csv, xml.etree and json load C
helpers).  The writers are run once on a made-up report into a string, so
nothing is left for them to import when the real report is written from
the results the grader holds.

tests/test_grader_preload.py proves it: an import hook records every module
imported after the first sandbox started, for every format.
"""

from __future__ import annotations

import importlib
import io
import json
import pkgutil

import grader

from .engine import CheckResult, ExerciseResult, Report
from .feedback import Status


def preload() -> None:
    """Import every grader module, and run each report writer once on a made-up report."""
    for info in pkgutil.walk_packages(grader.__path__, grader.__name__ + "."):
        if not info.name.endswith(".__main__"):  # `python -m grader`: importing it runs the grader
            importlib.import_module(info.name)
    from . import report as fmt

    dummy = Report("preload", [ExerciseResult("uts", "a title ÿ 字", [
        CheckResult("ok", "passed", Status.PASSED, 1, 1, ""),
        CheckResult("no", "failed", Status.FAILED, 0, 2, "expected ÿ 字\nseen", "$ transcript\n")])])
    out = io.StringIO()
    for rich in (False, True):
        fmt.print_text(dummy, out, rich)
        fmt.print_class_text([dummy], ["uts"], out, rich)
    json.dumps(fmt.to_json(dummy), indent=2)
    json.dumps(fmt.class_json([dummy]), indent=2)
    json.dumps(fmt.to_gradescope(dummy), indent=2)
    fmt.to_github_classroom(dummy)
    fmt.to_junit([dummy])
    fmt.to_csv([dummy], ["uts"])
    # The progress bar (cli.Progress, on a terminal) draws from a thread while solutions run;
    # selftest prints its table with labkit.output.
    for name in ("rich.console", "rich.progress", "rich.live", "rich.live_render", "rich.control",
                 "labkit.output"):
        importlib.import_module(name)
