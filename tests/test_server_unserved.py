"""The mock tells the truth about what it serves (issue 13 item 4).

A REG of a type the source has no data of is acknowledged as Kiwoom acknowledges any REG (docs/protocol.md
1.4), the server logs ONE warning per (connection, type) naming the type and the items, and ``GET /control``
lists the types served and the (type, items) registered without data. Loopback, port 0, bounded in time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kiwoom_tape.replay.recorded import RecordedSource
from kiwoom_tape.replay.recorded_types import day_types
from kiwoom_tape.replay.recording import kst_day_start_ns
from kiwoom_tape.replay.server import Server, serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.protocol import PING_TEXT
from kiwoom_tape.schemas.tables import TABLES_V1
from kiwoom_tape.schemas.versions import upgrade
from test_record import ITEMS, record_for
from websockets.asyncio.client import ClientConnection, connect

ECHO = {"trnm": "REG", "return_code": 0, "return_msg": ""}
D = dt.date(2026, 11, 20)
NS = 1_000_000_000
T9 = kst_day_start_ns(D) + 9 * 3600 * NS


def reg(items: list[str], types: list[str], refresh: str = "1") -> str:
    return json.dumps({"trnm": "REG", "grp_no": "1", "refresh": refresh, "data": [{"item": items, "type": types}]})


async def login(server: Server) -> ClientConnection:
    ws = await connect(server.url)
    await ws.send(json.dumps({"trnm": "LOGIN", "token": "t0k"}))
    assert json.loads(await ws.recv())["return_code"] == 0
    return ws


async def ack(ws: ClientConnection, message: str) -> dict[str, Any]:
    """Send a REG and return its answer (PINGs answered, REAL frames skipped)."""
    await ws.send(message)
    while True:
        raw = await ws.recv()
        if raw == PING_TEXT:
            await ws.send(raw)
            continue
        msg: dict[str, Any] = json.loads(raw)
        if msg["trnm"] != "REAL":
            return msg


async def status(server: Server) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /control HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    assert int(head.split()[1]) == 200, data
    answer: dict[str, Any] = json.loads(body)
    return answer


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "has no" in r.getMessage()]


def test_simulated_market_acknowledges_0h_warns_once_per_connection_and_type_and_lists_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        market = SimulatedMarket(seed=2, items=["005930"], start=10 * 3600)
        async with serve(SimSource(market), port=0) as server:
            ws = await login(server)
            acks = [await ack(ws, reg(["005930"], ["0D", "0H"]))]
            acks += [await ack(ws, reg(["000660", "035420"], ["0H"])) for _ in range(3)]  # a REG flood
            acks.append(await ack(ws, reg(["000660"], ["0B", "0E"])))  # served types: no warning
            first = await status(server)
            other = await login(server)  # another connection gets its own warning
            acks.append(await ack(other, reg(["005930"], ["0H"])))
            await ws.close()
            await other.close()
            await asyncio.sleep(0.05)
            return acks, first, await status(server)

    with caplog.at_level(logging.WARNING, logger="kiwoom_tape.replay"):
        acks, first, after = asyncio.run(asyncio.wait_for(main(), 20))
    assert acks == [ECHO] * 6
    warned = warnings_of(caplog)
    assert len(warned) == 2, warned
    assert "client #1" in warned[0] and "type 0H" in warned[0] and "'005930'" in warned[0]
    assert "client #2" in warned[1] and "type 0H" in warned[1]
    assert not any(f"type {t}" in w for w in warned for t in ("0B", "0D", "0E"))
    server_part = first["server"]
    assert server_part["types_served"] == ["0B", "0D", "0E"]
    assert server_part["registered_without_data"] == [{"type": "0H", "items": ["000660", "005930", "035420"]}]
    assert after["server"]["registered_without_data"] == []  # the connections are gone


def test_simulated_market_commands_still_answer_404() -> None:
    async def main() -> int:
        async with serve(SimSource(SimulatedMarket(items=["005930"])), port=0) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b'POST /control HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n{"cmd":"pause"}')
            await writer.drain()
            data = await reader.read()
            writer.close()
            return int(data.split()[1])

    assert asyncio.run(asyncio.wait_for(main(), 10)) == 404


def write_day(root: Path, records: list[tuple[int, str, str, str]]) -> None:
    """One frames part file of date ``D``: records of (recv_ts ns, direction, text, trnm)."""
    rows = [{"recv_ts": ts, "run_id": "run1", "seq": k, "direction": d, "text": text, "parse_error": None, "trnm": trnm}
            for k, (ts, d, text, trnm) in enumerate(records)]
    path = Path(layout.partition_dir(str(root), "frames", D)) / layout.part_filename("run1", 0, "frames")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(upgrade(pa.Table.from_pylist(rows, schema=TABLES_V1["frames"]), "frames"), path, row_group_size=4)


def real(item: str, real_type: str, k: int) -> str:
    row = {"type": real_type, "name": "x", "item": item, "values": {"10": str(k)}}
    return json.dumps({"trnm": "REAL", "data": [row]})


def only_0d_day(root: Path, with_reg: bool) -> None:
    records = [(T9 - 2 * NS, "out", '{"trnm":"LOGIN","token":"***"}', "LOGIN")]
    if with_reg:
        records.append((T9 - NS, "out", reg(["005930"], ["0D"]), "REG"))
    records.append((T9 - NS, "in", json.dumps(ECHO), "REG"))
    records += [(T9 + k * NS // 10, "in", real("005930", "0D", k), "REAL") for k in range(20)]
    write_day(root, records)


@pytest.mark.parametrize("with_reg", [True, False])
def test_recorded_day_with_only_0d_acknowledges_0b_warns_and_lists_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, with_reg: bool
) -> None:
    only_0d_day(tmp_path, with_reg)

    async def main() -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
        async with serve(RecordedSource(tmp_path, speed=None, start_delay=0), port=0) as server:
            ws = await login(server)
            acks = [await ack(ws, reg(["005930"], ["0D", "0B"]))]  # the replay starts now, at full speed
            types: list[str] = []
            while len(types) < 20:  # the 0D rows do come
                raw = await asyncio.wait_for(ws.recv(), 5)
                if raw == PING_TEXT:
                    await ws.send(raw)
                    continue
                types += [r["type"] for r in json.loads(raw)["data"]]
            acks.append(await ack(ws, reg(["005930"], ["0B"])))  # the same type again: no second warning
            answer = await status(server)
            await ws.close()
            return acks, answer, types

    with caplog.at_level(logging.WARNING, logger="kiwoom_tape.replay"):
        acks, answer, types = asyncio.run(asyncio.wait_for(main(), 20))
    assert acks == [ECHO, ECHO]
    assert set(types) == {"0D"}
    warned = warnings_of(caplog)
    assert len(warned) == 1 and "type 0B" in warned[0] and "'005930'" in warned[0], warned
    assert answer["server"]["types_served"] == ["0D"]
    assert answer["server"]["registered_without_data"] == [{"type": "0B", "items": ["005930"]}]
    assert answer["state"] in ("playing", "ended")  # a recorded replay's own status is still there


def test_day_types_reads_the_recorders_reg_frames_else_scans_the_real_rows(tmp_path: Path) -> None:
    # REG frames present: what was registered (0H registered, never sent: served as the silence it was)
    write_day(tmp_path / "a", [
        (T9, "out", reg(["005930"], ["0D", "0H"]), "REG"),
        (T9, "out", '{"trnm":"REG", broken', "REG"),
        *[(T9 + k, "in", real("005930", "0D", k), "REAL") for k in range(1, 9)],
        (T9 + 10, "out", reg(["005930"], ["0B"], refresh="0"), "REG"),
    ])
    parts = sorted((tmp_path / "a").rglob("*.parquet"))
    assert day_types(parts) == frozenset({"0B", "0D", "0H"})
    # no REG frame: every row's type, whatever the JSON spacing, several types in one frame
    mixed = '{"trnm":"REAL","data":[{"type" : "0E","item":"005930","values":{}},{"item":"x","type":"1h","values":{}}]}'
    write_day(tmp_path / "b", [
        *[(T9 + k, "in", real("005930", "0D", k), "REAL") for k in range(9)],
        (T9 + 9, "in", mixed, "REAL"),
        (T9 + 10, "out", '{"trnm":"PING"}', "PING"),
        (T9 + 11, "in", '{"trnm":"REAL","data":[{"values":{}}]}', "REAL"),
    ])
    assert day_types(sorted((tmp_path / "b").rglob("*.parquet"))) == frozenset({"0D", "0E", "1h"})
    assert day_types([tmp_path / "missing.parquet"]) is None


def test_a_day_written_by_record_serves_the_types_it_registered(tmp_path: Path) -> None:
    """The recorder's own REG frames (stored as sent, ``direction = 'out'``) say what a replay of the day serves."""

    async def main() -> None:
        market = SimulatedMarket(seed=3, items=ITEMS, start=10 * 3600)
        async with serve(SimSource(market, speed=5.0), port=0) as server:
            await record_for(server, tmp_path, 1.0)

    asyncio.run(asyncio.wait_for(main(), 60))
    assert RecordedSource(tmp_path).types() == frozenset({"0D", "0E"})  # record_for registers 0D and 0E
