"""The simulated KRX/NXT market: a deterministic, sans-I/O source of 0D and 0E REAL rows.

``replay --simulate`` and ``kiwoom-tape demo`` serve these rows through the mock server, so that a
client sees what the live server sends (PROTOCOL.md 1.7, 2.0-2.2, 5.1-5.5) without credentials.
This module reads no clock, touches no socket or file and runs no event loop: the server driver
asks :meth:`SimulatedMarket.advance` for everything up to a market time of its choosing. The day's
calendar is :mod:`replay.sim_calendar`, the book process :mod:`replay.sim_book`, the row encoding
:mod:`replay.sim_frames`; this module schedules streams and keeps them deterministic.

What a driver can rely on (the acceptance invariants, tested in ``tests/test_simulator.py`` and
``tests/test_sim_day.py``):

- **Determinism.** An item's rows are a function of the seed, the market's parameters, the item and the
  market time only: whenever the item was added, and after :meth:`~SimulatedMarket.remove_item` then
  :meth:`~SimulatedMarket.add_item` again (it fast-forwards). Advancing in many small steps yields
  byte-identical rows to one big step. No ``hash()``, no wall clock.
- **Checkpoints.** Every (item, type) stream is reseeded from (seed, type, item, minute) at each minute
  of market time (:data:`CHECKPOINT`): the book is drawn afresh around the fair price, so the first row
  of a minute may change many levels at once. Adding an item replays at most two minutes of its events.
  Deltas are still vs the item's previous row (it is rebuilt from the previous active minute; if that
  minute and the two before it had no row, the baseline is that minute's fresh book).
- **Time.** Market time is seconds since KST midnight. Updates are a Poisson process quantized up to
  the ``batch`` grid at ``rate_hz`` (0E: ``rate_0e_hz``) times :func:`replay.sim_calendar.rate_factor`
  (x4 at 09:00, quieter at midday, thin NXT pre/after-market). A tick carries at most one row per
  (item, type). Time never goes backwards.
- **Schedule** (PROTOCOL.md 5.3, half-open windows ``[start, end)``): KRX items (no suffix) and
  ``_AL`` items send 0D in 08:50:00-15:30:00 and 0E in 08:30:00-08:40:00 and 15:40:00-18:00:00;
  ``_NX`` items send 0D in 08:00:00-20:00:00 except the NXT halts 08:50:00-09:00:30 and
  15:20:00-15:30:00, and never 0E. Outside its windows an item is silent.
- **0D rows** (PROTOCOL.md 2.1): all 163 FIDs of :data:`schemas.fields.FIELDS_0D`, in that order,
  string values, compact JSON. Prices are on the tick grid (5 won for ETFs) and inside the +/-30 % band
  (PROTOCOL.md 5.5), signed vs the reference price (PROTOCOL.md 2.0). Asks ascend from level 1 and bids
  descend, one tick apart; best bid < best ask, the spread one tick or more (wider for thin items and
  just after the open). Non-empty levels form a prefix; the rest are empty: price ``"-0"``, qty ``"0"``
  (thin NXT pre/after-market books, and levels that would fall outside the band). Level quantities stay
  within :data:`replay.sim_book.LEVEL_CAP` times their typical size (far below 1e9). Totals 121/125 are
  the level sums; the deltas 81-100 are positional vs the item's previous 0D row and sum to 122/126.
  128 = 125 - 121 and 138 = -128 (signed), 129 = 125/121*100 and 139 = 121/125*100 (2 decimals,
  ``"0.00"`` when the divisor is 0). 23/24 and 291/292 are non-zero only in the KRX auctions
  08:50-09:00 and 15:20-15:30 (KRX and ``_AL`` items), with 200/201/238/293-295/299 consistent.
  13 (cumulative volume, the fills at the touch) never decreases. LP fields 621-640 are ``"0"``;
  6044-6115 are ``"0"`` (6112/6115 ``"0.00"``) except that ``_AL`` items split their levels into KRX and
  NXT parts (6044-6087). 215/216 are ``""``.
- **0E rows** (PROTOCOL.md 2.2): 21, 131, 132, 135, 136; 132/136 are signed deltas vs the item's
  previous 0E row. The bid total is 0 in the 08:30-08:40 window, as measured.

Usage by a driver::

    market = SimulatedMarket(seed=7, start=9 * 3600)
    market.add_item("005930_NX")
    for tick in market.advance(9 * 3600 + 1.0):
        frame = encode_real_frame([row.text for row in tick.rows if client.wants(row.item, row.type)])
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from replay.sim_book import DEFAULT_UNIVERSE, REFERENCE_PRICES, Book, Code, reference_price_of, seed_int
from replay.sim_calendar import (
    KRX_0D_WINDOWS,
    KRX_0E_WINDOWS,
    KRX_AUCTIONS,
    NXT_0D_WINDOWS,
    rate_factor,
    session_windows,
)
from replay.sim_frames import Row0D, SimRow, row_0e, template_0e
from schemas.market import split_item

__all__ = [
    "CHECKPOINT",
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

CHECKPOINT = 30
"""Seconds of market time between two reseeds of a stream (a fast-forward replays at most two of them)."""


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
# Streams: one per (item, type), reseeded at every checkpoint


class _Stream:
    """The update times of one (item, type) and its state, reseeded from (seed, type, item, interval)."""

    __slots__ = (
        "_k",
        "alive",
        "c",
        "code",
        "full",
        "item",
        "last_k",
        "per_sec",
        "rate",
        "rng",
        "seed",
        "seq",
        "tc",
        "type",
        "venue",
        "windows",
    )

    def __init__(self, item: str, code: Code, real_type: str, seq: int, seed: int, rate: float, per_sec: float) -> None:
        self.item = item
        self.code = code
        self.type = real_type
        self.venue = split_item(item)[1]
        self.seq = seq
        self.seed = seed
        self.rate = rate
        self.per_sec = per_sec
        self._k = round(CHECKPOINT * per_sec)
        self.windows = tuple(
            (math.ceil(a * per_sec - 1e-9), math.ceil(b * per_sec - 1e-9)) for a, b in session_windows(item, real_type)
        )
        self.alive = True
        self.full = True
        self.c = -1
        self.rng = random.Random(0)
        self.tc = 0.0
        self.last_k = -1

    # The state, per type
    def reseed(self, t: float, checkpoint: float) -> None:
        raise NotImplementedError

    def apply(self, k: int) -> None:
        """One update at tick ``k`` without a row (fast-forward); the state's "previous row" follows it."""
        raise NotImplementedError

    def emit(self, k: int) -> SimRow:
        raise NotImplementedError

    def clear_last(self) -> None:
        """Forget the previous row: the next row's deltas are vs an empty book."""
        raise NotImplementedError

    # The schedule
    def _first_interval(self, j: int) -> int | None:
        """The first interval >= ``j`` that overlaps one of the windows (None: the day is over)."""
        for ka, kb in self.windows:
            if kb > j * self._k:
                return max(j, ka // self._k)
        return None

    def _prev_interval(self, j: int) -> int | None:
        """The last interval < ``j`` that overlaps one of the windows."""
        for ka, kb in reversed(self.windows):
            if ka < j * self._k:
                return min(j - 1, (kb - 1) // self._k)
        return None

    def _enter(self, j: int) -> None:
        k0 = j * self._k
        start = next((max(k0, ka) for ka, kb in self.windows if kb > k0), k0)
        self.c = j
        self.rng = random.Random(seed_int(self.seed, self.type, self.item, j))
        self.tc = start / self.per_sec
        self.reseed(self.tc, k0 / self.per_sec)
        self.full = True

    def _draw(self) -> int | None:
        """The next update tick inside the current interval, or None when the interval has no more."""
        end = (self.c + 1) * self._k
        rng, ps = self.rng, self.per_sec
        while True:
            tc = self.tc + rng.expovariate(self.rate * rate_factor(self.venue, self.type, self.tc))
            k = max(self.last_k + 1, math.ceil(tc * ps - 1e-9))
            self.tc = tc
            if k >= end:
                return None
            for ka, kb in self.windows:
                if k < kb:
                    if k >= ka:
                        return k
                    if ka >= end:
                        return None
                    self.tc = ka / ps  # silent until the window opens
                    break
            else:
                return None

    def next_k(self) -> int:
        """The next tick index of this stream (> every earlier one), or -1 when its windows are over."""
        while True:
            k = self._draw()
            if k is not None:
                return k
            j = self._first_interval(self.c + 1)
            if j is None:
                return -1
            self._enter(j)

    def position(self, k_now: int) -> int:
        """Bring the stream to tick ``k_now`` as if it had always run; returns its next tick (-1: none).

        Replays the last active interval before ``k_now``'s (for the previous row, up to three back when
        they are silent) and ``k_now``'s own interval up to ``k_now``: bounded work, whatever ``k_now``.
        """
        j = self._first_interval(k_now // self._k)
        if j is None:
            return -1
        self.clear_last()
        p = self._prev_interval(j)
        for _ in range(3):
            if p is None:
                break
            self._enter(p)
            self.last_k = p * self._k - 1
            got = False
            while (k := self._draw()) is not None:
                self.last_k = k
                self.apply(k)
                got = True
            if got:
                break
            p = self._prev_interval(p)
        self._enter(j)
        self.last_k = min(self.last_k, j * self._k - 1)
        while True:
            k = self.next_k()
            if k < 0 or k > k_now:
                self.full = True
                return k
            self.last_k = k
            self.apply(k)

    def t_of(self, k: int) -> float:
        return k / self.per_sec


class _BookStream(_Stream):
    """0D: a :class:`replay.sim_book.Book` and its rows (:class:`replay.sim_frames.Row0D`)."""

    __slots__ = ("book", "last_a", "last_b", "out", "shape")

    def __init__(self, item: str, code: Code, seq: int, seed: int, rate: float, per_sec: float) -> None:
        super().__init__(item, code, "0D", seq, seed, rate, per_sec)
        self.book = Book(code, self.venue)
        self.last_a = [0] * 10
        self.last_b = [0] * 10
        self.shape = (0, 0, 0, 0)
        rng = random.Random(seed_int(seed, "split", item))
        split_a = [rng.randrange(3, 20) for _ in range(10)]  # NXT share (%) of each SOR level position
        split_b = [rng.randrange(3, 20) for _ in range(10)]
        self.out = Row0D(item, self.venue == "SOR", split_a, split_b)

    def reseed(self, t: float, checkpoint: float) -> None:
        self.book.reseed(self.rng, t, checkpoint, float(CHECKPOINT))

    def clear_last(self) -> None:
        self.last_a = [0] * 10
        self.last_b = [0] * 10

    def apply(self, k: int) -> None:
        book = self.book
        book.step(self.rng, k / self.per_sec)
        self.last_a, self.last_b = book.aq[:], book.bq[:]

    def emit(self, k: int) -> SimRow:
        t = k / self.per_sec
        book = self.book
        book.step(self.rng, t)
        full = self.full or book.shape != self.shape
        row = self.out.row(book, self.last_a, self.last_b, full, t, self.code.target(t) if book.auction else 0)
        self.last_a, self.last_b = book.aq[:], book.bq[:]
        self.shape = book.shape
        self.full = False
        return row


class _AfterHoursStream(_Stream):
    """0E: the 시간외 ask/bid totals (PROTOCOL.md 2.2); the bid total is 0 in the 08:30-08:40 window."""

    __slots__ = ("_template", "ask", "bid", "last", "scale")

    def __init__(self, item: str, code: Code, seq: int, seed: int, rate: float, per_sec: float) -> None:
        super().__init__(item, code, "0E", seq, seed, rate, per_sec)
        self._template = template_0e(item)
        self.scale = code.typical
        self.ask = self.bid = 0
        self.last = (0, 0)

    def _mean(self, t: float) -> tuple[float, float]:
        pre = t < 12 * 3600
        return (self.scale * 0.3, 0.0) if pre else (self.scale * 2.0, self.scale * 2.0)

    def reseed(self, t: float, checkpoint: float) -> None:
        ma, mb = self._mean(t)
        rng = self.rng
        self.ask = 1 + int(ma * rng.lognormvariate(0.0, 0.15))
        self.bid = 1 + int(mb * rng.lognormvariate(0.0, 0.15)) if mb else 0

    def clear_last(self) -> None:
        self.last = (0, 0)

    def _step(self, t: float) -> None:
        ma, mb = self._mean(t)
        self.ask = self._revert(self.ask, ma)
        if mb:
            self.bid = self._revert(self.bid, mb)

    def _revert(self, x: int, mean: float) -> int:
        """A bounded, mean-reverting step of a total: noise plus a 2 % pull, kept in [1, 5 x mean]."""
        step = self.scale * 0.05 * (self.rng.random() - 0.5) + (mean - x) * 0.02
        return max(1, min(int(mean * 5) + 1, x + int(step)))

    def apply(self, k: int) -> None:
        self._step(k / self.per_sec)
        self.last = (self.ask, self.bid)

    def emit(self, k: int) -> SimRow:
        t = k / self.per_sec
        self._step(t)
        row = row_0e(self._template, self.item, t, (self.ask, self.bid), self.last)
        self.last = (self.ask, self.bid)
        return row


# --------------------------------------------------------------------------------------------------
# The market


class SimulatedMarket:
    """A deterministic simulated market of 0D/0E rows for the mock server (see the module docstring).

    Contract: call :meth:`advance` with non-decreasing market times; it returns every tick in
    ``(previous now, until]`` in time order, then :attr:`now` is ``until``. :meth:`add_item` and
    :meth:`remove_item` may be called at any time; an added item's first row comes after :attr:`now`.
    Rows within a tick are in the order the items were added (0D before 0E).
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

        ``rate_hz``: mean 0D updates per item per second of market time in mid-morning (~3.6 measured,
        PROTOCOL.md 2.1; :func:`replay.sim_calendar.rate_factor` shapes the day). ``batch``: the tick grid in
        seconds, a divisor of one second. ``rate_0e_hz``: mean 0E updates per item per second (~0.2
        measured: PROTOCOL.md 6.5 cites 119 0E frames over 08:30-08:40). ``volatility``: daily standard
        deviation of the log fair price (large values drive prices to the +/-30 % limits). Raises
        ValueError for a bad number, TypeError for ``items`` given as one string.
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
        self._codes: dict[str, tuple[Code, int]] = {}  # code -> (its facts, how many items use it)
        self._streams: dict[str, tuple[_Stream, ...]] = {}
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
        """Every item being simulated, in the order added."""
        return tuple(self._streams)

    def add_item(self, item: str) -> None:
        """Start simulating ``item`` (a code as subscribed: ``"005930"``, ``"005930_NX"``, ``"005930_AL"``).

        Idempotent. Unknown codes get a deterministic reference price (:func:`reference_price_of`). The
        item's first row is after :attr:`now`, within its session windows, and its rows are those it
        would have had if it had been added at the start (a fast-forward of at most two checkpoints).
        """
        if not isinstance(item, str) or not item:
            raise ValueError(f"an item must be a non-empty string, got {item!r}")
        if item in self._streams:
            return
        name = split_item(item)[0]
        code, users = self._codes.get(name) or (Code(name, self.seed, self.volatility), 0)
        self._codes[name] = (code, users + 1)
        streams: list[_Stream] = [_BookStream(item, code, self._seq, self.seed, self.rate_hz, self._per_sec)]
        if session_windows(item, "0E"):
            streams.append(_AfterHoursStream(item, code, self._seq + 1, self.seed, self.rate_0e_hz, self._per_sec))
        self._seq += 2
        self._streams[item] = tuple(streams)
        k_now = math.floor(self._now * self._per_sec + 1e-9)
        for s in streams:
            k = s.position(k_now)
            if k >= 0:
                heapq.heappush(self._heap, (k, s.seq, s))

    def remove_item(self, item: str) -> None:
        """Stop simulating ``item`` and forget its state (a no-op for an item not added).

        Adding it again later resumes its deterministic stream at the market time of that call.
        """
        streams = self._streams.pop(item, None)
        if streams is None:
            return
        for s in streams:
            s.alive = False
        name = split_item(item)[0]
        code, users = self._codes[name]
        if users > 1:
            self._codes[name] = (code, users - 1)
        else:
            del self._codes[name]
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._streams) + 64:
            self._heap = [e for e in self._heap if e[2].alive]  # drop the entries of forgotten streams
            heapq.heapify(self._heap)

    def reference_price(self, item: str) -> int:
        """The previous close (기준가) of ``item``: the base of every price sign (PROTOCOL.md 2.0)."""
        return reference_price_of(item)

    def book(self, item: str) -> BookView:
        """The current 0D book of an added item (raises KeyError otherwise)."""
        stream = self._streams[item][0]
        assert isinstance(stream, _BookStream)
        b = stream.book
        ladder, ib, sp = b.code.ladder, b.ib, b.sp
        asks = tuple((ladder[ib + sp + i], b.aq[i]) for i in range(b.na))
        bids = tuple((ladder[ib - i], b.bq[i]) for i in range(b.nb))
        return BookView(item, b.code.reference, b.code.lower, b.code.upper, asks, bids, b.volume)

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
            if not stream.alive:
                continue
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
