"""The simulated market's acceptance invariants (replay/simulator.py; docs/protocol.md 2.0-2.2, 5.3, 5.5).

Every invariant is checked row by row by :func:`check_run`, which property tests drive over many
seeds, start times and item mixes; fixed examples pin the schedule edges, the band limits and the
after-hours rows. The checker re-derives the facts from docs/protocol.md (windows, tick grid, signs)
rather than importing them from the simulator, so the two cannot drift together.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from kiwoom_tape.replay.simulator import (
    CHECKPOINT,
    DEFAULT_UNIVERSE,
    SimRow,
    SimTick,
    SimulatedMarket,
    reference_price_of,
)
from kiwoom_tape.schemas.fields import FIELDS_0D, FIELDS_0E, Kind
from kiwoom_tape.schemas.market import band, split_item, tick_size
from kiwoom_tape.schemas.protocol import Real, decode_server_message, encode_real_frame, encode_real_row

KEYS_0D = [f.fid for f in FIELDS_0D]
KEYS_0E = [f.fid for f in FIELDS_0E]
ZERO_0D = {f.fid: ("0.00" if f.kind is Kind.PCT else "0") for f in FIELDS_0D}


def hms(h: int, m: int = 0, s: int = 0) -> int:
    return h * 3600 + m * 60 + s


# docs/protocol.md 5.3, as literal data: [start, end) windows per (venue, type).
WINDOWS = {
    ("KRX", "0D"): [(hms(8, 50), hms(15, 30))],
    ("SOR", "0D"): [(hms(8, 50), hms(15, 30))],
    ("NXT", "0D"): [(hms(8), hms(8, 50)), (hms(9, 0, 30), hms(15, 20)), (hms(15, 30), hms(20))],
    ("KRX", "0E"): [(hms(8, 30), hms(8, 40)), (hms(15, 40), hms(18))],
    ("SOR", "0E"): [(hms(8, 30), hms(8, 40)), (hms(15, 40), hms(18))],
    ("NXT", "0E"): [],
    # 0B (issue 13): KRX/SOR trades in continuous trading, 09:00 opening print to 15:20's catch-up print,
    # then the closing auction's print at 15:30:00 and the close-price fills 15:40-16:00 (docs/protocol.md 5.3)
    ("KRX", "0B"): [(hms(9), hms(15, 20, 30)), (hms(15, 30), hms(15, 30, 1)), (hms(15, 40), hms(16))],
    ("SOR", "0B"): [(hms(9), hms(15, 20, 30)), (hms(15, 30), hms(15, 30, 1)), (hms(15, 40), hms(16))],
    ("NXT", "0B"): [(hms(8), hms(8, 50)), (hms(9, 0, 30), hms(15, 20)), (hms(15, 30), hms(20))],
}
AUCTIONS = [(hms(8, 50), hms(9)), (hms(15, 20), hms(15, 30))]
BOUNDARIES = sorted({b for ws in [*WINDOWS.values(), AUCTIONS] for w in ws for b in w})

SIGNED = re.compile(r"^(0|[+-][1-9][0-9]*)$")
PCT = re.compile(r"^-?[0-9]+\.[0-9]{2}$|^\+[0-9]+\.[0-9]{2}$")
QTY = re.compile(r"^(0|[1-9][0-9]*)$")

_encoder = msgspec.json.Encoder()


def in_windows(t: float, windows: Iterable[tuple[int, int]]) -> bool:
    return any(a <= t < b for a, b in windows)


def hhmmss(t: float) -> str:
    s = int(t + 1e-9)
    return f"{s // 3600:02d}{s // 60 % 60:02d}{s % 60:02d}"


def signed_int(s: str) -> int:
    assert SIGNED.match(s), s
    return int(s)


def qty(s: str) -> int:
    assert QTY.match(s), s
    return int(s)


def pct(x: float) -> str:
    s = f"{abs(x):.2f}"
    return s if s == "0.00" else ("-" if x < 0 else "+") + s


def price(s: str, ref: int) -> int | None:
    """A wire price: None for an empty level; otherwise on the grid, in the band, signed vs ``ref`` (2.0, 5.5)."""
    if s == "-0":
        return None
    lower, upper = band(ref)
    assert re.match(r"^[+-]?[1-9][0-9]*$", s), s
    p = abs(int(s))
    if s[0] == "+":
        assert p > ref, (s, ref)
    elif s[0] == "-":
        assert p < ref, (s, ref)
    else:
        assert p == ref, (s, ref)
    assert p % tick_size(p) == 0, f"{p} off the tick grid"
    assert lower <= p <= upper, f"{p} outside the band {lower}..{upper}"
    return p


def up(p: int) -> int:
    return p + tick_size(p)


def down(p: int) -> int:
    return p - tick_size(p - 1)


# --------------------------------------------------------------------------------------------------
# The row checker


def check_0d(row: SimRow, t: float, ref: int) -> tuple[list[int | None], list[int], list[int | None], list[int]]:
    v = row.values
    assert list(v) == KEYS_0D
    assert all(isinstance(x, str) for x in v.values())
    assert row.type == "0D"
    assert row.text == encode_real_row("0D", row.item, _encoder.encode(v).decode())
    assert json.loads(row.text) == {"values": v, "type": "0D", "name": "주식호가잔량", "item": row.item}
    assert v["21"] == hhmmss(t)
    _, venue = split_item(row.item)
    lower, upper = band(ref)

    ap = [price(v[str(41 + i)], ref) for i in range(10)]
    bp = [price(v[str(51 + i)], ref) for i in range(10)]
    aq = [qty(v[str(61 + i)]) for i in range(10)]
    bq = [qty(v[str(71 + i)]) for i in range(10)]
    ad = [signed_int(v[str(81 + i)]) for i in range(10)]
    bd = [signed_int(v[str(91 + i)]) for i in range(10)]
    for prices, qtys in ((ap, aq), (bp, bq)):
        assert [p is None for p in prices] == [q == 0 for q in qtys], "empty level = price -0 and qty 0"
        n = sum(p is not None for p in prices)
        assert all(p is not None for p in prices[:n]), "non-empty levels form a prefix"
    na, nb = sum(q > 0 for q in aq), sum(q > 0 for q in bq)
    asks, bids = [p for p in ap[:na] if p], [p for p in bp[:nb] if p]
    for a, b in itertools.pairwise(asks):
        assert b == up(a), f"asks not one tick apart: {asks}"
    for a, b in itertools.pairwise(bids):
        assert b == down(a), f"bids not one tick apart: {bids}"
    if asks and bids:
        assert bids[0] < asks[0]
    # A level is empty only in thin NXT books or where the next price would leave the band (docs/protocol.md 5.5).
    if venue != "NXT":
        if asks:
            assert na == 10 or asks[-1] == upper, asks
        else:
            assert bids and bids[0] == upper, "no asks only at the upper limit (상한가)"
        if bids:
            assert nb == 10 or bids[-1] == lower, bids
        else:
            assert asks and asks[0] == lower, "no bids only at the lower limit (하한가)"
    assert na + nb > 0

    ta, tb = qty(v["121"]), qty(v["125"])
    assert ta == sum(aq) and tb == sum(bq)
    assert signed_int(v["122"]) == sum(ad) and signed_int(v["126"]) == sum(bd)
    assert signed_int(v["128"]) == tb - ta and signed_int(v["138"]) == ta - tb
    assert v["129"] == (f"{tb / ta * 100:.2f}" if ta else "0.00")
    assert v["139"] == (f"{ta / tb * 100:.2f}" if tb else "0.00")
    qty(v["13"])

    # Expected price/qty: only in KRX auctions, KRX and _AL items (docs/protocol.md 2.1, 5.3).
    expect = venue != "NXT" and in_windows(t, AUCTIONS)
    if expect:
        e = price(v["23"], ref)
        assert e is not None and qty(v["24"]) > 0
        if asks and bids:
            assert bids[0] <= e <= asks[0]
        assert (v["291"], v["292"], v["293"], v["294"], v["295"]) == (v["23"], v["24"], v["238"], v["200"], v["201"])
        assert signed_int(v["200"]) == e - ref
        assert v["201"] == pct((e - ref) * 100 / ref)
        code = "1" if e == upper else "4" if e == lower else "2" if e > ref else "5" if e < ref else "3"
        assert v["238"] == code
        assert PCT.match(v["299"]) and float(v["299"]) > 0
    else:
        for fid in ("23", "24", "200", "201", "291", "292", "294", "295", "299"):
            assert v[fid] == ZERO_0D[fid], (fid, v[fid])
        assert v["238"] == v["293"] == "3"

    assert v["215"] == v["216"] == ""
    for n in range(10):
        assert v[str(621 + n)] == v[str(631 + n)] == "0"
    if venue == "SOR":  # KRX + NXT parts of each level (6044-6087)
        for i in range(10):
            assert qty(v[str(6044 + i)]) + qty(v[str(6066 + i)]) == aq[i]
            assert qty(v[str(6054 + i)]) + qty(v[str(6076 + i)]) == bq[i]
        assert qty(v["6064"]) == sum(int(v[str(6044 + i)]) for i in range(10))
        assert qty(v["6065"]) == sum(int(v[str(6054 + i)]) for i in range(10))
        assert qty(v["6086"]) == sum(int(v[str(6066 + i)]) for i in range(10))
        assert qty(v["6087"]) == sum(int(v[str(6076 + i)]) for i in range(10))
        rest = range(6100, 6116)
    else:
        rest = range(6044, 6116)
    for fid in map(str, rest):
        if fid in v:
            assert v[fid] == ZERO_0D[fid], (fid, v[fid])
    return ap, aq, bp, bq


def check_0e(row: SimRow, t: float) -> tuple[int, int]:
    v = row.values
    assert list(v) == KEYS_0E and row.type == "0E"
    assert row.text == encode_real_row("0E", row.item, _encoder.encode(v).decode())
    assert json.loads(row.text)["name"] == "주식시간외호가"
    assert v["21"] == hhmmss(t)
    ask, bid = qty(v["131"]), qty(v["135"])
    assert ask > 0
    if t < hms(12):
        assert bid == 0, "pre-market bid total is 0 (docs/protocol.md 5.3)"
    else:
        assert bid > 0
    return ask, bid


def check_run(market: SimulatedMarket, ticks: Sequence[SimTick], since: float, until: float) -> Counter[str]:
    """Every invariant of one ``advance`` result; returns the number of rows per item and type."""
    counts: Counter[str] = Counter()
    last_t = since
    prev_0d: dict[str, tuple[list[int | None], list[int], list[int | None], list[int]]] = {}
    prev_t: dict[str, float] = {}
    prev_0e: dict[str, tuple[int, int]] = {}
    volume: dict[str, int] = defaultdict(int)
    for tick in ticks:
        assert last_t < tick.t <= until + 1e-9
        assert abs(tick.t / market.batch - round(tick.t / market.batch)) < 1e-6, "t on the batch grid"
        last_t = tick.t
        keys = [(r.item, r.type) for r in tick.rows]
        assert len(keys) == len(set(keys)), "at most one row per (item, type) per tick"
        assert tick.rows
        frame = encode_real_frame([r.text for r in tick.rows])
        decoded = decode_server_message(frame)
        assert isinstance(decoded, Real) and [r.values for r in decoded.rows] == [r.values for r in tick.rows]
        for row in tick.rows:
            counts[f"{row.item} {row.type}"] += 1
            _, venue = split_item(row.item)
            assert in_windows(tick.t, WINDOWS[venue, row.type]), (row.item, row.type, tick.t)
            ref = market.reference_price(row.item)
            if row.type == "0D":
                book = check_0d(row, tick.t, ref)
                vol = int(row.values["13"])
                assert vol >= volume[row.item], "cumulative volume never decreases"
                volume[row.item] = vol
                prev = prev_0d.get(row.item)
                if prev is not None:
                    check_evolution(row, prev, book, reseeded=prev_t[row.item] // CHECKPOINT != tick.t // CHECKPOINT)
                prev_0d[row.item] = book
                prev_t[row.item] = tick.t
            elif row.type == "0E":
                ask, bid = check_0e(row, tick.t)
                pa, pb = prev_0e.get(row.item, (None, None))
                if pa is not None and pb is not None:
                    assert int(row.values["132"]) == ask - pa and int(row.values["136"]) == bid - pb
                    signed_int(row.values["132"])
                    signed_int(row.values["136"])
                prev_0e[row.item] = (ask, bid)
    return counts


def check_evolution(
    row: SimRow,
    prev: tuple[list[int | None], list[int], list[int | None], list[int]],
    book: tuple[list[int | None], list[int], list[int | None], list[int]],
    *,
    reseeded: bool,
) -> None:
    """Consecutive rows of one item: positional deltas, at most one tick of mid move, 1-4 level changes.

    The first row of a new checkpoint interval (a fresh book, replay/simulator.py) only keeps the deltas.
    """
    v = row.values
    (pap, paq, pbp, pbq), (ap, aq, bp, bq) = prev, book
    assert [int(v[str(81 + i)]) for i in range(10)] == [a - b for a, b in zip(aq, paq, strict=True)]
    assert [int(v[str(91 + i)]) for i in range(10)] == [a - b for a, b in zip(bq, pbq, strict=True)]
    if reseeded:
        return
    # The mid moves by at most one tick per update.
    before = pbp[0] if pbp[0] is not None else (down(pap[0]) if pap[0] is not None else None)
    after = bp[0] if bp[0] is not None else (down(ap[0]) if ap[0] is not None else None)
    if before is not None and after is not None:
        assert after in (before, up(before), down(before)), (before, after)
    same_shape = pap == ap and pbp == bp
    if same_shape:
        changed = sum(a != b for a, b in zip(aq + bq, paq + pbq, strict=True))
        assert 0 < changed <= 4, f"{changed} levels changed"  # 1-3 order events and at most one trade


# --------------------------------------------------------------------------------------------------
# Strategies

codes = st.one_of(st.sampled_from(DEFAULT_UNIVERSE), st.from_regex(r"\A[0-9]{5}[0-9A-Z]\Z"))
items = st.builds(lambda c, s: c + s, codes, st.sampled_from(["", "", "_NX", "_AL"]))
fractions = st.sampled_from([0.0, 0.013, 0.05, 0.5, 0.999])
starts = st.one_of(
    st.builds(lambda b, d, f: b + d + f, st.sampled_from(BOUNDARIES), st.integers(-5, 1), fractions),
    st.builds(lambda s, f: s + f, st.integers(hms(7, 59), hms(20, 1)), fractions),
    st.builds(lambda s, f: s + f, st.integers(hms(8, 50), hms(15, 30)), fractions),
)
batches = st.sampled_from([0.05, 0.05, 0.01, 0.1, 0.25, 1.0])


# --------------------------------------------------------------------------------------------------
# Property tests


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    start=starts,
    names=st.lists(items, min_size=1, max_size=5, unique=True),
    duration=st.floats(1.0, 15.0),
    batch=batches,
    rate=st.sampled_from([3.6, 3.6, 1.0, 12.0]),
)
def test_every_row_satisfies_the_invariants(
    seed: int, start: float, names: list[str], duration: float, batch: float, rate: float
) -> None:
    market = SimulatedMarket(seed=seed, items=names, start=start, batch=batch, rate_hz=rate, rate_0e_hz=rate / 4)
    ticks = market.advance(start + duration)
    counts = check_run(market, ticks, start, start + duration)
    assert market.now == start + duration
    n = sum(counts.values())
    event("rows: 0" if not n else f"rows: {min(n // 25 * 25, 100)}+")


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    start=starts,
    names=st.lists(items, min_size=1, max_size=3, unique=True),
    steps=st.lists(st.floats(0.0, 1.5), min_size=1, max_size=12),
    batch=batches,
)
def test_small_steps_give_the_same_rows_as_one_big_step(
    seed: int, start: float, names: list[str], steps: list[float], batch: float
) -> None:
    whole = SimulatedMarket(seed=seed, items=names, start=start, batch=batch)
    pieces = SimulatedMarket(seed=seed, items=names, start=start, batch=batch)
    t = start
    got: list[SimTick] = []
    for dt in steps:
        t += dt
        got += pieces.advance(t)
    assert got == whole.advance(t)
    assert pieces.now == whole.now == t


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32), start=starts, names=st.lists(items, min_size=1, max_size=3, unique=True))
def test_same_seed_same_bytes_and_another_seed_differs(seed: int, start: float, names: list[str]) -> None:
    a = SimulatedMarket(seed=seed, items=names, start=start).advance(start + 5)
    b = SimulatedMarket(seed=seed, items=names, start=start).advance(start + 5)
    assert [(t.t, [r.text for r in t.rows]) for t in a] == [(t.t, [r.text for r in t.rows]) for t in b]
    c = SimulatedMarket(seed=seed + 1, items=names, start=start).advance(start + 5)
    if sum(len(t.rows) for t in a) > 5:
        assert [r.text for t in a for r in t.rows] != [r.text for t in c for r in t.rows]


@settings(max_examples=50, deadline=None)
@given(code=st.from_regex(r"\A[0-9A-Z]{6}\Z"))
def test_unknown_codes_get_a_deterministic_reference_on_the_grid(code: str) -> None:
    ref = reference_price_of(code)
    assert 500 <= ref <= 800_000 and ref % tick_size(ref) == 0
    market = SimulatedMarket(seed=1, items=())
    assert market.reference_price(code) == market.reference_price(code + "_NX") == ref
    assert market.reference_price(code + "_AL") == ref


# --------------------------------------------------------------------------------------------------
# Fixed examples


def test_default_universe() -> None:
    expected = "005930 000660 035420 005380 035720 051910 006400 068270 207940 005490 000270 012330 105560 055550 "
    expected += "028260 066570 003550 096770 034730 015760 247540 086520"
    assert len(DEFAULT_UNIVERSE) >= 20 and len(set(DEFAULT_UNIVERSE)) == len(DEFAULT_UNIVERSE)
    assert set(expected.split()) <= set(DEFAULT_UNIVERSE)
    for code in DEFAULT_UNIVERSE:
        ref = reference_price_of(code)
        assert re.fullmatch(r"[0-9]{6}", code) and ref % tick_size(ref) == 0
    assert reference_price_of("005930") == 71_400


def test_default_market_opening_auction_then_continuous() -> None:
    market = SimulatedMarket(seed=3)
    assert market.now == hms(8, 59, 50) and market.items == DEFAULT_UNIVERSE
    ticks = market.advance(hms(9, 0, 10))
    counts = check_run(market, ticks, hms(8, 59, 50), hms(9, 0, 10))
    assert set(counts) == {f"{c} {k}" for c in DEFAULT_UNIVERSE for k in ("0D", "0B")}  # every item prints at 09:00
    assert not any(r.type == "0B" for t in ticks for r in t.rows if t.t < hms(9))
    ticks = [SimTick(t.t, tuple(r for r in t.rows if r.type == "0D")) for t in ticks]
    assert any(r.values["23"] != "0" for t in ticks for r in t.rows if t.t < hms(9))
    assert all(r.values["23"] == "0" for t in ticks for r in t.rows if t.t >= hms(9))
    assert max(len(t.rows) for t in ticks) > 1, "several items share a tick"
    assert all(int(r.values["13"]) > 0 for t in ticks for r in t.rows if t.t >= hms(9, 0, 5))


def test_rate_is_about_rate_hz_per_item() -> None:
    market = SimulatedMarket(seed=11, items=DEFAULT_UNIVERSE[:10], start=hms(10))
    ticks = market.advance(hms(10) + 200)
    per_item = Counter(r.item for t in ticks for r in t.rows if r.type == "0D")
    rate = sum(per_item.values()) / 10 / 200
    assert 3.6 * 0.9 < rate < 3.6 * 1.1, rate
    assert all(2.5 < n / 200 < 4.7 for n in per_item.values()), per_item
    fast = SimulatedMarket(seed=11, items=["005930"], start=hms(10), rate_hz=10.0, batch=0.01)
    n = sum(r.type == "0D" for t in fast.advance(hms(10) + 100) for r in t.rows)
    assert 900 < n < 1100


@pytest.mark.parametrize("edge", BOUNDARIES)
def test_schedule_edges(edge: int) -> None:
    """Rows stop exactly at a window's end and start within 3 s of its start (docs/protocol.md 5.3)."""
    names = ["005930", "005930_NX", "005930_AL", "000660"]
    market = SimulatedMarket(seed=edge, items=names, start=edge - 10, rate_0e_hz=3.6)
    ticks = market.advance(edge + 10)
    check_run(market, ticks, edge - 10, edge + 10)
    for name in names:
        for typ in ("0D", "0E"):
            ws = WINDOWS[split_item(name)[1], typ]
            times = [t.t for t in ticks for r in t.rows if (r.item, r.type) == (name, typ)]
            if any(a == edge for a, _ in ws):
                assert times and edge <= times[0] < edge + 3, (name, typ, times[:1])
            if any(b == edge for _, b in ws) and not in_windows(edge, ws):
                assert times and max(times) < edge and max(times) > edge - 3


def test_silent_outside_the_day_and_time_never_goes_back() -> None:
    market = SimulatedMarket(seed=5, items=["005930", "005930_NX"], start=0.0, rate_hz=0.1)
    assert market.advance(hms(7, 59, 59)) == []
    assert market.advance(hms(7)) == [] and market.now == hms(7, 59, 59)
    ticks = market.advance(hms(8, 2))  # NXT pre-market at half the base rate: 0.05 rows/s here
    assert ticks and {r.item for t in ticks for r in t.rows} == {"005930_NX"}
    day = market.advance(hms(20))
    check_run(market, day, hms(8, 2), hms(20))
    assert {r.type for t in day for r in t.rows} == {"0B", "0D", "0E"}
    assert market.advance(hms(23, 59, 59)) == []
    assert market.advance(float("inf")) == []
    with pytest.raises(ValueError):
        market.advance(float("nan"))


def test_thin_nxt_books_have_empty_levels() -> None:
    market = SimulatedMarket(seed=8, items=["005380_NX", "000660_NX"], start=hms(16))
    ticks = market.advance(hms(16) + 30)
    check_run(market, ticks, hms(16), hms(16) + 30)
    rows = [r for t in ticks for r in t.rows if r.type == "0D"]
    assert rows and all(r.values["50"] == "-0" and r.values["70"] == "0" for r in rows)
    assert all(r.values["42"] != "-0" for r in rows), "at least two levels a side"
    assert all(r.values["23"] == "0" for r in rows)


def test_band_limits_leave_levels_empty() -> None:
    """Driven to the +/-30 % limits, levels beyond the band are empty and all prices stay inside."""
    market = SimulatedMarket(seed=2, items=["000020"], start=hms(9, 0, 30), rate_hz=20.0, volatility=6.0)
    ticks = market.advance(hms(9, 5, 30))
    check_run(market, ticks, hms(9, 0, 30), hms(9, 5, 30))
    lower, upper = band(reference_price_of("000020"))
    rows = [r.values for t in ticks for r in t.rows if r.type == "0D"]
    at_upper = [v for v in rows if v["41"] == "-0"]
    at_lower = [v for v in rows if v["51"] == "-0"]
    assert at_upper and all(int(v["51"]) == upper for v in at_upper), "상한가: no asks, best bid at the limit"
    assert at_lower and all(abs(int(v["41"])) == lower for v in at_lower), "하한가: no bids, best ask at the limit"
    assert any(v["50"] == "-0" and v["41"] != "-0" for v in rows), "asks cut by the upper limit"


def test_after_hours_0e_rows() -> None:
    market = SimulatedMarket(seed=2, items=["005930", "005930_AL", "005930_NX"], start=hms(8, 29, 50))
    pre = market.advance(hms(8, 41))
    check_run(market, pre, hms(8, 29, 50), hms(8, 41))
    rows = [r for t in pre for r in t.rows]
    assert {r.type for r in rows if r.item != "005930_NX"} == {"0E"}
    assert all(r.values["135"] == "0" for r in rows if r.type == "0E")
    first = next(r for r in rows if r.item == "005930")
    assert first.values["132"] == "+" + first.values["131"], "the first 0E is vs empty totals"
    assert 120 < sum(r.type == "0E" for r in rows) < 360, "0E at ~0.2 Hz per item"

    market = SimulatedMarket(seed=2, items=["005930", "005930_AL"], start=hms(15, 39, 50))
    post = market.advance(hms(15, 45))
    check_run(market, post, hms(15, 39, 50), hms(15, 45))
    rows = [r for t in post for r in t.rows]
    assert rows and all(int(r.values["135"]) > 0 for r in rows if r.type == "0E")
    assert {r.type for r in rows} == {"0E", "0B"}  # and the close-price fills from 15:40 (replay/sim_close.py)
    assert all(t.t >= hms(15, 40) for t in post for r in t.rows if r.type == "0B")


def test_add_item_later_starts_after_now() -> None:
    market = SimulatedMarket(seed=4, items=["005930"], start=hms(10))
    market.advance(hms(10) + 5.02)
    market.add_item("123450_AL")
    market.add_item("123450_AL")  # idempotent
    assert market.items == ("005930", "123450_AL")
    ticks = market.advance(hms(10) + 10)
    check_run(market, ticks, hms(10) + 5.02, hms(10) + 10)
    new = [t.t for t in ticks for r in t.rows if r.item == "123450_AL"]
    assert new and min(new) > hms(10) + 5.02
    book = market.book("123450_AL")
    assert book.reference == reference_price_of("123450") and len(book.asks) == len(book.bids) == 10
    assert book.bids[0][0] < book.asks[0][0]
    with pytest.raises(ValueError):
        market.add_item("")


def test_wire_text_matches_the_official_layout() -> None:
    """Compact JSON, Korean unescaped, values-type-name-item order (docs/protocol.md 1.7, 6.1)."""
    market = SimulatedMarket(seed=9, items=["005930"], start=hms(9, 30))
    row = next(r for t in market.advance(hms(9, 30, 2)) for r in t.rows if r.type == "0D")
    assert row.text.startswith('{"values":{"21":"0930')
    assert row.text.endswith('},"type":"0D","name":"주식호가잔량","item":"005930"}')
    assert ", " not in row.text and ": " not in row.text and "\\u" not in row.text
    values = json.loads(row.text)["values"]
    assert list(values) == KEYS_0D and len(values) == 163
    row.values["21"] = "mutated"  # a consumer's dict is its own
    nxt = next(r for t in market.advance(hms(9, 30, 4)) for r in t.rows if r.type == "0D")
    assert nxt.values["21"].startswith("0930")


@pytest.mark.parametrize(
    "bad",
    [
        {"rate_hz": 0.0},
        {"batch": -1.0},
        {"batch": 0.03},
        {"batch": 2.0},
        {"rate_0e_hz": float("nan")},
        {"volatility": -1.0},
        {"start": float("inf")},
    ],
)
def test_bad_parameters(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SimulatedMarket(items=(), **bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SimulatedMarket(items="005930")
