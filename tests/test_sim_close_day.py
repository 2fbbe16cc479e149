"""The simulated close, over the afternoon of a simulated day (issue 13 item 1, docs/protocol.md 5.3).

KRX and ``_AL`` items print the closing auction at 15:30:00 (one trade at the closing price with the auction's
volume, FID 290 ``2``), fill at exactly that price 15:40-16:00 (FID 290 ``3``) and print nothing 16:00-18:00;
the NXT twin trades in its own windows. FID 13 is one running total across the close: each 0B row adds
``abs(FID 15)`` to the item's last FID 13, 0B or 0D. The run is 15:00-20:10 at a quarter of the live 0D rate.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.schemas.market import split_item
from kiwoom_tape.schemas.normalize import TradesBuilder

pytestmark = pytest.mark.timeout(360)  # the module's fixture simulates a whole day: minutes on a busy machine


def hms(h: int, m: int = 0, s: int = 0) -> int:
    return h * 3600 + m * 60 + s


ITEMS = ["005930", "000660_AL", "005930_NX"]
START, END = hms(15), hms(20, 10)
WINDOWS = {  # when each venue's 0B may come in this run (docs/protocol.md 5.3)
    "KRX": [(START, hms(15, 20, 30)), (hms(15, 30), hms(15, 30, 1)), (hms(15, 40), hms(16))],
    "NXT": [(START, hms(15, 20)), (hms(15, 30), hms(20))],
}
Trades = dict[str, list[tuple[float, dict[str, str]]]]


@pytest.fixture(scope="module")
def afternoon() -> Trades:
    """Every 0B row of the run, per item, each checked against the item's running FID 13 (0B and 0D rows)."""
    market = SimulatedMarket(seed=11, items=ITEMS, start=START, rate_hz=0.9)
    trades: Trades = defaultdict(list)
    volume: dict[str, int] = {}
    builder = TradesBuilder()
    for tick in market.advance(END):
        for row in tick.rows:
            v = row.values
            if row.type == "0D":
                if row.item in volume:
                    assert int(v["13"]) == volume[row.item], (row.item, tick.t)  # no volume without a 0B row
                volume[row.item] = int(v["13"])
            elif row.type == "0B":
                venue = "NXT" if split_item(row.item)[1] == "NXT" else "KRX"
                assert any(a <= tick.t < b for a, b in WINDOWS[venue]), (row.item, tick.t)
                if row.item in volume:
                    assert int(v["13"]) == volume[row.item] + abs(int(v["15"])), (row.item, tick.t)
                volume[row.item] = int(v["13"])
                assert builder.append(0, "r", 0, 0, row.item, v) == 0  # typed cleanly
                trades[row.item].append((tick.t, v))
    return trades


@pytest.mark.parametrize("item", ["005930", "000660_AL"])
def test_the_closing_auction_prints_once_at_15_30_and_the_fills_are_at_its_price(afternoon: Trades, item: str) -> None:
    rows = afternoon[item]
    auction = [(t, v) for t, v in rows if hms(15, 30) <= t < hms(15, 40)]
    assert len(auction) == 1, auction
    t, close = auction[0]
    assert t == hms(15, 30) and close["20"] == "153000" and close["290"] == "2"
    before = [v for t, v in rows if t < hms(15, 30)]
    assert before, "the continuous session traded"
    assert int(close["13"]) == int(before[-1]["13"]) + abs(int(close["15"]))  # the auction's volume on top
    fills = [(t, v) for t, v in rows if t > hms(15, 30)]
    assert len(fills) > 50, len(fills)
    for t, v in fills:
        assert hms(15, 40) <= t < hms(16)
        assert v["10"] == close["10"] and v["290"] == "3" and v["9081"] == "1"
    assert not [t for t, _ in rows if hms(16) <= t < hms(18)], "no 0B 16:00-18:00"


@pytest.mark.parametrize("item", ["005930", "000660_AL"])
def test_the_days_tallies_run_on_across_the_close(afternoon: Trades, item: str) -> None:
    rows = [v for _, v in afternoon[item]]
    assert len({v["16"] for v in rows}) == 1  # the day's open stays
    mil = 0
    for v in rows:
        price, vol = abs(int(v["10"])), int(v["13"])
        assert abs(int(v["18"])) <= price <= abs(int(v["17"]))
        assert int(v["14"]) >= mil
        mil = int(v["14"])
        assert int(v["620"]) == round(mil * 1e6 / vol)
        assert int(v["1030"]) + int(v["1031"]) == vol
        assert int(v["1313"]) == price * abs(int(v["15"])) // 1000


def test_the_nxt_twin_trades_in_its_own_windows(afternoon: Trades) -> None:
    times = [t for t, _ in afternoon["005930_NX"]]
    assert not any(hms(15, 20) <= t < hms(15, 30) for t in times)
    assert any(hms(16) <= t < hms(18) for t in times) and any(t >= hms(19) for t in times)
    assert {v["290"] for t, v in afternoon["005930_NX"] if t >= hms(15, 30)} == {"3"}


def test_an_item_added_after_the_close_gets_the_same_fills() -> None:
    """The close is a function of (seed, item, market time): joining at 15:45 fast-forwards to the same rows."""
    late = SimulatedMarket(seed=11, items=["005930"], start=hms(15, 45), rate_hz=0.9)
    early = SimulatedMarket(seed=11, items=["005930"], start=hms(15, 25), rate_hz=0.9)
    early_rows = [r.text for tick in early.advance(hms(16)) if tick.t > hms(15, 45)
                  for r in tick.rows if r.type == "0B"]
    late_rows = [r.text for tick in late.advance(hms(16)) for r in tick.rows if r.type == "0B"]
    assert late_rows and late_rows == early_rows
