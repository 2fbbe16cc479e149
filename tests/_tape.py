"""A small recorded dataset, made by recording the simulated market with the real recorder. Shared test helper.

:func:`record_tape` records ``items`` x 0D at 10:00 KST (a window where KRX and NXT items both send 0D,
docs/protocol.md 5.3) until at least ``frames`` REAL frames are stored, and returns the REAL frames in the
order a replay serves them (receive time, then sequence number): what a client that registered every item
must receive, byte for byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource

from kiwoom_tape.testing import loopback_recorder, read_table, run_recorder

ITEMS = ("005930", "005930_NX")
TEN_AM = 10 * 3600


def record_tape(root: Path, *, items: Sequence[str] = ITEMS, frames: int = 12, limit: float = 30.0) -> list[str]:
    """Record into ``root``; the recorded REAL frame texts in replay order (bounded by ``limit`` seconds)."""

    async def main() -> None:
        market = SimulatedMarket(seed=5, items=items, start=TEN_AM)
        async with serve(SimSource(market, speed=20.0), port=0) as server:
            rec = loopback_recorder(server.url, root, list(items), ["0D"])

            async def until(rec: Recorder) -> None:
                while rec.stats.frames_in < frames + 4:  # noqa: ASYNC110  # a counter, no event to wait on
                    await asyncio.sleep(0.02)

            async with asyncio.timeout(limit):
                await run_recorder(rec, until)

    asyncio.run(main())
    rows = [r for r in read_table(root, "frames") if r["direction"] == "in" and r["trnm"] == "REAL"]
    rows.sort(key=lambda r: (r["recv_ts"], r["seq"]))
    texts = [r["text"] for r in rows]
    assert len(texts) >= frames, len(texts)
    return texts
