"""The simulated KRX/NXT market: a deterministic, sans-I/O source of 0D and 0E REAL rows.

``replay --simulate`` and ``kiwoom-tape demo`` serve these rows through the mock server, so that a
client sees what the live server sends (PROTOCOL.md 1.7, 2.0-2.2, 5.3, 5.5) without credentials.
This module reads no clock, touches no socket or file and runs no event loop: the server driver
asks :meth:`SimulatedMarket.advance` for everything up to a market time of its choosing.

What a driver can rely on (the acceptance invariants, each one a test in ``tests/test_simulator.py``):

- **Determinism.** Rows are a function of the seed, the items and the sequence of
  ``add_item``/``advance`` calls only. Every (item, type) has its own random stream, so advancing
  in many small steps yields byte-identical rows to one big step. No ``hash()``, no wall clock.
- **Time.** Market time is seconds since KST midnight of the simulated date. Each (item, type)
  updates at ``rate_hz`` on average (0E: ``rate_0e_hz``), with exponential inter-arrival times
  quantized up to the ``batch`` grid, so several items share a :class:`SimTick`; a tick carries
  at most one row per (item, type). Time never goes backwards.
- **Schedule** (PROTOCOL.md 5.3, half-open windows ``[start, end)``): KRX items (no suffix) and
  ``_AL`` items send 0D in 08:50:00-15:30:00 and 0E in 08:30:00-08:40:00 and 15:40:00-18:00:00;
  ``_NX`` items send 0D in 08:00:00-20:00:00 except the NXT halts 08:50:00-09:00:30 and
  15:20:00-15:30:00, and never 0E. Outside its windows an item is silent.
- **0D rows** (PROTOCOL.md 2.1): all 163 FIDs of :data:`schemas.fields.FIELDS_0D`, in that order,
  string values, compact JSON. Prices are on the tick grid and inside the +/-30 % band
  (PROTOCOL.md 5.5), signed vs the reference price (``+`` above, ``-`` below, unsigned when equal,
  PROTOCOL.md 2.0). Asks ascend from level 1 and bids descend, one tick apart, best bid < best ask.
  Non-empty levels form a prefix (levels 1..n); the rest are empty: price ``"-0"``, qty ``"0"``
  (thin NXT pre/after-market books, and levels that would fall outside the band). Totals 121/125
  are the level sums; the per-level deltas 81-100 are positional (level n now minus level n in the
  item's previous 0D row; for its first row, minus the unsent earlier book) and sum to 122/126.
  128 = 125 - 121 and 138 = -128 (signed), 129 = 125/121*100 and 139 = 121/125*100 (2 decimals,
  ``"0.00"`` when the divisor is 0). 23/24 and 291/292 are non-zero only in the KRX auctions
  08:50-09:00 and 15:20-15:30 (KRX and ``_AL`` items), with 200/201/238/293-295/299 consistent.
  13 (cumulative volume) never decreases. LP fields 621-640 are ``"0"``; 6044-6115 are ``"0"``
  (6112/6115 ``"0.00"``) except that ``_AL`` items split their levels into KRX and NXT parts
  (6044-6087: KRX + NXT = the level, and the totals add up). 215/216 are ``""``.
- **0E rows** (PROTOCOL.md 2.2): 21, 131, 132, 135, 136; 132/136 are signed deltas vs the item's
  previous 0E row (the first row of an item is vs empty totals, so its deltas equal the totals).
  The bid total is 0 in the 08:30-08:40 window, as measured.

A 0D row as emitted (abridged)::

    {"values":{"21":"090001","41":"+71500","61":"8123","81":"0","51":"71400","71":"5120","91":"+37",...,
     "121":"91230","122":"0","125":"88410","126":"+37",...,"215":"","216":"",...,"6115":"0.00"},
     "type":"0D","name":"주식호가잔량","item":"005930"}

Usage by a driver::

    market = SimulatedMarket(seed=7, start=9 * 3600)
    market.add_item("005930_NX")
    for tick in market.advance(9 * 3600 + 1.0):
        frame = encode_real_frame([row.text for row in tick.rows if client.wants(row.item, row.type)])
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from schemas.fields import FIELDS_0D, FIELDS_0E, Kind
from schemas.market import band, split_item, tick_size
from schemas.protocol import encode, encode_real_row

__all__ = [
    "DEFAULT_UNIVERSE",
    "KRX_0D_WINDOWS",
    "KRX_0E_WINDOWS",
    "KRX_AUCTIONS",
    "NXT_0D_WINDOWS",
    "REFERENCE_PRICES",
    "BookView",
    "SimRow",
    "SimTick",
    "SimulatedMarket",
    "reference_price_of",
    "session_windows",
]


def _hms(h: int, m: int = 0, s: int = 0) -> int:
    return h * 3600 + m * 60 + s


KRX_0D_WINDOWS: tuple[tuple[int, int], ...] = ((_hms(8, 50), _hms(15, 30)),)
"""When KRX (and ``_AL``) items send 0D, seconds since KST midnight, ``[start, end)`` (PROTOCOL.md 5.3)."""
KRX_0E_WINDOWS: tuple[tuple[int, int], ...] = ((_hms(8, 30), _hms(8, 40)), (_hms(15, 40), _hms(18)))
"""When KRX (and ``_AL``) items send 0E: 장전 시간외 종가, and 장후 시간외 through 단일가 (PROTOCOL.md 5.1, 5.3)."""
NXT_0D_WINDOWS: tuple[tuple[int, int], ...] = (
    (_hms(8), _hms(8, 50)),
    (_hms(9, 0, 30), _hms(15, 20)),
    (_hms(15, 30), _hms(20)),
)
"""When ``_NX`` items send 0D: pre-, main and after-market, minus the halts around KRX auctions (5.2, 5.3)."""
KRX_AUCTIONS: tuple[tuple[int, int], ...] = ((_hms(8, 50), _hms(9)), (_hms(15, 20), _hms(15, 30)))
"""KRX call auctions (동시호가): 23/24 and 291/292 carry the expected price/qty only here (PROTOCOL.md 2.1)."""

_T0850, _T0900, _T1200, _T1520, _T1530 = _hms(8, 50), _hms(9), _hms(12), _hms(15, 20), _hms(15, 30)

# Previous closes (기준가), plausible for 2025, all on the KRX tick grid (PROTOCOL.md 5.5).
_REFERENCES: dict[str, int] = {
    "005930": 71_400,  # 삼성전자
    "000660": 201_500,  # SK하이닉스
    "035420": 213_500,  # NAVER
    "005380": 214_000,  # 현대차
    "035720": 41_450,  # 카카오
    "051910": 312_000,  # LG화학
    "006400": 287_500,  # 삼성SDI
    "068270": 178_500,  # 셀트리온
    "207940": 1_021_000,  # 삼성바이오로직스
    "005490": 356_500,  # POSCO홀딩스
    "000270": 98_700,  # 기아
    "012330": 246_500,  # 현대모비스
    "105560": 84_300,  # KB금융
    "055550": 53_800,  # 신한지주
    "028260": 139_600,  # 삼성물산
    "066570": 82_400,  # LG전자
    "003550": 73_900,  # LG
    "096770": 118_200,  # SK이노베이션
    "034730": 156_300,  # SK
    "015760": 23_850,  # 한국전력
    "247540": 112_400,  # 에코프로비엠 (KOSDAQ)
    "086520": 62_300,  # 에코프로 (KOSDAQ)
    "373220": 356_000,  # LG에너지솔루션
    "032830": 83_900,  # 삼성생명
    "017670": 53_100,  # SK텔레콤
    "033780": 104_800,  # KT&G
    "003490": 22_150,  # 대한항공
    "196170": 318_500,  # 알테오젠 (KOSDAQ)
    "042700": 98_400,  # 한미반도체
    "035900": 71_200,  # JYP Ent. (KOSDAQ)
    "000020": 6_450,  # 동화약품 (PROTOCOL.md 6.3)
}

DEFAULT_UNIVERSE: tuple[str, ...] = tuple(_REFERENCES)
"""The default simulated items: real KOSPI/KOSDAQ codes (KRX venue, no suffix) with plausible previous closes."""

REFERENCE_PRICES: Mapping[str, int] = MappingProxyType(_REFERENCES)
"""Previous close of each :data:`DEFAULT_UNIVERSE` code, won."""


def reference_price_of(item: str) -> int:
    """The previous close (기준가) of ``item``; venue suffixes share the code's reference.

    Known codes use :data:`REFERENCE_PRICES`; any other code gets a deterministic price derived from
    ``zlib.crc32`` of the code (log-uniform 500..800,000 won, snapped down to its tick, PROTOCOL.md 5.5).
    """
    code, _ = split_item(item)
    known = _REFERENCES.get(code)
    if known is not None:
        return known
    u = (zlib.crc32(b"ref:" + code.encode("utf-8")) & 0xFFFFFF) / float(0x1000000)
    p = int(math.exp(math.log(500.0) + u * (math.log(800_000.0) - math.log(500.0))))
    return p - p % tick_size(p)


def session_windows(item: str, real_type: str) -> tuple[tuple[int, int], ...]:
    """The ``[start, end)`` windows (seconds since KST midnight) in which ``item`` sends ``real_type``.

    PROTOCOL.md 5.3: ``_NX`` -> :data:`NXT_0D_WINDOWS` and no 0E; KRX and ``_AL`` ->
    :data:`KRX_0D_WINDOWS` and :data:`KRX_0E_WINDOWS`. Any other type: never.
    """
    _, venue = split_item(item)
    if real_type == "0D":
        return NXT_0D_WINDOWS if venue == "NXT" else KRX_0D_WINDOWS
    if real_type == "0E":
        return () if venue == "NXT" else KRX_0E_WINDOWS
    return ()


@dataclass(frozen=True, slots=True)
class SimRow:
    """One REAL row: ``text`` is ``encode_real_row(type, item, <values as compact JSON>)`` and
    ``values`` holds the same FID -> string pairs in wire order (PROTOCOL.md 1.7), in a dict of its own
    (mutating it does not affect later rows)."""

    item: str
    type: str
    text: str
    values: dict[str, str]


@dataclass(frozen=True, slots=True)
class SimTick:
    """All rows that update at market time ``t`` (seconds since KST midnight), at most one per (item, type)."""

    t: float
    rows: tuple[SimRow, ...]


@dataclass(frozen=True, slots=True)
class BookView:
    """An item's current book in absolute won: non-empty levels only, best first (asks up, bids down)."""

    item: str
    reference: int
    lower: int
    upper: int
    asks: tuple[tuple[int, int], ...]
    bids: tuple[tuple[int, int], ...]
    cum_volume: int


# --------------------------------------------------------------------------------------------------
# Wire layout: positions of the FIDs in the official 0D key order, and the row templates


_KEYS_0D: tuple[str, ...] = tuple(f.fid for f in FIELDS_0D)
_KEYS_0E: tuple[str, ...] = tuple(f.fid for f in FIELDS_0E)


def _fids(first: int) -> tuple[str, ...]:
    return tuple(str(first + n) for n in range(10))


# Level FIDs by position (PROTOCOL.md 2.1): level n = base + n - 1.
_AP, _AQ, _AD = _fids(41), _fids(61), _fids(81)
_BP, _BQ, _BD = _fids(51), _fids(71), _fids(91)
# SOR split by venue (6044-6087): KRX ask/bid per level, NXT ask/bid per level.
_KA, _KB, _NA, _NB = _fids(6044), _fids(6054), _fids(6066), _fids(6076)
_AUCTION_FIDS = ("23", "24", "200", "201", "238", "291", "292", "293", "294", "295", "299")


def _base_values_0d() -> dict[str, str]:
    """Every 0D FID at its resting value: ``"0"``, ``"0.00"`` for rates, ``""`` for text, ``"3"`` (보합) for signs."""
    out: dict[str, str] = {}
    for f in FIELDS_0D:
        out[f.fid] = "" if f.kind is Kind.TEXT else ("0.00" if f.kind is Kind.PCT else "0")
    out["238"] = out["293"] = "3"  # 보합: no expected price (PROTOCOL.md 2.0 sign codes)
    for fid in _AP + _BP:
        out[fid] = "-0"  # an empty level (PROTOCOL.md 2.0)
    return out


_BASE_0D: dict[str, str] = _base_values_0d()
if tuple(_BASE_0D) != _KEYS_0D or not set(_AP + _AQ + _AD + _BP + _BQ + _BD + _KA + _KB + _NA + _NB) <= set(_KEYS_0D):
    raise RuntimeError("FIELDS_0D no longer matches the 0D layout of PROTOCOL.md 2.1; update replay/simulator.py")


def _row_template(real_type: str, item: str, keys: tuple[str, ...]) -> str:
    """A %-format template of the whole row text: ``encode_real_row`` around ``{"21":"%s",...}``."""
    head, tail = encode_real_row(real_type, item, "\x00").split("\x00")  # item is escaped, so \x00 is ours
    values = "{" + ",".join(f'"{k}":"%s"' for k in keys) + "}"
    return head.replace("%", "%%") + values + tail.replace("%", "%%")


def _sd(x: int) -> str:
    """A signed delta: ``"+5"``, ``"-5"``, ``"0"`` (PROTOCOL.md 2.0)."""
    return f"{x:+d}" if x else "0"


def _pct(x: float, signed: bool) -> str:
    s = f"{abs(x):.2f}"
    if s == "0.00":
        return s
    if x < 0:
        return "-" + s
    return "+" + s if signed else s


def _signed_price(p: int, ref: int) -> str:
    return f"+{p}" if p > ref else (f"-{p}" if p < ref else str(p))


def _seed_int(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


# --------------------------------------------------------------------------------------------------
# One code (shared by "005930", "005930_NX", "005930_AL"): reference, ladder, the fair-price path


class _Code:
    """Per-code facts and the shared fair-price path, so venues of one code quote near each other."""

    __slots__ = (
        "_path",
        "_rng",
        "_sigma",
        "_tsec",
        "_tval",
        "_x_hi",
        "_x_lo",
        "code",
        "ladder",
        "level_qty",
        "lower",
        "prev_volume",
        "reference",
        "signed",
        "trade_qty",
        "upper",
    )

    def __init__(self, code: str, seed: int, volatility: float) -> None:
        self.code = code
        ref = self.reference = reference_price_of(code)
        self.lower, self.upper = band(ref)
        ladder: list[int] = []
        p = self.lower
        while p <= self.upper:
            ladder.append(p)
            p += tick_size(p)
        self.ladder = ladder
        self.signed = [_signed_price(p, ref) for p in ladder]
        u = (zlib.crc32(b"liq:" + code.encode("utf-8")) & 0xFFFF) / 65535.0
        notional = 10.0 ** (8.0 + 1.5 * u)  # 100 M .. 3.2 B won resting per level
        self.level_qty = max(3.0, notional / ref)
        self.trade_qty = max(1.0, self.level_qty / 20.0)
        self.prev_volume = max(1000, int(self.level_qty * 400))
        self._rng = random.Random(_seed_int(seed, "path", code))
        self._sigma = volatility / math.sqrt(390.0)  # per minute; 390 = minutes of the regular session
        self._x_hi, self._x_lo = math.log(1.31), math.log(0.69)  # just beyond the band: limits are reachable
        self._path: list[float] = []
        self._tsec = -1
        self._tval = 0

    def _extend(self, n: int) -> None:
        path, rng, sigma = self._path, self._rng, self._sigma
        while len(path) < n:
            if len(path) <= 480:  # flat until 08:00, then a mean-reverting walk in log price
                path.append(0.0)
                continue
            x = path[-1] * 0.998 + sigma * rng.gauss(0.0, 1.0)
            path.append(min(self._x_hi, max(self._x_lo, x)))

    def target(self, t: float) -> int:
        """Ladder index of the best bid implied by the fair price at second ``int(t)`` (-1: below the lower limit).

        A pure function of ``int(t)``, cached for the last second asked (venues of one code share it).
        """
        sec = int(t + 1e-9)
        if sec == self._tsec:
            return self._tval
        t = float(sec)
        m = min(max(sec // 60, 0), 1439)
        path = self._path
        if len(path) < m + 2:
            self._extend(m + 2)
        a = path[m]
        x = a + (path[m + 1] - a) * min(max(t / 60.0 - m, 0.0), 1.0)
        self._tsec = sec
        self._tval = v = bisect_right(self.ladder, self.reference * math.exp(x)) - 1
        return v


# --------------------------------------------------------------------------------------------------
# Streams: one per (item, type), each with its own RNG and clock


class _Stream:
    __slots__ = ("_rate", "_tc", "code", "item", "last_k", "per_sec", "rng", "seq", "windows")

    def __init__(
        self, item: str, code: _Code, real_type: str, seq: int, seed: int, rate: float, per_sec: float, t0: float
    ) -> None:
        self.item = item
        self.code = code
        self.seq = seq
        self.rng = random.Random(_seed_int(seed, real_type, item))
        self._rate = rate
        self.per_sec = per_sec
        self.windows = tuple(
            (math.ceil(a * per_sec - 1e-9), math.ceil(b * per_sec - 1e-9)) for a, b in session_windows(item, real_type)
        )
        self._tc = t0
        self.last_k = math.floor(t0 * per_sec + 1e-9)

    def next_k(self) -> int:
        """The next tick index of this stream (> every emitted one), or -1 when its windows are over."""
        rng, ps = self.rng, self.per_sec
        tc = self._tc + rng.expovariate(self._rate)
        k = max(self.last_k + 1, math.ceil(tc * ps - 1e-9))
        for ka, kb in self.windows:
            if k >= kb:
                continue
            if k < ka:  # silent until the window opens; the first row comes a fraction of a second later
                tc = ka / ps + rng.expovariate(self._rate)
                k = max(ka, math.ceil(tc * ps - 1e-9))
                if k >= kb:
                    continue
            self._tc = tc
            return k
        self._tc = tc
        return -1

    def hhmmss(self, k: int) -> str:
        s = int(k / self.per_sec + 1e-9)
        return f"{s // 3600 % 24:02d}{s // 60 % 60:02d}{s % 60:02d}"

    def emit(self, k: int) -> SimRow:
        raise NotImplementedError


_KRX, _NXT, _SOR = 0, 1, 2


class _BookStream(_Stream):
    """0D: a 10-level book, positional quantities, chasing the code's fair price one tick at a time.

    The values dict of each row is the previous row's dict with only the changed FIDs rewritten
    (a full 163-key dict build costs ~10 µs; this costs ~2), then encoded once with msgspec.
    """

    __slots__ = (
        "_auction",
        "_auction_shown",
        "_d",
        "_full",
        "_head",
        "_nz",
        "_sec",
        "_sec_text",
        "_split_a",
        "_split_b",
        "_tail",
        "aq",
        "bq",
        "da",
        "db",
        "exq",
        "ib",
        "na",
        "nb",
        "opened",
        "scale",
        "venue",
        "volume",
    )

    def __init__(self, item: str, code: _Code, seq: int, seed: int, rate: float, per_sec: float, t0: float) -> None:
        super().__init__(item, code, "0D", seq, seed, rate, per_sec, t0)
        venue = split_item(item)[1]
        self.venue = _NXT if venue == "NXT" else (_SOR if venue == "SOR" else _KRX)
        self._head, self._tail = encode_real_row("0D", item, "\x00").split("\x00")  # item is escaped: \x00 is ours
        self._d = dict(_BASE_0D)
        self._full = True  # the next row rewrites every level FID
        self._nz: list[int] = []  # level positions (ask i, bid 10 + i) whose delta in the last row was not 0
        self._sec = -1
        self._sec_text = ""
        self.scale = code.level_qty * (0.05 if self.venue == _NXT else (1.08 if self.venue == _SOR else 1.0))
        self.ib = max(-1, min(len(code.ladder) - 1, code.target(t0)))
        self.da = self.db = 3 if self.venue == _NXT else 10
        self.aq = [0] * 10
        self.bq = [0] * 10
        self.na = self.nb = 0
        self.exq = 0
        self._auction = -1
        self._auction_shown = False
        self.opened = False
        self.volume = 0
        rng = self.rng
        self._split_a = [rng.randrange(3, 20) for _ in range(10)]  # NXT share (%) of each SOR level position
        self._split_b = [rng.randrange(3, 20) for _ in range(10)]
        self._normalize()

    def _fresh(self, factor: float = 1.0) -> int:
        return 1 + int(self.scale * factor * self.rng.lognormvariate(0.0, 0.8))

    def _normalize(self) -> None:
        """Make levels 1..n non-empty and the rest empty, n = min(depth, levels left inside the band)."""
        n_ladder = len(self.code.ladder)
        na = self.na = max(0, min(self.da, n_ladder - 1 - self.ib))
        nb = self.nb = max(0, min(self.db, self.ib + 1))
        aq, bq = self.aq, self.bq
        for i in range(10):
            if i < na:
                if not aq[i]:
                    aq[i] = self._fresh()
            else:
                aq[i] = 0
            if i < nb:
                if not bq[i]:
                    bq[i] = self._fresh()
            else:
                bq[i] = 0

    def _shift(self, up: bool) -> None:
        """Move the book one tick: the best level on one side is taken and becomes the new best on the other."""
        aq, bq = self.aq, self.bq
        if up:
            self.ib += 1
            del aq[0]
            aq.append(0)
            bq.insert(0, self._fresh(0.3))
            bq.pop()
        else:
            self.ib -= 1
            del bq[0]
            bq.append(0)
            aq.insert(0, self._fresh(0.3))
            aq.pop()

    def emit(self, k: int) -> SimRow:
        t = k / self.per_sec
        rng, code, aq, bq = self.rng, self.code, self.aq, self.bq
        old_a, old_b = aq[:], bq[:]
        n_ladder = len(code.ladder)
        venue = self.venue
        dirty = self._full

        # Depth: thin NXT books outside its main market (PROTOCOL.md 6.4 shows 3 levels a side).
        if venue == _NXT:
            lo, hi = (2, 6) if (t < _T0850 or t >= _T1530) else (7, 10)
            r = rng.random()
            da = self.da + (1 if r < 0.04 else (-1 if r < 0.08 else 0))
            db = self.db + (1 if 0.08 <= r < 0.12 else (-1 if 0.12 <= r < 0.16 else 0))
            da, db = min(hi, max(lo, da)), min(hi, max(lo, db))
            if da != self.da or db != self.db:
                self.da, self.db, dirty = da, db, True
            auction = False
            continuous = True
        else:
            auction = t < _T0900 or t >= _T1520
            continuous = not auction

        # Mid: chase the fair price one tick per update (faster when far), plus a little noise.
        target = code.target(t)
        gap = target - self.ib
        r = rng.random()
        if gap:
            if r < (0.3 if -3 < gap < 3 else 0.9):
                self._shift(gap > 0)
                dirty = True
        elif r < 0.02:
            up = r < 0.01
            if (up and self.ib < n_ladder - 1) or (not up and self.ib > -1):
                self._shift(up)
                dirty = True
        if dirty:
            self._normalize()

        # Quantities: 1-3 level changes (orders added, cancelled or filled), always positive integers.
        touched: list[int] = []
        r = rng.random()
        for _ in range(1 if r < 0.6 else (2 if r < 0.9 else 3)):
            side = 10 if (rng.random() < 0.5 and self.nb) or not self.na else 0  # 0: asks, 10: bids
            arr, n = (aq, self.na) if side == 0 else (bq, self.nb)
            if not n:
                break
            u = rng.random()
            i = int(u * u * n)
            if side + i in touched:  # distinct levels, so that changes never cancel out
                continue
            q = arr[i]
            change = int(q * (rng.random() - 0.45) * 0.6) or (1 if u < 0.5 else -1)
            if q + change < 1:
                change = 1 - q if q > 1 else 1
            arr[i] = q + change
            touched.append(side + i)

        d = self._d.copy()
        s = int(t + 1e-9)
        if s != self._sec:
            self._sec = s
            self._sec_text = f"{s // 3600 % 24:02d}{s // 60 % 60:02d}{s % 60:02d}"
        d["21"] = self._sec_text

        # Levels (PROTOCOL.md 2.1): prices signed vs the reference, "-0"/"0" when empty, positional deltas.
        nz: list[int] = []
        if dirty:
            self._full = False
            ib, signed = self.ib, code.signed
            for i in range(10):
                q = aq[i]
                d[_AP[i]] = signed[ib + 1 + i] if q else "-0"
                d[_AQ[i]] = str(q)
                x = q - old_a[i]
                if x:
                    d[_AD[i]] = f"{x:+d}"
                    nz.append(i)
                else:
                    d[_AD[i]] = "0"
                q = bq[i]
                d[_BP[i]] = signed[ib - i] if q else "-0"
                d[_BQ[i]] = str(q)
                x = q - old_b[i]
                if x:
                    d[_BD[i]] = f"{x:+d}"
                    nz.append(10 + i)
                else:
                    d[_BD[i]] = "0"
        else:
            for p in self._nz:
                d[_AD[p] if p < 10 else _BD[p - 10]] = "0"
            for p in touched:
                if p < 10:
                    q = aq[p]
                    d[_AQ[p]] = str(q)
                    x = q - old_a[p]
                    d[_AD[p]] = f"{x:+d}" if x else "0"
                else:
                    q = bq[p - 10]
                    d[_BQ[p - 10]] = str(q)
                    x = q - old_b[p - 10]
                    d[_BD[p - 10]] = f"{x:+d}" if x else "0"
                if x:
                    nz.append(p)
        self._nz = nz

        # Totals and ratios (PROTOCOL.md 2.1): 128 = 125 - 121, 138 = -128, 129/139 in % with 2 decimals.
        ta, tb = sum(aq), sum(bq)
        old_ta, old_tb = sum(old_a), sum(old_b)
        net = tb - ta
        d["121"] = str(ta)
        d["122"] = f"{ta - old_ta:+d}" if ta != old_ta else "0"
        d["125"] = str(tb)
        d["126"] = f"{tb - old_tb:+d}" if tb != old_tb else "0"
        d["128"] = f"{net:+d}" if net else "0"
        d["138"] = f"{-net:+d}" if net else "0"
        d["129"] = f"{tb / ta * 100:.2f}" if ta else "0.00"
        d["139"] = f"{ta / tb * 100:.2f}" if tb else "0.00"

        # Trades and auctions: cumulative volume, expected price/qty (PROTOCOL.md 2.1).
        if auction:
            self._auction_expected(d, t, target)
        else:
            if self._auction_shown:
                self._auction_shown = False
                for fid in _AUCTION_FIDS:
                    d[fid] = _BASE_0D[fid]
            if continuous:
                if not self.opened:
                    self.opened = True
                    self.volume += self.exq  # the opening auction's fill
                    self.exq = 0
                if rng.random() < 0.7:
                    self.volume += 1 + int(code.trade_qty * rng.expovariate(1.0))
                d["13"] = str(self.volume)
        if venue == _SOR and (dirty or touched):
            self._split(d, range(20) if dirty else touched)

        self._d = d
        return SimRow(self.item, "0D", self._head + encode(d) + self._tail, d.copy())

    def _auction_expected(self, d: dict[str, str], t: float, target: int) -> None:
        """23/24, 291/292 and their changes vs the reference during a KRX call auction (PROTOCOL.md 2.1)."""
        code = self.code
        aid = 0 if t < _T1200 else 1
        if aid != self._auction:
            self._auction = aid
            self.exq = self._fresh(0.5)
        else:
            self.exq += 1 + int(self.scale * 0.2 * self.rng.random())
        n_ladder = len(code.ladder)
        e = min(max(target, self.ib), self.ib + 1)  # the side of the spread the fair price is on
        e = min(max(e, 0), n_ladder - 1)
        diff = code.ladder[e] - code.reference
        if e == n_ladder - 1:
            sign = "1"  # 상한가
        elif e == 0:
            sign = "4"  # 하한가
        else:
            sign = "2" if diff > 0 else ("5" if diff < 0 else "3")
        d["23"] = d["291"] = code.signed[e]
        d["24"] = d["292"] = str(self.exq)
        d["200"] = d["294"] = f"{diff:+d}" if diff else "0"
        d["201"] = d["295"] = _pct(diff * 100.0 / code.reference, True)
        d["238"] = d["293"] = sign
        d["299"] = _pct(self.exq * 100.0 / code.prev_volume, False)
        self._auction_shown = True

    def _split(self, d: dict[str, str], positions: Iterable[int]) -> None:
        """SOR (``_AL``) rows: each level's quantity split into its KRX and NXT parts (6044-6087)."""
        aq, bq, sa, sb = self.aq, self.bq, self._split_a, self._split_b
        for p in positions:
            i = p % 10
            if p < 10:
                n = aq[i] * sa[i] // 100
                d[_NA[i]] = str(n)
                d[_KA[i]] = str(aq[i] - n)
            else:
                n = bq[i] * sb[i] // 100
                d[_NB[i]] = str(n)
                d[_KB[i]] = str(bq[i] - n)
        nxa = sum(q * s // 100 for q, s in zip(aq, sa, strict=True))
        nxb = sum(q * s // 100 for q, s in zip(bq, sb, strict=True))
        d["6064"], d["6065"] = str(sum(aq) - nxa), str(sum(bq) - nxb)
        d["6086"], d["6087"] = str(nxa), str(nxb)

    def view(self) -> BookView:
        code, ib = self.code, self.ib
        asks = tuple((code.ladder[ib + 1 + i], self.aq[i]) for i in range(self.na))
        bids = tuple((code.ladder[ib - i], self.bq[i]) for i in range(self.nb))
        return BookView(self.item, code.reference, code.lower, code.upper, asks, bids, self.volume)


class _AfterHoursStream(_Stream):
    """0E: the 시간외 ask/bid totals (PROTOCOL.md 2.2); the bid total is 0 in the 08:30-08:40 window."""

    __slots__ = ("_fmt", "_window", "ask", "bid", "prev_ask", "prev_bid", "scale")

    def __init__(self, item: str, code: _Code, seq: int, seed: int, rate: float, per_sec: float, t0: float) -> None:
        super().__init__(item, code, "0E", seq, seed, rate, per_sec, t0)
        self._fmt = _row_template("0E", item, _KEYS_0E)
        self.scale = code.level_qty
        self._window = -1
        self.ask = self.bid = self.prev_ask = self.prev_bid = 0

    def emit(self, k: int) -> SimRow:
        t = k / self.per_sec
        rng, s = self.rng, self.scale
        pre = t < _T1200
        window = 0 if pre else 1
        if window != self._window:  # a new session: a new book
            self._window = window
            self.ask = 1 + int(s * (0.3 if pre else 2.0) * rng.lognormvariate(0.0, 0.5))
            self.bid = 0 if pre else 1 + int(s * 2.0 * rng.lognormvariate(0.0, 0.5))
        else:
            self.ask = max(1, self.ask + int(s * 0.05 * (rng.random() - (0.2 if pre else 0.5))))
            if not pre:
                self.bid = max(1, self.bid + int(s * 0.05 * (rng.random() - 0.5)))
        vals = (
            self.hhmmss(k),
            str(self.ask),
            _sd(self.ask - self.prev_ask),
            str(self.bid),
            _sd(self.bid - self.prev_bid),
        )
        self.prev_ask, self.prev_bid = self.ask, self.bid
        return SimRow(self.item, "0E", self._fmt % vals, dict(zip(_KEYS_0E, vals, strict=True)))


# --------------------------------------------------------------------------------------------------
# The market


class SimulatedMarket:
    """A deterministic simulated market of 0D/0E rows for the mock server (see the module docstring).

    Contract: call :meth:`advance` with non-decreasing market times; it returns every tick in
    ``(previous now, until]`` in time order, then :attr:`now` is ``until``. :meth:`add_item` may be
    called at any time; the new item's first row comes after :attr:`now`. Rows within a tick are in
    the order the items were added (0D before 0E).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        items: Iterable[str] = DEFAULT_UNIVERSE,
        start: float = 8 * 3600 + 59 * 60 + 50,
        rate_hz: float = 3.6,
        batch: float = 0.05,
        rate_0e_hz: float = 0.2,
        volatility: float = 0.02,
    ) -> None:
        """Start a market at market time ``start`` with ``items`` added in order.

        ``rate_hz``: mean 0D updates per item per second of market time (~3.6 measured, PROTOCOL.md 2.1).
        ``batch``: the tick grid in seconds, a divisor of one second. ``rate_0e_hz``: mean 0E updates per
        item per second (~0.2 measured: PROTOCOL.md 6.5 cites 119 0E frames over 08:30-08:40).
        ``volatility``: daily standard deviation of the log fair price (large values drive prices to the
        +/-30 % limits). Raises ValueError for a bad number, TypeError for ``items`` given as one string.
        """
        for name, v in (("rate_hz", rate_hz), ("batch", batch), ("rate_0e_hz", rate_0e_hz)):
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        per_sec = round(1.0 / batch) if batch <= 1.0 else 0
        if per_sec < 1 or abs(per_sec * batch - 1.0) > 1e-9:
            raise ValueError(f"batch must divide one second (0.01, 0.05, 0.1, 0.25, 1, ...), got {batch!r}")
        if not (volatility >= 0 and math.isfinite(volatility)):
            raise ValueError(f"volatility must be >= 0, got {volatility!r}")
        if isinstance(items, str):
            raise TypeError(f"items must be an iterable of codes, not one string: use items=[{items!r}]")
        if not math.isfinite(start):
            raise ValueError(f"start must be a finite market time, got {start!r}")
        self.seed = seed
        self.rate_hz = rate_hz
        self.rate_0e_hz = rate_0e_hz
        self.batch = batch
        self.volatility = volatility
        self._per_sec = float(per_sec)  # ticks are k / per_sec: exact decimal times for k on the grid
        self._now = float(start)
        self._codes: dict[str, _Code] = {}
        self._books: dict[str, _BookStream] = {}
        self._items: dict[str, None] = {}
        self._heap: list[tuple[int, int, _Stream]] = []
        self._seq = 0
        for item in items:
            self.add_item(item)

    @property
    def now(self) -> float:
        """The market time up to which rows have been produced (seconds since KST midnight)."""
        return self._now

    @property
    def items(self) -> tuple[str, ...]:
        """Every item added so far, in order."""
        return tuple(self._items)

    def _code(self, item: str) -> _Code:
        code = split_item(item)[0]
        c = self._codes.get(code)
        if c is None:
            c = self._codes[code] = _Code(code, self.seed, self.volatility)
        return c

    def add_item(self, item: str) -> None:
        """Start simulating ``item`` (a code as subscribed: ``"005930"``, ``"005930_NX"``, ``"005930_AL"``).

        Idempotent. Unknown codes get a deterministic reference price (:func:`reference_price_of`).
        The item's first row is after :attr:`now`, within its session windows.
        """
        if not isinstance(item, str) or not item:
            raise ValueError(f"an item must be a non-empty string, got {item!r}")
        if item in self._items:
            return
        self._items[item] = None
        code = self._code(item)
        book = _BookStream(item, code, self._seq, self.seed, self.rate_hz, self._per_sec, self._now)
        self._books[item] = book
        streams: list[_Stream] = [book]
        if session_windows(item, "0E"):
            streams.append(
                _AfterHoursStream(item, code, self._seq + 1, self.seed, self.rate_0e_hz, self._per_sec, self._now)
            )
        self._seq += 2
        for s in streams:
            k = s.next_k()
            if k >= 0:
                heapq.heappush(self._heap, (k, s.seq, s))

    def remove_item(self, item: str) -> None:
        """Stop simulating ``item`` and drop its state (and its code's, if no other venue of it is left).

        Idempotent. A minimal stand-in: adding the item again starts its streams afresh from :attr:`now`.
        """
        if item not in self._items:
            return
        del self._items[item]
        self._books.pop(item, None)
        self._heap = [entry for entry in self._heap if entry[2].item != item]
        heapq.heapify(self._heap)
        code = split_item(item)[0]
        if all(split_item(other)[0] != code for other in self._items):
            self._codes.pop(code, None)

    def reference_price(self, item: str) -> int:
        """The previous close (기준가) of ``item``: the base of every price sign (PROTOCOL.md 2.0)."""
        return reference_price_of(item)

    def book(self, item: str) -> BookView:
        """The current 0D book of an added item (raises KeyError otherwise)."""
        return self._books[item].view()

    def advance(self, until: float) -> list[SimTick]:
        """All ticks with ``now < t <= until``, in time order; afterwards ``now == until``.

        A ``until`` at or before :attr:`now` returns ``[]`` and leaves :attr:`now` unchanged (market
        time never goes backwards).
        """
        if math.isnan(until):
            raise ValueError("until must be a market time, not NaN")
        if until <= self._now:
            return []
        until = min(until, 10 * 86_400.0)
        k_until = math.floor(until * self._per_sec + 1e-9)
        self._now = until
        heap = self._heap
        per_sec = self._per_sec
        out: list[SimTick] = []
        rows: list[SimRow] = []
        cur = -1
        while heap and heap[0][0] <= k_until:
            k, seq, stream = heapq.heappop(heap)
            if k != cur:
                if rows:
                    out.append(SimTick(cur / per_sec, tuple(rows)))
                    rows = []
                cur = k
            stream.last_k = k
            rows.append(stream.emit(k))
            nk = stream.next_k()
            if nk >= 0:
                heapq.heappush(heap, (nk, seq, stream))
        if rows:
            out.append(SimTick(cur / per_sec, tuple(rows)))
        return out
