"""The ``quote_mid_at_trade`` view (schemas/views_trades.py): each trade joined to the quote in force when it came.

Checked twice: on hand-built rows whose answers are known (ties in time, a trade before any quote, crossed and
empty book sides, a band edge, a new day), and on a recorded simulated session against the same join done
here in plain Python from the stored ``trades`` and ``orderbook`` rows.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.replay.catalog import connect
from kiwoom_tape.schemas.fields import FIELDS_0B, FIELDS_0D
from kiwoom_tape.schemas.market import KST, tick_size
from kiwoom_tape.schemas.protocol import encode_real_frame, encode_real_row

from kiwoom_tape.cli import cli
from kiwoom_tape.demo import record_simulation
from kiwoom_tape.testing import read_table

DAY = dt.date(2026, 11, 23)
NEXT_DAY = dt.date(2026, 11, 24)
COLUMNS = "item, price, side, bid, ask, mid, crossed, effective_spread, effective_spread_ticks"


def ns(day: dt.date, hms: str, micro: int = 0) -> int:
    t = dt.datetime.combine(day, dt.time.fromisoformat(hms), KST)
    return int(t.timestamp()) * 1_000_000_000 + micro * 1000


def trade(item: str, hms: str, price: int, qty: int) -> str:
    values = {f.fid: "" for f in FIELDS_0B}
    values.update({"20": hms.replace(":", ""), "10": f"+{price}", "15": f"{qty:+d}", "13": "1"})
    return encode_real_row("0B", item, json.dumps(values, separators=(",", ":")))


def book(item: str, hms: str, bid: int | None, ask: int | None) -> str:
    """A 0D row with one level a side (``None``: the side is empty, ``"-0"`` and ``"0"`` as measured)."""
    values = {f.fid: "0" for f in FIELDS_0D}
    for n in range(10):
        values[str(41 + n)] = values[str(51 + n)] = "-0"
    values.update({"21": hms.replace(":", ""), "41": f"+{ask}" if ask else "-0", "61": "10" if ask else "0",
                   "51": f"+{bid}" if bid else "-0", "71": "20" if bid else "0"})
    return encode_real_row("0D", item, json.dumps(values, separators=(",", ":")))


def tick_index(price: int) -> int:
    """Ticks from 0 to ``price`` on the KRX ladder, walked one tick at a time (docs/protocol.md 5.5)."""
    n = p = 0
    while p < price:
        p += tick_size(p)
        n += 1
    assert p == price, f"{price} is off the grid"
    return n


@pytest.fixture(scope="module")
def handmade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qmat")
    frames = [
        (ns(DAY, "09:00:00"), [trade("005930", "09:00:00", 70_000, 5)]),               # before any quote
        (ns(DAY, "09:00:01"), [book("005930", "09:00:01", 70_000, 70_100)]),
        (ns(DAY, "09:00:02"), [trade("005930", "09:00:02", 70_100, 3),                 # the book after it,
                               book("005930", "09:00:02", 70_000, 70_200)]),           # same frame: not yet
        (ns(DAY, "09:00:02"), [trade("005930", "09:00:02", 70_000, -4)]),              # same time, next frame
        (ns(DAY, "09:00:03"), [book("005930", "09:00:03", 70_300, 70_200),             # crossed
                               trade("005930", "09:00:03", 70_200, 1)]),
        (ns(DAY, "09:00:04"), [book("005930", "09:00:04", None, 70_200)]),             # no bids
        (ns(DAY, "09:00:05"), [trade("005930", "09:00:05", 70_200, 2),
                               trade("000660", "09:00:05", 50_100, 7)]),               # 000660: no quote yet
        (ns(DAY, "09:00:06"), [book("000660", "09:00:06", 49_950, 50_100)]),           # across a band edge
        (ns(DAY, "09:00:07"), [trade("000660", "09:00:07", 50_100, 1),
                               trade("000660", "09:00:07", 49_950, -1)]),
        (ns(NEXT_DAY, "09:00:00"), [trade("000660", "09:00:00", 50_000, 1)]),          # yesterday's quote: no
    ]
    with Store(root, "qmatrun") as store:
        for recv_ns, rows in frames:
            store.add_frame(recv_ns, "in", encode_real_frame(rows))
    return root


def test_handmade_rows_get_the_quote_in_force(handmade: Path) -> None:
    got = connect(handmade).execute(
        f"SELECT {COLUMNS} FROM quote_mid_at_trade ORDER BY recv_ns, frame_seq, row_idx").fetchall()
    none = (None,) * 6
    assert got == [
        ("005930", 70_000, "buy", *none),
        ("005930", 70_100, "buy", 70_000, 70_100, 70_050.0, False, 100.0, 1),
        ("005930", 70_000, "sell", 70_000, 70_200, 70_100.0, False, 200.0, 2),
        ("005930", 70_200, "buy", 70_300, 70_200, 70_250.0, True, None, None),
        ("005930", 70_200, "buy", None, 70_200, None, None, None, None),
        ("000660", 50_100, "buy", *none),
        # 49,950 -> 50,000 is one 50-won tick, 50,000 -> 50,100 one 100-won tick: a trade at the touch pays the
        # quoted 2-tick spread
        ("000660", 50_100, "buy", 49_950, 50_100, 50_025.0, False, 150.0, 2),
        ("000660", 49_950, "sell", 49_950, 50_100, 50_025.0, False, 150.0, 2),
        ("000660", 50_000, "buy", *none),
    ]


def test_the_quote_columns_name_the_quote_used(handmade: Path) -> None:
    con = connect(handmade)
    got = con.execute("""SELECT epoch_us(recv_ts) - epoch_us(quote_recv_ts), strftime(quote_time, '%H:%M:%S')
                         FROM quote_mid_at_trade WHERE item = '005930' AND price < 70_200
                         ORDER BY recv_ns, frame_seq, row_idx""").fetchall()
    # before any quote; the 09:00:01 book, not the one after it in its own frame; the book of the frame before,
    # received at the same microsecond
    assert got == [(None, None), (1_000_000, "09:00:01"), (0, "09:00:02")]
    ((n_trades,),) = con.execute("SELECT count(*) FROM trades").fetchall()
    ((n_joined,),) = con.execute("SELECT count(*) FROM quote_mid_at_trade").fetchall()
    assert n_joined == n_trades == 9  # one row per trade, none lost or doubled by the join


def ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["recv_ts"], r["run_id"], r["frame_seq"], r["row_idx"]))


def expected_join(root: Path) -> list[tuple[Any, ...]]:
    """The view's contract, in Python, from the stored rows (receive order at the view's microseconds)."""
    books: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for b in ordered(read_table(root, "orderbook")):
        books.setdefault((b["item"], b["date"]), []).append(b)
    keys = {k: [(b["recv_ts"], b["run_id"], b["frame_seq"], b["row_idx"]) for b in v]
            for k, v in books.items()}
    out = []
    for t in ordered(read_table(root, "trades")):
        key = (t["recv_ts"], t["run_id"], t["frame_seq"], t["row_idx"])
        i = bisect.bisect_left(keys.get((t["item"], t["date"]), []), key)
        side = "buy" if t["trade_qty"] > 0 else "sell"
        if i == 0:
            out.append((t["item"], t["price"], side, *(None,) * 6))
            continue
        b = books[t["item"], t["date"]][i - 1]
        bid, ask = b["bid_price_1"], b["ask_price_1"]
        if bid is None or ask is None:
            out.append((t["item"], t["price"], side, bid, ask, None, None, None, None))
            continue
        mid = (bid + ask) / 2
        crossed = bid >= ask
        eff = None if crossed else 2 * abs(t["price"] - mid)
        ticks = None if crossed else abs(2 * tick_index(t["price"]) - tick_index(bid) - tick_index(ask))
        out.append((t["item"], t["price"], side, bid, ask, mid, crossed, eff, ticks))
    return out


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qmat-sim")
    asyncio.run(record_simulation(root, items=("005930", "000660", "005930_NX"), types=("0B", "0D"),
                                  sim_start=10 * 3600, speed=30.0, seconds=3.0))
    return root


def test_a_recorded_session_matches_the_join_done_in_python(simulated: Path) -> None:
    got = connect(simulated).execute(
        f"SELECT {COLUMNS} FROM quote_mid_at_trade ORDER BY recv_ns, run_id, frame_seq, row_idx").fetchall()
    want = expected_join(simulated)
    assert len(got) == len(want) > 20
    assert got == want
    joined = [g for g in got if g[5] is not None]
    assert len(joined) > len(got) // 2
    # the simulated market trades at the touch of the book in force (a buy at the ask, a sell at the bid), so the
    # effective spread is mostly the quoted one (the simulator's checkpoint prints, at the touch of the book it
    # reseeds and sends just after them, are not at the touch of the book in force)
    at_touch = [g for g in joined if g[1] == (g[4] if g[2] == "buy" else g[3])]
    assert len(at_touch) > 0.9 * len(joined)


HELP_EXAMPLE = "select item, side, avg(effective_spread_ticks) from quote_mid_at_trade group by all"


def test_the_sql_help_example_gives_the_mean_effective_spread(simulated: Path) -> None:
    assert HELP_EXAMPLE in CliRunner().invoke(cli, ["sql", "--help"]).output
    result = CliRunner().invoke(cli, ["sql", str(simulated), HELP_EXAMPLE + " order by all", "--format", "csv"])
    assert result.exit_code == 0, result.output
    got = {(item, side): float(avg) for item, side, avg in (line.split(",") for line in result.stdout.split()[1:])}
    spreads: dict[tuple[str, str], list[int]] = {}
    for item, _price, side, *_quote, ticks in expected_join(simulated):
        if ticks is not None:
            spreads.setdefault((item, side), []).append(ticks)
    assert got.keys() == spreads.keys() and len(got) >= 4
    for key, values in spreads.items():
        assert got[key] == pytest.approx(sum(values) / len(values), rel=1e-12)


def test_without_books_or_trades_the_view_still_binds(tmp_path: Path) -> None:
    only_trades, nothing = tmp_path / "t", tmp_path / "e"
    with Store(only_trades, "onlytrades") as store:
        store.add_frame(ns(DAY, "09:00:01"), "in", encode_real_frame([trade("005930", "09:00:01", 70_000, -3)]))
    with Store(nothing, "nothing") as store:
        store.add_event(ns(DAY, "09:00:00"), "login", {})
    got = connect(only_trades).execute(f"SELECT {COLUMNS} FROM quote_mid_at_trade").fetchall()
    assert got == [("005930", 70_000, "sell", *(None,) * 6)]
    assert connect(nothing).execute("SELECT count(*) FROM quote_mid_at_trade").fetchall() == [(0,)]
