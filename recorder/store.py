"""The recorder's sink: journal first, then rolling Parquet files (recovery after a crash:
:mod:`kiwoom_tape.recorder.recovery`).

The rows and part files of a segment are :class:`kiwoom_tape.recorder.segment.SegmentRows` (the half of the Store
shared with recovery); the Parquet writer options and temporary names are :mod:`kiwoom_tape.recorder.parquet_parts`.

DESIGN.md "Data layout" and "Reliability" are the spec. One :class:`Store` per ``record`` run::

    store = Store("data", run_id)          # run_id = schemas.layout.new_run_id(time.time_ns(), randbits(24))
    store.open()
    seq = store.add_frame(time.time_ns(), "in", text, rows=real.rows, trnm="REAL")
    store.add_event(time.time_ns(), "login", {"items": 2})
    store.tick()                           # from a timer, every ~100 ms
    store.close()                          # in a finally: every file complete, the journal gone

**The journal is the source of truth.** Every frame (out-frames with the LOGIN token already redacted)
and every event is appended to the journal (:mod:`kiwoom_tape.recorder.journal`) *before* anything is derived from
it. Normalized rows are derived from the frame text by the same code live and in recovery
(:meth:`Store._ingest_frame`), so :func:`recover` writes exactly what the live path would have written.
What a caller passes beside the text (that it decoded rows itself, a ``parse_error`` or ``trnm`` it
determined from session state) is journaled with the frame, so recovery reproduces it too.

**Segments.** A segment is one journal file plus the Parquet part files written for it, one per
(table, KST date) that received rows, named ``part-{run_id}-{segment:06d}.parquet`` in the table's
Hive partition (``kiwoom_tape.schemas.layout``). All tables roll together, to segment + 1, when the Parquet bytes
written for the segment reach ``roll_bytes``, when the segment is ``roll_seconds`` old, or when a
frame or event of another KST date arrives (the roll happens before it is added). Rolling:

1. flush the builders into the open Parquet writers (a row group per flush);
2. sync the journal: everything in the files about to appear is durable in the journal;
3. per file: close the writer of ``.{name}.tmp`` (:func:`tmp_name`: hidden, so that pyarrow.dataset,
   Spark and DuckDB globs skip it while ``record`` runs), fsync it, rename it to ``{name}``, fsync
   the directory;
4. start the next segment's journal; then delete this segment's journal (so a run always has one).

**Crash at any point** leaves complete final Parquet files, maybe ``.tmp`` files (garbage) and journal
segments (the truth for everything not finalized). :func:`recover` replays each segment into its files;
because names are deterministic, a segment whose final files already exist (a crash between step 3
and 4) is rewritten with the same rows: idempotent, no duplicates.

**Read in batches.** :meth:`Store.add_received` journals an in-frame at once and reads it later, with
the next ones (at most ``defer_frames`` of them, or at the next :meth:`Store.tick` or any other call):
frames that trickle in one at a time cost about a third as much read in a batch with warm caches as
read each on its own (bench/README: Record). Only the reading waits, never the journal, so the loss
bound below holds; every other call reads the waiting frames first, so rows keep the frames' order.

**Loss bound.** A ``kill -9`` or power cut loses at most the frames appended in the last
``fsync_interval`` seconds (the journal's buffer), provided :meth:`Store.tick` runs at least that often.

**Errors.** Every ``OSError`` (full disk, unwritable directory) becomes a
:class:`kiwoom_tape.schemas.errors.StorageError` naming the path and the fix. After one, the store is *failed*:
later calls raise it again, :meth:`Store.close` keeps the journal and removes only its own ``.tmp``
files, and nothing already finalized is touched; the next start recovers what the journal holds.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from kiwoom_tape.recorder.derive import _kst_day, _scrub
from kiwoom_tape.recorder.journal import JournalWriter
from kiwoom_tape.recorder.parquet_parts import (
    FRAMES_PAGE_BYTES,
    PARQUET_OPTIONS,
    ROW_GROUP_ORDER,
    TMP_PREFIX,
    _Builders,
    _Part,
    parquet_options,
    tmp_name,
)
from kiwoom_tape.recorder.segment import SegmentRows
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.errors import StorageError
from kiwoom_tape.schemas.normalize import detail_json, read_real_frame
from kiwoom_tape.schemas.protocol import RealRow
from kiwoom_tape.schemas.tables import EVENT_KINDS, TABLE_OF_TYPE, redact_login

__all__ = [
    "FRAMES_PAGE_BYTES",
    "PARQUET_OPTIONS",
    "ROW_GROUP_ORDER",
    "TMP_PREFIX",
    "RecoveryReport",
    "Store",
    "StoreStats",
    "parquet_options",
    "recover",
    "tmp_name",
]

_FAST_TYPES: Final = tuple(TABLE_OF_TYPE)
"""The types :func:`read_real_frame` reads for the store, most frequent first: 0D, 0E, 0B (each has a table)."""

# --------------------------------------------------------------------------------------------------
# Public results


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counters of one :class:`Store` (a snapshot; take a new one with :attr:`Store.stats`)."""

    frames: int
    """Frames added (both directions)."""
    rows: dict[str, int]
    """Rows added per table: ``orderbook``, ``afterhours``, ``trades``, ``events``."""
    parse_errors: int
    """Frames stored with a ``parse_error``."""
    other_rows: int
    """REAL rows of types with no table of their own (kept in ``frames`` only), plus rows beyond 32767."""
    files_written: int
    """Parquet files finalized (renamed into place) by this store."""
    bytes_written: int
    """Bytes of those files."""
    journal_bytes: int
    """Bytes of the open journal segment (written and buffered)."""
    segment: int
    """The open segment's number."""




class Store(SegmentRows):
    """The recorder's sink (module docstring). Not thread-safe: call it from one thread (the event loop).

    ``fsync_interval``: the journal's sync interval, the most a crash can lose (seconds).
    ``flush_rows``: rows buffered per table before they are written as a Parquet row group.
    ``flush_seconds``: buffered rows older than this are written at the next :meth:`tick`.
    ``roll_bytes``: Parquet bytes of a segment (all tables) that start a new segment, checked per flush.
    ``roll_seconds``: age of a segment that starts a new one, checked at :meth:`tick`.
    ``defer_frames``: in-frames :meth:`add_received` holds (journaled) before it reads them as a batch.
    ``clock_ns`` (wall clock, ns) dates the journal headers; ``monotonic`` times every interval. Receive
    times are the caller's: ``add_frame``/``add_event`` take them, so tests can cross a KST midnight.

    Contract: call :meth:`open` (or use ``with``) first; call :meth:`tick` at least every
    ``fsync_interval`` seconds; call :meth:`close` in a ``finally``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        run_id: str,
        *,
        fsync_interval: float = 0.2,
        flush_rows: int = 10_000,
        flush_seconds: float = 60.0,
        roll_bytes: int = 128 * 2**20,
        roll_seconds: float = 3600.0,
        clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        defer_frames: int = 64,
        _recovering: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.defer_frames = max(1, defer_frames)
        self._deferred: list[tuple[int, int, bytes]] = []  # (recv_ns, seq, bytes) journaled, not yet read
        self.run_id = run_id
        self.fsync_interval = fsync_interval
        self.flush_rows = max(1, flush_rows)
        self.flush_seconds = flush_seconds
        self.roll_bytes = roll_bytes
        self.roll_seconds = roll_seconds
        self._clock_ns = clock_ns
        self._monotonic = monotonic
        self._live = _recovering is None
        layout.journal_filename(run_id, 0)  # ValueError now for a bad run id, not at the first roll
        self._segment = 0 if _recovering is None else _recovering
        self._journal: JournalWriter | None = None
        self._seg_date: dt.date | None = None
        self._seg_opened = 0.0
        self._seg_records = 0
        self._parts: dict[tuple[str, dt.date], _Part] = {}
        self._by_date: dict[dt.date, _Builders] = {}
        self._cur = _Builders()
        self._lo = self._hi = 0  # receive-time window of self._cur's date; empty until the first record
        self._seq = 0
        self._pending_frames = 0
        self._pending_rows = 0
        self._last_flush = 0.0
        self._dirs: set[Path] = set()
        self._opened = False
        self._closed = False
        self._failed: StorageError | None = None
        # counters
        self._frames = 0
        self._n_rows = dict.fromkeys(TABLE_OF_TYPE.values(), 0)
        self._n_events = 0
        self._parse_errors = 0
        self._other_rows = 0
        self._files_written = 0
        self._bytes_written = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    def open(self) -> Store:
        """Create the dataset directory and the first journal segment. Raises StorageError."""
        if self._opened:
            return self
        self._opened = True
        try:
            self._ensure_dir(self.root)
            if self._live:
                self._ensure_dir(self.root / layout.JOURNAL_DIR)
                self._start_segment(self._segment)
            else:
                self._seg_opened = self._last_flush = self._monotonic()
        except StorageError as exc:
            self._failed = exc
            self._closed = True
            raise
        return self

    def close(self) -> None:
        """Flush everything, finalize every Parquet file, delete the journal segment. Idempotent.

        After a StorageError (now or earlier) the journal is kept for recovery, and only this store's
        ``.tmp`` files are removed; the error is raised again if it happened here.
        """
        if self._closed or not self._opened:
            self._closed = True
            return
        self._closed = True
        if self._failed is None:
            try:
                self._finish_segment()
                return
            except StorageError as exc:
                self._failed = exc
                self._abandon()
                raise
            except BaseException:
                self._abandon()
                raise
        self._abandon()

    def __enter__(self) -> Store:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def segment(self) -> int:
        return self._segment

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next frame will get."""
        return self._seq

    @property
    def failed(self) -> StorageError | None:
        """The StorageError that stopped this store, if any."""
        return self._failed

    @property
    def stats(self) -> StoreStats:
        j = self._journal
        return StoreStats(
            frames=self._frames,
            rows={**self._n_rows, "events": self._n_events},
            parse_errors=self._parse_errors,
            other_rows=self._other_rows,
            files_written=self._files_written,
            bytes_written=self._bytes_written,
            journal_bytes=0 if j is None else j.size + j.buffered,
            segment=self._segment,
        )

    # -- adding ------------------------------------------------------------------------------------

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
        """Journal and buffer a received REAL frame of well-formed 0D/0E/0B rows, from its bytes; returns its row count.

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

    def tick(self) -> None:
        """Periodic work (call every ~100 ms): journal sync on its interval, flushes, rolls.

        Raises StorageError (the store is then failed).
        """
        if self._failed is not None or self._closed or not self._opened:
            if self._failed is not None:
                raise self._failed
            return
        self._guarded(self._tick)

    def sync(self) -> None:
        """Write and fsync the journal now (everything added so far survives a crash)."""
        if self._failed is not None:
            raise self._failed
        if self._deferred:
            self._guarded(self._drain)
        if self._journal is not None:
            self._guarded(self._journal.sync)

    # -- internals ---------------------------------------------------------------------------------

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

    def _tick(self) -> None:
        if self._deferred:
            self._drain()
        now = self._monotonic()
        if self._journal is not None:
            self._journal.maybe_sync()
        pending = self._pending_frames or self._pending_rows
        if pending and (
            self._pending_frames >= self.flush_rows
            or self._pending_rows >= self.flush_rows
            or now - self._last_flush >= self.flush_seconds
        ):
            self._flush()
        if (
            self._live
            and self._seg_records
            and (now - self._seg_opened >= self.roll_seconds or self._segment_bytes() >= self.roll_bytes)
        ):
            self._roll()

    def _enter(self, recv_ns: int) -> None:
        """Make ``recv_ns``'s KST date current; live, a date other than the segment's rolls first."""
        if not self._opened or self._closed or self._failed is not None:
            return  # add_* raise right after this
        date, lo, hi = _kst_day(recv_ns)
        if self._live and self._seg_date is not None and date != self._seg_date:
            self._guarded(self._roll)
        if self._live:
            self._seg_date = date
        b = self._by_date.get(date)
        if b is None:
            b = self._by_date[date] = _Builders() if self._by_date else self._cur
        self._cur = b
        self._lo, self._hi = lo, hi

    def _flush_and_maybe_roll(self) -> None:
        self._flush()
        if self._live and self._segment_bytes() >= self.roll_bytes:
            self._roll()

    def _start_segment(self, number: int) -> None:
        self._segment = number
        path = self.root / layout.JOURNAL_DIR / layout.journal_filename(self.run_id, number)
        self._journal = JournalWriter(
            path,
            self.run_id,
            number,
            fsync_interval=self.fsync_interval,
            monotonic=self._monotonic,
            created_ns=self._clock_ns(),
        )
        self._seg_date = None
        self._seg_records = 0
        self._seg_opened = self._last_flush = self._monotonic()

    def _roll(self) -> None:
        """Finish the segment, start the next one, then delete the finished journal: a run always has a
        journal on disk until it stops cleanly, so a crash at any instant leaves one (recovery gives it
        its crash gap; finished files are rewritten with the same rows, idempotent)."""
        old = self._journal
        self._finish_segment(keep_journal=True)
        try:
            self._start_segment(self._segment + 1)
        finally:
            if old is not None:
                if self._journal is not None:
                    old.remove()
                else:
                    old.close()  # the next journal could not be created: keep this one for recovery


from kiwoom_tape.recorder.recovery import RecoveryReport, recover  # noqa: E402  # re-exported; recovery imports Store
