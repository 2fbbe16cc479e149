"""Encoding the simulated book as 0D and 0E REAL rows (docs/protocol.md 1.7, 2.0-2.2): values and wire text.

Pure: a :class:`Row0D` keeps the previous row's values dict and rewrites only the FIDs that changed
(a full 163-key dict build costs ~10 us; this ~2), then encodes once with msgspec.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kiwoom_tape.replay.sim_book import Book
from kiwoom_tape.schemas.fields import FIELDS_0D, FIELDS_0E, Kind
from kiwoom_tape.schemas.protocol import encode, encode_real_row

__all__ = ["KEYS_0E", "Row0D", "SimRow", "hhmmss", "pct_text", "row_0e", "signed_delta", "template_0e"]


@dataclass(frozen=True, slots=True)
class SimRow:
    """One REAL row: ``text`` is ``encode_real_row(type, item, <values as compact JSON>)`` and
    ``values`` holds the same FID -> string pairs in wire order (docs/protocol.md 1.7), in a dict of its own
    (mutating it does not affect later rows)."""

    item: str
    type: str
    text: str
    values: dict[str, str]


KEYS_0D: tuple[str, ...] = tuple(f.fid for f in FIELDS_0D)
KEYS_0E: tuple[str, ...] = tuple(f.fid for f in FIELDS_0E)


def _fids(first: int) -> tuple[str, ...]:
    return tuple(str(first + n) for n in range(10))


# Level FIDs by position (docs/protocol.md 2.1): level n = base + n - 1.
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
    out["238"] = out["293"] = "3"  # 보합: no expected price (docs/protocol.md 2.0 sign codes)
    for fid in _AP + _BP:
        out[fid] = "-0"  # an empty level (docs/protocol.md 2.0)
    return out


_BASE_0D: dict[str, str] = _base_values_0d()
if tuple(_BASE_0D) != KEYS_0D or not set(_AP + _AQ + _AD + _BP + _BQ + _BD + _KA + _KB + _NA + _NB) <= set(KEYS_0D):
    raise RuntimeError("FIELDS_0D no longer matches the 0D layout of docs/protocol.md 2.1; update replay/sim_frames.py")


def signed_delta(x: int) -> str:
    """A signed delta: ``"+5"``, ``"-5"``, ``"0"`` (docs/protocol.md 2.0)."""
    return f"{x:+d}" if x else "0"


def pct_text(x: float, signed: bool) -> str:
    """A rate with two places (docs/protocol.md 2.0): ``"+1.25"`` when ``signed``, ``"-0.24"``, ``"0.00"``."""
    s = f"{abs(x):.2f}"
    if s == "0.00":
        return s
    if x < 0:
        return "-" + s
    return "+" + s if signed else s


def hhmmss(t: float) -> str:
    """FID 21: ``HHmmss`` of the whole second of market time ``t`` (docs/protocol.md 2.0)."""
    s = int(t + 1e-9)
    return f"{s // 3600 % 24:02d}{s // 60 % 60:02d}{s % 60:02d}"


def _row_template(real_type: str, item: str, keys: tuple[str, ...]) -> str:
    """A %-format template of the whole row text: ``encode_real_row`` around ``{"21":"%s",...}``."""
    head, tail = encode_real_row(real_type, item, "\x00").split("\x00")  # item is escaped, so \x00 is ours
    values = "{" + ",".join(f'"{k}":"%s"' for k in keys) + "}"
    return head.replace("%", "%%") + values + tail.replace("%", "%%")


def template_0e(item: str) -> str:
    """The %-template of ``item``'s 0E row text, for :func:`row_0e`."""
    return _row_template("0E", item, KEYS_0E)


def row_0e(template: str, item: str, t: float, totals: tuple[int, int], last: tuple[int, int]) -> SimRow:
    """A 0E row (docs/protocol.md 2.2): 21, the totals 131/135 and their signed deltas 132/136 vs the previous row."""
    (ask, bid), (last_ask, last_bid) = totals, last
    vals = (hhmmss(t), str(ask), signed_delta(ask - last_ask), str(bid), signed_delta(bid - last_bid))
    return SimRow(item, "0E", template % vals, dict(zip(KEYS_0E, vals, strict=True)))


class Row0D:
    """The 0D rows of one item: each row is the previous one with the changed FIDs rewritten.

    Contract of :meth:`row`: ``last_a``/``last_b`` are the quantities of the item's previous 0D row
    (positional, docs/protocol.md 2.1), the deltas 81-100/122/126 are the change from them; ``full`` rewrites
    every FID that depends on the book (after a reseed, a shape change or a fast-forward).
    """

    __slots__ = ("_d", "_head", "_nz", "_sec", "_sec_text", "_split_a", "_split_b", "item", "sor")

    def __init__(self, item: str, sor: bool, split_a: list[int], split_b: list[int]) -> None:
        self.item = item
        self.sor = sor
        self._head = encode_real_row("0D", item, "\x00").split("\x00")  # item is escaped: \x00 is ours
        self._d = dict(_BASE_0D)
        self._nz: list[int] = []  # positions (ask i, bid 10 + i) whose delta in the last row was not 0
        self._sec = -1
        self._sec_text = ""
        self._split_a, self._split_b = split_a, split_b  # NXT share (%) of each SOR level position

    def row(self, book: Book, last_a: list[int], last_b: list[int], full: bool, t: float, target: int) -> SimRow:
        aq, bq = book.aq, book.bq
        d = self._d  # rewritten in place: the row gets a copy
        s = int(t + 1e-9)
        if s != self._sec:
            self._sec = s
            self._sec_text = hhmmss(t)
        d["21"] = self._sec_text
        nz: list[int] = []
        code = book.code
        if full:
            ib, sp, signed = book.ib, book.sp, code.signed
            for i in range(10):
                q = aq[i]
                d[_AP[i]] = signed[ib + sp + i] if q else "-0"
                d[_AQ[i]] = str(q)
                x = q - last_a[i]
                d[_AD[i]] = f"{x:+d}" if x else "0"
                if x:
                    nz.append(i)
                q = bq[i]
                d[_BP[i]] = signed[ib - i] if q else "-0"
                d[_BQ[i]] = str(q)
                x = q - last_b[i]
                d[_BD[i]] = f"{x:+d}" if x else "0"
                if x:
                    nz.append(10 + i)
            changed: Iterable[int] = range(20)
        else:
            for p in self._nz:
                d[_AD[p] if p < 10 else _BD[p - 10]] = "0"
            for i in range(10):
                x = aq[i] - last_a[i]
                if x:
                    d[_AQ[i]] = str(aq[i])
                    d[_AD[i]] = f"{x:+d}"
                    nz.append(i)
                x = bq[i] - last_b[i]
                if x:
                    d[_BQ[i]] = str(bq[i])
                    d[_BD[i]] = f"{x:+d}"
                    nz.append(10 + i)
            changed = nz
        self._nz = nz

        # Totals and ratios (docs/protocol.md 2.1): 128 = 125 - 121, 138 = -128, 129/139 in % with 2 decimals.
        ta, tb = sum(aq), sum(bq)
        dta, dtb = ta - sum(last_a), tb - sum(last_b)
        net = tb - ta
        d["121"] = str(ta)
        d["122"] = f"{dta:+d}" if dta else "0"
        d["125"] = str(tb)
        d["126"] = f"{dtb:+d}" if dtb else "0"
        d["128"] = f"{net:+d}" if net else "0"
        d["138"] = f"{-net:+d}" if net else "0"
        d["129"] = f"{tb / ta * 100:.2f}" if ta else "0.00"
        d["139"] = f"{ta / tb * 100:.2f}" if tb else "0.00"
        d["13"] = str(book.volume) if book.volume else "0"
        if book.auction:
            self._auction_expected(d, book, target)
        elif full or d["23"] != "0":
            for fid in _AUCTION_FIDS:
                d[fid] = _BASE_0D[fid]
        if self.sor and (full or nz):
            self._split(d, book, changed)
        head, tail = self._head
        return SimRow(self.item, "0D", head + encode(d) + tail, d.copy())

    @staticmethod
    def _auction_expected(d: dict[str, str], book: Book, target: int) -> None:
        """23/24, 291/292 and their changes vs the reference during a KRX call auction (docs/protocol.md 2.1)."""
        code = book.code
        n_ladder = len(code.ladder)
        e = min(max(target, book.ib), book.ib + book.sp)  # inside the spread, on the fair price's side
        e = min(max(e, 0), n_ladder - 1)
        diff = code.ladder[e] - code.reference
        if e == n_ladder - 1:
            sign = "1"  # 상한가
        elif e == 0:
            sign = "4"  # 하한가
        else:
            sign = "2" if diff > 0 else ("5" if diff < 0 else "3")
        d["23"] = d["291"] = code.signed[e]
        d["24"] = d["292"] = str(book.exq)
        d["200"] = d["294"] = f"{diff:+d}" if diff else "0"
        d["201"] = d["295"] = pct_text(diff * 100.0 / code.reference, True)
        d["238"] = d["293"] = sign
        d["299"] = pct_text(book.exq * 100.0 / max(1, code.base_volume(15 * 3600, "KRX")), False)

    def _split(self, d: dict[str, str], book: Book, positions: Iterable[int]) -> None:
        """SOR (``_AL``) rows: each level's quantity split into its KRX and NXT parts (6044-6087)."""
        aq, bq, sa, sb = book.aq, book.bq, self._split_a, self._split_b
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
