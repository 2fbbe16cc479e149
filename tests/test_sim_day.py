"""A whole simulated trading day, every row checked (issue 11; docs/protocol.md 2.0-2.2, 5.1-5.5).

The day runs in process from 07:50 to 20:10 for a large cap (005930), an ETF (069500, 5-won tick), a
cheap thin stock, a >= 500,000-won stock (207940) and an NXT twin (005930_NX). The facts are re-derived
here from docs/protocol.md (windows, tick table, band) rather than imported from the simulator. The day runs
at a quarter of the live rate so that it stays well under a minute; rates are checked relative to it.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator

import kiwoom_tape.replay.sim_streams as sim_streams
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kiwoom_tape.replay.sim_code import Code
from kiwoom_tape.replay.simulator import CHECKPOINT, SimRow, SimTick, SimulatedMarket, reference_price_of
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.market import band, is_etf, on_tick_grid, tick_size

pytestmark = pytest.mark.timeout(360)  # the module's fixture simulates a whole day: minutes on a busy machine


def hms(h: int, m: int = 0, s: int = 0) -> int:
    return h * 3600 + m * 60 + s


# docs/protocol.md 5.3 as literal data: [start, end) windows per (venue, type); 5.1: the KRX auctions.
WINDOWS = {
    ("KRX", "0D"): [(hms(8, 50), hms(15, 30))],
    ("NXT", "0D"): [(hms(8), hms(8, 50)), (hms(9, 0, 30), hms(15, 20)), (hms(15, 30), hms(20))],
    ("KRX", "0E"): [(hms(8, 30), hms(8, 40)), (hms(15, 40), hms(18))],
    ("NXT", "0E"): [],
    # 0B (issue 13): KRX/SOR trades in continuous trading, 09:00 opening print to 15:20's catch-up print,
    # then the closing auction's print at 15:30:00 and the close-price fills 15:40-16:00 (docs/protocol.md 5.3)
    ("KRX", "0B"): [(hms(9), hms(15, 20, 30)), (hms(15, 30), hms(15, 30, 1)), (hms(15, 40), hms(16))],
    ("SOR", "0B"): [(hms(9), hms(15, 20, 30)), (hms(15, 30), hms(15, 30, 1)), (hms(15, 40), hms(16))],
    ("NXT", "0B"): [(hms(8), hms(8, 50)), (hms(9, 0, 30), hms(15, 20)), (hms(15, 30), hms(20))],
}
AUCTIONS = [(hms(8, 50), hms(9)), (hms(15, 20), hms(15, 30))]
STOCK_TICKS = [(2_000, 1), (5_000, 5), (20_000, 10), (50_000, 50), (200_000, 100), (500_000, 500)]
RATE, RATE_0E = 0.9, 0.2
START, END = hms(7, 50), hms(20, 10)


def stock_tick(p: int) -> int:
    return next((t for bound, t in STOCK_TICKS if p < bound), 1_000)


def thin_cheap_code() -> str:
    """The first synthetic code under 2,000 won that the simulator treats as thinly traded."""
    for n in range(100_000, 200_000):
        code = f"{n:06d}"
        if reference_price_of(code) < 2_000 and not Code(code, 0, 0.02).liquid:
            return code
    raise AssertionError("no cheap thin code")


CHEAP = thin_cheap_code()
ITEMS = ["005930", "069500", CHEAP, "207940", "005930_NX"]
ETF = {"069500"}


def venue(item: str) -> str:
    return "NXT" if item.endswith("_NX") else "KRX"


def in_windows(t: float, windows: list[tuple[int, int]]) -> bool:
    return any(a <= t < b for a, b in windows)


class Day:
    """Per item: the checked rows' facts, for the whole-day properties."""

    def __init__(self) -> None:
        self.totals: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        self.times: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.spreads: dict[str, Counter[tuple[int, int]]] = defaultdict(Counter)  # (hour-ish bucket, ticks)
        self.max_qty = 0


def check_0d(item: str, t: float, v: dict[str, str], prev: dict[str, str] | None, day: Day) -> None:
    ref = reference_price_of(item)
    etf = item.split("_")[0] in ETF
    lo, hi = -(-ref * 7 // 10), ref * 13 // 10
    tick = (lambda p: 5) if etf else stock_tick

    def price(s: str) -> int | None:
        if s == "-0":
            return None
        p = abs(int(s))
        assert s[0] == ("+" if p > ref else "-" if p < ref else s[0]) and (p != ref or s[0].isdigit()), (s, ref)
        assert p % tick(p) == 0, f"{item} {p} off the tick grid"
        assert lo <= p <= hi, f"{item} {p} outside the band {lo}..{hi}"
        return p

    asks = [price(v[str(41 + i)]) for i in range(10)]
    bids = [price(v[str(51 + i)]) for i in range(10)]
    aq = [int(v[str(61 + i)]) for i in range(10)]
    bq = [int(v[str(71 + i)]) for i in range(10)]
    for ps, qs in ((asks, aq), (bids, bq)):
        n = sum(p is not None for p in ps)
        assert all(p is not None for p in ps[:n]) and all(q > 0 for q in qs[:n]) and not any(qs[n:]), (item, ps, qs)
    a = [p for p in asks if p is not None]
    b = [p for p in bids if p is not None]
    assert all(y - x == tick(x) for x, y in itertools.pairwise(a)), f"asks not ascending one tick apart: {a}"
    assert all(x - y == tick(y) for x, y in itertools.pairwise(b)), f"bids not descending one tick apart: {b}"
    if a and b:
        assert b[0] < a[0], f"{item} crossed at {t}: {b[0]} >= {a[0]}"
        bucket = 0 if t < hms(9, 5) and venue(item) == "KRX" else 1
        day.spreads[item][bucket, (a[0] - b[0]) // tick(b[0])] += 1
    ta, tb = int(v["121"]), int(v["125"])
    assert ta == sum(aq) and tb == sum(bq), "121/125 are the level sums"
    assert max(ta, tb) < 10**9, f"{item} total {max(ta, tb)} at {t}"
    day.max_qty = max(day.max_qty, ta, tb)
    pa = [int(prev[str(61 + i)]) for i in range(10)] if prev else [0] * 10
    pb = [int(prev[str(71 + i)]) for i in range(10)] if prev else [0] * 10
    if prev is not None:
        assert [int(v[str(81 + i)]) for i in range(10)] == [x - y for x, y in zip(aq, pa, strict=True)]
        assert [int(v[str(91 + i)]) for i in range(10)] == [x - y for x, y in zip(bq, pb, strict=True)]
        assert int(v["122"]) == ta - int(prev["121"]) and int(v["126"]) == tb - int(prev["125"])
        assert int(v["13"]) >= int(prev["13"]), "cumulative volume never decreases"
    auction = venue(item) == "KRX" and in_windows(t, AUCTIONS)
    assert (v["23"] != "0") == auction, (item, t, v["23"])
    assert (int(v["24"]) > 0) == auction
    day.totals[item][int(t // 3600)].append(ta + tb)


def run_day() -> Iterator[tuple[SimTick, SimRow]]:
    market = SimulatedMarket(seed=11, items=ITEMS, start=START, rate_hz=RATE, rate_0e_hz=RATE_0E)
    t = float(START)
    while t < END:  # in 10-minute steps, as a driver would
        t += 600
        for tick in market.advance(t):
            for row in tick.rows:
                yield tick, row


@pytest.fixture(scope="module")
def day() -> Day:
    day = Day()
    prev_0d: dict[str, dict[str, str]] = {}
    prev_0e: dict[str, tuple[int, int]] = {}
    for tick, row in run_day():
        t, v = tick.t, row.values
        assert in_windows(t, WINDOWS[venue(row.item), row.type]), f"{row.item} {row.type} at {t}"
        day.times[row.item, row.type].append(t)
        if row.type == "0D":
            check_0d(row.item, t, v, prev_0d.get(row.item), day)
            prev_0d[row.item] = v
        elif row.type == "0E":
            ask, bid = int(v["131"]), int(v["135"])
            assert 0 < ask < 10**9 and 0 <= bid < 10**9
            assert (bid == 0) == (t < hms(12)), "the pre-market bid total is 0 (docs/protocol.md 5.3)"
            pa, pb = prev_0e.get(row.item, (0, 0))
            assert int(v["132"]) == ask - pa and int(v["136"]) == bid - pb
            prev_0e[row.item] = (ask, bid)
    return day


def rate(day: Day, item: str, rtype: str, a: int, b: int) -> float:
    return sum(a <= t < b for t in day.times[item, rtype]) / (b - a)


def test_every_row_of_the_day_holds_and_the_day_spans_the_calendar(day: Day) -> None:
    for item in ITEMS:
        times = day.times[item, "0D"]
        windows = WINDOWS[venue(item), "0D"]
        # within ~5 mean gaps of the window's edges: NXT's after-market updates at 0.3 x RATE (~0.27 Hz here)
        assert times[0] < windows[0][0] + 20 and times[-1] > windows[-1][1] - 20, (item, times[0], times[-1])
    nx = day.times["005930_NX", "0D"]
    assert nx[-1] - nx[0] >= 11.9 * 3600, "NXT spans 08:00-20:00"
    assert not [t for t in day.times["005930", "0D"] if hms(15, 30) <= t < hms(15, 40)]
    for item in ("005930", "069500"):
        assert rate(day, item, "0E", hms(8, 30), hms(8, 40)) > 0.5 * RATE_0E
        assert rate(day, item, "0E", hms(15, 40), hms(18)) > 0.5 * RATE_0E
    assert not day.times["005930_NX", "0E"]
    assert day.max_qty < 10**9


def test_totals_stay_level_all_day(day: Day) -> None:
    """The median of 121 + 125 in every hour is within 0.5x-2x of the first hour's (issue 11, item 1)."""
    for item in ITEMS:
        hours = day.totals[item]
        first = statistics.median(hours[min(hours)])
        for h, totals in sorted(hours.items()):
            assert 0.5 <= statistics.median(totals) / first <= 2.0, (item, h, statistics.median(totals), first)


def test_rates_per_window(day: Day) -> None:
    """Busy after the open, quiet at midday, about the base rate over the session; thin NXT windows."""
    for item in ("005930", "069500", CHEAP, "207940"):
        session = rate(day, item, "0D", hms(9), hms(15, 30))
        assert 0.8 * RATE < session < 1.2 * RATE, (item, session)
        assert rate(day, item, "0D", hms(9), hms(9, 3)) > 2.5 * rate(day, item, "0D", hms(10), hms(11))
        assert rate(day, item, "0D", hms(12), hms(13)) < 0.85 * rate(day, item, "0D", hms(10), hms(11))
        assert 0.5 * RATE < rate(day, item, "0D", hms(8, 50), hms(9)) < RATE, "the opening auction"
    pre = rate(day, "005930_NX", "0D", hms(8), hms(8, 50))
    after = rate(day, "005930_NX", "0D", hms(16), hms(20))
    main = rate(day, "005930_NX", "0D", hms(10), hms(11))
    assert 0.35 * RATE < pre < 0.65 * RATE and 0.2 * RATE < after < 0.4 * RATE and after < main


def test_spreads_like_the_live_book(day: Day) -> None:
    """One tick nearly always for the large caps; wider and varying for a thin item and just after the open."""

    def wide(item: str, bucket: int | None = None) -> float:
        c = day.spreads[item]
        rows = {k: n for k, n in c.items() if bucket is None or k[0] == bucket}
        return sum(n for (_, ticks), n in rows.items() if ticks > 1) / sum(rows.values())

    for item in ("005930", "069500", "207940"):
        assert wide(item) < 0.1, (item, wide(item))
        assert wide(item, 0) > 2 * wide(item, 1), "wider in the first minutes"
    assert wide(CHEAP) > 0.25 and len({t for _, t in day.spreads[CHEAP]}) >= 3


def test_the_etf_quotes_on_the_5_won_grid(day: Day) -> None:
    """069500 levels are 5 won apart (docs/protocol.md 5.5), not the 50-won stock tick at its price."""
    market = SimulatedMarket(seed=3, items=["069500"], start=hms(10), rate_hz=RATE)
    rows = [r.values for tick in market.advance(hms(10, 2)) for r in tick.rows if r.type == "0D"]
    prices = {abs(int(v[str(41 + i)])) for v in rows for i in range(10)}
    assert all(p % 5 == 0 for p in prices) and any(p % 50 for p in prices)
    assert all(abs(int(v["42"])) - abs(int(v["41"])) == 5 for v in rows)


@pytest.mark.parametrize(
    ("items", "first", "removed", "again", "end"),
    [
        (["005930_AL", "069500", "005930_NX"], hms(10, 1, 13), hms(10, 3), hms(10, 5, 41), hms(10, 7)),
        (["005930", "000660_NX"], hms(15, 19, 50), hms(15, 29, 30), hms(15, 40, 20), hms(15, 44)),
        (["005930", "005930_NX"], hms(8, 49, 59), hms(8, 55), hms(9, 0, 31), hms(9, 2)),
    ],
)
def test_rows_depend_on_seed_item_and_time_only(
    items: list[str], first: float, removed: float, again: float, end: float
) -> None:
    """Added late, removed and added again: the same rows as an item simulated from the start (issue 11)."""
    whole = SimulatedMarket(seed=5, items=items, start=first - 3 * CHECKPOINT - 0.37)
    reference = [(tick.t, r.text) for tick in whole.advance(end) for r in tick.rows]
    late = SimulatedMarket(seed=5, items=(), start=first - 7.3)
    late.advance(first + 0.02)
    for item in items:
        late.add_item(item)
    got = [(tick.t, r.text) for tick in late.advance(removed) for r in tick.rows]
    for item in items:
        late.remove_item(item)
    assert late.items == () and late.advance(again - 0.5) == []
    late.advance(again)
    for item in reversed(items):
        late.add_item(item)
    got += [(tick.t, r.text) for tick in late.advance(end) for r in tick.rows]
    expected = [(t, x) for t, x in reference if first + 0.02 < t <= removed or again < t <= end]
    assert len(expected) > 100
    assert sorted(got) == sorted(expected)


def test_adding_an_item_costs_bounded_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast-forward replays at most two checkpoint intervals of updates, whatever the time (issue 11)."""
    applied = Counter[str]()
    for cls in (sim_streams.BookStream, sim_streams.AfterHoursStream):
        original = cls.apply

        def counting(self: sim_streams.Stream, k: int, original: object = original) -> None:
            applied[self.item] += 1
            original(self, k)  # type: ignore[operator]

        monkeypatch.setattr(cls, "apply", counting)
    codes = [f"{n:06d}{s}" for n in range(300_000, 300_200) for s in ("", "_NX")]
    for t in (hms(9, 0, 29), hms(14, 0, 25), hms(17, 59, 59), hms(19, 59)):
        market = SimulatedMarket(seed=2, items=(), start=t)
        applied.clear()
        for code in codes:
            market.add_item(code)
        bound = 2 * CHECKPOINT * 4.5 * 3.6 * 1.5  # two intervals at the busiest rate, with a margin
        assert max(applied.values(), default=0) < bound, (t, max(applied.values()))
        for code in codes:
            market.remove_item(code)
        assert market.items == ()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    item=st.sampled_from(["005930", "069500_AL", "000020_NX", "123450", "005930_NX"]),
    start=st.integers(hms(7, 59), hms(19, 58)),
    late=st.floats(0.0, 95.0),
    gap=st.floats(0.0, 70.0),
    batch=st.sampled_from([0.05, 0.01, 0.25, 1.0]),
)
def test_any_add_time_gives_the_same_rows(
    seed: int, item: str, start: int, late: float, gap: float, batch: float
) -> None:
    """Property: an item added at any time, and removed and added again, sends the rows it always would."""
    whole = SimulatedMarket(seed=seed, items=[item], start=start, batch=batch)
    expected = [(tick.t, r.text) for tick in whole.advance(start + 100 + gap + 20) for r in tick.rows]
    market = SimulatedMarket(seed=seed, items=(), start=start, batch=batch)
    market.advance(start + late)
    source = SimSource(market)
    source.add_item(item)
    got = [(tick.t, r.text) for tick in market.advance(start + 100) for r in tick.rows]
    source.remove_item(item)
    assert market.items == ()
    market.advance(start + 100 + gap)
    source.add_item(item)
    got += [(tick.t, r.text) for tick in market.advance(start + 100 + gap + 20) for r in tick.rows]
    t_late = market.now - 20 - gap - (100 - late)
    want = [(t, x) for t, x in expected if t_late < t <= start + 100 or start + 100 + gap < t]
    assert got == want


def test_etfs_quote_on_the_5_won_grid_in_schemas_market() -> None:
    """docs/protocol.md 5.5: ETFs keep a 5-won tick at every price; stocks follow the table."""
    assert is_etf("069500") and is_etf("069500_NX") and not is_etf("005930")
    assert tick_size(35_215, etf=True) == 5 and tick_size(35_215) == 50 and tick_size(600_000, etf=True) == 5
    assert on_tick_grid(35_215, etf=True) and not on_tick_grid(35_215)
    lower, upper = band(35_215, etf=True)
    assert (lower, upper) == (24_655, 45_775) and band(35_200) == (24_650, 45_750)
    assert reference_price_of("069500") % 5 == 0 and reference_price_of("069500") % 50
