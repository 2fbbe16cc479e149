"""The README and the docs/ pages as the docs tests read them: the pages, their code blocks and inline code,
and every click parameter of the console scripts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click

from kiwoom_tape import helpdoc

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "protocol.md")]
"""The pages these tests check; docs/protocol.md has its own (tests/test_docs_protocol.py)."""
SCRIPTS: dict[str, click.Command] = dict(helpdoc.ROOTS)


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def page_ids(pages: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in pages]


def code_blocks(source: str, lang: str) -> list[str]:
    """The fenced blocks whose info string matches the regex ``lang`` (``""``: blocks with none)."""
    return re.findall(rf"^```{lang}\n(.*?)^```", source, flags=re.M | re.S)


def backticked(source: str) -> list[str]:
    """The inline code spans outside fenced blocks (a span may wrap a line)."""
    prose = re.sub(r"^```.*?^```", "", source, flags=re.M | re.S)
    return re.findall(r"(?<!`)`([^`]+)`(?!`)", prose)


def params() -> Iterator[click.Parameter]:
    """Every parameter of every command and subcommand of the console scripts."""

    def walk(cmd: click.Command) -> Iterator[click.Parameter]:
        yield from cmd.params
        if isinstance(cmd, click.Group):
            for sub in cmd.commands.values():
                yield from walk(sub)

    for cmd in SCRIPTS.values():
        yield from walk(cmd)
