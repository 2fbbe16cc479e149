"""kill -9 of ``record`` at the default fsync interval (0.2 s), at random instants and at the bad ones.

One long recording of the simulator, restarted after every kill. The kills land at random instants
after login, right after a run's journal appears (before its first fsync: an empty segment), during a
segment roll (the moment the run's next journal appears) and during the next start's recovery of the
journal a kill left. After the last run stops with SIGTERM: every Parquet file is readable, nothing
is duplicated or reordered, each run stored a prefix of what the server sent it, every frame lost was
sent within the fsync interval (plus receive slack) or the last read batch before its kill, and the
``gaps`` view holds exactly one ``crash`` gap per run that was killed, from its last durable record to
the next run's start. The figures go to the reliability summary (conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
from _cli import cli_argv
from kiwoom_tape.replay.catalog import connect
from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.layout import JOURNAL_DIR, parse_journal_filename

from kiwoom_tape.verify import verify

from .conftest import Report, SecretAudit

FSYNC = 0.2
"""The default --fsync-interval: not passed on the command line."""
SLACK = 0.3
"""Receive and scheduling on a loaded 2-core machine, on top of the fsync interval."""
BATCH = 64
"""One read batch (Store.defer_frames): frames read from the socket together."""
SCHEDULE = (
    "random", "early", "random", "recovery", "roll", "random", "early", "random",
    "recovery", "random", "roll", "random", "recovery", "random", "roll", "random",
)
"""The kills, in order: the last run after them stops with SIGTERM."""


def _journals(out: Path) -> dict[str, int]:
    """Journal file name -> size, of everything in the journal directory now."""
    jdir = out / JOURNAL_DIR
    sizes = {}
    for p in jdir.glob("*.journal") if jdir.is_dir() else []:
        try:
            sizes[p.name] = p.stat().st_size
        except FileNotFoundError:
            continue
    return sizes


def _runs(names: dict[str, int]) -> set[str]:
    return {parsed[0] for n in names if (parsed := parse_journal_filename(n)) is not None}


def _table(out: Path, name: str, columns: list[str]) -> list[dict[str, Any]]:
    t = ds.dataset(out / name, format="parquet", partitioning="hive").to_table(columns=columns)
    t = t.set_column(0, "recv_ts", t["recv_ts"].cast("int64"))
    return t.to_pylist()  # type: ignore[no-any-return]


async def _until(cond: Any) -> None:
    """Poll ``cond`` every millisecond (files and server counters: no event to wait on), for 30 s at most."""
    async with asyncio.timeout(30):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


def test_kill_9_at_random_and_bad_instants(tmp_path: Path, report: Report, audit: SecretAudit) -> None:
    out = tmp_path / "data"
    rng = random.Random(20261202)
    env = {**os.environ, "KIWOOM_APPKEY": audit.secret("appkey"), "KIWOOM_SECRETKEY": audit.secret("secretkey")}
    kills: list[dict[str, Any]] = []  # per kill: mode, time, connections made, the run it killed, what it hit
    report.kills = len(SCHEDULE)
    report.fsync_ms, report.slack_ms = FSYNC * 1000, SLACK * 1000

    async def main() -> list[tuple[int, float, str]]:
        market = SimulatedMarket(seed=12, items=["005930_NX", "000660_NX", "035420_NX"], start=16 * 3600)
        async with serve(SimSource(market, speed=30.0), port=0, keep_sent=True) as server:
            cmd = cli_argv("record", "--items", "005930_NX,000660_NX,035420_NX", "--url", server.url,
                           "--out", str(out), "--roll-minutes", "0.1", "-q")
            known: set[str] = set()
            for mode in (*SCHEDULE, "stop"):
                before = _journals(out)
                conns = server.stats.connections
                logins = server.stats.logins
                proc = await asyncio.create_subprocess_exec(*cmd, env=env, stderr=asyncio.subprocess.PIPE)
                hit = mode
                logged_in = lambda n=logins: server.stats.logins > n  # noqa: E731
                if mode == "early":  # its journal exists, nothing synced into it yet
                    await _until(lambda k=frozenset(known): _runs(_journals(out)) - k)
                elif mode == "recovery":  # the journal the last kill left is being recovered
                    await _until(lambda b=before: _journals(out) != b)
                elif mode == "roll":  # the run's next segment appears
                    await _until(logged_in)
                    await _until(lambda: any(n.endswith("-000001.journal") for n in _journals(out)))
                else:
                    await _until(logged_in)
                    await asyncio.sleep(rng.uniform(0.0, 1.0))
                if mode == "stop":
                    await asyncio.sleep(1.0)
                    proc.send_signal(signal.SIGTERM)
                    async with asyncio.timeout(30):
                        assert await proc.wait() == 0
                else:
                    proc.send_signal(signal.SIGKILL)
                    killed = time.monotonic()
                    await proc.wait()
                    after = _journals(out)
                    new = _runs(after) - known
                    assert len(new) <= 1
                    if mode == "recovery" and not new and set(before) <= set(after):
                        hit = "recovery (interrupted)"
                    if mode == "roll" and sum(n.startswith(tuple(new)) for n in after) > 1:
                        hit = "roll (both segments on disk)"
                    kills.append({"mode": mode, "hit": hit, "at": killed, "conns": range(conns + 1,
                                  server.stats.connections + 1), "run": next(iter(new), None)})
                    known |= new
                assert proc.stderr is not None
                audit.text(f"record stderr, {mode}", await proc.stderr.read())
            for tok in server._issued:
                audit.add(tok)
            assert server.sent is not None
            return list(server.sent)

    sent = asyncio.run(main())
    assert not list((out / JOURNAL_DIR).glob("*.journal")), "the last run recovered and closed everything"
    for p in out.rglob("*.parquet"):
        pq.read_table(p)  # every file on disk is readable
    frames = _table(out, "frames", ["recv_ts", "run_id", "seq", "trnm", "text"])
    keys = [(r["run_id"], r["seq"]) for r in frames]
    assert len(keys) == len(set(keys)), "duplicated frames"
    by_run: dict[str, list[str]] = {}
    for r in sorted(frames, key=lambda r: (r["run_id"], r["seq"])):
        if r["trnm"] == "REAL":
            by_run.setdefault(r["run_id"], []).append(r["text"])
    worst_lost = total_lost = 0
    worst_age = 0.0
    for k in kills:
        mine = [(t, text) for c, t, text in sent if c in k["conns"]]
        got = by_run.get(k["run"], []) if k["run"] else []
        assert got == [text for _, text in mine[: len(got)]], f"{k['mode']} kill: not a prefix of what was sent"
        lost = mine[len(got):]
        window = [i for i, (t, _) in enumerate(lost) if k["at"] - t > FSYNC + SLACK]
        assert all(i >= len(lost) - BATCH for i in window) and len(window) <= BATCH, (
            f"{k['mode']} kill: lost a frame sent {k['at'] - lost[0][0]:.3f} s before the kill, "
            "beyond the fsync interval and the last read batch"
        )
        worst_lost, total_lost = max(worst_lost, len(lost)), total_lost + len(lost)
        worst_age = max(worst_age, max((k["at"] - t for t, _ in lost), default=0.0))

    # exactly one crash gap per killed run, from its last durable record to the next run's start
    crashed = [k["run"] for k in kills if k["run"]]
    events = _table(out, "events", ["recv_ts", "run_id", "kind"])
    last_own: dict[str, int] = {}
    for r in frames:
        last_own[r["run_id"]] = max(last_own.get(r["run_id"], 0), r["recv_ts"])
    for e in events:
        if e["kind"] not in ("recovery", "gap_start", "journal_damage"):
            last_own[e["run_id"]] = max(last_own.get(e["run_id"], 0), e["recv_ts"])
    gaps = connect(out).execute(
        "SELECT run_id, cause, epoch_ns(gap_start), epoch_ns(gap_end) FROM gaps ORDER BY gap_start"
    ).fetchall()
    assert Counter(r for r, c, _, _ in gaps if c == "crash") == Counter(crashed), gaps
    assert all(c == "crash" for _, c, _, _ in gaps), gaps
    for run_id, _c, start, end in gaps:
        assert end is not None and end >= start, "every crash gap ends at the next run's start"
        # from the run's last durable record (or its last segment's start, when a roll had just emptied it)
        stored = last_own.get(run_id, 0) // 1000 * 1000  # DuckDB's timestamps are in microseconds
        assert start >= stored, "a crash gap starts after everything its run stored"
    assert verify(out).ok(), "verify finds no error after the kills"
    report.kills_survived = len(kills)
    report.worst_lost_per_kill, report.total_lost, report.oldest_lost_ms = worst_lost, total_lost, worst_age * 1000
    report.crashes, report.crash_gaps = len(crashed), sum(1 for _, c, _, _ in gaps if c == "crash")
    report.kill_modes = dict(Counter(k["hit"] for k in kills))
