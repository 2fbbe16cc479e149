"""docs/commands.md shows every command's ``--help`` as the code prints it (``kiwoom_tape.helpdoc``)."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from kiwoom_tape import helpdoc
from kiwoom_tape.cli import cli

CODE_BLOCK = re.compile(r"```text\n(.*?)\n```", re.S)


def test_docs_commands_md_is_the_help_of_every_command() -> None:
    text = helpdoc.DOC.read_text(encoding="utf-8")
    wanted = helpdoc.entries()
    stale = helpdoc.stale(text, wanted)
    assert not stale, f"docs/commands.md differs from the code for: {', '.join(stale)}. Fix: {helpdoc.FIX}"
    assert helpdoc.update(text, wanted) == text, f"docs/commands.md is not as generated. Fix: {helpdoc.FIX}"


def test_every_command_and_subcommand_is_on_the_page() -> None:
    names = [e.name for e in helpdoc.entries()]

    def walk(group: click.Group, prefix: str) -> list[str]:
        out = []
        for name, cmd in group.commands.items():
            out.append(f"{prefix} {name}")
            if isinstance(cmd, click.Group):
                out += walk(cmd, f"{prefix} {name}")
        return out

    expected = {"record", "replay", "kiwoom-tape", "record recover", *walk(cli, "kiwoom-tape")}
    assert {"kiwoom-tape sql", "kiwoom-tape record recover", "kiwoom-tape verify"} <= expected
    assert set(names) == expected and len(names) == len(expected)
    page = helpdoc.DOC.read_text(encoding="utf-8")
    for name in names:
        assert f"<!-- help: {name} -->\n## `{name}`\n" in page, name


def _shown(output: str) -> str:
    return "\n".join(line.rstrip() for line in output.splitlines()).strip("\n")


@pytest.mark.parametrize("entry", helpdoc.entries(), ids=lambda e: e.name)
def test_each_block_is_what_the_user_sees_on_a_wide_terminal(entry: helpdoc.Entry, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The rendered help equals what ``NAME --help`` prints on a 200-column terminal.

    Run through the command's own ``main`` (CliRunner would force its own 80-column width)."""
    monkeypatch.setenv("COLUMNS", "200")
    root_name, *path = entry.name.split()
    root = dict(helpdoc.ROOTS)[root_name]
    assert root.main([*path, "--help"], prog_name=root_name, standalone_mode=False) == 0
    shown = _shown(capsys.readouterr().out)
    blocks = CODE_BLOCK.findall(entry.body)
    if blocks:
        assert blocks == [shown]
        assert shown.startswith(f"Usage: {entry.name} ")
    else:  # a second name of a command rendered under its first name: the help differs only in its usage line
        same = re.search(r"\[`([^`]+)`\]\(#([a-z0-9-]+)\)", entry.body)
        assert same is not None and same[2] == helpdoc.anchor(same[1])
        first = next(e for e in helpdoc.entries() if e.name == same[1])
        assert shown == CODE_BLOCK.findall(first.body)[0].replace(f"Usage: {same[1]} ", f"Usage: {entry.name} ", 1)


def test_the_installed_script_prints_the_page_s_text() -> None:
    """One command end to end: the console script in a process of its own, on a wide terminal."""
    script = Path(sys.executable).parent / "record"
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run([str(script), "recover", "--help"], capture_output=True, text=True, env=env, timeout=60,
                         check=True).stdout
    entry = next(e for e in helpdoc.entries() if e.name == "record recover")
    assert CODE_BLOCK.findall(entry.body) == [_shown(out)]


# --------------------------------------------------------------------------------------------------
# The generator: new commands get a block by themselves, gone ones lose theirs, hand-written text stays


def _tool(*names: str) -> click.Group:
    @click.group("tool")
    def tool() -> None:
        """A tool.

        Example: tool alpha
        """

    for name in names:
        tool.add_command(click.Command(name, help=f"The {name} command.", callback=lambda: None))
    return tool


PAGE = """# Tool

Intro, by hand.

<!-- help: tool -->
old
<!-- /help: tool -->

<!-- help: tool alpha -->
old
<!-- /help: tool alpha -->

Notes on alpha, by hand.

<!-- help: tool gamma -->
old
<!-- /help: tool gamma -->

<!-- help: tool zeta -->
old
<!-- /help: tool zeta -->

The end, by hand.
"""


def test_update_rewrites_adds_and_drops_blocks_and_keeps_the_hand_written_text() -> None:
    wanted = helpdoc.entries([("tool", _tool("alpha", "beta", "gamma"))])
    assert [e.name for e in wanted] == ["tool", "tool alpha", "tool beta", "tool gamma"]
    assert helpdoc.stale(PAGE, wanted) == ["tool", "tool alpha", "tool beta", "tool gamma", "tool zeta"]
    new = helpdoc.update(PAGE, wanted)
    assert "old" not in new and "tool zeta" not in new
    for hand in ("Intro, by hand.", "Notes on alpha, by hand.", "The end, by hand."):
        assert hand in new
    # beta goes before gamma's block, after alpha's notes
    assert new.index("Notes on alpha") < new.index("<!-- help: tool beta -->") < new.index("<!-- help: tool gamma -->")
    assert "## `tool beta`\n\n```text\nUsage: tool beta [OPTIONS]\n\n  The beta command.\n" in new
    assert helpdoc.stale(new, wanted) == [] and helpdoc.update(new, wanted) == new
    # a command after all the others goes after the last block
    wanted2 = helpdoc.entries([("tool", _tool("alpha", "beta", "gamma", "omega"))])
    newer = helpdoc.update(new, wanted2)
    assert newer.index("<!-- /help: tool gamma -->") < newer.index("<!-- help: tool omega -->") < newer.index("The end")


def test_check_names_the_stale_command_and_the_fix_and_write_fixes_it(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "commands.md"
    good = helpdoc.DOC.read_text(encoding="utf-8")
    page.write_text(good.replace("Show this message and exit.", "Show this message.", 1), encoding="utf-8")
    assert helpdoc.main(["--check", "--file", str(page)]) == 1
    err = capsys.readouterr().err
    assert "differs from the code for: record." in err and "python -m kiwoom_tape.helpdoc --write" in err
    assert helpdoc.main(["--write", "--file", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == good
    assert helpdoc.main(["--check", "--file", str(page)]) == 0


def test_the_page_covers_every_console_script() -> None:
    """A new entry in pyproject.toml's [project.scripts] must be added to ``helpdoc.ROOTS``."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    scripts = pyproject["project"]["scripts"]
    assert set(scripts) == {name for name, _ in helpdoc.ROOTS}
    for name, cmd in helpdoc.ROOTS:
        module, _, func = scripts[name].partition(":")
        main = getattr(importlib.import_module(module), func)
        assert cmd.callback is not None and f"{cmd.callback.__name__}()" in inspect.getsource(main), name
