"""Trades (0B, issue 13 phase 2) recorded, recovered and replayed exactly as the order book is.

A recording of the simulated market (005930 and its NXT twin) in two short runs is made once per module:
09:05 at 60x (0B and 0D of both venues), then 15:39:50 at 60x (KRX 0E from 15:40, NXT 0D and 0B; docs/protocol.md
5.3). Every test compares what was stored with the frames the server sent.
Loopback only, port 0, every test bounded in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.recorder.store import Store, recover
from kiwoom_tape.replay.recorded import RecordedSource
from kiwoom_tape.replay.server import Server, serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.fields import FIELDS_0B
from kiwoom_tape.schemas.layout import new_run_id
from kiwoom_tape.schemas.market import kst_date_of_ns
from kiwoom_tape.schemas.realframe import parse_real_frame
from test_record import _expected
from test_replay_recorded import login_reg, recv_reals, rerecord
from websockets.asyncio.client import connect

from kiwoom_tape.cli import cli
from kiwoom_tape.testing import loopback_recorder, run_recorder
from kiwoom_tape.testing import read_table as table
from kiwoom_tape.verify import verify

ITEMS = ["005930", "005930_NX"]
TYPES = ["0B", "0D", "0E"]
RUNS = (("run-a", 9 * 3600 + 5 * 60, 2.0), ("run-b", 15 * 3600 + 39 * 60 + 50, 1.5))
"""(run id, market start, seconds recorded) of the module's recording."""
SPEED = 60.0
TIMEOUT = 40.0
REPO = Path(__file__).resolve().parents[1]


def run(coro: Awaitable[Any], timeout: float = TIMEOUT) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def record(server: Server, root: Path, seconds: float, *, during: Any = None,
                 run_id: str = "testrun") -> Recorder:
    """Record ITEMS x TYPES into ``root``: ``during(recorder)`` first, then ``seconds`` more."""

    async def wait(rec: Recorder) -> None:
        if during is not None:
            await during(rec)
        await asyncio.sleep(seconds)

    return await run_recorder(loopback_recorder(server.url, root, ITEMS, TYPES, run_id=run_id), wait)


def in_reals(root: Path) -> list[dict[str, Any]]:
    rows = [r for r in table(root, "frames") if r["direction"] == "in" and r["trnm"] == "REAL"]
    return sorted(rows, key=lambda r: (r["run_id"], r["seq"]))


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """(dataset, the REAL frames the server sent) of ~5 s of the simulated market recorded with 0B, 0D, 0E."""
    root = tmp_path_factory.mktemp("trades-day")

    async def main(run_id: str, start: int, seconds: float) -> list[str]:
        market = SimulatedMarket(seed=13, items=ITEMS, start=start)
        async with serve(SimSource(market, speed=SPEED), port=0, keep_sent=True) as server:
            await record(server, root, seconds, run_id=run_id)
            assert server.sent is not None
            return [text for _, _, text in server.sent]

    return root, [text for run_id, start, seconds in RUNS for text in run(main(run_id, start, seconds))]


def test_record_stores_0b_0d_and_0e_and_verify_passes(day: tuple[Path, list[str]]) -> None:
    root, sent = day
    assert [r["text"] for r in in_reals(root)] == sent  # byte for byte, nothing lost or added
    sent_rows = [r for text in sent for r in json.loads(text)["data"]]
    for table_name, rtype in (("trades", "0B"), ("orderbook", "0D"), ("afterhours", "0E")):
        rows = table(root, table_name)
        assert len(rows) == sum(r["type"] == rtype for r in sent_rows) > 0, table_name
    trades = table(root, "trades")
    assert {r["item"] for r in trades} == set(ITEMS)
    assert {r["venue"] for r in trades} == {"KRX", "NXT"}
    result = CliRunner().invoke(cli, ["verify", str(root)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = verify(root)  # the simulated trades pass every trades check, warnings included
    assert report.trade_rows == len(trades) and report.trade_checks
    assert not any(report.trade_checks.values()), report.trade_checks


def test_every_trades_value_is_the_wire_value_read_naively(day: tuple[Path, list[str]]) -> None:
    root, _sent = day
    frames = {(r["run_id"], r["seq"]): r["text"] for r in in_reals(root)}
    trades = table(root, "trades")
    assert trades
    for row in trades:
        src = json.loads(frames[row["run_id"], row["frame_seq"]])["data"][row["row_idx"]]
        assert src["type"] == "0B" and src["item"] == row["item"]
        date = kst_date_of_ns(row["recv_ts"])
        for f in FIELDS_0B:
            assert row[f.column] == _expected(f.kind, src["values"][f.fid], date), (f.column, src)
        assert row["flags"] == 0


def _rows(root: Path, name: str) -> list[dict[str, Any]]:
    rows = sorted(table(root, name), key=lambda r: (r["run_id"], r["frame_seq"], r["row_idx"]))
    return [{k: v for k, v in r.items() if k not in ("recv_ts", "run_id", "frame_seq", "date")} for r in rows]


def test_round_trip_record_replay_record_is_identical_for_trades(day: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, sent = day
    assert rerecord(root, tmp_path, sum(len(json.loads(t)["data"]) for t in sent), record) == len(sent)
    assert [r["text"] for r in in_reals(tmp_path)] == sent
    for name in ("trades", "orderbook", "afterhours"):
        again = _rows(tmp_path, name)
        assert again == _rows(root, name) and again, name


def test_a_client_of_0b_only_gets_the_recorded_trades_byte_for_byte(day: tuple[Path, list[str]]) -> None:
    root, sent = day
    with_trades = [t for t in sent if any(r["type"] == "0B" for r in json.loads(t)["data"])]
    assert with_trades

    def only_0b(text: str) -> str:
        frame = parse_real_frame(text)
        return frame.subset([r for r in frame.rows if r.type == "0B"])

    async def main(n: int) -> list[str]:
        async with serve(RecordedSource(root, speed=None, start_delay=0.3), port=0) as server, \
                connect(server.url) as ws:
            await login_reg(ws, ITEMS, ["0B"])
            return await recv_reals(ws, n, quiet=0.5)

    got = run(main(len(with_trades)))
    assert got == [only_0b(t) for t in with_trades]
    for text, original in zip(got, with_trades, strict=True):  # the same rows, each in its original bytes
        rows = parse_real_frame(text).rows
        assert [r.type for r in rows] == ["0B"] * len(rows) and all(r.text in original for r in rows)
        assert json.loads(text)["data"] == [r for r in json.loads(original)["data"] if r["type"] == "0B"]


_CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    sys.path.insert(0, {repo!r})
    from kiwoom_tape.recorder.store import Store
    root, run, frames = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
    s = Store(root, run, fsync_interval=3600, flush_rows=40).open()
    for recv_ns, text in frames:
        s.add_received(recv_ns, text.encode())
    s.tick()
    s.sync()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_recovery_after_kill_9_gives_the_same_trades_rows(day: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, _sent = day
    frames = [(r["recv_ts"], r["text"]) for r in in_reals(root)]
    run_id = new_run_id(frames[0][0], 0x13)
    clean = tmp_path / "clean"
    with Store(clean, run_id, flush_rows=40) as store:
        for recv_ns, text in frames:
            store.add_received(recv_ns, text.encode())
    crashed = tmp_path / "crashed"
    src = tmp_path / "frames.json"
    src.write_text(json.dumps(frames))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.format(repo=str(REPO)), str(crashed), run_id, str(src)],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    report = recover(crashed)
    assert report.rows["trades"] == len(table(clean, "trades")) > 0
    for name in ("trades", "orderbook", "afterhours"):
        assert sorted(table(crashed, name), key=lambda r: (r["frame_seq"], r["row_idx"])) == sorted(
            table(clean, name), key=lambda r: (r["frame_seq"], r["row_idx"])
        ), name
