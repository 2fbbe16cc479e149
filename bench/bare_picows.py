"""The ceiling of a receiver on picows: :mod:`bench.bare_client` with picows instead of websockets (issue 14 lever).

Same options, same protocol and the same ``--stats`` JSON as :mod:`bench.bare_client`: LOGIN, REG of ``--items``
in batches of 100, then count the REAL frames (each frame's bytes taken, as a recorder would) until
``--expect-frames`` or the server closes; PINGs are echoed at once. Needs ``pip install picows``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, cast

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.machine import write_atomic
from kiwoom_tape.clikit import run_on_loop


class _Client(WSListener):  # type: ignore[misc, unused-ignore]  # Any without picows installed
    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.n = 0
        self.first = self.last = 0
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.counting = False
        self.done = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self._finish(transport)
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        msg = frame.get_payload_as_bytes()
        if len(msg) < 64 and b"PING" in msg:
            transport.send(WSMsgType.TEXT, msg)
            return
        if not self.counting or not (msg[-14:] == b'"trnm":"REAL"}' or msg[:14] == b'{"trnm":"REAL"'):
            self.replies.put_nowait(msg)  # LOGIN and REG replies (and REAL frames before the last REG)
            return
        if not self.n:
            self.first = time.time_ns()
        self.n += 1
        if self.n >= self.expect:
            self._finish(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._finish(transport)

    def _finish(self, transport: WSTransport) -> None:
        if not self.done.done():
            self.last = time.time_ns()
            self.done.set_result(None)
            transport.disconnect()


async def _one(args: argparse.Namespace, items: list[str]) -> dict[str, Any]:
    expect = args.expect_frames or (1 << 62)
    transport, listener = await ws_connect(lambda: _Client(expect), args.url, max_frame_size=2**22)
    client = cast(_Client, listener)
    transport.send(WSMsgType.TEXT, b'{"trnm":"LOGIN","token":"bench"}')
    await client.replies.get()
    for k in range(0, len(items), 100):
        reg = {"trnm": "REG", "grp_no": "1", "refresh": "1",
               "data": [{"item": items[k : k + 100], "type": ["0D", "0E"]}]}
        transport.send(WSMsgType.TEXT, json.dumps(reg).encode())
        if k + 100 >= len(items):
            client.counting = True  # REAL frames may follow the last REG at once
        while b'"REG"' not in await client.replies.get():
            pass
    await client.done
    return {"received": client.n, "t_first_ns": client.first, "t_last_ns": client.last}


async def _main(args: argparse.Namespace) -> int:
    items = [i for i in args.items.split(",") if i]
    results = await asyncio.wait_for(
        asyncio.gather(*(_one(args, items) for _ in range(args.connections))), args.timeout
    )
    write_atomic(args.stats, json.dumps({"connections": results}))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bare_picows", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--items", required=True, help="comma-separated items to REG")
    p.add_argument("--stats", required=True)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--expect-frames", type=int, default=0, help="stop after this many REAL frames (0: at close)")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = p.parse_args(argv)
    return run_on_loop(_main(args), args.loop)


if __name__ == "__main__":
    sys.exit(main())
