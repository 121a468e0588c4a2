"""The lessons: each notebook, run afresh on the real kernel, shows what it stores.

nbval runs every code cell with the nslab Jupyter kernel and compares each
output with the one stored in the notebook, after lessons/sanitize.cfg has
replaced what differs between runs (inodes, PIDs, the kernel release).  It
runs in a UTS namespace whose hostname is the lab VM's, as lessons/build.py
arranges for authors too.  Lessons marked rootless run a second time as an
unprivileged user.  The Jupyter kernels are descendants of this test, so
conftest's leak check proves that a lesson leaves nothing behind.

The other tests hold the notebooks to the rules of lessons/README.md: built
from their source, a goal, a check-yourself section, the exercise's grader
command, no skipped cells, no namespace call in the kernel's own process.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager
from nbval.plugin import get_sanitize_patterns

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"

_spec = importlib.util.spec_from_file_location("lesson_build", LESSONS / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

NAMES = build.lesson_names()
ROOTLESS = [n for n in NAMES if build.read_source(n)[0]["rootless"]]
EXERCISES = ("uts", "escape", "jail", "pid1", "veth", "userns", "container", "timens")  # EXERCISES.md
# Calls that change the calling process's namespaces or what they hold.
NAMESPACE_CALLS = {"unshare", "setns", "sethostname", "setdomainname", "set_hostname",
                   "set_domainname", "mount", "umount", "pivot_root", "chroot"}


def notebook(name: str) -> dict:
    return json.loads(build.notebook_path(name).read_text())


def code_cells(name: str) -> list[dict]:
    return [c for c in notebook(name)["cells"] if c["cell_type"] == "code"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def nbval_report(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr)[-6000:]


# Running the lessons --------------------------------------------------------------

@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_shows_what_a_fresh_run_on_this_kernel_shows(name):
    result = build.check([name])
    assert result.returncode == 0, nbval_report(result)
    # One nbval test per code cell: none skipped, none missing.
    assert re.search(rf"\b{len(code_cells(name))} passed\b", result.stdout), nbval_report(result)


@pytest.mark.rootless
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ROOTLESS)
def test_rootless_notebook_shows_the_same_to_an_unprivileged_user(name, unprivileged):
    # The user runs the readable copy of the kit (the checkout may be in a 0700
    # home folder): its lessons, its labkit, its virtualenv and Jupyter kernel.
    kit = unprivileged.kit
    result = subprocess.run(
        [kit.python, str(kit.root / "lessons" / "build.py"), "--check", "--as-user", str(unprivileged.uid),
         name], capture_output=True, text=True, cwd=kit.root, timeout=900)
    assert result.returncode == 0, nbval_report(result)
    assert re.search(rf"\b{len(code_cells(name))} passed\b", result.stdout), nbval_report(result)


def test_the_printed_rootless_check_works_from_a_checkout_in_a_0700_home_folder(tmp_path):
    # lessons/README.md prints `sudo .venv/bin/python lessons/build.py --check --as-user 65534`.
    # Typed in a clone under a 0700 home folder, uid 65534 can read neither the kit
    # nor its .venv: build.py must check a readable copy instead.  The checkout is
    # bound into such a folder in a mount namespace of the test's own.
    home = tmp_path / "home"
    (home / "nslab").mkdir(parents=True)
    home.chmod(0o700)
    printed = "sudo .venv/bin/python lessons/build.py --check --as-user 65534 02-uts"
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'mount --bind "$0" "$1" && cd "$1" && {printed}', str(ROOT), str(home / "nslab")],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, nbval_report(result)
    assert "checking a readable copy of the kit" in result.stdout, nbval_report(result)
    assert re.search(rf"\b{len(code_cells('02-uts'))} passed\b", result.stdout), nbval_report(result)


# The notebooks as stored ------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_built_from_its_source(name):
    header, cells = build.read_source(name)
    stored = notebook(name)
    assert [(c["cell_type"], source(c)) for c in stored["cells"]] == \
        [(c["cell_type"], c["source"]) for c in cells], \
        f"lessons/{name}.ipynb differs from src/{name}.py: rebuild it with lessons/build.py {name}"
    meta = stored["metadata"]
    assert meta["kernelspec"]["name"] == "nslab"
    assert (meta["nslab"]["rootless"], meta["nslab"]["exercise"]) == (header["rootless"], header["exercise"])


@pytest.mark.parametrize("name", NAMES)
def test_stored_notebook_ran_top_to_bottom_without_errors(name):
    cells = code_cells(name)
    assert [c["execution_count"] for c in cells] == list(range(1, len(cells) + 1))
    for cell in cells:
        errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
        assert not errors, f"stored error in: {source(cell)[:80]!r}: {errors[0]['evalue']}"
        stderr = [o for o in cell["outputs"] if o.get("name") == "stderr"]
        assert not stderr, f"stored stderr in: {source(cell)[:80]!r}: {''.join(stderr[0]['text'])[:300]}"


@pytest.mark.parametrize("name", NAMES)
def test_lesson_has_a_goal_a_check_yourself_section_and_its_exercise(name):
    cells = notebook(name)["cells"]
    first = source(cells[0])
    assert cells[0]["cell_type"] == "markdown"
    assert re.match(rf"# {name[:2]} · \S", first) and "**Goal.**" in first, first[:200]
    markdown = [source(c) for c in cells if c["cell_type"] == "markdown"]
    check = [i for i, text in enumerate(markdown) if text.startswith("## Check yourself")]
    assert check, "no '## Check yourself' section"
    assert "<details>" in markdown[check[0]], "check-yourself questions come with answers in <details>"
    exercise = notebook(name)["metadata"]["nslab"]["exercise"]
    if exercise:
        assert exercise in EXERCISES
        after = "\n".join(markdown[check[0]:])
        assert f"grader check {exercise}" in after, f"no `grader check {exercise}` after the check yourself"


@pytest.mark.parametrize("name", [n for n in NAMES if build.read_source(n)[0]["exercise"]])
def test_a_lesson_whose_exercise_the_grader_knows_does_not_call_it_ungraded(name):
    from grader.exercises import all_exercises

    exercise = notebook(name)["metadata"]["nslab"]["exercise"]
    assert exercise in all_exercises(), f"the grader does not know {exercise!r}"
    markdown = "\n".join(source(c) for c in notebook(name)["cells"] if c["cell_type"] == "markdown")
    for stale in ("waits for a newer grader", "when it supports", "not graded yet"):
        assert stale not in markdown, stale
    assert f"sudo grader check {exercise}\n" in markdown


@pytest.mark.parametrize("name", NAMES)
def test_no_cell_is_skipped_or_has_its_output_ignored(name):
    for cell in code_cells(name):
        text = source(cell)
        tags = " ".join(cell["metadata"].get("tags", []))
        assert "NBVAL_SKIP" not in text and "nbval-skip" not in tags
        if "NBVAL_IGNORE_OUTPUT" in text or "nbval-ignore-output" in tags:
            assert "nondeterministic:" in text, f"ignored output without a reason: {text[:80]!r}"


@pytest.mark.parametrize("name", NAMES)
def test_no_cell_changes_the_namespaces_of_the_kernel_process(name):
    for cell in code_cells(name):
        tree = ast.parse(TransformerManager().transform_cell(source(cell)))
        for call in _calls_outside_functions(tree):
            pytest.fail(f"{name}: `{ast.unparse(call)}` would run in the Jupyter kernel's own process; "
                        "call it in a function that labkit.spawn/run runs in a child")


def _calls_outside_functions(tree: ast.AST):
    """Calls of NAMESPACE_CALLS that are not inside a def or lambda."""
    todo = [tree]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Call):
                func = child.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in NAMESPACE_CALLS:
                    yield child
            todo.append(child)


@pytest.mark.parametrize("name", NAMES)
def test_no_markdown_heading_hides_in_a_code_cell(name):
    # A source that forgets "# %% [markdown]" puts the next section's text in
    # the code cell above it, as comments: the student never sees the heading.
    for cell in code_cells(name):
        for line in source(cell).splitlines():
            assert not re.match(r"#\s*#{1,6} \S", line), \
                f"{name}: a markdown heading inside a code cell (a missing '# %% [markdown]'?): {line!r}"


def test_readme_lists_every_lesson_with_its_rootless_mark():
    readme = (LESSONS / "README.md").read_text()
    for name in NAMES:
        row = re.search(rf"^\| \[{name}\]\({name}\.ipynb\) \|.*$", readme, re.MULTILINE)
        assert row, f"lessons/README.md has no row for {name}"
        rootless = "yes" if name in ROOTLESS else "no"
        assert f"| {rootless} |" in row[0], f"README says otherwise about {name} being rootless"


# The build tool and the sanitizer ---------------------------------------------------------

def test_source_with_a_markdown_line_without_hash_is_refused_with_its_line(tmp_path):
    bad = tmp_path / "99-bad.py"
    bad.write_text("# rootless: yes\n\n# %% [markdown]\n# # 99 · Bad\nforgot the hash\n")
    with pytest.raises(build.LessonError, match=r"99-bad.py:5: a markdown line must start with '#'"):
        build.read_source(bad)


def test_source_header_and_cells_are_read_as_written(tmp_path):
    src = tmp_path / "98-ok.py"
    src.write_text("# Lesson 98.\n# rootless: no\n# exercise: jail\n\n"
                   "# %% [markdown]\n# # Title\n#\n# text\n\n"
                   "# %% tags=[\"raises-exception\"]\n1 / 0\n\n# %%\nx = 1\n")
    header, cells = build.read_source(src)
    assert header == {"rootless": False, "exercise": "jail", "uid": None}
    assert [(c["cell_type"], c["source"], c["tags"]) for c in cells] == [
        ("markdown", "# Title\n\ntext", []), ("code", "1 / 0", ["raises-exception"]), ("code", "x = 1", [])]


def sanitize(text: str) -> str:
    for regex, replace in get_sanitize_patterns(build.sanitize_rules(NAMES)):
        text = re.sub(regex, replace, text)
    return text


def test_sanitizer_hides_what_differs_between_runs():
    assert sanitize("uts:[4026532301]") == sanitize("uts:[4026531838]") == "uts:[NSINODE]"
    assert sanitize("sh3# nsenter --target 7253 --uts sh") == "sh3# nsenter --target PID --uts sh"
    assert sanitize("/proc/4242/fd/7") == "/proc/PID/fd/N"
    assert sanitize("bind mount /tmp/uts (seen by process 4242)") == "bind mount /tmp/uts (seen by process N)"
    assert sanitize("/proc/sys/user/max_uts_namespaces:96365") == "/proc/sys/user/max_uts_namespaces:N"
    assert sanitize(f"Linux vm {os.uname().release}") == "Linux vm KERNEL-RELEASE"
    svg = '<ellipse cx="40.3" cy="-90" rx="40.09" ry="18"/>'
    assert sanitize(svg) == '<ellipse cx="#" cy="#" rx="#" ry="#"/>'


def test_sanitizer_keeps_the_facts_a_lesson_shows():
    facts = ["same UTS namespace: False", "uts     0x04000000  CLONE_NEWUTS     2.6.19",
             "unshare(0x4c020000)                     = 0", "hostname bizarro", "processes in it: 2",
             "max_uts_namespaces of a new user namespace: 2147483647",
             "A namespace limit was reached: /proc/sys/user/max_uts_namespaces is 0 (the limits",
             "sh: 17: cannot create /proc/sys/kernel/osrelease: Permission denied", "mnt 2.4.19 3.8 5.6"]
    for fact in facts:
        assert sanitize(fact) == fact


# lessons/lab.py ---------------------------------------------------------------------------

@pytest.fixture
def lab():
    sys.path.insert(0, str(LESSONS))
    try:
        import lab
        yield lab
        lab.close_all()
    finally:
        sys.path.remove(str(LESSONS))


def ps_children(pid: int) -> list[int]:
    """PID's children as ps(1) lists them: a tool that does not share lab.py's code."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_shell_current_pid_names_the_inner_shell_of_a_pid_namespace_as_we_number_it(lab):
    sh = lab.Shell("sh")
    sh("unshare --pid --fork --mount-proc sh")
    assert sh.output("echo $$").strip() == "1"  # what the old `echo $$` answer would have named
    [unshare] = ps_children(sh.pid)
    [inner] = ps_children(unshare)
    assert sh.current_pid() == inner
    assert os.readlink(f"/proc/{inner}/ns/pid") != os.readlink("/proc/self/ns/pid")
    sh("exit")
    assert sh.current_pid() == sh.pid


def test_pid_tree_puts_each_namespace_below_its_parent_with_every_pid_of_a_process(lab):
    sh = lab.Shell("sh")
    sh("unshare --pid --fork --mount-proc sh")
    [unshare] = ps_children(sh.pid)
    [inner] = ps_children(unshare)
    tree = lab.pid_tree({sh.pid: "outer", inner: "inner"})
    ours, theirs = os.readlink("/proc/self/ns/pid"), os.readlink(f"/proc/{inner}/ns/pid")
    assert tree.text.splitlines() == [f"{ours}: outer (PID {sh.pid})",
                                      f"   {theirs}: inner (PID {inner} / 1)"]
    assert "level 1" in tree._repr_mimebundle_()["image/svg+xml"]
