"""How frames and events enter the store: journaled first, then read into the open segment's rows, now or in a batch.

:class:`Intake` is the half of :class:`kiwoom_tape.recorder.store.Store` that takes what the recorder receives and
sends (``add_frame``, ``add_real_frame``, ``add_received``, ``add_event``): each record goes to the journal
(:mod:`kiwoom_tape.recorder.journal`) before anything is derived from it, gets its ``seq``, and its rows are buffered
by :class:`kiwoom_tape.recorder.segment.SegmentRows`. The Store adds the lifecycle, the clock and the rolls
(:meth:`_enter` rolls at a new KST date, :meth:`_flush_and_maybe_roll` at ``roll_bytes``).

**Read in batches.** :meth:`Store.add_received` journals an in-frame at once and reads it later, with
the next ones (at most ``defer_frames`` of them, or at the next :meth:`Store.tick` or any other call):
frames that trickle in one at a time cost about a third as much read in a batch with warm caches as
read each on its own (docs/benchmarks.md: Record). Only the reading waits, never the journal, so the loss
bound below holds; every other call reads the waiting frames first, so rows keep the frames' order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from kiwoom_tape.recorder.derive import _scrub
from kiwoom_tape.recorder.segment import SegmentRows
from kiwoom_tape.schemas.errors import StorageError
from kiwoom_tape.schemas.normalize import detail_json, read_real_frame
from kiwoom_tape.schemas.protocol import RealRow
from kiwoom_tape.schemas.tables import EVENT_KINDS, TABLE_OF_TYPE, redact_login

__all__ = ["Intake"]

_FAST_TYPES: Final = tuple(TABLE_OF_TYPE)
"""The types :func:`read_real_frame` reads into tables for the store: 0D, 0E, 0B; rows of other types, in any mix
with them, only count in ``other_rows`` (their frame's text is in ``frames``), as on the general path."""


class Intake(SegmentRows):
    """The adding half of the Store (module docstring); the attributes are the Store's."""

    defer_frames: int
    _seg_records: int
    _opened: bool
    _closed: bool
    _failed: StorageError | None

    def _flush_and_maybe_roll(self) -> None:
        """Flush the buffered rows, then roll if the segment is big enough (the Store's)."""
        raise NotImplementedError

    def add_frame(
        self,
        recv_ns: int,
        direction: str,
        text: str | bytes,
        *,
        rows: Sequence[RealRow] | None = None,
        parse_error: str | None = None,
        trnm: str | None = None,
    ) -> int:
        """Journal one WebSocket message, then buffer it (and its 0D/0E/0B rows); returns its ``seq``.

        ``direction`` is ``"in"`` (from the server) or ``"out"``; out-frames are redacted
        (``kiwoom_tape.schemas.tables.redact_login``) before anything is written. For an in-frame, pass the
        ``rows`` the session decoded (``RealData.rows``; ``()`` for a non-REAL frame) or a
        ``parse_error``; with neither, the store decodes the text itself. 0D rows go to ``orderbook``,
        0E rows to ``afterhours``, 0B to ``trades`` (:data:`kiwoom_tape.schemas.tables.TABLE_OF_TYPE`), rows of other
        types only to ``frames`` (counted in ``other_rows``).
        Raises StorageError (the store is then failed), ValueError for a bad ``direction``.
        """
        if self._deferred:
            self._drain()
        if not isinstance(text, str):
            text = bytes(text).decode("utf-8", "replace")
        if direction != "in":
            if direction != "out":
                raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
            text = redact_login(text)  # before the journal: tokens never reach disk
            rows = None
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates are not UTF-8, so not storable: replace them
            text = text.encode("utf-8", "replace").decode("utf-8")
            data = text.encode("utf-8")
        seq = self._journal_frame(recv_ns, direction, data, has_rows=rows is not None, parse_error=parse_error,
                                  trnm=trnm)
        self._ingest_frame(recv_ns, seq, direction, text, rows, rows is not None, parse_error, trnm)
        if self._pending_frames >= self.flush_rows or self._pending_rows >= self.flush_rows:
            self._guarded(self._flush_and_maybe_roll)
        return seq

    def add_real_frame(self, recv_ns: int, data: bytes) -> int | None:
        """Journal and buffer a received REAL frame of well-formed rows, from its bytes; returns its row count.

        The recorder's fast path (PERF-LIMITS.md section 6): the bytes go to the journal as received,
        and the rows are read with :func:`kiwoom_tape.schemas.normalize.read_real_frame`, so nothing is decoded
        twice. What is stored is what ``add_frame(recv_ns, "in", data, rows=<its rows>, trnm="REAL")``
        stores. Returns None, having stored nothing, for any other frame: the caller then handles it
        the general way (``ClientSession.receive``, :meth:`add_frame`). Raises StorageError.
        """
        if self._deferred:
            self._drain()
        rows = read_real_frame(data, _FAST_TYPES)
        if rows is None:
            return None
        seq = self._journal_frame(recv_ns, "in", data, has_rows=True, trnm="REAL")
        self._buffer_parsed(recv_ns, seq, data, rows)
        if self._pending_frames >= self.flush_rows or self._pending_rows >= self.flush_rows:
            self._guarded(self._flush_and_maybe_roll)
        return len(rows)

    def add_received(self, recv_ns: int, data: bytes) -> int:
        """Journal a received in-frame now; buffer it (and its rows) with the next batch. Returns its ``seq``.

        What is stored is what :meth:`add_frame` ``(recv_ns, "in", data)`` stores (the rows read by
        :func:`kiwoom_tape.schemas.normalize.read_real_frame` when it can, else decoded from the text), only later:
        at most ``defer_frames`` frames wait, and :meth:`tick`, :meth:`sync`, :meth:`close` and every
        other ``add_*`` read them first. For frames that need no answer (REAL frames): the caller gets
        no rows back. The counters (:attr:`stats`) include a frame once it is read. Raises StorageError.
        """
        seq = self._journal_frame(recv_ns, "in", data, has_rows=False)
        deferred = self._deferred
        deferred.append((recv_ns, seq, data))
        if len(deferred) >= self.defer_frames:
            self._drain()
            if self._pending_frames >= self.flush_rows or self._pending_rows >= self.flush_rows:
                self._guarded(self._flush_and_maybe_roll)
        return seq

    def _journal_frame(self, recv_ns: int, direction: str, data: bytes, *, has_rows: bool,
                       parse_error: str | None = None, trnm: str | None = None) -> int:
        """Journal a frame's bytes and give it the next ``seq`` (entering its KST date first); returns it."""
        if recv_ns < self._lo or recv_ns >= self._hi:
            self._enter(recv_ns)  # a new KST date: roll first (reading what waits), or the first record
        if self._failed is not None or self._closed:
            self._raise_unusable()
        seq = self._seq
        j = self._journal
        if j is not None:
            try:
                j.append_frame(recv_ns, seq, direction, data, has_rows=has_rows, parse_error=parse_error, trnm=trnm)
            except StorageError as exc:
                self._failed = exc
                raise
        self._seq = seq + 1
        self._seg_records += 1
        return seq

    def _drain(self) -> None:
        """Buffer the frames :meth:`add_received` journaled, in order. Flushes nothing (the callers do)."""
        batch, self._deferred = self._deferred, []
        read, buffer_parsed, ingest = read_real_frame, self._buffer_parsed, self._ingest_frame
        for recv_ns, seq, data in batch:
            rows = read(data, _FAST_TYPES)
            if rows is not None:
                buffer_parsed(recv_ns, seq, data, rows)
            else:  # as add_frame(recv_ns, "in", data) and recovery: everything derived from the text
                ingest(recv_ns, seq, "in", data.decode("utf-8", "replace"), None, False, None, None)

    def add_event(self, recv_ns: int, kind: str, detail: dict[str, Any] | str, return_code: int | None = None) -> None:
        """Journal one event, then buffer it for ``events``.

        ``kind`` is one of ``kiwoom_tape.schemas.tables.EVENT_KINDS`` (ValueError otherwise, before anything is
        written); ``detail`` a JSON-able dict (secret-looking keys such as ``token`` are replaced by
        ``***``) or JSON text. Raises StorageError.
        """
        if self._deferred:
            self._drain()
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
        if return_code is not None and (type(return_code) is not int or not -(1 << 63) <= return_code < (1 << 63)):
            raise ValueError(f"return_code must be an int64 or None, not {return_code!r}")
        text = detail_json(_scrub(detail) if isinstance(detail, dict) else detail)
        if recv_ns < self._lo or recv_ns >= self._hi:
            self._enter(recv_ns)
        if self._failed is not None or self._closed:
            self._raise_unusable()
        j = self._journal
        if j is not None:
            try:
                j.append_event(recv_ns, kind, text, return_code)
            except StorageError as exc:
                self._failed = exc
                raise
        self._seg_records += 1
        self._ingest_event(recv_ns, kind, text, return_code)

    def _guarded(self, fn: Callable[[], None]) -> None:
        if self._failed is not None:
            raise self._failed
        try:
            fn()
        except StorageError as exc:
            self._failed = exc
            raise

    def _raise_unusable(self) -> None:
        if self._failed is not None:
            raise self._failed
        raise StorageError(
            f"the store of run {self.run_id} is not open",
            path=str(self.root),
            hint="call Store.open() before adding, and nothing after close()",
        )
