"""The recorder's sink: journal first, then rolling Parquet files (recovery after a crash:
:mod:`kiwoom_tape.recorder.recovery`).

The Store is three layers, one idea each: :class:`kiwoom_tape.recorder.intake.Intake` takes frames and events
(journal first, reading in batches), :class:`kiwoom_tape.recorder.segment.SegmentRows` turns them into the rows and
part files of a segment (the half shared with recovery), and this module adds the lifecycle, the clock
and the rolls. The Parquet writer options and temporary names are :mod:`kiwoom_tape.recorder.parquet_parts`.

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
(:meth:`Store._ingest_frame`), so :func:`~kiwoom_tape.recorder.recovery.recover` writes exactly what the live path
would have written.
What a caller passes beside the text (that it decoded rows itself, a ``parse_error`` or ``trnm`` it
determined from session state) is journaled with the frame, so recovery reproduces it too.

**Segments.** A segment is one journal file plus the Parquet part files written for it, one per
(table, KST date) that received rows, named ``part-{run_id}-{segment:06d}.parquet`` in the table's
Hive partition (``kiwoom_tape.schemas.layout``). All tables roll together, to segment + 1, when the Parquet bytes
written for the segment reach ``roll_bytes``, when the segment is ``roll_seconds`` old, or when a
frame or event of another KST date arrives (the roll happens before it is added). Rolling:

1. flush the builders into the open Parquet writers (a row group per flush);
2. sync the journal: everything in the files about to appear is durable in the journal;
3. per file: close the writer of ``_tmp/{table}.{date}.{name}.tmp``
(:func:`kiwoom_tape.schemas.layout.staging_filename`:
   outside the table folders, so that every reader of a table, polars and DuckDB ``**`` globs included,
   sees only complete files while ``record`` runs), fsync it, rename it to ``{table}/date={date}/{name}``
   (same filesystem: atomic), fsync that directory;
4. start the next segment's journal; then delete this segment's journal (so a run always has one).

**Crash at any point** leaves complete final Parquet files, maybe files in ``_tmp/`` (garbage) and journal
segments (the truth for everything not finalized). :func:`~kiwoom_tape.recorder.recovery.recover` replays each segment
into its files;
because names are deterministic, a segment whose final files already exist (a crash between step 3
and 4) is rewritten with the same rows: idempotent, no duplicates.

Frames read in batches (:meth:`Store.add_received`) are described in :mod:`kiwoom_tape.recorder.intake`.

**Loss bound.** A ``kill -9`` or power cut loses at most the frames appended in the last
``fsync_interval`` seconds plus one write+fdatasync (the journal's buffers: the timed syncs run on a worker
thread, :mod:`kiwoom_tape.recorder.journal_sync`), provided :meth:`Store.tick` runs at least that often.

**Errors.** Every ``OSError`` (full disk, unwritable directory) becomes a
:class:`kiwoom_tape.schemas.errors.StorageError` naming the path and the fix. After one, the store is *failed*:
later calls raise it again, :meth:`Store.close` keeps the journal and removes only its own files in
``_tmp/``, and nothing already finalized is touched; the next start recovers what the journal holds.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from kiwoom_tape.recorder.derive import _kst_day
from kiwoom_tape.recorder.intake import Intake
from kiwoom_tape.recorder.journal import JournalWriter
from kiwoom_tape.recorder.parquet_parts import (
    FRAMES_PAGE_BYTES,
    PARQUET_OPTIONS,
    ROW_GROUP_ORDER,
    _Builders,
    _Part,
    parquet_options,
)
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.errors import StorageError
from kiwoom_tape.schemas.tables import TABLE_OF_TYPE

__all__ = [
    "FRAMES_PAGE_BYTES",
    "PARQUET_OPTIONS",
    "ROW_GROUP_ORDER",
    "Store",
    "StoreStats",
    "parquet_options",
]

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


class Store(Intake):
    """The recorder's sink (module docstring). Not thread-safe: call it from one thread (the event loop).

    ``fsync_interval``: the journal's sync interval, the most a crash can lose (seconds).
    ``flush_rows``: rows buffered per table before they are written as a Parquet row group.
    ``flush_seconds``: buffered rows older than this are written at the next :meth:`tick`.
    ``roll_bytes``: Parquet bytes of a segment (all tables) that start a new segment, checked per flush.
    ``roll_seconds``: age of a segment that starts a new one, checked at :meth:`tick`.
    ``defer_frames``: in-frames :meth:`add_received` holds (journaled) before it reads them as a batch.
    ``stagger`` (0 to 1): the first flush and the first roll come this fraction of ``flush_rows``,
    ``flush_seconds`` and ``roll_seconds`` early. ``record --keys`` gives its N stores k/N: they start
    together at about the same rate, and N flushes at one moment stalled the one event loop for seconds.
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
        stagger: float = 0.0,
        _recovering: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.defer_frames = max(1, defer_frames)
        self.stagger = min(max(stagger, 0.0), 0.999)
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
                # the first flush and roll early (class docstring): counters and clocks start part way
                self._pending_frames = self._pending_rows = int(self.stagger * self.flush_rows)
                self._last_flush -= self.stagger * self.flush_seconds
                self._seg_opened -= self.stagger * self.roll_seconds
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
        files in ``_tmp/`` are removed; the error is raised again if it happened here.
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
            background=True,  # the timed syncs off the event loop (kiwoom_tape.recorder.journal_sync)
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


