"""Market facts that both sides need: item codes and venues, tick sizes, the price band, KST dates.

Pure functions (docs/protocol.md 1.3, 5.5, 5.4); no clocks are read here, callers pass times in.
"""

from __future__ import annotations

import datetime as dt

__all__ = [
    "ETF_CODES",
    "KST",
    "band",
    "is_etf",
    "kst_date_of_ns",
    "on_tick_grid",
    "split_item",
    "tick_size",
]

KST = dt.timezone(dt.timedelta(hours=9), "KST")
"""Korea Standard Time, UTC+9 with no daylight saving (docs/protocol.md 5)."""

_VENUES = {"": "KRX", "_NX": "NXT", "_AL": "SOR"}

# docs/protocol.md 5.5: (upper bound exclusive, tick) since 2023-01-25 for KOSPI/KOSDAQ/KONEX.
_TICKS: tuple[tuple[int, int], ...] = (
    (2_000, 1),
    (5_000, 5),
    (20_000, 10),
    (50_000, 50),
    (200_000, 100),
    (500_000, 500),
)


ETF_CODES: frozenset[str] = frozenset(
    {
        "069500",  # KODEX 200
        "102110",  # TIGER 200
        "229200",  # KODEX 코스닥150
        "122630",  # KODEX 레버리지
        "252670",  # KODEX 200선물인버스2X
        "114800",  # KODEX 인버스
        "360750",  # TIGER 미국S&P500
        "133690",  # TIGER 미국나스닥100
    }
)
"""ETF codes known to this package: they trade on the 5-won tick at every price (docs/protocol.md 5.5).

Whether a code is an ETF is not visible in the code itself (Kiwoom's 종목정보 says it); codes not listed
here are treated as stocks.
"""


def is_etf(code: str) -> bool:
    """Whether ``code`` (or an item such as ``"069500_NX"``) is one of :data:`ETF_CODES`."""
    return split_item(code)[0] in ETF_CODES


def split_item(item: str) -> tuple[str, str]:
    """Split a subscribed item into (code, venue): ``"005930_NX"`` -> ``("005930", "NXT")``.

    KRX codes have no suffix, ``_NX`` is Nextrade and ``_AL`` is smart order routing (docs/protocol.md 1.3).
    An unknown suffix is kept in the code and the venue is ``"KRX"``.
    """
    if len(item) > 3 and item[-3] == "_":
        venue = _VENUES.get(item[-3:])
        if venue is not None:
            return item[:-3], venue
    return item, "KRX"


def tick_size(price: int, *, etf: bool = False) -> int:
    """The KRX tick (호가가격단위) at ``price`` won: the stock table, or 5 won for an ETF (docs/protocol.md 5.5)."""
    if etf:
        return 5
    for bound, tick in _TICKS:
        if price < bound:
            return tick
    return 1_000


def on_tick_grid(price: int, *, etf: bool = False) -> bool:
    """Whether ``price`` is a multiple of its own tick size (the 5-won grid for an ETF)."""
    return price % tick_size(price, etf=etf) == 0


def band(reference: int, *, etf: bool = False) -> tuple[int, int]:
    """The daily price band (lower, upper) for a reference price: +/-30 %, rounded inward to ticks."""
    upper = reference * 13 // 10
    lower = -(-reference * 7 // 10)
    upper -= upper % tick_size(upper, etf=etf)
    t = tick_size(lower, etf=etf)
    lower = -(-lower // t) * t
    return lower, upper


def kst_date_of_ns(epoch_ns: int) -> dt.date:
    """The KST calendar date of a UTC epoch time in nanoseconds (the partition date of DESIGN.md)."""
    return dt.datetime.fromtimestamp(epoch_ns // 1_000_000_000, KST).date()
