"""A lean Kiwoom-like sender: a bare websockets server that sends pre-encoded REAL frames.

Run as ``python -m bench.sender`` by the benchmarks (pinned to its own core). It answers LOGIN and
REG the way Kiwoom does, and once every expected connection has registered ``--expect-items`` items
it sends the workload's frames, cycling through them, to each connection: as fast as TCP takes them
(``--rate 0``: websockets' flow control pauses the sender when the kernel buffers are full) or at
``--rate`` frames/s, for ``--duration`` seconds or ``--max-frames`` frames. Then it sends a PING and
waits for its echo: a Kiwoom client echoes PINGs in order, so the echo proves the client has read
every frame before it. With ``--close`` it then closes the connection.

``--mode raw`` writes pre-framed WebSocket messages straight to the transport (``--batch`` per write), so the
sender costs next to nothing and the receiver is what is measured; ``--mode lib`` sends each frame with
websockets' ``send`` (the library's own per-message cost: the ceiling of a replay server).

``--frames`` given several times (the full-market benchmark, :mod:`bench.market`): each connection is sent the
workload whose items hold the first item it registered, so each connection streams its own items. ``--tokens``
also answers ``POST /oauth2/token`` (au10001) on the same port, as Kiwoom's REST host and the mock do, for a
``record --keys`` that fetches one token per app key.

Everything it did goes to ``--stats`` as JSON, and the send time of every frame (``time.time_ns()``)
to ``{stats}.send_ns`` as little-endian int64 per connection, in order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import struct
import sys
import time
from array import array
from pathlib import Path
from typing import Any

from kiwoom_tape.replay.rest import TokenDesk, make_connection_class
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.frames import Workload
from bench.machine import write_atomic
from kiwoom_tape.clikit import run_on_loop

LOGIN_OK = '{"trnm":"LOGIN","return_code":0,"return_msg":"","sor_yn":"Y"}'
PING = '{"trnm":"PING"}'
BATCH = 32
"""Frames per transport write in raw mode (``--batch``)."""


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + struct.pack("!H", n) + payload
    return b"\x81\x7f" + struct.pack("!Q", n) + payload


class _Conn:
    def __init__(self, ws: ServerConnection, number: int) -> None:
        self.ws = ws
        self.number = number
        self.items: set[str] = set()
        self.first_item = ""
        self.logged_in = False
        self.echo = asyncio.Event()
        self.sent = 0
        self.rows_0d = 0
        self.rows_0e = 0
        self.send_ns = array("q")
        self.t_first = 0
        self.t_last = 0
        self.t_echo = 0
        self.finished = False


class Sender:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workloads = [Workload.load(Path(path)) for path in args.frames]
        self.conns: list[_Conn] = []
        self.ready = asyncio.Event()
        self.done = asyncio.Event()
        self.timed_out = False

    async def handler(self, ws: ServerConnection) -> None:
        conn = _Conn(ws, len(self.conns))
        self.conns.append(conn)
        reader = asyncio.create_task(self._reader(conn))
        try:
            await self.ready.wait()
            if self.args.started_file and conn.number == 0:
                write_atomic(self.args.started_file, str(time.time_ns()))
            await self._send(conn)
            await ws.send(PING)
            # the echo, or the client going (a client that stops after a known count echoes nothing)
            echo_wait = asyncio.ensure_future(conn.echo.wait())
            try:
                await asyncio.wait({reader, echo_wait}, timeout=self.args.echo_timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                echo_wait.cancel()
            conn.t_echo = time.time_ns() if conn.echo.is_set() else 0
            self._finished(conn)
            if self.args.close:
                await ws.close(1000, "bench done")
            else:
                await ws.wait_closed()  # the benchmark stops the client; hold the line until then
        except ConnectionClosed:
            pass
        finally:
            self._finished(conn)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    def _finished(self, conn: _Conn) -> None:
        """``conn`` is done (echoed, or gone): the run is over when every connection is."""
        conn.finished = True
        if not self.ready.is_set() or (
            len(self.conns) >= self.args.connections and all(c.finished for c in self.conns)
        ):
            self.done.set()

    async def _reader(self, conn: _Conn) -> None:
        ws = conn.ws
        with contextlib.suppress(ConnectionClosed):
            async for msg in ws:
                text = msg if isinstance(msg, str) else msg.decode()
                if '"PING"' in text:
                    conn.echo.set()
                    continue
                obj = json.loads(text)
                trnm = obj.get("trnm")
                if trnm == "LOGIN":
                    conn.logged_in = True
                    await ws.send(LOGIN_OK)
                elif trnm in ("REG", "REMOVE"):
                    for entry in obj.get("data", []):
                        if trnm == "REG":
                            conn.first_item = conn.first_item or next(iter(entry.get("item", [])), "")
                            conn.items.update(entry.get("item", []))
                    await ws.send(json.dumps({"trnm": trnm, "return_code": 0, "return_msg": ""}))
                    if (
                        len(self.conns) >= self.args.connections
                        and all(len(c.items) >= self.args.expect_items for c in self.conns)
                    ):
                        self.ready.set()

    def _workload(self, conn: _Conn) -> Workload:
        """The workload holding the first item ``conn`` registered (the first workload if none does)."""
        return next((w for w in self.workloads if conn.first_item in w.items), self.workloads[0])

    async def _send(self, conn: _Conn) -> None:
        a = self.args
        ws = conn.ws
        w = self._workload(conn)
        frames = w.frames
        framed = [ws_text_frame(f) for f in frames] if a.mode == "raw" else []
        n = len(frames)
        rate = a.rate
        batch = a.batch
        limit = a.max_frames if a.max_frames > 0 else 1 << 62
        t0 = time.monotonic()
        t_end = t0 + a.duration
        conn.t_first = time.time_ns()
        i = 0
        stamps = conn.send_ns
        r0d, r0e = w.rows_0d, w.rows_0e
        rows_0d = rows_0e = 0
        while i < limit:
            now = time.monotonic()
            if now >= t_end:
                break
            if rate > 0:
                due = min(limit, int((now - t0) * rate) + 1)
                if due <= i:
                    await asyncio.sleep(max(0.0005, (i - (now - t0) * rate) / rate))
                    continue
                stop = due
            else:
                stop = min(limit, i + (batch * 8 if a.mode == "raw" else 64))
            while i < stop:
                k = min(stop, i + batch)
                ns = time.time_ns()
                if a.mode == "raw":
                    ws.transport.write(b"".join(framed[j % n] for j in range(i, k)))
                    for j in range(i, k):
                        stamps.append(ns)
                        rows_0d += r0d[j % n]
                        rows_0e += r0e[j % n]
                    await ws.drain()
                else:
                    for j in range(i, k):
                        stamps.append(time.time_ns())
                        await ws.send(frames[j % n], text=True)
                        rows_0d += r0d[j % n]
                        rows_0e += r0e[j % n]
                i = k
            conn.sent, conn.rows_0d, conn.rows_0e = i, rows_0d, rows_0e  # current if the run is cut short
            if a.mode == "raw":
                await asyncio.sleep(0)
        conn.sent = i
        conn.rows_0d, conn.rows_0e = rows_0d, rows_0e
        conn.t_last = time.time_ns()

    def stats(self) -> dict[str, Any]:
        return {
            "timed_out": self.timed_out,
            "connections": [
                {
                    "sent": c.sent,
                    "rows_0d": c.rows_0d,
                    "rows_0e": c.rows_0e,
                    "t_first_ns": c.t_first,
                    "t_last_ns": c.t_last,
                    "t_echo_ns": c.t_echo,
                    "items": len(c.items),
                    "first_item": c.first_item,
                }
                for c in self.conns
            ],
        }


async def _main(args: argparse.Namespace) -> int:
    sender = Sender(args)
    extra: dict[str, Any] = {}
    if args.tokens:
        desk = TokenDesk()
        extra["create_connection"] = make_connection_class(desk.handle)
    async with serve(
        sender.handler, "127.0.0.1", 0, compression=None, ping_interval=None, max_size=2**22, **extra
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        write_atomic(args.ready_file, str(port))
        try:
            await asyncio.wait_for(sender.done.wait(), args.timeout)
        except TimeoutError:
            sender.timed_out = True
            print("bench.sender: timed out", file=sys.stderr)
        stats = sender.stats()
        write_atomic(args.stats + ".send_ns", b"".join(c.send_ns.tobytes() for c in sender.conns))
        write_atomic(args.stats, json.dumps(stats))
        if not args.close:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(c.ws.wait_closed() for c in sender.conns)), args.hold)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sender", description=__doc__.split("\n")[0])
    p.add_argument("--frames", required=True, action="append",
                   help="a workload file (bench.frames.Workload.save); several: one per group of items")
    p.add_argument("--tokens", action="store_true", help="also answer POST /oauth2/token (au10001) on the port")
    p.add_argument("--ready-file", required=True, help="written with the port once listening")
    p.add_argument("--stats", required=True, help="JSON of what was sent, written at the end")
    p.add_argument("--mode", choices=("raw", "lib"), default="raw")
    p.add_argument("--batch", type=int, default=BATCH, help=f"frames per transport write in raw mode (default {BATCH})")
    p.add_argument("--rate", type=float, default=0.0, help="frames/s per connection; 0 = as fast as TCP takes")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of sending")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = no limit)")
    p.add_argument("--expect-items", type=int, default=1, help="items each connection must REG before sending")
    p.add_argument("--connections", type=int, default=1, help="connections to wait for before sending")
    p.add_argument("--started-file", default="", help="written when sending starts")
    p.add_argument("--close", action="store_true", help="close each connection after the PING echo")
    p.add_argument("--echo-timeout", type=float, default=60.0)
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds in all")
    p.add_argument("--hold", type=float, default=120.0, help="without --close: wait this long for the client to go")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = p.parse_args(argv)
    return run_on_loop(_main(args), args.loop)


if __name__ == "__main__":
    sys.exit(main())
