"""The update streams of the simulated market: one per (item, type), reseeded at every checkpoint.

A stream knows when its item updates (a Poisson process shaped by :mod:`kiwoom_tape.replay.sim_calendar`, inside the
item's windows) and holds its state (a :class:`kiwoom_tape.replay.sim_book.Book` for 0D, two totals for 0E). Its
random stream and its state are reseeded from (seed, type, item, interval) every :data:`CHECKPOINT`
seconds of market time, so :meth:`Stream.position` can bring a new stream to any time with bounded work.
"""

from __future__ import annotations

import math
import random

from kiwoom_tape.replay.sim_book import Book
from kiwoom_tape.replay.sim_calendar import rate_factor, session_windows
from kiwoom_tape.replay.sim_code import Code
from kiwoom_tape.replay.sim_frames import Row0D, SimRow, row_0e, template_0e
from kiwoom_tape.replay.sim_references import seed_int
from kiwoom_tape.replay.sim_trades import TradeTape
from kiwoom_tape.schemas.market import split_item

__all__ = ["CHECKPOINT", "AfterHoursStream", "BookStream", "Stream"]

CHECKPOINT = 30
"""Seconds of market time between two reseeds of a stream (a fast-forward replays at most two of them)."""




class Stream:
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
        "reveal_k",
        "rng",
        "seed",
        "seq",
        "tc",
        "trade",
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
        self.trade: SimRow | None = None  # a row of another type that :meth:`emit` made in the same tick
        self.reveal_k = -1  # the tick of a row owed that shows the reseeded state (see :meth:`reveals`), or -1

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

    def reveals(self) -> bool:
        """Whether the state just reseeded must be shown by a row of its own, at the interval's first tick and
        before any update (:meth:`emit` and :meth:`apply` at :attr:`reveal_k` make or follow it)."""
        return False

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

    def start_of(self, j: int) -> tuple[float, float] | None:
        """``(first market time, checkpoint)`` of interval ``j``, or None if it overlaps no window."""
        if self._first_interval(j) != j:
            return None
        k0 = j * self._k
        start = next((max(k0, ka) for ka, kb in self.windows if kb > k0), k0)
        return start / self.per_sec, k0 / self.per_sec

    def _enter(self, j: int) -> None:
        geo = self.start_of(j)
        assert geo is not None, j  # only intervals that overlap a window are entered
        self.c = j
        self.rng = random.Random(seed_int(self.seed, self.type, self.item, j))
        self.tc = geo[0]
        self.reseed(geo[0], geo[1])
        self.full = True
        self.reveal_k = round(geo[0] * self.per_sec) if self.reveals() else -1

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
            if self.reveal_k >= 0:
                return self.reveal_k
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
        p = p0 = self._prev_interval(j)
        for _ in range(3):
            if p is None:
                break
            self._enter(p)
            self.last_k = p * self._k - 1
            got = self.reveal_k >= 0
            if got:
                self.last_k = self.reveal_k
                self.apply(self.reveal_k)
            while (k := self._draw()) is not None:
                self.last_k = k
                self.apply(k)
                got = True
            if got:
                break
            p = self._prev_interval(p)
        if p0 is not None and self.c != p0:
            self._enter(p0)  # silent: its reseed is the state the running stream had before ``j``
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


class BookStream(Stream):
    """0D: a :class:`kiwoom_tape.replay.sim_book.Book` and its rows (:class:`kiwoom_tape.replay.sim_frames.Row0D`).

    The book's trades come out as :attr:`trade`, the 0B row of the same update (:mod:`kiwoom_tape.replay.sim_trades`).
    """

    __slots__ = ("book", "last_a", "last_b", "out", "shape", "tape")

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
        self.tape = TradeTape(item, self.venue, code, seed, self._first_interval(0), self.start_of)

    def reseed(self, t: float, checkpoint: float) -> None:
        book = self.book
        before = book.volume
        book.reseed(self.rng, t, checkpoint, float(CHECKPOINT), seed_int(self.seed, "shape", self.item, self.c))
        self.tape.enter(book, self.c, before)
        book.volume -= book.carry[0]  # not traded until the print (Book.step): the reseed's row shows FID 13 so

    def reveals(self) -> bool:
        """An interval that opens with a print first sends the reseeded book, so that the print is at the touch
        of the book a client has (issue 13: verify's touch check, in receive order)."""
        return self.book.carry[0] > 0

    def clear_last(self) -> None:
        self.last_a = [0] * 10
        self.last_b = [0] * 10

    def apply(self, k: int) -> None:
        book = self.book
        if k == self.reveal_k:
            self.reveal_k = -1  # the reseeded book's row: no update
        else:
            book.step(self.rng, k / self.per_sec)
            self.tape.note(book)
        self.last_a, self.last_b = book.aq[:], book.bq[:]

    def emit(self, k: int) -> SimRow:
        t = k / self.per_sec
        book = self.book
        if k == self.reveal_k:
            self.reveal_k = -1  # the reseeded book as it is, before the update that prints
            self.trade = None
        else:
            book.step(self.rng, t)
            self.trade = self.tape.row(book, t)
        full = self.full or book.shape != self.shape
        row = self.out.row(book, self.last_a, self.last_b, full, t, self.code.target(t) if book.auction else 0)
        self.last_a, self.last_b = book.aq[:], book.bq[:]
        self.shape = book.shape
        self.full = False
        return row


class AfterHoursStream(Stream):
    """0E: the 시간외 ask/bid totals (docs/protocol.md 2.2); the bid total is 0 in the 08:30-08:40 window."""

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
