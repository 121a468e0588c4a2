"""Command lines read the way util-linux reads them: getopt_long(3).

``labkit run``, ``labkit enter`` and ``labkit ls`` take the command lines of
unshare(1), nsenter(1) and lsns(8), so they must also *read* them as those
tools do.  util-linux parses with getopt_long(3), and three of its habits
matter to a user:

* **Options end at COMMAND.**  unshare and nsenter give getopt an option
  string that starts with "+" (POSIX mode): the first argument that is not an
  option is the command, and everything after it belongs to the command.
  ``unshare -r id -u`` runs ``id -u``.  ``--`` may end the options too, but
  nobody has to type it.  lsns has no command, and lets options and its NSID
  argument come in any order (GNU mode, ``permute=True`` here).
* **Optional arguments stick to their option.**  ``--uts=FILE`` persists the
  namespace to FILE, but in ``--uts FILE`` FILE is the command; ``-Tparent``
  is a tree, ``-T parent`` is -T and a NSID.
* **Long options may be shortened** to any unique prefix: ``--map-root`` is
  ``--map-root-user``, ``--prop`` is ``--propagation``.

Each command keeps its options in a table of Option rows, each beside the
system call or file it maps to; that table is also its --help.

See getopt(3), getopt_long(3), and util-linux's sys-utils/unshare.c,
nsenter.c and lsns.c.
"""

from __future__ import annotations

from collections.abc import Sequence

NONE, REQUIRED, OPTIONAL = "", "required", "optional"  # getopt_long's has_arg


class UsageError(ValueError):
    """A command line that the table does not accept, in getopt's words."""


class Option:
    """One row of an option table (a plain class: dataclasses would cost every start 20 ms)."""

    __slots__ = ("short", "long", "arg", "metavar", "help", "maps_to")

    def __init__(self, short: str, long: str, arg: str, metavar: str, help: str,
                 maps_to: str = "") -> None:
        self.short = short  # "u", or "" for a long option only
        self.long = long  # "uts", or "" for a short option only
        self.arg = arg  # NONE, REQUIRED or OPTIONAL
        self.metavar = metavar  # "<file>": how --help shows the argument
        self.help = help  # util-linux's --help text
        self.maps_to = maps_to  # the system call or file behind it

    @property
    def name(self) -> str:
        """The key the parser reports it under: the long name, else the letter."""
        return self.long or self.short

    def spelling(self) -> str:
        """` -u, --uts[=<file>]` as --help writes it."""
        arg = {NONE: "", REQUIRED: f" {self.metavar}", OPTIONAL: f"[={self.metavar}]"}[self.arg]
        if self.short and self.long:
            return f" -{self.short}, --{self.long}{arg}"
        if self.short:
            return f" -{self.short}{arg.replace('[=', '[')}"
        return f"     --{self.long}{arg}"


def parse(argv: Sequence[str], table: Sequence[Option], *,
          permute: bool = False) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Split ARGV into ([(option name, argument or None), ...], the other arguments).

    Without PERMUTE the first non-option ends the options (getopt's "+"); with
    it, non-options are collected wherever they stand (lsns).  "--" always
    ends the options.  Raises UsageError with getopt's message.
    """
    shorts = {o.short: o for o in table if o.short}
    longs = {o.long: o for o in table if o.long}
    found: list[tuple[str, str | None]] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word == "--":
            rest += argv[i:]
            break
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            option = _long_option(name, longs)
            if option.arg == NONE:
                if eq:
                    raise UsageError(f"option '--{option.long}' doesn't allow an argument")
                value = None
            elif option.arg == OPTIONAL:
                value = value if eq else None  # never the next word: that is the command
            elif not eq:
                if i == len(argv):
                    raise UsageError(f"option '--{option.long}' requires an argument")
                value, i = argv[i], i + 1
            found.append((option.name, value))
            continue
        if word.startswith("-") and word != "-":
            j = 1
            while j < len(word):
                letter = word[j]
                j += 1
                option = shorts.get(letter)
                if option is None:
                    raise UsageError(f"invalid option -- '{letter}'")
                if option.arg == NONE:
                    found.append((option.name, None))
                    continue
                attached = word[j:]
                if option.arg == OPTIONAL:
                    found.append((option.name, attached or None))
                elif attached:
                    found.append((option.name, attached))
                elif i < len(argv):
                    found.append((option.name, argv[i]))
                    i += 1
                else:
                    raise UsageError(f"option requires an argument -- '{letter}'")
                break
            continue
        rest.append(word)
        if not permute:
            rest += argv[i:]
            break
    return found, rest


def _long_option(name: str, longs: dict[str, Option]) -> Option:
    """The option NAME stands for: itself, or the only one it is a prefix of."""
    if name in longs:
        return longs[name]
    candidates = [o for long, o in longs.items() if long.startswith(name)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UsageError(f"unrecognized option '--{name}'")
    raise UsageError(f"option '--{name}' is ambiguous; possibilities: "
                     + " ".join(f"'--{o.long}'" for o in candidates))


def help_text(usage: str, about: str, sections: Sequence[tuple[str, Sequence[Option]]],
              epilog: str = "") -> str:
    """--help in util-linux's layout, with a third column: what each option maps to.

    A spelling too long for its column gets a line of its own, as in util-linux.
    """
    lines = [f"usage: {usage}", "", about, ""]
    for title, table in sections:
        if title:
            lines.append(f"{title}:")
        for o in table:
            spelling = o.spelling()
            if len(spelling) > HELP_COLUMN - 1:
                lines.append(spelling)
                spelling = ""
            line = spelling.ljust(HELP_COLUMN) + o.help
            if o.maps_to:
                line = line.ljust(MAPS_TO_COLUMN) + "  " + o.maps_to
            lines.append(line.rstrip())
        lines.append("")
    if epilog:
        lines.append(epilog)
    return "\n".join(lines).rstrip() + "\n"


HELP_COLUMN, MAPS_TO_COLUMN = 28, 86
