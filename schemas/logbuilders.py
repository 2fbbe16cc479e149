"""Log builders: every WebSocket message (``frames``) and session event (``events``) -> Arrow batches."""

from __future__ import annotations

import datetime as dt
import json
import math
from array import array
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from kiwoom_tape.schemas.columnar import _strings, recv_columns
from kiwoom_tape.schemas.tables import EVENT_KINDS, EVENTS, FRAMES, redact_login
from kiwoom_tape.schemas.wirevalues import _I64_MAX, _I64_MIN

__all__ = ["EventBuilder", "FrameBuilder", "detail_json"]

class FrameBuilder:
    """Every WebSocket message, verbatim -> batches of :data:`kiwoom_tape.schemas.tables.FRAMES`.

    Outgoing texts pass through :func:`kiwoom_tape.schemas.tables.redact_login`, so a LOGIN token never reaches a
    batch (and so never a journal or a Parquet file). A message may be given as received, in bytes:
    it is stored as its UTF-8 text (bytes that are not UTF-8 with U+FFFD in their place), and Arrow
    checks the whole batch at once when it is flushed.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._recv = array("q")
        self._seq = array("q")
        self._run: list[str] = []
        self._dir: list[str] = []
        self._text: list[str | bytes] = []
        self._n_bytes = 0
        self._err: list[str | None] = []
        self._trnm: list[str | None] = []
        self._chars = 0

    def __len__(self) -> int:
        return len(self._seq)

    @property
    def nbytes(self) -> int:
        """An estimate of the memory held by the buffered messages (for rolling on size)."""
        return self._chars + 64 * len(self._seq)

    def append(
        self,
        recv_ns: int,
        run_id: str,
        seq: int,
        direction: str,
        text: str | bytes,
        parse_error: str | None,
        trnm: str | None,
    ) -> None:
        """Add one message. ``direction`` is ``"in"`` or ``"out"`` (else ValueError)."""
        if direction != "in":
            if direction != "out":
                raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
            if not isinstance(text, str):
                text = bytes(text).decode("utf-8", "replace")
            text = redact_login(text)
        elif not isinstance(text, str):
            text = bytes(text)
            self._n_bytes += 1
        keys = array("q", (recv_ns, seq))
        self._recv.append(keys[0])
        self._seq.append(keys[1])
        self._run.append(run_id)
        self._dir.append(direction)
        self._text.append(text)
        self._err.append(parse_error)
        self._trnm.append(trnm)
        self._chars += len(text)

    def _texts(self) -> pa.Array:
        texts = self._text
        if not self._n_bytes:
            return _strings(texts)  # type: ignore[arg-type]  # all str
        if self._n_bytes < len(texts):
            try:
                texts = [t.encode("utf-8") if isinstance(t, str) else t for t in texts]
            except UnicodeEncodeError:  # a str that is not UTF-8: let Arrow refuse it as before
                return _strings([t if isinstance(t, str) else t.decode("utf-8", "replace") for t in texts])
        raw = pa.array(texts, type=pa.binary())
        try:
            return raw.cast(pa.string())  # checks that every message is UTF-8, in C
        except pa.ArrowInvalid:
            return _strings([t.decode("utf-8", "replace") for t in texts])  # type: ignore[union-attr]

    def flush(self) -> pa.RecordBatch:
        """The buffered messages as one batch (maybe empty); the builder starts over."""
        n = len(self._seq)
        cols = [
            *recv_columns(self._recv),
            _strings(self._run),
            pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(self._seq)]),
            _strings(self._dir),
            self._texts(),
            _strings(self._err),
            _strings(self._trnm),
        ]
        batch = pa.RecordBatch.from_arrays(cols, schema=FRAMES)
        self._reset()
        return batch


def _jsonable(obj: Any, depth: int = 0) -> Any:
    if depth > 32:
        return repr(obj)
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v, depth + 1) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float)):
        return obj
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    return str(obj)


def detail_json(detail: Mapping[str, Any] | str) -> str:
    """The ``events.detail`` text, always valid JSON. Never raises.

    A mapping becomes compact JSON (keys made strings, other objects ``str()``-ed); a str that is JSON
    already is kept as is, any other str becomes ``{"text": ...}``.
    """
    if isinstance(detail, str):
        try:
            json.loads(detail)
        except (ValueError, RecursionError):
            return json.dumps({"text": detail}, ensure_ascii=False)
        return detail
    try:
        return json.dumps(detail, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        return json.dumps(_jsonable(detail), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return json.dumps({"repr": repr(detail)}, ensure_ascii=False)


class EventBuilder:
    """Session events (connect, login, gaps, ...) -> batches of :data:`kiwoom_tape.schemas.tables.EVENTS`.

    ``kind`` is one of :data:`kiwoom_tape.schemas.tables.EVENT_KINDS` (else ValueError); ``detail`` a JSON-able
    mapping (anything else in it is stringified) or ready JSON text.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._recv = array("q")
        self._run: list[str] = []
        self._kind: list[str] = []
        self._detail: list[str] = []
        self._rc: list[int | None] = []

    def __len__(self) -> int:
        return len(self._kind)

    @property
    def nbytes(self) -> int:
        """An estimate of the memory held by the buffered events."""
        return sum(map(len, self._detail)) + 64 * len(self._kind)

    def append(
        self,
        recv_ns: int,
        run_id: str,
        kind: str,
        detail: Mapping[str, Any] | str,
        return_code: int | None = None,
    ) -> None:
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
        if return_code is not None and not (
            isinstance(return_code, int) and not isinstance(return_code, bool) and _I64_MIN <= return_code <= _I64_MAX
        ):
            raise ValueError(f"return_code must be an int64 or None, not {return_code!r}")
        text = detail_json(detail)
        self._recv.append(recv_ns)
        self._run.append(run_id)
        self._kind.append(kind)
        self._detail.append(text)
        self._rc.append(return_code)

    def flush(self) -> pa.RecordBatch:
        """The buffered events as one batch (maybe empty); the builder starts over."""
        cols = [
            *recv_columns(self._recv),
            _strings(self._run),
            _strings(self._kind),
            _strings(self._detail),
            pa.array(self._rc, type=pa.int64()),
        ]
        batch = pa.RecordBatch.from_arrays(cols, schema=EVENTS)
        self._reset()
        return batch

