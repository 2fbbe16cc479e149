"""The simulated KRX/NXT market: a deterministic, sans-I/O source of 0B, 0D and 0E REAL rows.

``replay --simulate`` and ``kiwoom-tape demo`` serve these rows through the mock server, so that a
client sees what the live server sends (docs/protocol.md 1.7, 2.0-2.2, 5.1-5.5) without credentials.
This module reads no clock, touches no socket or file and runs no event loop: the server driver
asks :meth:`SimulatedMarket.advance` for everything up to a market time of its choosing. The day's
calendar is :mod:`kiwoom_tape.replay.sim_calendar`, an item's ladder, sizes and fair price
:mod:`kiwoom_tape.replay.sim_code`, the book process :mod:`kiwoom_tape.replay.sim_book`, the row encoding
:mod:`kiwoom_tape.replay.sim_frames`, the streams :mod:`kiwoom_tape.replay.sim_streams`; this module is the market that
merges them.

What a driver can rely on (the acceptance invariants, tested in ``tests/test_simulator.py`` and
``tests/test_sim_day.py``):

- **Determinism.** An item's rows are a function of the seed, the market's parameters, the item and the
  market time only: whenever the item was added, and after :meth:`~SimulatedMarket.remove_item` then
  :meth:`~SimulatedMarket.add_item` again (it fast-forwards). Advancing in many small steps yields
  byte-identical rows to one big step. No ``hash()``, no wall clock.
- **Checkpoints.** Every (item, type) stream is reseeded from (seed, type, item, interval) every
  :data:`CHECKPOINT` (30) seconds of market time (:mod:`kiwoom_tape.replay.sim_streams`): the book is drawn afresh
  around the fair price, so the first row of an interval may change many levels at once; a 0D stream whose
  interval opens with a print sends that row at the interval's first tick, before any update (it shows the
  reseeded book and no trade), so that the print is at the touch of the book a client has. Adding an item
  replays at most two intervals of its events. Deltas are still vs the item's previous row (rebuilt from
  the previous active interval; if that one and the two before it had no row, the baseline is an empty
  book).
- **Time.** Market time is seconds since KST midnight. Updates are a Poisson process quantized up to
  the ``batch`` grid at ``rate_hz`` (0E: ``rate_0e_hz``) times :func:`kiwoom_tape.replay.sim_calendar.rate_factor`
  (x4 at 09:00, quieter at midday, thin NXT pre/after-market). A tick carries at most one row per
  (item, type). Time never goes backwards.
- **Schedule** (docs/protocol.md 5.3, half-open windows ``[start, end)``): KRX items (no suffix) and
  ``_AL`` items send 0D in 08:50:00-15:30:00 and 0E in 08:30:00-08:40:00 and 15:40:00-18:00:00;
  ``_NX`` items send 0D in 08:00:00-20:00:00 except the NXT halts 08:50:00-09:00:30 and
  15:20:00-15:30:00, and never 0E. Outside its windows an item is silent.
- **0D rows** (docs/protocol.md 2.1): all 163 FIDs of :data:`kiwoom_tape.schemas.fields.FIELDS_0D`, in that order,
  string values, compact JSON. Prices are on the tick grid (5 won for ETFs) and inside the +/-30 % band
  (docs/protocol.md 5.5), signed vs the reference price (docs/protocol.md 2.0). Asks ascend from level 1 and bids
  descend, one tick apart; best bid < best ask, the spread one tick or more (wider for thin items and
  just after the open). Non-empty levels form a prefix; the rest are empty: price ``"-0"``, qty ``"0"``
  (thin NXT pre/after-market books, and levels that would fall outside the band). Level quantities stay
  within :data:`kiwoom_tape.replay.sim_book.LEVEL_CAP` times their typical size (far below 1e9). Totals 121/125 are
  the level sums; the deltas 81-100 are positional vs the item's previous 0D row and sum to 122/126.
  128 = 125 - 121 and 138 = -128 (signed), 129 = 125/121*100 and 139 = 121/125*100 (2 decimals,
  ``"0.00"`` when the divisor is 0). 23/24 and 291/292 are non-zero only in the KRX auctions
  08:50-09:00 and 15:20-15:30 (KRX and ``_AL`` items), with 200/201/238/293-295/299 consistent.
  13 (cumulative volume, the fills at the touch) never decreases. LP fields 621-640 are ``"0"``;
  6044-6115 are ``"0"`` (6112/6115 ``"0.00"``) except that ``_AL`` items split their levels into KRX and
  NXT parts (6044-6087). 215/216 are ``""``.
- **0B rows** (docs/protocol.md 2.3, :mod:`kiwoom_tape.replay.sim_trades`): the book's trades, at most one per item per
  tick, just before the item's 0D row of the same tick, which shows the book after it: a buy at the best
  ask or a sell at the best bid (FID 15 signed by the aggressor), or a checkpoint interval's opening print
  (09:00:00 for KRX and ``_AL``: the opening auction) at the touch of the reseeded book's row sent before it.
  Every trade is within one tick of the touch of the item's 0D row before it in receive order (what
  ``kiwoom-tape verify`` checks): an update moves the touch a tick at most before its fill. FID 13 rises by
  ``abs(15)`` and equals the 0D FID 13; 16-18 are the day's open/high/low; 14, 620, 1030/1031, 228 follow
  docs/protocol.md 2.3's relations.
  KRX and ``_AL`` items trade 09:00-15:20 (and the 15:20 catch-up print); ``_NX`` items in their 0D windows.
- **The close** (docs/protocol.md 5.3, :mod:`kiwoom_tape.replay.sim_close`): KRX and ``_AL`` items print the closing
  auction at 15:30:00 (one trade at the closing price with the auction's volume, FID 290 ``2``) and fill at
  exactly that price 15:40-16:00 (FID 290 ``3``, at ``rate_hz`` x :data:`CLOSE_RATE`), with no 0D row; none
  16:00-18:00. FID 13 goes on from the last 0D FID 13 and rises by ``abs(15)``.
- **0E rows** (docs/protocol.md 2.2): 21, 131, 132, 135, 136; 132/136 are signed deltas vs the item's
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
from collections.abc import Iterable
from dataclasses import dataclass

from kiwoom_tape.replay.sim_calendar import (
    KRX_0D_WINDOWS,
    KRX_0E_WINDOWS,
    KRX_AUCTIONS,
    NXT_0D_WINDOWS,
    session_windows,
)
from kiwoom_tape.replay.sim_close import CloseStream
from kiwoom_tape.replay.sim_code import Code
from kiwoom_tape.replay.sim_frames import SimRow
from kiwoom_tape.replay.sim_references import DEFAULT_UNIVERSE, REFERENCE_PRICES, reference_price_of
from kiwoom_tape.replay.sim_streams import CHECKPOINT, AfterHoursStream, BookStream, Stream
from kiwoom_tape.schemas.market import split_item

__all__ = [
    "CHECKPOINT",
    "CLOSE_RATE",
    "DEFAULT_UNIVERSE",
    "KRX_0D_WINDOWS",
    "KRX_0E_WINDOWS",
    "KRX_AUCTIONS",
    "NXT_0D_WINDOWS",
    "REFERENCE_PRICES",
    "SIMULATED_TYPES",
    "BookView",
    "SimRow",
    "SimTick",
    "SimulatedMarket",
    "reference_price_of",
    "session_windows",
]

CLOSE_RATE = 0.25
"""The close-price fills of 15:40-16:00 (:mod:`kiwoom_tape.replay.sim_close`) come at this fraction of
``rate_hz``, per item."""
SIMULATED_TYPES: frozenset[str] = frozenset({"0B", "0D", "0E"})
"""The REAL types the simulated market makes rows of (the module docstring); it has no data of any other."""


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
        docs/protocol.md 2.1; :func:`kiwoom_tape.replay.sim_calendar.rate_factor` shapes the day). ``batch``: the tick
        grid in
        seconds, a divisor of one second. ``rate_0e_hz``: mean 0E updates per item per second (~0.2
        measured: docs/protocol.md 6.5 cites 119 0E frames over 08:30-08:40). ``volatility``: daily standard
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
        self._streams: dict[str, tuple[Stream, ...]] = {}
        self._heap: list[tuple[int, int, Stream]] = []
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
        book = BookStream(item, code, self._seq, self.seed, self.rate_hz, self._per_sec)
        streams: list[Stream] = [book]
        if session_windows(item, "0E"):
            streams.append(AfterHoursStream(item, code, self._seq + 1, self.seed, self.rate_0e_hz, self._per_sec))
        if session_windows(item, "close"):
            rate = self.rate_hz * CLOSE_RATE
            streams.append(CloseStream(item, code, self._seq + 2, self.seed, rate, self._per_sec, book.tape))
        self._seq += 3
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
        """The previous close (기준가) of ``item``: the base of every price sign (docs/protocol.md 2.0)."""
        return reference_price_of(item)

    def book(self, item: str) -> BookView:
        """The current 0D book of an added item (raises KeyError otherwise)."""
        stream = self._streams[item][0]
        assert isinstance(stream, BookStream)
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
            row = stream.emit(k)
            if stream.trade is not None:  # the 0B row of a book update, before the 0D row that shows it
                rows.append(stream.trade)
            rows.append(row)
            nk = stream.next_k()
            if nk >= 0:
                heapq.heappush(heap, (nk, seq, stream))
        if rows:
            out.append(SimTick(cur / per_sec, tuple(rows)))
        return out
