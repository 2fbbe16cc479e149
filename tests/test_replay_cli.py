"""`replay --simulate` as a user runs it: prints where to connect, serves, stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent


def test_replay_simulate_serves_and_stops_on_ctrl_c() -> None:
    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); from replay.cli import main; main()",
            "--simulate", "--port", "0", "--items", "005930", "--sim-start", "09:30:00", "--speed", "5",
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        try:
            async with asyncio.timeout(20):
                url = None
                while url is None:
                    line = (await proc.stderr.readline()).decode()
                    assert line, "replay exited before printing its URL"
                    m = re.search(r"(ws://127\.0\.0\.1:\d+/api/dostk/websocket)", line)
                    url = m.group(1) if m else None
                async with connect(url) as ws:
                    await ws.send('{"trnm":"LOGIN","token":"t"}')
                    assert json.loads(await ws.recv())["return_code"] == 0
                    reg = {"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [{"item": ["005930"], "type": ["0D"]}]}
                    await ws.send(json.dumps(reg))
                    assert json.loads(await ws.recv())["return_code"] == 0
                    real = json.loads(await ws.recv())
                    assert real["trnm"] == "REAL" and real["data"][0]["item"] == "005930"
                proc.send_signal(signal.SIGINT)
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    asyncio.run(main())
