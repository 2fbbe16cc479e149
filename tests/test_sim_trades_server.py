"""A client that registers only 0B gets trades from ``serve(SimSource(...))`` (issue 13: no silence after REG).

Loopback, port 0, bounded in time; the server is unchanged: it routes rows by (item, type) registration.
"""

from __future__ import annotations

import asyncio
import json

from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.fields import FIELDS_0B
from kiwoom_tape.schemas.normalize import TradesBuilder
from kiwoom_tape.schemas.protocol import PING_TEXT
from websockets.asyncio.client import connect

START = 9 * 3600 + 59 * 60 + 58  # 09:59:58 KST: continuous trading


async def only_0b_client() -> list[dict[str, object]]:
    market = SimulatedMarket(seed=4, items=["005930", "005930_NX"], start=START)
    async with serve(SimSource(market, speed=5.0), port=0) as server, connect(server.url) as ws:
        await ws.send(json.dumps({"trnm": "LOGIN", "token": "t0k"}))
        assert json.loads(await ws.recv())["return_code"] == 0
        await ws.send(json.dumps({"trnm": "REG", "grp_no": "1", "refresh": "1",
                                  "data": [{"item": ["005930", "005930_NX"], "type": ["0B"]}]}))
        assert json.loads(await ws.recv()) == {"trnm": "REG", "return_code": 0, "return_msg": ""}
        rows: list[dict[str, object]] = []
        while len(rows) < 20:  # 20 trades: a few seconds of market time, at 5x
            raw = await ws.recv()
            if raw == PING_TEXT:
                await ws.send(raw)
                continue
            frame = json.loads(raw)
            assert frame["trnm"] == "REAL", frame
            rows += frame["data"]
    return rows


def test_a_client_that_registers_only_0b_receives_trades() -> None:
    rows = asyncio.run(asyncio.wait_for(only_0b_client(), 30.0))
    assert rows, "silence after a successful REG of 0B"
    assert {r["type"] for r in rows} == {"0B"}
    assert {r["item"] for r in rows} == {"005930", "005930_NX"}
    b = TradesBuilder()
    for i, r in enumerate(rows):
        assert r["name"] == "주식체결"
        assert list(r["values"]) == [f.fid for f in FIELDS_0B]  # type: ignore[call-overload]
        assert b.append(0, "r", i, 0, r["item"], r["values"]) == 0  # type: ignore[arg-type]
