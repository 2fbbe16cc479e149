"""Query: a generated trading day through DuckDB, hand-written SQL on the files vs the catalog's views.

The day (200 items x 6.5 h x ~3.6 Hz, ~17M 0D rows in full mode) is generated with numpy straight into
the ``orderbook`` schema and written as ``record`` writes it (hourly part files, 10k-row row groups
sorted by item, the writer's options), in a temp dir that is deleted afterwards. Prices follow a
per-item random walk on a KRX tick grid with a one- or two-tick spread; level quantities are i.i.d.
(pessimistic for compression). Each query runs once to warm the page cache, then is timed 5 times (median),
hand-written and views taking turns, to an Arrow table (the Python objects of ``fetchall()`` would add
client time that is not DuckDB's: ~0.3 s for the 78,000 TIMESTAMPTZ values of a per-minute result).

Queries (the same result both ways; the view is ``kiwoom_tape.replay.catalog.connect(root)``):

- count: ``count(*)`` of the day;
- per-item per-minute mid/spread: avg/min/max/open/close mid, avg/max spread per (item, minute), grouped
  by the views' ``minute`` column (``recv_ts`` floored to the minute, computed from the integer epoch:
  ``kiwoom_tape.schemas.views.MINUTE_SQL``); the hand-written side computes the same bucket on the files. This is
  "the day" figure (<= 1 s). For comparison, the same query bucketing with ``date_trunc('minute',
  recv_ts)`` as everyone writes it, which on a TIMESTAMPTZ does ICU time-zone arithmetic per row (the
  same buckets, KST being a whole number of hours from UTC);
- per-minute 10-level imbalance: per (item, minute) the average of (bid - ask) / (bid + ask) over the
  10-level totals (``quotes.imbalance``), and the same from the 20 level quantities of ``orderbook``;
- book as-of a 1-second grid: for every item and every second of the session, the best bid/ask in force
  (ASOF JOIN).

Then the day is compacted (:func:`bench.compact.compact_timed`: ``kiwoom-tape compact``'s few large files
sorted by item) and the day's per-minute mid/spread is timed again through the views: both layouts, each
against the 1 s target.
"""

from __future__ import annotations

import datetime as dt
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from kiwoom_tape.recorder.store import ROW_GROUP_ORDER, parquet_options
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.fields import FIELDS_0D, Kind
from kiwoom_tape.schemas.market import KST
from kiwoom_tape.schemas.tables import ORDERBOOK

from bench.report import Config, Figure
from bench.storage import TRADING_DAY

__all__ = ["generate_day", "run"]

OPEN_S = 9 * 3600
CLOSE_S = 15 * 3600 + 30 * 60
TICKS = np.array([1, 5, 10, 50, 100, 500], dtype=np.int64)
RUN_ID = "20261123T000000Z-bench1"


def _day_start_ns() -> int:
    return int(dt.datetime.combine(TRADING_DAY, dt.time(0), KST).timestamp()) * 1_000_000_000


def generate_day(root: Path, n_rows: int, n_items: int = 200, seed: int = 6, group: int = 10_000) -> dict[str, Any]:
    """Write ``n_rows`` orderbook rows of one session into ``root`` as ``record`` lays them out."""
    rng = np.random.default_rng(seed)
    items = np.array([f"{100000 + 37 * i:06d}" for i in range(n_items)], dtype=object)
    tick = TICKS[rng.integers(1, len(TICKS), n_items)]
    base = (rng.integers(2_000, 40_000, n_items) * tick).astype(np.int64)
    minutes = (CLOSE_S - OPEN_S) // 60 + 1
    walk = np.cumsum(rng.choice([-1, 0, 0, 1], size=(n_items, minutes)), axis=1)
    day0 = _day_start_ns()
    span_ns = (CLOSE_S - OPEN_S) * 1_000_000_000
    by_kind: dict[Kind, list[str]] = {k: [f.column for f in FIELDS_0D if f.kind is k] for k in Kind}
    prices = set(by_kind[Kind.PRICE])
    opts = parquet_options("orderbook")
    sort = [(c, "ascending") for c in ROW_GROUP_ORDER["orderbook"]]
    hours = int(np.ceil((CLOSE_S - OPEN_S) / 3600))
    rows_per_hour = n_rows / ((CLOSE_S - OPEN_S) / 3600)
    part_dir = Path(layout.partition_dir(str(root), "orderbook", TRADING_DAY))
    part_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for hour in range(hours):
        lo = round(hour * rows_per_hour)
        hi = min(n_rows, round((hour + 1) * rows_per_hour))
        if hi <= lo:
            continue
        path = part_dir / layout.part_filename(RUN_ID, hour, "orderbook")
        with pq.ParquetWriter(path, ORDERBOOK, **opts) as writer:
            for start in range(lo, hi, group):
                n = min(group, hi - start)
                idx = np.arange(start, start + n, dtype=np.int64)
                recv = day0 + OPEN_S * 1_000_000_000 + ((idx + rng.random(n)) * (span_ns / n_rows)).astype(np.int64)
                it = rng.integers(0, n_items, n)
                minute = ((recv - day0) // 1_000_000_000 - OPEN_S) // 60
                t = tick[it]
                bid1 = base[it] + walk[it, np.minimum(minute, minutes - 1)] * t
                ask1 = bid1 + t * (1 + (rng.random(n) < 0.2))
                cols: dict[str, pa.Array] = {}
                ask_q = rng.integers(1, 5_000, (10, n))
                bid_q = rng.integers(1, 5_000, (10, n))
                for k in range(10):
                    cols[f"ask_price_{k + 1}"] = pa.array((ask1 + k * t).astype(np.int32))
                    cols[f"bid_price_{k + 1}"] = pa.array((bid1 - k * t).astype(np.int32))
                    cols[f"ask_qty_{k + 1}"] = pa.array(ask_q[k])
                    cols[f"bid_qty_{k + 1}"] = pa.array(bid_q[k])
                    for side in ("ask", "bid"):
                        d = rng.integers(-300, 300, n) * (rng.random(n) < 0.3)
                        cols[f"{side}_qty_delta_{k + 1}"] = pa.array(d)
                tot_a, tot_b = ask_q.sum(axis=0), bid_q.sum(axis=0)
                cols["total_ask_qty"] = pa.array(tot_a)
                cols["total_bid_qty"] = pa.array(tot_b)
                cols["net_bid_qty"] = pa.array(tot_b - tot_a)
                cols["net_ask_qty"] = pa.array(tot_a - tot_b)
                cols["bid_ratio_pct"] = pa.array(np.round(tot_b / tot_a * 100, 2))
                cols["ask_ratio_pct"] = pa.array(np.round(tot_a / tot_b * 100, 2))
                secs = (recv // 1_000_000_000).astype(np.int64)
                for c in by_kind[Kind.TIME]:
                    cols[c] = pa.array(secs * 1000, pa.timestamp("ms", tz="UTC"))
                arrays = []
                for f in ORDERBOOK:
                    name = f.name
                    if name in cols:
                        arr = cols[name]
                    elif name == "recv_ts":
                        arr = pa.array(recv // 1000, pa.timestamp("us", tz="UTC"))
                    elif name == "recv_sub_us":
                        arr = pa.array((recv % 1000).astype(np.int16))
                    elif name == "run_id":
                        arr = pa.array([RUN_ID] * n, pa.string())
                    elif name == "frame_seq":
                        arr = pa.array(idx)
                    elif name in ("item", "code"):
                        arr = pa.array(items[it], pa.string())
                    elif name == "venue":
                        arr = pa.array(["KRX"] * n, pa.string())
                    elif name in prices:  # a price with no value here: NULL, as "0" is stored
                        arr = pa.nulls(n, f.type)
                    elif pa.types.is_string(f.type):
                        arr = pa.array([""] * n, pa.string())
                    elif pa.types.is_int8(f.type):
                        arr = pa.array(np.full(n, 3, dtype=np.int8))
                    elif pa.types.is_floating(f.type):
                        arr = pa.array(np.zeros(n))
                    else:
                        arr = pa.array(np.zeros(n, dtype=f.type.to_pandas_dtype()))
                    arrays.append(arr.cast(f.type) if arr.type != f.type else arr)
                batch = pa.RecordBatch.from_arrays(arrays, schema=ORDERBOOK).sort_by(sort)
                writer.write_batch(batch)
                written += n
    return {"rows": written, "items": n_items, "files": hours,
            "bytes": sum(p.stat().st_size for p in part_dir.glob("*.parquet"))}


MID_SPREAD = "per-item per-minute mid/spread"
"""The query of "the day" figure (<= 1 s through the views)."""

# recv_ts (the files' microseconds, as TIMESTAMPTZ) floored to the minute, as a TIMESTAMPTZ:
# whole minutes since the epoch in integer arithmetic, then to_timestamp (seconds). Written out here, not
# imported from schemas.views: the hand-written side is what a user would write on the raw files.
HAND_MINUTE = "to_timestamp(epoch_us(CAST(recv_ts AS TIMESTAMPTZ)) // 60000000 * 60)"


def _queries(src: str, quotes: str, ts: str = "recv_ts", minute: str = "minute") -> dict[str, str]:
    """The benchmark queries over ``src`` (the orderbook rows) and ``quotes`` (rows with minute/mid/spread/
    imbalance); ``ts`` is the receive time as a TIMESTAMPTZ over ``src`` (the files keep nanoseconds,
    which DuckDB reads as TIMESTAMPTZ_NS: no ``date_trunc`` for that type, hence the cast in hand-written
    SQL) and ``minute`` its minute bucket over ``src``. Over ``quotes`` they are the columns ``recv_ts``
    and ``minute``."""
    return {
        "count": f"SELECT count(*) FROM {src}",
        MID_SPREAD: f"""
            SELECT item, minute,
                   avg(mid), min(mid), max(mid), arg_min(mid, recv_ts) AS open, arg_max(mid, recv_ts) AS close,
                   avg(spread), max(spread), count(*)
            FROM {quotes} GROUP BY ALL""",
        f"{MID_SPREAD}, date_trunc('minute', recv_ts)": f"""
            SELECT item, date_trunc('minute', recv_ts) AS minute,
                   avg(mid), min(mid), max(mid), arg_min(mid, recv_ts) AS open, arg_max(mid, recv_ts) AS close,
                   avg(spread), max(spread), count(*)
            FROM {quotes} GROUP BY ALL""",
        "per-minute 10-level imbalance (totals)": f"""
            SELECT item, minute, avg(imbalance)
            FROM {quotes} GROUP BY ALL""",
        "per-minute 10-level imbalance (20 level qty)": f"""
            SELECT item, {minute} AS minute,
                   avg(CAST((bid_qty_1 + bid_qty_2 + bid_qty_3 + bid_qty_4 + bid_qty_5 + bid_qty_6 + bid_qty_7
                             + bid_qty_8 + bid_qty_9 + bid_qty_10)
                            - (ask_qty_1 + ask_qty_2 + ask_qty_3 + ask_qty_4 + ask_qty_5 + ask_qty_6 + ask_qty_7
                               + ask_qty_8 + ask_qty_9 + ask_qty_10) AS DOUBLE)
                       / NULLIF(bid_qty_1 + bid_qty_2 + bid_qty_3 + bid_qty_4 + bid_qty_5 + bid_qty_6 + bid_qty_7
                                + bid_qty_8 + bid_qty_9 + bid_qty_10 + ask_qty_1 + ask_qty_2 + ask_qty_3
                                + ask_qty_4 + ask_qty_5 + ask_qty_6 + ask_qty_7 + ask_qty_8 + ask_qty_9
                                + ask_qty_10, 0))
            FROM {src} GROUP BY ALL""",
        "book as-of a 1-second grid": f"""
            WITH bounds AS (SELECT min({ts}) AS lo, max({ts}) AS hi FROM {src}),
                 its AS (SELECT DISTINCT item FROM {src}),
                 grid AS (SELECT item, ts FROM its, bounds,
                          unnest(generate_series(date_trunc('second', lo), hi, INTERVAL 1 SECOND)) AS g(ts))
            SELECT count(*), avg(b.ask_price_1 - b.bid_price_1)
            FROM grid ASOF JOIN (SELECT item, {ts} AS recv_ts, bid_price_1, ask_price_1 FROM {src}) AS b
                 ON grid.item = b.item AND grid.ts >= b.recv_ts""",
    }


def _hand_quotes(src: str) -> str:
    return f"""(SELECT CAST(recv_ts AS TIMESTAMPTZ) AS recv_ts, {HAND_MINUTE} AS minute,
                item, (bid_price_1 + ask_price_1) / 2.0 AS mid,
                ask_price_1 - bid_price_1 AS spread,
                CAST(total_bid_qty - total_ask_qty AS DOUBLE) / NULLIF(total_bid_qty + total_ask_qty, 0) AS imbalance
                FROM {src})"""


def _time(
    runs: Sequence[tuple[duckdb.DuckDBPyConnection, str]], repeats: int
) -> list[tuple[float, list[float], Any]]:
    """Per (connection, query): the median time to an Arrow table, the times, and its rows.

    Each query first runs once untimed (the page cache warms up; its rows are the answer to compare).
    Then the queries take turns, ``repeats`` times, the first one alternating, so that load coming and
    going on a shared machine falls on both sides of a comparison alike.

    Arrow, not ``fetchall()``: the figure is DuckDB's, not that of building Python objects, which for a
    per-minute result (78,000 rows a day) with a TIMESTAMPTZ column costs ~0.3 s in the client alone.
    """
    results = [con.execute(sql).fetchall() for con, sql in runs]
    times: list[list[float]] = [[] for _ in runs]
    for i in range(repeats):
        for k in range(len(runs)) if i % 2 == 0 else reversed(range(len(runs))):
            con, sql = runs[k]
            t = time.perf_counter()
            con.sql(sql).to_arrow_table()
            times[k].append(time.perf_counter() - t)
    return [(statistics.median(ts), ts, rows) for ts, rows in zip(times, results, strict=True)]


def _rows_equal(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    def norm(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return sorted(tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows)
    return len(a) == len(b) and norm(a) == norm(b)


def _compacted(root: Path, sql: str, segment_rows: list[tuple[Any, ...]], repeats: int, detail: dict[str, Any],
               log: Callable[[str], None]) -> Figure:
    """The day compacted, then ``sql`` (the day's per-minute mid/spread) through the views on the new layout."""
    from kiwoom_tape.replay.catalog import connect

    from bench.compact import compact_timed

    comp = compact_timed(root)
    con = connect(root)
    try:
        ((v, v_runs, v_res),) = _time([(con, sql)], repeats)
    finally:
        con.close()
    same = _rows_equal(segment_rows, v_res)
    (files0, bytes0, rows), (files1, bytes1, _) = comp["before"]["orderbook"], comp["after"]["orderbook"]
    detail["compacted"] = {**comp, "view_s": v, "view_runs": v_runs, "same_result": same}
    log(f"  compacted the day in {comp['seconds']:.0f} s: orderbook {files0} -> {files1} files, {bytes0 / rows:.0f} -> "
        f"{bytes1 / rows:.0f} B/row; {MID_SPREAD}, views: {v:.3f} s, same result {same}")
    return (Figure("query", f"{MID_SPREAD}, views, the day, compacted", v, "s", runs=v_runs,
                   note=f"{rows:,} rows in {files1} compacted files ({bytes1 / rows:.0f} B/row, was "
                   f"{bytes0 / rows:.0f}); same result as the segment files: {same}")
            .check_at_most(1.0, "<= 1 s"))


def run(cfg: Config, tmp: Path, log: Callable[[str], None]) -> tuple[list[Figure], dict[str, Any]]:
    root = tmp / "query-day"
    t = time.perf_counter()
    gen = generate_day(root, cfg.query_rows)
    gen["seconds"] = time.perf_counter() - t
    log(f"  generated {gen['rows']:,} orderbook rows in {gen['files']} files, {gen['bytes'] / 2**20:,.0f} MiB "
        f"({gen['bytes'] / max(1, gen['rows']):.0f} B/row) in {gen['seconds']:.0f} s")
    detail: dict[str, Any] = {"generated": gen, "queries": {}}
    repeats = 1 if cfg.quick else 5
    try:
        glob = f"{root}/orderbook/date=*/*.parquet"
        src = f"read_parquet('{glob}', hive_partitioning = true)"
        hand_con = duckdb.connect(":memory:")
        hand_con.execute("SET TimeZone = 'Asia/Seoul'")
        hand = _queries(src, _hand_quotes(src), "CAST(recv_ts AS TIMESTAMPTZ)", HAND_MINUTE)
        try:
            from kiwoom_tape.replay.catalog import connect

            view_con: duckdb.DuckDBPyConnection | None = connect(root)
            views: dict[str, str] | None = _queries("orderbook", "quotes")
        except ImportError:
            view_con = views = None
        figs: list[Figure] = []
        mid_rows: list[tuple[Any, ...]] = []
        for name, sql in hand.items():
            if view_con is not None and views is not None:
                (h, h_runs, h_res), (v, v_runs, v_res) = _time([(hand_con, sql), (view_con, views[name])], repeats)
            else:
                ((h, h_runs, h_res),) = _time([(hand_con, sql)], repeats)
            entry: dict[str, Any] = {"hand_s": h, "hand_runs": h_runs}
            if view_con is not None and views is not None:
                entry.update({"view_s": v, "view_runs": v_runs, "same_result": _rows_equal(h_res, v_res)})
                log(f"  {name}: hand-written {h:.3f} s, views {v:.3f} s ({v / h - 1:+.0%}), "
                    f"same result {entry['same_result']}")
                fig = Figure("query", f"{name}, views (hand-written = ceiling)", v, "s", h, runs=v_runs,
                             note=f"{gen['rows']:,} rows; same result: {entry['same_result']}")
                fig.ratio = v / h if h else None
                fig.target = "views <= 110 % of hand-written"
                fig.verdict = "met" if h and v <= 1.10 * h else "MISSED"
                figs.append(fig)
                if name == MID_SPREAD:
                    mid_rows = v_res
                    figs.append(Figure("query", f"{name}, views, the day", v, "s",
                                       note=f"{gen['rows']:,} rows; GROUP BY the views' minute column")
                                .check_at_most(1.0, "<= 1 s"))
            else:
                log(f"  {name}: hand-written {h:.3f} s (no replay.catalog: views not measured)")
                figs.append(Figure("query", f"{name}, hand-written", h, "s", runs=h_runs,
                                   note="kiwoom_tape.replay.catalog missing: views not measured"))
            detail["queries"][name] = entry
        hand_con.close()
        if view_con is not None and views is not None:
            view_con.close()
            figs.append(_compacted(root, views[MID_SPREAD], mid_rows, repeats, detail, log))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return figs, detail
