"""The ceiling of a receiver: a bare websockets client that only receives (and echoes PINGs).

Run as ``python -m bench.bare_client`` by the benchmarks, pinned to the core a recorder would use. Each
of ``--connections`` connections sends LOGIN and one REG of ``--items`` items, then counts the frames
it receives until ``--expect-frames`` REAL frames arrived or the server closes the connection. A PING
is echoed at once, as every Kiwoom client does. Receiving uses the same call as ``record``
(``recv(decode=False)`` gives the frame's bytes, ``--decode`` a ``str``).

Writes ``--stats`` JSON: per connection the frames received and the ``time.time_ns()`` of the first and
last REAL frame; with ``--recv-ns PATH``, that of every REAL frame to ``PATH.K`` for connection K.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from array import array
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.machine import write_atomic
from kiwoom_tape.clikit import run_on_loop


async def _one(args: argparse.Namespace, items: list[str], number: int) -> dict[str, Any]:
    async with connect(
        args.url, compression=None, ping_interval=None, max_size=2**22, open_timeout=30
    ) as ws:
        await ws.send(json.dumps({"trnm": "LOGIN", "token": args.token}))
        await ws.recv()
        for k in range(0, len(items), 100):
            reg = {"trnm": "REG", "grp_no": "1", "refresh": "1",
                   "data": [{"item": items[k : k + 100], "type": ["0D", "0E"]}]}
            await ws.send(json.dumps(reg))
            while True:
                reply = await ws.recv()
                if '"REG"' in (reply if isinstance(reply, str) else reply.decode()):
                    break
                if '"REAL"' in (reply if isinstance(reply, str) else reply.decode()):
                    continue
        n = 0
        first = last = 0
        expect = args.expect_frames or (1 << 62)
        decode = bool(args.decode)
        recv = ws.recv
        stamps = array("q") if args.recv_ns else None
        try:
            while n < expect:
                msg = await recv(decode)
                if len(msg) < 64 and (b"PING" in msg if isinstance(msg, bytes) else "PING" in msg):
                    await ws.send(msg, text=True)
                    continue
                if not n:
                    first = time.time_ns()
                if stamps is not None:
                    stamps.append(time.time_ns())
                n += 1
            last = time.time_ns()
        except ConnectionClosed:
            last = time.time_ns()
        if stamps is not None:
            write_atomic(f"{args.recv_ns}.{number}", stamps.tobytes())
        return {"received": n, "t_first_ns": first, "t_last_ns": last}


async def _main(args: argparse.Namespace) -> int:
    items = [i for i in args.items.split(",") if i]
    results = await asyncio.wait_for(
        asyncio.gather(*(_one(args, items, k) for k in range(args.connections))), args.timeout
    )
    write_atomic(args.stats, json.dumps({"connections": results}))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bare_client", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--items", required=True, help="comma-separated items to REG")
    p.add_argument("--stats", required=True)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--expect-frames", type=int, default=0, help="stop after this many REAL frames (0: at close)")
    p.add_argument("--recv-ns", default="", help="write each REAL frame's time.time_ns() on receipt to PATH.K "
                   "(connection K, little-endian int64)")
    p.add_argument("--decode", action="store_true", help="receive str (UTF-8 decoded) instead of bytes")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--token", default="bench", help="the LOGIN token (record --serve takes only one it issued)")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = p.parse_args(argv)
    return run_on_loop(_main(args), args.loop)


if __name__ == "__main__":
    sys.exit(main())
