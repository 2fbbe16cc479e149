"""The pieces of ``kiwoom-tape demo`` (simulated market -> record -> query -> replay, on loopback, with no
credentials), library functions the notebooks use too (the command is :mod:`kiwoom_tape.demo_cli`):

- :func:`record_simulation` serves a :class:`kiwoom_tape.replay.simulator.SimulatedMarket` on a loopback port and
  records it with the real recorder (:func:`kiwoom_tape.testing.run_recorder`: a
  :class:`kiwoom_tape.recorder.client.Recorder` into a :class:`kiwoom_tape.recorder.store.Store`), as ``record --url
  ws://127.0.0.1:...`` would;
- :func:`replay_to_client` serves a dataset back (:class:`kiwoom_tape.replay.recorded.RecordedSource`) and
  counts what a plain client receives.

The market clock starts at 15:29:00 KST and runs 60x, so 20 s of recording cover KRX 0D until the
15:30 close, NXT 0D and 0B (trades) from 15:30 (NXT halts 15:20-15:30) and KRX 0E from 15:40
(docs/protocol.md 5.3). The types recorded and replayed are :data:`DEMO_TYPES`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.replay.recorded import RecordedSource
from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.errors import KiwoomTapeError
from kiwoom_tape.schemas.layout import new_run_id
from kiwoom_tape.schemas.protocol import ClientSession, LoginRejected, RealData
from kiwoom_tape.testing import loopback_recorder, run_recorder

__all__ = [
    "DEMO_ITEMS",
    "DEMO_SECONDS",
    "DEMO_SPEED",
    "DEMO_START",
    "DEMO_TYPES",
    "Progress",
    "Received",
    "Recording",
    "record_simulation",
    "replay_to_client",
]

log = logging.getLogger("kiwoom_tape.demo")

DEMO_ITEMS: Final = ("005930", "000660", "005930_NX")
DEMO_START: Final = 15 * 3600 + 29 * 60  # 15:29:00 KST
DEMO_SPEED: Final = 60.0
DEMO_SECONDS: Final = 20.0
DEMO_TYPES: Final = ("0B", "0D", "0E")
"""Trades, order book, after-hours book: what a user recording a stock expects (``record``'s default too)."""


@dataclass(frozen=True)
class Progress:
    """A snapshot while :func:`record_simulation` runs."""

    elapsed: float
    seconds: float
    market_time: float
    """Seconds since KST midnight on the simulated clock."""
    frames: int
    rows_0d: int
    rows_0e: int
    rows_0b: int = 0


@dataclass
class Recording:
    """What :func:`record_simulation` recorded."""

    root: Path
    run_id: str
    frames: int
    rows: dict[str, int]
    """Rows written per table (orderbook, afterhours, trades, events)."""
    seconds: float
    market_start: float
    market_end: float
    reconnects: int


async def record_simulation(
    out: str | Path,
    *,
    items: Sequence[str] = DEMO_ITEMS,
    types: Sequence[str] = DEMO_TYPES,
    sim_start: float = DEMO_START,
    speed: float = DEMO_SPEED,
    seconds: float = DEMO_SECONDS,
    seed: int = 0,
    rate_hz: float | None = None,
    progress: Callable[[Progress], None] | None = None,
    progress_interval: float = 0.5,
) -> Recording:
    """Serve the simulated market on 127.0.0.1 (a free port) and record ``items`` x ``types`` for ``seconds``.

    ``sim_start`` is the market clock at start (seconds since KST midnight), ``speed`` market seconds
    per real second; ``rate_hz`` the market's 0D update rate per item (default: the simulator's live-like
    rate; lower it to record a longer stretch of market time on a slow machine). The dataset goes to
    ``out`` (created if needed; a new run beside any earlier one). ``progress`` is called every
    ``progress_interval`` seconds. Works in a running event loop (``await`` it in Jupyter).
    Raises KiwoomTapeError if recording fails.
    """
    root = Path(out)
    market = (SimulatedMarket(seed=seed, items=items, start=sim_start) if rate_hz is None
              else SimulatedMarket(seed=seed, items=items, start=sim_start, rate_hz=rate_hz))
    run_id = new_run_id(time.time_ns(), secrets.randbits(24))
    async with serve(SimSource(market, speed=speed), port=0) as server:
        rec = loopback_recorder(server.url, root, items, types, run_id=run_id, fsync_interval=0.2, backoff_cap=0.5)
        t0 = time.monotonic()

        async def until(rec: Recorder) -> None:
            last = -progress_interval
            while True:
                await asyncio.sleep(0.1)
                elapsed = time.monotonic() - t0
                done = elapsed >= seconds
                if progress is not None and (elapsed - last >= progress_interval or done):
                    last = elapsed
                    st = rec.store.stats
                    progress(Progress(min(elapsed, seconds), seconds, market.now, st.frames,
                                      st.rows.get("orderbook", 0), st.rows.get("afterhours", 0),
                                      st.rows.get("trades", 0)))
                if done:
                    return

        await run_recorder(rec, until, tick=0.1)
        st = rec.store.stats
    return Recording(root, run_id, st.frames, dict(st.rows), time.monotonic() - t0, sim_start, market.now,
                     rec.stats.reconnects)


@dataclass
class Received:
    """What :func:`replay_to_client` saw."""

    note: str
    rows: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Rows received per (item, type)."""
    frames: int = 0
    seconds: float = 0.0
    first_row: dict[str, Any] | None = None

    @property
    def total(self) -> int:
        return sum(self.rows.values())


async def replay_to_client(
    root: str | Path,
    items: Sequence[str] = DEMO_ITEMS,
    types: Sequence[str] = DEMO_TYPES,
    *,
    expected_rows: int | None = None,
    speed: float | None = 10.0,
    max_seconds: float = 15.0,
    idle: float = 2.0,
) -> Received:
    """Serve the dataset at ``root`` on loopback (:class:`kiwoom_tape.replay.recorded.RecordedSource`) and
    receive it with a minimal Kiwoom client.

    The client speaks the protocol as any Kiwoom client does (LOGIN, REG ``items`` x ``types``, PING
    echo) and counts REAL rows; it stops at ``expected_rows``, after ``idle`` seconds without a frame
    once rows have come, or after ``max_seconds``.
    """
    source = RecordedSource(Path(root), speed=speed, start_delay=0.5)
    received = Received(f"replaying {root} at {'max' if speed is None else f'{speed:g}x'} speed")
    async with serve(source, port=0) as server:
        t0 = time.monotonic()
        session = ClientSession(token="kiwoom-tape-demo")
        async with ws_connect(server.url, compression=None, ping_interval=None, max_size=2**22) as ws:
            session.connect(time.monotonic())
            session.subscribe(list(items), list(types))
            deadline = t0 + max_seconds
            last_frame: float | None = None
            try:
                while True:
                    for out in session.data_to_send():
                        await ws.send(out)
                    if expected_rows is not None and received.total >= expected_rows:
                        break
                    now = time.monotonic()
                    end = deadline if last_frame is None else min(deadline, last_frame + idle)
                    if now >= end:
                        break
                    wait = end - now
                    due = session.next_deadline()
                    if due is not None:
                        wait = min(wait, max(0.0, due - now))
                    try:
                        text = await asyncio.wait_for(ws.recv(), max(wait, 0.001))
                    except TimeoutError:
                        session.tick(time.monotonic())
                        continue
                    for ev in session.receive(text, time.monotonic()):
                        if isinstance(ev, RealData):
                            received.frames += 1
                            last_frame = time.monotonic()
                            for row in ev.rows:
                                received.rows[(row.item, row.type)] += 1
                                if received.first_row is None and row.type == "0D":
                                    received.first_row = {"item": row.item, **row.values}
                        elif isinstance(ev, LoginRejected):
                            raise KiwoomTapeError(f"the local replay server refused LOGIN: {ev.return_msg}")
            except ConnectionClosed:
                pass
        received.seconds = time.monotonic() - t0
    return received
