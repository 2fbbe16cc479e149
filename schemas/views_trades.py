"""The SQL of the views on trades (0B): the ``trades`` view's derived columns, ``bars(interval)`` and
``quote_mid_at_trade``; :mod:`kiwoom_tape.schemas.views` assembles them into the catalog.

Pure text, like :mod:`kiwoom_tape.schemas.views`: no ``duckdb`` import, no filesystem call.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BARS_SQL", "DERIVED_COLUMNS", "QUOTE_MID_AT_TRADE_SQL", "TRADE_VIEW_NAMES", "receive_order"]

TRADE_VIEW_NAMES: Final = ("quote_mid_at_trade",)
"""The views this module adds after the tables' (``trades`` itself is a table view; ``bars`` is a macro)."""

DERIVED_COLUMNS: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {
    "trades": (
        ("side", "VARCHAR",
         "CASE WHEN trade_qty > 0 THEN 'buy' WHEN trade_qty < 0 THEN 'sell' END"),
        ("qty", "BIGINT", "abs(trade_qty)"),
    ),
}
"""Columns a table's view adds after ``date`` and ``minute``: table -> (name, DuckDB type, SQL over the row).

``trades.side`` is the aggressor side, from the sign of FID 15 거래량 (docs/protocol.md 2.3: "+는 매수체결, -는
매도체결"): ``'buy'`` (a buyer took the ask), ``'sell'`` (a seller hit the bid), NULL for 0 or NULL;
``trades.qty`` is the traded quantity, ``abs(trade_qty)``."""

_KST_US: Final = 9 * 3600 * 1_000_000

BARS_SQL: Final = f"""CREATE OR REPLACE MACRO bars(interval_) AS TABLE
WITH t AS (
    SELECT item, recv_ns, run_id, frame_seq, row_idx, price, trade_qty,
           epoch_us(trade_time) + {_KST_US} AS kst_us,
           CAST(epoch(CAST(interval_ AS INTERVAL)) * 1000000 AS BIGINT) AS width_us
    FROM trades
    WHERE price IS NOT NULL AND trade_qty IS NOT NULL AND trade_time IS NOT NULL
)
SELECT
    item,
    to_timestamp(CAST(CASE WHEN width_us > 0 THEN kst_us // width_us * width_us - {_KST_US}
                      ELSE error('bars(interval): the interval must be positive, e.g. bars(''1 minute'')') END
                 AS DOUBLE) / 1000000) AS bar_start,
    first(price ORDER BY recv_ns, run_id, frame_seq, row_idx) AS open,
    max(price) AS high,
    min(price) AS low,
    last(price ORDER BY recv_ns, run_id, frame_seq, row_idx) AS close,
    sum(abs(trade_qty)) AS volume,
    CAST(sum(CAST(price AS BIGINT) * abs(trade_qty)) AS DOUBLE) / NULLIF(sum(abs(trade_qty)), 0) AS vwap,
    count(*) AS trades,
    coalesce(sum(trade_qty) FILTER (WHERE trade_qty > 0), 0) AS buy_volume,
    coalesce(-sum(trade_qty) FILTER (WHERE trade_qty < 0), 0) AS sell_volume
FROM t
GROUP BY item, bar_start
ORDER BY item, bar_start"""
"""``bars(interval)``: one row per item and interval of exchange time that has trades, from ``trades``.

The bucket is the trade's own time (FID 20 체결시간, whole seconds KST) floored to ``interval`` (a string
or INTERVAL: ``'1 minute'``, ``'5 minutes'``, ``'1 hour'``; months count as 30 days) counted from a KST
midnight, so ``'1 day'`` bars are trading days; ``bar_start`` is that bucket's start. ``open``/``close``
are the first and last trade prices in receive order (``recv_ns``, then the frame and row),
``high``/``low`` the extremes, ``volume`` the shares traded (``sum(abs(FID 15))``), ``vwap`` the
volume-weighted price, ``trades`` the number of 0B rows, ``buy_volume``/``sell_volume`` the volume by
aggressor side (the sign of FID 15, docs/protocol.md 2.3). Rows without a price, quantity or time are left out.
Computed in integer arithmetic (no ICU), like :data:`MINUTE_SQL`."""


def receive_order(alias: str) -> str:
    """The receive order of a row of a normalized table as one sortable SQL value,
    ``row(alias.recv_ns, alias.run_id, alias.frame_seq, alias.row_idx)``: an ASOF JOIN's inequality on it
    finds the row received before another even when both came in the same frame or nanosecond."""
    return f"row({alias}.recv_ns, {alias}.run_id, {alias}.frame_seq, {alias}.row_idx)"


QUOTE_MID_AT_TRADE_SQL: Final = f"""CREATE OR REPLACE VIEW quote_mid_at_trade AS
SELECT
    t.recv_ts, t.recv_ns, t."date", t.minute, t.run_id, t.frame_seq, t.row_idx, t.item, t.code, t.venue,
    t.trade_time, t.price, t.qty, t.side,
    q.recv_ts AS quote_recv_ts, q.recv_ns AS quote_recv_ns, q.quote_time, q.bid, q.ask, q.bid_qty, q.ask_qty,
    q.mid, q.spread_ticks, q.crossed,
    CASE WHEN NOT q.crossed THEN 2 * abs(t.price - q.mid) END AS effective_spread,
    CASE WHEN NOT q.crossed THEN abs(2 * krx_tick_index(t.price) - krx_tick_index(q.bid) - krx_tick_index(q.ask))
    END AS effective_spread_ticks
FROM trades AS t
ASOF LEFT JOIN quotes AS q
    ON t.item = q.item AND t."date" = q."date"
   AND {receive_order("t")} > {receive_order("q")}"""
"""``quote_mid_at_trade``: one row per trade (0B row) with the quote (0D best level, view ``quotes``) in force
when it was received, for the effective spread (docs/protocol.md 2.1, 2.3).

The prevailing quote is the last ``quotes`` row of the same item and trading ``date`` received before the trade
in receive order (``recv_ns``, ``run_id``, ``frame_seq``, ``row_idx``): a book received in the same frame
after the trade row (the simulated market sends a trade, then the 0D row showing the book after it) is not
in force yet, one earlier in the same frame or microsecond is. A trade before the day's first quote of its item
has NULL quote columns; a quote of an earlier day never prevails.

Columns: the trade's ``recv_ts``, ``recv_ns``, ``date``, ``minute``, keys, ``item``, ``code``, ``venue``,
``trade_time``, ``price``, ``qty``, ``side`` (``trades``); the quote's ``quote_recv_ts``, ``quote_recv_ns``,
``quote_time``, ``bid``, ``ask``,
``bid_qty``, ``ask_qty``, ``mid``, ``spread_ticks``, ``crossed`` (``quotes``: ``mid`` and ``spread_ticks`` are
NULL when a side is empty); ``effective_spread`` = 2 x |price - mid| in won and ``effective_spread_ticks``, the
same in KRX ticks: 2 x |price - mid| over the tick size where bid, ask and price share a tick band, and
``|2 x krx_tick_index(price) - krx_tick_index(bid) - krx_tick_index(ask)|`` in general, so that each tick
counts at its own size across a band edge and a trade at the touch has the quoted ``spread_ticks``. Both are
NULL when a side is empty or the book is crossed or locked (``bid >= ask``: an auction's book, no mid).

Ticks are the KRX stock table (docs/protocol.md 5.5) for every venue, as in ``quotes.spread_ticks``: NXT
(``_NX``) and SOR (``_AL``) items are counted on the KRX grid (docs/protocol.md gives no table of their own;
the simulated market prices them on it), and ETFs (5-won tick at every price) on the stock table too, so
their figures are in stock-table ticks, not their own."""
