"""Every command is documented: help with an example, and a place in docs/commands.md (STYLE.md habits 12, 17)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kiwoom_tape.cli import cli

COMMANDS_MD = (Path(__file__).resolve().parent.parent / "docs" / "commands.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        out.append((path, cmd))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, path)
    return out


ALL = _commands(cli)


def test_there_are_commands() -> None:
    assert {p[0] for p, _ in ALL} >= {"record", "replay"}


@pytest.mark.parametrize(("path", "cmd"), ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_command_has_help_with_an_example_and_is_in_the_docs(path: tuple[str, ...], cmd: click.Command) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert cmd.help and "Example" in cmd.help, f"{' '.join(path)} --help needs an example"
    name = " ".join(("kiwoom-tape", *path))
    assert f"## `{name}`" in COMMANDS_MD, f"docs/commands.md has no `{name}`: run python -m kiwoom_tape.helpdoc --write"


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "kiwoom-tape" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["replay"], "--simulate"),
        (["replay", "--simulate", "--sim-start", "25:00"], "HH:MM"),
        (["replay", "--simulate", "--items", "5930"], "not a Kiwoom item code"),
        (["replay", "--simulate", "--speed", "0"], "speed"),
        (["record"], "--items"),
        (["record", "--items", "005930", "--types", "1H"], "--types 0B,0D,0E"),
        (["record", "--items", "005930", "--types", "1h"], "no type of stock items to record the --items for"),
        (["record", "--types", "0B,0J"], "which items? 0B take stock codes: pass --items"),
        (["record", "--items", "005930", "--types", "0B,0J"], "0J take three-digit industry codes: pass --industries"),
        (["record", "--items", "005930", "--industries", "001"], "no industry type (0J, 0U)"),
        (["record", "--types", "0J", "--industries", "001,KOSPI"], "'KOSPI' cannot be a 0J item: give a three-digit"),
        (["record", "--types", "0B,0m", "--items", "005930_NX"], "'005930_NX' cannot be a 0m item: give a six-char"),
        (["record", "--items", "005930", "--duration", "soon"], "duration"),
        (["record", "--items", "005930", "--url", "http://x", "--out", "/tmp"], "ws://"),
        (["record", "--items", "005930", "--mock-trading", "--url", "ws://127.0.0.1:1/api/dostk/websocket"], "one"),
    ],
)
def test_bad_arguments_name_the_problem_and_the_fix(args: list[str], needle: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output


def test_record_refuses_unwritable_out(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(
        cli,
        ["record", "--items", "005930", "--url", "ws://127.0.0.1:9/api/dostk/websocket", "--out", str(blocker / "d")],
    )
    assert result.exit_code == 1 and "--out" in result.output and "Traceback" not in result.output
