"""Writing one table's compacted files of a day (its part files' rows, sorted, in large row groups), and checking them.

Order of the rows in the new files (:data:`SORT_ORDER`):

- ``orderbook``, ``afterhours``, ``trades``: by ``item``, then ``recv_ts``, ``recv_sub_us``, ``run_id``, ``frame_seq``,
  ``row_idx``: one item's rows are contiguous, so a query for one item reads a few row groups (their
  ``item`` statistics prune the rest) and zstd sees consecutive books of one item, which differ in a level
  or two (PERF-LIMITS.md section 3: sorted by item, the book takes about a third less space).
- ``events``: by ``recv_ts``, ``recv_sub_us``, then ``run_id`` (stable: events of one instant keep their order).
- ``frames``: not sorted. Each recording run gets its own file, holding the run's frames in the order
  its part files held them (segment, then row: the receive order, ``seq``), which is the order
  :mod:`kiwoom_tape.replay.recorded` reads a run in; runs are merged by receive time at replay as before, so a
  compacted day replays byte for byte as it did. (Frames have no item: a frame may carry several.)

Memory stays bounded whatever the size of the day: the rows are cut into ranges of items of at most
``bucket_rows`` rows (counted from the ``item`` column first); with more than one range, every source
row group is read once and its rows appended to its range's spill file (Arrow IPC, lz4) in the stage,
then each range is read back, sorted and written. ``frames`` is streamed, never held whole.

:func:`checksum` is what must not change: row count and the sum of DuckDB's 64-bit hash of every whole
row (every column, so the verbatim ``text`` of every frame), an order-independent checksum compared
between the old and the new files of each table before the old ones go.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kiwoom_tape import portable
from kiwoom_tape.compact_plan import META_COMPACTION, compacted_name, run_of
from kiwoom_tape.recorder.parquet_parts import parquet_options
from kiwoom_tape.schemas.errors import DatasetError
from kiwoom_tape.schemas.views import sql_string

__all__ = [
    "COMPRESSION_LEVEL",
    "ROW_GROUP_ROWS",
    "SORT_ORDER",
    "checksum",
    "write_table",
]

SORT_ORDER: Final[dict[str, tuple[str, ...]]] = {
    "orderbook": ("item", "recv_ts", "recv_sub_us", "run_id", "frame_seq", "row_idx"),
    "afterhours": ("item", "recv_ts", "recv_sub_us", "run_id", "frame_seq", "row_idx"),
    "trades": ("item", "recv_ts", "recv_sub_us", "run_id", "frame_seq", "row_idx"),
    "events": ("recv_ts", "recv_sub_us", "run_id"),
}
"""The sort key of each table's compacted files (``frames``: per run, receive order; module docstring).
``recv_sub_us`` is left out for files of schema version 1 (their ``recv_ts`` holds the nanoseconds).

A day is compacted in the schema version of its files: a day of version 1 files stays version 1 (the
checksum compares whole rows), and a day mixing versions is refused (``kiwoom-tape migrate`` first)."""

ROW_GROUP_ROWS: Final[dict[str, int]] = {"frames": 65_536}
"""Rows per row group of the compacted files; 262,144 for the tables not named. Measured on a simulated
day of 300k 0D rows (200 items): 1M-row groups are no smaller (orderbook 46.0 vs 46.1 B/row, frames 96.5
vs 96.8), and 262k rows still give a 17M-row day some 65 groups for DuckDB's threads to share and prune
by ``item``. ``frames`` rows are 1-3 KB of text, so fewer per group (a 16 MiB page holds some 8k; zstd
works per page): a replay seek skips groups by their ``recv_ts``."""
_DEFAULT_GROUP: Final = 262_144

COMPRESSION_LEVEL: Final = 9
"""zstd level of compacted files: written once and read often, so the slow, small level pays. On the
simulated day above, frames + orderbook per 0D row: level 3 125.0 + 50.3, level 6 107.7 + 47.6, level 9
96.8 + 46.1 = 143 B (the target is <= 150), for about 5x the CPU of level 3 (14.5 s for 233k frames)."""

FILE_ROWS: Final = 16 * 2**20
"""A normalized table's compacted file is closed and the next one started past this many rows."""

BUCKET_ROWS: Final = 1_000_000
"""Rows sorted in memory at once (module docstring): about 0.7 GB of ``orderbook`` in Arrow, twice that
while the sorted copy is made. Measured: 2M generated orderbook rows (3 ranges) compact in 77 s of CPU,
60 s of it the zstd-9 Parquet write, 12 s the two checksums, 12 s the spill."""

_READ_BATCH: Final = 65_536
Progress = Callable[[str], None]


class _Out:
    """The compacted files of one table being written in ``stage``: exact row groups, fsynced when closed."""

    def __init__(self, stage: Path, table: str, schema: pa.Schema, group_rows: int) -> None:
        self.stage, self.table, self.schema, self.group_rows = stage, table, schema, group_rows
        self.opts = {**parquet_options(table), "compression_level": COMPRESSION_LEVEL}
        self.names: list[str] = []
        self._writer: Any = None
        self._path: Path | None = None
        self._file_rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def open(self, name: str) -> None:
        self.close()
        self._path = self.stage / name
        self._writer = pq.ParquetWriter(str(self._path), self.schema, **self.opts)
        self.names.append(name)
        self._file_rows = 0

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.group_rows:
            self._write(self.group_rows)

    def _write(self, n: int) -> None:
        whole = pa.concat_tables(self._pending)
        self._writer.write_table(whole.slice(0, n), row_group_size=n)
        rest = whole.slice(n)
        self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        self._file_rows += n

    @property
    def file_rows(self) -> int:
        return self._file_rows + self._pending_rows

    def close(self) -> None:
        """Write what is pending, close and fsync the open file (if any)."""
        if self._writer is None:
            return
        if self._pending_rows:
            self._write(self._pending_rows)
        self._writer.close()
        self._writer = None
        assert self._path is not None
        fd = os.open(self._path, os.O_RDWR | portable.OPEN_FLAGS)  # Windows fsyncs only a writable handle
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _schema(sources: Sequence[Path], compaction_id: str) -> pa.Schema:
    """The sources' common schema (fields and their metadata must agree), marked with the compaction id."""
    first = pq.read_schema(sources[0])
    bare = pa.schema(list(first))
    for f in sources[1:]:
        if not pa.schema(list(pq.read_schema(f))).equals(bare, check_metadata=True):
            raise DatasetError(
                f"{f} and {sources[0]} have different columns (written by different schema versions?)",
                hint="run `kiwoom-tape migrate DIR --date D` to make the day all version 2, then compact",
            )
    return first.with_metadata({**(first.metadata or {}), META_COMPACTION: compaction_id.encode()})


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    with pq.ParquetFile(path) as pf:
        yield from pf.iter_batches(batch_size=_READ_BATCH, use_threads=False)


def _as_table(batches: Sequence[pa.RecordBatch], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_batches([pa.RecordBatch.from_arrays(b.columns, schema=schema) for b in batches],
                                 schema=schema)


def _frames(stage: Path, sources: Sequence[Path], schema: pa.Schema, cid: str, progress: Progress) -> list[str]:
    by_run: dict[str, list[tuple[int, Path]]] = {}
    for f in sources:
        parsed = run_of(f.name)
        if parsed is None:
            raise DatasetError(f"{f} is not named like a part file, so its run is unknown",
                               hint="move it out of the dataset, then compact")
        by_run.setdefault(parsed[0], []).append((parsed[1], f))
    out = _Out(stage, "frames", schema, ROW_GROUP_ROWS["frames"])
    for run, files in sorted(by_run.items()):
        out.open(compacted_name(cid, 0, run))
        for _, f in sorted(files):
            for b in _batches(f):
                out.add(_as_table([b], schema))
        progress(f"frames: run {run}: {out.file_rows} rows from {len(files)} file(s)")
    out.close()
    return out.names


def _buckets(sources: Sequence[Path], limit: int) -> list[list[str]]:
    """Consecutive ranges of items (sorted) of at most ``limit`` rows each (an item bigger than that alone)."""
    counts: Counter[str] = Counter()
    for f in sources:
        vc = pc.value_counts(pq.read_table(f, columns=["item"]).column("item").combine_chunks())
        for v, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True):
            counts[v] += n
    buckets: list[list[str]] = [[]]
    rows = 0
    for item in sorted(counts):
        if buckets[-1] and rows + counts[item] > limit:
            buckets.append([])
            rows = 0
        buckets[-1].append(item)
        rows += counts[item]
    return buckets


def _spill(stage: Path, table: str, sources: Sequence[Path], schema: pa.Schema,
           buckets: list[list[str]]) -> list[Path]:
    """Every source row appended to its bucket's spill file, each source row group read once."""
    items = pa.array([i for b in buckets for i in b], pa.string())
    bucket_of = np.array([k for k, b in enumerate(buckets) for _ in b], dtype=np.int64)
    paths = [stage / f".spill-{table}-{k}.arrow" for k in range(len(buckets))]
    opts = pa.ipc.IpcWriteOptions(compression="lz4")
    writers = [pa.ipc.new_file(str(p), schema, options=opts) for p in paths]
    try:
        for f in sources:
            for b in _batches(f):
                b = pa.RecordBatch.from_arrays(b.columns, schema=schema)
                idx = pc.index_in(b.column("item"), value_set=items).to_numpy(zero_copy_only=False)
                ks = bucket_of[idx.astype(np.int64)]
                for k in np.unique(ks):
                    writers[int(k)].write_batch(b.filter(pa.array(ks == k)))
    finally:
        for w in writers:
            w.close()
    return paths


def _sorted_table(stage: Path, table: str, sources: Sequence[Path], schema: pa.Schema, cid: str,
                  bucket_rows: int, progress: Progress) -> list[str]:
    order = [(c, "ascending") for c in SORT_ORDER[table] if c in schema.names]
    out = _Out(stage, table, schema, ROW_GROUP_ROWS.get(table, _DEFAULT_GROUP))
    out.open(compacted_name(cid, 0))
    rows = sum(pq.read_metadata(f).num_rows for f in sources)
    buckets = _buckets(sources, bucket_rows) if "item" in schema.names and rows > bucket_rows else [[]]
    if len(buckets) == 1:
        parts: list[Iterator[pa.Table]] = [iter([_as_table([b for f in sources for b in _batches(f)], schema)])]
    else:
        spills = _spill(stage, table, sources, schema, buckets)
        parts = [_read_spill(p) for p in spills]
    for k, part in enumerate(parts):
        for t in part:
            if out.file_rows >= FILE_ROWS:
                out.open(compacted_name(cid, len(out.names)))
            out.add(t.sort_by(order))
        if len(parts) > 1:
            progress(f"{table}: items {k + 1}/{len(parts)} sorted")
    out.close()
    return out.names


def _read_spill(path: Path) -> Iterator[pa.Table]:
    with pa.memory_map(str(path)) as src:
        t = pa.ipc.open_file(src).read_all()
    path.unlink()
    yield t


def write_table(stage: Path, table: str, sources: Sequence[Path], compaction_id: str, *,
                bucket_rows: int = BUCKET_ROWS, progress: Progress = lambda _: None) -> list[str]:
    """Write ``table``'s compacted files of the day into ``stage`` (complete, fsynced); their names."""
    stage.mkdir(parents=True, exist_ok=True)
    schema = _schema(sources, compaction_id)
    if table == "frames":
        return _frames(stage, sources, schema, compaction_id, progress)
    return _sorted_table(stage, table, sources, schema, compaction_id, bucket_rows, progress)


def checksum(con: duckdb.DuckDBPyConnection, files: Sequence[Path]) -> tuple[int, int]:
    """(rows, sum of the 64-bit hash of every whole row) of ``files``: equal for the same multiset of rows."""
    listed = ", ".join(sql_string(str(f)) for f in files)
    row = con.execute(f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0)::VARCHAR "
                      f"FROM read_parquet([{listed}], hive_partitioning = false) t").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
