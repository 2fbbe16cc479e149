"""`replay --simulate` as a user runs it: prints where to connect, serves, stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import json

from _cli import started_replay
from websockets.asyncio.client import connect


def test_replay_simulate_serves_and_stops_on_ctrl_c() -> None:
    async def main() -> None:
        args = ["--simulate", "--port", "0", "--items", "005930", "--sim-start", "09:30:00", "--speed", "5"]
        async with started_replay(*args, limit=20) as replay:
            async with connect(replay.url) as ws:
                await ws.send('{"trnm":"LOGIN","token":"t"}')
                assert json.loads(await ws.recv())["return_code"] == 0
                reg = {"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [{"item": ["005930"], "type": ["0D"]}]}
                await ws.send(json.dumps(reg))
                assert json.loads(await ws.recv())["return_code"] == 0
                real = json.loads(await ws.recv())
                assert real["trnm"] == "REAL" and real["data"][0]["item"] == "005930"
            assert await replay.interrupt() == 0

    asyncio.run(main())
