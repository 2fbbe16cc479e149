"""Which connection a recorder log line is about: ``record --keys`` runs one connection per app key in one process,
and each line they log starts with ``[key NAME]``.

:func:`labelled` runs a coroutine with its connection's name in a context variable (copied into its tasks and
``asyncio.to_thread`` calls); :class:`ConnectionLabel`, a filter on the ``kiwoom_tape.recorder`` logger, puts
the name in front of the message. Without a name (one connection), lines are unchanged.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["ConnectionLabel", "labelled"]

T = TypeVar("T")

_NAME: contextvars.ContextVar[str | None] = contextvars.ContextVar("kiwoom_tape_connection", default=None)


class ConnectionLabel(logging.Filter):
    """Prefixes ``[key NAME] `` to the records logged inside :func:`labelled`; lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = _NAME.get()
        if name is not None and not getattr(record, "kiwoom_tape_label", False):
            record.msg = f"[key {name}] {record.msg}"
            record.kiwoom_tape_label = True
        return True


async def labelled(name: str, work: Awaitable[T]) -> T:
    """``await work`` with its log lines labelled ``[key name]`` (run it as its own task: the label is the task's)."""
    _NAME.set(name)
    return await work


logging.getLogger("kiwoom_tape.recorder").addFilter(ConnectionLabel())
