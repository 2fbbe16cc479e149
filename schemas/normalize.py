"""Normalization: REAL rows and session events -> columnar builders -> Arrow record batches.

The public entry to five modules, one idea each (every name below is importable from here):

- :mod:`kiwoom_tape.schemas.wirevalues`: how one wire value of a field kind is read (docs/protocol.md 2.0),
:func:`read_value`;
- :mod:`kiwoom_tape.schemas.columnar`: where each FID of a field table goes in the builders' buffers;
- :mod:`kiwoom_tape.schemas.rowbuilders`: the typed tables' builders (:class:`OrderbookBuilder`,
:class:`AfterhoursBuilder`,
  :class:`TradesBuilder`),
  the recorder's hot path (PERF-LIMITS.md section 2);
- :mod:`kiwoom_tape.schemas.fastpath`: :func:`read_real_frame`, a well-formed REAL frame read straight from its bytes;
- :mod:`kiwoom_tape.schemas.logbuilders`: :class:`FrameBuilder` and :class:`EventBuilder` (``frames``, ``events``).

A 0D row as it comes off the wire (docs/protocol.md 6.1, trimmed)::

    {"type": "0D", "name": "주식호가잔량", "item": "005930",
     "values": {"21": "165207", "41": "-20800", "61": "82", "81": "0", "51": "-20700", ...,
                "126": "+1062126", "129": "114.51", "238": "3", "215": "", ...}}

    OrderbookBuilder().append(recv_ns, run_id, frame_seq, row_idx, row.item, row.values)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from kiwoom_tape.schemas.fastpath import ParsedRow, read_real_frame
from kiwoom_tape.schemas.logbuilders import EventBuilder, FrameBuilder, detail_json
from kiwoom_tape.schemas.rowbuilders import AfterhoursBuilder, OrderbookBuilder, TradesBuilder
from kiwoom_tape.schemas.tables import FLAG_INVALID, FLAG_MISSING
from kiwoom_tape.schemas.wirevalues import kst_midnight_epoch_s, read_value

__all__ = [
    "FLAG_INVALID",
    "FLAG_MISSING",
    "AfterhoursBuilder",
    "Builder",
    "EventBuilder",
    "FrameBuilder",
    "OrderbookBuilder",
    "ParsedRow",
    "TradesBuilder",
    "builder_for",
    "detail_json",
    "kst_midnight_epoch_s",
    "read_real_frame",
    "read_value",
]


Builder = FrameBuilder | OrderbookBuilder | AfterhoursBuilder | TradesBuilder | EventBuilder

_BUILDERS: Final[dict[str, Callable[[], Builder]]] = {
    "frames": FrameBuilder,
    "orderbook": OrderbookBuilder,
    "afterhours": AfterhoursBuilder,
    "trades": TradesBuilder,
    "events": EventBuilder,
}


def builder_for(table: str) -> Builder:
    """A new, empty builder for ``table`` (a key of :data:`kiwoom_tape.schemas.tables.TABLES`); KeyError otherwise."""
    return _BUILDERS[table]()
