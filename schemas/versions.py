"""Reading both schema versions of the stored tables (:mod:`kiwoom_tape.schemas.tables`): the exact receive time
of a row of either, one reading schema for files of both, and a version 1 table as version 2."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from kiwoom_tape.schemas.tables import TABLES

__all__ = ["read_schema", "recv_ns_of", "upgrade"]

_NS_UTC = pa.timestamp("ns", tz="UTC")


def recv_ns_of(batch: pa.RecordBatch | pa.Table) -> pa.Array | pa.ChunkedArray:
    """The exact receive time of every row as int64 nanoseconds, from a batch or table of either version.

    Version 2: ``epoch_us(recv_ts) * 1000 + recv_sub_us``; version 1: ``recv_ts``'s nanoseconds. A NULL
    ``recv_sub_us`` (a v1 file read with the v2 schema) counts as 0.
    """
    ns = batch.column("recv_ts").cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())
    if "recv_sub_us" not in batch.schema.names:
        return ns
    sub = pc.fill_null(batch.column("recv_sub_us"), 0).cast(pa.int64())
    return pc.add(ns, sub)


def read_schema(table: str) -> pa.Schema:
    """A schema that reads files of both versions of ``table`` as one dataset without loss: the current one with
    ``recv_ts`` in nanoseconds (a version 2 file's microseconds widen exactly) and ``recv_sub_us`` nullable
    (absent, NULL, in a version 1 file). :func:`recv_ns_of` gives the exact receive time of its rows."""
    schema = TABLES[table]
    schema = schema.set(0, schema.field(0).with_type(_NS_UTC))
    return schema.set(1, schema.field(1).with_nullable(True))


def upgrade(data: pa.Table, table: str) -> pa.Table:
    """``data`` (rows of ``table`` read from a file of either version) with the current schema's columns.

    Version 2 data is only cast to :data:`TABLES` (a Parquet file gives back its Arrow schema); version 1
    data gets ``recv_ts`` split into microseconds and ``recv_sub_us``, and its time columns as UTC instants in
    milliseconds (the same instants). Columns not in the schema (a partition's ``date``) are dropped.
    """
    schema = TABLES[table]
    if "recv_sub_us" not in data.schema.names:
        ns = data.column("recv_ts").cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())
        us = pc.divide(ns, 1000)
        sub = pc.subtract(ns, pc.multiply(us, 1000)).cast(pa.int16())
        data = data.set_column(0, "recv_ts", us.cast(pa.timestamp("us", tz="UTC")))
        data = data.add_column(1, "recv_sub_us", sub)
    cols = [data.column(f.name).cast(f.type) for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)
