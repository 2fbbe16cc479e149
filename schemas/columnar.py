"""Columnar layout: where each FID of a field table goes in the builders' row-major buffers, and Arrow helpers."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from functools import cache
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from kiwoom_tape.schemas.fields import FieldSpec, Kind
from kiwoom_tape.schemas.tables import arrow_type_of
from kiwoom_tape.schemas.wirevalues import _READERS

_ABSENT: Final = "".join(("\t", "0"))
"""What the fast path reads for a missing key: parses as 0, and is recognized by identity (``is``).

Made at run time so that it is an object of its own: no decoded value is ever this very object."""

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
        # byte offsets in a ParsedRow's ``nums``: int32 prices, then int64 quantities and signed values
        self.price_end = 4 * self.n_price
        self.int_end = self.price_end + 8 * self.n_int
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


_RECV_TS: Final = pa.timestamp("us", tz="UTC")
_UTC_MS: Final = pa.timestamp("ms", tz="UTC")


def recv_columns(recv_ns: array[int]) -> tuple[pa.Array, pa.Array]:
    """``recv_ts`` (microseconds) and ``recv_sub_us`` (the nanoseconds past it, 0..999) of int64 receive times.

    Vectorised: one integer division and one subtraction over the whole column (receive times are after 1970,
    so truncating division floors)."""
    n = len(recv_ns)
    ns = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(recv_ns)])
    us = pc.divide(ns, 1000)
    sub = pc.subtract(ns, pc.multiply(us, 1000)).cast(pa.int16())
    return us.view(_RECV_TS), sub


def utc_ms(seconds: array[int], n: int, bitmap: pa.Buffer | None) -> pa.Array:
    """A time column (``timestamp[ms, tz=UTC]``) from UTC epoch seconds, NULL where ``bitmap`` says so."""
    secs = pa.Array.from_buffers(pa.int64(), n, [bitmap, pa.py_buffer(seconds)])
    out: pa.Array = pc.multiply(secs, 1000).view(_UTC_MS)
    return out


def _strings(values: Sequence[str | None]) -> pa.Array:
    return pa.array(values, type=pa.string())
