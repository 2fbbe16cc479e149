"""The simulated order book of one item: explicit order events around an item-specific typical size.

Pure and deterministic: every random draw comes from the ``random.Random`` the caller passes. A :class:`Book`
is reseeded from scratch at each checkpoint (:meth:`Book.reseed`), so its state at any market time needs at
most one checkpoint interval of events to rebuild. Quantities are bounded by construction: a level never
holds more than :data:`LEVEL_CAP` times its typical size, and typical sizes are capped
(:data:`kiwoom_tape.replay.sim_code.MAX_TYPICAL`), so no level or total comes near 1e9 shares (docs/protocol.md
2.1 quantities; issue 11). The item's ladder, sizes and fair price, which the book chases, are its
:class:`kiwoom_tape.replay.sim_code.Code`.
"""

from __future__ import annotations

import random

from kiwoom_tape.replay.sim_calendar import hms, in_auction, nxt_thin, rate_factor, wide_spread_odds
from kiwoom_tape.replay.sim_code import Code

__all__ = ["LEVEL_CAP", "Book"]

LEVEL_CAP = 6.0
"""A level holds at most this many times its typical size (a hard bound, not a soft pull)."""

_T0900, _T1520 = hms(9), hms(15, 20)

_KRX, _NXT, _SOR = "KRX", "NXT", "SOR"


class Book:
    """A 10-level book as positional quantities: asks at ladder ``ib + sp + i``, bids at ``ib - i``.

    Every change is an order event: an order added to a level (or inside the spread), cancelled from a
    level (or the best level pulled, widening the spread), or filled at the touch (adding to
    :attr:`volume`; the step's trade, at most one, is :attr:`fill`, issue 13). The mid chases the code's
    fair price one tick per update. Quantities revert to ``typical(i)`` (the touch thinner than deeper
    levels) and stay in ``[1, LEVEL_CAP * typical(i)]``.
    """

    __slots__ = (
        "aq",
        "auction",
        "bq",
        "budget",
        "carry",
        "code",
        "da",
        "db",
        "exq",
        "fill",
        "fill_hi",
        "fill_lo",
        "ib",
        "na",
        "nb",
        "scale",
        "shape",
        "sp",
        "venue",
        "volume",
    )

    def __init__(self, code: Code, venue: str) -> None:
        self.code = code
        self.venue = venue
        self.ib = -1
        self.sp = 1
        self.aq = [0] * 10
        self.bq = [0] * 10
        self.na = self.nb = 0
        self.da = self.db = 10
        self.scale: float = code.typical * (0.12 if venue == _NXT else (1.08 if venue == _SOR else 1.0))
        self.exq = 0
        self.auction = False
        self.volume = 0
        self.budget = 0
        self.shape = (0, 0, 0, 0)
        # Trades (issue 13, replay/sim_trades.py): the fill of the last step, (ladder index, shares, +1 buy at
        # the ask / -1 sell at the bid); a print owed at the next step (shares, side); the ladder indices where
        # fills may print (the stream sets them after each reseed: an empty range means no fills).
        self.fill: tuple[int, int, int] | None = None
        self.carry = (0, 0)
        self.fill_lo, self.fill_hi = 0, len(code.ladder) - 1

    def typical(self, i: int, t: float) -> float:
        """The typical size of level ``i`` (0 = the touch): 0.45x the item's size at the touch, 1.2x from level 6."""
        thin = self.venue == _NXT and nxt_thin(t)
        return self.scale * (0.45 + 0.15 * min(i, 5)) * (1.6 if thin else 1.0)

    def _fresh(self, rng: random.Random, i: int, t: float) -> int:
        typ = self.typical(i, t)
        return max(1, min(int(LEVEL_CAP * typ), int(typ * rng.lognormvariate(0.0, 0.5))))

    def reseed(self, rng: random.Random, t: float, checkpoint: float, interval: float, shape: int) -> None:
        """Draw a whole book for market time ``t`` from ``rng`` (the checkpoint's stream), as if long settled.

        ``checkpoint`` and ``interval`` bound the fills: FID 13 stays below the next checkpoint's base volume.
        ``shape`` (64 random bits of the interval) draws the spread: see :meth:`draw_shape`.
        """
        code = self.code
        self.draw_shape(shape, t)
        if self.venue == _NXT:
            lo, hi = (3, 6) if nxt_thin(t) else (7, 10)
            self.da, self.db = rng.randint(lo, hi), rng.randint(lo, hi)
        self.aq = [0] * 10
        self.bq = [0] * 10
        self._normalize(rng, t)
        self.volume = code.base_volume(checkpoint, self.venue)
        self.budget = max(self.volume, code.base_volume(checkpoint + interval, self.venue) - 1)
        self.auction = self.venue != _NXT and in_auction(t)
        since = (t - _T0900 + 600) if t < _T0900 else (t - _T1520)
        self.exq = int(code.typical * (1.0 + 0.8 * since / 60.0) * rng.lognormvariate(0.0, 0.3)) + 1

    def draw_shape(self, bits: int, t: float) -> None:
        """The touch at ``t`` (the fair price) and the spread, drawn from 48 of ``bits``, then clamped.

        No ``random.Random``: the prints of a whole day (replay/sim_trades.py) redraw every interval's touch.
        """
        self.ib = max(-1, min(len(self.code.ladder) - 1, self.code.target(t)))
        p = wide_spread_odds(self.code.liquid, self.venue, t)
        sp = 1
        while sp < 5 and ((bits >> (12 * sp)) & 0xFFF) < p * 4096.0:
            sp += 1
        self.sp = sp
        self._clamp_shape()

    def touch_index(self, side: int) -> int | None:
        """The ladder index of the best ask (``side`` +1) or best bid (-1), None when that side is empty."""
        if side > 0:
            return self.ib + self.sp if self.na else None
        return self.ib if self.nb else None

    def _spread_draw(self, rng: random.Random, t: float) -> int:
        p = wide_spread_odds(self.code.liquid, self.venue, t)
        sp = 1
        while sp < 5 and rng.random() < p:
            sp += 1
        return sp

    def _normalize(self, rng: random.Random, t: float) -> None:
        """Levels 1..n non-empty and the rest empty, n = min(depth, levels left inside the band)."""
        self._clamp_shape()
        na, nb = self.na, self.nb
        aq, bq = self.aq, self.bq
        for i in range(10):
            if i < na:
                if not aq[i]:
                    aq[i] = self._fresh(rng, i, t)
            else:
                aq[i] = 0
            if i < nb:
                if not bq[i]:
                    bq[i] = self._fresh(rng, i, t)
            else:
                bq[i] = 0
        self.shape = (self.ib, self.sp, na, nb)

    def _clamp_shape(self) -> None:
        n_ladder = len(self.code.ladder)
        if self.ib < 0 or self.ib >= n_ladder - 1:
            self.sp = 1
        else:
            self.sp = max(1, min(self.sp, n_ladder - 1 - self.ib))
        self.na = max(0, min(self.da, n_ladder - self.ib - self.sp))
        self.nb = max(0, min(self.db, self.ib + 1))

    def _may_fill(self, idx: int) -> bool:
        return self.fill is None and self.fill_lo <= idx <= self.fill_hi

    def step(self, rng: random.Random, t: float) -> None:
        """One update at market time ``t``: the shape may move, a trade may take part of the touch (:attr:`fill`),
        then 1-3 other levels change by an order event."""
        code, aq, bq = self.code, self.aq, self.bq
        n_ladder = len(code.ladder)
        moved = False
        self.fill = None
        qty, side = self.carry
        if qty:  # the print owed since the reseed, at the touch as reseeded (replay/sim_trades.py)
            self.carry = (0, 0)
            self.volume += qty
            idx = self.touch_index(side)
            if idx is None:
                side = -side
                idx = self.touch_index(side)
            if idx is not None:
                self.fill = (idx, qty, side)
        if self.venue == _NXT:
            lo, hi = (3, 6) if nxt_thin(t) else (7, 10)
            r = rng.random()
            da = self.da + (1 if r < 0.04 else (-1 if r < 0.08 else 0))
            db = self.db + (1 if 0.08 <= r < 0.12 else (-1 if 0.12 <= r < 0.16 else 0))
            da, db = min(hi, max(lo, da)), min(hi, max(lo, db))
            if da != self.da or db != self.db:
                self.da, self.db, moved = da, db, True
            continuous = True
        else:
            self.auction = in_auction(t)
            continuous = not self.auction

        # Mid: chase the fair price one tick per update (faster when far), plus a little noise.
        gap = code.target(t) - self.ib
        r = rng.random()
        ib = self.ib
        if gap:
            if r < (0.3 if -3 < gap < 3 else 0.9):
                self._move(rng, t, gap > 0, continuous)
                moved = True
        elif r < 0.02:
            up = r < 0.01
            if (up and self.ib < n_ladder - 1) or (not up and self.ib > -1):
                self._move(rng, t, up, continuous)
                moved = True
        # Spread: now and then an order inside the spread, or the best level pulled (wider) unless the mid just
        # moved up: the touch moves at most one tick per update, so that a trade is within one tick of the book
        # of the row before it (issue 13).
        if rng.random() < 0.08:
            want = self._spread_draw(rng, t)
            if want < self.sp and self.na and self.nb:
                self.sp -= 1  # a new best ask one tick inside the spread
                aq.insert(0, self._fresh(rng, 0, t) // 2 + 1)
                aq.pop()
                moved = True
            elif (want > self.sp and self.ib <= ib and self.nb and self.na > 1
                  and self.ib + self.sp + 1 < n_ladder):
                self.sp += 1  # the best ask cancelled
                del aq[0]
                aq.append(0)
                moved = True
        if moved:
            self._normalize(rng, t)

        done = self._trade(rng, t) if continuous else 0
        # Quantities: 1-3 order events on distinct levels (added or cancelled), not the level just traded.
        r = rng.random()
        for _ in range(1 if r < 0.6 else (2 if r < 0.9 else 3)):
            bid = (rng.random() < 0.5 and self.nb > 0) or not self.na
            arr, n = (bq, self.nb) if bid else (aq, self.na)
            if not n:
                break
            u = rng.random()
            i = int(u * u * n)
            bit = 1 << (i + (10 if bid else 0))
            if done & bit:
                continue
            done |= bit
            q = arr[i]
            typ = self.typical(i, t)
            ratio = q / typ
            if rng.random() < 1.0 / (1.0 + ratio * ratio):  # add: likelier when the level is thin
                q += max(1, int(typ * 0.2 * rng.expovariate(1.0)))
            else:  # cancel: a share of the level
                q -= max(1, int(q * 0.2 * rng.random()))
            q = max(1, min(int(LEVEL_CAP * typ), q))
            if q == arr[i]:
                q += 1 if q < LEVEL_CAP * typ - 1 else -1
            arr[i] = q
        if self.auction:
            self.exq += 1 + int(code.typical * 0.05 * rng.random())

    def _move(self, rng: random.Random, t: float, up: bool, continuous: bool) -> None:
        """Move the mid one tick: an order inside the spread, or the touch taken and re-quoted on the other side."""
        aq, bq = self.aq, self.bq
        if up:
            if self.sp > 1:
                self.sp -= 1
            elif self.na:
                if continuous:
                    self._take(self.ib + self.sp, aq[0], 1)
                del aq[0]
                aq.append(0)
            self.ib += 1
            bq.insert(0, self._fresh(rng, 0, t))
            bq.pop()
        elif self.sp > 1:
            self.sp -= 1  # a new best ask inside the spread; the best bid stays
            aq.insert(0, self._fresh(rng, 0, t))
            aq.pop()
        else:
            if self.nb:
                if continuous:
                    self._take(self.ib, bq[0], -1)
                del bq[0]
                bq.append(0)
            self.ib -= 1
            aq.insert(0, self._fresh(rng, 0, t))
            aq.pop()
        self.ib = max(-1, min(len(self.code.ladder) - 1, self.ib))

    def _trade(self, rng: random.Random, t: float) -> int:
        """A marketable order, half the updates: part of the touch traded (a buy at the best ask, a sell at
        the best bid). Returns the bit of the level it traded (0: none), which no other event then touches."""
        if self.fill is not None or self.volume >= self.budget or rng.random() >= 0.5:
            return 0
        buy = rng.random() < 0.5
        arr, n, idx = (self.aq, self.na, self.ib + self.sp) if buy else (self.bq, self.nb, self.ib)
        if not n or arr[0] < 2 or not self._may_fill(idx):
            return 0
        busy = rate_factor(self.venue, "0D", t)  # more, smaller trades when busy: the volume budget is per second
        size = max(1, int(self.typical(0, t) * 0.15 / busy * rng.expovariate(1.0)))
        fill = min(arr[0] - 1, size, self.budget - self.volume)
        arr[0] -= fill
        self.volume += fill
        self.fill = (idx, fill, 1 if buy else -1)
        return 1 if buy else 1 << 10

    def _take(self, idx: int, q: int, side: int) -> None:
        """The whole touch at ladder ``idx`` taken by a market order of ``side``: a trade if it may print."""
        fill = min(self.budget, self.volume + q) - self.volume
        if fill > 0 and self._may_fill(idx):
            self.volume += fill
            self.fill = (idx, fill, side)
