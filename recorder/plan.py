"""What ``record`` records over which connections: the ``--items-file`` and ``--keys`` files, and the items spread
over the app keys, at most 200 per connection (docs/protocol.md 4.1: one connection per app key, 200 items each).

An items file holds one code per line; ``#`` starts a comment, blank lines are skipped, a code given twice is
kept once (with a warning naming both lines). Every code must be an item of every recorded type
(:func:`kiwoom_tape.schemas.items.item_problem`); a bad one is refused naming its line.

Which items each type gets (:func:`subscriptions`): the types of stock items take the ``--items``, 0J/0U the
``--industries``, 0I both gold codes, 00/04/0s/1h the empty item once (:data:`kiwoom_tape.schemas.items.ITEM_KIND`);
each set
of types is one ``data`` entry of the REG (docs/protocol.md 1.3). The stock items are spread over the connections,
the other entries go on the first connection only (registered once, not per stock or per key), but for 00/04,
which each app key gets for its own account.

The keys file is :mod:`kiwoom_tape.schemas.keyfile` (shared with ``replay --keys``). Parsing is pure (text in, values
out); :func:`read_items_file` and :func:`read_keys_file` read the file and name it in their errors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from kiwoom_tape.schemas.errors import KiwoomTapeError
from kiwoom_tape.schemas.items import ACCOUNT_TYPES, GOLD_ITEMS, ITEM_KIND, item_problem
from kiwoom_tape.schemas.keyfile import KeyFileError, KeySpec, parse_keys, resolve_key
from kiwoom_tape.schemas.protocol import MAX_ITEMS_PER_CONNECTION, Subscription

__all__ = [
    "KeyFileError",
    "KeySpec",
    "PlanError",
    "connection_entries",
    "parse_items",
    "parse_keys",
    "read_items_file",
    "read_keys_file",
    "resolve_key",
    "spread",
    "subscriptions",
]

log = logging.getLogger("kiwoom_tape.recorder")


class PlanError(KiwoomTapeError):
    """An items or keys file that cannot be used, or items that do not fit the keys; the message names the fix."""


def parse_items(text: str, types: Sequence[str], source: str = "items file") -> tuple[str, ...]:
    """The codes of an items file's ``text``, in order, each once. Raises PlanError naming the first bad line."""
    items: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0].strip()
        if not code:
            continue
        for real_type in types:
            problem = item_problem(real_type, code)
            if problem is not None:
                raise PlanError(f"{source} line {lineno}: {problem}", hint="one code per line; # starts a comment")
        first = items.setdefault(code, lineno)
        if first != lineno:
            log.warning("%s line %d: %s is already on line %d: recorded once", source, lineno, code, first)
    if not items:
        raise PlanError(f"{source} holds no item codes", hint="write one code per line, e.g. 005930")
    return tuple(items)


def spread(
    items: Sequence[str], connections: int, source: str = "--keys", *, reserve: int = 0
) -> list[tuple[str, ...]]:
    """``items`` spread evenly, in order, over at most ``connections`` connections of at most 200 items
    (docs/protocol.md 4.1): as many connections as there are keys, fewer when there are fewer items. The first
    connection also carries ``reserve`` other items (industry codes, ...), counted in its 200 and in the spreading.
    Raises PlanError naming the numbers when they do not fit."""
    cap = MAX_ITEMS_PER_CONNECTION
    if reserve:
        padded = spread(["" for _ in range(reserve)] + list(items), connections, source)
        return [tuple(i for i in group if i) if n == 0 else group for n, group in enumerate(padded)]
    if len(items) > connections * cap:
        need = math.ceil(len(items) / cap)
        raise PlanError(
            f"{len(items)} items need {need} connections of at most {cap} items "
            "(one per app key, docs/protocol.md 4.1), "
            f"and {source} gives {connections}",
            hint=f"add {need - connections} app key(s) with --keys, or record fewer items",
        )
    n = min(connections, len(items))
    size, rest = divmod(len(items), n)
    out: list[tuple[str, ...]] = []
    start = 0
    for i in range(n):
        end = start + size + (1 if i < rest else 0)
        out.append(tuple(items[start:end]))
        start = end
    return out


def subscriptions(
    types: Sequence[str], items: Sequence[str], industries: Sequence[str], *, first: bool = True
) -> tuple[Subscription, ...]:
    """The ``data`` entries one connection registers: ``items`` (its share of the stock items) for the types of stock
    items, and, on the ``first`` connection only, ``industries`` for 0J/0U, :data:`kiwoom_tape.schemas.items.GOLD_ITEMS`
    for 0I
    and the empty item for 0s/1h (docs/protocol.md 1.3); 00/04 (the account of the connection's app key) on every
    connection. Every item is checked against every type it is
    registered for (:func:`kiwoom_tape.schemas.items.item_problem`); raises PlanError naming the problem and the fix."""
    by_kind: dict[str, list[str]] = {}
    for t in types:
        by_kind.setdefault(ITEM_KIND.get(t, "stock"), []).append(t)
    sources = {"stock": (items, "--items"), "industry": (industries, "--industries"), "gold": (GOLD_ITEMS, ""),
               "empty": (("",), "")}
    out = []
    for kind, kind_types in by_kind.items():
        codes, option = sources[kind]
        for t in kind_types:
            for code in codes:
                problem = item_problem(t, code)
                if problem is not None:
                    raise PlanError(f"{option} {problem}", hint=f"record {t} with {option} of its own kind of codes, "
                                    "or leave it out of --types")
        if not first and kind != "stock":  # once, not per key; but each key is its own account: 00/04 on each
            kind_types = [t for t in kind_types if t in ACCOUNT_TYPES]
        if codes and kind_types:
            out.append(Subscription(tuple(codes), tuple(kind_types)))
    return tuple(out)


def connection_entries(
    types: Sequence[str], items: Sequence[str], industries: Sequence[str], connections: int, source: str = "--keys"
) -> list[tuple[Subscription, ...]]:
    """The REG ``data`` entries of each connection, at most ``connections`` of them: the stock ``items`` spread
    (:func:`spread`, the first connection's other items counted in its 200), the other entries on the first
    (:func:`subscriptions`). Raises PlanError when the items do not fit or a code is not of its type's kind."""
    first = subscriptions(types, (), industries)
    reserve = len({i for sub in first for i in sub.items if i})
    groups = spread(items, connections, source, reserve=reserve) if items else [()]
    return [subscriptions(types, group, industries, first=n == 0) for n, group in enumerate(groups)]


def read_items_file(path: Path, types: Sequence[str]) -> tuple[str, ...]:
    """:func:`parse_items` of the file at ``path``."""
    return parse_items(_read(path, "--items-file"), types, source=f"--items-file {path}")


def read_keys_file(path: Path) -> list[KeySpec]:
    """:func:`parse_keys` of the file at ``path``."""
    return parse_keys(_read(path, "--keys"), source=f"--keys {path}")


def _read(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read {option} {path}: {getattr(exc, 'strerror', None) or exc}",
                        hint=f"give {option} a readable UTF-8 text file") from None
