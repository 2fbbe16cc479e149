"""The trades (0B) checks of ``kiwoom-tape verify``: prices, cumulative volume, the book's touch, trading windows.

Run by :func:`kiwoom_tape.verify.verify` on its connection (the catalog's views over the readable files).
Errors mean rows that cannot be right whatever the market did (docs/protocol.md 2.3, 5.5):

- a price off the KRX tick grid and off the 5-won ETF grid (on the 5-won grid only: a warning, as for books);
- a price outside the daily band, +/-30 % of the reference price ``abs(FID 10) - FID 11`` (2.3);
- a cumulative volume (FID 13) lower than the one before it, per item and KST date, in receive order.

Warnings are what a live feed may well do and a user should know:

- a trade more than one tick outside the touch of the book in force when it was received (the last 0D row of
  the item received before it in receive order ``recv_ns``, ``run_id``, ``frame_seq``, ``row_idx``, as in the
  ``quote_mid_at_trade`` view: a book later in the same frame or microsecond is not in force yet; of the same
  run, as a book of another session may be stale; at most :data:`BOOK_MAX_AGE_S` old, not crossed): a sweep
  through several levels prints so, but so does a mismatched book;
- a trade whose exchange time (FID 20) is outside the windows 0B flows in (:data:`TRADE_WINDOWS`).
"""

from __future__ import annotations

from typing import Any, Final

import duckdb

from kiwoom_tape.schemas.views_trades import receive_order
from kiwoom_tape.verify_report import VerifyReport

__all__ = ["BOOK_MAX_AGE_S", "TRADE_WINDOWS", "check_trades", "off_grid_sql"]


def _hms(h: int, m: int = 0, s: int = 0) -> int:
    return h * 3600 + m * 60 + s


TRADE_WINDOWS: Final[dict[str, tuple[tuple[int, int], ...]]] = {
    # 08:30-08:40 장전 시간외 종가, 09:00-15:30 regular (the closing print stamped up to a minute later),
    # 15:40-16:00 장후 시간외 종가; no 0B in the 16:00-18:00 단일가 (docs/protocol.md 5.1, 5.3)
    "KRX": ((_hms(8, 30), _hms(8, 40, 1)), (_hms(9), _hms(15, 31)), (_hms(15, 40), _hms(16, 0, 1))),
    # pre-market 08:00-08:50, main 09:00:30-15:20, after-market 15:30-20:00 (docs/protocol.md 5.2)
    "NXT": ((_hms(8), _hms(8, 50, 1)), (_hms(9, 0, 30), _hms(15, 20, 1)), (_hms(15, 30), _hms(20, 0, 1))),
}
"""Venue -> the ``[start, end)`` windows (seconds since KST midnight) in which its items print trades
(SOR ``_AL`` items as KRX). Each window closes a second late: a print stamped at its last second counts."""

BOOK_MAX_AGE_S: Final = 10
"""The oldest book (seconds before the trade) the touch check compares a trade with; older: not checked."""


def off_grid_sql(column: str) -> tuple[str, str]:
    """SQL conditions on a price ``column``: (off the KRX stock tick grid, off that grid and the 5-won grid).

    NULL prices are on every grid (``coalesce(..., false)``); see docs/protocol.md 5.5 and the catalog's
    ``krx_tick_size`` macro.
    """
    off_stock = f"coalesce({column} % krx_tick_size({column}) <> 0, false)"
    off_all = f"coalesce({column} % krx_tick_size({column}) <> 0 AND {column} % 5 <> 0, false)"
    return off_stock, off_all


def _examples(con: duckdb.DuckDBPyConnection, where: str) -> str:
    rows = con.execute(
        f"""SELECT item, count(*), min(trade_time)::VARCHAR FROM _verify_trades WHERE {where}
            GROUP BY item ORDER BY 2 DESC, 1 LIMIT 5"""
    ).fetchall()
    return "; ".join(f"{item}: {n} from {first}" for item, n, first in rows)


def _windows_sql(sod: str) -> str:
    parts = []
    for venue, windows in TRADE_WINDOWS.items():
        inside = " OR ".join(f"({sod} >= {a} AND {sod} < {b})" for a, b in windows)
        venues = "venue = 'NXT'" if venue == "NXT" else "venue <> 'NXT'"
        parts.append(f"({venues} AND ({inside}))")
    return " OR ".join(parts)


def check_trades(report: VerifyReport, con: duckdb.DuckDBPyConnection) -> None:
    """Add the trades checks' problems and counts (``report.trade_rows``, ``report.trade_checks``) to ``report``."""
    off_stock, off_all = off_grid_sql("price")
    sod = "((epoch(trade_time)::BIGINT + 32400) % 86400)"  # second of the KST day
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _verify_trades AS
        WITH t AS (
            SELECT t.*,
                   t.price - t.change AS reference,
                   lag(t.cum_volume) OVER (PARTITION BY t.item, t."date"
                                           ORDER BY t.recv_ns, t.run_id, t.frame_seq, t.row_idx) AS prev_cum
            FROM trades AS t
        )
        SELECT t.item, t.venue, t.trade_time, t.price, t.reference, t.cum_volume, t.prev_cum,
               {off_stock} AS off_stock, {off_all} AS off_all,
               {sod} AS sod,
               CASE WHEN b.recv_ts >= t.recv_ts - INTERVAL {BOOK_MAX_AGE_S} SECOND
                         AND b.bid_price_1 < b.ask_price_1 THEN b.bid_price_1 END AS bid,
               CASE WHEN b.recv_ts >= t.recv_ts - INTERVAL {BOOK_MAX_AGE_S} SECOND
                         AND b.bid_price_1 < b.ask_price_1 THEN b.ask_price_1 END AS ask
        FROM t ASOF LEFT JOIN orderbook AS b ON t.item = b.item AND t.run_id = b.run_id
                                                 AND {receive_order("t")} > {receive_order("b")}"""
    )
    checks: dict[str, tuple[str, str, str, str]] = {
        # name: (condition, severity, message, hint)
        "off_grid": (
            "off_all", "error", "prices off the KRX tick grid (docs/protocol.md 5.5)",
            "prices are stored as absolute won: damaged rows, or a normalizer bug",
        ),
        "etf_grid": (
            "off_stock AND NOT off_all", "warning", "prices off the stock tick grid but on the 5-won grid",
            "expected for ETFs, ETNs and ELWs (5-won tick); an error for a stock",
        ),
        "band": (
            "reference > 0 AND (price * 10 > reference * 13 OR price * 10 < reference * 7)", "error",
            "prices outside the daily band, +/-30 % of the reference price abs(FID 10) - FID 11",
            "a price or a change (FID 11) is damaged",
        ),
        "volume_down": (
            "cum_volume < prev_cum", "error", "cumulative volumes (FID 13) lower than the trade before",
            "per item and day FID 13 only rises: rows out of order, or damaged",
        ),
        "off_touch": (
            "bid IS NOT NULL AND ask IS NOT NULL AND (price < bid - krx_tick_size(bid) "
            "OR price > ask + krx_tick_size(ask))",
            "warning", "trades more than one tick outside the touch of the book in force",
            "a sweep through several levels prints so; many of them: the books and trades do not match",
        ),
        "off_hours": (
            f"trade_time IS NOT NULL AND NOT ({_windows_sql('sod')})", "warning",
            "trades outside the windows 0B flows in (docs/protocol.md 5.3)",
            "the live feed may surprise: look at them with `from trades where ...` (an exam day shifts "
            "KRX hours by one)",
        ),
    }
    counts = [f"count(*) FILTER (WHERE {cond})" for cond, _s, _m, _h in checks.values()]
    row: Any = con.execute(f"SELECT count(*), {', '.join(counts)} FROM _verify_trades").fetchone()
    report.trade_rows = int(row[0])
    for (name, (cond, severity, message, hint)), n in zip(checks.items(), row[1:], strict=True):
        report.trade_checks[name] = int(n)
        if n:
            text = f"trades: {n} {message}: {_examples(con, cond)}"
            (report.error if severity == "error" else report.warn)(text, hint)
    con.execute("DROP TABLE _verify_trades")
