"""Reading a :class:`Recording`'s REAL frames in a time window, merged across runs, ahead of the event loop.

A :class:`Cursor` yields the REAL frames (``direction = 'in'``, ``trnm = 'REAL'``) received in
``[lo, hi)`` in the order of ``(recv_ts, run_id, seq)``: each run's part files are read in segment
order, in record batches of ``batch_rows`` (never a whole day of Python objects), skipping the row groups
whose ``recv_ts`` statistics lie outside the window (a seek does not read the morning to get to the
afternoon), and runs that overlap in time are merged by receive time. A :class:`Feed` runs a cursor in a
worker thread of its own (one read at a time, so decompression does not stall the event loop), turns
each table into Python lists of receive times and frame bytes (the recorded UTF-8, never decoded to
``str``) and keeps at most two of them queued; :meth:`Feed.seek` starts a new cursor and drops what the
old one read.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from kiwoom_tape.replay.recording import COLUMNS, PartFile, Recording
from kiwoom_tape.schemas.errors import DatasetError
from kiwoom_tape.schemas.versions import recv_ns_of

__all__ = ["Batch", "Cursor", "Feed"]

Batch = tuple[list[int], list[bytes | None]]
"""Receive times (epoch ns) and frame texts (UTF-8 bytes) of a run of frames, as Python lists."""


class _RunReader:
    """One run's REAL frames in [lo, hi), file after file, as small Arrow tables (recv_ts int64, ...)."""

    def __init__(self, parts: Sequence[PartFile], lo: int, hi: int, batch_rows: int) -> None:
        self._plan = [(p, [i for i, mn, mx in p.groups if mx >= lo and mn < hi]) for p in parts]
        self._plan = [(p, groups) for p, groups in self._plan if groups]
        self._lo, self._hi = lo, hi
        self._batch_rows = batch_rows
        self._file: pq.ParquetFile | None = None
        self._part: PartFile = parts[0] if parts else PartFile(Path(), "", 0, ())
        self._batches: Iterator[pa.RecordBatch] | None = None
        self.done = False

    def next_table(self) -> pa.Table | None:
        """The next non-empty filtered table, or None (and ``done``) at the end."""
        while not self.done:
            if self._batches is None:
                if not self._plan:
                    self.close()
                    self.done = True
                    return None
                part, groups = self._plan.pop(0)
                self._part = part
                try:
                    self._file = pq.ParquetFile(part.path)
                    sub = ["recv_sub_us"] if "recv_sub_us" in self._file.schema_arrow.names else []  # schema v2
                    self._batches = self._file.iter_batches(  # decoded in this (background) thread
                        batch_size=self._batch_rows, row_groups=groups, columns=[*COLUMNS, *sub], use_threads=False
                    )
                except (OSError, pa.ArrowException) as exc:
                    raise DatasetError(f"cannot read {part.path}: {exc}", hint="move the file aside") from None
            try:
                batch = next(self._batches, None)
            except (OSError, pa.ArrowException) as exc:
                raise DatasetError(f"cannot read {self._part.path}: {exc}", hint="move the file aside") from None
            if batch is None:
                self._close_file()
                continue
            ts = recv_ns_of(batch)  # the exact receive ns of either schema version
            mask = pc.and_(
                pc.and_(pc.equal(batch.column("direction"), "in"), pc.equal(batch.column("trnm"), "REAL")),
                pc.and_(pc.greater_equal(ts, self._lo), pc.less(ts, self._hi)),
            )
            table = pa.Table.from_arrays(
                [ts, batch.column("run_id"), batch.column("seq"), batch.column("text")],
                names=["recv_ts", "run_id", "seq", "text"],
            ).filter(mask)
            if table.num_rows:
                return table
        return None

    def _close_file(self) -> None:
        self._batches = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        self._plan = []
        self._close_file()


class Cursor:
    """The merged REAL frames of every run in [lo, hi), as tables sorted by (recv_ts, run_id, seq).

    Used from one worker thread at a time; :meth:`close` may be called from any thread (it waits for
    a read in progress).
    """

    def __init__(self, recording: Recording, lo: int, hi: int, batch_rows: int) -> None:
        self._args = (recording, lo, hi, batch_rows)
        self._runs: list[_RunReader] | None = None
        self._bufs: list[pa.Table | None] = []
        self._lock = threading.Lock()
        self._closed = False

    def read(self) -> pa.Table | None:
        """The next table (columns recv_ts int64, text), or None at the end."""
        with self._lock:
            if self._closed:
                return None
            if self._runs is None:
                recording, lo, hi, batch_rows = self._args
                self._runs = [_RunReader(parts, lo, hi, batch_rows) for parts in recording.runs]
                self._bufs = [None] * len(self._runs)
            return self._merge(self._runs)

    def _merge(self, runs: list[_RunReader]) -> pa.Table | None:
        bufs = self._bufs
        for i, run in enumerate(runs):
            if bufs[i] is None and not run.done:
                bufs[i] = run.next_table()
        tables = [(i, b) for i, b in enumerate(bufs) if b is not None]
        if not tables:
            return None
        if len(tables) == 1:  # every other run is done
            i, out = tables[0]
            bufs[i] = None
            return out.select(["recv_ts", "text"])
        # A run that is not done has rows buffered (a run is done only once its buffer is empty). What
        # is at or before the earliest of the buffers' last receive times can go out now, sorted; the
        # rest waits for the next tables of the runs that ran out.
        watermark = min(b.column("recv_ts")[-1].as_py() for _, b in tables)
        parts = []
        for i, b in tables:
            early = pc.less_equal(b.column("recv_ts"), watermark)
            parts.append(b.filter(early))
            rest = b.filter(pc.invert(early))
            bufs[i] = rest if rest.num_rows else None
        merged = pa.concat_tables(parts).sort_by([("recv_ts", "ascending"), ("run_id", "ascending"),
                                                  ("seq", "ascending")])
        return merged.select(["recv_ts", "text"])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for run in self._runs or ():
                run.close()
            self._runs = []
            self._bufs = []


def read_batch(cursor: Cursor) -> Batch | None:
    """The cursor's next table as Python lists (in the worker thread: the event loop only swaps them in)."""
    table = cursor.read()
    if table is None:
        return None
    text = table.column("text")
    binary = pa.large_binary() if pa.types.is_large_string(text.type) else pa.binary()
    return table.column("recv_ts").to_pylist(), text.cast(binary).to_pylist()  # the exact bytes, never decoded


class Feed:
    """The frames of ``recording`` from a start time to ``end_ns`` (exclusive), read ahead in a worker thread.

    Use from the event loop: :meth:`open`, then run :meth:`produce` as a task while reading with
    :meth:`next`; :meth:`seek` restarts the read elsewhere; :meth:`close` when done (in ``finally``).
    """

    def __init__(self, recording: Recording, end_ns: int, batch_rows: int) -> None:
        self.recording = recording
        self.end_ns = end_ns
        self.batch_rows = batch_rows
        self._gen = 0
        """The seek generation: a queued batch of an older one is stale."""
        self._cursor: Cursor | None = None
        self._reading: Cursor | None = None
        self._seeked: asyncio.Event | None = None
        self._queue: asyncio.Queue[tuple[int, Batch | None]] | None = None
        self._reader: ThreadPoolExecutor | None = None

    @property
    def opened(self) -> bool:
        """Whether :meth:`open` was called (a seek needs it)."""
        return self._queue is not None

    def open(self, lo: int) -> None:
        """Start reading at ``lo`` (epoch ns): make the queue, the first cursor and the worker thread."""
        self._seeked = asyncio.Event()
        self._queue = asyncio.Queue(maxsize=2)
        self._cursor = self._new_cursor(lo)
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="replay-reader")

    def close(self) -> None:
        """Close the current cursor and let the worker thread go (a read in progress finishes on its own)."""
        if self._cursor is not None:
            self._cursor.close()
        if self._reader is not None:
            self._reader.shutdown(wait=False, cancel_futures=True)

    def seek(self, lo: int) -> None:
        """Read from ``lo`` on: what is queued is dropped, and a batch still being read will be."""
        assert self._queue is not None and self._seeked is not None
        self._gen += 1
        old = self._cursor
        self._cursor = self._new_cursor(lo)
        if old is not None and old is not self._reading:
            old.close()  # never opened, or finished: closing does not wait
        while not self._queue.empty():  # stale tables; the producer may still add one, tagged stale
            self._queue.get_nowait()
        self._seeked.set()

    async def next(self) -> Batch | None:
        """The next batch since the last seek; None at the end of the window (until the next seek)."""
        assert self._queue is not None
        while True:
            gen, batch = await self._queue.get()
            if gen == self._gen:
                return batch

    async def produce(self) -> None:
        """Read tables in the worker thread, one at a time, into the bounded queue (tagged by seek generation)."""
        assert self._queue is not None and self._seeked is not None
        loop = asyncio.get_running_loop()
        current: Cursor | None = None
        try:
            while True:
                cursor, gen = self._cursor, self._gen
                assert cursor is not None
                if current is not None and current is not cursor:
                    current.close()
                current = self._reading = cursor
                batch = await loop.run_in_executor(self._reader, read_batch, cursor)
                if gen != self._gen:
                    continue
                await self._queue.put((gen, batch))
                if batch is None:
                    while gen == self._gen:
                        self._seeked.clear()
                        await self._seeked.wait()
        finally:
            if current is not None:
                current.close()  # waits for a read still running in the worker thread

    def _new_cursor(self, lo: int) -> Cursor:
        return Cursor(self.recording, lo, self.end_ns, self.batch_rows)
