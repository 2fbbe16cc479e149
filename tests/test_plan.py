"""``record --items-file`` / ``--keys`` parsing and the spread of items over app keys (recorder/plan.py), the usage
errors ``record`` gives for them, and the status line over several connections (recorder/status.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from kiwoom_tape.recorder.cli import record_command
from kiwoom_tape.recorder.plan import KeyFileError, KeySpec, PlanError, parse_items, parse_keys, resolve_key, spread
from kiwoom_tape.recorder.status import LAG_SECONDS, StatusLine, lagging
from kiwoom_tape.schemas.errors import CredentialsError

TYPES = ("0D", "0E")
KEY = '[[key]]\nname = "{n}"\nappkey_env = "KIWOOM_APPKEY_{n}"\nsecretkey_env = "KIWOOM_SECRETKEY_{n}"\n'


def test_items_file_takes_comments_blank_lines_and_merges_duplicates_naming_the_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = "# my list\n005930\n\n000660_NX   # SK hynix on NXT\n  0001A0  \n005930\n"
    with caplog.at_level(logging.WARNING):
        assert parse_items(text, TYPES) == ("005930", "000660_NX", "0001A0")
    assert "line 6: 005930 is already on line 2: recorded once" in caplog.text


@pytest.mark.parametrize(("text", "line"), [("005930\n5930\n", 2), ("005930\n\n# x\n005930_KR\n", 4),
                                            ("abcdef\n", 1), ("005930,000660\n", 1)])
def test_a_bad_code_is_refused_naming_its_line_and_the_rule(text: str, line: int) -> None:
    with pytest.raises(PlanError) as info:
        parse_items(text, TYPES, source="f.txt")
    assert f"f.txt line {line}:" in str(info.value) and "six-character stock code" in str(info.value)


def test_an_items_file_without_codes_is_refused() -> None:
    with pytest.raises(PlanError, match="holds no item codes"):
        parse_items("# nothing\n\n", TYPES)


def test_keys_file_names_environment_variables() -> None:
    keys = parse_keys(KEY.format(n=1) + '[[key]]\nappkey_env = "A_2"\nsecretkey_env = "S_2"\n')
    assert keys == [KeySpec("1", "KIWOOM_APPKEY_1", "KIWOOM_SECRETKEY_1"), KeySpec("key2", "A_2", "S_2")]
    env = {"KIWOOM_APPKEY_1": " the-key ", "KIWOOM_SECRETKEY_1": "the-secret"}
    assert resolve_key(keys[0], env) == ("the-key", "the-secret")
    with pytest.raises(CredentialsError) as info:
        resolve_key(keys[1], env)
    assert "A_2 and S_2 not set" in str(info.value)


SECRET = "PSx9Qk2LmZ8vR4tY7wB1nC6dF3gH5jK0"


@pytest.mark.parametrize("text", [
    f'[[key]]\nappkey = "{SECRET}"\nsecretkey_env = "S"\n',  # a secret in a field of its own
    f'[[key]]\nappkey_env = "A"\nsecretkey_env = "{SECRET}"\n',  # a secret where a variable name goes
    f'[[key]]\nappkey_env = "A"\nsecretkey_env = "{SECRET.upper()}"\n',  # ... even one that could be a name
    f'[[key]]\nappkey_env = "A"\nsecretkey_env = "S"\ntoken = "{SECRET}"\n',
    f'token = "{SECRET}"\n[[key]]\nappkey_env = "A"\nsecretkey_env = "S"\n',
    f'[[key]]\nname = "{SECRET}"\nappkey_env = "A"\nsecretkey_env = "S"\n',
])
def test_a_keys_file_holding_a_secret_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(KeyFileError) as info:
        parse_keys(text)
    msg = str(info.value)
    assert SECRET not in msg and SECRET.upper() not in msg and SECRET[:12] not in msg
    assert "environment variable" in msg or "[[key]]" in msg or "label" in msg


@pytest.mark.parametrize(("text", "problem"), [
    ("", "list of [[key]] tables"), ("[key]\nappkey_env = 'A'\n", "list of [[key]] tables"),
    ("[[key]\n", "not TOML"), (KEY.format(n=1) * 2, "used by two keys"),
    ('[[key]]\nappkey_env = "A"\n', "secretkey_env must be the NAME"),
])
def test_a_malformed_keys_file_is_refused_with_the_fix(text: str, problem: str) -> None:
    with pytest.raises(KeyFileError, match=problem.replace("[", r"\[")) as info:
        parse_keys(text)
    assert info.value.hint


@pytest.mark.parametrize(("n", "keys", "sizes"), [(450, 3, [150, 150, 150]), (401, 3, [134, 134, 133]),
                                                  (2, 3, [1, 1]), (200, 1, [200]), (600, 3, [200, 200, 200])])
def test_spread_keeps_the_order_splits_evenly_and_never_passes_200(n: int, keys: int, sizes: list[int]) -> None:
    items = [f"{k:06d}" for k in range(n)]
    groups = spread(items, keys)
    assert [len(g) for g in groups] == sizes and [i for g in groups for i in g] == items


def test_more_items_than_keys_can_carry_names_the_numbers() -> None:
    with pytest.raises(PlanError) as info:
        spread([f"{k:06d}" for k in range(601)], 3, source="--keys k.toml (3 keys)")
    assert "601 items need 4 connections of at most 200" in str(info.value)
    assert "--keys k.toml (3 keys) gives 3" in str(info.value) and "add 1 app key(s)" in info.value.hint


def _record(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(record_command, ["--out", str(tmp_path / "data"), "--url",
                                               "ws://127.0.0.1:9/api/dostk/websocket", *args], env=env)


def test_record_gives_usage_errors_for_items_and_keys_files(tmp_path: Path) -> None:
    many = tmp_path / "many.txt"
    many.write_text("".join(f"{k * 10:06d}\n" for k in range(1, 252)))
    result = _record(tmp_path, "--items-file", str(many))
    assert result.exit_code == 2 and "251 items need 2 connections" in result.output, result.output
    assert "one connection without --keys gives 1" in result.output
    keys = tmp_path / "keys.toml"
    keys.write_text(KEY.format(n=1))
    bad = tmp_path / "bad.txt"
    bad.write_text("005930\n\n00066\n")
    result = _record(tmp_path, "--items-file", str(bad), "--keys", str(keys))
    assert result.exit_code == 2 and "line 3:" in result.output and "'00066'" in result.output
    result = _record(tmp_path, "--items", "005930", "--items-file", str(bad))
    assert result.exit_code == 2 and "--items and --items-file" in result.output
    result = _record(tmp_path, "--items-file", str(many), "--keys", str(keys))
    assert result.exit_code == 2 and "251 items need 2 connections" in result.output
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_record_refuses_two_keys_that_hold_the_same_app_key_without_showing_it(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(KEY.format(n=1) + KEY.format(n=2))
    env = {"KIWOOM_APPKEY_1": "SAME-KEY-0001", "KIWOOM_APPKEY_2": "SAME-KEY-0001",
           "KIWOOM_SECRETKEY_1": "S-1-hidden", "KIWOOM_SECRETKEY_2": "S-2-hidden"}
    result = _record(tmp_path, "--items", "005930,000660", "--keys", str(keys), env=env)
    assert result.exit_code == 2 and "keys 1 and 2 hold the same app key" in result.output, result.output
    assert not any(v in result.output for v in env.values())
    result = _record(tmp_path, "--items", "005930,000660", "--keys", str(keys), env={"KIWOOM_APPKEY_1": "k"})
    assert result.exit_code == 1 and "KIWOOM_SECRETKEY_1 not set" in result.output, result.output


def _rec(connected: bool, last: float | None) -> Any:
    return SimpleNamespace(stats=SimpleNamespace(connected=connected, last_frame_mono=last))


def test_the_status_line_names_a_lagging_connection() -> None:
    now = 100.0
    assert lagging([("a", _rec(True, 99.0))], now) is None  # one connection: nothing to compare
    assert lagging([("a", _rec(True, 99.0)), ("b", _rec(True, 98.0))], now) is None
    assert lagging([("a", _rec(True, 99.0)), ("b", _rec(False, 99.0))], now) == "b DISCONNECTED"
    late = 99.0 - LAG_SECONDS - 1
    assert lagging([("a", _rec(True, 99.0)), ("b", _rec(True, late)), ("c", _rec(True, 98.5))], now) == \
        f"b last frame {now - late:.1f}s ago"
    assert lagging([("a", _rec(True, 99.0)), ("b", _rec(True, None))], now) == "b no frame yet"
    assert lagging([("a", _rec(True, None)), ("b", _rec(True, None))], now) is None


def _full(connected: bool, last: float | None, frames: int, rows: int, files: int, reconnects: int) -> Any:
    stats = SimpleNamespace(connected=connected, last_frame_mono=last, frames_in=frames, reconnects=reconnects)
    store = SimpleNamespace(stats=SimpleNamespace(rows={"orderbook": rows, "afterhours": 1}, files_written=files))
    return SimpleNamespace(stats=stats, store=store)


def test_the_status_line_sums_the_connections() -> None:
    clock = iter([0.0, 2.0])
    line = StatusLine([("a", _full(True, 1.5, 100, 40, 1, 0)), ("b", _full(False, 0.5, 300, 60, 2, 3))], quiet=True,
                      monotonic=lambda: next(clock))
    text = line.line(2.0)
    assert text.startswith("1/2 connected |   200.0 frames/s | rows 100 0D, 2 0E | files 3 | reconnects 3 |"), text
    assert text.endswith("last frame 0.5s ago | lagging: b DISCONNECTED"), text
