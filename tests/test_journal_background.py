"""Background journal syncs (recorder/journal_sync.py): the timed write+fdatasync on a worker thread, in order,
failures raised as before, close and explicit syncs waiting for the one in flight; the stagger of the stores."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _clock import FakeClock
from kiwoom_tape.recorder.journal import JournalWriter, read_journal
from kiwoom_tape.recorder.recovery import recover
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.schemas.errors import StorageError
from kiwoom_tape.schemas.layout import JOURNAL_DIR, new_run_id

from kiwoom_tape import portable

RUN = new_run_id(1_795_300_000_000_000_000, 0xABCDEF)
NS = 1_795_359_598_000_000_000 - 10**12  # a KST afternoon
PING = '{"trnm":"PING"}'



class HeldSync:
    """``portable.datasync``: on a worker thread each call waits until :meth:`release` (the disk is slow)."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self._go = threading.Event()
        self._real = portable.datasync

    def __call__(self, fd: int) -> None:
        if threading.current_thread().name.startswith("journal-sync"):
            self.entered.release()
            assert self._go.wait(10), "the test never released the sync"
        self._real(fd)

    def wait_entered(self) -> None:
        assert self.entered.acquire(timeout=10), "no background sync started"

    def release(self) -> None:
        self._go.set()


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldSync]:
    h = HeldSync()
    monkeypatch.setattr(portable, "datasync", h)
    yield h
    h.release()  # never leave a worker waiting


def _seqs(path: Path) -> list[int]:
    return [getattr(r, "seq", -1) for r in read_journal(path).records]  # type: ignore[union-attr]


def test_appends_while_a_sync_is_in_flight_land_in_order(tmp_path: Path, held: HeldSync) -> None:
    clock = FakeClock(1000.0)
    path = tmp_path / "a.journal"
    w = JournalWriter(path, "run1", 0, fsync_interval=0.2, monotonic=clock, background=True)
    base = path.stat().st_size
    w.append_frame(1, 0, "in", b"{}")
    clock.now += 0.2
    w.append_frame(2, 1, "in", b"{}")  # the interval passed: handed to a worker, this call does not wait
    held.wait_entered()  # the worker is in fdatasync, the journal goes on taking appends
    for seq in range(2, 6):
        w.append_frame(10 + seq, seq, "in", b'{"n":%d}' % seq)
    clock.now += 0.2
    w.append_frame(20, 6, "in", b"{}")  # due again, but one is in flight: kept for the next hand-off
    w.append_event(21, "gap_start", "{}")
    assert w.buffered > 0 and w.size == base
    held.release()
    w.sync()  # waits for the one in flight, then writes the rest itself
    assert w.buffered == 0
    assert _seqs(path) == [0, 1, 2, 3, 4, 5, 6, -1]  # the event last
    assert w.size == path.stat().st_size
    w.close()


def test_tick_hands_off_a_quiet_stream(tmp_path: Path, held: HeldSync) -> None:
    clock = FakeClock(1000.0)
    root = tmp_path / "data"
    s = Store(root, RUN, monotonic=clock).open()
    s.add_frame(NS, "in", PING)
    clock.now += 0.2
    s.tick()  # no frame arrives: the timer's tick hands the buffer off
    held.wait_entered()
    held.release()
    s.sync()
    journal = next((root / JOURNAL_DIR).iterdir())
    assert _seqs(journal) == [0]
    s.close()


def test_a_failed_background_sync_fails_the_store_with_the_same_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(1000.0)
    root = tmp_path / "data"
    s = Store(root, RUN, monotonic=clock).open()
    for i in range(3):
        s.add_frame(NS + i, "in", PING)
    s.sync()  # these 3 are safe in the journal
    written = threading.Event()
    real_write = os.write

    def no_space(fd: int, data: object) -> int:
        if threading.current_thread() is not threading.main_thread():
            written.set()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "write", no_space)
    s.add_frame(NS + 3, "in", PING)
    clock.now += 0.2
    s.add_frame(NS + 4, "in", PING)  # handed off: the worker hits the full disk; this call returns
    assert written.wait(10)
    journal = s._journal
    assert journal is not None and journal._bg is not None
    journal._bg.wait()  # the worker is done (its error is recorded, not raised on the worker)
    with pytest.raises(StorageError) as info:
        s.add_frame(NS + 5, "in", PING)
    msg = str(info.value)
    assert "No space left on device" in msg and "free disk space or choose another --out" in msg
    assert info.value.path.endswith(".journal")
    with pytest.raises(StorageError) as again:
        s.tick()
    assert again.value is info.value
    with pytest.raises(StorageError) as again:
        s.sync()
    assert again.value is info.value
    s.close()  # keeps the journal, raises nothing new
    monkeypatch.undo()
    report = recover(root)
    assert report.frames == 3


def test_close_waits_for_the_sync_in_flight(tmp_path: Path, held: HeldSync) -> None:
    clock = FakeClock(1000.0)
    path = tmp_path / "a.journal"
    w = JournalWriter(path, "run1", 0, fsync_interval=0.2, monotonic=clock, background=True)
    w.append_frame(1, 0, "in", b"{}")
    clock.now += 0.2
    w.append_frame(2, 1, "in", b"{}")
    held.wait_entered()
    w.append_frame(3, 2, "in", b"{}")
    closer = threading.Thread(target=w.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()  # the worker still holds the file: close waits
    held.release()
    closer.join(10)
    assert not closer.is_alive() and w.closed
    assert _seqs(path) == [0, 1, 2]
    assert w.size == path.stat().st_size


def test_close_raises_a_background_failure_no_call_raised_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(1000.0)
    path = tmp_path / "a.journal"
    w = JournalWriter(path, "run1", 0, fsync_interval=0.2, monotonic=clock, background=True)
    w.append_frame(1, 0, "in", b"{}")

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(portable, "datasync", broken)
    clock.now += 0.2
    w.append_frame(2, 1, "in", b"{}")
    with pytest.raises(StorageError, match="Input/output error") as info:
        w.close()
    assert info.value.path == str(path) and w.closed
    with pytest.raises(StorageError) as again:
        w.append_frame(3, 2, "in", b"{}")
    assert again.value is info.value


def test_a_full_buffer_waits_for_the_sync_in_flight(tmp_path: Path, held: HeldSync) -> None:
    clock = FakeClock(1000.0)
    path = tmp_path / "a.journal"
    w = JournalWriter(path, "run1", 0, fsync_interval=0.2, monotonic=clock, background=True, max_buffer=64)
    w.append_frame(1, 0, "in", b"x" * 80)  # over max_buffer: handed off at once
    held.wait_entered()
    appender = threading.Thread(target=w.append_frame, args=(2, 1, "in", b"y" * 80))
    appender.start()
    appender.join(0.3)
    assert appender.is_alive()  # memory stays bounded: the second full buffer waits for the first
    held.release()
    appender.join(10)
    w.close()
    assert _seqs(path) == [0, 1]


def test_staggered_stores_flush_first_at_their_share(tmp_path: Path) -> None:
    stores = [Store(tmp_path / "data", new_run_id(1_795_300_000_000_000_000, k), flush_rows=10, stagger=k / 4).open()
              for k in range(4)]
    first = []
    for s in stores:
        n = 0
        while not list((tmp_path / "data" / "_tmp").glob(f"frames.*{s.run_id}*")):
            s.add_frame(NS + n, "in", PING)
            n += 1
        first.append(n)
        s.close()
    assert first == [10, 8, 5, 3]
