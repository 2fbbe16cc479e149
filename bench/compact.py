"""Compaction: bytes per 0D row of a stored day before and after ``kiwoom-tape compact``, its time, rows equal.

The day is the workload's frames stored as ``record`` stores them (:func:`bench.storage.store_workload`: the
raw ``frames`` and the normalized ``orderbook``, ``afterhours``, ``events``, on a past trading day, every
file final), because the generated day of :mod:`bench.query` has no raw frames. Then
:func:`kiwoom_tape.compact.compact` (what ``kiwoom-tape compact DIR`` runs, in this process) rewrites it;
it checks every table's rows and checksums itself, and the rows are counted again here, before and
after. The unit is one 0D row, as in the storage section: raw + normalized bytes per 0D row, target
<= 150 B after compaction (issue 15). :func:`compact_timed` is shared with :mod:`bench.query`, which times
the day's per-minute query on the compacted layout of its generated day.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb
from kiwoom_tape.schemas import layout

from bench.frames import Workload
from bench.report import Config, Figure
from bench.storage import store_workload
from kiwoom_tape.compact import compact

__all__ = ["TARGET_B_PER_ROW", "compact_timed", "run"]

TARGET_B_PER_ROW = 150.0
"""Raw + normalized bytes per 0D row on a compacted day (issue 15)."""


def _tables(root: Path) -> dict[str, tuple[int, int, int]]:
    """Table -> (files, bytes, rows) of its part files."""
    out: dict[str, tuple[int, int, int]] = {}
    con = duckdb.connect()
    try:
        for table in layout.TABLE_NAMES:
            files = sorted((root / table).glob("date=*/*.parquet"))
            if not files:
                continue
            row = con.execute(f"SELECT count(*) FROM read_parquet('{root}/{table}/date=*/*.parquet')").fetchone()
            out[table] = (len(files), sum(p.stat().st_size for p in files), int(row[0]) if row else 0)
    finally:
        con.close()
    return out


def compact_timed(root: Path) -> dict[str, Any]:
    """Compact every day of ``root`` (:func:`kiwoom_tape.compact.compact`): wall and CPU seconds, and per table the
    files, bytes and rows before and after (``rows_equal``: every table the same row count)."""
    (root / "frames").mkdir(exist_ok=True)  # a generated day may have only orderbook files
    before = _tables(root)
    t, c = time.perf_counter(), time.process_time()
    results = compact(root)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    after = _tables(root)
    return {
        "seconds": wall,
        "cpu_s": cpu,
        "status": [r.status for r in results],
        "before": before,
        "after": after,
        "rows_equal": bool(before) and all(after.get(t, (0, 0, -1))[2] == b[2] for t, b in before.items()),
    }


def run(cfg: Config, tmp: Path, wl: Workload, log: Any) -> tuple[list[Figure], dict[str, Any]]:
    """The compact section: a stored day of the workload, raw + normalized B per 0D row before and after."""
    root = tmp / "compact-day"
    store_workload(root, wl)
    res = compact_timed(root)
    n_0d = wl.n_0d

    def per_row(side: str) -> tuple[float, float]:
        tables = res[side]
        return tables.get("frames", (0, 0, 0))[1] / n_0d, tables.get("orderbook", (0, 0, 0))[1] / n_0d

    raw0, book0 = per_row("before")
    raw1, book1 = per_row("after")
    res["b_per_0d_row"] = {"before": {"frames": raw0, "orderbook": book0},
                           "after": {"frames": raw1, "orderbook": book1}}
    files = {side: sum(v[0] for v in res[side].values()) for side in ("before", "after")}
    log(f"  {n_0d:,} 0D rows ({len(wl):,} frames): raw + normalized {raw0 + book0:.0f} B/row "
        f"({raw0:.0f} + {book0:.0f}) in {files['before']} files -> compacted {raw1 + book1:.0f} B/row "
        f"({raw1:.0f} + {book1:.0f}) in "
        f"{files['after']} files, {res['seconds']:.1f} s ({res['cpu_s']:.1f} s CPU), rows equal {res['rows_equal']}")
    figs = [
        Figure("compact", "raw + normalized per 0D row, segments", raw0 + book0, "B",
               note=f"raw {raw0:.0f} + orderbook {book0:.0f}; {n_0d:,} 0D rows stored as record stores them"),
        Figure("compact", "raw + normalized per 0D row, compacted", raw1 + book1, "B",
               note=f"raw {raw1:.0f} + orderbook {book1:.0f}; {files['before']} -> {files['after']} files")
        .check_at_most(TARGET_B_PER_ROW, f"<= {TARGET_B_PER_ROW:.0f} B"),
        Figure("compact", f"compaction time ({n_0d:,} 0D rows)", res["seconds"], "s",
               note=f"{res['cpu_s']:.1f} s CPU; kiwoom_tape.compact.compact in-process, checksums included"),
    ]
    eq = Figure("compact", "rows equal after compaction", 1.0 if res["rows_equal"] else 0.0, "",
                note="; ".join(f"{t} {b[2]:,} -> {res['after'].get(t, (0, 0, 0))[2]:,}"
                               for t, b in res["before"].items()))
    eq.target, eq.verdict = "every table", "met" if res["rows_equal"] else "MISSED"
    figs.append(eq)
    return figs, res
