"""What recording costs measured in-process, without a socket: the store path (fast vs general) and the memory
an open Parquet writer keeps per row group (its footer)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.frames import Workload
from bench.machine import proc_rss_bytes

__all__ = ["footer_bytes_per_row_group", "footer_in_fresh_process", "store_path"]


def store_path(wl: Workload, fast: bool) -> float:
    """Frames/s (CPU time) through ``Store`` in-process, no socket: the fast path or the general one."""
    from kiwoom_tape.recorder.store import Store
    from kiwoom_tape.schemas.protocol import ClientSession, RealData

    with tempfile.TemporaryDirectory(prefix="kiwoom-bench-store-") as d:
        store = Store(d, "20261123T000000Z-bench2")
        store.open()
        session = ClientSession(token="bench")
        ns = time.time_ns()
        t = time.process_time()
        try:
            for data in wl.frames:
                if fast and store.add_real_frame(ns, data) is not None:
                    continue
                for ev in session.receive(data.decode("utf-8"), 0.0):  # the general path, as before bytes
                    if isinstance(ev, RealData):
                        store.add_frame(ns, "in", ev.text, rows=ev.rows, trnm="REAL")
        finally:
            store.close()
        return len(wl.frames) / (time.process_time() - t)


def footer_bytes_per_row_group(table: str = "orderbook", groups: int = 400) -> float:
    """Memory an open ``ParquetWriter`` of ``table`` keeps per row group written (its footer), in bytes.

    Parquet writes the footer (every row group's metadata, about 850 B per column here) when the file
    closes, so until the segment rolls the writer holds it: a growth bounded by the roll, not a leak.
    Measured in-process with the store's options on tiny row groups, from RSS.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from kiwoom_tape.recorder.store import parquet_options
    from kiwoom_tape.schemas.tables import TABLES

    schema = TABLES[table]
    n = 16
    cols: list[Any] = []
    for f in schema:
        t = f.type
        if pa.types.is_string(t):
            cols.append(pa.array([f"v{i}" for i in range(n)], pa.string()))
        elif pa.types.is_timestamp(t):
            cols.append(pa.array(range(n), pa.int64()).cast(t))
        else:
            cols.append(pa.array(range(n), pa.int8()).cast(t))
    batch = pa.RecordBatch.from_arrays(cols, schema=schema)
    with tempfile.TemporaryDirectory(prefix="kiwoom-bench-footer-") as d:
        writer = pq.ParquetWriter(f"{d}/x.parquet", schema, **parquet_options(table))
        try:
            for _ in range(groups // 4):  # warm up the allocator
                writer.write_batch(batch)
            before = proc_rss_bytes(os.getpid())[0]
            for _ in range(groups):
                writer.write_batch(batch)
            after = proc_rss_bytes(os.getpid())[0]
        finally:
            writer.close()
    return (after - before) / groups


def footer_in_fresh_process() -> float:
    """:func:`footer_bytes_per_row_group` in a new process (memory freed earlier would be reused)."""
    code = "from bench.record_inprocess import footer_bytes_per_row_group as f; print(f())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return float(out.stdout.strip())
