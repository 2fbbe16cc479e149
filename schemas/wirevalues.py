"""Wire values: how one Kiwoom REAL value of a field kind is read and stored (docs/protocol.md 2.0).

How each wire value is read (:func:`read_value` is the reference; the fast path must agree with it):

- ``price``: ``abs(int)``; the sign means "vs the reference price". ``"-0"``, ``""`` and 0 are NULL
  (an empty book level is ``"-0"``; a zero price means nothing).
- ``price``: ``abs(int)``; the sign means "vs the reference price". ``"-0"``, ``""`` and 0 are NULL
  (an empty book level is ``"-0"``; a zero price means nothing).
- ``qty``: unsigned digits, a ``+`` tolerated, ``"-0"`` is 0; a negative quantity is invalid.
- ``signed``: ``[+-]digits``. ``code``: ``[+-]digits`` within int8. ``pct``: a finite decimal.
- ``time``: 6 ASCII digits ``HHmmss`` (a valid time of day), combined with the KST date of the receive
  time (docs/protocol.md 5.4; nothing trades across midnight KST).
- ``text``: verbatim.
- Only ASCII digits count; no underscores, exponents, ``nan`` or ``inf``. A value out of the column
  type's range is invalid.
- Not a string: an ``int`` is taken as the number, an integral ``float`` as its integer (any finite
  float for ``pct``), a number as ``str()`` for ``text``; anything else is invalid.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Callable
from typing import Any, Final

from kiwoom_tape.schemas.fields import Kind
from kiwoom_tape.schemas.tables import FLAG_INVALID, FLAG_MISSING

__all__ = ["kst_midnight_epoch_s", "read_value"]

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

