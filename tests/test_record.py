"""The recorder against the mock server on loopback: exact rows, byte-identical frames, faults, kill -9.

The server keeps every REAL frame it wrote (``keep_sent``), so each test compares what was recorded
with what was sent, frame for frame.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pytest
from _cli import cli_argv
from kiwoom_tape.recorder.auth import TokenProvider
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.replay.catalog import connect
from kiwoom_tape.replay.server import Server, serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.fields import FIELDS_0D, FIELDS_0E, Kind
from kiwoom_tape.schemas.market import KST, kst_date_of_ns

from kiwoom_tape.testing import loopback_recorder, run_recorder
from kiwoom_tape.testing import read_table as table

ITEMS = ["005930", "000660", "005930_NX"]
# 15:29:50 at 120x: KRX 0D until 15:30, NXT 0D from 15:30, KRX 0E from 15:40 (docs/protocol.md 5.3)
SIM_START = 15 * 3600 + 29 * 60 + 50
SPEED = 120.0


def run(coro: Awaitable[None], timeout: float = 60) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(bounded())


def real_frames(root: Path) -> list[str]:
    rows = [r for r in table(root, "frames") if r["direction"] == "in" and r["trnm"] == "REAL"]
    rows.sort(key=lambda r: (r["run_id"], r["seq"]))
    return [r["text"] for r in rows]


async def record_for(
    server: Server, root: Path, seconds: float, *, during: Callable[[Recorder], Awaitable[None]] | None = None,
    tokens: TokenProvider | None = None,
) -> Recorder:
    """Record ITEMS x 0D, 0E into ``root``: ``during(recorder)`` (faults, a wait), then ``seconds`` more."""
    tokens = tokens or TokenProvider(server.rest_url, appkey="APPKEY-SECRET-1", secretkey="SECRET-KEY-2")

    async def until(rec: Recorder) -> None:
        if during is not None:
            await during(rec)
        await asyncio.sleep(seconds)

    return await run_recorder(loopback_recorder(server.url, root, ITEMS, ["0D", "0E"], tokens=tokens), until)


def _expected(kind: Kind, raw: str, date: dt.date) -> Any:
    """An independent, naive reading of docs/protocol.md 2.0 to check the normalizer against."""
    s = raw.strip()
    if kind is Kind.PRICE:
        return None if s in ("", "-0", "0", "+0") else abs(int(s))
    if kind in (Kind.QTY, Kind.SIGNED, Kind.CODE):
        return None if s == "" else int(s)
    if kind is Kind.PCT:
        return None if s == "" else float(s)
    if kind is Kind.TIME:
        return dt.datetime.combine(date, dt.time(int(s[:2]), int(s[2:4]), int(s[4:6])), KST)
    return raw


async def until_sent(server: Server, enough: Callable[[Counter[tuple[str, str]]], bool], limit: float) -> None:
    """Wait until ``enough(rows sent per (item, type))``: on what the server sent (``keep_sent``), not on a wall
    duration, which a busy machine fills with less market time. Fails after ``limit`` wall seconds."""
    assert server.sent is not None
    sent = server.sent
    rows: Counter[tuple[str, str]] = Counter()
    seen = 0
    try:
        async with asyncio.timeout(limit):
            while not enough(rows):
                await asyncio.sleep(0.1)
                for _, _, text in sent[seen:]:
                    rows.update((r["item"], r["type"]) for r in json.loads(text)["data"])
                seen = len(sent)
    except TimeoutError:
        raise AssertionError(f"the server sent only {dict(rows)} in {limit:g} s (busy machine?)") from None


@pytest.mark.timeout(240)  # the wait below is on what was sent: longer on a busy machine
def test_records_exactly_what_the_server_sent(tmp_path: Path) -> None:
    def enough(rows: Counter[tuple[str, str]]) -> bool:
        """The 15:30 changeover served: KRX 0D rows (all items), then the NXT twin's, and KRX 0E after 15:40."""
        zero_d = sum(n for (_, t), n in rows.items() if t == "0D")
        zero_e = sum(n for (_, t), n in rows.items() if t == "0E")
        return zero_d > 100 and zero_e > 20 and all(rows[item, "0D"] for item in ITEMS)

    async def main() -> None:
        market = SimulatedMarket(seed=3, items=ITEMS, start=SIM_START)
        async with serve(SimSource(market, speed=SPEED), port=0, keep_sent=True) as server:
            await record_for(server, tmp_path, 0.5, during=lambda _: until_sent(server, enough, 150))
            assert server.sent is not None
            sent = [text for _, _, text in server.sent]
        recorded = real_frames(tmp_path)
        assert recorded == sent  # byte-identical, same order, nothing lost or added
        sent_rows = [r for text in sent for r in json.loads(text)["data"]]
        ob = table(tmp_path, "orderbook")
        ah = table(tmp_path, "afterhours")
        assert len(ob) == sum(r["type"] == "0D" for r in sent_rows) > 100
        assert len(ah) == sum(r["type"] == "0E" for r in sent_rows) > 20
        assert {r["item"] for r in ob} == set(ITEMS)
        assert {r["venue"] for r in ob} == {"KRX", "NXT"}
        # every normalized value equals the simulator's, read naively
        frames = {r["seq"]: r for r in table(tmp_path, "frames")}
        for rows, fields in ((ob, FIELDS_0D), (ah, FIELDS_0E)):
            for row in rows:
                src = json.loads(frames[row["frame_seq"]]["text"])["data"][row["row_idx"]]
                assert src["item"] == row["item"]
                date = kst_date_of_ns(row["recv_ts"])
                for f in fields:
                    assert row[f.column] == _expected(f.kind, src["values"][f.fid], date), (f.column, src)
                assert row["flags"] == 0

    run(main(), timeout=200)


def test_drops_and_an_expired_token_reconnect_without_duplicates(tmp_path: Path) -> None:
    async def main() -> None:
        market = SimulatedMarket(seed=4, items=ITEMS, start=SIM_START)
        async with serve(SimSource(market, speed=SPEED), port=0, keep_sent=True) as server:

            async def faults(rec: Recorder) -> None:
                for n in range(3):
                    await asyncio.sleep(0.8)
                    assert await server.drop_all(1011, f"fault {n}") == 1
                await asyncio.sleep(0.8)
                server.expire_tokens()
                await server.drop_all(1011, "token expired")

            rec = await record_for(server, tmp_path, 1.5, during=faults)
            assert server.sent is not None
            sent = [text for _, _, text in server.sent]
            assert server.stats.logins == 5  # first + 3 drops + after the token renewal
        assert rec.stats.reconnects >= 4
        recorded = real_frames(tmp_path)
        assert recorded == sent
        events = table(tmp_path, "events")
        kinds = [e["kind"] for e in sorted(events, key=lambda e: e["recv_ts"])]
        assert kinds.count("login") == 5
        assert kinds.count("login_failed") == 1
        assert kinds.count("gap_start") == kinds.count("gap_end") == 4
        failed = next(e for e in events if e["kind"] == "login_failed")
        assert "8005" in failed["detail"]
        # every connection re-registered everything
        regs = [json.loads(e["detail"]) for e in events if e["kind"] == "reg_ack" and e["return_code"] == 0]
        assert len(regs) == 5 and all(sorted(r["items"]) == sorted(ITEMS) for r in regs)
        ob = table(tmp_path, "orderbook")
        keys = [(r["run_id"], r["frame_seq"], r["row_idx"]) for r in ob]
        assert len(keys) == len(set(keys))

    run(main())


def test_a_dead_fixed_token_stops_instead_of_looping(tmp_path: Path) -> None:
    async def main() -> None:
        async with serve(SimSource(SimulatedMarket(seed=5, items=ITEMS, start=SIM_START)), port=0,
                         token="the-right-one") as server:
            tokens = TokenProvider(server.rest_url, fixed_token="WRONG-TOKEN-XYZ")
            from kiwoom_tape.schemas.errors import LoginError

            with pytest.raises(LoginError) as info:
                await record_for(server, tmp_path, 5.0, tokens=tokens)
            assert info.value.auth_code == 8005
            assert server.stats.connections == 1

    run(main())
    assert b"WRONG-TOKEN-XYZ" not in b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_kill_9_loses_at_most_the_fsync_window_and_recovers(tmp_path: Path) -> None:
    out = tmp_path / "data"
    env = {**os.environ, "KIWOOM_APPKEY": "APPKEY-SECRET-1", "KIWOOM_SECRETKEY": "SECRET-KEY-2"}

    async def main() -> None:
        market = SimulatedMarket(seed=6, items=ITEMS, start=SIM_START)
        async with serve(SimSource(market, speed=SPEED), port=0, keep_sent=True) as server:
            cmd = cli_argv("record", "--items", ",".join(ITEMS), "--url", server.url, "--out", str(out),
                           "--fsync-interval", "0.05", "-q")
            proc = await asyncio.create_subprocess_exec(*cmd, env=env)
            try:
                # recording for a while: logged in and 2 s of frames sent (a start-up takes seconds on a busy
                # machine, so wait for it rather than for a fixed time)
                async with asyncio.timeout(60):
                    while server.stats.logins < 1 or server.stats.frames_sent < 20:  # noqa: ASYNC110  # counters
                        await asyncio.sleep(0.05)
                await asyncio.sleep(2.0)
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGKILL)
            assert server.stats.logins == 1
            killed_at = time.monotonic()
            await proc.wait()
            assert server.sent is not None
            first = [(t, text) for conn, t, text in server.sent if conn == 1]
            # no Parquet file has been closed yet: everything is in the journal
            assert list((out / "_journal").glob("*.journal"))
            # restart: the journal is recovered before connecting, then recording goes on
            proc2 = await asyncio.create_subprocess_exec(*cmd, env=env)
            async with asyncio.timeout(60):  # SIGTERM during its recovery would stop it there (issue 12)
                while server.stats.logins < 2:  # noqa: ASYNC110  # a server counter, no event to wait on
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            proc2.send_signal(signal.SIGTERM)
            assert await proc2.wait() == 0
            second = [text for conn, _, text in server.sent if conn == 2]
        frames = table(out, "frames")
        runs = sorted({r["run_id"] for r in frames})
        assert len(runs) == 2
        by_run = {
            run_id: [r["text"] for r in sorted(frames, key=lambda r: r["seq"])
                     if r["run_id"] == run_id and r["trnm"] == "REAL"]
            for run_id in runs
        }
        got1, got2 = by_run[runs[0]], by_run[runs[1]]
        texts1 = [text for _, text in first]
        assert got1 == texts1[: len(got1)]  # a prefix: nothing reordered, duplicated or skipped
        # what is missing was sent within the fsync window (plus scheduling slack) before the kill
        lost = first[len(got1):]
        assert all(t > killed_at - 0.05 - 0.5 for t, _ in lost), f"{len(lost)} frames lost beyond the window"
        assert got2 == second
        events = table(out, "events")
        kinds = {e["kind"] for e in events}
        assert {"recovery", "gap_start"} <= kinds
        # one crash gap, in the dead run, from its last durable record to the next run's start
        gaps = connect(out).execute("SELECT run_id, cause, gap_end IS NOT NULL FROM gaps").fetchall()
        assert gaps == [(runs[0], "crash", True)]
        assert not list((out / "_journal").glob("*.journal"))
        for p in out.rglob("*.parquet"):
            ds.dataset(p, format="parquet").to_table()  # every file readable
        blob = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
        assert b"APPKEY-SECRET-1" not in blob and b"SECRET-KEY-2" not in blob

    run(main(), timeout=90)


def test_duckdb_reads_the_dataset(tmp_path: Path) -> None:
    async def main() -> None:
        async with serve(SimSource(SimulatedMarket(seed=8, items=ITEMS, start=SIM_START), speed=SPEED),
                         port=0) as server:
            await record_for(server, tmp_path, 2.0)

    run(main())
    con = duckdb.connect()
    n = con.sql(
        f"select count(*) from read_parquet('{tmp_path}/orderbook/*/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert n[0][0] > 0


@pytest.mark.parametrize(("env_pool", "expected"), [(None, "jemalloc"), ("system", "system")])
def test_record_gives_arrow_memory_back_unless_the_user_chose_a_pool(env_pool: str | None, expected: str) -> None:
    """``record`` switches Arrow to jemalloc (it returns freed memory); ARROW_DEFAULT_MEMORY_POOL wins."""
    import pyarrow as pa

    if expected == "jemalloc":
        try:
            pa.jemalloc_memory_pool()
        except NotImplementedError:
            pytest.skip("this pyarrow is built without jemalloc")
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if env_pool:
        env["ARROW_DEFAULT_MEMORY_POOL"] = env_pool
    code = ("from kiwoom_tape.recorder.cli import _use_returning_memory_pool as use; use(); "
            "import pyarrow as pa; print(pa.default_memory_pool().backend_name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == expected


def test_record_on_kick_exit_ends_with_its_own_exit_code(tmp_path: Path) -> None:
    """R10001 (another session with the same app key took over) under --on-kick exit: exit code 3, the gap closed."""
    from kiwoom_tape.replay.faults import FaultScript

    out = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIWOOM_")}  # a loopback mock needs none
    script = FaultScript.parse('[[fault]]\nkind = "kick"\nat = "1s"\n', source="kick")

    async def main() -> tuple[int, str]:
        market = SimulatedMarket(seed=9, items=ITEMS, start=SIM_START)
        async with serve(SimSource(market, speed=SPEED), port=0, faults=script) as server:
            cmd = cli_argv("record", "--items", ",".join(ITEMS), "--url", server.url, "--out", str(out),
                           "--on-kick", "exit", "--duration", "60s", "-q")
            proc = await asyncio.create_subprocess_exec(*cmd, env=env, stderr=asyncio.subprocess.PIPE)
            _, err = await proc.communicate()
            assert server.stats.connections == 1, "it connected again after the kick"
        return proc.returncode or 0, err.decode()

    code, err = asyncio.run(asyncio.wait_for(main(), 45))
    assert code == 3, err
    assert "took over (R10001)" in err and "--on-kick exit" in err
    events = sorted(table(out, "events"), key=lambda e: e["recv_ts"])
    gaps = [json.loads(e["detail"]) for e in events if e["kind"] in ("gap_start", "gap_end")]
    assert gaps == [{"cause": "kicked"}, {"cause": "kicked", "stopped": True}]
    assert table(out, "orderbook"), "it recorded before the kick"


def test_record_help_documents_the_exit_codes() -> None:
    from click.testing import CliRunner
    from kiwoom_tape.recorder.cli import EXIT_KICKED, record_command

    text = CliRunner().invoke(record_command, ["--help"]).output
    assert "Exit codes:" in text and f"{EXIT_KICKED}  another session with the same app key took over" in text
    assert "--on-kick" in text and "--kick-wait" in text and "--allow-insecure-url" in text
    assert next(p for p in record_command.params if p.name == "kick_wait").default >= 60  # not a fight
