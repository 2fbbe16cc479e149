"""Which codes can be an item of each real-time type (docs/protocol.md 1.3; spec/realtime-types.json ``item_kind``).

Pure: :func:`item_problem` says why ``item`` cannot be registered for ``real_type``, or None. The
rules, per the spec's ``item_kind`` of each type:

============================================  ====================================================================
types                                         item
============================================  ====================================================================
0A 0B 0C 0D 0E 0F 0G 0H 0g 0w                 a stock code: six characters, digits and capital letters (``005930``,
                                              ``0001A0``), optionally with the venue suffix ``_NX`` or ``_AL``
0m 0u (ELW)                                   an ELW code: six characters, digits and capital letters (``57JBHH``)
0J 0U                                         an industry code: three digits (``001``)
0I                                            a gold code: ``MGD`` or ``MGU``
00 04 0s (account- and market-wide)           empty (``""``)
1h (VI)                                       empty, or a stock code
============================================  ====================================================================

``record`` registers each type once per kind of item (:data:`ITEM_KIND`): the stock and ELW types for
``--items``, 0J/0U for ``--industries``, 0I for both gold codes, and 00/04/0s/1h once with the empty item, which
covers every item of the type (:func:`covers_every_item`: a 1h row names the stock whose VI fired, docs/protocol.md
1.3 and 2.4).

Types not listed here (none today) take any item. The real server's answer to a code that breaks these
rules is undocumented (its REG ACK does not validate codes, docs/protocol.md 1.4): the mock accepts the
REG and sends no data for such a pair.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "ACCOUNT_TYPES", "EMPTY_ITEM_TYPES", "GOLD_ITEMS", "ITEM_KIND", "ITEM_RULES", "covers_every_item", "item_problem",
]

_STOCK: Final = re.compile(r"[0-9A-Z]{6}(?:_NX|_AL)?")
_ELW: Final = re.compile(r"[0-9A-Z]{6}")
_INDUSTRY: Final = re.compile(r"[0-9]{3}")
_GOLD: Final = re.compile(r"MG[DU]")
_EMPTY: Final = re.compile(r"")
_VI: Final = re.compile(r"|[0-9A-Z]{6}(?:_NX|_AL)?")

_STOCK_TEXT = 'a six-character stock code such as "005930", optionally with _NX or _AL ("005930_NX")'
ITEM_RULES: Final[dict[str, tuple[re.Pattern[str], str]]] = {
    **{t: (_STOCK, _STOCK_TEXT) for t in ("0A", "0B", "0C", "0D", "0E", "0F", "0G", "0H", "0g", "0w")},
    **{t: (_ELW, 'a six-character ELW code such as "57JBHH"') for t in ("0m", "0u")},
    **{t: (_INDUSTRY, 'a three-digit industry code such as "001"') for t in ("0J", "0U")},
    "0I": (_GOLD, '"MGD" or "MGU"'),
    **{t: (_EMPTY, 'the empty item ""') for t in ("00", "04", "0s")},
    "1h": (_VI, f'the empty item "" or {_STOCK_TEXT}'),
}
"""real type -> (the pattern an item must match in full, what a good item looks like)."""


def item_problem(real_type: str, item: str) -> str | None:
    """None if ``item`` can be an item of ``real_type``, else a short text naming the problem and the fix."""
    rule = ITEM_RULES.get(real_type)
    if rule is None:
        return None
    pattern, good = rule
    if pattern.fullmatch(item):
        return None
    return f"{item[:20]!r} cannot be a {real_type} item: give {good}"


ITEM_KIND: Final[dict[str, str]] = {
    **{t: "stock" for t in ("0A", "0B", "0C", "0D", "0E", "0F", "0G", "0H", "0g", "0w", "0m", "0u")},
    **{t: "industry" for t in ("0J", "0U")},
    "0I": "gold",
    **{t: "empty" for t in ("00", "04", "0s", "1h")},
}
"""real type -> where ``record`` takes its items from: ``stock`` the ``--items`` (ELW codes for 0m/0u),
``industry`` the ``--industries``, ``gold`` :data:`GOLD_ITEMS`, ``empty`` the one item ``""``."""

EMPTY_ITEM_TYPES: Final = frozenset(t for t, kind in ITEM_KIND.items() if kind == "empty")
"""The types registered with the empty item, once per connection, not per stock (docs/protocol.md 1.3)."""

ACCOUNT_TYPES: Final = frozenset({"00", "04"})
"""The types of the app key's account (order fills, balance): each connection of ``record --keys`` has its own."""

GOLD_ITEMS: Final = ("MGD", "MGU")
"""The items of 0I 국제금환산가격: there are no others (docs/protocol.md 2.4)."""


def covers_every_item(real_type: str, item: str) -> bool:
    """Whether a registration of (``item``, ``real_type``) gets the rows of every item of that type: the empty item
    of an account- or market-wide type (docs/protocol.md 1.3: 00/04 rows are the account's, 1h rows name the stock
    whose VI fired)."""
    return not item and real_type in EMPTY_ITEM_TYPES
