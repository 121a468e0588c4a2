"""Tables and trees for the terminal: rich on a terminal, plain text in a pipe.

util-linux tools print aligned columns that scripts can cut(1); on a
terminal a student deserves colour and borders.  rich is imported only when
it is used, so that ``labkit flags`` in a script starts fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def is_terminal(stream=None) -> bool:
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "",
          stream=None) -> None:
    """Print ROWS under HEADERS: a rich table on a terminal, aligned text otherwise."""
    stream = stream or sys.stdout
    if is_terminal(stream):
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title or None, title_justify="left")
        for h in headers:
            t.add_column(h, overflow="fold")
        for row in rows:
            t.add_row(*(str(c) for c in row))
        Console(file=stream).print(t)
        return
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    if title:
        print(title, file=stream)
    for row in [list(headers), *cells]:
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
        print(line.rstrip(), file=stream)


def error(message: str, stream=None) -> None:
    """Print an error message for a person: red on a terminal."""
    stream = stream or sys.stderr
    if is_terminal(stream):
        from rich.console import Console
        from rich.markup import escape

        # No highlighting: the kernel's words stay as they are, only the prefix is red.
        Console(file=stream, highlight=False).print(f"[bold red]labkit:[/] {escape(message)}")
    else:
        print(f"labkit: {message}", file=stream)
