"""Deriving what the store keeps of a frame or event from its text: the same code live and in recovery.

The store journals a frame's bytes with only what its caller determined (rows decoded or not, a
``parse_error``, a ``trnm``); :func:`_resolve` turns that into the (rows, trnm, parse_error) stored,
so that recovery, which has only the journal, stores exactly what the live path stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

from kiwoom_tape.schemas.errors import ProtocolError
from kiwoom_tape.schemas.market import kst_date_of_ns
from kiwoom_tape.schemas.protocol import Real, RealRow, decode_client_message, decode_server_message, guess_trnm

__all__: list[str] = []

_NS_PER_S: Final = 1_000_000_000
_KST_OFFSET_NS: Final = 9 * 3600 * _NS_PER_S
_DAY_NS: Final = 86_400 * _NS_PER_S
_SECRET_KEYS: Final = frozenset({"token", "appkey", "app_key", "secretkey", "secret_key", "secret", "authorization"})


def _derive(direction: str, text: str) -> tuple[Sequence[RealRow], str | None, str | None]:
    """(rows, trnm, parse_error) of a frame's stored text, as the store itself reads it."""
    try:
        msg = decode_server_message(text) if direction == "in" else decode_client_message(text)
    except ProtocolError as exc:
        return (), guess_trnm(text), exc.reason
    if isinstance(msg, Real):
        return msg.rows, "REAL", None
    return (), msg.trnm, None


def _resolve(
    direction: str,
    text: str,
    rows: Sequence[RealRow] | None,
    has_rows: bool,
    parse_error: str | None,
    trnm: str | None,
) -> tuple[Sequence[RealRow], str | None, str | None]:
    """The (rows, trnm, parse_error) to store for a frame; ``rows`` None with ``has_rows`` = decode them.

    Rules (the journal keeps what the caller passed, so recovery applies the same rules):

    - out-frames never have rows; trnm and parse_error are the caller's, else derived from the text;
    - in-frames whose caller passed ``rows``: those rows (recovery decodes them again from the text),
      trnm the caller's or ``"REAL"`` if rows were passed non-empty, parse_error the caller's;
    - in-frames whose caller passed a ``parse_error`` and no rows: no rows; trnm the caller's or derived;
    - otherwise everything is derived from the text (``decode_server_message``).
    """
    if direction == "in" and has_rows:
        if rows is None:
            derived, _t, _e = _derive(direction, text)
            rows = derived
        if trnm is None and rows:
            trnm = "REAL"
        return rows, trnm, parse_error
    if parse_error is None or trnm is None:
        d_rows, d_trnm, d_err = _derive(direction, text)
        if parse_error is not None:
            return (), (trnm if trnm is not None else d_trnm), parse_error
        return (d_rows if direction == "in" else ()), (trnm if trnm is not None else d_trnm), d_err
    return (), trnm, parse_error


def _scrub(detail: object, depth: int = 0) -> Any:
    """A copy of an event's detail with secret-looking keys replaced (tokens never reach disk)."""
    if depth > 16:
        return detail
    if isinstance(detail, dict):
        return {
            k: ("***" if isinstance(k, str) and k.lower() in _SECRET_KEYS else _scrub(v, depth + 1))
            for k, v in detail.items()
        }
    if isinstance(detail, list | tuple):
        return [_scrub(v, depth + 1) for v in detail]
    return detail


def _kst_day(recv_ns: int) -> tuple[dt.date, int, int]:
    """(KST date, first ns of it, first ns of the next day) for a UTC epoch time in ns."""
    date = kst_date_of_ns(recv_ns)
    lo = (recv_ns // _NS_PER_S * _NS_PER_S + _KST_OFFSET_NS) // _DAY_NS * _DAY_NS - _KST_OFFSET_NS
    return date, lo, lo + _DAY_NS
