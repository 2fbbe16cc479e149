"""The DuckDB catalog of a dataset as SQL text (DESIGN.md: "the DuckDB view definitions as SQL text").

Pure: no ``duckdb`` import, no filesystem call. :mod:`kiwoom_tape.replay.catalog` runs these statements on a
connection, ``kiwoom-tape sql DIR`` (no query) hands them to the ``duckdb`` shell as an init script.

Views and macros, in the order :func:`catalog_statements` creates them::

    frames, orderbook, afterhours,          the stored tables (schemas.tables), one row per stored row,
    trades, events                          plus the Hive partition column ``date`` (KST trading date)
                                            and ``minute`` (``recv_ts`` floored to the minute); ``trades``
                                            adds ``side`` and ``qty`` (:data:`DERIVED_COLUMNS`)
    krx_tick_size(price)                    the KRX tick at a price (docs/protocol.md 5.5)
    krx_tick_index(price)                   the number of ticks from 0 to a price on the KRX ladder
    quotes                                  per orderbook row: ``minute``, best bid/ask, mid, spread (won,
                                            ticks), microprice, depth imbalance
    gaps                                    holes in the recording: gap_start/gap_end, crashes, journal damage
    rows                                    one row per REAL row of any type, its values as a MAP
    book_asof(item, ts)                     table macro: the orderbook row in force at ``ts``
    bars(interval)                          table macro: OHLCV, VWAP, trade count, buy/sell volume per
                                            item per interval of exchange time, from trades
    quote_mid_at_trade                      per trade: the quote in force when it came (ASOF), its mid,
                                            the effective spread in won and ticks

The trade views (``trades``' derived columns, ``bars``, ``quote_mid_at_trade``) are written in
:mod:`kiwoom_tape.schemas.views_trades`; this module assembles the catalog.

Each table view reads ``ROOT/TABLE/date=*/*.parquet`` with ``hive_partitioning``: a filter on ``date``
skips whole partitions, whose files are then not even opened. Columns are matched by name across files
and the first file (the oldest date) fixes the column list. ``union_by_name`` is off when the table's files
are all of one schema version (:mod:`kiwoom_tape.schemas.tables`): it opens every file's footer on every
query, and one unreadable file anywhere would then break every query (``kiwoom-tape verify`` finds such
files). A table whose oldest and newest files differ in version (a user who upgraded, maybe mid-day,
or an interrupted ``kiwoom-tape migrate``) is read with it, exactly, until ``migrate`` makes it all version 2.
Files a running recorder is writing are in ``ROOT/_tmp/``,
outside every table folder (:mod:`kiwoom_tape.schemas.layout`). ``recv_ts`` is exposed as ``TIMESTAMPTZ``
(microseconds) so that it compares with ``now()`` and with literals such as ``'2026-11-23 09:00:00'`` on every
DuckDB version, and ``recv_ns`` right after it is the exact receive time in nanoseconds since the epoch
(``BIGINT``: version 2 ``epoch_us(recv_ts) * 1000 + recv_sub_us``, version 1 the file's nanoseconds), the
column the views order by; ``recv_sub_us`` itself is not shown. The time columns (``quote_time``, ...) are UTC
instants in the files and ``TIMESTAMPTZ`` in the views. A table with no file yet (a dataset without
after-hours rows, say) gets a view of the same columns and types with no rows, so queries still bind.

The catalog sets ``TimeZone`` to ``Asia/Seoul``: timestamps print in KST and a literal without an
offset means KST, like the market.

``minute`` (a ``TIMESTAMPTZ``, see :data:`MINUTE_SQL`) is the bucket to group by for per-minute figures:
``SELECT item, minute, avg(mid) FROM quotes GROUP BY ALL``. It is computed from the integer epoch, as
cheap as integer minutes, where ``date_trunc('minute', recv_ts)`` and ``time_bucket(...)`` on a
``TIMESTAMPTZ`` go through ICU's calendar for every row (two to three times slower over a day of 0D
rows, ``bench/query.py``). The buckets are the same, KST being a whole number of hours from UTC. Other
widths the same way: ``to_timestamp(epoch_us(recv_ts) // 300000000 * 300)`` is the 5-minute bucket.
Filter on ``recv_ts`` or ``date`` rather than ``minute``: those reach the Parquet scan, an expression does
not.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import pyarrow as pa
from kiwoom_tape.schemas.layout import TABLE_NAMES
from kiwoom_tape.schemas.tables import QUOTE_TZ, TABLES
from kiwoom_tape.schemas.views_trades import BARS_SQL, DERIVED_COLUMNS, QUOTE_MID_AT_TRADE_SQL, TRADE_VIEW_NAMES

__all__ = [
    "BARS_SQL",
    "BOOK_ASOF_SQL",
    "DERIVED_COLUMNS",
    "GAPS_SQL",
    "GLOB_CHARS",
    "MINUTE_SQL",
    "QUOTES_SQL",
    "QUOTE_MID_AT_TRADE_SQL",
    "RECV_NS_SQL",
    "RECV_NS_V1_SQL",
    "ROWS_SQL",
    "TICK_MACROS_SQL",
    "VIEW_NAMES",
    "Relation",
    "Source",
    "catalog_statements",
    "duckdb_type",
    "empty_select",
    "init_script",
    "parquet_glob",
    "read_parquet",
    "sql_string",
    "statements_for",
    "table_view",
    "view_columns",
]

VIEW_NAMES: Final = (*TABLE_NAMES, "quotes", "gaps", "rows", *TRADE_VIEW_NAMES)
"""Every view the catalog creates (the table macros come on top: ``book_asof``, ``krx_tick_*``)."""

GLOB_CHARS: Final = frozenset("*?[]{}")
"""Characters DuckDB's file globbing interprets; a dataset root must not contain them."""

MINUTE_SQL: Final = "to_timestamp(epoch_us(recv_ts) // 60000000 * 60)"
"""The ``minute`` column: the view's ``recv_ts`` (a ``TIMESTAMPTZ``) floored to the minute, a ``TIMESTAMPTZ``
equal to ``date_trunc('minute', recv_ts)`` in KST or UTC alike. Whole minutes since the epoch in integer
arithmetic, then one ``to_timestamp`` (core DuckDB, no ICU: seconds to ``TIMESTAMPTZ``, exact for whole
seconds), so grouping by it costs what grouping by an integer does. It is computed on the view's
microseconds: version 2 files store the receive time floored to the microsecond (a row received at
09:00:59.9999996 is in the 09:00 bucket); a version 1 file's nanoseconds are rounded by the cast to
``TIMESTAMPTZ``. (``//`` truncates: right for times after 1970.)"""

# docs/protocol.md 5.5, the KRX tick table since 2023-01-25: (upper bound exclusive, tick); 1,000 above.
# Kept here as data for the SQL; tests/test_catalog.py checks it against schemas.market.tick_size.
_TICK_BANDS: Final = ((2_000, 1), (5_000, 5), (20_000, 10), (50_000, 50), (200_000, 100), (500_000, 500))
_TOP_TICK: Final = 1_000


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal: ``it's`` -> ``'it''s'``."""
    return "'" + text.replace("'", "''") + "'"


def parquet_glob(root: str, table: str) -> str:
    """``ROOT/TABLE/date=*/*.parquet``: every complete part file of a table (schemas.layout)."""
    if table not in TABLE_NAMES:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLE_NAMES)}")
    if not root:
        raise ValueError("the dataset root must not be empty (use '.' for the current directory)")
    return f"{root.rstrip('/') or ''}/{table}/date=*/*.parquet"


@dataclass(frozen=True, slots=True)
class Relation:
    """A table's rows as a relation already on the connection (an Arrow dataset registered under ``name``, with
    the partition's ``date`` as its last column), in place of a glob: the catalog of a dataset on S3."""

    name: str


Source = str | Sequence[str] | Relation
"""Where a table view reads: a glob, a list of part files, or a :class:`Relation`."""


def read_parquet(files: str | Iterable[str], *, by_name: bool = False) -> str:
    """``read_parquet(...)`` over a glob or a list of files, Hive-partitioned on ``date`` (a DATE); ``by_name``:
    with ``union_by_name`` (files of both schema versions)."""
    arg = sql_string(files) if isinstance(files, str) else "[" + ", ".join(map(sql_string, files)) + "]"
    union = ", union_by_name = true" if by_name else ""
    return f"read_parquet({arg}, hive_partitioning = true, hive_types = {{'date': DATE}}{union})"


def duckdb_type(typ: pa.DataType) -> str:
    """The DuckDB type a column of Arrow type ``typ`` has in the views (timestamps with a zone: TIMESTAMPTZ)."""
    if pa.types.is_timestamp(typ):
        return "TIMESTAMPTZ" if typ.tz is not None else "TIMESTAMP"
    simple = {
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float64(): "DOUBLE",
        pa.string(): "VARCHAR",
        pa.large_string(): "VARCHAR",
        pa.bool_(): "BOOLEAN",
        pa.date32(): "DATE",
    }
    try:
        return simple[typ]
    except KeyError:
        raise ValueError(f"no DuckDB type for Arrow {typ}") from None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


RECV_NS_SQL: Final = "epoch_ns(recv_ts) + coalesce(recv_sub_us, 0)"
"""The ``recv_ns`` column over the files' columns: exact for both schema versions (``recv_sub_us`` is NULL in a
version 1 file, whose ``recv_ts`` holds the nanoseconds)."""
RECV_NS_V1_SQL: Final = "epoch_ns(recv_ts)"
"""The ``recv_ns`` column over files of schema version 1 only (they have no ``recv_sub_us``)."""


def view_columns(table: str) -> list[tuple[str, str]]:
    """(name, DuckDB type) of a table view's stored columns: ``recv_ts``, ``recv_ns``, then the rest of the
    table's columns but ``recv_sub_us`` (``date``, ``minute`` and the derived columns follow them)."""
    out = [("recv_ts", "TIMESTAMPTZ"), ("recv_ns", "BIGINT")]
    out += [(f.name, duckdb_type(f.type)) for f in TABLES[table] if f.name not in ("recv_ts", "recv_sub_us")]
    return out


def empty_select(table: str) -> str:
    """A SELECT of no rows with the table's columns and view types, then ``date`` and ``minute``: the view
    of a table that has no file yet."""
    cols = [f"CAST(NULL AS {typ}) AS {_ident(name)}" for name, typ in view_columns(table)]
    cols += ['CAST(NULL AS DATE) AS "date"', "CAST(NULL AS TIMESTAMPTZ) AS minute"]
    cols += [f"CAST(NULL AS {typ}) AS {_ident(name)}" for name, typ, _sql in DERIVED_COLUMNS.get(table, ())]
    return "SELECT " + ", ".join(cols) + " WHERE false"


def table_view(table: str, files: str | Iterable[str] | Relation | None, version: str = "2") -> str:
    """``CREATE OR REPLACE VIEW table AS ...`` over ``files`` (a glob or a list), or empty when None.

    The columns: :func:`view_columns` (``recv_ts`` as ``TIMESTAMPTZ``, ``recv_ns``), the partition's ``date``,
    ``minute``, then the table's :data:`DERIVED_COLUMNS`. ``minute`` is :data:`MINUTE_SQL`; a query that does not name
    it (``count(*)``, ``SELECT item, ...``) does not compute it. ``version``: the schema version of the files,
    ``"2"``, ``"1"`` (no ``recv_sub_us`` to read: :data:`RECV_NS_V1_SQL`) or ``"mixed"`` (read with
    ``union_by_name``).
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
    if files is None:
        body = empty_select(table)
    else:
        source = (_ident(files.name) if isinstance(files, Relation)
                  else read_parquet(files, by_name=version == "mixed"))
        derived = "".join(
            f", CAST({sql} AS {typ}) AS {_ident(name)}" for name, typ, sql in DERIVED_COLUMNS.get(table, ())
        )
        stored = ", ".join(_ident(name) for name, _typ in view_columns(table)[2:])
        recv_ns = RECV_NS_V1_SQL if version == "1" else RECV_NS_SQL
        body = (f"SELECT *, {MINUTE_SQL} AS minute{derived} FROM "
                f"(SELECT CAST(recv_ts AS TIMESTAMPTZ) AS recv_ts, {recv_ns} AS recv_ns, {stored}, \"date\" "
                f"FROM {source})")
    return f"CREATE OR REPLACE VIEW {table} AS {body}"


def _tick_macros() -> str:
    size = " ".join(f"WHEN price < {bound} THEN {tick}" for bound, tick in _TICK_BANDS)
    index_parts = []
    lo = base = 0
    for bound, tick in _TICK_BANDS:
        index_parts.append(f"WHEN price < {bound} THEN {base} + (price - {lo}) // {tick}")
        base += (bound - lo) // tick
        lo = bound
    index = " ".join(index_parts)
    return (
        f"CREATE OR REPLACE MACRO krx_tick_size(price) AS CASE WHEN price IS NULL THEN NULL {size} "
        f"ELSE {_TOP_TICK} END;\n"
        f"CREATE OR REPLACE MACRO krx_tick_index(price) AS CASE WHEN price IS NULL THEN NULL {index} "
        f"ELSE {base} + (price - {lo}) // {_TOP_TICK} END"
    )


TICK_MACROS_SQL: Final = _tick_macros()
"""``krx_tick_size(price)`` (docs/protocol.md 5.5) and ``krx_tick_index(price)``: the position of a price on
the KRX ladder, so that ``krx_tick_index(ask) - krx_tick_index(bid)`` counts ticks across band edges
(49,950 -> 50,100 is 2 ticks: 50 then 100 won). Exact for prices on the grid; off-grid prices floor."""

QUOTES_SQL: Final = """CREATE OR REPLACE VIEW quotes AS
SELECT
    recv_ts, recv_ns, quote_time, "date", minute, run_id, frame_seq, row_idx, item, code, venue,
    bid_price_1 AS bid,
    ask_price_1 AS ask,
    bid_qty_1 AS bid_qty,
    ask_qty_1 AS ask_qty,
    (bid_price_1 + ask_price_1) / 2.0 AS mid,
    ask_price_1 - bid_price_1 AS spread,
    krx_tick_index(ask_price_1) - krx_tick_index(bid_price_1) AS spread_ticks,
    krx_tick_size(bid_price_1) AS tick,
    (CAST(bid_price_1 AS DOUBLE) * ask_qty_1 + CAST(ask_price_1 AS DOUBLE) * bid_qty_1)
        / NULLIF(bid_qty_1 + ask_qty_1, 0) AS microprice,
    CAST(bid_qty_1 - ask_qty_1 AS DOUBLE) / NULLIF(bid_qty_1 + ask_qty_1, 0) AS imbalance_1,
    total_bid_qty AS bid_depth,
    total_ask_qty AS ask_depth,
    CAST(total_bid_qty - total_ask_qty AS DOUBLE) / NULLIF(total_bid_qty + total_ask_qty, 0) AS imbalance,
    bid_price_1 >= ask_price_1 AS crossed,
    flags
FROM orderbook"""
"""One row per orderbook row. ``minute`` is ``recv_ts`` floored to the minute (:data:`MINUTE_SQL`), the
cheap per-minute bucket. ``mid``, ``spread``, ``spread_ticks``, ``microprice`` are NULL when a side is
empty; ``microprice = (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty)``; ``imbalance_1`` uses the
best level, ``imbalance`` the 10-level totals (FIDs 125 and 121): ``(bid - ask) / (bid + ask)`` in -1..1."""

GAPS_SQL: Final = """CREATE OR REPLACE VIEW gaps AS
WITH g AS (
    SELECT run_id, recv_ts, kind, detail, "date",
           row_number() OVER (PARTITION BY run_id, kind ORDER BY recv_ns) AS n
    FROM events
    WHERE kind IN ('gap_start', 'gap_end')
),
runs AS (
    SELECT run_id, min(recv_ts) AS first_ts FROM events WHERE kind <> 'recovery' GROUP BY run_id
),
paired AS (
    SELECT
        s.run_id,
        s.recv_ts AS gap_start,
        coalesce(e.recv_ts, CASE WHEN json_extract_string(s.detail, '$.cause') = 'crash' THEN (
            SELECT min(r.first_ts) FROM runs AS r WHERE r.run_id <> s.run_id AND r.first_ts >= s.recv_ts
        ) END) AS gap_end,
        json_extract_string(s.detail, '$.cause') AS cause,
        s."date"
    FROM g AS s
    LEFT JOIN g AS e ON e.run_id = s.run_id AND e.kind = 'gap_end' AND e.n = s.n
    WHERE s.kind = 'gap_start'
    UNION ALL
    SELECT run_id, recv_ts, to_timestamp(CAST(json_extract_string(detail, '$.until_ns') AS BIGINT) / 1e9),
           'journal_damage', "date"
    FROM events
    -- json_extract_string: a JSON null (a torn tail, which the crash gap covers) is SQL NULL; json_extract's is not
    WHERE kind = 'journal_damage' AND json_extract_string(detail, '$.until_ns') IS NOT NULL
)
SELECT run_id, gap_start, gap_end, epoch(gap_end) - epoch(gap_start) AS seconds, cause, "date"
FROM paired
ORDER BY gap_start"""
"""One row per hole in the recording. A ``gap_start`` event is paired, within its run, with the ``gap_end``
of the same rank (the recorder opens at most one gap at a time). A ``crash`` gap (written by recovery for a
run that did not stop cleanly, from its last durable record) ends at the first event of the next run
(recovery events aside); any other ``gap_end`` is NULL for a gap still open when the run stopped. A
``journal_damage`` event with an ``until_ns`` (an unreadable range of a journal with valid records after
it) is a gap from the last record before the damage to the first after it. ``cause`` is e.g.
``connect_failed``, ``server_close``, ``crash``, ``journal_damage``."""

BOOK_ASOF_SQL: Final = """CREATE OR REPLACE MACRO book_asof(item_, ts_) AS TABLE
SELECT * FROM orderbook
WHERE item = item_
  AND recv_ts <= CAST(ts_ AS TIMESTAMPTZ)
  AND "date" <= CAST(make_timestamp(epoch_us(CAST(ts_ AS TIMESTAMPTZ)) + 32400000000) AS DATE)
ORDER BY recv_ns DESC, run_id DESC, frame_seq DESC, row_idx DESC
LIMIT 1"""
"""``book_asof(item, ts)``: the last orderbook row of ``item`` received at or before ``ts`` (a TIMESTAMPTZ,
or a string read in the session time zone, KST), i.e. the book in force then; no row before the first.
The ``date`` bound (the KST date of ``ts``; 32400 s = UTC+9) lets DuckDB skip later partitions."""


ROWS_SQL: Final = """CREATE OR REPLACE VIEW rows AS
SELECT f.recv_ts, f.recv_ns, f.run_id, f.seq AS frame_seq, CAST(u.i - 1 AS SMALLINT) AS row_idx,
       u.r->>'$.item' AS item, u.r->>'$.type' AS type, u.r->>'$.name' AS name,
       json_transform(u.r->'$.values', '"MAP(VARCHAR, VARCHAR)"') AS "values", f."date", f.minute
FROM frames AS f,
     LATERAL (SELECT unnest(range(1, len(d) + 1)) AS i, unnest(d) AS r
              FROM (SELECT CAST(f.text->'$.data' AS JSON[]) AS d)) AS u
WHERE f.direction = 'in' AND f.trnm = 'REAL' AND f.parse_error IS NULL"""
"""One row per row of every REAL frame received, of any type (docs/protocol.md 1.7, 3): ``recv_ts``, ``recv_ns``,
``run_id``,
``frame_seq`` (= ``frames.seq``), ``row_idx``, ``item``, ``type``, ``name``, ``values`` (a
``MAP(VARCHAR, VARCHAR)`` of FID to the wire string, in the wire's order: ``"values"['10']``), ``date``,
``minute``. Types without a table of their own (0H, 1h, ...) are queried here; ``row_idx`` matches the
typed tables' for 0B/0D/0E. Frames stored with a ``parse_error`` are left out. ``values`` is a reserved
word: quote it."""


def _set_timezone() -> str:
    return f"SET TimeZone = {sql_string(QUOTE_TZ)}"


def statements_for(sources: Mapping[str, Source], versions: Mapping[str, str] | None = None) -> list[str]:
    """The catalog's statements over explicit ``sources``: table -> a glob, a list of part files or a Relation.

    A table missing from ``sources`` (or with an empty list) gets an empty view. The first statement
    sets the time zone (it needs DuckDB's ICU extension: a caller may skip it when that fails). ``versions``:
    table -> the schema version of its files (:func:`table_view`), ``"2"`` for a table not named.
    """
    out = [_set_timezone()]
    for table in TABLE_NAMES:
        files = sources.get(table)
        if files is not None and not isinstance(files, str | Relation):
            files = list(files) or None
        out.append(table_view(table, files, (versions or {}).get(table, "2")))
    out.extend(TICK_MACROS_SQL.split(";\n"))
    out += [QUOTES_SQL, GAPS_SQL, ROWS_SQL, BOOK_ASOF_SQL, BARS_SQL, QUOTE_MID_AT_TRADE_SQL]
    return out


def catalog_statements(root: str, present: Collection[str], versions: Mapping[str, str] | None = None) -> list[str]:
    """The statements that create the catalog of the dataset at ``root``, in order.

    ``present``: the tables that have at least one part file (the others get empty views). ``root``
    should be absolute so that the views work from any directory; it must not contain
    :data:`GLOB_CHARS` (ValueError).
    """
    bad = GLOB_CHARS.intersection(root)
    if bad:
        raise ValueError(f"the dataset path {root!r} contains {''.join(sorted(bad))}, which DuckDB reads as a glob")
    return statements_for({t: parquet_glob(root, t) for t in TABLE_NAMES if t in present}, versions)


def init_script(root: str, present: Collection[str], versions: Mapping[str, str] | None = None) -> str:
    """:func:`catalog_statements` as one script for ``duckdb -init FILE``."""
    head = (f"-- kiwoom-tape catalog of {root}: views {', '.join(VIEW_NAMES)}; "
            "macros book_asof(item, ts), bars(interval)\n")
    return head + ";\n".join(catalog_statements(root, present, versions)) + ";\n"
