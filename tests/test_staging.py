"""Files being written live in ``DIR/_tmp/`` (schemas.layout): every reader of a table folder sees only
complete files while a recording runs, with the counts of the DuckDB catalog's views."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from _clock import FakeClock
from hypothesis import given
from hypothesis import strategies as st
from kiwoom_tape.recorder.recovery import recover
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.replay.catalog import connect
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.fields import FIELDS_BY_TYPE
from kiwoom_tape.schemas.protocol import encode_real_frame, encode_real_row

from kiwoom_tape.verify import verify

RUN = layout.new_run_id(1_795_300_000_000_000_000, 0x5A6E)
T0 = 1_795_330_000_000_000_000  # 2026-11-22 15:46:40 KST
TABLES = ("frames", "orderbook", "afterhours", "trades", "events")



def frame(i: int) -> str:
    """A REAL frame with one 0D, one 0E and one 0B row (every table gets rows)."""
    rows = []
    for real_type in ("0D", "0E", "0B"):
        values = {f.fid: "1000" for f in FIELDS_BY_TYPE[real_type]}
        values["21" if real_type == "0D" else "20"] = f"{154640 + i % 20:06d}"
        rows.append(encode_real_row(real_type, "005930", json.dumps(values, separators=(",", ":"))))
    return encode_real_frame(rows)


def polars_count(path: str) -> int:
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def duckdb_count(glob: str) -> int:
    with duckdb.connect() as con:
        row = con.execute("SELECT count(*) FROM read_parquet(?)", [glob]).fetchone()
    assert row is not None
    return int(row[0])


def view_counts(root: Path) -> dict[str, int]:
    with connect(root) as con:
        out = {}
        for t in TABLES:
            row = con.execute(f"SELECT count(*) FROM {t}").fetchone()
            assert row is not None
            out[t] = int(row[0])
        return out


def test_a_recording_in_progress_reads_the_same_in_polars_duckdb_and_the_views(tmp_path: Path) -> None:
    root = tmp_path / "data"
    clock = FakeClock()
    store = Store(root, RUN, flush_rows=5, roll_seconds=60, monotonic=clock).open()
    try:
        store.add_event(T0, "login", {"items": 1})
        for i in range(12):
            store.add_frame(T0 + (i + 1) * 10**6, "in", frame(i))
        clock.now += 60
        store.tick()  # segment 0 rolls: final files in every table
        assert store.segment == 1
        for i in range(12, 30):
            store.add_frame(T0 + (i + 1) * 10**6, "in", frame(i))
        store.add_event(T0 + 31 * 10**6, "reg_ack", {"items": 1})
        store.tick()
        store.sync()
        # segment 1 is open, with row groups written to its files in _tmp/ (flush_rows=5), none in the tables
        staged = sorted(p.name.split(".")[0] for p in (root / layout.STAGING_DIR).iterdir())
        assert staged == ["afterhours", "frames", "orderbook", "trades"]
        assert not list(root.glob("*/*/*" + layout.TMP_SUFFIX)) and not list(root.glob("*/*/.*"))

        views = view_counts(root)
        assert views == {"frames": 12, "orderbook": 12, "afterhours": 12, "trades": 12, "events": 1}
        for t in TABLES:
            assert polars_count(str(root / t)) == views[t], t  # the folder: every file must be Parquet
            assert duckdb_count(f"{root}/{t}/**") == views[t], t  # a ** glob matches every file
            assert polars_count(f"{root}/{t}/**/*") == views[t], t
    finally:
        store.close()
    after = view_counts(root)
    assert after == {"frames": 30, "orderbook": 30, "afterhours": 30, "trades": 30, "events": 2}
    assert {t: polars_count(str(root / t)) for t in TABLES} == after
    assert list((root / layout.STAGING_DIR).iterdir()) == []  # everything renamed into place


def test_verify_warns_about_files_left_in_tmp_and_recover_removes_them(tmp_path: Path) -> None:
    root = tmp_path / "data"
    store = Store(root, RUN, flush_rows=2).open()
    for i in range(5):
        store.add_frame(T0 + i * 10**6, "in", frame(i))
    store.sync()
    store._journal.close()  # type: ignore[union-attr]  # the process dies: its journal lock goes with it
    store._journal = None
    staged = sorted((root / layout.STAGING_DIR).iterdir())
    assert staged
    (root / layout.STAGING_DIR / ".compact.lock").write_bytes(b"")  # other writers' names: not warned about
    (root / layout.STAGING_DIR / "compact-1").mkdir()
    report = verify(root)
    warned = [p.message for p in report.problems if "a temporary file" in p.message]
    assert len(warned) == len(staged), warned
    assert all(any(f"{layout.STAGING_DIR}/{p.name}" in w for w in warned) for p in staged), warned
    rec = recover(root)
    assert sorted(rec.removed) == [str(p) for p in staged] and rec.frames == 5
    assert sorted(p.name for p in (root / layout.STAGING_DIR).iterdir()) == [".compact.lock", "compact-1"]
    assert view_counts(root)["orderbook"] == 5
    assert not [p for p in verify(root).problems if "temporary" in p.message]


@given(
    table=st.sampled_from(layout.TABLE_NAMES),
    date=st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)),
    run=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,20}", fullmatch=True),
    segment=st.integers(0, 10**7),
)
def test_staging_names_round_trip(table: str, date: dt.date, run: str, segment: int) -> None:
    final = layout.part_filename(run, segment, table)
    name = layout.staging_filename(table, date, final)
    assert "/" not in name and name.endswith(layout.TMP_SUFFIX) and not name.endswith(".parquet")
    assert layout.parse_staging_filename(name) == (table, date, final)


@pytest.mark.parametrize("name", [
    "notes.tmp", "orderbook.2026-11-22..tmp", "orderbook.2026-13-22.part-x-000000.parquet.tmp",
    "orderbook.20261122.part-x-000000.parquet.tmp", "quotes.2026-11-22.part-x-000000.parquet.tmp",
    "orderbook.2026-11-22.part-x-000000.parquet", "orderbook.2026-11-22..part-x-000000.parquet.tmp",
])
def test_other_names_are_not_staging_names(name: str) -> None:
    assert layout.parse_staging_filename(name) is None
