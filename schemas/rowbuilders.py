"""Row builders: REAL rows of a typed table (orderbook, afterhours) -> columnar buffers -> Arrow batches.

This is the recorder's hot path (PERF-LIMITS.md section 2). A builder accumulates rows into compact
typed buffers (``array.array`` and ``bytearray``, row-major per type, never lists of dicts) and
:meth:`flush` turns them into one :class:`pyarrow.RecordBatch` of exactly the table's schema in
:mod:`kiwoom_tape.schemas.tables`, then starts over. After ``flush()`` the builder is empty and reusable; the batch
it returned owns its memory.

A 0D row as it comes off the wire (docs/protocol.md 6.1, trimmed)::

    {"type": "0D", "name": "주식호가잔량", "item": "005930",
     "values": {"21": "165207", "41": "-20800", "61": "82", "81": "0", "51": "-20700", ...,
                "126": "+1062126", "129": "114.51", "238": "3", "215": "", ...}}

``flags`` of a row: :data:`FLAG_MISSING` if a FID of the table is absent from ``values`` or is
JSON ``null``; :data:`FLAG_INVALID` if a value could not be read (stored NULL). Keys that are not FIDs of
the table are ignored. :meth:`OrderbookBuilder.append` never raises because of ``values``, whatever the
dict holds.

Speed: a row whose numeric values are all well-formed strings is parsed with a few C-level passes
(``map(int, ...)`` into a typed array); a row with missing keys is as fast; a row with anything unusual
takes a careful per-field path with the same results.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from operator import is_not
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from kiwoom_tape.schemas.columnar import _ABSENT, _plan, _raw, _strings, _u8_bitmap, recv_columns, utc_ms
from kiwoom_tape.schemas.fields import FIELDS_0B, FIELDS_0D, FIELDS_0E, FieldSpec, Kind
from kiwoom_tape.schemas.market import split_item
from kiwoom_tape.schemas.tables import AFTERHOURS, FLAG_INVALID, FLAG_MISSING, ORDERBOOK, TRADES
from kiwoom_tape.schemas.wirevalues import _I16_MAX, _read_time, kst_midnight_epoch_s, read_value

if TYPE_CHECKING:
    from kiwoom_tape.schemas.fastpath import ParsedRow

__all__ = ["AfterhoursBuilder", "OrderbookBuilder", "TradesBuilder"]


class _RealTableBuilder:
    """Shared by :class:`OrderbookBuilder`, :class:`AfterhoursBuilder` and :class:`TradesBuilder`."""

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
        p = self._p
        nums = memoryview(row.nums)
        self._commit(keys, row_idx, run_id, row.item, nums[: p.price_end], nums[p.price_end : p.int_end], row.pct,
                     nums[p.int_end :], row.valid, times, tvalid, row.texts, flags)
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
            *recv_columns(self._recv),
            _strings(self._run),
            pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(self._fseq)]),
            pa.Array.from_buffers(pa.int16(), n, [None, pa.py_buffer(self._ridx)]),
            _strings(self._item),
            _strings(self._code),
            _strings(self._venue),
        ]
        for _spec, typ, buf, j in p.order:
            if buf == "price":  # NULL <=> 0 (missing and invalid prices are stored as 0)
                # abs() here, for the whole column: append_parsed() keeps the wire's sign (docs/protocol.md 2.0)
                prices = pc.abs(pa.Array.from_buffers(typ, n, [None, pa.py_buffer(self._price[j::a])]))
                bitmap = pc.not_equal(prices, 0).buffers()[1]
                cols.append(pa.Array.from_buffers(typ, n, [bitmap, prices.buffers()[1]]))
                continue
            elif buf == "time":
                cols.append(utc_ms(self._time[j::nt], n, _u8_bitmap(self._tvalid[j::nt], n)))
                continue
            elif buf == "text":
                cols.append(_strings(self._text[j]))
                continue
            else:
                src, width, pos = bufs[buf]
                data: array[Any] = src[j::width]
                bitmap = _u8_bitmap(self._valid[pos + j :: p.n_num], n)
            cols.append(pa.Array.from_buffers(typ, n, [bitmap, pa.py_buffer(data)]))
        cols.append(pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(self._flags)]))
        batch = pa.RecordBatch.from_arrays(cols, schema=self._schema)
        self._reset()
        return batch


class OrderbookBuilder(_RealTableBuilder):
    """Rows of 0D 주식호가잔량 (docs/protocol.md 2.1) -> batches of :data:`kiwoom_tape.schemas.tables.ORDERBOOK`."""

    _fields = FIELDS_0D
    _schema = ORDERBOOK


class AfterhoursBuilder(_RealTableBuilder):
    """Rows of 0E 주식시간외호가 (docs/protocol.md 2.2) -> batches of :data:`kiwoom_tape.schemas.tables.AFTERHOURS`."""

    _fields = FIELDS_0E
    _schema = AFTERHOURS


class TradesBuilder(_RealTableBuilder):
    """Rows of 0B 주식체결 (docs/protocol.md 2.3) -> batches of :data:`kiwoom_tape.schemas.tables.TRADES`."""

    _fields = FIELDS_0B
    _schema = TRADES
