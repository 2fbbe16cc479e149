"""The typed fast path: a well-formed REAL frame of 0D/0E/0B rows, mixed with rows of any type, read from its bytes.

PERF-LIMITS.md sections 1-2: msgspec decodes a Struct whose fields come in the wire's key order about
3x faster than a dict, and parses integers in C once the "+" signs are gone (neither msgspec nor
Arrow casts accept them). One decode of the frame gives each row's ``type``, ``name``, ``item`` and the
exact bytes of its ``values`` (docs/protocol.md 1.7: rows of several types share a frame); then two typed
decodes of each row's values by its type's table: the bytes with every "+" deleted give the integer FIDs,
the bytes as received every text-like value exactly (time, rates, text). A row of a type without a table
is only checked to be what the general path accepts (a flat object of strings here). Everything the careful
path would read differently is refused before or after decoding, and the frame then takes the general path
(``decode_server_message`` and :meth:`_RealTableBuilder.append`), so the rows are the same either way;
tests/test_fastpath.py checks that on simulated, mixed and mutated frames.
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
from kiwoom_tape.schemas.tables import TABLE_OF_TYPE
from msgspec.structs import astuple

__all__ = ["TABLE_TYPES", "ParsedRow", "read_real_frame"]

TABLE_TYPES: Final = tuple(TABLE_OF_TYPE)
"""The types with a table, most frequent first (0D, 0E, 0B): what :func:`read_real_frame` reads by default."""
_INT_KINDS: Final = frozenset({Kind.PRICE, Kind.QTY, Kind.SIGNED, Kind.CODE})
_TOP_BYTE: Final = 7 if sys.byteorder == "little" else 0
_ROW_KEY_E: Final = sum(k.count("e") for k in ("values", "type", "name", "item"))
"""Letters "e" in the keys of one row: with the values' own, the only ones a frame may hold."""


class ParsedRow:
    """One row of :func:`read_real_frame`: the integer FIDs packed as the builders' buffers hold them.

    ``nums`` is the prices (int32, with the wire's sign: the builder takes ``abs`` when it flushes),
    then the quantities and signed values (int64), then the codes (int8), each checked to fit its
    column; ``pct`` the rates; ``valid`` one byte per numeric FID in the builders' order (0: the wire
    sent ``""``, stored as NULL, docs/protocol.md 2.0); the rest is text. A row of a type without a
    table here has ``table`` None and nothing else.
    """

    __slots__ = ("item", "nums", "pct", "table", "texts", "times", "valid")

    def __init__(self, table: str | None, item: str, nums: bytes, pct: array[float], times: tuple[str, ...],
                 texts: list[str | None], valid: bytes) -> None:
        self.table = table
        self.item = item
        self.nums = nums
        self.pct = pct
        self.times = times
        self.texts = texts
        self.valid = valid


def _getter(positions: Sequence[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """``itemgetter`` that always returns a tuple (also for zero or one position)."""
    if not positions:
        return lambda t: ()
    if len(positions) == 1:
        i = positions[0]
        return lambda t: (t[i],)
    return itemgetter(*positions)


class _FastTable:
    """The msgspec types of one field table's ``values`` for :func:`read_real_frame`, and where each value goes."""

    def __init__(self, fields: tuple[FieldSpec, ...], table: str, tag: str) -> None:
        self.table = table
        self.tag = tag
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
        every = msgspec.defstruct(
            f"_Every{tag}", [(f"f{f.fid}", str, msgspec.field(name=f.fid)) for f in fields], gc=False
        )
        # lax: "-20800" -> -20800; the values are msgspec Structs made at run time, hence Any
        self.read_nums: Callable[[bytes], Any] = msgspec.json.Decoder(nums, strict=False).decode
        self.read_strs: Callable[[bytes], Any] = msgspec.json.Decoder(strs).decode
        self.read_every: Callable[[bytes], Any] = msgspec.json.Decoder(every).decode
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
        # where each of ``ints`` and of the rates is in the builders' validity pattern (price, qty, signed, pct, code)
        self.int_slots = (*range(p.n_price + p.n_int), *range(p.n_price + p.n_int + p.n_pct, p.n_num))
        self.pct_base = p.n_price + p.n_int
        self.ones = p.ones
        self.pct = _getter([at_text[fid] for fid in by_kind[Kind.PCT]])
        self.times = _getter([at_text[fid] for fid in p.time_keys])
        self.texts = _getter([at_text[fid] for fid in p.text_keys])


class _Row(msgspec.Struct, gc=False):
    """A row as the wire orders it (docs/protocol.md 1.7), its ``values`` left as their exact bytes."""

    values: msgspec.Raw
    type: str
    name: str
    item: str


class _Frame(msgspec.Struct, gc=False):
    data: list[_Row]
    trnm: str


_read_frame: Final = msgspec.json.Decoder(_Frame).decode
_read_other: Final = msgspec.json.Decoder(dict[str, str]).decode
_FAST: Final = {t.tag: t for t in (_FastTable(FIELDS_0D, "orderbook", "0D"), _FastTable(FIELDS_0E, "afterhours", "0E"),
                                    _FastTable(FIELDS_0B, "trades", "0B"))}
_I32_MIN: Final = -(1 << 31)
_find_plus_minus: Final = re.compile(rb"\+-").search
"""``b"+-" in data``, 2.5x faster on a 2 KB frame full of "+" (re scans for the literal with memchr)."""
_NO_PCT: Final = array("d")


def _with_empty(t: _FastTable, raw: bytes, n_plus: int) -> tuple[tuple[int, ...], bytes]:
    """The integer FIDs of a row whose ``values`` hold ``""`` for some of them (0B rows do), and its validity.

    An empty integer value is NULL without a flag (:func:`kiwoom_tape.schemas.normalize.read_value`): it is
    read as 0 with its validity byte 0. Raises ValueError if no integer FID is empty (the row is
    malformed some other way), msgspec errors as the decoders do.
    """
    if b'""' not in raw:
        raise ValueError("no empty value")
    empty = [i for i, x in enumerate(t.ints(astuple(t.read_every(raw)))) if not x]
    if not empty:
        raise ValueError("no empty integer value")
    filled = raw.replace(b'""', b'"0"')  # before "+" goes: a lone "+" stays invalid
    ints: tuple[int, ...] = t.ints(astuple(t.read_nums(filled.replace(b"+", b"") if n_plus else filled)))
    valid = bytearray(t.ones)
    for i in empty:
        valid[t.int_slots[i]] = 0
    return ints, bytes(valid)


def _count(data: bytes, char: bytes) -> int:
    return len(data) - len(data.replace(char, b""))  # faster than bytes.count for one byte


def read_real_frame(data: bytes, types: Collection[str] = TABLE_TYPES) -> list[ParsedRow] | None:
    """The rows of a REAL frame whose rows are all well-formed, read fast; else None.

    Rows of ``types`` (each "0D", "0E" or "0B": KeyError otherwise) are read into their table's
    buffers (``table`` is the row's table); rows of any other type, in any mix with them (docs/protocol.md
    1.7: Kiwoom packs rows of several types into one frame), have ``table`` None: what the store keeps
    of them is the frame's text (their ``values`` must then be a flat object of strings).

    None means "use the general path": :func:`kiwoom_tape.schemas.protocol.decode_server_message` and
    :meth:`OrderbookBuilder.append` (or the builder of the row's table), which give, for a frame this
    function reads, exactly the rows it returns (what :meth:`OrderbookBuilder.append_parsed` stores).
    Never raises for any ``data``. A frame is read here when, besides being a valid REAL envelope of rows with
    every FID present once as a string: no backslash escape; every ``+`` starts a value and is
    followed by a digit; integer FIDs are plain ``[+-]digits`` within their column type (no ``.``,
    exponent, leading zero, space; quantities not negative) or ``""``; rates are plain decimals or ``""``
    (``""`` is NULL without a flag, docs/protocol.md 2.0).
    """
    if b"\\" in data:
        return None
    n_plus = _count(data, b"+")
    if n_plus and (data.count(b'":"+') != n_plus or _find_plus_minus(data) is not None):
        return None
    try:
        frame = _read_frame(data)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    if frame.trnm != "REAL" or not frame.data:
        return None
    # An integer value with a "." or an exponent would be read differently: every ".", "e" and "E" of the
    # frame must be in the text-like values, the keys of the rows, "REAL" and the rows' type tags.
    words = [frame.trnm]
    rows: list[ParsedRow] = []
    tables = _FAST if types == TABLE_TYPES else {k: _FAST[k] for k in types}
    try:
        for r in frame.data:
            words.append(r.item)
            words.append(r.name)
            words.append(r.type)
            t = tables.get(r.type)
            if t is None:  # a type without a table here: only its text is kept, as the general path does
                other = _read_other(r.values)
                words.extend(other)
                words.extend(other.values())
                rows.append(ParsedRow(None, r.item, b"", _NO_PCT, (), [], b""))
                continue
            raw = bytes(r.values)
            tv = astuple(t.read_strs(raw))
            words.extend(tv)
            valid = t.ones
            try:
                ints = t.ints(astuple(t.read_nums(raw.replace(b"+", b"") if n_plus else raw)))
            except msgspec.ValidationError:
                ints, valid = _with_empty(t, raw, n_plus)
            nums = t.pack(*ints)
            if _I32_MIN in memoryview(nums)[: t.price_end].cast("i") or not nums[t.qty_tops].isascii():
                return None  # abs() would overflow; a quantity is negative
            pcts = t.pct(tv)
            if pcts:
                if "" in pcts:  # NULL, as the general path reads it
                    v = bytearray(valid)
                    for m, x in enumerate(pcts):
                        if not x:
                            v[t.pct_base + m] = 0
                    valid = bytes(v)
                    pcts = tuple(x or "0" for x in pcts)
                sp = "".join(pcts)
                if not sp.isascii() or "_" in sp or sp.lower() != sp.upper():
                    return None
                pct = array("d", map(float, pcts))
                if not math.isfinite(sum(pct)):
                    return None
            else:
                pct = _NO_PCT
            rows.append(ParsedRow(t.table, r.item, nums, pct, t.times(tv), list(t.texts(tv)), valid))
    except (msgspec.MsgspecError, ValueError, RecursionError, struct.error):  # struct.error: out of range
        return None
    joined = "".join(words)
    if (
        _count(data, b".") != joined.count(".")
        or _count(data, b"e") != joined.count("e") + _ROW_KEY_E * len(rows)
        or _count(data, b"E") != joined.count("E")
    ):
        return None
    return rows


# --- frames and events -----------------------------------------------------------------------------
