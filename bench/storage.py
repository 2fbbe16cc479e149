"""Storage: bytes on disk per 0D row, raw (``frames``) and normalized (``orderbook``), after rolling.

The workload's frames, in market-time order, go through :class:`kiwoom_tape.recorder.store.Store` exactly as
``record`` stores them (the fast path, the general path for the rest), stamped with their market
time on a trading day; the store is closed, so every file is final. Bytes are the files' sizes.

The unit is one 0D row (one book update: what Kiwoom's wire spends ~2 KB on and Databento's MBP-10
spends 368 B on): ``frames`` bytes are shared by the rows of their frames (0E frames included,
which makes the raw figure slightly pessimistic).

Then each writer lever is measured on the same rows, alone, by rewriting the tables in memory: the
pre-change writer (pyarrow's defaults), zstd level, dictionary encoding, the frames' page size, the
orderbook's row groups sorted by item; and, for reference, what an end-of-day compaction would give
(the day sorted by item and time, large row groups, zstd level 9).
"""

from __future__ import annotations

import datetime as dt
import io
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from kiwoom_tape.recorder.store import ROW_GROUP_ORDER, Store, parquet_options
from kiwoom_tape.schemas.market import KST
from kiwoom_tape.schemas.protocol import decode_server_message
from kiwoom_tape.schemas.tables import TABLES

from bench.frames import Workload
from bench.report import Config, Figure

__all__ = ["TRADING_DAY", "run", "store_workload"]

TRADING_DAY = dt.date(2026, 11, 23)
TARGET_B_PER_ROW = 250.0


def _day_ns() -> int:
    return int(dt.datetime.combine(TRADING_DAY, dt.time(0), KST).timestamp()) * 1_000_000_000


def store_workload(root: Path, wl: Workload, run_id: str = "20261123T000000Z-bench0") -> dict[str, Any]:
    """Store every frame of ``wl`` as ``record`` would; returns counts and the CPU seconds it took."""
    base = _day_ns()
    fast = general = 0
    t = time.process_time()
    with Store(root, run_id) as store:
        for data, mt in zip(wl.frames, wl.times, strict=True):
            ns = base + int(mt * 1e9)
            if store.add_real_frame(ns, data) is not None:
                fast += 1
                continue
            general += 1
            msg = decode_server_message(data)
            store.add_frame(ns, "in", data.decode("utf-8", "replace"), rows=getattr(msg, "rows", ()), trnm="REAL")
    return {"fast_frames": fast, "general_frames": general, "cpu_s": time.process_time() - t}


def _bytes(root: Path, table: str) -> int:
    return sum(p.stat().st_size for p in (root / table).glob("date=*/*.parquet"))


def _read(root: Path, table: str) -> pa.Table:
    t = ds.dataset(root / table, format="parquet", partitioning="hive").to_table()
    t = t.drop_columns([c for c in t.column_names if c == "date"])
    return t.cast(TABLES[table])


def _written(table: pa.Table, schema_table: str, rows_per_group: int, sort: tuple[str, ...] | None = None,
             **opts: Any) -> int:
    """Bytes of ``table`` written as Parquet in row groups of ``rows_per_group`` (each sorted by ``sort``)."""
    buf = io.BytesIO()
    with pq.ParquetWriter(buf, TABLES[schema_table], **opts) as w:
        for batch in table.to_batches(max_chunksize=rows_per_group):
            if sort:
                batch = batch.sort_by([(c, "ascending") for c in sort])
            w.write_batch(batch)
    return len(buf.getvalue())


def run(cfg: Config, tmp: Path, wl: Workload, log: Any) -> tuple[list[Figure], dict[str, Any]]:
    root = tmp / "storage"
    info = store_workload(root, wl)
    n_frames = len(wl)
    n_0d = wl.n_0d
    b_frames = _bytes(root, "frames")
    b_book = _bytes(root, "orderbook")
    raw_per_row = b_frames / n_0d
    book_per_row = b_book / n_0d
    both = raw_per_row + book_per_row
    detail: dict[str, Any] = {
        **info,
        "frames": n_frames,
        "rows_0d": n_0d,
        "rows_0e": wl.n_0e,
        "bytes": {t: _bytes(root, t) for t in ("frames", "orderbook", "afterhours", "events")},
        "raw_bytes_per_frame": b_frames / n_frames,
        "wire_bytes_per_0d_row": sum(len(f) for f in wl.frames) / n_0d,
    }
    log(f"  stored {n_frames:,} frames ({n_0d:,} 0D rows): frames {raw_per_row:.0f} B/row "
        f"({b_frames / n_frames:.0f} B/frame), orderbook {book_per_row:.0f} B/row")
    figs = [
        Figure("storage", "raw frames on disk per 0D row", raw_per_row, "B",
               note=f"{b_frames / n_frames:.0f} B per frame; "
               f"{detail['wire_bytes_per_0d_row']:.0f} B on the wire per row"),
        Figure("storage", "normalized orderbook on disk per 0D row", book_per_row, "B"),
        Figure("storage", "raw + normalized per 0D row", both, "B",
               note=f"{wl.rows_per_frame:.2f} rows per frame; no compaction needed")
        .check_at_most(TARGET_B_PER_ROW, f"<= {TARGET_B_PER_ROW:.0f} B"),
    ]
    # The levers, each alone, on the same rows (in memory, row groups as the store writes them).
    frames = _read(root, "frames").sort_by([("seq", "ascending")])
    book = _read(root, "orderbook").sort_by([("recv_ts", "ascending"), ("recv_sub_us", "ascending"),
                                             ("frame_seq", "ascending"),
                                             ("row_idx", "ascending")])
    rg = 10_000
    live_f, live_b = parquet_options("frames"), parquet_options("orderbook")
    sort_b = ROW_GROUP_ORDER["orderbook"]
    default: dict[str, Any] = {"compression": "zstd"}
    levers: dict[str, tuple[int, int]] = {
        "pyarrow defaults (zstd level 1, dictionary everywhere, 1 MiB pages, arrival order)":
            (_written(frames, "frames", rg, **default), _written(book, "orderbook", rg, **default)),
        "+ zstd level 3 only": (
            _written(frames, "frames", rg, compression="zstd", compression_level=3),
            _written(book, "orderbook", rg, compression="zstd", compression_level=3)),
        "+ dictionary for string columns only": (
            _written(frames, "frames", rg, compression="zstd", use_dictionary=live_f["use_dictionary"]),
            _written(book, "orderbook", rg, compression="zstd", use_dictionary=live_b["use_dictionary"])),
        "+ frames in 16 MiB pages only": (
            _written(frames, "frames", rg, compression="zstd", data_page_size=16 * 2**20),
            _written(book, "orderbook", rg, **default)),
        "+ orderbook row groups sorted by item only": (
            _written(frames, "frames", rg, **default),
            _written(book, "orderbook", rg, sort=sort_b, **default)),
        "as record writes (all of the above)": (
            _written(frames, "frames", rg, **live_f), _written(book, "orderbook", rg, sort=sort_b, **live_b)),
        "reference: whole day sorted by item, 1M-row groups, zstd 9 (a compaction)": (
            _written(frames, "frames", 1_000_000, **{**live_f, "compression_level": 9}),
            _written(book.sort_by([(c, "ascending") for c in sort_b]), "orderbook", 1_000_000,
                     **{**live_b, "compression_level": 9})),
    }
    detail["levers"] = {
        k: {"frames_b_per_row": f / n_0d, "orderbook_b_per_row": b / n_0d, "both_b_per_row": (f + b) / n_0d}
        for k, (f, b) in levers.items()
    }
    for k, v in detail["levers"].items():
        log(f"    {v['both_b_per_row']:6.0f} B/row  (raw {v['frames_b_per_row']:5.0f} + book "
            f"{v['orderbook_b_per_row']:5.0f})  {k}")
    return figs, detail
