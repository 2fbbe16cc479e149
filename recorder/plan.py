"""What ``record`` records over which connections: the ``--items-file`` and ``--keys`` files, and the items spread
over the app keys, at most 200 per connection (docs/protocol.md 4.1: one connection per app key, 200 items each).

An items file holds one code per line; ``#`` starts a comment, blank lines are skipped, a code given twice is
kept once (with a warning naming both lines). Every code must be an item of every recorded type
(:func:`kiwoom_tape.schemas.items.item_problem`); a bad one is refused naming its line.

The keys file is :mod:`kiwoom_tape.schemas.keyfile` (shared with ``replay --keys``). Parsing is pure (text in, values
out); :func:`read_items_file` and :func:`read_keys_file` read the file and name it in their errors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from kiwoom_tape.schemas.errors import KiwoomTapeError
from kiwoom_tape.schemas.items import item_problem
from kiwoom_tape.schemas.keyfile import KeyFileError, KeySpec, parse_keys, resolve_key
from kiwoom_tape.schemas.protocol import MAX_ITEMS_PER_CONNECTION

__all__ = [
    "KeyFileError",
    "KeySpec",
    "PlanError",
    "parse_items",
    "parse_keys",
    "read_items_file",
    "read_keys_file",
    "resolve_key",
    "spread",
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


def spread(items: Sequence[str], connections: int, source: str = "--keys") -> list[tuple[str, ...]]:
    """``items`` spread evenly, in order, over at most ``connections`` connections of at most 200 items
    (docs/protocol.md 4.1): as many connections as there are keys, fewer when there are fewer items.
    Raises PlanError naming the numbers when they do not fit."""
    cap = MAX_ITEMS_PER_CONNECTION
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
