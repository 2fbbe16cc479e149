"""The Parquet side of a store's segment: journaled records turned into rows, rows into the segment's part files.

:class:`SegmentRows` is the half of :class:`kiwoom_tape.recorder.store.Store` that buffers the rows of each frame and
event per KST date (:meth:`SegmentRows._ingest_frame`: the same code live and in recovery, so that
:func:`kiwoom_tape.recorder.recovery.recover` stores exactly what the live path stored), writes them as row groups of
the segment's part files (:meth:`SegmentRows._flush`) and finalizes those (:meth:`SegmentRows._finish_segment`,
steps 1-4 of a roll in :mod:`kiwoom_tape.recorder.store`). The Store adds the journal, the clock, the batching and the
rolls.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from kiwoom_tape.recorder.derive import _resolve
from kiwoom_tape.recorder.journal import EventRecord, FrameRecord, JournalWriter, fsync_dir, storage_error
from kiwoom_tape.recorder.parquet_parts import ROW_GROUP_ORDER, _Builders, _Part
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.errors import StorageError
from kiwoom_tape.schemas.normalize import ParsedRow
from kiwoom_tape.schemas.protocol import RealRow
from kiwoom_tape.schemas.tables import TABLE_OF_TYPE

__all__ = ["SegmentRows"]

_MAX_ROW_IDX: Final = (1 << 15) - 1


class SegmentRows:
    """Rows and part files of the open segment (module docstring); the attributes are the Store's."""

    root: Path
    run_id: str
    flush_rows: int
    _monotonic: Callable[[], float]
    _segment: int
    _journal: JournalWriter | None
    _parts: dict[tuple[str, dt.date], _Part]
    _by_date: dict[dt.date, _Builders]
    _cur: _Builders
    _lo: int
    _hi: int
    _seq: int
    _pending_frames: int
    _pending_rows: int
    _last_flush: float
    _dirs: set[Path]
    _deferred: list[tuple[int, int, bytes]]
    _frames: int
    _n_rows: dict[str, int]
    """Rows buffered so far per normalized table (the values of :data:`kiwoom_tape.schemas.tables.TABLE_OF_TYPE`)."""
    _n_events: int
    _parse_errors: int
    _other_rows: int
    _files_written: int
    _bytes_written: int

    def _drain(self) -> None:
        """Buffer the frames journaled but not yet read (the Store's)."""
        raise NotImplementedError

    def _enter(self, recv_ns: int) -> None:
        """Make ``recv_ns``'s KST date current (the Store's)."""
        raise NotImplementedError

    def _buffer_parsed(self, recv_ns: int, seq: int, data: bytes, rows: Sequence[ParsedRow]) -> None:
        """Buffer a journaled REAL frame and the rows :func:`read_real_frame` read from it."""
        b = self._cur
        run_id = self.run_id
        b.frames.append(recv_ns, run_id, seq, "in", data, None, "REAL")
        self._frames += 1
        self._pending_frames += 1
        typed, counts = b.typed, self._n_rows
        n_rows = 0
        for idx, row in enumerate(rows):
            table = row.table
            if idx > _MAX_ROW_IDX or table is None:  # a type without a table: only in ``frames``
                self._other_rows += 1
            else:
                typed[table].append_parsed(recv_ns, run_id, seq, idx, row)
                counts[table] += 1
                n_rows += 1
        self._pending_rows += n_rows

    def _ingest_frame(
        self,
        recv_ns: int,
        seq: int,
        direction: str,
        text: str,
        rows: Sequence[RealRow] | None,
        has_rows: bool,
        parse_error: str | None,
        trnm: str | None,
    ) -> None:
        """Buffer one journaled frame: the frames row and its normalized rows. Shared with recovery."""
        if not (has_rows and rows is not None and trnm is not None and parse_error is None and direction == "in"):
            rows, trnm, parse_error = _resolve(direction, text, rows, has_rows, parse_error, trnm)
        b = self._cur
        run_id = self.run_id
        b.frames.append(recv_ns, run_id, seq, direction, text, parse_error, trnm)
        self._frames += 1
        self._pending_frames += 1
        if parse_error is not None:
            self._parse_errors += 1
        if rows:
            typed, counts = b.typed, self._n_rows
            n_rows = 0
            for idx, row in enumerate(rows):
                table = TABLE_OF_TYPE.get(row.type)
                if idx > _MAX_ROW_IDX or table is None:
                    self._other_rows += 1
                else:
                    typed[table].append(recv_ns, run_id, seq, idx, row.item, row.values)
                    counts[table] += 1
                    n_rows += 1
            self._pending_rows += n_rows

    def _ingest_event(self, recv_ns: int, kind: str, detail_text: str, return_code: int | None) -> None:
        self._cur.events.append(recv_ns, self.run_id, kind, detail_text, return_code)
        self._n_events += 1
        self._pending_rows += 1

    def _replay(self, rec: FrameRecord | EventRecord) -> None:
        """Recovery: ingest one journal record exactly as the live path did."""
        if rec.recv_ns < self._lo or rec.recv_ns >= self._hi:
            self._enter(rec.recv_ns)
        if isinstance(rec, FrameRecord):
            text = rec.text.decode("utf-8", "replace")
            self._seq = max(self._seq, rec.seq + 1)
            self._ingest_frame(rec.recv_ns, rec.seq, rec.direction, text, None, rec.has_rows, rec.parse_error, rec.trnm)
        else:
            self._ingest_event(rec.recv_ns, rec.kind, rec.detail_json, rec.return_code)
        if self._pending_frames >= self.flush_rows or self._pending_rows >= self.flush_rows:
            self._flush()

    def _ensure_dir(self, path: Path) -> None:
        """mkdir -p, fsyncing the parent of every directory created (so the entries survive a power cut)."""
        if path in self._dirs:
            return
        missing: list[Path] = []
        p = path
        while not p.is_dir():
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        try:
            for d in reversed(missing):
                try:
                    os.mkdir(d)
                except FileExistsError:
                    if not d.is_dir():
                        raise
                fsync_dir(d.parent)
            if not os.access(path, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied", str(path))
        except OSError as exc:
            raise storage_error(exc, path, "create the directory") from exc
        self._dirs.add(path)

    def _part(self, table: str, date: dt.date) -> _Part:
        key = (table, date)
        part = self._parts.get(key)
        if part is None:
            d = Path(layout.partition_dir(str(self.root), table, date))
            self._ensure_dir(d)
            staging = self.root / layout.STAGING_DIR
            self._ensure_dir(staging)
            name = layout.part_filename(self.run_id, self._segment, table)
            part = self._parts[key] = _Part(table, d / name, staging / layout.staging_filename(table, date, name))
        return part

    def _flush(self) -> None:
        """Write every non-empty builder as a row group of its (table, date) file (reading what waits first)."""
        if self._deferred:
            self._drain()
        for date, builders in self._by_date.items():
            for table, builder in builders.items():
                if len(builder):
                    batch = builder.flush()
                    order = ROW_GROUP_ORDER.get(table)
                    if order is not None:
                        batch = batch.sort_by([(c, "ascending") for c in order])
                    self._part(table, date).write(batch)
        self._pending_frames = self._pending_rows = 0
        self._last_flush = self._monotonic()

    def _segment_bytes(self) -> int:
        return sum(p.nbytes for p in self._parts.values())

    def _finish_segment(self, *, keep_journal: bool = False) -> list[Path]:
        """Steps 1-4 of a roll (module docstring): afterwards the segment is only final Parquet files.

        With ``keep_journal`` step 4 is left to the caller: the journal stays open and locked (and is
        no longer the store's) until the next segment's journal exists (:meth:`_roll`).
        """
        self._flush()
        j = self._journal
        if j is not None:
            j.sync()
        finals: list[Path] = []
        for key in sorted(self._parts):
            part = self._parts[key]
            size = part.finalize()
            del self._parts[key]
            self._files_written += 1
            self._bytes_written += size
            finals.append(part.final)
        if j is not None and not keep_journal:
            j.remove()
        self._journal = None
        self._by_date.clear()
        self._lo = self._hi = 0
        return finals

    def _abandon(self) -> None:
        """After a failure: keep the journal (close it, syncing what it can), drop our files in ``_tmp/``."""
        for part in self._parts.values():
            part.abandon()
        self._parts.clear()
        j = self._journal
        self._journal = None
        if j is not None:
            try:
                j.close()
            except StorageError:
                j.abandon()
