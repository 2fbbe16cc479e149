"""The platform calls of :mod:`kiwoom_tape.portable`, natively and through each fallback, in-process.

The fallbacks are what Windows runs; here each is chosen by setting the module's choices directly, with
a stand-in ``msvcrt`` (tests/portable_fallback/fake_msvcrt.py). tests/test_portable_windows.py runs the
package itself that way, in subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kiwoom_tape.recorder.journal import JournalBusy, JournalWriter
from kiwoom_tape.schemas.errors import StorageError
from portable_fallback import fake_msvcrt

from kiwoom_tape import portable

fcntl = pytest.importorskip("fcntl")  # the stand-in msvcrt is built on flock


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[list[int]]:
    """Open files of ``tmp_path / "f"`` (append ``fd``s to the list); all closed at the end."""
    fds: list[int] = []
    yield fds
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _open(path: Path, fds: list[int]) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | portable.OPEN_FLAGS, 0o644)
    fds.append(fd)
    return fd


# -- file lock -------------------------------------------------------------------------------------


def test_the_native_lock_is_held_by_one_open_file_at_a_time(
    tmp_path: Path, opened: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portable, "_fcntl", fcntl)
    a, b = _open(tmp_path / "f", opened), _open(tmp_path / "f", opened)
    assert portable.try_lock(a)
    assert not portable.try_lock(b)
    os.close(opened.pop(0))
    assert portable.try_lock(b)


def test_the_msvcrt_fallback_locks_one_byte_past_the_data_and_refuses_a_second_open_file(
    tmp_path: Path, opened: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_msvcrt.make(fcntl)
    monkeypatch.setattr(portable, "_fcntl", None)
    monkeypatch.setattr(portable, "_msvcrt", fake)
    path = tmp_path / "f"
    a, b = _open(path, opened), _open(path, opened)
    os.write(a, b"0123456789")
    os.lseek(a, 3, os.SEEK_SET)
    assert portable.try_lock(a)
    assert os.lseek(a, 0, os.SEEK_CUR) == 3  # the file position is kept
    assert fake.locks == [portable.LOCK_OFFSET]
    assert not portable.try_lock(b)
    os.write(a, b"more")  # the holder still appends at the end
    assert path.read_bytes() == b"0123456789more"
    os.close(opened.pop(0))
    assert portable.try_lock(b)
    os.close(b)
    with pytest.raises(OSError, match="Bad file descriptor"):  # not "locked": an error
        portable.try_lock(b)


def test_the_journal_lock_through_the_msvcrt_fallback_refuses_a_second_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portable, "_fcntl", None)
    monkeypatch.setattr(portable, "_msvcrt", fake_msvcrt.make(fcntl))
    path = tmp_path / "a.journal"
    w = JournalWriter(path, "run1", 0)
    with pytest.raises(JournalBusy, match="in use by a running recorder"):
        JournalWriter.resume(path)
    w.append_frame(1, 0, "in", b"{}")
    w.close()
    w2, scan = JournalWriter.resume(path)
    assert scan.frames == 1
    w2.remove()
    assert list(tmp_path.iterdir()) == []


def test_where_open_files_cannot_be_renamed_the_journal_closes_first_and_a_racing_recovery_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portable, "RENAMES_OPEN_FILES", False)
    real_rename, held = os.rename, []

    def rename_as_on_windows(src: Any, dst: Any) -> None:
        fd = os.open(src, os.O_RDONLY)  # an open file of this name cannot be renamed: refuse if one is locked
        try:
            assert portable.try_lock(fd), f"{src} is still open and locked during its rename"
        finally:
            os.close(fd)
        real_rename(src, dst)
        if Path(dst).name.startswith("race"):  # a recovery takes the journal between rename and lock
            held.append(os.open(dst, os.O_RDONLY))
            assert portable.try_lock(held[-1])

    monkeypatch.setattr(os, "rename", rename_as_on_windows)
    w = JournalWriter(tmp_path / "a.journal", "run1", 0)
    with pytest.raises(JournalBusy):
        JournalWriter.resume(tmp_path / "a.journal")  # locked again after the rename
    w.append_frame(1, 0, "in", b"{}")
    w.remove()
    assert not (tmp_path / "a.journal").exists()
    with pytest.raises(JournalBusy, match="in use by a running recorder or recovery"):
        JournalWriter(tmp_path / "race.journal", "run1", 1)
    os.close(held.pop())
    assert [p.name for p in tmp_path.iterdir()] == ["race.journal"]  # complete, no record: recovery's to take


def test_without_any_file_lock_the_journal_refuses_to_start_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portable, "_fcntl", None)
    monkeypatch.setattr(portable, "_msvcrt", None)
    with pytest.raises(StorageError, match=r"no file lock on this platform \(neither fcntl.flock nor msvcrt"):
        JournalWriter(tmp_path / "a.journal", "run1", 0)
    assert list(tmp_path.iterdir()) == []  # nothing half-made left behind


# -- durability ------------------------------------------------------------------------------------


def test_fsync_dir_opens_the_directory_natively_and_does_nothing_in_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = tmp_path / "x.tmp", tmp_path / "x"
    src.write_bytes(b"data")
    monkeypatch.setattr(portable, "_dir_flag", os.O_DIRECTORY)
    portable.fsync_dir(tmp_path)
    with pytest.raises(NotADirectoryError):  # O_DIRECTORY is in the flags
        portable.fsync_dir(src)
    monkeypatch.setattr(portable, "_dir_flag", None)

    def no_open(*args: object) -> int:
        raise AssertionError("the fallback must not open the directory")

    monkeypatch.setattr(os, "open", no_open)
    os.replace(src, dst)
    portable.fsync_dir(tmp_path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["x"] and dst.read_bytes() == b"data"


@pytest.mark.parametrize("native", [True, False])
def test_datasync_uses_fdatasync_where_it_exists_else_fsync(
    tmp_path: Path, opened: list[int], monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    calls: list[str] = []
    real_fsync = os.fsync

    def fdatasync(fd: int) -> None:
        calls.append("fdatasync")

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(portable, "_fdatasync", fdatasync if native else None)
    monkeypatch.setattr(os, "fsync", fsync)
    fd = _open(tmp_path / "f", opened)
    os.write(fd, b"abc")
    portable.datasync(fd)
    assert calls == (["fdatasync"] if native else ["fsync"])


def test_the_pread_fallback_reads_what_pread_reads(
    tmp_path: Path, opened: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(range(256)) * 40
    fd = _open(tmp_path / "f", opened)
    os.write(fd, data)
    cases = [(1, 0), (100, 7), (4096, 5000), (10, len(data) - 3), (10, len(data)), (10, len(data) + 50)]
    monkeypatch.setattr(portable, "_pread", None)
    got = [portable.pread(fd, n, offset) for n, offset in cases]
    assert got == [os.pread(fd, n, offset) for n, offset in cases] == [data[o:o + n] for n, o in cases]
    os.write(fd, b"tail")  # O_APPEND: a write after a fallback read still goes to the end
    assert portable.pread(fd, 10, len(data)) == b"tail"


# -- stop signals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fallback", [False, True])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_calls_back_on_the_loop_and_the_old_handlers_come_back(
    monkeypatch: pytest.MonkeyPatch, fallback: bool, sig: signal.Signals
) -> None:
    monkeypatch.setattr(portable, "FALLBACK", fallback)
    seen: list[bool] = []

    async def main() -> None:
        before = {s: signal.getsignal(s) for s in portable.STOP_SIGNALS}
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_stop() -> None:
            seen.append(threading.current_thread() is threading.main_thread() and asyncio.get_running_loop() is loop)
            stop.set()

        with portable.on_stop_signals(loop, on_stop) as handlers:
            assert handlers.installed == portable.STOP_SIGNALS
            assert handlers.fallback == (portable.STOP_SIGNALS if fallback else ())
            signal.raise_signal(sig)
            async with asyncio.timeout(5):
                await stop.wait()
        assert {s: signal.getsignal(s) for s in portable.STOP_SIGNALS} == before

    asyncio.run(main())
    assert seen == [True]


def test_a_stop_signal_after_the_loop_closed_gets_the_previous_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(portable, "FALLBACK", True)
    got: list[int] = []

    def previous(signum: int, _frame: Any) -> None:
        got.append(signum)

    old = signal.signal(signal.SIGTERM, previous)
    try:
        loop = asyncio.new_event_loop()
        portable.on_stop_signals(loop, lambda: None)  # never restored: the loop closes first
        loop.close()
        signal.raise_signal(signal.SIGTERM)
        assert got == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)


def test_no_stop_signal_handler_outside_the_main_thread() -> None:
    loop = asyncio.new_event_loop()
    try:
        result: list[portable.StopSignals] = []
        t = threading.Thread(target=lambda: result.append(portable.on_stop_signals(loop, lambda: None)))
        t.start()
        t.join(5)
        assert result[0].installed == ()
    finally:
        loop.close()
