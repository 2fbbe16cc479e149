"""The simulated close of a KRX (or ``_AL``) item: its 0B rows after the continuous session (docs/protocol.md 5.3).

At 15:30:00 the closing call auction (15:20-15:30) prints one trade: at the closing price, the fair
price at 15:29:59 (``Code.target``, the price the auction's 0D rows show as expected, FID 23, up to
the spread), with the auction's volume, FID 290 ``2`` (장중: the auction ends the regular session).
From 15:40 to 16:00 the 장후 시간외 종가 session fills orders at exactly that price (about one a
second at the live rate), FID 290 ``3``; each trade is signed + or - at even odds (a closing auction
has no aggressor). From 16:00 nothing (the 16:00-18:00 단일가 fills are not pushed). No 0D row goes
with them (KRX 0D stops at 15:30), so 27/28 are ``"-0"``, as for an empty book side.

The rows continue the item's day (:class:`kiwoom_tape.replay.sim_trades.TradeTape`): FID 13 goes on from the 0D
FID 13 of the end of the continuous session (nothing trades in the 15:20-15:30 auction before its
print) and rises by exactly ``abs(FID 15)``; 14, 16-18, 228, 620 and 1030-1032 go on from the same
tally. Everything is a function of (seed, item, market time): an interval's trades are drawn from its
own reseed, and the tally at its start from the auction print and the trades of the intervals before
it (at most 41 of them, computed once per item, and only once the close is reached).
"""

from __future__ import annotations

import math
import random

from kiwoom_tape.replay.sim_calendar import hms
from kiwoom_tape.replay.sim_code import Code
from kiwoom_tape.replay.sim_frames import SimRow
from kiwoom_tape.replay.sim_references import seed_int
from kiwoom_tape.replay.sim_streams import CHECKPOINT, Stream
from kiwoom_tape.replay.sim_trades import Tally, TradeTape, row_head, trade_row

__all__ = ["CloseStream"]

_T1530, _T1540 = hms(15, 30), hms(15, 40)
_J_AUCTION_LAST = _T1530 // CHECKPOINT - 1
"""The last checkpoint interval of the closing auction (15:29:30): the day's continuous trading is settled by then."""


class CloseStream(Stream):
    """The closing trades of one KRX or ``_AL`` item (see the module docstring), on the :class:`Stream` schedule
    of :data:`kiwoom_tape.replay.sim_calendar.KRX_CLOSE_WINDOWS`. ``tape``: the item's continuous trades (its
    ``BookStream``'s)."""

    __slots__ = ("_events", "_i", "_price", "_starts", "_tally", "head", "tape")

    def __init__(
        self, item: str, code: Code, seq: int, seed: int, rate: float, per_sec: float, tape: TradeTape
    ) -> None:
        super().__init__(item, code, "close", seq, seed, rate, per_sec)
        self.tape = tape
        self.head = row_head(item)
        self._price = -1
        self._events: list[tuple[int, int]] = []  # the current interval's (tick, signed qty)
        self._i = 0  # the next of them
        self._starts: dict[int, Tally] = {}  # interval -> the tally at its start
        self._tally: Tally | None = None

    @property
    def price(self) -> int:
        """The closing price, a ladder index: every trade of this stream is at it (read when first needed,
        so that adding an item costs nothing here before the close)."""
        if self._price < 0:
            self._price = max(0, min(len(self.code.ladder) - 1, self.code.target(_T1530 - 1)))
        return self._price

    # -- the events, a function of (seed, item, interval)

    def _draw_events(self, j: int) -> list[tuple[int, int]]:
        """The trades of interval ``j`` as (tick, signed qty), from its own reseed (not the stream's rng)."""
        rng = random.Random(seed_int(self.seed, self.type, self.item, j))
        geo = self.start_of(j)
        if geo is None:
            return []
        t0 = geo[0]
        ps = self.per_sec
        if t0 < _T1540:  # the closing auction's print
            typical = self.code.typical
            qty = max(1, int(typical * 9.0 * rng.lognormvariate(0.0, 0.3)))  # as the auction's FID 24 grows to
            return [(math.ceil(t0 * ps - 1e-9), qty if rng.random() < 0.5 else -qty)]
        end = min((j + 1) * CHECKPOINT, hms(16))
        out: list[tuple[int, int]] = []
        k_end = math.ceil(end * ps - 1e-9)
        tc, last = t0, -1
        size = max(1.0, self.code.typical * 0.1)
        while True:
            tc += rng.expovariate(self.rate)
            k = max(last + 1, math.ceil(tc * ps - 1e-9))
            if k >= k_end:
                return out
            qty = max(1, int(size * rng.expovariate(1.0)))
            out.append((k, qty if rng.random() < 0.5 else -qty))
            last = k

    def _start(self, j: int) -> Tally:
        """The tally at the start of interval ``j``: the continuous session's, plus every close trade before ``j``."""
        got = self._starts.get(j)
        if got is not None:
            return got
        prev = self._prev_interval(j)
        if prev is None:
            tally = self.tape.settled(_J_AUCTION_LAST)
        else:
            tally = self._start(prev)
            for _, qty in self._draw_events(prev):
                tally = self._traded(tally, qty)
        self._starts[j] = tally
        return tally

    def _traded(self, tally: Tally, qty: int) -> Tally:
        """``tally`` after a trade of ``qty`` (signed) at the closing price."""
        n = abs(qty)
        return Tally(tally.open, min(tally.lo, self.price), max(tally.hi, self.price), tally.volume + n,
                     tally.value + n * self.code.ladder[self.price], tally.buys + (n if qty > 0 else 0))

    # -- the Stream hooks

    def reseed(self, t: float, checkpoint: float) -> None:
        self._events = self._draw_events(self.c)
        self._i = 0
        self._tally = None  # read at the first trade: entering the close interval ahead of time costs nothing

    def clear_last(self) -> None:
        """Nothing: a trade row has no deltas vs a previous row."""

    def _draw(self) -> int | None:
        events, i = self._events, self._i
        while i < len(events) and events[i][0] <= self.last_k:
            i += 1
        self._i = i
        return events[i][0] if i < len(events) else None

    def _take(self, k: int) -> tuple[int, Tally]:
        events = self._events
        while self._i < len(events) and events[self._i][0] < k:
            self._i += 1
        assert self._i < len(events) and events[self._i][0] == k, (self.item, k)
        qty = events[self._i][1]
        self._i += 1
        self._tally = self._traded(self._start(self.c) if self._tally is None else self._tally, qty)
        return qty, self._tally

    def apply(self, k: int) -> None:
        self._take(k)

    def emit(self, k: int) -> SimRow:
        qty, tally = self._take(k)
        t = k / self.per_sec
        session = "2" if t < _T1540 else "3"
        return trade_row(self.item, self.code, self.head, t, self.price, qty, tally, (None, None), session, self.venue)
