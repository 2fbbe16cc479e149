"""Types without a table of their own (0H 주식예상체결, ...): accepted by ``record --types``, kept verbatim in
``frames``, queried through the ``rows`` view, replayed byte-exact and re-recorded identically (issue 13 item 3).

The tape is written by the real Store with deliberately varied JSON formatting; loopback only, port 0.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from kiwoom_tape.recorder.cli_checks import TYPES, parse_types
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.replay.catalog import connect as catalog
from kiwoom_tape.replay.recorded import RecordedSource
from kiwoom_tape.replay.server import Server, serve
from kiwoom_tape.schemas.protocol import encode
from test_catalog import book_values, kst_ns
from test_replay_recorded import login_reg, recv_reals, rerecord
from websockets.asyncio.client import connect

from kiwoom_tape.cli import cli
from kiwoom_tape.testing import loopback_recorder, run_recorder
from kiwoom_tape.testing import read_table as table

DAY = dt.date(2026, 3, 10)
ITEMS = ["005930", "000660_NX"]


def run(coro: Awaitable[Any], timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def expected_0h(item: str, n: int) -> dict[str, str]:
    return {"20": f"0859{n % 60:02d}", "10": f"+{70000 + 100 * n}", "11": "+100", "12": "0.14", "15": f"+{n + 1}",
            "13": str(1000 + n), "25": "2"}


def frame_text(rows: list[tuple[str, str, dict[str, str]]], style: int) -> str:
    """A REAL frame; ``style`` 1 puts spaces after separators, as another server build might."""
    data = [{"type": t, "name": "주식예상체결" if t == "0H" else "주식호가잔량", "item": i, "values": v}
            for t, i, v in rows]
    if style:
        return json.dumps({"trnm": "REAL", "data": data}, ensure_ascii=False)
    return encode({"data": data, "trnm": "REAL"})


@pytest.fixture(scope="module")
def tape(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """(dataset, its REAL frames in order): 0H rows alone, 0D rows alone, and frames mixing both."""
    root = tmp_path_factory.mktemp("other-types")
    texts = []
    with Store(root, "tape") as store:
        for n in range(24):
            rows = [("0H", ITEMS[n % 2], expected_0h(ITEMS[n % 2], n))]
            if n % 3 == 0:
                rows.append(("0D", "005930", book_values(70000, 70100, 10, 10, time="085900")))
            if n % 4 == 1:
                rows.reverse()
            text = frame_text(rows, n % 2)
            store.add_frame(kst_ns(DAY, "08:59:00") + n * 50_000_000, "in", text)
            texts.append(text)
    return root, texts


def test_record_types_accepts_every_type_and_names_an_unknown_one() -> None:
    assert set(TYPES) == {"00", "04", "0A", "0B", "0C", "0D", "0E", "0F", "0G", "0H", "0I", "0J", "0U", "0g", "0m",
                          "0s", "0u", "0w", "1h"}
    assert parse_types("0H, 0B,0H,1h") == ("0H", "0B", "1h")
    for bad in ("0Z", "1H", "0d"):
        with pytest.raises(click.BadParameter, match="not a real-time type"):
            parse_types(f"0B,{bad}")
    result = CliRunner().invoke(cli, ["record", "--items", "005930", "--types", "0D,0z"])
    assert result.exit_code == 2 and "--types 0B,0D,0E" in result.output


def test_rows_view_gives_every_real_row_of_any_type(tape: tuple[Path, list[str]]) -> None:
    root, _texts = tape
    con = catalog(root)
    got = con.execute(
        """SELECT frame_seq, row_idx, item, type, name, map_keys("values"), map_values("values")
           FROM rows ORDER BY frame_seq, row_idx"""
    ).fetchall()
    frames = {r["seq"]: r["text"] for r in table(root, "frames")}
    want = [
        (seq, idx, r["item"], r["type"], r["name"], list(r["values"]), list(r["values"].values()))
        for seq, text in sorted(frames.items()) for idx, r in enumerate(json.loads(text)["data"])
    ]
    assert got == want and len(want) == 24 + 8
    (n_0h,) = con.execute("""SELECT count(*) FROM rows WHERE type = '0H' AND "values"['10'] LIKE '+%'""").fetchone()
    assert n_0h == 24
    # 0D rows: the same (frame_seq, row_idx) as in orderbook
    assert con.execute("SELECT frame_seq, row_idx FROM rows WHERE type = '0D' ORDER BY ALL").fetchall() == \
        con.execute("SELECT frame_seq, row_idx FROM orderbook ORDER BY ALL").fetchall()


def test_a_client_of_0h_gets_the_recorded_0h_rows_byte_exact(tape: tuple[Path, list[str]]) -> None:
    root, texts = tape

    async def main() -> list[str]:
        async with serve(RecordedSource(root, speed=None, start_delay=0.3), port=0) as server, \
                connect(server.url) as ws:
            await login_reg(ws, ITEMS, ["0H"])
            return await recv_reals(ws, len(texts), quiet=0.5)

    got = run(main())
    for text, original in zip(got, texts, strict=True):
        rows = json.loads(original)["data"]
        assert json.loads(text)["data"] == [r for r in rows if r["type"] == "0H"]
        if all(r["type"] == "0H" for r in rows):
            assert text == original  # a frame of 0H rows only: the very bytes


def test_recording_0h_from_a_replay_stores_the_same_frames(tape: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, texts = tape

    async def record(server: Server, out: Path, seconds: float, *, during: Any) -> Recorder:
        async def until(rec: Recorder) -> None:
            await during(rec)
            await asyncio.sleep(seconds)

        return await run_recorder(loopback_recorder(server.url, out, ITEMS, ["0D", "0H"]), until)

    assert rerecord(root, tmp_path, 24 + 8, record) == len(texts)
    again = sorted((r["seq"], r["text"]) for r in table(tmp_path, "frames") if r["trnm"] == "REAL")
    assert [t for _, t in again] == texts
    events = [json.loads(e["detail"]) for e in table(tmp_path, "events") if e["kind"] == "reg_ack"]
    assert events and all(sorted(e["types"]) == ["0D", "0H"] for e in events)  # 0H registered, and acknowledged
