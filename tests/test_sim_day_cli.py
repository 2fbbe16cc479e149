"""A simulated day through the console scripts, as issue 11's "Done when" runs it (about 75 s of wall time).

``replay --simulate --sim-start 08:00 --speed 600`` recorded by ``record --types 0D,0E`` until the simulated clock
is past 20:00 (read from ``/control``: a busy machine takes longer, the day is the same), then
``kiwoom-tape verify`` passes with no flagged row and the recorded day looks like a trading day
(docs/protocol.md 5.3, 5.5): more than 10 h of market time, bounded quantities, level totals, the KRX silence
after 15:30, the ETF's 5-won levels, and 0E rows.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
from pathlib import Path

import pytest
from kiwoom_tape.replay.catalog import connect

from tests._cli import cli_argv, started_replay

ITEMS = "005930,069500,005930_NX"
END = 20 * 3600 + 60
"""Market time (seconds since KST midnight) to record to: past the NXT close at 20:00."""
WALL_LIMIT = 240.0
"""Wall seconds the recording may take at most (about 72 on a quiet machine)."""


async def record_day(out: Path) -> None:
    """Record until the simulated market's clock is past 20:00 (``market_time`` in ``/control``): at 600x that is
    about 72 s on a quiet machine, longer on a busy one (the market falls behind), never a shorter day."""
    replay_args = ("--simulate", "--sim-start", "08:00", "--speed", "600", "--items", ITEMS, "--port", "0")
    async with started_replay(*replay_args, limit=WALL_LIMIT + 60) as replay:
        argv = cli_argv(
            "record", "--items", ITEMS, "--types", "0D,0E", "--duration", f"{WALL_LIMIT + 30:g}s", "--url",
            replay.url, "--out", str(out), "-q",
        )
        rec = await asyncio.create_subprocess_exec(*argv)
        try:
            await replay.stop_after_market_time(rec, END, WALL_LIMIT)
            assert await asyncio.wait_for(rec.wait(), 30.0) == 0
        finally:
            if rec.returncode is None:
                rec.kill()
                await rec.wait()
        assert await replay.interrupt() == 0


@pytest.mark.timeout(WALL_LIMIT + 120)  # the wait on market time, then verify and the queries
def test_a_recorded_simulated_day_verifies_and_looks_like_a_trading_day(tmp_path: Path) -> None:
    """The recorder may be dropped as a slow client when the machine is busy (it reconnects, verify reports
    the gap as a warning): the checks are on what it recorded."""
    out = tmp_path / "data"
    asyncio.run(record_day(out))
    verify = subprocess.run(
        cli_argv("kiwoom-tape", "verify", str(out)), capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "Rows with flagged FIDs: 0" in verify.stdout, verify.stdout

    con = connect(out)
    seconds = "(extract(epoch FROM quote_time))"
    (span,) = con.execute(f"SELECT max({seconds}) - min({seconds}) FROM orderbook").fetchone() or (0,)
    assert span >= 10 * 3600, f"the day spans {span / 3600:.1f} h of market time"
    levels = " , ".join(f"ask_qty_{i}, bid_qty_{i}" for i in range(1, 11))
    (biggest,) = con.execute(
        f"SELECT max(greatest({levels}, total_ask_qty, total_bid_qty)) FROM orderbook"
    ).fetchone() or (None,)
    assert biggest is not None and biggest < 10**9
    for item in ITEMS.split(","):
        rows = con.execute(
            f"SELECT floor({seconds} / 3600) AS h, total_ask_qty + total_bid_qty FROM orderbook WHERE item = ?",
            [item],
        ).fetchall()
        hours = sorted({h for h, _ in rows})
        first = statistics.median(x for h, x in rows if h == hours[0])
        last = statistics.median(x for h, x in rows if h == hours[-1])
        assert 0.5 <= last / first <= 2.0, (item, hours[0], first, hours[-1], last)
    kst = "CAST(timezone('Asia/Seoul', quote_time) AS TIME)"
    (quiet, busy) = con.execute(
        f"SELECT count(*) FILTER (WHERE {kst} BETWEEN TIME '15:31:00' AND TIME '15:39:59'), "
        f"count(*) FILTER (WHERE {kst} BETWEEN TIME '09:00:00' AND TIME '15:29:59') "
        "FROM orderbook WHERE item = '005930'"
    ).fetchone() or (None, None)
    assert quiet == 0 and busy, (quiet, busy)
    gaps = con.execute(
        "SELECT DISTINCT ask_price_2 - ask_price_1 FROM orderbook WHERE item = '069500' AND ask_price_2 > 0"
    ).fetchall()
    assert gaps == [(5,)], gaps
    (ah,) = con.execute("SELECT count(*) FROM afterhours").fetchone() or (0,)
    assert ah > 0
