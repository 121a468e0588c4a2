"""A copy of the kit and its virtualenv that any user can read.

The rootless tests, and `lessons/build.py --check --as-user UID`, run
labkit, the lessons and the commands as another user (uid 65534, or a
lesson's own).  That user must be able to read what it runs, and a checkout
need not be readable: Debian makes home folders with mode 0700, so
`git clone ... ~/nslab` puts the kit and its .venv where only their owner
(and root) can go.  So the test session (and build.py, when UID cannot
read the checkout) makes this copy in a fresh folder of /tmp, mode 0755, and
removes it at the end.

The virtualenv, compiled modules included, is copied file by file as hard
links where it can be (the same file system: instant, no space), as copies
elsewhere or where a file is not readable by others.  A virtualenv names its own folder in a few
places, which are rewritten in the copy, never in place (a hard link shares
the original's content): the scripts' #! lines, the .pth file of the
editable install, and the Jupyter kernel's kernel.json.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What a user runs of the kit: the code, the lessons, the starters, the references.
PARTS = ("labkit", "grader", "lessons", "exercises", "solutions", "bench", "pyproject.toml")


def readable_by_all(path: Path) -> bool:
    """Whether any user can reach PATH (x on every folder above it) and read it."""
    path = Path(path).resolve()
    if not os.stat(path).st_mode & stat.S_IROTH:
        return False
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [path, *path.parents] if p.is_dir())
JUNK = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.pyc", "out", "*.bin")


class ReadableKit:
    """ROOT's PARTS and its virtualenv, copied to a folder every user can read."""

    def __init__(self, venv: Path | None = None) -> None:
        self.venv_from = Path(venv or sys.prefix)
        self.root = Path(tempfile.mkdtemp(prefix="nslab-kit-"))
        self.root.chmod(0o755)
        self.venv = self.root / ".venv"
        self.python = str(self.venv / "bin" / "python")
        self.bin = self.venv / "bin"
        try:
            self._copy_parts()
            self._copy_venv()
            self._point_venv_here()
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _copy_parts(self) -> None:
        for part in PARTS:
            src = ROOT / part
            if src.is_dir():
                shutil.copytree(src, self.root / part, ignore=JUNK, symlinks=True)
            elif src.exists():
                shutil.copy2(src, self.root / part)
        for path in [self.root, *self.root.rglob("*")]:
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            path.chmod(0o755 if path.is_dir() or mode & stat.S_IXUSR else 0o644)

    def _copy_venv(self) -> None:
        same_fs = self.venv_from.stat().st_dev == self.root.stat().st_dev
        for here, dirs, files in os.walk(self.venv_from):
            here = Path(here)
            target = self.venv / here.relative_to(self.venv_from)
            target.mkdir(exist_ok=True)
            target.chmod(0o755)
            links = [d for d in dirs if (here / d).is_symlink()]  # lib64 -> lib
            # __pycache__ too: the other user cannot write one, and without
            # the compiled modules every Python it starts compiles IPython,
            # Jupyter and pytest from source (on the lab VM's emulated CPU,
            # that made a rootless lesson take twice as long as as root).
            # A .pyc is checked against its source's mtime and size, which a
            # hard link shares and copy2 keeps.
            dirs[:] = [d for d in dirs if d not in links]
            for name in files + links:
                self._copy_file(here / name, target / name, same_fs)

    def _copy_file(self, src: Path, dst: Path, same_fs: bool) -> None:
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)  # bin/python -> /usr/bin/python3: readable as is
            return
        mode = src.stat().st_mode
        if same_fs and mode & stat.S_IROTH:
            try:
                os.link(src, dst)
                return
            except OSError:  # EXDEV: one device, two mounts (a bind mount); EPERM: protected_hardlinks
                pass
        shutil.copy2(src, dst)
        dst.chmod(0o755 if mode & stat.S_IXUSR else 0o644)

    def _made_at(self) -> Path:
        """Where the virtualenv was made, as its pip's #! line names it.

        Usually where we see it; not when the checkout is seen through a bind
        mount (or was moved), and the copy must point away from both places.
        """
        first = (self.venv_from / "bin" / "pip").read_bytes().split(b"\n", 1)[0]
        if first.startswith(b"#!") and first.strip().endswith((b"/bin/python", b"/bin/python3")):
            return Path(os.fsdecode(first[2:].strip())).parent.parent
        return self.venv_from

    def _point_venv_here(self) -> None:
        made_at = self._made_at()
        venvs = {os.fsencode(v) for v in (self.venv_from, made_at)}
        roots = {os.fsencode(r) for r in (ROOT, made_at.parent)}
        new_venv, new_root = os.fsencode(self.venv), os.fsencode(self.root)

        def moved(content: bytes, olds: set[bytes], new: bytes) -> bytes:
            for old in sorted(olds, key=len, reverse=True):
                content = content.replace(old, new)
            return content

        for script in self.bin.iterdir():
            if script.is_file() and not script.is_symlink() and script.stat().st_size < 65536:
                content = script.read_bytes()
                if content.startswith(b"#!"):
                    self._rewrite(script, moved(content, venvs, new_venv))
        for pth in self.venv.glob("lib/python*/site-packages/*.pth"):
            self._rewrite(pth, moved(pth.read_bytes(), roots, new_root))
        for spec in self.venv.glob("share/jupyter/kernels/*/kernel.json"):
            data = json.loads(spec.read_text())
            data["argv"] = [os.fsdecode(moved(os.fsencode(a), venvs, new_venv)) for a in data["argv"]]
            self._rewrite(spec, json.dumps(data, indent=1).encode())

    @staticmethod
    def _rewrite(path: Path, content: bytes) -> None:
        """Put CONTENT in PATH as a new file: PATH may be a hard link to the original."""
        if content == path.read_bytes():
            return
        mode = path.stat().st_mode & 0o777 | 0o444
        fresh = path.with_name(path.name + ".new")
        fresh.write_bytes(content)
        fresh.chmod(mode)
        os.replace(fresh, path)
