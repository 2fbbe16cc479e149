"""The ``--help`` text of every command, rendered into ``docs/commands.md`` so the reference cannot drift.

``docs/commands.md`` holds one generated block per command (``record``, ``record recover``, ``replay``,
``kiwoom-tape`` and every subcommand of the ``kiwoom-tape`` group, found by walking the click groups, so a
new subcommand gets its block without any change here), each between two markers::

    <!-- help: kiwoom-tape sql -->
    ## `kiwoom-tape sql`
    ...the help text, verbatim, in a code block...
    <!-- /help: kiwoom-tape sql -->

Everything outside the markers is written by hand and kept as it is. ``--write`` rewrites the blocks in
place: a block of a command that no longer exists is removed, a new command's block goes before the block
of the command that follows it (in the order of the walk), or after the last block. ``--check`` exits 1,
naming the commands whose block differs from the code, with a diff. The help is rendered at a fixed width
(``WIDTH``, what a user sees on a terminal of 80 columns or more), so that the text does not depend on
the terminal that runs the generator.

A command reachable under two names (``record`` and ``kiwoom-tape record`` are one click command) is
rendered once, under its first name; the other name's block points to it.

    python -m kiwoom_tape.helpdoc --write    # after changing a command, its options or its docstring
    python -m kiwoom_tape.helpdoc --check    # what tests/test_docs_help.py checks
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from kiwoom_tape.cli import cli
from kiwoom_tape.relay_cli import record_command
from kiwoom_tape.replay.cli import replay_command

__all__ = ["DOC", "FIX", "WIDTH", "Entry", "entries", "main", "render", "stale", "update"]

WIDTH = 78
"""The width click wraps help to on any terminal of 80 columns or more (its ``max_content_width`` 80, minus 2),
so the page shows what a user sees, whatever terminal runs the generator."""

DOC = Path(__file__).resolve().parents[1] / "docs" / "commands.md"
FIX = "python -m kiwoom_tape.helpdoc --write"

ROOTS: tuple[tuple[str, click.Command], ...] = (
    ("record", record_command),
    ("replay", replay_command),
    ("kiwoom-tape", cli),
)
"""The console scripts of ``pyproject.toml`` ([project.scripts]), in the order the page shows them."""

_BLOCK = re.compile(r"^<!-- help: (?P<name>[^>\n]+?) -->\n(?P<body>.*?)^<!-- /help: (?P=name) -->\n?", re.M | re.S)


@dataclass(frozen=True)
class Entry:
    """One command as the page shows it: its full name (``kiwoom-tape sql``) and the block's markdown body."""

    name: str
    body: str

    def block(self) -> str:
        return f"<!-- help: {self.name} -->\n{self.body}<!-- /help: {self.name} -->\n"


def anchor(name: str) -> str:
    """The GitHub anchor of the heading ``## `name` `` (``kiwoom-tape sql`` -> ``kiwoom-tape-sql``)."""
    return re.sub(r"[^a-z0-9 _-]", "", name.lower()).replace(" ", "-")


def help_text(cmd: click.Command, ctx: click.Context) -> str:
    """``cmd --help`` as the user sees it (wrapped at ``WIDTH`` columns), without trailing blanks."""
    return "\n".join(line.rstrip() for line in cmd.get_help(ctx).splitlines()).strip("\n")


def _walk(name: str, cmd: click.Command, parent: click.Context | None) -> Iterator[tuple[str, click.Command, str]]:
    settings = {**cmd.context_settings, "terminal_width": WIDTH}
    ctx = click.Context(cmd, info_name=name.rsplit(" ", 1)[-1], parent=parent, **settings)
    yield name, cmd, help_text(cmd, ctx)
    if isinstance(cmd, click.Group):
        for sub in cmd.list_commands(ctx):
            subcmd = cmd.get_command(ctx, sub)
            if subcmd is not None and not subcmd.hidden:
                yield from _walk(f"{name} {sub}", subcmd, ctx)


def entries(roots: Sequence[tuple[str, click.Command]] = ROOTS) -> list[Entry]:
    """Every command reachable from ``roots``, in walk order (each group before its subcommands, sorted)."""
    out: list[Entry] = []
    first: dict[int, str] = {}
    for root_name, root in roots:
        for name, cmd, text in _walk(root_name, root, None):
            heading = f"## `{name}`\n\n"
            if id(cmd) in first:
                same = first[id(cmd)]
                body = f"The same command as [`{same}`](#{anchor(same)}), with `{name}` in its usage line.\n"
            else:
                first[id(cmd)] = name
                body = f"```text\n{text}\n```\n"
            out.append(Entry(name, heading + body))
    return out


def _split(text: str) -> list[str | Entry]:
    """The page as hand-written text and the blocks found in it (with their current bodies)."""
    parts: list[str | Entry] = []
    pos = 0
    for m in _BLOCK.finditer(text):
        parts.append(text[pos : m.start()])
        parts.append(Entry(m["name"], m["body"]))
        pos = m.end()
    parts.append(text[pos:])
    return parts


def update(text: str, wanted: Sequence[Entry]) -> str:
    """``text`` with every block rewritten from ``wanted``: stale ones replaced, gone ones dropped, new ones added."""
    order = [e.name for e in wanted]
    by_name = {e.name: e for e in wanted}
    parts = [p for p in _split(text) if not isinstance(p, Entry) or p.name in by_name]
    present = {p.name for p in parts if isinstance(p, Entry)}
    for i, name in enumerate(order):
        if name in present:
            continue
        later = [p for p in parts if isinstance(p, Entry) and p.name in order[i + 1 :]]
        if later:
            at = parts.index(later[0])
            parts[at:at] = [by_name[name], "\n"]
        else:
            blocks = [j for j, p in enumerate(parts) if isinstance(p, Entry)]
            at = blocks[-1] + 1 if blocks else len(parts)
            parts[at:at] = ["\n", by_name[name]]
        present.add(name)
    return "".join(by_name[p.name].block() if isinstance(p, Entry) else p for p in parts)


def stale(text: str, wanted: Sequence[Entry]) -> list[str]:
    """The commands whose block in ``text`` is missing, differs from the code or names no command any more."""
    found = {p.name: p for p in _split(text) if isinstance(p, Entry)}
    names = [e.name for e in wanted if found.get(e.name) != e]
    return names + [name for name in found if name not in {e.name for e in wanted}]


def render(path: Path = DOC) -> str:
    """The page at ``path`` with its blocks generated from the code now."""
    return update(path.read_text(encoding="utf-8"), entries())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiwoom_tape.helpdoc", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the generated blocks of the page")
    mode.add_argument("--check", action="store_true", help="exit 1 if the page differs from the code")
    parser.add_argument("--file", type=Path, default=DOC, help=f"the page (default: {DOC})")
    args = parser.parse_args(argv)
    old = args.file.read_text(encoding="utf-8")
    new = update(old, entries())
    if args.write:
        if new != old:
            args.file.write_text(new, encoding="utf-8")
        print(f"{args.file}: {'rewritten' if new != old else 'up to date'}")
        return 0
    if new == old:
        print(f"{args.file}: up to date")
        return 0
    names = ", ".join(stale(old, entries())) or "(the text between blocks)"
    sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True), str(args.file), "code"))
    print(f"{args.file} differs from the code for: {names}. Fix: {FIX}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
