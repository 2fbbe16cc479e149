"""``kiwoom-tape book DIR ITEM``: the ladder in force at a time and the last trades, checked line by line against
the book and trades picked here, in plain Python, from the stored ``orderbook`` and ``trades`` rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.schemas.fields import FIELDS_0B, FIELDS_0D
from kiwoom_tape.schemas.market import KST, tick_size
from kiwoom_tape.schemas.protocol import encode_real_frame, encode_real_row

from kiwoom_tape.cli import cli
from kiwoom_tape.demo import record_simulation
from kiwoom_tape.testing import read_table

ITEMS = ("005930", "000660", "005930_NX")


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["book", *args])


def receive_order(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["recv_ts"] // 1000, r["run_id"], r["frame_seq"], r["row_idx"])


def ticks_between(bid: int, ask: int) -> int:
    n, p = 0, bid
    while p < ask:
        p += tick_size(p)
        n += 1
    return n


def expected_output(root: Path, item: str, at: dt.time | None, n_trades: int) -> str:
    """What ``book`` must print, from the stored rows: the last book stamped at or before ``at`` on the item's
    latest date (receive order), and the last ``n_trades`` trades stamped at or before it."""
    # the files hold UTC instants (schema v2); book prints exchange time, KST
    books = [{**b, "quote_time": b["quote_time"].astimezone(KST)} for b in read_table(root, "orderbook")
             if b["item"] == item]
    day = max(b["date"] for b in books)
    books = sorted((b for b in books if b["date"] == day), key=receive_order)
    if at is None:
        at = max(b["quote_time"] for b in books).time()
    b = [b for b in books if b["quote_time"].time() <= at][-1]
    asks = [(b[f"ask_price_{n}"], b[f"ask_qty_{n}"]) for n in range(1, 11) if b[f"ask_price_{n}"] is not None]
    bids = [(b[f"bid_price_{n}"], b[f"bid_qty_{n}"]) for n in range(1, 11) if b[f"bid_price_{n}"] is not None]
    rows = [(f"{q:,}", f"{p:,}", "") for p, q in reversed(asks)] + [("", f"{p:,}", f"{q:,}") for p, q in bids]
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(("ask qty", "price", "bid qty"))]

    def line(cells: tuple[str, str, str]) -> str:
        return f"  {cells[0]:>{w[0]}}  {cells[1]:>{w[1]}}  {cells[2]:>{w[2]}}".rstrip()

    recv = dt.datetime.fromtimestamp(b["recv_ts"] / 1e9, KST)
    out = [f"{item}  {day}  at {at:%H:%M:%S} KST: the book of {b['quote_time']:%H:%M:%S} (quote time), "
           f"received {recv:%H:%M:%S}.{recv.microsecond // 1000:03d}", "", line(("ask qty", "price", "bid qty"))]
    out += [line(r) for r in rows[: len(asks)]] + ["  " + "-" * (sum(w) + 4)] + [line(r) for r in rows[len(asks):]]
    bid, ask = bids[0][0], asks[0][0]
    n = ticks_between(bid, ask)
    out.append(f"\nspread {n} tick{'s' if n != 1 else ''} ({ask - bid:,} won), mid {(bid + ask) / 2:,.1f}")
    trades = [t for t in ({**t, "trade_time": t["trade_time"].astimezone(KST)} for t in read_table(root, "trades"))
              if t["item"] == item and t["date"] == day and t["trade_time"].time() <= at]
    trades = sorted(trades, key=receive_order, reverse=True)[:n_trades]
    out.append(f"\nlast {len(trades)} trade{'s' if len(trades) != 1 else ''} at or before {at:%H:%M:%S}, newest first")
    cells = [("time", "received", "price", "qty", "side")]
    for t in trades:
        r = dt.datetime.fromtimestamp(t["recv_ts"] / 1e9, KST)
        cells.append((f"{t['trade_time']:%H:%M:%S}", f"{r:%H:%M:%S}.{r.microsecond // 1000:03d}", f"{t['price']:,}",
                      f"{abs(t['trade_qty']):,}", "buy" if t["trade_qty"] > 0 else "sell"))
    tw = [max(len(c[i]) for c in cells) for i in range(5)]
    for c in cells:
        out.append(f"  {c[0]:<{tw[0]}}  {c[1]:<{tw[1]}}  {c[2]:>{tw[2]}}  {c[3]:>{tw[3]}}  {c[4]:<{tw[4]}}".rstrip())
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("book-sim")
    asyncio.run(record_simulation(root, items=ITEMS, types=("0B", "0D"), sim_start=10 * 3600, speed=30.0,
                                  seconds=3.0))
    return root


@pytest.mark.parametrize(("item", "at", "n_trades"), [
    ("005930", None, 5), ("005930_NX", "10:00:30", 3), ("000660", "10:00:45", 8),
])
def test_book_prints_the_ladder_and_trades_in_force(simulated: Path, item: str, at: str | None,
                                                     n_trades: int) -> None:
    args = [str(simulated), item, "--trades", str(n_trades), *(["--at", at] if at else [])]
    result = run(*args)
    assert result.exit_code == 0, result.output
    want = expected_output(simulated, item, None if at is None else dt.time.fromisoformat(at), n_trades)
    assert result.output == want


def test_the_latest_date_is_the_default(simulated: Path) -> None:
    day = max(b["date"] for b in read_table(simulated, "orderbook"))
    default = run(str(simulated), "005930")
    explicit = run(str(simulated), "005930", "--date", str(day))
    assert default.exit_code == explicit.exit_code == 0
    assert default.output == explicit.output


DAY = dt.date(2026, 11, 23)


def ns(hms: str) -> int:
    return int(dt.datetime.combine(DAY, dt.time.fromisoformat(hms), KST).timestamp()) * 1_000_000_000


def book_row(item: str, hms: str, asks: list[tuple[int, int]], bids: list[tuple[int, int]]) -> str:
    values = {f.fid: "0" for f in FIELDS_0D}
    values["21"] = hms.replace(":", "")
    for n in range(10):
        ap, aq = asks[n] if n < len(asks) else (0, 0)
        bp, bq = bids[n] if n < len(bids) else (0, 0)
        values.update({str(41 + n): f"+{ap}" if ap else "-0", str(61 + n): str(aq),
                       str(51 + n): f"+{bp}" if bp else "-0", str(71 + n): str(bq)})
    return encode_real_row("0D", item, json.dumps(values, separators=(",", ":")))


def trade_row(item: str, hms: str, price: int, qty: int) -> str:
    values = {f.fid: "" for f in FIELDS_0B}
    values.update({"20": hms.replace(":", ""), "10": f"+{price}", "15": f"{qty:+d}", "13": "1"})
    return encode_real_row("0B", item, json.dumps(values, separators=(",", ":")))


@pytest.fixture(scope="module")
def handmade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("book-hand")
    with Store(root, "bookrun") as store:
        store.add_frame(ns("09:00:01"), "in", encode_real_frame([
            book_row("005930", "09:00:01", [(50_100, 7), (50_200, 1_234)], [(49_950, 30), (49_900, 5)])]))
        store.add_frame(ns("09:00:02"), "in", encode_real_frame([trade_row("005930", "09:00:02", 50_100, 7)]))
        store.add_frame(ns("09:00:03"), "in", encode_real_frame([  # the asks taken: an empty side
            book_row("005930", "09:00:02", [], [(49_950, 30), (49_900, 5)])]))
        store.add_frame(ns("08:59:00"), "in", encode_real_frame([  # an auction's crossed book
            book_row("000660", "08:59:00", [(201_500, 3)], [(202_000, 4)])]))
    return root


def test_a_hand_built_book_prints_exactly(handmade: Path) -> None:
    result = run(str(handmade), "005930", "--at", "09:00:01")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "005930  2026-11-23  at 09:00:01 KST: the book of 09:00:01 (quote time), received 09:00:01.000\n"
        "\n"
        "  ask qty   price  bid qty\n"
        "    1,234  50,200\n"
        "        7  50,100\n"
        "  ------------------------\n"
        "           49,950       30\n"
        "           49,900        5\n"
        "\n"
        "spread 2 ticks (150 won), mid 50,025.0\n"
        "\n"
        "no trades of 005930 at or before 09:00:01\n"
    )
    later = run(str(handmade), "005930", "--trades", "1")  # the day's last book: no asks
    assert later.exit_code == 0, later.output
    assert "the book of 09:00:02 (quote time), received 09:00:03.000" in later.output
    assert "spread: none (no asks)" in later.output
    assert later.output.endswith("last 1 trade at or before 09:00:02, newest first\n"
                                 "  time      received       price  qty  side\n"
                                 "  09:00:02  09:00:02.000  50,100    7  buy\n")
    none = run(str(handmade), "005930", "--trades", "0")
    assert none.exit_code == 0 and "trade" not in none.output
    crossed = run(str(handmade), "000660")
    assert crossed.exit_code == 0, crossed.output
    assert "\ncrossed: best bid 202,000 >= best ask 201,500 (an auction's book)\n" in crossed.output
    assert "spread" not in crossed.output


@pytest.mark.parametrize(("args", "code", "message"), [
    (["000000"], 1, "no order book of item '000000' in this dataset (items with a book here: 000660, 005930)"),
    (["005930", "--at", "08:59:59"], 1,
     "no book of 005930 at or before 08:59:59 on 2026-11-23: the first is at 09:00:01 (pass --at 09:00:01"),
    (["005930", "--date", "2026-11-20"], 1, "no order book of 005930 on 2026-11-20 (dates with books of 005930: "
     "2026-11-23"),
    (["005930", "--at", "9h30"], 2, "'9h30' is not a time of day: use HH:MM:SS"),
    (["005930", "--date", "23/11/2026"], 2, "--date"),
])
def test_clear_errors(handmade: Path, args: list[str], code: int, message: str) -> None:
    result = run(str(handmade), *args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_not_a_dataset(tmp_path: Path) -> None:
    result = run(str(tmp_path), "005930")
    assert result.exit_code != 0 and "is not a kiwoom-tape dataset" in result.output
