"""kill -9 of the recorder at 20 random instants of one long recording.

After every restart: the journal is recovered, every Parquet file is readable, nothing is duplicated
or reordered, and what is lost was sent within the fsync window before the kill. The figures (kills
survived, worst frames lost per kill, the oldest lost frame against the fsync bound) go to the
reliability summary (conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
from _cli import cli_argv

from replay.server import serve
from replay.simulator import SimulatedMarket
from replay.sources import SimSource

from .conftest import Report, SecretAudit

KILLS = 20
FSYNC = 0.05
SLACK = 0.3  # receive + scheduling on a loaded 2-core machine, on top of the fsync window


def _frames(out: Path) -> list[dict[str, Any]]:
    t = ds.dataset(out / "frames", format="parquet", partitioning="hive").to_table(
        columns=["recv_ts", "run_id", "seq", "trnm", "text"]
    )
    t = t.set_column(0, "recv_ts", t["recv_ts"].cast("int64"))
    return t.to_pylist()  # type: ignore[no-any-return]


def test_kill_9_at_random_instants(tmp_path: Path, report: Report, audit: SecretAudit) -> None:
    out = tmp_path / "data"
    rng = random.Random(20261122)
    env = {**os.environ, "KIWOOM_APPKEY": audit.secret("appkey"), "KIWOOM_SECRETKEY": audit.secret("secretkey")}
    kill_times: list[float] = []
    report.kills = KILLS

    async def main() -> list[tuple[int, float, str]]:
        market = SimulatedMarket(seed=12, items=["005930_NX", "000660_NX", "035420_NX"], start=16 * 3600)
        async with serve(SimSource(market, speed=30.0), port=0, keep_sent=True) as server:
            cmd = cli_argv("recorder.cli", "--items", "005930_NX,000660_NX,035420_NX", "--url", server.url,
                           "--out", str(out), "--fsync-interval", str(FSYNC), "-q")
            for k in range(KILLS + 1):
                proc = await asyncio.create_subprocess_exec(*cmd, env=env, stderr=asyncio.subprocess.PIPE)
                async with asyncio.timeout(30):
                    while server.stats.logins < k + 1:  # noqa: ASYNC110  # a server counter, no event to wait on
                        await asyncio.sleep(0.01)
                await asyncio.sleep(rng.uniform(0.05, 1.0))
                if k < KILLS:
                    proc.send_signal(signal.SIGKILL)
                    kill_times.append(time.monotonic())
                    await proc.wait()
                else:
                    proc.send_signal(signal.SIGTERM)
                    async with asyncio.timeout(30):
                        assert await proc.wait() == 0
                assert proc.stderr is not None
                audit.text(f"record stderr, run {k + 1}", await proc.stderr.read())
            for tok in server._issued:
                audit.add(tok)
            assert server.sent is not None
            return list(server.sent)

    sent = asyncio.run(main())
    assert not list((out / "_journal").glob("*.journal")), "the last run recovered and closed everything"
    for p in out.rglob("*.parquet"):
        pq.read_table(p)  # every file on disk is readable
    frames = _frames(out)
    runs = sorted({r["run_id"] for r in frames}, key=lambda r: min(f["recv_ts"] for f in frames if f["run_id"] == r))
    assert len(runs) == KILLS + 1
    keys = [(r["run_id"], r["seq"]) for r in frames]
    assert len(keys) == len(set(keys)), "duplicated frames"
    worst_lost, worst_age, total_lost = 0, 0.0, 0
    for conn, run_id in enumerate(runs, start=1):
        ordered = sorted(frames, key=lambda r: r["seq"])
        got = [r["text"] for r in ordered if r["run_id"] == run_id and r["trnm"] == "REAL"]
        mine = [(t, text) for c, t, text in sent if c == conn]
        assert got == [text for _, text in mine[: len(got)]], f"run {conn}: not a prefix of what was sent"
        lost = mine[len(got):]
        if conn <= KILLS:
            killed = kill_times[conn - 1]
            age = max((killed - t for t, _ in lost), default=0.0)
            worst_lost, worst_age = max(worst_lost, len(lost)), max(worst_age, age)
            total_lost += len(lost)
            assert age <= FSYNC + SLACK, f"kill {conn}: lost a frame sent {age:.3f} s before the kill"
            report.kills_survived += 1
        else:
            assert not lost, "the run stopped with SIGTERM lost frames"
    kinds = [r["kind"] for r in ds.dataset(out / "events", format="parquet", partitioning="hive").to_table(
        columns=["kind"]).to_pylist()]
    assert kinds.count("recovery") >= KILLS - 2  # a kill before the first frame leaves nothing to recover
    assert kinds.count("gap_start") >= KILLS - 2
    report.worst_lost_per_kill, report.total_lost = worst_lost, total_lost
    report.oldest_lost_ms, report.fsync_ms, report.slack_ms = worst_age * 1000, FSYNC * 1000, SLACK * 1000
