"""The simulated trades of one item: 0B 주식체결 rows (docs/protocol.md 2.3) printed by its order book.

Trades are the book's own fills (:mod:`kiwoom_tape.replay.sim_book`): a buy takes quantity at the best ask, a sell
at the best bid, at most one trade per book update, and the 0D row of the same tick shows the book after
it. Besides, each checkpoint interval of a stream (``kiwoom_tape.replay.sim_streams.CHECKPOINT`` seconds) opens with
a *print*: the volume the book's closed-form cumulative volume (``Code.base_volume``) added since the
previous interval, traded at the reseeded touch, which the stream shows in a 0D row of its own just before the
print (``BookStream.reveals``: the print is at the touch of the book a client has). So FID 13 rises by
exactly ``abs(FID 15)`` from one 0B row to the next and equals the 0D FID 13 of the same tick; the first
print of the day (09:00:00 for KRX and ``_AL``, 08:00:30 for ``_NX``) is the opening auction, and 16 is its
price.

Everything here is a function of (seed, item, market time), like the book: the prints of all intervals
so far are computed from their reseeds alone (one ``random.Random`` and a few draws each), and the
cumulative FIDs that would otherwise need the whole day's history are defined from them:

- 16/17/18: the first print, and the extremes of every print and fill so far. A fill may print only
  within the extremes of the prints up to the next interval's (:meth:`TradeTape.fill_range`), so the
  day's high and low are always prices that printed.
- 14 (백만원) and 620: the value of the volume between two prints is counted at the earlier print's price,
  so 14 never decreases and 620 = 14 x 1e6 / 13 (docs/protocol.md 2.3) is a mean of printed prices.
- 1031/1030: that volume split buy/sell by a closed-form share per print (0.4-0.6, with the price's
  direction); 228 = 1031 / 1030 x 100, 1032 = 1031 / 13 x 100, 1314 = 1031 - 1030.
- 290: 1 장전 시간외 (NXT before 08:50), 2 장중, 3 장후 시간외 (NXT from 15:30); 9081: 1 KRX/SOR, 2 NXT.

FIDs without a defined meaning here are ``""``, as in the official example (docs/protocol.md 6.5).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from kiwoom_tape.replay.sim_book import Book
from kiwoom_tape.replay.sim_code import Code
from kiwoom_tape.replay.sim_frames import SimRow, hhmmss, pct_text, signed_delta
from kiwoom_tape.replay.sim_references import seed_int
from kiwoom_tape.schemas.fields import FIELDS_0B
from kiwoom_tape.schemas.protocol import encode, encode_real_row

__all__ = ["Print", "Tally", "TradeTape", "row_head", "trade_row"]

_T0850, _T1530 = 8 * 3600 + 50 * 60, 15 * 3600 + 30 * 60
_EMPTY = {f.fid: "" for f in FIELDS_0B}


@dataclass(frozen=True, slots=True)
class Print:
    """The print that opens interval ``j``: at ladder index ``idx``, by ``side``, up to volume ``volume``."""

    j: int
    idx: int
    side: int
    volume: int
    value: int  # FID 14 x 1e6 at this print (won): see the module docstring
    buys: float  # FID 1031 at this print
    buy_share: float  # of the volume until the next print


def row_head(item: str) -> list[str]:
    """The text of an 0B row of ``item`` before and after its values (encoded once per item)."""
    return encode_real_row("0B", item, "\x00").split("\x00")


class TradeTape:
    """The prints of one item's day and its 0B rows; the owner (a ``BookStream``) gives the geometry.

    ``start_of(j)`` is ``(t, checkpoint)`` of interval ``j`` (None if it overlaps no window),
    ``prev_of(j)`` the previous interval that overlaps one, ``first`` the first of the day.
    """

    __slots__ = ("_cur", "_head", "_hi", "_js", "_lo", "_prints", "_scan", "_start_of", "book", "code", "hi", "item",
                 "lo", "seed", "venue")

    def __init__(self, item: str, venue: str, code: Code, seed: int, first: int | None,
                 start_of: Callable[[int], tuple[float, float] | None]) -> None:
        self.item = item
        self.venue = venue
        self.code = code
        self.seed = seed
        self.book = Book(code, venue)  # scratch book for the reseed draws of other intervals
        self._start_of = start_of
        self._prints: list[Print] = []
        self._js: list[int] = []  # the intervals of the prints
        self._lo: list[int] = []  # lowest / highest ladder index of the prints up to each
        self._hi: list[int] = []
        self._cur: Print | None = None  # the latest print at or before the interval entered last
        self._scan = (first, 0)  # next interval to look at, base volume at the last one looked at
        self._head = row_head(item)
        self.hi = self.lo = -1

    def _scan_to(self, j: int) -> None:
        """Compute the prints of every interval up to ``j`` (each interval's reseed draws, not its events)."""
        nxt, prev_base = self._scan
        code, venue, prints = self.code, self.venue, self._prints
        while nxt is not None and nxt <= j:
            geo = self._start_of(nxt)
            if geo is not None:
                t, cp = geo
                base = code.base_volume(cp, venue)
                if base > prev_base:
                    b = self.book
                    bits = seed_int(self.seed, "shape", self.item, nxt)  # as BookStream.reseed draws it
                    b.draw_shape(bits, t)
                    side = 1 if bits & 1 else -1
                    idx = b.touch_index(side)
                    if idx is None:
                        side = -side
                        idx = b.touch_index(side)
                    assert idx is not None  # a book in the band always has a side
                    price = code.ladder[idx]
                    if prints:
                        p = prints[-1]
                        value = p.value + (base - p.volume) * code.ladder[p.idx]
                        buys = p.buys + (base - p.volume) * p.buy_share
                        up = price - code.ladder[p.idx]
                    else:
                        value, buys, up = base * price, base * 0.5, 0
                    share = 0.5 + (0.1 if up > 0 else (-0.1 if up < 0 else 0.0))
                    prints.append(Print(nxt, idx, side, base, value, buys, share))
                    self._js.append(nxt)
                    self._lo.append(min(idx, self._lo[-1]) if self._lo else idx)
                    self._hi.append(max(idx, self._hi[-1]) if self._hi else idx)
                prev_base = base
            nxt += 1
        self._scan = (nxt, prev_base)

    def _at(self, j: int) -> int:
        """Index in ``_prints`` of the latest print at or before interval ``j`` (-1: none yet)."""
        self._scan_to(j)
        return bisect_right(self._js, j) - 1

    def print_of(self, j: int) -> Print | None:
        """The print that opens interval ``j``, or None (no volume since the previous interval)."""
        k = self._at(j)
        return self._prints[k] if k >= 0 and self._js[k] == j else None

    def _extremes(self, j: int) -> tuple[int, int]:
        """Lowest and highest ladder index printed by the prints up to interval ``j`` ((-1, -1): none)."""
        k = self._at(j)
        return (self._lo[k], self._hi[k]) if k >= 0 else (-1, -1)

    def enter(self, book: Book, j: int, volume_before: int) -> None:
        """After the book's reseed for interval ``j``: owe its print, bound its fills, reset the extremes."""
        pr = self.print_of(j)
        if pr is None:
            book.carry = (0, 0)
            book.fill_lo, book.fill_hi = 1, 0  # no volume in this interval: no fills
        else:
            book.carry = (max(0, book.volume - volume_before), pr.side)
            lo, hi = self._extremes(j + 1 if self.print_of(j + 1) is not None else j)
            book.fill_lo, book.fill_hi = lo, hi
        self.lo, self.hi = self._extremes(j)
        k = self._at(j)
        self._cur = self._prints[k] if k >= 0 else None

    def note(self, book: Book) -> None:
        """Follow the book's last update without a row (a fast-forward): the day's extremes."""
        if book.fill is not None:
            idx = book.fill[0]
            self.lo = idx if self.lo < 0 else min(self.lo, idx)
            self.hi = max(self.hi, idx)

    def row(self, book: Book, t: float) -> SimRow | None:
        """The 0B row of the book's last update (None when it traded nothing); call after every update."""
        fill = book.fill
        if fill is None:
            return None
        self.note(book)
        idx, qty, side = fill
        last = self._cur
        assert last is not None  # a fill prints only in an interval with a print, after it
        vol = book.volume
        value = last.value + (vol - last.volume) * self.code.ladder[last.idx]
        day = Tally(self._prints[0].idx, self.lo, self.hi, vol, value, last.buys + (vol - last.volume) * last.buy_share)
        ask, bid = book.touch_index(1), book.touch_index(-1)
        session = "2" if self.venue != "NXT" or _T0850 <= t < _T1530 else ("1" if t < _T0850 else "3")
        return trade_row(self.item, self.code, self._head, t, idx, qty if side > 0 else -qty, day, (ask, bid),
                         session, self.venue)

    def settled(self, j: int) -> Tally:
        """The day's trading up to the end of interval ``j`` when no fill can follow the last print (after
        15:20 for KRX and ``_AL``, a call auction): what the close continues from (replay/sim_close.py)."""
        k = self._at(j)
        assert k >= 0, "no trade before the close"  # KRX prints from 09:00
        p = self._prints[k]
        return Tally(self._prints[0].idx, self._lo[k], self._hi[k], p.volume, p.value, p.buys)


@dataclass(frozen=True, slots=True)
class Tally:
    """An item's trading so far, what each 0B row reports: the open, low and high (ladder indices), the
    cumulative volume (FID 13), value in won (FID 14 x 1e6) and buyer-initiated volume (FID 1031)."""

    open: int
    lo: int
    hi: int
    volume: int
    value: int
    buys: float


def trade_row(item: str, code: Code, head: list[str], t: float, idx: int, qty: int, day: Tally,
              touch: tuple[int | None, int | None], session: str, venue: str) -> SimRow:
    """The 0B row of a trade of ``qty`` shares (signed: + buyer-initiated) at ladder ``idx`` and time ``t``,
    ``day`` being the item's trading with it included (``head``: the row's text around its values, from
    :func:`row_head`); ``touch``: the ladder indices of the best ask and
    bid (None: that side empty), ``session``: FID 290 (docs/protocol.md 2.3)."""
    ladder, signed, ref = code.ladder, code.signed, code.reference
    vol = day.volume
    buys = int(day.buys)
    sells = vol - buys
    mil = day.value // 1_000_000
    price = ladder[idx]
    diff = price - ref
    d = dict(_EMPTY)
    d["20"] = hhmmss(t)
    d["10"] = signed[idx]
    d["11"] = signed_delta(diff)
    d["12"] = pct_text(diff * 100.0 / ref, True)
    ask, bid = touch
    d["27"] = "-0" if ask is None else signed[ask]
    d["28"] = "-0" if bid is None else signed[bid]
    d["15"] = f"{qty:+d}"
    d["13"] = str(vol)
    d["14"] = str(mil)
    d["16"] = signed[day.open]
    d["17"] = signed[day.hi]
    d["18"] = signed[day.lo]
    n = len(ladder)
    d["25"] = "1" if idx == n - 1 else ("4" if idx == 0 else ("2" if diff > 0 else ("5" if diff < 0 else "3")))
    d["228"] = pct_text(buys * 100.0 / sells, False) if sells else "0.00"
    d["290"] = session
    d["691"] = "0"
    d["567"] = d["568"] = "000000"
    d["1030"], d["1031"] = str(sells), str(buys)
    d["1032"] = pct_text(buys * 100.0 / vol, False)
    d["1313"] = str(price * abs(qty) // 1000)
    d["1315"], d["1316"] = (str(-qty), "0") if qty < 0 else ("0", str(qty))
    d["1314"] = signed_delta(buys - sells)
    d["620"] = str(round(mil * 1_000_000 / vol))
    d["9081"] = "2" if venue == "NXT" else "1"
    return SimRow(item, "0B", head[0] + encode(d) + head[1], d)
