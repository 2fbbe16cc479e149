"""The stored tables: versioned Arrow schemas with field metadata (DESIGN.md "Data layout", STYLE.md habit 7).

Five tables, each a Hive-partitioned Parquet dataset (see :mod:`kiwoom_tape.schemas.layout`)::

    frames      every WebSocket message, both directions, verbatim (LOGIN with its token redacted)
    orderbook   one row per 0D data row (docs/protocol.md 2.1): key columns, the 163 FIDs, flags
    afterhours  one row per 0E data row (docs/protocol.md 2.2): key columns, the 5 FIDs, flags
    trades      one row per 0B data row (docs/protocol.md 2.3): key columns, the 43 FIDs, flags
    events      connect, login, reg_ack, disconnect, gap_start/gap_end, recovery, ...

The schemas are public API: a change of a column's name, type or meaning bumps :data:`SCHEMA_VERSION`.
Each schema carries the key-value metadata ``kiwoom_tape.schema_version``, ``kiwoom_tape.table`` and
``kiwoom_tape.writer`` (Parquet keeps it in the file footer); each column carries field metadata:
``description`` always, and ``fid``, ``korean``, ``kind``, ``unit`` where they apply.

Column types of the FID columns, by :class:`kiwoom_tape.schemas.fields.Kind` (how :mod:`kiwoom_tape.schemas.normalize`
reads the
wire strings of docs/protocol.md 2.0):

==========  =====================================  ==============================================
kind        Arrow type                             stored value
==========  =====================================  ==============================================
time        ``timestamp[ms, tz=UTC]``              the KST date of ``recv_ts`` + the wire HHmmss, as a UTC instant
price       ``int32``                              ``abs()`` in won; ``"-0"``, ``""`` and 0 are NULL
qty         ``int64``                              shares
signed      ``int64``                              signed shares or won
pct         ``float64``                            percent (``"114.51"`` -> 114.51)
code        ``int8``                               a small code (sign codes 1..5)
text        ``string``                             verbatim
==========  =====================================  ==============================================

Every table starts with ``recv_ts`` ``timestamp[us, tz=UTC]`` (Parquet ``TIMESTAMP(MICROS, true)``) and
``recv_sub_us`` ``int16``, the nanoseconds past ``recv_ts``'s microsecond (0..999): the exact receive time is
``epoch_us(recv_ts) * 1000 + recv_sub_us`` nanoseconds
(:func:`kiwoom_tape.schemas.versions.recv_ns_of`). No column has a Parquet type that
Spark 3/4, Trino or Hive refuse with their default settings (no ``TIMESTAMP(NANOS)``; a time column is a UTC
instant, the views show it in KST). ``int8``/``int16`` are Parquet ``INT32`` with an ``INT(8)``/``INT(16)``
annotation.

Schema version 1 (:data:`TABLES_V1`, written until kiwoom-tape 0.x; ``kiwoom-tape migrate`` rewrites it) had
``recv_ts`` ``timestamp[ns, tz=UTC]`` and no ``recv_sub_us``, and time columns ``timestamp[s, tz=Asia/Seoul]``
(the same instants). Every reader reads both versions, side by side in one day folder too.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import pyarrow as pa
from kiwoom_tape.schemas.fields import FIELDS_0B, FIELDS_0D, FIELDS_0E, FieldSpec, Kind

__all__ = [
    "AFTERHOURS",
    "EVENTS",
    "EVENT_KINDS",
    "FLAG_INVALID",
    "FLAG_MISSING",
    "FRAMES",
    "KEY_COLUMNS",
    "META_SCHEMA_VERSION",
    "META_TABLE",
    "META_WRITER",
    "ORDERBOOK",
    "QUOTE_TZ",
    "SCHEMA_VERSION",
    "TABLES",
    "TABLES_V1",
    "TABLE_OF_TYPE",
    "TRADES",
    "WRITER",
    "arrow_type_of",
    "redact_login",
    "schema_version_of",
]

SCHEMA_VERSION: Final = 2
"""Version of the stored tables; bumped whenever a column changes name, type or meaning."""


def _package_version() -> str:
    try:
        return version("kiwoom-tape")
    except PackageNotFoundError:
        return "0+unknown"


WRITER: Final = f"kiwoom-tape {_package_version()}"
"""The writer string stored in every file's metadata."""

META_SCHEMA_VERSION: Final = b"kiwoom_tape.schema_version"
META_TABLE: Final = b"kiwoom_tape.table"
META_WRITER: Final = b"kiwoom_tape.writer"

QUOTE_TZ: Final = "Asia/Seoul"
"""Time zone of the ``quote_time`` columns (KST, UTC+9, no DST)."""

FLAG_MISSING: Final = 1
"""``flags`` bit: at least one FID of the table was absent from ``values`` (or JSON null)."""
FLAG_INVALID: Final = 2
"""``flags`` bit: at least one FID had a value that could not be read as its kind (stored NULL)."""

EVENT_KINDS: Final = (
    "connect",
    "login",
    "login_failed",
    "reg_ack",
    "disconnect",
    "gap_start",
    "gap_end",
    "recovery",
    "journal_damage",
    "ping_summary",
    "system",
    "error",
    "items_added",
    "items_removed",
)
"""The values of ``events.kind``. ``items_added``/``items_removed``: items registered or removed while recording,
``detail.items`` x ``detail.types`` (``items_removed`` without ``types``: every type of the items). ``detail.by``
says for whom: with ``record --serve``, the local client that asked (``relay client #3 127.0.0.1:54321``: its
connection number on the relay and its address), for a removal the one that gave the pairs up last;
``detail.refused`` (a return_code) on an ``items_removed`` marks pairs upstream refused."""

TABLE_OF_TYPE: Final = {"0D": "orderbook", "0E": "afterhours", "0B": "trades"}
"""Real-time type code -> the table its rows are normalized into."""

_RECV_TS = pa.timestamp("us", tz="UTC")
_RECV_TS_V1 = pa.timestamp("ns", tz="UTC")

_KIND_TYPES: dict[Kind, pa.DataType] = {
    Kind.TIME: pa.timestamp("ms", tz="UTC"),
    Kind.PRICE: pa.int32(),
    Kind.QTY: pa.int64(),
    Kind.SIGNED: pa.int64(),
    Kind.PCT: pa.float64(),
    Kind.CODE: pa.int8(),
    Kind.TEXT: pa.string(),
}

_KIND_NOTES: dict[Kind, str] = {
    Kind.TIME: "KST date of recv_ts combined with the wire HHmmss (KST), stored as a UTC instant (the views show KST); "
               "NULL if not a valid HHmmss",
    Kind.PRICE: "abs() of the signed wire price (the sign means vs the reference price); '-0', '' and 0 are NULL",
    Kind.QTY: "unsigned quantity",
    Kind.SIGNED: "signed integer",
    Kind.PCT: "signed percentage",
    Kind.CODE: "small integer code",
    Kind.TEXT: "verbatim text",
}


def arrow_type_of(kind: Kind) -> pa.DataType:
    """The Arrow type a FID of ``kind`` is stored as (see the module docstring's table)."""
    return _KIND_TYPES[kind]


def _meta(description: str, **extra: str) -> dict[bytes, bytes]:
    out = {b"description": description.encode()}
    for k, v in extra.items():
        out[k.encode()] = v.encode()
    return out


def _col(name: str, typ: pa.DataType, description: str, *, nullable: bool = False, **extra: str) -> pa.Field:
    return pa.field(name, typ, nullable=nullable, metadata=_meta(description, **extra))


def _fid_field(spec: FieldSpec, version: int) -> pa.Field:
    typ = _KIND_TYPES[spec.kind]
    note = _KIND_NOTES[spec.kind]
    extra = {"fid": spec.fid, "korean": spec.korean, "kind": str(spec.kind), "unit": spec.unit}
    if spec.kind is Kind.TIME:
        if version == 1:
            typ, note = pa.timestamp("s", tz=QUOTE_TZ), "KST date of recv_ts combined with the wire HHmmss"
        else:
            extra["instant"] = f"UTC; shown in {QUOTE_TZ} by the views"
    return pa.field(spec.column, typ, nullable=True, metadata=_meta(f"FID {spec.fid} {spec.korean}: {note}", **extra))


def _schema(table: str, fields: list[pa.Field], version: int) -> pa.Schema:
    return pa.schema(
        fields,
        metadata={
            META_SCHEMA_VERSION: str(version).encode(),
            META_TABLE: table.encode(),
            META_WRITER: WRITER.encode(),
        },
    )


def _recv_fields(version: int) -> list[pa.Field]:
    if version == 1:
        return [_col("recv_ts", _RECV_TS_V1, "local receive time of the WebSocket message", unit="ns UTC")]
    return [
        _col("recv_ts", _RECV_TS, "local receive time of the WebSocket message, to the microsecond "
             "(the exact nanosecond: epoch_us(recv_ts) * 1000 + recv_sub_us)", unit="us UTC"),
        _col("recv_sub_us", pa.int16(), "nanoseconds of the receive time past recv_ts's microsecond, 0..999",
             unit="ns"),
    ]


def _run_id() -> pa.Field:
    return _col("run_id", pa.string(), "the recorder run that received it (schemas.layout.new_run_id)")


KEY_COLUMNS: Final = ("recv_ts", "recv_sub_us", "run_id", "frame_seq", "row_idx", "item", "code", "venue")
"""The leading columns of the normalized tables (orderbook, afterhours, trades)."""


def _key_fields(version: int) -> list[pa.Field]:
    return [
        *_recv_fields(version),
        _run_id(),
        _col("frame_seq", pa.int64(), "the frames.seq of the REAL frame this row came from"),
        _col("row_idx", pa.int16(), "index of the row inside the frame's data list, from 0"),
        _col("item", pa.string(), "the item as subscribed and echoed, e.g. 005930_NX"),
        _col("code", pa.string(), "the stock code without venue suffix, e.g. 005930"),
        _col("venue", pa.string(), "KRX (no suffix), NXT (_NX) or SOR (_AL)"),
    ]


def _flags() -> pa.Field:
    return _col(
        "flags",
        pa.int32(),
        f"data quality: {FLAG_MISSING} = some FID missing, {FLAG_INVALID} = some FID unparsable; 0 = clean",
    )


def _tables(version: int) -> dict[str, pa.Schema]:
    def real(table: str, fields: tuple[FieldSpec, ...]) -> pa.Schema:
        return _schema(table, [*_key_fields(version), *(_fid_field(f, version) for f in fields), _flags()], version)

    return {
        "frames": _schema("frames", [
            *_recv_fields(version),
            _run_id(),
            _col("seq", pa.int64(), "per-run sequence number of the message, both directions, from 0"),
            _col("direction", pa.string(), "'in' (server to client) or 'out' (client to server)"),
            _col("text", pa.string(), "the message verbatim; the LOGIN token is replaced by '***'"),
            _col("parse_error", pa.string(), "NULL if the message parsed; else why not", nullable=True),
            _col("trnm", pa.string(), "the envelope type (REAL, PING, LOGIN, ...) when known", nullable=True),
        ], version),
        "orderbook": real("orderbook", FIELDS_0D),
        "afterhours": real("afterhours", FIELDS_0E),
        "trades": real("trades", FIELDS_0B),
        "events": _schema("events", [
            *_recv_fields(version),
            _run_id(),
            _col("kind", pa.string(), "one of: " + ", ".join(EVENT_KINDS)),
            _col("detail", pa.string(), "JSON object text with the event's details"),
            _col("return_code", pa.int64(), "the server's return_code when the event carries one", nullable=True),
        ], version),
    }


TABLES: Final[dict[str, pa.Schema]] = _tables(SCHEMA_VERSION)
"""Table name -> its Arrow schema; the names are the top-level directories of a dataset."""

TABLES_V1: Final[dict[str, pa.Schema]] = _tables(1)
"""The schemas of version 1 (see the module docstring): what older datasets hold, read by every reader."""

FRAMES: Final = TABLES["frames"]
"""Every WebSocket message, both directions."""

ORDERBOOK: Final = TABLES["orderbook"]
"""0D 주식호가잔량 rows (docs/protocol.md 2.1): key columns, one column per FID in official order, flags."""

AFTERHOURS: Final = TABLES["afterhours"]
"""0E 주식시간외호가 rows (docs/protocol.md 2.2): key columns, one column per FID, flags."""

TRADES: Final = TABLES["trades"]
"""0B 주식체결 rows (docs/protocol.md 2.3): key columns, one column per FID in official order (6.5), flags."""

EVENTS: Final = TABLES["events"]
"""Events: connect, login, gaps, ..."""


def schema_version_of(schema: pa.Schema) -> int | None:
    """The ``kiwoom_tape.schema_version`` of a schema read back from a file, or None if absent or bad."""
    raw = (schema.metadata or {}).get(META_SCHEMA_VERSION)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


# --- LOGIN redaction ----------------------------------------------------------------------------------

REDACTED: Final = "***"


def _redact_obj(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: (REDACTED if k == "token" else v) for k, v in obj.items()}


def _token_spans(text: str) -> list[tuple[int, int]]:
    """Spans of the values of every ``"token"`` key, found by scanning (works on truncated JSON too)."""
    spans: list[tuple[int, int]] = []
    start = 0
    n = len(text)
    while True:
        k = text.find('"token"', start)
        if k < 0:
            return spans
        i = k + 7
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n or text[i] != ":":
            start = k + 7
            continue
        i += 1
        while i < n and text[i] in " \t\r\n":
            i += 1
        j = i
        if i < n and text[i] == '"':  # a JSON string: to the closing quote, skipping escapes
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
        else:  # any other value: to the next delimiter
            while j < n and text[j] not in ",}]":
                j += 1
        spans.append((i, j))
        start = j


def redact_login(text: str) -> str:
    """The LOGIN frame ``text`` with its token value replaced by ``"***"``; any other text unchanged.

    ``{"trnm": "LOGIN", "token": "eyJ..."}`` -> ``{"trnm": "LOGIN", "token": "***"}`` with the rest of
    the text kept byte for byte (docs/protocol.md 1.1; DESIGN.md: tokens never reach disk). A text counts as a
    LOGIN if it parses to an object with ``trnm == "LOGIN"``, or, when it does not parse at all, if it
    mentions ``LOGIN`` (a truncated LOGIN frame is still redacted). Every ``"token"`` key is redacted,
    whatever its value's type. Never raises.
    """
    if not isinstance(text, str) or ('"token"' not in text and "\\u" not in text):
        return text
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
        parsed = False
    else:
        parsed = True
    if parsed and not (isinstance(obj, dict) and obj.get("trnm") == "LOGIN"):
        return text
    if not parsed and "LOGIN" not in text:
        return text
    spans = _token_spans(text)
    out = text
    for i, j in reversed(spans):
        out = out[:i] + '"' + REDACTED + '"' + out[j:]
    if parsed:
        # The scan missed a token spelled with escapes (e.g. "\u0074oken"): re-encode the object.
        try:
            again = json.loads(out)
        except (ValueError, RecursionError):
            again = None
        if not isinstance(again, dict) or again.get("token", REDACTED) != REDACTED:
            assert isinstance(obj, dict)
            return json.dumps(_redact_obj(obj), ensure_ascii=False, separators=(",", ":"))
    return out
