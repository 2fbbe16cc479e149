"""The crash-safe journal: every frame and event, appended before anything is derived from it.

A journal *segment* is one file ``DIR/_journal/{run_id}-{segment:06d}.journal`` (``kiwoom_tape.schemas.layout``).
It holds the source of truth for everything not yet in a closed Parquet file: the raw frames (both
directions, the LOGIN frame already redacted) and the events. Normalized rows are never journaled;
recovery derives them again from the frames with the same code as the live path (``kiwoom_tape.recorder.store``).

File format (little-endian)::

    header   "KTAPEJNL" | u16 version | u16 len(run_id) | u32 segment | i64 created_ns | run_id utf-8
             | u32 crc32(all header bytes before it)
    record   u32 length | u32 crc32(payload) | payload[length]
    payload  frame: u8 1 | i64 recv_ns | i64 seq | u8 direction (0 in, 1 out) | u8 flags
                    | [u32 n | parse_error utf-8, if flags & 2] | [u16 n | trnm utf-8, if flags & 4]
                    | text (the rest: the frame's bytes as received, UTF-8)
                    flags & 1: the caller passed decoded rows (recovery decodes the text again)
             event: u8 2 | i64 recv_ns | u8 flags | [i64 return_code, if flags & 1] | u16 n | kind utf-8
                    | detail (the rest: a JSON object, UTF-8)

Durability contract of :class:`JournalWriter`: appends are buffered in memory; the buffer is written
and ``fdatasync``-ed (:func:`kiwoom_tape.portable.datasync`) when ``fsync_interval`` has passed since
the last sync (checked on every append), when it holds more than ``max_buffer`` bytes, and on
:meth:`JournalWriter.sync` and :meth:`JournalWriter.close`. The driver must also call
:meth:`JournalWriter.sync` (through ``Store.tick``) from a periodic timer, so that a quiet stream is
synced too: a ``kill -9`` or a power cut then loses at most the records appended during the last
``fsync_interval`` seconds.

With ``background=True`` (the live Store's journals) the timed syncs run on a worker thread
(:mod:`kiwoom_tape.recorder.journal_sync`): the filled buffer is handed off and appends go on into a second
one, at most one write+fdatasync in flight, so the file keeps the order. The bound becomes
``fsync_interval`` plus the time of one write+fdatasync (two when the disk is slower than the interval: the
next hand-off waits until the one in flight is done). :meth:`JournalWriter.sync`, :meth:`JournalWriter.close`
and recovery stay synchronous: they wait for the one in flight and write the rest themselves.

A crash can leave a torn tail (a record cut short or half-written), a bad disk a damaged range
anywhere. :func:`scan_journal` and :func:`read_journal` (:mod:`kiwoom_tape.recorder.journal_reader`) skip every
unreadable range and resynchronise on the next valid record; :meth:`JournalWriter.resume` copies every
such range to ``{journal}.torn`` before recovery appends to the file, so no byte is ever dropped unseen.

The encoding lives in :mod:`kiwoom_tape.recorder.journal_format`, the reading in
:mod:`kiwoom_tape.recorder.journal_reader`, the file operations under the writer (locking, whole writes, keeping
damaged ranges in ``.torn`` files) in :mod:`kiwoom_tape.recorder.journal_io`; this module is the writer and
re-exports the first two.

Every ``OSError`` is translated once, here, into :class:`kiwoom_tape.schemas.errors.StorageError` naming the path,
the system's reason and how to fix it (:func:`storage_error`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from kiwoom_tape.recorder.journal_format import (
    JOURNAL_SUFFIX,
    MAGIC,
    MAX_RECORD_BYTES,
    NEW_SUFFIX,
    TORN_SUFFIX,
    VERSION,
    EventRecord,
    FrameRecord,
    JournalBusy,
    JournalFormatError,
    JournalHeader,
    Record,
    _frame_parts,
    encode_event,
    encode_frame,
    encode_header,
    fsync_dir,
    storage_error,
)
from kiwoom_tape.recorder.journal_io import close_fd, lock_journal, save_damage, torn_path, write_all
from kiwoom_tape.recorder.journal_reader import (
    Damage,
    JournalContents,
    JournalScan,
    iter_journal,
    iter_journal_at,
    read_journal,
    scan_journal,
)
from kiwoom_tape.recorder.journal_sync import BackgroundSync
from kiwoom_tape.schemas.errors import StorageError

from kiwoom_tape import portable

__all__ = [
    "JOURNAL_SUFFIX",
    "MAGIC",
    "MAX_RECORD_BYTES",
    "NEW_SUFFIX",
    "TORN_SUFFIX",
    "VERSION",
    "Damage",
    "EventRecord",
    "FrameRecord",
    "JournalBusy",
    "JournalContents",
    "JournalFormatError",
    "JournalHeader",
    "JournalScan",
    "JournalWriter",
    "Record",
    "encode_event",
    "encode_frame",
    "encode_header",
    "fsync_dir",
    "iter_journal",
    "iter_journal_at",
    "read_journal",
    "scan_journal",
    "storage_error",
]

class JournalWriter:
    """Appends records to one journal segment; see the module docstring for the durability contract.

    Creating a writer creates the file (never overwriting one), writes and fsyncs its header and the
    directory entry, and takes an exclusive ``flock`` on it so that recovery (in this or another
    process) leaves a live journal alone. After :meth:`close`, the caller must either keep the file
    (its records are not in closed Parquet files yet) or :meth:`remove` it once they are.

    After a write error the writer is *failed*: every later call raises the same StorageError; what
    was synced before stays valid and a partly written tail is cut off by recovery.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        run_id: str,
        segment: int,
        *,
        fsync_interval: float = 0.2,
        max_buffer: int = 4 * 2**20,
        monotonic: Callable[[], float] = time.monotonic,
        created_ns: int | None = None,
        background: bool = False,
        _fd: int | None = None,
        _size: int = 0,
    ) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.segment = segment
        self.fsync_interval = fsync_interval
        self.max_buffer = max_buffer
        self._monotonic = monotonic
        # Appends are copied into one buffer that is reused from sync to sync (it only grows, to the
        # largest amount buffered between two syncs): no allocation per sync, so the heap does not
        # fragment over a long run (docs/benchmarks.md: RSS of record).
        self._arena = bytearray(1 << 18)
        self._buffered = 0
        self._failed: StorageError | None = None
        self.closed = False
        self.frames = 0
        self.events = 0
        self._bg: BackgroundSync | None = None
        self._bg_unseen = False  # a background sync failed and no call raised it yet
        if _fd is not None:
            self._fd = _fd
            self.size = _size
            self._last_sync = monotonic()
            return
        head = encode_header(run_id, segment, time.time_ns() if created_ns is None else created_ns)
        # Written and locked under a temporary name, then renamed: a ``.journal`` file always has a
        # complete header, and recovery can never open it before its writer holds the lock.
        tmp = self.path.with_name(self.path.name + NEW_SUFFIX)
        if self.path.exists():
            raise StorageError(
                f"journal {self.path} already exists",
                path=str(self.path),
                hint="recover the dataset first (record recover DIR) or use a new run id",
            )
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | portable.OPEN_FLAGS, 0o644)
        except OSError as exc:
            raise storage_error(exc, tmp, "create the journal") from exc
        try:
            lock_journal(fd, tmp)
            write_all(fd, head)
            portable.datasync(fd)
            if not portable.RENAMES_OPEN_FILES:
                fd = close_fd(fd)
            os.rename(tmp, self.path)
            fsync_dir(self.path.parent)
            if fd < 0:
                fd = self._reopen_locked()
        except OSError as exc:
            close_fd(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise storage_error(exc, self.path, "create the journal") from exc
        self._fd = fd
        self.size = len(head)
        self._last_sync = monotonic()
        if background:
            self._bg = BackgroundSync(fd, self._failed_in_background)

    def _reopen_locked(self) -> int:
        """Where an open file cannot be renamed (Windows): open the new journal again and lock it.

        Between the rename and this lock the journal is complete but unlocked: a recovery starting in
        that instant may take it first (a journal with no record), and this raises JournalBusy: the
        recorder fails to start with a clear error, nothing recorded yet, nothing lost.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | portable.OPEN_FLAGS)
        try:
            lock_journal(fd, self.path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike[str],
        *,
        fsync_interval: float = 0.2,
        monotonic: Callable[[], float] = time.monotonic,
        keep_damage: bool = True,
    ) -> tuple[JournalWriter, JournalScan]:
        """Lock an existing journal, keep its unreadable ranges aside, and return a writer appending to it.

        Every damaged range (``scan.damage``: a torn tail, or corruption anywhere, any size) is first
        copied, in file order, to ``{path}.torn`` (:func:`kiwoom_tape.recorder.journal_io.save_damage`;
        skipped with ``keep_damage`` False, for a half-created journal about to be deleted). Nothing is
        cut off: the bytes stay in place and readers skip them, so a recovery interrupted and run again
        finds the same ranges. Records appended go after the last byte of the file. Raises JournalBusy if
        a live recorder (or another recovery) holds it, JournalFormatError if it is not a journal. The
        caller must :meth:`close` or :meth:`remove` the writer.
        """
        p = Path(path)
        try:
            fd = os.open(p, os.O_RDWR | os.O_APPEND | portable.OPEN_FLAGS)
        except OSError as exc:
            raise storage_error(exc, p, "open the journal") from exc
        try:
            lock_journal(fd, p)
            scan = scan_journal(p)
            if scan.damage and keep_damage:
                save_damage(fd, scan.damage, torn_path(p))
        except OSError as exc:
            os.close(fd)
            raise storage_error(exc, p, "keep the damaged part of the journal") from exc
        except BaseException:
            os.close(fd)
            raise
        header = scan.header
        run_id, segment = (header.run_id, header.segment) if header is not None else ("", 0)
        w = cls(p, run_id, segment, fsync_interval=fsync_interval, monotonic=monotonic, _fd=fd, _size=scan.size)
        w.frames, w.events = scan.frames, scan.events
        return w, scan

    # -- appending ---------------------------------------------------------------------------------

    def append_frame(
        self,
        recv_ns: int,
        seq: int,
        direction: str,
        data: bytes,
        *,
        has_rows: bool = False,
        parse_error: str | None = None,
        trnm: str | None = None,
    ) -> None:
        """Buffer one frame record (``data`` = the frame's UTF-8 bytes); syncs if the interval passed."""
        if self._failed is not None or self.closed:
            self._raise_closed()
        head, tail = _frame_parts(recv_ns, seq, direction, data, has_rows, parse_error, trnm)
        pos = self._buffered
        mid = pos + len(head)
        end = mid + len(tail)
        if end > len(self._arena):
            self._grow(end)
        arena = self._arena
        arena[pos:mid] = head
        arena[mid:end] = tail
        self._buffered = end
        self.frames += 1
        if self._monotonic() - self._last_sync >= self.fsync_interval or end >= self.max_buffer:
            self._timed_sync()

    def append_event(self, recv_ns: int, kind: str, detail_json: str, return_code: int | None = None) -> None:
        """Buffer one event record (``detail_json`` = a JSON object's text)."""
        if self._failed is not None or self.closed:
            self._raise_closed()
        rec = encode_event(recv_ns, kind, detail_json, return_code)
        pos = self._buffered
        end = pos + len(rec)
        if end > len(self._arena):
            self._grow(end)
        self._arena[pos:end] = rec
        self._buffered = end
        self.events += 1
        if self._monotonic() - self._last_sync >= self.fsync_interval:
            self._timed_sync()

    def maybe_sync(self) -> None:
        """:meth:`sync` if ``fsync_interval`` has passed since the last sync (call it from a timer)."""
        if self._failed is not None:
            self._raise_closed()
        if self._buffered and self._monotonic() - self._last_sync >= self.fsync_interval:
            self._timed_sync()

    @property
    def buffered(self) -> int:
        """Bytes appended but not yet written and synced (in flight on a worker included)."""
        return self._buffered + (self._bg.inflight if self._bg is not None else 0)

    def _timed_sync(self) -> None:
        """The interval passed (or the buffer is full): :meth:`sync`, or hand the buffer to the worker."""
        bg = self._bg
        if bg is None:
            self.sync()
            return
        if bg.busy and self._buffered < self.max_buffer:
            return  # one in flight: hand off at the next append or tick after it is done
        self._wait_background()  # the one before is done (or the buffer is full: wait for it)
        self._last_sync = self._monotonic()
        if self._buffered:
            self._arena = bg.submit(self._arena, self._buffered)
            self._buffered = 0

    def _wait_background(self) -> None:
        """Wait for the background write+fdatasync in flight; raise its StorageError if it failed."""
        if self._bg is not None:
            self.size += self._bg.wait()
        if self._failed is not None:
            self._raise_closed()

    def _failed_in_background(self, exc: OSError) -> None:
        """On the worker: fail the journal (the next append, sync or close raises this)."""
        err = storage_error(exc, self.path, "write the journal")
        err.__cause__ = exc
        self._bg_unseen = True  # first: a call that raises _failed as soon as it is set marks it seen
        self._failed = err

    def sync(self) -> None:
        """Write the buffer and fdatasync: everything appended so far survives a crash after this returns."""
        if self.closed and self._failed is None:
            return
        self._wait_background()
        self._last_sync = self._monotonic()
        size = self._buffered
        if not size:
            return
        self._buffered = 0
        try:
            with memoryview(self._arena) as view:
                write_all(self._fd, view[:size])
            portable.datasync(self._fd)
        except OSError as exc:
            self._failed = storage_error(exc, self.path, "write the journal")
            raise self._failed from exc
        self.size += size

    def _grow(self, need: int) -> None:
        """Make the buffer hold ``need`` bytes (doubling; kept for the writer's life)."""
        new = len(self._arena)
        while new < need:
            new *= 2
        self._arena.extend(bytes(new - len(self._arena)))

    def close(self) -> None:
        """Sync and close; the file stays (its records are the truth until they are in Parquet).

        Raises the StorageError of a background sync that failed unseen (no call raised it yet).
        """
        if self.closed:
            return
        try:
            if self._failed is None or self._bg_unseen:
                self.sync()
        finally:
            self._close_fd()

    def abandon(self) -> None:
        """Close without writing the buffer (after a failure): what was synced stays on disk."""
        if not self.closed:
            self._buffered = 0
            self._close_fd()

    def _close_fd(self) -> None:
        """Mark closed and close the file, once no worker writes to it."""
        self.closed = True
        if self._bg is not None:
            self.size += self._bg.wait()
        os.close(self._fd)

    def remove(self) -> None:
        """Delete the segment (its contents are in closed Parquet files now) and fsync the directory.

        Call only after every Parquet file derived from this segment has been renamed into place.
        Records still buffered are discarded.
        """
        self._buffered = 0
        if not portable.RENAMES_OPEN_FILES and not self.closed:
            # Windows cannot delete an open file: close first. A recovery that takes the journal in
            # between finds every Parquet file already in place and redoes nothing twice (idempotent).
            self._close_fd()
        try:
            os.unlink(self.path)  # while still holding the lock (POSIX): no recovery can pick it up half-way
            fsync_dir(self.path.parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise storage_error(exc, self.path, "delete the finished journal") from exc
        finally:
            if not self.closed:
                self._close_fd()

    def _raise_closed(self) -> None:
        if self._failed is not None:
            self._bg_unseen = False
            raise self._failed
        raise StorageError(
            f"journal {self.path} is closed", path=str(self.path), hint="this is a bug; please report it"
        )
