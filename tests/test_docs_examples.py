"""The example outputs the docs show are what the code prints, and the figures and limits they quote are the
code's (or the named benchmark run file's). What the docs name is checked in tests/test_docs_names.py, the
generated help blocks of docs/commands.md in tests/test_docs_help.py, docs/protocol.md in
tests/test_docs_protocol.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import logging
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from _docs import PAGES, ROOT, SCRIPTS, code_blocks, text
from click.testing import CliRunner
from kiwoom_tape.replay.faults import Fault
from kiwoom_tape.replay.server import Server, serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas import layout, protocol


def assert_says(page: str, *phrases: str) -> None:
    """Every phrase is in ``docs/page`` (whitespace as in one line)."""
    flat = " ".join(text(ROOT / "docs" / page).split())
    missing = [p for p in phrases if p not in flat]
    assert not missing, f"docs/{page} does not say what the code does: {missing}"


def test_the_benchmark_table_is_the_named_run_file_s() -> None:
    page = text(ROOT / "docs" / "benchmarks.md")
    run_files = set(re.findall(r"`(?:bench/results/)?(\d{4}-\d\d-\d\dT\d{6}\.json)`", page))
    assert run_files, "docs/benchmarks.md names no run file"
    for name in run_files:
        assert (ROOT / "bench" / "results" / name).is_file(), name
    named = re.search(r"run file `bench/results/(\S+\.json)`", page)
    assert named is not None, "the table's run file is not named"
    run = json.loads((ROOT / "bench" / "results" / named[1]).read_text(encoding="utf-8"))
    table = "\n".join(line for line in page.splitlines() if line.startswith("|"))
    assert table == run["table_markdown"].strip()


def test_the_readme_performance_table_is_the_named_run_s_targets() -> None:
    readme = text(ROOT / "README.md")
    section = readme.split("\n## Performance\n", 1)[1].split("\n## ", 1)[0]
    named = re.search(r"run file `bench/results/(\S+\.json)`", section)
    assert named is not None, "the README's performance table names no run file"
    run = json.loads((ROOT / "bench" / "results" / named[1]).read_text(encoding="utf-8"))
    lines = run["table_markdown"].strip().splitlines()
    with_target = [line for line in lines[2:] if line.split("|")[-3].strip() != "-"]
    assert with_target, "the run has no figure with a target"
    shown = [line for line in section.splitlines() if line.startswith("|")]
    assert shown == lines[:2] + with_target  # every target of the run, verbatim, and nothing else
    assert f"commit {run['machine']['commit'].removesuffix('+dirty')}" in section


def test_the_figures_quoted_from_other_runs_are_theirs() -> None:
    page = " ".join(text(ROOT / "docs" / "benchmarks.md").split())
    results = ROOT / "bench" / "results"

    def load(run: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((results / run).read_text(encoding="utf-8"))
        return data

    def figure(run: str, name: str) -> float:
        return float(next(f["value"] for f in load(run)["figures"] if f["name"].startswith(name)))

    before = "2026-12-02T225647.json"
    assert f"took {figure(before, 'per-item per-minute mid/spread, views, the day'):.2f} s on the segment files " \
           f"in the run before" in page
    hand = next(f["ceiling"] for f in load(before)["figures"] if f["name"].startswith("per-item per-minute mid/sp"))
    assert f"against {hand:.2f} s)" in page

    med = load("batch-decode-2026-12-03.json")["medians"]
    fast, rows, decodes, batched = (med[k] for k in (
        "read_real_frame (the fast path, all of it), frames/s", "0D ints, msgspec per row (now), rows/s",
        "decodes, per row (now), frames/s", "decodes, batched 64 frames per call, frames/s"))
    assert f"one msgspec call per 64 frames is {batched / decodes:.2f}x" in page
    casts = [v / rows for k, v in med.items() if k.startswith("0D ints, pyarrow.compute")]
    assert f"casts of the integer FIDs {min(casts):.2f}-{max(casts):.2f}x msgspec's" in page
    json_reader = [med[f"pyarrow.json reader + pyarrow.compute casts, batch {n} frames, frames/s"] / fast
                   for n in (64, 1024)]
    assert f"{json_reader[0]:.2f}x (64 frames a batch) and {json_reader[1]:.2f}x (1,024)" in page

    top = load("profile-record-2026-12-03.json")
    share = {name.split(":")[0].split(" (")[0]: v["share"] for name, v in top["parts"].items()}
    assert f"`read_real_frame` {share['read_real_frame'] * 100:.0f} %, of which " \
           f"{top['msgspec_decoder_lines']['share'] * 100:.0f} points are the msgspec decoder calls" in page
    assert f"its {top['run']['recorder_rate']:,.0f} frames/s and {top['cpu_us_per_frame']:.0f} CPU us per frame" in page
    peak = load("profile-record-peak-2026-12-03.json")["parts"]
    transport = sum(v["share"] for k, v in peak.items() if k.startswith(("websockets", "the event loop")))
    work = sum(v["share"] for k, v in peak.items() if k.startswith(("read_real", "buffering", "building", "pyarrow",
                                                                    "the rest of the flush", "journal")))
    assert f"websockets and the event loop are {transport * 100:.0f} % of `record`'s busy samples, and reading, " \
           f"buffering, journaling and Parquet are {work * 100:.0f} %" in page


def test_the_layout_example_names_are_the_code_s() -> None:
    page = text(ROOT / "docs" / "layout.md")
    example = next(b for b in code_blocks(page, "") if "20261122T001500Z" in b)
    run_id = "20261122T001500Z-ab12cd"
    assert layout.parse_run_id(run_id) is not None
    day = dt.date(2026, 11, 22)
    expected = [
        f"{layout.partition_dir('DIR', 'frames', day)}/{layout.part_filename(run_id, 0, 'frames')}",
        f"{layout.partition_dir('DIR', 'orderbook', day)}/{layout.part_filename(run_id, 0, 'orderbook')}",
        f"{layout.partition_dir('DIR', 'orderbook', day)}/{layout.part_filename(run_id, 1, 'orderbook')}"
        f"{layout.TMP_SUFFIX}",
        f"{layout.journal_dir('DIR')}/{layout.journal_filename(run_id, 2)}",
    ]
    assert [line.split()[0] for line in example.splitlines()] == expected
    tables = [line.split("/")[1] for line in code_blocks(page, "")[0].splitlines() if line.startswith("DIR/")]
    assert set(layout.TABLE_NAMES) <= set(tables)


def test_the_mock_s_login_answer_is_the_code_s() -> None:
    assert f"| LOGIN with an accepted token | `{protocol.login_ok()}` |" in text(ROOT / "docs" / "replay.md")


def test_the_bad_fault_script_message_is_what_replay_prints(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    page = " ".join(text(ROOT / "docs" / "faults.md").split())
    shown = re.search(r"`(Error: faults\.toml, line 2: [^`]*)`", page)
    assert shown is not None
    monkeypatch.chdir(tmp_path)
    Path("faults.toml").write_text('[[fault]]\nkind = "dorp"\nat = 1\n', encoding="utf-8")
    result = CliRunner().invoke(SCRIPTS["replay"], ["--simulate", "--faults", "faults.toml", "--port", "0"])
    assert result.exit_code == 1
    prefix = shown[1].split("...")[0]  # the page elides the list of kinds
    assert result.output.strip().startswith(prefix), (prefix, result.output)


def _shape(line: str) -> str:
    return re.sub(r"\d+", "N", line)


def test_the_fault_log_line_has_the_shape_the_page_shows(caplog: pytest.LogCaptureFixture) -> None:
    page = text(ROOT / "docs" / "faults.md")
    shown = re.search(r"`(fault #\d+ kick fired [^`]*)`", page)
    assert shown is not None

    async def fire() -> None:
        async with serve(SimSource(SimulatedMarket(seed=1, start=9 * 3600)), port=0, faults=[]) as server:
            await server.faults.fire(Fault("kick", at=0))

    with caplog.at_level(logging.WARNING):
        asyncio.run(asyncio.wait_for(fire(), 10))
    lines = [msg for r in caplog.records if (msg := r.getMessage()).startswith("fault #1 kick fired")]
    assert len(lines) == 1
    assert _shape(lines[0]) == _shape(shown[1])


def test_the_sql_table_example_is_what_kiwoom_tape_sql_prints(tmp_path: Path) -> None:
    page = text(ROOT / "docs" / "sql.md")
    example = next(b for b in code_blocks(page, "text") if b.startswith("$ kiwoom-tape sql "))
    command, *shown = example.rstrip("\n").splitlines()
    (tmp_path / "data" / "frames").mkdir(parents=True)  # a dataset with no file yet: the query needs none
    args = shlex.split(command)[3:]
    assert args[0] == "data"
    result = CliRunner().invoke(SCRIPTS["kiwoom-tape"], ["sql", str(tmp_path / "data"), *args[1:]])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == shown[:-1]
    assert result.stderr.strip() == shown[-1]


def _curl(line: str) -> tuple[str, str, bytes]:
    """``curl -s [-X POST] URL [-d BODY]`` -> (method, query, body)."""
    tokens = shlex.split(line.split("  #", 1)[0])
    method = tokens[tokens.index("-X") + 1] if "-X" in tokens else "GET"
    url = next(t for t in tokens if t.startswith("http://"))
    body = tokens[tokens.index("-d") + 1].encode() if "-d" in tokens else b""
    return method, url.partition("?")[2], body


def test_the_control_examples_run_and_the_status_has_the_keys_the_page_names(tmp_path: Path) -> None:
    from kiwoom_tape.replay.control import COMMANDS
    from kiwoom_tape.replay.recorded import RecordedSource
    from test_replay_recorded import mixed_tape

    page = text(ROOT / "docs" / "replay.md")
    section = page.split("### `/control`", 1)[1].split("\n#", 1)[0]
    curls = [line for block in code_blocks(section, "bash") for line in block.splitlines() if line.startswith("curl")]
    assert len(curls) == 6
    table = {m for m in re.findall(r"^\| `(\w+)`", section, flags=re.M)}
    assert table == set(COMMANDS)
    status_text = " ".join(section[section.index("The status is JSON") :].split())
    named = set(re.findall(r"`(\w+)`", status_text.split("A bad command")[0]))
    mixed_tape(tmp_path / "data", n=20)

    async def run() -> list[tuple[int, dict[str, object]]]:
        async with serve(RecordedSource(tmp_path / "data"), port=0) as server:
            answers = []
            for line in curls:  # one request after another, as from a shell
                answers.append(server.handle_control(*_curl(line)))
                await asyncio.sleep(0.05)
            return answers

    answers = asyncio.run(asyncio.wait_for(run(), 10))
    assert [code for code, _ in answers] == [200] * 6, answers
    first, *_, last = (status for _, status in answers)
    states = {"waiting", "playing", "paused", "ended"}
    assert states <= named and first["state"] in states and last["state"] in states
    assert [s["state"] for _, s in answers[1:3]] == ["paused", "paused"]  # pause, then step: stays paused
    server_status = first["server"]
    assert isinstance(server_status, dict) and {"url", "clients", "frames_sent"} <= set(server_status)
    keys = named - states - {"server"}
    assert keys <= set(first) | set(server_status), sorted(keys - set(first) - set(server_status))
    recording = first["recording"]
    assert isinstance(recording, dict) and {"first", "last", "files"} <= set(recording)


def test_the_mock_s_limits_in_the_replay_table_are_the_code_s() -> None:
    config = protocol.ServerConfig()
    assert config.reg_window == 1.0
    server_defaults = inspect.signature(Server).parameters
    assert_says(
        "replay.md",
        f"| no LOGIN within {config.login_timeout:g} s, or REG before LOGIN | `SYSTEM` R10004, then close |",
        f"| {config.max_missed_pings} PINGs unanswered | `SYSTEM` R10002, then close |",
        f"| more than {protocol.MAX_ITEMS_PER_CONNECTION} items on a connection | REG `return_code` "
        f"{protocol.RC_ITEM_CAP}, nothing applied |",
        f"| more than {config.reg_rate} REG/REMOVE in a second | `return_code` {protocol.RC_REG_RATE} |",
        f"| a message over {server_defaults['max_message'].default // 1024} KiB | close 1009 |",
        f"all clients' together pass {server_defaults['max_total_backlog_bytes'].default // 2**20} MiB",
        f"connections still open after {Server.STOP_GRACE:g} s are cut",
        f"| `return_code` {protocol.RC_LOGIN_FAILED} with `[CODE=8005, ...]`, then close |",
        f"| `{protocol.ack('REMOVE')}` (docs/protocol.md 1.4's success answer)",
        f"| an error reply with `return_code` {protocol.RC_ERROR}; the connection stays open |",
    )


def test_the_fault_defaults_the_example_script_states_are_the_code_s() -> None:
    drop, refuse, reorder, close = (Fault(kind, at=0) for kind in
                                    ("drop", "refuse_login", "reorder", "close_after_handshake"))
    assert_says(
        "faults.md",
        f'# drop: close every connection with a code and reason (defaults {drop.code}, "{drop.reason}")',
        f"whatever the token (default {refuse.count}, {refuse.code})",
        f"REAL frames newest first (default {reorder.count})",
        f"the next `count` connections (default {close.count})",
        f"with `code` (default {close.code} ",
    )


def test_the_simulated_market_s_day_and_rates_are_the_simulator_s() -> None:
    from kiwoom_tape.replay.sim_calendar import KRX_0D_WINDOWS, KRX_0E_WINDOWS, NXT_0D_WINDOWS
    from kiwoom_tape.replay.sim_streams import CHECKPOINT

    section = text(ROOT / "docs" / "replay.md").split("## The simulated market", 1)[1]
    rows = {m[0]: (m[1], m[2]) for m in re.findall(r"^\| (\d\d:\d\d-\d\d:\d\d) \| ([^|]+) \| ([^|]+) \|$",
                                                    section, flags=re.M)}

    def hm(seconds: int) -> str:
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"

    def inside(span: str, windows: tuple[tuple[int, int], ...]) -> bool:
        start = int(span[:2]) * 3600 + int(span[3:5]) * 60
        return any(a // 60 * 60 <= start < b for a, b in windows)  # NXT's 09:00:30 start is in the 09:00 row

    assert len(rows) == 9
    for span, (krx, nxt) in rows.items():
        expected_krx = "0E" if inside(span, KRX_0E_WINDOWS) else "0D" if inside(span, KRX_0D_WINDOWS) else "silent"
        assert krx.startswith(expected_krx), (span, krx)
        assert nxt.startswith("0D" if inside(span, NXT_0D_WINDOWS) else "halted"), (span, nxt)
    covered = {hm(s) for w in (*KRX_0D_WINDOWS, *KRX_0E_WINDOWS, *NXT_0D_WINDOWS) for s in w}
    assert covered <= {t for span in rows for t in span.split("-")}
    assert "from 09:00:30" in rows["09:00-15:20"][1] and NXT_0D_WINDOWS[1][0] == 9 * 3600 + 30
    params = inspect.signature(SimulatedMarket).parameters
    flat = " ".join(section.split())
    assert f"`rate_hz` = {params['rate_hz'].default:g} updates/s" in flat
    assert f"0E flows at {params['rate_0e_hz'].default:g} rows/s" in flat
    assert f"reseeded every {CHECKPOINT} s of market time" in flat and f"one print per {CHECKPOINT} s" in flat


def test_the_types_record_takes_are_the_code_s() -> None:
    """The page says every type is taken, each with the items of its kind: as the code does."""
    from kiwoom_tape.recorder.cli import TYPES
    from kiwoom_tape.schemas.fields import REAL_TYPE_NAMES
    from kiwoom_tape.schemas.items import ITEM_KIND
    from kiwoom_tape.schemas.tables import TABLE_OF_TYPE

    page = " ".join(text(ROOT / "docs" / "commands.md").split())
    assert "`--types` takes every type of docs/protocol.md 3" in page
    assert set(TYPES) == set(REAL_TYPE_NAMES)
    empty = re.search(r"the empty item once for ([0-9a-zA-Z/]+) ", page)
    industries = re.search(r"`--industries` for ([0-9A-Z/]+),", page)
    assert empty is not None and industries is not None
    assert set(empty[1].split("/")) == {t for t, kind in ITEM_KIND.items() if kind == "empty"}
    assert set(industries[1].split("/")) == {t for t, kind in ITEM_KIND.items() if kind == "industry"}
    tables = {"0B": "trades", "0D": "orderbook", "0E": "afterhours"}
    assert {t: TABLE_OF_TYPE[t] for t in tables} == tables
    assert all(f"every {t} row in `{table}`" in page for t, table in tables.items())


def test_the_call_auctions_verify_allows_crossed_books_in_are_the_code_s() -> None:
    from kiwoom_tape import verify

    page = " ".join(text(ROOT / "docs" / "commands.md").split())

    def hm(seconds: int) -> str:
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"

    spans = ", ".join(f"{hm(a)}-{hm(b)}" for a, b in verify._AUCTIONS)
    assert f"a crossed book outside the KRX call auctions ({spans})" in page


def _complete(command: str) -> bool:
    try:
        shlex.split(command)
    except ValueError:
        return False
    return True


def sql_examples() -> list[str]:
    """Every ``kiwoom-tape sql DIR QUERY ...`` line in a code block of the pages (a query may wrap lines)."""
    start = re.compile(r"^\s*(?:\$ |\.venv/bin/)?kiwoom-tape sql ")
    out: list[str] = []
    for page in PAGES:
        for block in code_blocks(text(page), r"\w*"):
            lines = iter(block.splitlines())
            for line in lines:
                if not start.match(line):
                    continue
                command = line.split("  #", 1)[0].strip().removeprefix("$ ")
                while not _complete(command):  # a quoted query that goes on on the next line
                    command += " " + next(lines).split("  #", 1)[0].strip()
                out.append(command)
    return out


SQL_EXAMPLES = sql_examples()


def test_the_sql_examples_are_found() -> None:
    assert len(SQL_EXAMPLES) >= 15, SQL_EXAMPLES


@pytest.mark.parametrize("line", [x for x in SQL_EXAMPLES if len(shlex.split(x)) > 3])
def test_every_sql_example_runs_on_the_views(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a dataset with no file yet every view is empty with all its columns: each query must run."""
    (tmp_path / "data" / "frames").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    args = shlex.split(line)
    args = args[args.index("sql") + 1 :]
    result = CliRunner().invoke(SCRIPTS["kiwoom-tape"], ["sql", "data", *args[1:]])
    assert result.exit_code == 0, f"{line}\n{result.output}"


def test_every_column_the_views_table_names_is_in_its_view(tmp_path: Path) -> None:
    """docs/sql.md's table of views: each view it lists exists, with every column it names; a row that does not
    elide (no ``...``, no "key columns as") names every column of its view."""
    from kiwoom_tape.replay.catalog import connect
    from kiwoom_tape.schemas.views import VIEW_NAMES

    (tmp_path / "data" / "frames").mkdir(parents=True)
    con = connect(tmp_path / "data")
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| (.+) \|$", text(ROOT / "docs" / "sql.md"), flags=re.M)
    assert [view for view, _ in rows] == list(VIEW_NAMES)
    values = {"in", "out", "buy", "sell", "orderbook"}  # a column's values, or "key columns as `orderbook`"
    for view, cell in rows:
        named = set(re.findall(r"`([a-z][a-z0-9_]*)`", cell)) - values
        columns = {r[0] for r in con.sql(f"describe {view}").fetchall()}
        assert named <= columns, (view, sorted(named - columns))
        if "..." not in cell and "key columns as" not in cell:
            assert columns <= named, (view, sorted(columns - named))
