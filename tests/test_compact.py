"""``kiwoom-tape compact``: same rows, same replay, fewer sorted files; refusals; idempotence; verification."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from kiwoom_tape.recorder.journal import JournalWriter
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.replay.recorded import RecordedSource, Recording
from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.tape import Cursor
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.errors import DatasetError
from kiwoom_tape.schemas.market import KST
from kiwoom_tape.schemas.versions import recv_ns_of
from test_replay_recorded import login_reg, recv_reals
from websockets.asyncio.client import connect

from bench.frames import make_workload
from kiwoom_tape import compact_write
from kiwoom_tape.cli import cli
from kiwoom_tape.compact import compact
from kiwoom_tape.compact_plan import META_COMPACTION, blockers
from kiwoom_tape.verify import verify

DAY = dt.date(2026, 11, 23)
DAY_NS = int(dt.datetime.combine(DAY, dt.time(0), KST).timestamp()) * 1_000_000_000
ITEMS = ["005930", "000660", "005930_NX", "035720"]
RUNS = ("20261123T000000Z-aaaaaa", "20261123T000001Z-bbbbbb")


def make_day(root: Path, rows: int = 3000) -> None:
    """Two runs recording at once (frames interleaved in time), each rolling many small segments."""
    wl = make_workload(rows, items=ITEMS)
    stores = [Store(root, run, flush_rows=97, roll_bytes=30_000, clock_ns=lambda: DAY_NS) for run in RUNS]
    for s in stores:
        s.open()
        s.add_event(DAY_NS + 35_000 * 10**9, "connect", {"url": "ws://127.0.0.1"})
    try:
        for i, (data, t) in enumerate(zip(wl.frames, wl.times, strict=True)):
            s = stores[i % 2]
            ns = DAY_NS + int(t * 1e9) + i % 2  # the two runs' frames interleave
            assert s.add_real_frame(ns, data) is not None
            if i % 50 == 0:
                s.add_event(ns, "ping_summary", {"n": i})
                s.tick()
    finally:
        for s in stores:
            s.close()


@pytest.fixture(scope="module")
def base_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compact") / "data"
    make_day(root)
    return root


@pytest.fixture
def day(base_day: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(base_day, root)
    return root


def files(root: Path, table: str) -> list[Path]:
    return sorted((root / table / f"date={DAY}").glob("*.parquet"))


def rows_of(root: Path, table: str) -> list[tuple[Any, ...]]:
    """Every row of the table's files of DAY, as sorted tuples (nanosecond times as ints)."""
    out: list[tuple[Any, ...]] = []
    for f in files(root, table):
        t = pq.read_table(f)
        cols = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in t.columns]
        out.extend(zip(*(c.to_pylist() for c in cols), strict=True))
    return sorted(out, key=repr)


def replayed(root: Path) -> list[tuple[int, bytes]]:
    """What the replay server is handed, in order: (receive time, exact frame bytes) of the day."""
    rec = Recording.open(root, DAY)
    cur = Cursor(rec, rec.day_start_ns, rec.day_start_ns + 86_400 * 10**9, 500)
    out: list[tuple[int, bytes]] = []
    try:
        while (t := cur.read()) is not None:
            out.extend(zip(t.column("recv_ts").to_pylist(),
                           t.column("text").cast(pa.binary()).to_pylist(), strict=True))
    finally:
        cur.close()
    return out


TABLES = ("frames", "orderbook", "afterhours", "events")


def test_compaction_keeps_every_row_column_and_metadata_and_replays_byte_exact(day: Path) -> None:
    before = {t: rows_of(day, t) for t in TABLES}
    schemas = {t: pq.read_schema(files(day, t)[0]) for t in TABLES}
    n_files = {t: len(files(day, t)) for t in TABLES}
    tape = replayed(day)
    assert len(tape) > 2000
    assert n_files["orderbook"] > 4 and len({r[1] for r in before["frames"]}) == 2  # many segments, two runs

    (result,) = compact(day, DAY)

    assert result.status == "compacted"
    for t in TABLES:
        assert rows_of(day, t) == before[t], t
        new = pq.read_schema(files(day, t)[0])
        assert pa.schema(list(new)).equals(pa.schema(list(schemas[t])), check_metadata=True)  # field metadata
        meta = new.metadata or {}
        assert meta[META_COMPACTION].decode() == result.compaction_id
        assert {k: v for k, v in meta.items() if k != META_COMPACTION} == schemas[t].metadata
    assert len(files(day, "frames")) == 2  # one per run
    assert all(len(files(day, t)) == 1 for t in ("orderbook", "afterhours", "events"))
    assert replayed(day) == tape
    book = pq.read_table(files(day, "orderbook")[0], columns=["item", "recv_ts", "recv_sub_us", "run_id",
                                                                "frame_seq", "row_idx"])
    keys = list(zip(*(book.column(c).cast(pa.int64()).to_pylist() if c == "recv_ts" else book.column(c).to_pylist()
                      for c in book.column_names), strict=True))
    assert keys == sorted(keys)
    report = verify(day)
    assert report.ok(strict=False), report
    assert not (day / "_tmp" / f"compact-{result.compaction_id}").exists()


def test_compacting_a_compacted_day_is_a_no_op_that_says_so(day: Path) -> None:
    compact(day, DAY)
    names = {t: files(day, t) for t in TABLES}
    mtimes = {p: p.stat().st_mtime_ns for ps in names.values() for p in ps}
    res = CliRunner().invoke(cli, ["compact", str(day), "--date", str(DAY)])
    assert res.exit_code == 0, res.output
    assert "already compacted" in res.stdout and "nothing to do" in res.stdout
    assert {t: files(day, t) for t in TABLES} == names
    assert {p: p.stat().st_mtime_ns for ps in names.values() for p in ps} == mtimes


def test_a_day_bigger_than_memory_is_sorted_through_spill_files(day: Path) -> None:
    before = rows_of(day, "orderbook")
    msgs: list[str] = []
    compact(day, DAY, bucket_rows=700, progress=msgs.append)  # 3000 0D rows: several ranges of items
    assert any("items 2/" in m for m in msgs), msgs
    assert rows_of(day, "orderbook") == before
    t = pq.read_table(files(day, "orderbook")[0], columns=["item", "recv_ts", "recv_sub_us"])
    keys = list(zip(t.column("item").to_pylist(), recv_ns_of(t).to_pylist(), strict=True))
    assert keys == sorted(keys)


def test_dry_run_prints_the_plan_and_changes_nothing(day: Path) -> None:
    names = {t: files(day, t) for t in TABLES}
    staged = sorted((day / "_tmp").rglob("*")) if (day / "_tmp").exists() else []
    res = CliRunner().invoke(cli, ["compact", str(day), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert f"{DAY}: would compact 4 table(s)" in res.stderr
    assert "orderbook:" in res.stderr and "by item, recv_ts" in res.stderr
    assert {t: files(day, t) for t in TABLES} == names
    assert (sorted((day / "_tmp").rglob("*")) if (day / "_tmp").exists() else []) == staged


def test_a_day_without_files_or_a_directory_that_is_no_dataset_is_a_clear_error(day: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["compact", str(day), "--date", "2001-01-01"])
    assert res.exit_code == 1 and "has no files dated 2001-01-01" in res.output
    res = CliRunner().invoke(cli, ["compact", str(tmp_path)])
    assert res.exit_code == 1 and "is not a kiwoom-tape dataset" in res.output


def test_help_teaches_with_examples() -> None:
    res = CliRunner().invoke(cli, ["compact", "--help"])
    assert res.exit_code == 0
    assert "kiwoom-tape compact data --date 2026-11-20" in res.output and "--dry-run" in res.output


def test_a_checksum_mismatch_changes_nothing(day: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = compact_write.checksum
    monkeypatch.setattr("kiwoom_tape.compact.checksum",
                        lambda con, fs: real(con, fs[:-1]) if len(fs) > 1 else (0, 0))
    names = {t: files(day, t) for t in TABLES}
    with pytest.raises(DatasetError, match="does not check out"):
        compact(day, DAY)
    assert {t: files(day, t) for t in TABLES} == names
    assert not any((day / "_tmp").glob("compact-*"))


def test_refuses_a_day_a_live_recorder_may_write(day: Path) -> None:
    store = Store(day, "20261123T235900Z-cccccc", clock_ns=lambda: DAY_NS + 3600 * 10**9)
    store.open()  # its journal is locked, created on DAY
    try:
        reasons = blockers(day, DAY)
        assert len(reasons) == 1 and "running recorder" in reasons[0]
        assert blockers(day, DAY - dt.timedelta(days=1)) == []  # an earlier day is finished
        res = CliRunner().invoke(cli, ["compact", str(day), "--date", str(DAY)])
        assert res.exit_code == 1
        assert "may still be written" in res.output and "running recorder" in res.output
    finally:
        store.close()
    assert blockers(day, DAY) == []


def test_refuses_a_day_with_a_crashed_recorders_journal_or_temp_files(day: Path) -> None:
    jdir = day / layout.JOURNAL_DIR
    w = JournalWriter(jdir / layout.journal_filename("20261122T150000Z-dddddd", 0), "20261122T150000Z-dddddd", 0,
                      created_ns=DAY_NS - 3600 * 10**9)  # opened before midnight: may hold DAY's rows
    w.close()  # not removed: what a crash leaves
    (reason,) = blockers(day, DAY)
    assert "record recover" in reason
    assert blockers(day, DAY + dt.timedelta(days=1)) == []
    (jdir / layout.journal_filename("20261122T150000Z-dddddd", 0)).unlink()
    (day / "orderbook" / f"date={DAY}" / ".part-x-000009.parquet.tmp").write_bytes(b"")
    (reason,) = blockers(day, DAY)
    assert "temporary part file" in reason
    (day / "orderbook" / f"date={DAY}" / ".part-x-000009.parquet.tmp").unlink()
    (day / "events" / f"date={DAY}" / "notes.txt").write_text("mine")
    (reason,) = blockers(day, DAY)
    assert "'notes.txt', which is not a part file" in reason
    (result,) = compact(day)  # every day: this one is skipped, not an error
    assert result.status == "refused"


def client_receives(root: Path, n: int) -> list[str]:
    """The REAL frames a client registered for every item gets from ``replay`` of the day at max speed."""

    async def main() -> list[str]:
        async with serve(RecordedSource(root, date=DAY, speed=None, start_delay=0.1), port=0) as server, \
                connect(server.url, max_size=None) as ws:
            await login_reg(ws, ITEMS, ["0D", "0E"])
            return await recv_reals(ws, n, quiet=0.5)

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_a_client_of_the_replay_receives_the_same_frames_after_compaction(day: Path) -> None:
    n = len(replayed(day))
    before = client_receives(day, n)
    compact(day, DAY)
    assert client_receives(day, n) == before


def test_the_checksum_sees_one_changed_byte_of_one_frame(base_day: Path, tmp_path: Path) -> None:
    src = files(base_day, "frames")[0]
    t = pq.read_table(src)
    texts = t.column("text").to_pylist()
    texts[7] = texts[7].replace('"0D"', '"0d"', 1)
    changed = tmp_path / "changed.parquet"
    pq.write_table(t.set_column(t.schema.get_field_index("text"), t.schema.field("text"), pa.array(texts)), changed)
    same = tmp_path / "same.parquet"
    pq.write_table(t, same)
    con = duckdb.connect()
    try:
        assert compact_write.checksum(con, [src]) == compact_write.checksum(con, [same])
        assert compact_write.checksum(con, [src]) != compact_write.checksum(con, [changed])
    finally:
        con.close()


def test_one_compaction_at_a_time(day: Path) -> None:
    import fcntl

    (day / "_tmp").mkdir(exist_ok=True)
    with open(day / "_tmp" / ".compact.lock", "w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(DatasetError, match="another `kiwoom-tape compact` is running"):
            compact(day, DAY)
    assert all(len(files(day, t)) > 1 for t in ("frames", "orderbook"))
