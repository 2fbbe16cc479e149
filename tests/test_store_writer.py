"""The store's Parquet writer thread (recorder/parquet_parts.py ``_WriterThread``): the same files as writing on the
caller's thread, rolls at the same frames, a failed write raised as the same StorageError with the journal kept."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from kiwoom_tape.recorder.parquet_parts import _WriterThread
from kiwoom_tape.recorder.recovery import recover
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.schemas.errors import StorageError
from kiwoom_tape.schemas.layout import STAGING_DIR, TMP_SUFFIX

from tests.test_store import BEFORE_MIDNIGHT_NS, RUN, assert_clean, frames_by_seq, real_frame, table

T0 = BEFORE_MIDNIGHT_NS - 10**12


def _record(root: Path, thread: bool, n: int, **kw: int) -> list[int]:
    """Add ``n`` frames of 1-3 rows (0D, 0E) to a store; returns its segment after each frame."""
    segments = []
    with Store(root, RUN, write_thread=thread, **kw) as s:  # type: ignore[arg-type]
        for i in range(n):
            rows = [("0D", f"{i % 7:06d}", i)] + [("0E", "005930", i)] * (i % 3 == 0) + [("0D", "000660", i)] * (i % 2)
            s.add_received(T0 + i * 1_000_000, real_frame(*rows).encode())
            segments.append(s.segment)
    return segments


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("*/*/*.parquet"))}


@pytest.mark.parametrize(("flush_rows", "roll_bytes"), [(7, 1), (13, 40_000), (50, 1 << 30)])
def test_thread_writes_the_same_files_and_rolls_at_the_same_frames(tmp_path: Path, flush_rows: int,
                                                                   roll_bytes: int) -> None:
    kw = {"flush_rows": flush_rows, "roll_bytes": roll_bytes, "defer_frames": 5}
    seg_sync = _record(tmp_path / "sync", False, 300, **kw)
    seg_thread = _record(tmp_path / "thread", True, 300, **kw)
    assert seg_thread == seg_sync
    if roll_bytes < 1 << 30:
        assert seg_sync[-1] >= 3  # the check saw rolls
    sync, threaded = _files(tmp_path / "sync"), _files(tmp_path / "thread")
    assert sorted(sync) == sorted(threaded)
    for name in sync:  # the same rows in the same row groups
        a, b = pq.ParquetFile(tmp_path / "sync" / name), pq.ParquetFile(tmp_path / "thread" / name)
        assert a.metadata.num_row_groups == b.metadata.num_row_groups
        assert a.read().equals(b.read())
    assert [r["seq"] for r in frames_by_seq(tmp_path / "thread")] == list(range(300))
    assert_clean(tmp_path / "thread")


def test_a_failed_write_in_the_thread_is_the_same_storage_error(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    gate = threading.Event()
    calls = []

    def no_space(self: object, batch: object, row_group_size: object = None) -> None:
        calls.append(threading.current_thread().name)
        gate.wait(10)
        raise OSError(errno.ENOSPC, "No space left on device")

    s = Store(root, RUN, flush_rows=4, write_thread=True).open()
    monkeypatch.setattr(pq.ParquetWriter, "write_batch", no_space)
    for i in range(4):  # the 4th frame flushes: its row groups are queued, the caller goes on
        s.add_frame(T0 + i * 10**6, "in", real_frame(("0D", "005930", i)))
    s.add_frame(T0 + 5 * 10**6, "in", real_frame(("0D", "005930", 5)))
    gate.set()
    with pytest.raises(StorageError, match="No space left on device") as info:
        s.close()  # waits for the thread, raises what it met
    assert info.value.path.endswith(".parquet" + TMP_SUFFIX)
    assert calls and all(name.startswith("kiwoom-parquet") for name in calls)  # written in the thread
    assert len(calls) == 1  # after the first failure nothing more is written
    with pytest.raises(StorageError):
        s.add_frame(T0 + 6 * 10**6, "in", real_frame(("0D", "005930", 6)))
    s.close()  # again: nothing new
    monkeypatch.undo()
    assert not list(root.glob(f"{STAGING_DIR}/*"))  # its own files in _tmp/ removed
    assert recover(root).frames == 5  # the journal kept every frame
    assert len(table(root, "frames")) == 5


def test_the_error_surfaces_at_a_later_flush_without_a_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    s = Store(root, RUN, flush_rows=2, write_thread=True).open()

    def no_space(self: object, batch: object, row_group_size: object = None) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", no_space)
    added = 0
    with pytest.raises(StorageError, match="No space left on device"):
        for i in range(1000):  # a flush every 2 frames: one of the next flushes raises the thread's error
            s.add_frame(T0 + i, "in", real_frame(("0D", "005930", i)))
            added += 1
            threading.Event().wait(0.001)
    assert 1 <= added < 1000  # not at the first frame (nothing written yet), and not never
    assert s.failed is not None
    s.close()
    monkeypatch.undo()
    assert recover(root).frames == added + 1  # the frame whose flush raised was journaled first


def test_writer_thread_bounds_its_queue_and_keeps_order() -> None:
    t = _WriterThread(max_pending=2)
    done: list[int] = []
    gate = threading.Event()

    def job(k: int) -> None:
        if k == 0:
            gate.wait(10)
        done.append(k)

    t.submit(lambda: job(0))
    t.submit(lambda: job(1))
    threading.Timer(0.05, gate.set).start()
    t.submit(lambda: job(2))  # waits for the oldest: at most 2 queued
    assert done[:1] == [0]
    t.wait()
    assert done == [0, 1, 2]
    t.close()
