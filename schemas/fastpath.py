"""The typed fast path: a well-formed REAL frame of 0D/0E (or 0B) rows, read straight from its bytes.

PERF-LIMITS.md sections 1-2: msgspec decodes a Struct whose fields come in the wire's key order about
3x faster than a dict, and parses integers in C once the "+" signs are gone (neither msgspec nor
Arrow casts accept them). Two typed decodes of one frame: the bytes with every "+" deleted give the
integer FIDs; the bytes as received give every text-like value exactly (time, rates, text, item).
Everything the careful path would read differently is refused before or after decoding, and the
frame then takes the general path (``decode_server_message`` and :meth:`_RealTableBuilder.append`),
so the rows are the same either way; tests/test_normalize.py checks that on mutated frames.
"""

from __future__ import annotations

import math
import re
import struct
import sys
from array import array
from collections.abc import Callable, Collection, Sequence
from operator import itemgetter
from typing import Any, Final

import msgspec
from kiwoom_tape.schemas.columnar import _plan
from kiwoom_tape.schemas.fields import FIELDS_0B, FIELDS_0D, FIELDS_0E, FieldSpec, Kind
from msgspec.structs import astuple

__all__ = ["ParsedRow", "read_real_frame"]

_INT_KINDS: Final = frozenset({Kind.PRICE, Kind.QTY, Kind.SIGNED, Kind.CODE})
_TOP_BYTE: Final = 7 if sys.byteorder == "little" else 0
_ROW_KEY_E: Final = sum(k.count("e") for k in ("values", "type", "name", "item"))
"""Letters "e" in the keys of one row: with the values' own, the only ones a frame may hold."""


class ParsedRow:
    """One row of :func:`read_real_frame`: the integer FIDs packed as the builders' buffers hold them.

    ``nums`` is the prices (int32, with the wire's sign: the builder takes ``abs`` when it flushes),
    then the quantities and signed values (int64), then the codes (int8), each checked to fit its
    column; the rest is text.
    """

    __slots__ = ("item", "nums", "pct", "table", "texts", "times")

    def __init__(self, table: str, item: str, nums: bytes, pct: array[float], times: tuple[str, ...],
                 texts: list[str | None]) -> None:
        self.table = table
        self.item = item
        self.nums = nums
        self.pct = pct
        self.times = times
        self.texts = texts


def _getter(positions: Sequence[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """``itemgetter`` that always returns a tuple (also for zero or one position)."""
    if not positions:
        return lambda t: ()
    if len(positions) == 1:
        i = positions[0]
        return lambda t: (t[i],)
    return itemgetter(*positions)


class _FastTable:
    """The msgspec types of one field table for :func:`read_real_frame`, and where each value goes."""

    def __init__(self, fields: tuple[FieldSpec, ...], table: str, tag: str) -> None:
        self.table = table
        p = _plan(fields)
        nums = msgspec.defstruct(
            f"_Nums{tag}",
            [(f"f{f.fid}", int if f.kind in _INT_KINDS else str, msgspec.field(name=f.fid)) for f in fields],
            gc=False,
        )
        text_like = [f for f in fields if f.kind not in _INT_KINDS]
        strs = msgspec.defstruct(
            f"_Strs{tag}", [(f"f{f.fid}", str, msgspec.field(name=f.fid)) for f in text_like], gc=False
        )
        self.tag = tag
        row_nums = msgspec.defstruct(
            f"_NumRow{tag}", [("values", nums), ("type", str), ("name", str), ("item", str)], gc=False
        )
        row_strs = msgspec.defstruct(
            f"_StrRow{tag}", [("values", strs), ("type", str), ("name", str), ("item", str)], gc=False
        )
        frame_nums = msgspec.defstruct(f"_NumFrame{tag}", [("data", list[row_nums]), ("trnm", str)], gc=False)  # type: ignore[valid-type]
        frame_strs = msgspec.defstruct(f"_StrFrame{tag}", [("data", list[row_strs]), ("trnm", str)], gc=False)  # type: ignore[valid-type]
        # lax: "-20800" -> -20800; the frames are msgspec Structs made at run time, hence Any
        self.read_nums: Callable[[bytes], Any] = msgspec.json.Decoder(frame_nums, strict=False).decode
        self.read_strs: Callable[[bytes], Any] = msgspec.json.Decoder(frame_strs).decode
        at = {f.fid: i for i, f in enumerate(fields)}
        at_text = {f.fid: i for i, f in enumerate(text_like)}
        by_kind = {k: [f.fid for f in p.num_specs if f.kind is k] for k in Kind}
        # every integer FID, in the builders' order: prices, quantities, signed values, codes
        ints = by_kind[Kind.PRICE] + by_kind[Kind.QTY] + by_kind[Kind.SIGNED] + by_kind[Kind.CODE]
        self.ints = _getter([at[fid] for fid in ints])
        self.pack = struct.Struct(f"={p.n_price}i{p.n_int}q{p.n_code}b").pack  # raises struct.error out of range
        self.price_end = p.price_end
        self.int_end = p.int_end
        # the top byte of every quantity's int64 (>= 0x80: negative)
        self.qty_tops = slice(self.price_end + _TOP_BYTE, self.price_end + 8 * p.n_qty, 8)
        self.pct = _getter([at_text[fid] for fid in by_kind[Kind.PCT]])
        self.times = _getter([at_text[fid] for fid in p.time_keys])
        self.texts = _getter([at_text[fid] for fid in p.text_keys])


_FAST_0D: Final = _FastTable(FIELDS_0D, "orderbook", "0D")
_FAST_0E: Final = _FastTable(FIELDS_0E, "afterhours", "0E")
_FAST_0B: Final = _FastTable(FIELDS_0B, "trades", "0B")
_FAST: Final = {"0D": _FAST_0D, "0E": _FAST_0E, "0B": _FAST_0B}
_I32_MIN: Final = -(1 << 31)
_find_plus_minus: Final = re.compile(rb"\+-").search
"""``b"+-" in data``, 2.5x faster on a 2 KB frame full of "+" (re scans for the literal with memchr)."""


def _count(data: bytes, char: bytes) -> int:
    return len(data) - len(data.replace(char, b""))  # faster than bytes.count for one byte


def read_real_frame(data: bytes, types: Collection[str] = ("0D", "0E")) -> list[ParsedRow] | None:
    """The rows of a REAL frame of rows of one of ``types`` that are all well-formed, read fast; else None.

    ``types`` are tried in order (the first is the common case); each is "0D", "0E" or "0B" (KeyError
    otherwise). 0B rows have ``table == "trades"``: callers that store them pass ``types`` with "0B".

    None means "use the general path": :func:`kiwoom_tape.schemas.protocol.decode_server_message` and
    :meth:`OrderbookBuilder.append` (or the builder of the row's table), which give, for a frame this
    function reads, exactly the rows it returns (what :meth:`OrderbookBuilder.append_parsed` stores).
    Never raises for any ``data``. A frame is read here when, besides being a valid REAL envelope of rows with
    every FID present once as a string: no backslash escape; every ``+`` starts a value and is
    followed by a digit; integer FIDs are plain ``[+-]digits`` within their column type (no ``.``,
    exponent, leading zero, space; quantities not negative); rates are plain decimals.
    """
    if b"\\" in data:
        return None
    stripped = data.replace(b"+", b"")
    n_plus = len(data) - len(stripped)
    if n_plus and (data.count(b'":"+') != n_plus or _find_plus_minus(data) is not None):
        return None
    for t in [_FAST[k] for k in types]:  # a frame of one type: 0D nearly always (a mixed frame is rare)
        try:
            texts = t.read_strs(data)
            nums = t.read_nums(stripped)
            break
        except (msgspec.MsgspecError, ValueError, RecursionError):
            continue
    else:
        return None
    if texts.trnm != "REAL" or not texts.data or len(texts.data) != len(nums.data):
        return None
    # An integer value with a "." or an exponent would be read differently: every ".", "e" and "E" of the
    # frame must be in the text-like values, the keys of the rows, "REAL" and the "0E" tags.
    words = [texts.trnm]
    tag = t.tag
    rows: list[ParsedRow] = []
    for r_txt, r_num in zip(texts.data, nums.data, strict=True):
        if r_txt.type != tag:
            return None
        tv = astuple(r_txt.values)
        words.append(r_txt.item)
        words.append(r_txt.name)
        words.append(tag)
        words.extend(tv)
        try:
            nums = t.pack(*t.ints(astuple(r_num.values)))
        except struct.error:  # out of its column's range
            return None
        if _I32_MIN in memoryview(nums)[: t.price_end].cast("i") or not nums[t.qty_tops].isascii():
            return None  # abs() would overflow; a quantity is negative
        pcts = t.pct(tv)
        if pcts:
            sp = "".join(pcts)
            if not sp.isascii() or "_" in sp or sp.lower() != sp.upper():
                return None
            try:
                pct = array("d", map(float, pcts))
            except ValueError:
                return None
            if not math.isfinite(sum(pct)):
                return None
        else:
            pct = array("d")
        rows.append(ParsedRow(t.table, r_txt.item, nums, pct, t.times(tv), list(t.texts(tv))))
    joined = "".join(words)
    if (
        _count(stripped, b".") != joined.count(".")
        or _count(stripped, b"e") != joined.count("e") + _ROW_KEY_E * len(rows)
        or _count(stripped, b"E") != joined.count("E")
    ):
        return None
    return rows


# --- frames and events -----------------------------------------------------------------------------
