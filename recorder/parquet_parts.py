"""Parquet part files of the store: writer options (page checksums included) and a file being written.

A part file is written in the dataset's ``_tmp/`` folder under :func:`kiwoom_tape.schemas.layout.staging_filename`
and renamed into its table's partition by :meth:`_Part.finalize` after an fsync (DESIGN.md "Data layout";
the ``_tmp/`` contract shared by every writer is in :mod:`kiwoom_tape.schemas.layout`). Every data page carries a CRC-32
(``write_page_checksum``), so a flipped bit in a finished file is detected when it is read with
``page_checksum_verification=True`` (``kiwoom-tape verify`` does), not turned silently into other values.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq
from kiwoom_tape.recorder.journal import fsync_dir, storage_error
from kiwoom_tape.schemas.normalize import (
    AfterhoursBuilder,
    Builder,
    EventBuilder,
    FrameBuilder,
    OrderbookBuilder,
    TradesBuilder,
)
from kiwoom_tape.schemas.tables import TABLES

from kiwoom_tape import portable

__all__ = [
    "FRAMES_PAGE_BYTES",
    "PARQUET_OPTIONS",
    "ROW_GROUP_ORDER",
    "parquet_options",
]

PARQUET_OPTIONS: Final[dict[str, Any]] = {
    "compression": "zstd",
    "compression_level": 3,
    "write_statistics": True,
    "write_page_checksum": True,
}
"""Options of every ``pyarrow.parquet.ParquetWriter`` (PERF-LIMITS.md section 3), with :func:`parquet_options`.

zstd level 3 rather than pyarrow's default level 1: as fast to write here, and the verbatim frames
take about a quarter less space (docs/benchmarks.md: Storage). Page checksums: a CRC-32 per data page, checked
by readers that ask for it (``page_checksum_verification=True``), so damage is an error, not other values."""


def parquet_options(table: str) -> dict[str, Any]:
    """The ``ParquetWriter`` options of ``table``: :data:`PARQUET_OPTIONS`, dictionary encoding for its
    string columns only (item, run id, ...), never for the frames' ``text`` nor for numbers.

    Trying a dictionary for every column is what pyarrow does by default; for the 160 number columns
    of ``orderbook`` and the unique texts of ``frames`` it costs a third of the write time and saves
    next to nothing once zstd has compressed the pages (docs/benchmarks.md: Storage).
    """
    opts = dict(PARQUET_OPTIONS)
    opts["use_dictionary"] = [f.name for f in TABLES[table] if pa.types.is_string(f.type) and f.name != "text"]
    if table == "frames":
        opts["data_page_size"] = FRAMES_PAGE_BYTES
    return opts


FRAMES_PAGE_BYTES: Final = 4 * 2**20
"""Data page size of ``frames``: zstd compresses each page on its own, and a page of thousands of
verbatim frames (rather than pyarrow's 1 MiB, a few hundred) finds their common keys and values:
16 MiB pages took about a tenth fewer bytes, at the same speed (docs/benchmarks.md: Storage), 4 MiB pages
about 6 %. 4 MiB, not 16: the writer's page buffers cost ``record`` a transient ~44 MiB at each flush with
16 MiB pages against ~26 MiB with 4 MiB ones, for 3 % more ``frames`` bytes (both in-process, not in a stored
run); the peak RSS of ``record`` at the real peak went from 204 to 180 MiB (A/B run
bench/results/memory-2026-12-02T1903.json)."""

ROW_GROUP_ORDER: Final[dict[str, tuple[str, ...]]] = {
    "orderbook": ("item", "recv_ts", "recv_sub_us", "frame_seq", "row_idx"),
    "afterhours": ("item", "recv_ts", "recv_sub_us", "frame_seq", "row_idx"),
    "trades": ("item", "recv_ts", "recv_sub_us", "frame_seq", "row_idx"),
}
"""Each row group of these tables is sorted by item, then time, when it is written: consecutive rows of
one item differ in a few levels, so zstd stores the row group in about half the bytes, for free
(docs/benchmarks.md: Storage). ``frames`` stays in receive order. Query with ORDER BY, as always with Parquet."""

class _Part:
    """One Parquet file being written at ``tmp`` (in ``_tmp/``) until :meth:`finalize` renames it to ``final``.

    Both paths must be on one filesystem (the same dataset root), so that the rename is atomic.
    """

    def __init__(self, table: str, final: Path, tmp: Path) -> None:
        self.table = table
        self.final = final
        self.tmp = tmp
        self.rows = 0
        self._sink: Any = None
        self._writer: Any = None
        try:
            self._sink = pa.OSFile(str(self.tmp), "wb")
            self._writer = pq.ParquetWriter(self._sink, TABLES[table], **parquet_options(table))
        except OSError as exc:
            self._discard()
            raise storage_error(exc, self.tmp, "write") from exc

    @property
    def nbytes(self) -> int:
        """Bytes written so far (complete row groups)."""
        try:
            return int(self._sink.tell())
        except (OSError, ValueError):
            return 0

    def write(self, batch: pa.RecordBatch) -> None:
        try:
            self._writer.write_batch(batch)
        except OSError as exc:
            raise storage_error(exc, self.tmp, "write") from exc
        self.rows += batch.num_rows

    def finalize(self) -> int:
        """Close, fsync, rename to the final name, fsync the directory; returns the file's size."""
        try:
            self._writer.close()
            self._writer = None
            self._sink.close()
            self._sink = None
            fd = os.open(self.tmp, os.O_RDWR | portable.OPEN_FLAGS)  # Windows flushes only a writable handle
            try:
                os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            os.replace(self.tmp, self.final)
            fsync_dir(self.final.parent)
        except OSError as exc:
            raise storage_error(exc, self.tmp, "finish the Parquet file") from exc
        return size

    def _discard(self) -> None:
        for obj in (self._writer, self._sink):
            if obj is not None:
                with contextlib.suppress(Exception):
                    obj.close()
        self._writer = self._sink = None

    def abandon(self) -> None:
        """Close without finalizing and delete the file in ``_tmp/`` (frees space after a full disk)."""
        self._discard()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


class _Builders:
    """The builders of one KST date, one per table of :data:`kiwoom_tape.schemas.tables.TABLES`.

    ``typed`` maps each normalized table (the values of :data:`kiwoom_tape.schemas.tables.TABLE_OF_TYPE`) to its
    builder.
    """

    __slots__ = ("afterhours", "events", "frames", "orderbook", "trades", "typed")

    def __init__(self) -> None:
        self.frames = FrameBuilder()
        self.orderbook = OrderbookBuilder()
        self.afterhours = AfterhoursBuilder()
        self.trades = TradesBuilder()
        self.events = EventBuilder()
        self.typed: dict[str, OrderbookBuilder | AfterhoursBuilder | TradesBuilder] = {
            "orderbook": self.orderbook,
            "afterhours": self.afterhours,
            "trades": self.trades,
        }

    def items(self) -> Iterator[tuple[str, Builder]]:
        yield "frames", self.frames
        yield "orderbook", self.orderbook
        yield "afterhours", self.afterhours
        yield "trades", self.trades
        yield "events", self.events
