"""Everything the README and docs/ name exists: files, tests, links and their anchors, commands and their
options, Python names; and the option defaults they quote are the code's."""

from __future__ import annotations

import ast
import contextlib
import importlib
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import click
import pytest
from _docs import PAGES, ROOT, SCRIPTS, backticked, code_blocks, page_ids, params, text

from kiwoom_tape import helpdoc


def test_the_pages_are_there() -> None:
    names = {p.name for p in PAGES}
    assert names >= {"README.md", "commands.md", "replay.md", "faults.md", "sql.md", "guarantees.md", "layout.md",
                     "benchmarks.md", "scaling.md"}
    assert len(text(ROOT / "README.md").splitlines()) < 250


# ==================================================================================================
# Everything named exists


PATH = re.compile(r"(?<![\w/.-])((?:tests|bench|notebooks|schemas|recorder|replay|kiwoom_tape|docs|\.ci)/"
                  r"[\w./*-]*[\w*])(?:::(\w+))?")


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_file_and_test_a_page_names_exists(page: Path) -> None:
    named = 0
    for m in PATH.finditer(text(page)):
        path, func = m[1], m[2]
        matches = sorted(ROOT.glob(path)) if "*" in path else [ROOT / path] if (ROOT / path).exists() else []
        assert matches, f"{page.name} names {path}, which is not in the repository"
        if func is not None:
            source = matches[0].read_text(encoding="utf-8")
            assert re.search(rf"^(async )?def {func}\b", source, re.M), f"{page.name}: {path} has no {func}"
        named += 1
    if page.name in {"README.md", "replay.md", "guarantees.md"}:
        assert named, f"no path found in {page.name}: has the finder broken?"


LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#([\w-]+))?\)")


def anchors(page: Path) -> set[str]:
    prose = re.sub(r"^```.*?^```", "", text(page), flags=re.M | re.S)
    return {helpdoc.anchor(h.replace("`", "")) for h in re.findall(r"^#+ (.+)$", prose, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_link_between_the_pages_resolves(page: Path) -> None:
    for target, anchor in LINK.findall(text(page)):
        dest = (page.parent / target).resolve()
        assert dest.is_file(), f"{page.name} links to {target}, which does not exist"
        if anchor:
            assert anchor in anchors(dest), f"{page.name} links to {target}#{anchor}: no such heading"



def _all_options() -> set[str]:
    options = {o for p in params() for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}
    return options | {"--help", "--version"}


OTHER_TOOLS = {
    "--quick", "--sections",  # python -m bench
    "--frames-per-s",  # python -m bench.profile_record
    "--write", "--check",  # python -m kiwoom_tape.helpdoc
}


def command_lines(source: str) -> Iterator[str]:
    """Command lines: the lines of shell blocks and the inline spans that start with a console script."""
    starts = re.compile(r"^(?:\w+=\S+ )*(?:\.venv/bin/)?(record|replay|kiwoom-tape)(?: |$)")
    for block in code_blocks(source, "(?:bash)?"):
        for line in block.splitlines():
            if starts.match(line.strip()):
                yield line.strip()
    for span in backticked(source):
        if starts.match(" ".join(span.split())):
            yield " ".join(span.split())


def _tokens(line: str) -> list[str]:
    line = line.split("  #", 1)[0]
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_command_line_a_page_shows_uses_options_its_command_has(page: Path) -> None:
    for line in command_lines(text(page)):
        tokens = [t for t in _tokens(line) if "=" not in t or t.startswith("-")]
        name = tokens[0].rsplit("/", 1)[-1]
        cmd = SCRIPTS[name]
        allowed = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"-h", "--help", "--version"}
        for tok in tokens[1:]:
            if isinstance(cmd, click.Group) and tok in cmd.commands:
                cmd = cmd.commands[tok]
                name = f"{name} {tok}"
                allowed |= {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
            elif tok.startswith("-") and not re.fullmatch(r"-[\d.]+", tok):
                opt = tok.split("=", 1)[0]
                assert opt in allowed, f"{page.name}: `{line}` uses {opt}, which `{name}` does not have"


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_option_a_page_names_is_an_option_of_some_command(page: Path) -> None:
    known = _all_options() | OTHER_TOOLS
    prose = re.sub(r"^```.*?^```", "", text(page), flags=re.M | re.S)
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", prose))
    assert named <= known, f"{page.name} names options no command has: {sorted(named - known)}"


def _module(name: str) -> ModuleType | None:
    for candidate in (name, f"kiwoom_tape.{name}"):  # the name space move: schemas.x -> kiwoom_tape.schemas.x
        try:
            return importlib.import_module(candidate)
        except ImportError:
            continue
    return None


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = _module(".".join(parts[:cut]))
        if module is None:
            continue
        obj: object = module
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


PY_NAME = re.compile(r"^((?:schemas|recorder|replay|kiwoom_tape)(?:\.\w+)+)(?:\(.*\))?$", re.S)


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_python_name_a_page_names_resolves(page: Path) -> None:
    source = text(page)
    names = {m[1] for span in backticked(source) if (m := PY_NAME.match(span))}
    for block in code_blocks(source, "python"):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
    unresolved = sorted(n for n in names if n.split(".")[0] in {"schemas", "recorder", "replay", "kiwoom_tape"}
                        and not resolves(n))
    assert not unresolved, f"{page.name} names what the code does not have: {unresolved}"



DEFAULT = re.compile(r"`(--[a-z][a-z-]*)`(?: [A-Za-z]+)? \((?:default:? )?(\d+(?:\.\d+)?)(?: [A-Za-z]+)?[,)]")


def _defaults(option: str) -> set[float]:
    out: set[float] = set()
    for param in params():
        if option in param.opts and isinstance(param.default, int | float | str):
            with contextlib.suppress(ValueError):
                out.add(float(param.default))
    return out


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_the_defaults_a_page_quotes_are_the_options_defaults(page: Path) -> None:
    for option, value in DEFAULT.findall(" ".join(text(page).split())):
        assert float(value) in _defaults(option), f"{page.name}: {option} defaults to {_defaults(option)}, not {value}"

