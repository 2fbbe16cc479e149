"""Kiwoom's official sample clients (../shared/seeds) against the mock, unchanged but for SOCKET_URL.

The helper (:mod:`_seedclients`) extracts each seed's client, swaps the one line, runs it as a
subprocess against a mock on a free loopback port, and this test checks that it logs in and prints
REAL frames of its type. (``test_replay_recorded`` runs the same clients against a recorded day.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _seedclients import SEEDS, check_seed_output, run_seed_client, seed_files, seed_type
from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource


@pytest.mark.skipif(not seed_files(), reason=f"no seed documents at {SEEDS} (../shared is absent)")
@pytest.mark.parametrize("seed", seed_files(), ids=lambda p: p.name)
def test_official_sample_client_runs_unchanged(seed: Path, tmp_path: Path) -> None:
    doc = seed.read_text(encoding="utf-8")
    real_type = seed_type(doc)
    # 0D flows in the regular session; 0E from 15:40 (docs/protocol.md 5.3)
    start = 9 * 3600 if real_type == "0D" else 15 * 3600 + 39 * 60 + 50

    async def main() -> str:
        market = SimulatedMarket(seed=7, items=["005930"], start=start)
        async with serve(SimSource(market, speed=5.0), port=0) as server:
            return await run_seed_client(doc, server.url, tmp_path)

    check_seed_output(asyncio.run(main()), real_type)
