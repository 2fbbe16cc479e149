"""What every kiwoom-tape command shares: logging, option types, errors as one clear line, the event loop.

Imported by ``kiwoom_tape.recorder.cli``, ``kiwoom_tape.replay.cli`` and the benchmarks' processes (``bench/``); imports
none of them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from kiwoom_tape.schemas.errors import KiwoomTapeError

__all__ = ["EVENT_LOOPS", "HMS", "ITEMS", "friendly_errors", "run_on_loop", "setup_logging", "verbosity_options"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

EVENT_LOOPS = ("auto", "asyncio", "uvloop")
"""What :func:`run_on_loop` accepts: ``auto`` is uvloop when it is installed, else asyncio."""


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    if verbose < 2:
        logging.getLogger("websockets").setLevel(logging.WARNING)
        logging.getLogger("kiwoom_tape.replay.ws").setLevel(logging.WARNING)


def verbosity_options(f: F) -> F:
    f = click.option("-v", "--verbose", count=True, help="More log lines (-vv for debug).")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")(f)
    return f


def friendly_errors(f: F) -> F:
    """Turn our exceptions into click errors: one line with the problem and the fix, no traceback."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except KiwoomTapeError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def run_on_loop(main: Coroutine[Any, Any, T], loop: str = "auto") -> T:
    """Run ``main`` to the end on a new event loop of kind ``loop`` (one of :data:`EVENT_LOOPS`); its result.

    uvloop is optional (``pip install 'kiwoom-tape[fast]'``: less CPU per frame, bench/README: Record):
    ``auto`` falls back to asyncio without it, ``uvloop`` raises click.UsageError (``main`` is then
    closed, never run).
    """
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop != "asyncio":
        try:
            import uvloop  # type: ignore[import-not-found,unused-ignore]  # optional
        except ImportError:
            if loop == "uvloop":
                main.close()
                raise click.UsageError("the uvloop event loop was asked for, but uvloop is not installed; "
                                       "pip install uvloop") from None
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


class _HMS(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic only in click >= 8.2
    """A KST time of day, ``HH:MM`` or ``HH:MM:SS``; converted to seconds since midnight."""

    name = "HH:MM[:SS]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float | int):
            return float(value)
        m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", str(value).strip())
        if not m:
            self.fail(f"{value!r} is not a time of day; write it as HH:MM or HH:MM:SS, e.g. 08:59:50", param, ctx)
        h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if h > 23 or mi > 59 or s > 59:
            self.fail(f"{value!r} is not a valid time of day; use HH:MM[:SS] from 00:00:00 to 23:59:59", param, ctx)
        return float(h * 3600 + mi * 60 + s)


class _Items(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic only in click >= 8.2
    """Comma-separated Kiwoom item codes: ``005930,000660_NX,035420_AL``."""

    name = "CODES"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        items = [v.strip() for v in str(value).split(",") if v.strip()]
        if not items:
            self.fail("no item codes given; write them comma-separated, e.g. 005930,000660_NX", param, ctx)
        for item in items:
            if not re.fullmatch(r"[0-9A-Z]{6}(_NX|_AL)?", item):
                self.fail(
                    f"{item!r} is not a Kiwoom item code; use 6 characters, optionally with _NX (Nextrade) "
                    "or _AL (smart routing), e.g. 005930 or 005930_NX",
                    param,
                    ctx,
                )
        return tuple(dict.fromkeys(items))


HMS = _HMS()
ITEMS = _Items()
