"""The DuckDB catalog (schemas.views + replay.catalog) and ``kiwoom-tape sql``, on a recording of the simulator.

The recording is made once per module by the real recorder against the mock server on loopback
(``kiwoom_tape.demo.record_simulation``), with the clock at 15:29:50 so KRX 0D, NXT 0D and 0E all flow.
Every expected number is computed here independently: from the files with pyarrow, or from the raw
frame text with docs/protocol.md 2.0 and 5.5 read naively.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import itertools
import json
import os
import shutil
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.replay.catalog import connect
from kiwoom_tape.schemas import views
from kiwoom_tape.schemas.errors import DatasetError
from kiwoom_tape.schemas.fields import FIELDS_0D, Kind
from kiwoom_tape.schemas.market import KST, tick_size
from kiwoom_tape.schemas.protocol import encode, encode_real_frame, encode_real_row
from kiwoom_tape.schemas.tables import TABLES
from kiwoom_tape.schemas.versions import recv_ns_of

from kiwoom_tape.cli import cli
from kiwoom_tape.demo import Recording, record_simulation

ITEMS = ("005930", "000660", "005930_NX")
SIM_START = 15 * 3600 + 29 * 60 + 50
ROOT_DIR = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------------
# Helpers shared with test_verify.py


def record(out: Path, seconds: float = 4.0, *, seed: int = 11) -> Recording:
    """Record the simulated market (15:29:50 KST, 200x) into ``out`` with the real recorder."""

    async def main() -> Recording:
        async with asyncio.timeout(seconds + 30):
            return await record_simulation(out, items=ITEMS, sim_start=SIM_START, speed=200.0, seconds=seconds,
                                           seed=seed)

    return asyncio.run(main())


def book_values(bid: int, ask: int, bid_qty: int, ask_qty: int, *, levels: int = 3, time: str = "100000",
                ref: int | None = None) -> dict[str, str]:
    """All 0D values of a book with ``levels`` levels a side, one tick apart, prices signed vs ``ref``."""
    ref = bid if ref is None else ref

    def signed(p: int) -> str:
        return f"+{p}" if p > ref else (f"-{p}" if p < ref else str(p))

    v = {f.fid: "" if f.kind is Kind.TEXT else ("0.00" if f.kind is Kind.PCT else "0") for f in FIELDS_0D}
    v["21"] = time
    a, b = ask, bid
    tot_a = tot_b = 0
    for n in range(1, 11):
        if n <= levels:
            qa, qb = ask_qty * n, bid_qty * n
            v[str(40 + n)], v[str(60 + n)] = signed(a), str(qa)
            v[str(50 + n)], v[str(70 + n)] = signed(b), str(qb)
            tot_a += qa
            tot_b += qb
            a += tick_size(a)
            b -= tick_size(b - 1)
        else:
            v[str(40 + n)], v[str(60 + n)] = "-0", "0"
            v[str(50 + n)], v[str(70 + n)] = "-0", "0"
    v["121"], v["125"] = str(tot_a), str(tot_b)
    return v


def write_frames(root: Path, rows: list[tuple[int, str, str, dict[str, str]]], *, run_id: str = "handmade",
                 events: Sequence[tuple[int, str, dict[str, Any]]] = (),
                 garbage: Sequence[tuple[int, str]] = ()) -> None:
    """A dataset written by the real Store: one REAL frame per (recv_ns, type, item, values)."""
    with Store(root, run_id) as store:
        for ns, kind, detail in events:
            store.add_event(ns, kind, detail)
        for ns, typ, item, values in rows:
            store.add_frame(ns, "in", encode_real_frame([encode_real_row(typ, item, encode(values))]))
        for ns, text in garbage:
            store.add_frame(ns, "in", text)


def kst_ns(date: dt.date, hms: str) -> int:
    t = dt.datetime.combine(date, dt.time.fromisoformat(hms), KST)
    return int(t.timestamp()) * 1_000_000_000


def read_table(root: Path, name: str) -> list[dict[str, Any]]:
    t = ds.dataset(root / name, format="parquet", partitioning="hive").to_table()
    t = t.set_column(t.schema.get_field_index("recv_ts"), "recv_ts", recv_ns_of(t))
    return t.to_pylist()  # type: ignore[no-any-return]


def ticks_between(lo: int, hi: int) -> int:
    """Ticks from ``lo`` up to ``hi`` walking the KRX ladder one tick at a time (docs/protocol.md 5.5)."""
    n, p = 0, lo
    while p < hi:
        p += tick_size(p)
        n += 1
    assert p == hi, (lo, hi)
    return n


# --------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recording]:
    root = tmp_path_factory.mktemp("catalog") / "data"
    rec = record(root)
    assert rec.rows["orderbook"] > 300 and rec.rows["afterhours"] > 10
    return root, rec


@pytest.fixture
def con(recorded: tuple[Path, Recording]) -> Iterator[duckdb.DuckDBPyConnection]:
    c = connect(recorded[0])
    yield c
    c.close()


def sql(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, ["sql", *args], env=env, input=input, catch_exceptions=False)


# --------------------------------------------------------------------------------------------------
# Counts


def test_sql_command_counts_match_the_recorder(recorded: tuple[Path, Recording]) -> None:
    root, rec = recorded
    result = sql(str(root), "select item, count(*) as n from orderbook group by all order by item")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["item", "n"] and set(lines[1]) <= {"-", " "}
    got = {line.split()[0]: int(line.split()[1]) for line in lines[2:]}
    by_file = Counter(r["item"] for r in read_table(root, "orderbook"))
    assert got == dict(by_file)
    assert sum(got.values()) == rec.rows["orderbook"]
    assert set(got) == set(ITEMS)


def test_every_table_view_counts_what_the_files_hold(con: duckdb.DuckDBPyConnection,
                                                     recorded: tuple[Path, Recording]) -> None:
    root, rec = recorded
    for table in ("frames", "orderbook", "afterhours", "events"):
        (n,) = con.execute(f"select count(*) from {table}").fetchone() or (None,)
        assert n == pq.ParquetDataset(root / table).read().num_rows, table
    assert con.execute("select count(*) from frames").fetchone() == (rec.frames,)
    assert con.execute("select count(*) from quotes").fetchone() == (rec.rows["orderbook"],)
    assert con.execute("select count(*) from afterhours").fetchone() == (rec.rows["afterhours"],)


def test_views_have_the_stored_columns_a_date_and_a_minute(con: duckdb.DuckDBPyConnection) -> None:
    for table, schema in TABLES.items():
        cols = con.execute(f"describe {table}").fetchall()
        derived = views.DERIVED_COLUMNS.get(table, ())
        stored = ["recv_ts", "recv_ns", *(n for n in schema.names if n not in ("recv_ts", "recv_sub_us"))]
        assert [c[0] for c in cols] == [*stored, "date", "minute", *(name for name, _t, _s in derived)]
        assert [(n, t.replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE")) for n, t in views.view_columns(table)] == [
            (c[0], c[1]) for c in cols[: len(stored)]]
        assert [c[1] for c in cols] == [
            "TIMESTAMP WITH TIME ZONE", "BIGINT",
            *(views.duckdb_type(f.type).replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE") for f in schema
              if f.name not in ("recv_ts", "recv_sub_us")), "DATE",
            "TIMESTAMP WITH TIME ZONE", *(typ for _n, typ, _s in derived),
        ]


# --------------------------------------------------------------------------------------------------
# minute


def test_minute_is_recv_ts_truncated_to_the_minute_in_every_view(con: duckdb.DuckDBPyConnection) -> None:
    for view in ("frames", "orderbook", "afterhours", "events", "quotes"):
        n, same = con.execute(
            f"select count(*), count(*) filter (where minute = date_trunc('minute', recv_ts)) from {view}"
        ).fetchone() or (None, None)
        assert n and n == same, view
    # quotes carries the orderbook row's minute
    assert con.execute(
        "select count(*) from quotes q join orderbook o using (run_id, frame_seq, row_idx) where q.minute <> o.minute"
    ).fetchone() == (0,)


def test_minute_across_day_boundaries_in_kst_and_utc(tmp_path: Path) -> None:
    day = dt.date(2026, 3, 10)
    nxt = day + dt.timedelta(days=1)
    book = book_values(71_400, 71_500, 100, 300)
    times = [  # (recv_ns, KST minute it belongs to)
        (kst_ns(day, "08:59:59") + 999_999_000, "2026-03-10 08:59:00+09"),  # 23:59 UTC the day before
        (kst_ns(day, "09:00:00"), "2026-03-10 09:00:00+09"),  # 00:00 UTC
        (kst_ns(day, "10:00:00") - 1_000, "2026-03-10 09:59:00+09"),
        (kst_ns(day, "10:00:30") + 1, "2026-03-10 10:00:00+09"),
        (kst_ns(day, "10:00:59") + 999_999_499, "2026-03-10 10:00:00+09"),
        (kst_ns(day, "10:01:59") + 999_999_500, "2026-03-10 10:01:00+09"),  # recv_ts floors to 10:01:59.999999
        (kst_ns(day, "23:59:59") + 999_999_000, "2026-03-10 23:59:00+09"),  # the last minute of a KST date
        (kst_ns(nxt, "00:00:00"), "2026-03-11 00:00:00+09"),  # the next partition
    ]
    write_frames(tmp_path, [(ns, "0D", f"{i:06d}", book) for i, (ns, _) in enumerate(times)])
    c = connect(tmp_path)
    got = c.execute(
        'select item, minute::VARCHAR, epoch_us(minute), "date"::VARCHAR from quotes order by item'
    ).fetchall()
    assert [g[1] for g in got] == [want for _, want in times]
    assert [g[2] for g in got] == [ns // 1_000 // 60_000_000 * 60_000_000 for ns, _ in times]
    assert [g[3] for g in got] == [*["2026-03-10"] * 7, "2026-03-11"]
    for tz in ("Asia/Seoul", "UTC"):
        c.execute(f"SET TimeZone = '{tz}'")
        for view in ("orderbook", "quotes", "frames"):
            assert c.execute(
                f"select count(*) from {view} where minute is distinct from date_trunc('minute', recv_ts)"
            ).fetchone() == (0,), (tz, view)
    c.execute("SET TimeZone = 'Asia/Seoul'")
    # grouping by it gives one row per minute, and it compares with a KST literal
    assert c.execute("select count(distinct minute) from quotes").fetchone() == (7,)
    assert c.execute("select count(*) from quotes where minute = '2026-03-10 10:00'").fetchone() == (2,)
    # docs/sql.md's 5-minute bucket, the same way
    assert c.execute(
        "select count(*) from quotes where to_timestamp(epoch_us(recv_ts) // 300000000 * 300)"
        " is distinct from time_bucket(interval 5 minute, recv_ts)"
    ).fetchone() == (0,)


def _plan_projections(con: duckdb.DuckDBPyConnection, query: str) -> set[str]:
    """Every ``Projections`` entry of the physical plan of ``query`` (the scan's columns included)."""
    def walk(node: dict[str, Any]) -> Iterator[str]:
        proj = node.get("extra_info", {}).get("Projections")
        if proj:
            yield from ([proj] if isinstance(proj, str) else proj)
        for child in node.get("children", []):
            yield from walk(child)

    (row,) = con.execute(f"explain (format json) {query}").fetchall()
    return {p.strip() for node in json.loads(row[1]) for entry in walk(node) for p in entry.split(",")}


def test_columns_a_query_does_not_name_are_not_read_or_computed(con: duckdb.DuckDBPyConnection) -> None:
    stored = set(TABLES["orderbook"].names)
    for view in ("orderbook", "quotes"):
        assert not _plan_projections(con, f"select count(*) from {view}") & (stored | {"minute"}), view
        assert _plan_projections(con, f"select item, count(*) from {view} group by all") & stored == {"item"}, view
    assert _plan_projections(con, "select minute, count(*) from quotes group by all") & stored == {"recv_ts"}


# --------------------------------------------------------------------------------------------------
# quotes


def _expected_quote(values: dict[str, str]) -> dict[str, Any]:
    def price(fid: str) -> int | None:
        s = values[fid]
        return None if s in ("", "-0", "0") else abs(int(s))

    bid, ask = price("51"), price("41")
    bq, aq = int(values["71"]), int(values["61"])
    tb, ta = int(values["125"]), int(values["121"])
    out: dict[str, Any] = {"bid": bid, "ask": ask, "bid_qty": bq, "ask_qty": aq, "bid_depth": tb, "ask_depth": ta}
    if bid is not None and ask is not None:
        out |= {
            "mid": (bid + ask) / 2,
            "spread": ask - bid,
            "spread_ticks": ticks_between(bid, ask),
            "tick": tick_size(bid),
            "microprice": (bid * aq + ask * bq) / (bq + aq),
            "crossed": False,
        }
    out["imbalance_1"] = (bq - aq) / (bq + aq) if bq + aq else None
    out["imbalance"] = (tb - ta) / (tb + ta) if tb + ta else None
    return out


def test_quotes_match_a_hand_computation_from_the_raw_frames(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute(
        """select q.item, q.bid, q.ask, q.bid_qty, q.ask_qty, q.mid, q.spread, q.spread_ticks, q.tick,
                  q.microprice, q.imbalance_1, q.bid_depth, q.ask_depth, q.imbalance, q.crossed,
                  f.text, q.row_idx
           from quotes q join frames f on f.run_id = q.run_id and f.seq = q.frame_seq
           using sample 200 rows (reservoir, 7)"""
    ).fetchall()
    assert len(rows) == 200
    names = ["item", "bid", "ask", "bid_qty", "ask_qty", "mid", "spread", "spread_ticks", "tick", "microprice",
             "imbalance_1", "bid_depth", "ask_depth", "imbalance", "crossed"]
    for r in rows:
        got = dict(zip(names, r[:15], strict=True))
        src = json.loads(r[15])["data"][r[16]]
        assert src["item"] == got["item"]
        want = _expected_quote(src["values"])
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-12), (key, src)
            else:
                assert got[key] == value, (key, src)


def test_quotes_on_known_frames(tmp_path: Path) -> None:
    day = dt.date(2026, 3, 10)
    write_frames(tmp_path, [
        # across the 50,000 band edge: 49,950 -> 50,000 (50 won) -> 50,100 (100 won) = 2 ticks
        (kst_ns(day, "10:00:00"), "0D", "000001", book_values(49_950, 50_100, 30, 10)),
        # a 1-tick spread at 71,400 / 71,500
        (kst_ns(day, "10:00:01"), "0D", "005930", book_values(71_400, 71_500, 100, 300)),
        # an empty ask side
        (kst_ns(day, "10:00:02"), "0D", "000002", book_values(1_995, 2_000, 5, 5, levels=0) | {"51": "1995",
                                                                                              "71": "5"}),
    ])
    c = connect(tmp_path)
    got = {r[0]: r[1:] for r in c.execute(
        "select item, bid, ask, mid, spread, spread_ticks, tick, microprice, imbalance_1, imbalance from quotes"
    ).fetchall()}
    # 000001: bid qty 30 (levels 30, 60, 90 -> 180), ask qty 10 (10, 20, 30 -> 60)
    assert got["000001"] == (49_950, 50_100, 50_025.0, 150, 2, 50, (49_950 * 10 + 50_100 * 30) / 40, 20 / 40,
                             120 / 240)
    assert got["005930"] == (71_400, 71_500, 71_450.0, 100, 1, 100, (71_400 * 300 + 71_500 * 100) / 400, -0.5,
                             (600 - 1800) / 2400)
    assert got["000002"][:6] == (1_995, None, None, None, None, 1)
    assert c.execute("select count(*) from quotes where crossed").fetchone() == (0,)


def test_tick_macros_agree_with_schemas_market(con: duckdb.DuckDBPyConnection) -> None:
    prices = sorted({p + d for p in (1, 2_000, 5_000, 20_000, 50_000, 200_000, 500_000, 1_000_000, 3_000_000)
                     for d in (-2_000, -1_000, -500, -100, -50, -10, -5, -1, 0, 1, 5, 10, 50, 100, 500, 1_000)
                     if p + d > 0})
    got = dict(con.execute(
        "select p, krx_tick_size(p) from unnest(?::INTEGER[]) t(p)", [prices]
    ).fetchall())
    assert got == {p: tick_size(p) for p in prices}
    grid = [p for p in prices if p % tick_size(p) == 0]
    index = dict(con.execute("select p, krx_tick_index(p) from unnest(?::INTEGER[]) t(p)", [grid]).fetchall())
    for lo, hi in itertools.pairwise(grid):
        assert index[hi] - index[lo] == ticks_between(lo, hi), (lo, hi)
    assert con.execute("select krx_tick_size(NULL), krx_tick_index(NULL)").fetchone() == (None, None)


# --------------------------------------------------------------------------------------------------
# book_asof


def test_book_asof_returns_the_last_book_at_or_before_the_time(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute(
        """select epoch_us(recv_ts), recv_ts::VARCHAR, run_id, frame_seq, row_idx, bid_price_1, ask_price_1
           from orderbook where item = '005930_NX' order by all"""
    ).fetchall()
    assert len(rows) > 50

    def expected(at_us: int) -> tuple[Any, ...] | None:
        before = [r for r in rows if r[0] <= at_us]
        return max(before, key=lambda r: (r[0], r[2], r[3], r[4])) if before else None

    for i in range(1, len(rows), max(1, len(rows) // 25)):
        us, text = rows[i][0], rows[i][1]
        for at_us, literal in ((us, text), (us - 1, None), (us + 1, None)):
            ts = literal or dt.datetime.fromtimestamp(at_us / 1e6, KST).isoformat(timespec="microseconds")
            got = con.execute(
                "select epoch_us(recv_ts), run_id, frame_seq, row_idx, bid_price_1, ask_price_1 "
                "from book_asof('005930_NX', ?)", [ts]
            ).fetchall()
            want = expected(at_us)
            assert got == ([] if want is None else [(want[0], *want[2:])]), (ts, i)
    first_us = rows[0][0]
    early = dt.datetime.fromtimestamp((first_us - 1) / 1e6, KST).isoformat(timespec="microseconds")
    assert con.execute("select * from book_asof('005930_NX', ?)", [early]).fetchall() == []
    assert con.execute("select count(*) from book_asof('NOPE', now())").fetchone() == (0,)
    # a TIMESTAMPTZ works as well as a string, and the row carries every column of the book
    last = con.execute("select * from book_asof('005930_NX', now() + interval 1 day)").fetchall()
    assert len(last) == 1 and len(last[0]) == len(TABLES["orderbook"].names) + 2  # recv_ns, date, minute


# --------------------------------------------------------------------------------------------------
# Partitions, empty tables, bad roots


def test_a_filter_on_date_prunes_partitions(recorded: tuple[Path, Recording], tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(recorded[0], root)
    (day,) = [p.name for p in (root / "orderbook").iterdir()]
    later = (dt.date.fromisoformat(day.removeprefix("date=")) + dt.timedelta(days=1)).isoformat()
    bad = root / "orderbook" / f"date={later}"
    bad.mkdir()
    (bad / "part-broken-000000.parquet").write_bytes(b"not a parquet file at all")
    c = connect(root)
    day_value = day.removeprefix("date=")
    # the broken partition is never opened when the filter excludes it
    ((n, _avg),) = c.execute("select count(*), avg(bid_price_1) from orderbook where date = ?", [day_value]).fetchall()
    assert n == recorded[1].rows["orderbook"]
    assert c.execute("select count(*) from quotes where date < ?::DATE", [later]).fetchone() == (n,)
    plan = c.execute(f"explain select avg(bid_price_1) from orderbook where date = '{day_value}'").fetchall()
    assert "date" in str(plan).lower()
    with pytest.raises(duckdb.Error, match="broken"):
        c.execute("select avg(bid_price_1) from orderbook").fetchall()


def test_a_table_without_files_is_an_empty_view_with_its_columns(recorded: tuple[Path, Recording],
                                                                 tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(recorded[0], root)
    shutil.rmtree(root / "afterhours")
    (root / "events").mkdir(exist_ok=True)
    for f in (root / "events").rglob("*.parquet"):
        f.unlink()
    full, part = connect(recorded[0]), connect(root)
    for table in ("afterhours", "events"):
        assert part.execute(f"describe {table}").fetchall() == full.execute(f"describe {table}").fetchall()
        assert part.execute(f"select count(*) from {table}").fetchone() == (0,)
    assert part.execute("select count(*) from gaps").fetchone() == (0,)
    assert part.execute("select count(*) from quotes").fetchone() == full.execute(
        "select count(*) from quotes").fetchone()


def test_connect_refuses_what_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as info:
        connect(tmp_path / "nope")
    assert "kiwoom-tape demo" in str(info.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="not a directory"):
        connect(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a kiwoom-tape dataset"):
        connect(tmp_path / "empty")
    (tmp_path / "glob[1]" / "orderbook").mkdir(parents=True)
    with pytest.raises(DatasetError, match="glob"):
        connect(tmp_path / "glob[1]")


def test_an_unreadable_first_file_is_a_dataset_error_naming_verify(recorded: tuple[Path, Recording],
                                                                   tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(recorded[0], root)
    for f in (root / "orderbook").rglob("*.parquet"):
        f.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="kiwoom-tape verify"):
        connect(root)


def test_schemas_stays_pure() -> None:
    code = "import sys, schemas.views; bad = {'duckdb', 'asyncio', 'websockets'} & set(sys.modules); assert not bad"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT_DIR)


def test_the_init_script_builds_the_same_catalog(recorded: tuple[Path, Recording]) -> None:
    root, _ = recorded
    result = sql(str(root), "--init-script")
    assert result.exit_code == 0, result.output
    c = duckdb.connect()
    c.execute(result.stdout)
    ref = connect(root)
    for view in (*views.VIEW_NAMES,):
        assert c.execute(f"select count(*) from {view}").fetchone() == ref.execute(
            f"select count(*) from {view}").fetchone(), view
    assert c.execute("select count(*) from book_asof('005930', now())").fetchone() == (1,)


# --------------------------------------------------------------------------------------------------
# The sql command's outputs and errors


def test_sql_formats(recorded: tuple[Path, Recording], tmp_path: Path) -> None:
    root, rec = recorded
    q = "select item, count(*) as n, min(recv_ts) as first from quotes group by item order by item"
    as_csv = sql(str(root), q, "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["item"] for r in rows] == sorted(ITEMS)
    assert sum(int(r["n"]) for r in rows) == rec.rows["orderbook"]
    assert all(r["first"].endswith("+09") for r in rows)  # KST
    as_json = sql(str(root), q, "-f", "json")
    assert [r["n"] for r in json.loads(as_json.stdout)] == [int(r["n"]) for r in rows]
    out = tmp_path / "q.parquet"
    as_parquet = sql(str(root), q, "--format", "parquet", "--output", str(out))
    assert as_parquet.exit_code == 0, as_parquet.output
    t = pq.read_table(out)
    assert t.column("item").to_pylist() == sorted(ITEMS) and t.schema.field("n").type == pa.int64()
    out_csv = tmp_path / "q.csv"
    assert sql(str(root), q, "-o", str(out_csv)).exit_code == 0  # format from the suffix
    assert out_csv.read_text().splitlines()[0] == "item,n,first"


def test_sql_table_output_is_aligned_and_limited(recorded: tuple[Path, Recording]) -> None:
    root, _ = recorded
    result = sql(str(root), "select item, bid, spread_ticks from quotes order by recv_ts", "--max-rows", "5")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 2 + 5
    assert len({len(line.rstrip()) for line in lines[1:]}) >= 1
    widths = [len(w) for w in lines[1].split("  ")]
    assert len(widths) == 3
    assert "more not shown" in result.stderr
    # numbers are right-aligned under their header
    assert all(line.endswith(("1", "2", "3")) for line in lines[2:])


def test_sql_one_argument_is_a_query_with_spaces_else_a_directory(recorded: tuple[Path, Recording],
                                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    root, _ = recorded
    monkeypatch.chdir(root.parent)
    assert root.name == "data"
    result = sql("select count(*) as n from events")
    assert result.exit_code == 0 and "n" in result.stdout
    result = sql("-", input="select 42 as answer")
    assert result.exit_code == 0 and result.stdout.split() == ["answer", "------", "42"]
    result = sql("data", "--max-rows", "0", "select 1 as one")
    assert result.exit_code == 0 and result.stdout.split() == ["one", "---", "1"]


def test_sql_errors_are_one_clear_line(recorded: tuple[Path, Recording], tmp_path: Path) -> None:
    root, _ = recorded
    bad = sql(str(root), "select nope from quotes")
    assert bad.exit_code == 1 and "nope" in bad.output and "Traceback" not in bad.output
    assert "describe quotes" in bad.output
    missing = sql(str(tmp_path / "missing"), "select 1")
    assert missing.exit_code == 1 and "does not exist" in missing.output and "kiwoom-tape demo" in missing.output
    parquet = sql(str(root), "select 1", "--format", "parquet")
    assert parquet.exit_code == 2 and "--output" in parquet.output
    many = sql(str(root), "select", "1")
    assert many.exit_code == 2 and "quote the query" in many.output


def test_interactive_without_the_duckdb_shell_says_what_to_do(recorded: tuple[Path, Recording],
                                                               tmp_path: Path) -> None:
    root, _ = recorded
    result = sql(str(root), env={"PATH": str(tmp_path)})
    assert result.exit_code == 1
    assert "duckdb shell is not on PATH" in result.output and "--init-script" in result.output


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script as a fake duckdb")
def test_interactive_opens_the_duckdb_shell_on_the_views(recorded: tuple[Path, Recording], tmp_path: Path) -> None:
    root, _ = recorded
    capture = tmp_path / "init.sql"
    fake = tmp_path / "bin" / "duckdb"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\nimport shutil, sys\nassert sys.argv[1] == '-init'\n"
        f"shutil.copy(sys.argv[2], {str(capture)!r})\nsys.exit(3)\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    result = CliRunner().invoke(cli, ["sql", str(root)], env={"PATH": str(fake.parent)})
    assert result.exit_code == 3  # the shell's own exit status
    script = capture.read_text()
    assert "CREATE OR REPLACE VIEW quotes" in script and "book_asof" in script
    assert str(root.resolve()) in script
