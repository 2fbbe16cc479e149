"""Normalization: REAL rows and session events -> columnar builders -> Arrow record batches.

This is the recorder's hot path (PERF-LIMITS.md section 2). A builder accumulates rows into compact
typed buffers (``array.array`` and ``bytearray``, row-major per type, never lists of dicts) and
:meth:`flush` turns them into one :class:`pyarrow.RecordBatch` of exactly the table's schema in
:mod:`schemas.tables`, then starts over. After ``flush()`` the builder is empty and reusable; the batch
it returned owns its memory.

A 0D row as it comes off the wire (PROTOCOL.md 6.1, trimmed)::

    {"type": "0D", "name": "주식호가잔량", "item": "005930",
     "values": {"21": "165207", "41": "-20800", "61": "82", "81": "0", "51": "-20700", ...,
                "126": "+1062126", "129": "114.51", "238": "3", "215": "", ...}}

    OrderbookBuilder().append(recv_ns, run_id, frame_seq, row_idx, row.item, row.values)

How each wire value is read (PROTOCOL.md 2.0; :func:`read_value` is the reference):

- Strings are ``strip()``-ed first. ``""`` means "not applicable" and is NULL with no flag, except for
  ``time`` where it is invalid.
- ``price``: ``abs(int)``; the sign means "vs the reference price". ``"-0"``, ``""`` and 0 are NULL
  (an empty book level is ``"-0"``; a zero price means nothing).
- ``qty``: unsigned digits, a ``+`` tolerated, ``"-0"`` is 0; a negative quantity is invalid.
- ``signed``: ``[+-]digits``. ``code``: ``[+-]digits`` within int8. ``pct``: a finite decimal.
- ``time``: 6 ASCII digits ``HHmmss`` (a valid time of day), combined with the KST date of the receive
  time (PROTOCOL.md 5.4; nothing trades across midnight KST).
- ``text``: verbatim.
- Only ASCII digits count; no underscores, exponents, ``nan`` or ``inf``. A value out of the column
  type's range is invalid.
- Not a string: an ``int`` is taken as the number, an integral ``float`` as its integer (any finite
  float for ``pct``), a number as ``str()`` for ``text``; anything else is invalid.

``flags`` of a row: :data:`FLAG_MISSING` if a FID of the table is absent from ``values`` or is
JSON ``null``; :data:`FLAG_INVALID` if a value could not be read (stored NULL). Keys that are not FIDs of
the table are ignored. :meth:`OrderbookBuilder.append` never raises because of ``values``, whatever the
dict holds.

Speed: a row whose numeric values are all well-formed strings is parsed with a few C-level passes
(``map(int, ...)`` into a typed array); a row with missing keys is as fast; a row with anything unusual
takes a careful per-field path with the same results.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import struct
import sys
from array import array
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from operator import is_not, itemgetter
from typing import Any, Final

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from msgspec.structs import astuple

from schemas.fields import FIELDS_0D, FIELDS_0E, FieldSpec, Kind
from schemas.market import split_item
from schemas.tables import (
    AFTERHOURS,
    EVENT_KINDS,
    EVENTS,
    FLAG_INVALID,
    FLAG_MISSING,
    FRAMES,
    ORDERBOOK,
    arrow_type_of,
    redact_login,
)

__all__ = [
    "FLAG_INVALID",
    "FLAG_MISSING",
    "AfterhoursBuilder",
    "Builder",
    "EventBuilder",
    "FrameBuilder",
    "OrderbookBuilder",
    "builder_for",
    "detail_json",
    "kst_midnight_epoch_s",
    "read_real_frame",
    "read_value",
]

_I64_MIN: Final = -(1 << 63)
_I64_MAX: Final = (1 << 63) - 1
_I32_MAX: Final = (1 << 31) - 1
_I16_MAX: Final = (1 << 15) - 1
_I8_MIN: Final = -(1 << 7)
_I8_MAX: Final = (1 << 7) - 1
_KST_OFFSET_S: Final = 9 * 3600
_DAY_S: Final = 86_400
_NS: Final = 1_000_000_000

for _code, _size in (("b", 1), ("h", 2), ("i", 4), ("q", 8), ("d", 8)):
    if array(_code).itemsize != _size:  # pragma: no cover - every platform CPython supports
        raise ImportError(f"array type {_code!r} is not {_size} bytes on this platform")

_ABSENT: Final = "".join(("\t", "0"))
"""What the fast path reads for a missing key: parses as 0, and is recognized by identity (``is``).

Made at run time so that it is an object of its own: no decoded value is ever this very object."""

_INT_RE: Final = re.compile(r"[+-]?[0-9]+")
_DEC_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def kst_midnight_epoch_s(recv_ns: int) -> int:
    """UTC epoch seconds of 00:00 KST on the KST date of ``recv_ns`` (same date as ``kst_date_of_ns``)."""
    return ((recv_ns // _NS + _KST_OFFSET_S) // _DAY_S) * _DAY_S - _KST_OFFSET_S


# --- per-value reading (the reference semantics; the fast path must agree with it) ---------------------


def _int_of(v: object) -> int | None:
    """An integer from a wire value, or None if it is not one (see the module docstring)."""
    if isinstance(v, str):
        s = v.strip()
        if not _INT_RE.fullmatch(s):
            return None
        try:
            return int(s)
        except ValueError:  # more digits than int() accepts (sys.get_int_max_str_digits)
            return None
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _read_price(v: object) -> tuple[int | None, int]:
    if isinstance(v, str) and not v.strip():
        return None, 0
    n = _int_of(v)
    if n is None:
        return None, FLAG_INVALID
    n = abs(n)
    if n > _I32_MAX:
        return None, FLAG_INVALID
    return (n or None), 0


def _read_ranged(v: object, lo: int, hi: int) -> tuple[int | None, int]:
    if isinstance(v, str) and not v.strip():
        return None, 0
    n = _int_of(v)
    if n is None or not lo <= n <= hi:
        return None, FLAG_INVALID
    return n, 0


def _read_qty(v: object) -> tuple[int | None, int]:
    return _read_ranged(v, 0, _I64_MAX)


def _read_signed(v: object) -> tuple[int | None, int]:
    return _read_ranged(v, _I64_MIN, _I64_MAX)


def _read_code(v: object) -> tuple[int | None, int]:
    return _read_ranged(v, _I8_MIN, _I8_MAX)


def _read_pct(v: object) -> tuple[float | None, int]:
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None, 0
        if not _DEC_RE.fullmatch(s):
            return None, FLAG_INVALID
        f = float(s)
    elif isinstance(v, bool):
        return None, FLAG_INVALID
    elif isinstance(v, int):
        try:
            f = float(v)
        except OverflowError:
            return None, FLAG_INVALID
    elif isinstance(v, float):
        f = v
    else:
        return None, FLAG_INVALID
    return (f, 0) if math.isfinite(f) else (None, FLAG_INVALID)


def _read_time(v: object) -> tuple[int | None, int]:
    """Seconds since midnight from ``HHmmss`` (a 6-digit string, or an int 0..235959)."""
    if isinstance(v, str):
        s = v.strip()
        if len(s) != 6 or not s.isascii() or not s.isdigit():
            return None, FLAG_INVALID
        n = int(s)
    elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 235959:
        n = v
    else:
        return None, FLAG_INVALID
    hh, rest = divmod(n, 10000)
    mm, ss = divmod(rest, 100)
    if hh > 23 or mm > 59 or ss > 59:
        return None, FLAG_INVALID
    return hh * 3600 + mm * 60 + ss, 0


def _read_text(v: object) -> tuple[str | None, int]:
    if isinstance(v, str):
        return v, 0
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v), 0
    return None, FLAG_INVALID


_READERS: dict[Kind, Callable[[object], tuple[Any, int]]] = {
    Kind.TIME: _read_time,
    Kind.PRICE: _read_price,
    Kind.QTY: _read_qty,
    Kind.SIGNED: _read_signed,
    Kind.PCT: _read_pct,
    Kind.CODE: _read_code,
    Kind.TEXT: _read_text,
}


def read_value(kind: Kind, raw: object) -> tuple[Any, int]:
    """How one wire value of ``kind`` is stored: ``(value or None, flag bits)``.

    ``raw`` is ``values.get(fid)``, so None means missing: ``(None, FLAG_MISSING)``. For ``time`` the
    value is seconds since midnight KST (the builders add the date). Never raises.
    ``read_value(Kind.PRICE, "-20800") == (20800, 0)``; ``read_value(Kind.PRICE, "-0") == (None, 0)``.
    """
    if raw is None:
        return None, FLAG_MISSING
    return _READERS[kind](raw)


# --- the normalized tables (orderbook, afterhours) ---------------------------------------------------

_NUM_KINDS: Final = (Kind.PRICE, Kind.QTY, Kind.SIGNED, Kind.PCT, Kind.CODE)
"""Numeric kinds, in the order of the row-major buffers."""


class _Plan:
    """Precomputed layout of one field table: which FID goes to which buffer and position."""

    def __init__(self, fields: tuple[FieldSpec, ...]) -> None:
        by_kind = {k: [f for f in fields if f.kind is k] for k in Kind}
        self.num_specs: tuple[FieldSpec, ...] = tuple(f for k in _NUM_KINDS for f in by_kind[k])
        self.num_keys: tuple[str, ...] = tuple(f.fid for f in self.num_specs)
        self.num_readers = tuple(_READERS[f.kind] for f in self.num_specs)
        self.n_price = len(by_kind[Kind.PRICE])
        self.n_qty = len(by_kind[Kind.QTY])
        self.n_int = self.n_qty + len(by_kind[Kind.SIGNED])  # qty then signed, both int64
        self.n_pct = len(by_kind[Kind.PCT])
        self.n_code = len(by_kind[Kind.CODE])
        self.n_num = len(self.num_keys)
        self.time_keys: tuple[str, ...] = tuple(f.fid for f in by_kind[Kind.TIME])
        self.text_keys: tuple[str, ...] = tuple(f.fid for f in by_kind[Kind.TEXT])
        self.ones = b"\x01" * self.n_num
        self.absent = (_ABSENT,) * self.n_num
        # Output: per FieldSpec in the table's column order, (spec, Arrow type, buffer name, column index).
        where: dict[str, tuple[str, int]] = {}
        for kind, buf, base in (
            (Kind.PRICE, "price", 0),
            (Kind.QTY, "int", 0),
            (Kind.SIGNED, "int", self.n_qty),
            (Kind.PCT, "pct", 0),
            (Kind.CODE, "code", 0),
            (Kind.TIME, "time", 0),
            (Kind.TEXT, "text", 0),
        ):
            for j, f in enumerate(by_kind[kind]):
                where[f.fid] = (buf, base + j)
        self.order: tuple[tuple[FieldSpec, pa.DataType, str, int], ...] = tuple(
            (f, arrow_type_of(f.kind), where[f.fid][0], where[f.fid][1]) for f in fields
        )


@cache
def _plan(fields: tuple[FieldSpec, ...]) -> _Plan:
    return _Plan(fields)


def _raw(a: array[Any]) -> memoryview:
    """The bytes of an array, without a copy (what ``array.frombytes`` takes)."""
    return memoryview(a).cast("B")


def _u8_bitmap(valid: bytes | bytearray, n: int) -> pa.Buffer | None:
    """An Arrow validity bitmap from one byte per row (1 = valid), or None when all are valid."""
    if 0 not in valid:
        return None
    u8 = pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(valid)])
    buf: pa.Buffer = pc.not_equal(u8, 0).buffers()[1]
    return buf


def _strings(values: Sequence[str | None]) -> pa.Array:
    return pa.array(values, type=pa.string())


class _RealTableBuilder:
    """Shared by :class:`OrderbookBuilder` and :class:`AfterhoursBuilder`; see the module docstring."""

    _fields: tuple[FieldSpec, ...] = ()
    _schema: pa.Schema

    def __init__(self) -> None:
        self._p = _plan(self._fields)
        self._items: dict[str, tuple[str, str]] = {}
        self._last_missing: tuple[tuple[int, ...], bytes] | None = None
        self._reset()

    def _reset(self) -> None:
        # New objects (never cleared in place): the last batch may still reference the old memory.
        self._recv = array("q")
        self._fseq = array("q")
        self._ridx = array("h")
        self._run: list[str] = []
        self._item: list[str] = []
        self._code: list[str] = []
        self._venue: list[str] = []
        self._price = array("i")
        self._int = array("q")
        self._pct = array("d")
        self._cd = array("b")
        self._valid = bytearray()
        self._time = array("q")
        self._tvalid = bytearray()
        self._text: list[list[str | None]] = [[] for _ in self._p.text_keys]
        self._flags = array("i")

    def __len__(self) -> int:
        return len(self._flags)

    @property
    def nbytes(self) -> int:
        """An estimate of the memory held by the buffered rows (for rolling on size)."""
        n = len(self._flags)
        return (
            self._price.itemsize * len(self._price)
            + 8 * (len(self._int) + len(self._pct) + len(self._time))
            + len(self._cd)
            + len(self._valid)
            + n * (8 + 8 + 2 + 4 + 48)
        )

    def _missing_pattern(self, allv: tuple[Any, ...], tabs: int) -> bytes:
        """One validity byte per numeric FID: 0 where ``allv`` holds :data:`_ABSENT` (the key is missing).

        Live rows of one item tend to miss the same keys, so the last pattern is tried first: it holds
        if its missing positions are all ``_ABSENT`` and no other value has a tab (each ``_ABSENT`` has one).
        """
        last = self._last_missing
        if last is not None:
            positions, vpat = last
            if len(positions) == tabs and all(allv[i] is _ABSENT for i in positions):
                return vpat
        vpat = bytes(map(is_not, allv, self._p.absent))
        positions = tuple(i for i, ok in enumerate(vpat) if not ok)
        if positions:
            self._last_missing = (positions, vpat)
        return vpat

    def _numeric_fast(
        self, allv: tuple[Any, ...], joined: str
    ) -> tuple[array[int], array[int], array[float], array[int]] | None:
        """Parse well-formed strings with C-level passes; None if anything is unusual."""
        p = self._p
        if not joined.isascii() or "_" in joined:
            return None
        a = p.n_price
        b = a + p.n_qty
        c = a + p.n_int
        d = c + p.n_pct
        if p.n_qty and "-" in "".join(allv[a:b]):
            return None
        if p.n_pct:
            sp = "".join(allv[c:d])
            if sp.lower() != sp.upper():  # letters: exponents, nan, inf
                return None
        try:
            price = array("i", map(abs, map(int, allv[:a])))
            ints = array("q", map(int, allv[a:c]))
            pct = array("d", map(float, allv[c:d]))
            code = array("b", map(int, allv[d:]))
        except (ValueError, OverflowError):
            return None
        if pct and not math.isfinite(sum(pct)):
            return None
        return price, ints, pct, code

    def _numeric_slow(
        self, values: Mapping[Any, Any]
    ) -> tuple[array[int], array[int], array[float], array[int], bytes, int]:
        p = self._p
        get = values.get
        out: list[Any] = []
        valid = bytearray(p.n_num)
        flags = 0
        for i, (key, reader) in enumerate(zip(p.num_keys, p.num_readers, strict=True)):
            raw = get(key)
            if raw is None:
                flags |= FLAG_MISSING
                out.append(0)
                continue
            v, f = reader(raw)
            flags |= f
            if v is None:
                out.append(0)
            else:
                out.append(v)
                valid[i] = 1
        a = p.n_price
        c = a + p.n_int
        d = c + p.n_pct
        return (
            array("i", out[:a]),
            array("q", out[a:c]),
            array("d", out[c:d]),
            array("b", out[d:]),
            bytes(valid),
            flags,
        )

    def append(self, recv_ns: int, run_id: str, frame_seq: int, row_idx: int, item: str, values: dict[str, Any]) -> int:
        """Add one REAL data row; returns its ``flags`` (0 = clean).

        ``recv_ns`` is the frame's receive time (``time.time_ns()``), ``frame_seq`` its ``frames.seq``,
        ``row_idx`` the row's index in the frame's ``data`` (0..32767, else ValueError), ``item`` the row's
        ``item`` as received. Never raises because of ``values`` (see the module docstring).
        """
        if not 0 <= row_idx <= _I16_MAX:
            raise ValueError(f"row_idx {row_idx} out of range 0..{_I16_MAX}")
        keys = array("q", (recv_ns, frame_seq))  # raises before any buffer is touched
        flags = 0
        if type(values) is not dict:
            if isinstance(values, Mapping):
                values = dict(values)
            else:
                values, flags = {}, FLAG_INVALID
        p = self._p
        get = values.get
        allv: tuple[Any, ...] = tuple(map(get, p.num_keys, p.absent))
        vpat = p.ones
        parsed = None
        try:
            joined = "".join(allv)
        except TypeError:  # JSON nulls, or values that are not strings: the careful path
            joined = ""
        if "\t" in joined:  # maybe missing keys: find them by identity with _ABSENT
            vpat = self._missing_pattern(allv, joined.count("\t"))
            if 0 in vpat:
                flags |= FLAG_MISSING
        if joined:
            parsed = self._numeric_fast(allv, joined)
        if parsed is None:
            price, ints, pct, code, vpat, f = self._numeric_slow(values)
            flags |= f
        else:
            price, ints, pct, code = parsed

        times = array("q")
        tvalid = bytearray()
        if p.time_keys:
            base = kst_midnight_epoch_s(recv_ns)
            for key in p.time_keys:
                secs, f = read_value(Kind.TIME, get(key))
                flags |= f
                times.append(0 if secs is None else base + secs)
                tvalid.append(secs is not None)
        texts: list[str | None] = list(map(get, p.text_keys))
        if not all(type(t) is str for t in texts):
            for i, raw in enumerate(texts):
                texts[i], f = read_value(Kind.TEXT, raw)
                flags |= f
        self._commit(keys, row_idx, run_id, item, _raw(price), _raw(ints), pct, _raw(code), vpat, times, tvalid, texts,
                     flags)
        return flags

    def append_parsed(self, recv_ns: int, run_id: str, frame_seq: int, row_idx: int, row: ParsedRow) -> int:
        """Add one row of :func:`read_real_frame`; the same result as :meth:`append` of the row's ``values``.

        Returns its ``flags`` (0, or :data:`FLAG_INVALID` for an invalid quote time). ValueError as
        :meth:`append` for a bad ``row_idx``.
        """
        if not 0 <= row_idx <= _I16_MAX:
            raise ValueError(f"row_idx {row_idx} out of range 0..{_I16_MAX}")
        keys = array("q", (recv_ns, frame_seq))
        flags = 0
        times = array("q")
        tvalid = bytearray()
        if row.times:
            base = kst_midnight_epoch_s(recv_ns)
            for raw in row.times:
                secs, f = _read_time(raw)
                flags |= f
                times.append(0 if secs is None else base + secs)
                tvalid.append(secs is not None)
        t = _FAST_0D if row.table == "orderbook" else _FAST_0E
        nums = memoryview(row.nums)
        self._commit(keys, row_idx, run_id, row.item, nums[: t.price_end], nums[t.price_end : t.int_end], row.pct,
                     nums[t.int_end :], self._p.ones, times, tvalid, row.texts, flags)
        return flags

    def _commit(
        self,
        keys: array[int],
        row_idx: int,
        run_id: str,
        item: str,
        price: memoryview,
        ints: memoryview,
        pct: array[float],
        code: memoryview,
        vpat: bytes,
        times: array[int],
        tvalid: bytearray,
        texts: Sequence[str | None],
        flags: int,
    ) -> None:
        """Append one checked row to every buffer (the numbers as the bytes of their buffer). Nothing here can fail."""
        cv = self._items.get(item)
        if cv is None:
            if len(self._items) >= 4096:
                self._items.clear()
            cv = self._items[item] = split_item(item)
        self._recv.append(keys[0])
        self._fseq.append(keys[1])
        self._ridx.append(row_idx)
        self._run.append(run_id)
        self._item.append(item)
        self._code.append(cv[0])
        self._venue.append(cv[1])
        self._price.frombytes(price)
        self._int.frombytes(ints)
        self._pct += pct
        self._cd.frombytes(code)
        self._valid += vpat
        self._time += times
        self._tvalid += tvalid
        for col, s in zip(self._text, texts, strict=True):
            col.append(s)
        self._flags.append(flags)

    def flush(self) -> pa.RecordBatch:
        """The buffered rows as one batch of the table's schema (maybe empty); the builder starts over."""
        p = self._p
        n = len(self._flags)
        nt = len(p.time_keys)
        a = p.n_price
        c = a + p.n_int
        d = c + p.n_pct
        # buffer name -> (row-major data, row width, offset of its first column in self._valid)
        bufs: dict[str, tuple[array[Any], int, int]] = {
            "int": (self._int, p.n_int, a),
            "pct": (self._pct, p.n_pct, c),
            "code": (self._cd, p.n_code, d),
        }
        cols: list[pa.Array] = [
            pa.Array.from_buffers(pa.timestamp("ns", tz="UTC"), n, [None, pa.py_buffer(self._recv)]),
            _strings(self._run),
            pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(self._fseq)]),
            pa.Array.from_buffers(pa.int16(), n, [None, pa.py_buffer(self._ridx)]),
            _strings(self._item),
            _strings(self._code),
            _strings(self._venue),
        ]
        for _spec, typ, buf, j in p.order:
            if buf == "price":  # NULL <=> 0 (missing and invalid prices are stored as 0)
                # abs() here, for the whole column: append_parsed() keeps the wire's sign (PROTOCOL.md 2.0)
                prices = pc.abs(pa.Array.from_buffers(typ, n, [None, pa.py_buffer(self._price[j::a])]))
                bitmap = pc.not_equal(prices, 0).buffers()[1]
                cols.append(pa.Array.from_buffers(typ, n, [bitmap, prices.buffers()[1]]))
                continue
            elif buf == "time":
                data: array[Any] = self._time[j::nt]
                bitmap = _u8_bitmap(self._tvalid[j::nt], n)
            elif buf == "text":
                cols.append(_strings(self._text[j]))
                continue
            else:
                src, width, pos = bufs[buf]
                data = src[j::width]
                bitmap = _u8_bitmap(self._valid[pos + j :: p.n_num], n)
            cols.append(pa.Array.from_buffers(typ, n, [bitmap, pa.py_buffer(data)]))
        cols.append(pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(self._flags)]))
        batch = pa.RecordBatch.from_arrays(cols, schema=self._schema)
        self._reset()
        return batch


class OrderbookBuilder(_RealTableBuilder):
    """Rows of 0D 주식호가잔량 (PROTOCOL.md 2.1) -> batches of :data:`schemas.tables.ORDERBOOK`."""

    _fields = FIELDS_0D
    _schema = ORDERBOOK


class AfterhoursBuilder(_RealTableBuilder):
    """Rows of 0E 주식시간외호가 (PROTOCOL.md 2.2) -> batches of :data:`schemas.tables.AFTERHOURS`."""

    _fields = FIELDS_0E
    _schema = AFTERHOURS


# --- the typed fast path: a well-formed REAL frame, read straight from its bytes -----------------------
#
# PERF-LIMITS.md sections 1-2: msgspec decodes a Struct whose fields come in the wire's key order about
# 3x faster than a dict, and parses integers in C once the "+" signs are gone (neither msgspec nor
# Arrow casts accept them). Two typed decodes of one frame: the bytes with every "+" deleted give the
# integer FIDs; the bytes as received give every text-like value exactly (time, rates, text, item).
# Everything the careful path would read differently is refused before or after decoding, and the
# frame then takes the general path (``decode_server_message`` and :meth:`_RealTableBuilder.append`),
# so the rows are the same either way; tests/test_normalize.py checks that on mutated frames.

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
        self.price_end = 4 * p.n_price
        self.int_end = self.price_end + 8 * p.n_int
        # the top byte of every quantity's int64 (>= 0x80: negative)
        self.qty_tops = slice(self.price_end + _TOP_BYTE, self.price_end + 8 * p.n_qty, 8)
        self.pct = _getter([at_text[fid] for fid in by_kind[Kind.PCT]])
        self.times = _getter([at_text[fid] for fid in p.time_keys])
        self.texts = _getter([at_text[fid] for fid in p.text_keys])


_FAST_0D: Final = _FastTable(FIELDS_0D, "orderbook", "0D")
_FAST_0E: Final = _FastTable(FIELDS_0E, "afterhours", "0E")
_I32_MIN: Final = -(1 << 31)
_find_plus_minus: Final = re.compile(rb"\+-").search
"""``b"+-" in data``, 2.5x faster on a 2 KB frame full of "+" (re scans for the literal with memchr)."""


def _count(data: bytes, char: bytes) -> int:
    return len(data) - len(data.replace(char, b""))  # faster than bytes.count for one byte


def read_real_frame(data: bytes) -> list[ParsedRow] | None:
    """The rows of a REAL frame of only 0D/0E rows that are all well-formed, read fast; else None.

    None means "use the general path": :func:`schemas.protocol.decode_server_message` and
    :meth:`OrderbookBuilder.append` / :meth:`AfterhoursBuilder.append`, which give, for a frame this
    function reads, exactly the rows it returns (what :meth:`OrderbookBuilder.append_parsed` stores).
    Never raises. A frame is read here when, besides being a valid REAL envelope of 0D/0E rows with
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
    for t in (_FAST_0D, _FAST_0E):  # a frame of one type: 0D nearly always (a mixed frame is rare)
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


class FrameBuilder:
    """Every WebSocket message, verbatim -> batches of :data:`schemas.tables.FRAMES`.

    Outgoing texts pass through :func:`schemas.tables.redact_login`, so a LOGIN token never reaches a
    batch (and so never a journal or a Parquet file). A message may be given as received, in bytes:
    it is stored as its UTF-8 text (bytes that are not UTF-8 with U+FFFD in their place), and Arrow
    checks the whole batch at once when it is flushed.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._recv = array("q")
        self._seq = array("q")
        self._run: list[str] = []
        self._dir: list[str] = []
        self._text: list[str | bytes] = []
        self._n_bytes = 0
        self._err: list[str | None] = []
        self._trnm: list[str | None] = []
        self._chars = 0

    def __len__(self) -> int:
        return len(self._seq)

    @property
    def nbytes(self) -> int:
        """An estimate of the memory held by the buffered messages (for rolling on size)."""
        return self._chars + 64 * len(self._seq)

    def append(
        self,
        recv_ns: int,
        run_id: str,
        seq: int,
        direction: str,
        text: str | bytes,
        parse_error: str | None,
        trnm: str | None,
    ) -> None:
        """Add one message. ``direction`` is ``"in"`` or ``"out"`` (else ValueError)."""
        if direction != "in":
            if direction != "out":
                raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
            if not isinstance(text, str):
                text = bytes(text).decode("utf-8", "replace")
            text = redact_login(text)
        elif not isinstance(text, str):
            text = bytes(text)
            self._n_bytes += 1
        keys = array("q", (recv_ns, seq))
        self._recv.append(keys[0])
        self._seq.append(keys[1])
        self._run.append(run_id)
        self._dir.append(direction)
        self._text.append(text)
        self._err.append(parse_error)
        self._trnm.append(trnm)
        self._chars += len(text)

    def _texts(self) -> pa.Array:
        texts = self._text
        if not self._n_bytes:
            return _strings(texts)  # type: ignore[arg-type]  # all str
        if self._n_bytes < len(texts):
            try:
                texts = [t.encode("utf-8") if isinstance(t, str) else t for t in texts]
            except UnicodeEncodeError:  # a str that is not UTF-8: let Arrow refuse it as before
                return _strings([t if isinstance(t, str) else t.decode("utf-8", "replace") for t in texts])
        raw = pa.array(texts, type=pa.binary())
        try:
            return raw.cast(pa.string())  # checks that every message is UTF-8, in C
        except pa.ArrowInvalid:
            return _strings([t.decode("utf-8", "replace") for t in texts])  # type: ignore[union-attr]

    def flush(self) -> pa.RecordBatch:
        """The buffered messages as one batch (maybe empty); the builder starts over."""
        n = len(self._seq)
        cols = [
            pa.Array.from_buffers(pa.timestamp("ns", tz="UTC"), n, [None, pa.py_buffer(self._recv)]),
            _strings(self._run),
            pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(self._seq)]),
            _strings(self._dir),
            self._texts(),
            _strings(self._err),
            _strings(self._trnm),
        ]
        batch = pa.RecordBatch.from_arrays(cols, schema=FRAMES)
        self._reset()
        return batch


def _jsonable(obj: Any, depth: int = 0) -> Any:
    if depth > 32:
        return repr(obj)
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v, depth + 1) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float)):
        return obj
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    return str(obj)


def detail_json(detail: Mapping[str, Any] | str) -> str:
    """The ``events.detail`` text, always valid JSON. Never raises.

    A mapping becomes compact JSON (keys made strings, other objects ``str()``-ed); a str that is JSON
    already is kept as is, any other str becomes ``{"text": ...}``.
    """
    if isinstance(detail, str):
        try:
            json.loads(detail)
        except (ValueError, RecursionError):
            return json.dumps({"text": detail}, ensure_ascii=False)
        return detail
    try:
        return json.dumps(detail, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        return json.dumps(_jsonable(detail), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return json.dumps({"repr": repr(detail)}, ensure_ascii=False)


class EventBuilder:
    """Session events (connect, login, gaps, ...) -> batches of :data:`schemas.tables.EVENTS`.

    ``kind`` is one of :data:`schemas.tables.EVENT_KINDS` (else ValueError); ``detail`` a JSON-able
    mapping (anything else in it is stringified) or ready JSON text.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._recv = array("q")
        self._run: list[str] = []
        self._kind: list[str] = []
        self._detail: list[str] = []
        self._rc: list[int | None] = []

    def __len__(self) -> int:
        return len(self._kind)

    @property
    def nbytes(self) -> int:
        """An estimate of the memory held by the buffered events."""
        return sum(map(len, self._detail)) + 64 * len(self._kind)

    def append(
        self,
        recv_ns: int,
        run_id: str,
        kind: str,
        detail: Mapping[str, Any] | str,
        return_code: int | None = None,
    ) -> None:
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
        if return_code is not None and not (
            isinstance(return_code, int) and not isinstance(return_code, bool) and _I64_MIN <= return_code <= _I64_MAX
        ):
            raise ValueError(f"return_code must be an int64 or None, not {return_code!r}")
        text = detail_json(detail)
        self._recv.append(recv_ns)
        self._run.append(run_id)
        self._kind.append(kind)
        self._detail.append(text)
        self._rc.append(return_code)

    def flush(self) -> pa.RecordBatch:
        """The buffered events as one batch (maybe empty); the builder starts over."""
        n = len(self._kind)
        cols = [
            pa.Array.from_buffers(pa.timestamp("ns", tz="UTC"), n, [None, pa.py_buffer(self._recv)]),
            _strings(self._run),
            _strings(self._kind),
            _strings(self._detail),
            pa.array(self._rc, type=pa.int64()),
        ]
        batch = pa.RecordBatch.from_arrays(cols, schema=EVENTS)
        self._reset()
        return batch


Builder = FrameBuilder | OrderbookBuilder | AfterhoursBuilder | EventBuilder

_BUILDERS: Final[dict[str, Callable[[], Builder]]] = {
    "frames": FrameBuilder,
    "orderbook": OrderbookBuilder,
    "afterhours": AfterhoursBuilder,
    "events": EventBuilder,
}


def builder_for(table: str) -> Builder:
    """A new, empty builder for ``table`` (a key of :data:`schemas.tables.TABLES`); KeyError otherwise."""
    return _BUILDERS[table]()
