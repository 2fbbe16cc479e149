"""The checks of ``record``'s arguments: the types, the items each kind of type needs, durations, ``--out``.

Each raises click's usage errors (or StorageError for ``--out``) naming the problem and the fix;
:mod:`kiwoom_tape.recorder.cli` applies them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click
from kiwoom_tape.schemas.errors import StorageError
from kiwoom_tape.schemas.items import ITEM_KIND, ITEM_RULES

__all__ = ["DEFAULT_TYPES", "TYPES", "Duration", "check_item_options", "check_out", "parse_types"]

TYPES = tuple(ITEM_RULES)
"""The real-time types ``record`` registers: every type of docs/protocol.md 3, each with the items of its kind
(:data:`kiwoom_tape.schemas.items.ITEM_KIND`, :func:`kiwoom_tape.recorder.plan.subscriptions`). 0B/0D/0E get tables
(:data:`kiwoom_tape.schemas.tables.TABLE_OF_TYPE`); the others are kept verbatim in ``frames`` and queried
through the ``rows`` view."""
DEFAULT_TYPES = "0B,0D,0E"


class Duration(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic only in click >= 8.2
    """``30s``, ``5m``, ``2h``, or plain seconds."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float | int):
            return float(value)
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*", str(value))
        if not m or float(m.group(1)) <= 0:
            self.fail(f"{value!r} is not a duration; write e.g. 30s, 5m, 2h or 90", param, ctx)
        return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def parse_types(value: str) -> tuple[str, ...]:
    types = tuple(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))
    bad = [t for t in types if t not in TYPES]
    if not types or bad:
        raise click.BadParameter(
            f"{','.join(bad) or value!r}: not a real-time type (docs/protocol.md 3; type codes are case-sensitive); "
            f"record takes {', '.join(TYPES)}, e.g. --types {DEFAULT_TYPES}"
        )
    return types


def check_item_options(types: tuple[str, ...], items: bool, industries: tuple[str, ...] | None) -> None:
    """Each kind of item in --types has its option, and no option is given for a kind that is not there."""
    stock = [t for t in types if ITEM_KIND[t] == "stock"]
    industry = [t for t in types if ITEM_KIND[t] == "industry"]
    if stock and not items:
        raise click.UsageError(f"which items? {','.join(stock)} take stock codes: pass --items, e.g. --items "
                               "005930,000660_NX, or --items-file FILE")
    if items and not stock:
        raise click.UsageError(f"--types {','.join(types)} has no type of stock items to record the --items for: add "
                               "one (e.g. 0B,0D) or leave --items out")
    if industry and not industries:
        raise click.UsageError(f"which industries? {','.join(industry)} take three-digit industry codes: pass "
                               "--industries, e.g. --industries 001,101")
    if industries and not industry:
        raise click.UsageError(f"--types {','.join(types)} has no industry type (0J, 0U) to record the --industries "
                               "for: add one or leave --industries out")


def check_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StorageError(
            f"cannot write to --out {out}: {exc.strerror or exc}", path=str(out),
            hint="choose a writable directory with --out",
        ) from None
