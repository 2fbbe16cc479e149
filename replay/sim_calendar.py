"""The simulated trading day: which REAL types flow when, per venue, and how fast (docs/protocol.md 5.1-5.3).

Pure data and functions of market time (seconds since KST midnight); no clock is read here. Windows are
half-open ``[start, end)``. Rates are multipliers of the market's ``rate_hz`` (0D) or ``rate_0e_hz`` (0E).
"""

from __future__ import annotations

import math

from kiwoom_tape.schemas.market import split_item

__all__ = [
    "KRX_0D_WINDOWS",
    "KRX_0E_WINDOWS",
    "KRX_AUCTIONS",
    "KRX_CLOSE_WINDOWS",
    "NXT_0D_WINDOWS",
    "hms",
    "in_auction",
    "nxt_thin",
    "rate_factor",
    "session_windows",
    "wide_spread_odds",
]


def hms(h: int, m: int = 0, s: int = 0) -> int:
    """Seconds since KST midnight of ``h:m:s``."""
    return h * 3600 + m * 60 + s


KRX_0D_WINDOWS: tuple[tuple[int, int], ...] = ((hms(8, 50), hms(15, 30)),)
"""When KRX (and ``_AL``) items send 0D, seconds since KST midnight, ``[start, end)`` (docs/protocol.md 5.3)."""
KRX_0E_WINDOWS: tuple[tuple[int, int], ...] = ((hms(8, 30), hms(8, 40)), (hms(15, 40), hms(18)))
"""When KRX (and ``_AL``) items send 0E: 장전 시간외 종가, and 장후 시간외 through 단일가
(docs/protocol.md 5.1, 5.3)."""
NXT_0D_WINDOWS: tuple[tuple[int, int], ...] = (
    (hms(8), hms(8, 50)),
    (hms(9, 0, 30), hms(15, 20)),
    (hms(15, 30), hms(20)),
)
"""When ``_NX`` items send 0D: pre-, main and after-market, minus the halts around KRX auctions (5.2, 5.3)."""
KRX_CLOSE_WINDOWS: tuple[tuple[int, int], ...] = ((hms(15, 30), hms(15, 30, 1)), (hms(15, 40), hms(16)))
"""When KRX (and ``_AL``) items trade after the continuous session: the closing auction's print (15:30:00,
the first tick of the first window) and the close-price fills 15:40-16:00 (장후 시간외 종가); none
16:00-18:00, whose 단일가 fills are not pushed (docs/protocol.md 5.3)."""
KRX_AUCTIONS: tuple[tuple[int, int], ...] = ((hms(8, 50), hms(9)), (hms(15, 20), hms(15, 30)))
"""KRX call auctions (동시호가): 23/24 and 291/292 carry the expected price/qty only here (docs/protocol.md 2.1)."""

_T0850, _T0900, _T0930, _T1130, _T1330 = hms(8, 50), hms(9), hms(9, 30), hms(11, 30), hms(13, 30)
_T1430, _T1520, _T1530 = hms(14, 30), hms(15, 20), hms(15, 30)
_OPEN_BURST = 300.0  # seconds: the e-folding time of the activity burst after 09:00


def session_windows(item: str, real_type: str) -> tuple[tuple[int, int], ...]:
    """The ``[start, end)`` windows (seconds since KST midnight) in which ``item`` sends ``real_type``.

    docs/protocol.md 5.3: ``_NX`` -> :data:`NXT_0D_WINDOWS` and no 0E; KRX and ``_AL`` ->
    :data:`KRX_0D_WINDOWS` and :data:`KRX_0E_WINDOWS`. ``"close"``: the closing trades of KRX and ``_AL``
    items, :data:`KRX_CLOSE_WINDOWS` (the continuous session's 0B come with the 0D book). Any other type: never.
    """
    _, venue = split_item(item)
    if real_type == "close":
        return () if venue == "NXT" else KRX_CLOSE_WINDOWS
    if real_type == "0D":
        return NXT_0D_WINDOWS if venue == "NXT" else KRX_0D_WINDOWS
    if real_type == "0E":
        return () if venue == "NXT" else KRX_0E_WINDOWS
    return ()


def in_auction(t: float) -> bool:
    """Whether ``t`` is in a KRX call auction (08:50-09:00, 15:20-15:30), docs/protocol.md 5.1."""
    return _T0850 <= t < _T0900 or _T1520 <= t < _T1530


def nxt_thin(t: float) -> bool:
    """Whether NXT is in its pre-market (before 08:50) or after-market (from 15:30): thin books (6.4)."""
    return t < _T0850 or t >= _T1530


def _continuous_profile(t: float) -> float:
    """KRX continuous trading 09:00-15:20: a burst after the open, quiet midday, busier before the close.

    1.0 at 09:30-11:30 (so ``rate_hz`` is the mid-morning rate); the session's mean is about 0.97.
    """
    burst = 3.0 * math.exp(-(t - _T0900) / _OPEN_BURST) if t >= _T0900 else 0.0
    if t < _T1130:
        base = 1.0
    elif t < _T1330:
        base = 0.7
    elif t < _T1430:
        base = 0.9
    else:
        base = 1.3
    return base + burst


def rate_factor(venue: str, real_type: str, t: float) -> float:
    """The update rate of a (venue, type) at market time ``t`` as a multiple of the base rate.

    0D, KRX/SOR: 0.8 in the auctions, :func:`_continuous_profile` in continuous trading (x4 at 09:00,
    x2 at 09:05, 0.7 at 11:30-13:30, 1.3 from 14:30). 0D, NXT: 0.5 pre-market, 0.6 x the KRX profile in
    the main market, 0.3 after-market. 0E: 1.0. Outside the windows the factor is irrelevant (no rows).
    """
    if real_type != "0D":
        return 1.0
    if venue == "NXT":
        if t < _T0850:
            return 0.5
        if t >= _T1530:
            return 0.3
        return 0.6 * _continuous_profile(t)
    if in_auction(t):
        return 0.8
    return _continuous_profile(t)


def wide_spread_odds(liquid: bool, venue: str, t: float) -> float:
    """The probability that a redrawn spread is wider than one tick (the live book, docs/protocol.md 5.5).

    Large caps nearly always quote one tick (0.03); thin items often do not (0.4). Both widen in the
    first minutes after 09:00 and in NXT's thin pre-/after-market.
    """
    p = 0.03 if liquid else 0.4
    if _T0900 <= t < _T0900 + 2 * _OPEN_BURST:
        p = min(0.8, p + 0.3 * math.exp(-(t - _T0900) / _OPEN_BURST) + 0.05)
    if venue == "NXT" and nxt_thin(t):
        p = min(0.8, p * 2 + 0.1)
    return p
