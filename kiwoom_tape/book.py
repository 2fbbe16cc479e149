"""``kiwoom-tape book``: the 10-level order book in force at a time, with the last trades, as a trader reads it.

The library first (:func:`load_book` reads a :class:`BookView` through the catalog of :mod:`kiwoom_tape.replay.catalog`,
:func:`render_book` prints it), the click command a thin shell over them. The book is the last ``orderbook``
row (0D, docs/protocol.md 2.1) of the item received at or before the time on that trading date; the trades
are the item's last ``trades`` rows (0B, docs/protocol.md 2.3) received at or before the same time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click
import duckdb

from kiwoom_tape.clikit import friendly_errors
from kiwoom_tape.replay.catalog import connect
from kiwoom_tape.schemas.errors import KiwoomTapeError
from kiwoom_tape.schemas.market import KST

__all__ = ["LEVELS", "BookView", "Trade", "book_command", "load_book", "parse_at", "render_book"]

LEVELS: Final = 10
"""Levels a side of a 0D book carries (docs/protocol.md 2.1)."""

_ORDER: Final = "recv_ns DESC, run_id DESC, frame_seq DESC, row_idx DESC"


@dataclass(frozen=True)
class Trade:
    """One 0B row as the book prints it."""

    trade_time: dt.datetime
    """FID 20 체결시간, KST."""
    recv_us: int
    price: int | None
    qty: int | None
    side: str | None
    """``buy``/``sell`` from the sign of FID 15 (view ``trades``)."""


@dataclass(frozen=True)
class BookView:
    """The book of ``item`` in force at ``at`` on ``date``, and the trades up to then."""

    item: str
    date: dt.date
    at: dt.datetime
    """The exchange time asked for (KST): ``--at``, or the quote time of the day's last book."""
    recv_us: int
    """When the book was received (epoch microseconds)."""
    quote_time: dt.datetime
    """FID 21 호가시간, KST."""
    asks: list[tuple[int, int]]
    """(price, quantity) from the best ask outwards; empty levels left out."""
    bids: list[tuple[int, int]]
    """(price, quantity) from the best bid outwards; empty levels left out."""
    spread_ticks: int | None
    """KRX ticks between the best bid and ask (view ``quotes``); None when a side is empty."""
    trades: list[Trade]
    """The last trades stamped (FID 20) at or before ``at``, newest first in receive order."""


def parse_at(text: str) -> dt.time:
    """``HH:MM:SS`` (or ``HH:MM``, ``HH:MM:SS.ffffff``) as a time of day; ValueError naming the format."""
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time of day: use HH:MM:SS (KST), e.g. 09:30:00") from None


def _kst(seconds: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, KST)


def _us_to_kst(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us // 1_000_000, KST).replace(microsecond=us % 1_000_000)


def _items_hint(con: duckdb.DuckDBPyConnection) -> str:
    items = [r[0] for r in con.execute("SELECT DISTINCT item FROM orderbook ORDER BY item LIMIT 9").fetchall()]
    if not items:
        return "the dataset has no order book rows: record 0D (`record --types 0B,0D,0E`)"
    more = ", ..." if len(items) > 8 else ""
    return f"items with a book here: {', '.join(items[:8])}{more}"


def load_book(con: duckdb.DuckDBPyConnection, item: str, *, date: dt.date | None = None,
              at: dt.time | None = None, trades: int = 5) -> BookView:
    """The book of ``item`` in force at ``at`` on ``date``, with its last ``trades`` trades at or before then.

    ``at`` is exchange time (KST): the book is the last ``orderbook`` row of the item, in receive order, whose
    FID 21 호가시간 is at or before ``at`` (whole seconds: ``10:00:30`` is in force until 10:00:31), and the
    trades are the item's last ``trades`` rows, in receive order, whose FID 20 체결시간 is at or before
    ``at``. Default ``at``: the time of the day's last book; default ``date``: the latest date with a book
    of ``item``. ``con`` is a catalog connection (:func:`kiwoom_tape.replay.catalog.connect`). Raises KiwoomTapeError
    for
    an item without books (naming a few items present), a date without a book of the item, or a time before
    its first book that day (naming that book's time).
    """
    ((n_books, last_date),) = con.execute(
        'SELECT count(*), max("date") FROM orderbook WHERE item = $1', [item]).fetchall()
    if not n_books:
        raise KiwoomTapeError(f"no order book of item {item!r} in this dataset", hint=_items_hint(con))
    day: dt.date = last_date if date is None else date
    ((first_s, last_s),) = con.execute(
        'SELECT epoch(min(quote_time)), epoch(max(quote_time)) FROM orderbook WHERE item = $1 AND "date" = $2',
        [item, day]).fetchall()
    if first_s is None:
        dates = [str(r[0]) for r in con.execute(
            'SELECT DISTINCT "date" FROM orderbook WHERE item = $1 ORDER BY 1 DESC LIMIT 5', [item]).fetchall()]
        raise KiwoomTapeError(f"no order book of {item} on {day}",
                              hint=f"dates with books of {item}: {', '.join(dates)} (--date YYYY-MM-DD)")
    at_s = int(last_s) if at is None else int(dt.datetime.combine(day, at.replace(tzinfo=None), KST).timestamp())
    if at_s < first_s:
        first = _kst(first_s)
        raise KiwoomTapeError(
            f"no book of {item} at or before {_kst(at_s):%H:%M:%S} on {day}: the first is at {first:%H:%M:%S}",
            hint=f"pass --at {first:%H:%M:%S} or later (exchange time, KST)",
        )
    levels = ", ".join(f"{side}_price_{n}, {side}_qty_{n}" for n in range(1, LEVELS + 1) for side in ("ask", "bid"))
    rows = con.execute(
        f"""SELECT epoch_us(recv_ts), epoch(quote_time), {levels},
                   krx_tick_index(ask_price_1) - krx_tick_index(bid_price_1)
            FROM orderbook WHERE item = $1 AND "date" = $2 AND epoch(quote_time) <= $3
            ORDER BY {_ORDER} LIMIT 1""",
        [item, day, at_s],
    ).fetchall()
    row = rows[0]  # there is one: at_s >= the day's first quote time
    asks: list[tuple[int, int]] = []
    bids: list[tuple[int, int]] = []
    for n in range(LEVELS):
        for i, side in ((2 + 4 * n, asks), (4 + 4 * n, bids)):
            price, qty = row[i], row[i + 1]
            if price is not None:
                side.append((int(price), int(qty or 0)))
    spread = row[-1] if asks and bids else None
    tape = con.execute(
        f"""SELECT epoch(trade_time), epoch_us(recv_ts), price, qty, side FROM trades
            WHERE item = $1 AND "date" = $2 AND epoch(trade_time) <= $3 ORDER BY {_ORDER} LIMIT $4""",
        [item, day, at_s, trades],
    ).fetchall()
    return BookView(
        item=item, date=day, at=_kst(at_s), recv_us=int(row[0]), quote_time=_kst(row[1]), asks=asks, bids=bids,
        spread_ticks=None if spread is None else int(spread),
        trades=[Trade(_kst(t), int(r), p, q, s) for t, r, p, q, s in tape],
    )


def _hms(t: dt.datetime) -> str:
    return f"{t:%H:%M:%S}"


def _stamp(us: int) -> str:
    return f"{_us_to_kst(us):%H:%M:%S.%f}"[:-3]


def _num(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def render_book(view: BookView, n_trades: int | None = None) -> str:
    """The book as text: a header line, the ladder (asks on top, highest first, then bids, highest first;
    ask quantities left of the price, bid quantities right), the spread, then the trades, newest first."""
    ladder = [(_num(q), _num(p), "") for p, q in reversed(view.asks)] + [("", _num(p), _num(q)) for p, q in view.bids]
    heads = ("ask qty", "price", "bid qty")
    widths = [max(len(h), *(len(r[i]) for r in ladder)) if ladder else len(h) for i, h in enumerate(heads)]

    def line(cells: tuple[str, str, str]) -> str:
        return "  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [f"{view.item}  {view.date}  at {view.at:%H:%M:%S} KST: the book of {_hms(view.quote_time)} "
           f"(quote time), received {_stamp(view.recv_us)}", "", line(heads)]
    out += [line(r) for r in ladder[: len(view.asks)]]
    out.append("  " + "-" * (sum(widths) + 4))
    out += [line(r) for r in ladder[len(view.asks):]]
    if view.spread_ticks is not None and view.bids[0][0] >= view.asks[0][0]:
        out.append(f"\ncrossed: best bid {view.bids[0][0]:,} >= best ask {view.asks[0][0]:,} (an auction's book)")
    elif view.spread_ticks is not None:
        best_bid, best_ask = view.bids[0][0], view.asks[0][0]
        tick_word = "tick" if view.spread_ticks == 1 else "ticks"
        out.append(f"\nspread {view.spread_ticks} {tick_word} ({best_ask - best_bid:,} won), "
                   f"mid {(best_bid + best_ask) / 2:,.1f}")
    else:
        out.append(f"\nspread: none ({'no asks' if not view.asks else 'no bids'})")
    n = len(view.trades) if n_trades is None else n_trades
    if n == 0:
        return "\n".join(out)
    if not view.trades:
        out.append(f"\nno trades of {view.item} at or before {view.at:%H:%M:%S}")
        return "\n".join(out)
    out.append(f"\nlast {len(view.trades)} trade{'s' if len(view.trades) != 1 else ''} at or before "
               f"{view.at:%H:%M:%S}, newest first")
    rows = [(_hms(t.trade_time), _stamp(t.recv_us), _num(t.price), _num(t.qty), t.side or "") for t in view.trades]
    theads = ("time", "received", "price", "qty", "side")
    tw = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(theads)]
    for cells in (theads, *rows):
        out.append("  " + "  ".join(c.ljust(w) if i in (0, 1, 4) else c.rjust(w)
                                    for i, (c, w) in enumerate(zip(cells, tw, strict=True))).rstrip())
    return "\n".join(out)


def _at_option(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.time | None:
    if value is None:
        return None
    try:
        return parse_at(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("book", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("root", metavar="DIR", type=click.Path(path_type=Path))
@click.argument("item")
@click.option("--at", "at", callback=_at_option, metavar="HH:MM:SS",
              help="Exchange time (KST) of the book to show. Default: the day's last book.")
@click.option("--date", "date", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, metavar="YYYY-MM-DD",
              help="The trading date. Default: the latest date with a book of ITEM.")
@click.option("--trades", "n_trades", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many of the last trades to list (0: none).")
@friendly_errors
def book_command(root: Path, item: str, at: dt.time | None, date: dt.datetime | None, n_trades: int) -> None:
    """Print the 10-level order book of ITEM in force at a time, with the last trades, as a trader reads it.

    Asks on top (highest first), bids below, quantities beside their prices; the spread in KRX ticks; the
    book's own quote time (FID 21) and receive time; then the last trades (0B) at or before that time,
    newest first, with their side (buy: a buyer took the ask; sell: a seller hit the bid).

    --at is exchange time, whole seconds KST (FID 21 호가시간 for the book, FID 20 체결시간 for the trades):
    the book shown is the last one stamped at or before it, in receive order. (In a recording of the
    simulated market the exchange times are the market's clock, the receive times the wall clock.)

    \b
    Examples:
        kiwoom-tape book demo-data 005930
        kiwoom-tape book data 005930_NX --at 15:35:00 --date 2026-11-23 --trades 10
    """
    con = connect(root)
    try:
        view = load_book(con, item, date=None if date is None else date.date(), at=at, trades=n_trades)
    finally:
        con.close()
    click.echo(render_book(view, n_trades))
