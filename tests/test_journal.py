"""The crash-safe journal (recorder/journal.py): round trip, torn tails, corruption, locking, disk errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from recorder import journal as jmod
from recorder.journal import (
    EventRecord,
    FrameRecord,
    JournalBusy,
    JournalWriter,
    encode_event,
    encode_frame,
    iter_journal,
    read_journal,
    scan_journal,
    torn_path,
)
from schemas.errors import StorageError

REAL = '{"trnm":"REAL","data":[{"type":"0D","name":"주식호가잔량","item":"005930","values":{"21":"090000"}}]}'


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _records() -> list[FrameRecord | EventRecord]:
    return [
        FrameRecord(1_700_000_000_000_000_000, 0, "out", b'{"trnm":"LOGIN","token":"***"}', trnm="LOGIN"),
        FrameRecord(1_700_000_000_000_000_001, 1, "in", b'{"trnm":"LOGIN","return_code":0,"return_msg":""}'),
        EventRecord(1_700_000_000_000_000_002, "login", '{"ok":true}', 0),
        FrameRecord(1_700_000_000_000_000_003, 2, "in", REAL.encode(), has_rows=True),
        FrameRecord(1_700_000_000_000_000_004, 3, "in", b"not json {", parse_error="not JSON (oops)"),
        EventRecord(1_700_000_000_000_000_005, "disconnect", '{"cause":"연결 끊김"}'),
        FrameRecord(-5, 4, "in", b"", trnm=""),
    ]


def _write(path: Path, records: list[FrameRecord | EventRecord], **kw: object) -> JournalWriter:
    w = JournalWriter(path, "run1", 7, **kw)  # type: ignore[arg-type]
    for r in records:
        if isinstance(r, FrameRecord):
            w.append_frame(
                r.recv_ns, r.seq, r.direction, r.text, has_rows=r.has_rows, parse_error=r.parse_error, trnm=r.trnm
            )
        else:
            w.append_event(r.recv_ns, r.kind, r.detail_json, r.return_code)
    return w


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run1-000007.journal"
    recs = _records()
    w = _write(path, recs)
    w.close()
    header, records, valid, torn = read_journal(path)
    assert header is not None
    assert (header.version, header.run_id, header.segment) == (jmod.VERSION, "run1", 7)
    assert records == recs
    assert valid == path.stat().st_size
    assert not torn
    assert list(iter_journal(path)) == recs
    scan = scan_journal(path)
    assert (scan.frames, scan.events, scan.torn, scan.torn_bytes) == (5, 2, False, 0)
    assert isinstance(records[2], EventRecord) and records[2].detail == {"ok": True}
    assert not list(tmp_path.glob("*.new"))


def test_header_is_complete_before_the_file_appears(tmp_path: Path) -> None:
    path = tmp_path / "r-000000.journal"
    w = JournalWriter(path, "r", 0)
    header, records, valid, torn = read_journal(path)
    assert header is not None and records == [] and not torn and valid == header.length == path.stat().st_size
    w.close()
    with pytest.raises(StorageError, match="already exists"):
        JournalWriter(path, "r", 0)


def test_torn_tail_at_every_offset_of_the_last_record(tmp_path: Path) -> None:
    path = tmp_path / "run1-000007.journal"
    recs = _records()[:4]
    _write(path, recs).close()
    data = path.read_bytes()
    r = recs[-1]
    assert isinstance(r, FrameRecord)
    last = encode_frame(r.recv_ns, r.seq, r.direction, r.text, has_rows=r.has_rows)
    start = len(data) - len(last)
    assert data[start:] == last
    cut_path = tmp_path / "cut.journal"
    for cut in range(start, len(data)):
        cut_path.write_bytes(data[:cut])
        header, records, valid, torn = read_journal(cut_path)
        assert header is not None
        assert records == recs[:-1], cut
        assert valid == start
        assert torn == (cut > start)
        assert scan_journal(cut_path).torn_bytes == cut - start


def test_torn_header_holds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    _write(path, _records()[:1]).close()
    data = path.read_bytes()
    hlen = read_journal(path).header.length  # type: ignore[union-attr]
    for cut in (0, 3, 8, 20, hlen - 1):
        path.write_bytes(data[:cut])
        header, records, valid, torn = read_journal(path)
        assert header is None and records == [] and valid == 0
        assert torn == (cut > 0)


def test_flipped_byte_stops_there(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    recs = _records()
    _write(path, recs).close()
    data = path.read_bytes()
    header = read_journal(path).header
    assert header is not None
    # offsets of each record
    offsets = [header.length]
    for r in recs:
        if isinstance(r, FrameRecord):
            enc = encode_frame(
                r.recv_ns, r.seq, r.direction, r.text, has_rows=r.has_rows, parse_error=r.parse_error, trnm=r.trnm
            )
        else:
            enc = encode_event(r.recv_ns, r.kind, r.detail_json, r.return_code)
        offsets.append(offsets[-1] + len(enc))
    assert offsets[-1] == len(data)
    for k in range(len(recs)):
        for where in (offsets[k], offsets[k] + 5, offsets[k] + 9, offsets[k + 1] - 1):
            bad = bytearray(data)
            bad[where] ^= 0x40
            path.write_bytes(bytes(bad))
            _h, records, valid, torn = read_journal(path)
            assert records == recs[:k], (k, where)
            assert valid == offsets[k]
            assert torn


def test_bad_magic_is_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "x.journal"
    path.write_bytes(b"PAR1 something else entirely")
    with pytest.raises(StorageError, match="not a kiwoom-tape journal"):
        read_journal(path)


def test_sync_on_interval_and_on_demand(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "a.journal"
    w = JournalWriter(path, "run1", 0, fsync_interval=0.2, monotonic=clock)
    base = path.stat().st_size
    w.append_frame(1, 0, "in", b"{}")
    w.append_frame(2, 1, "in", b"{}")
    assert path.stat().st_size == base and w.buffered > 0
    w.maybe_sync()
    assert path.stat().st_size == base
    clock.now += 0.2
    w.append_frame(3, 2, "in", b"{}")  # the interval has passed: this append writes and syncs everything
    assert w.buffered == 0
    assert [r.seq for r in read_journal(path).records] == [0, 1, 2]  # type: ignore[union-attr]
    w.append_event(4, "gap_start", "{}")
    clock.now += 0.1
    w.maybe_sync()
    assert len(read_journal(path).records) == 3
    clock.now += 0.1
    w.maybe_sync()
    assert len(read_journal(path).records) == 4
    w.append_frame(5, 3, "in", b"{}")
    w.sync()
    assert len(read_journal(path).records) == 5
    assert w.size == path.stat().st_size
    w.close()


def test_resume_truncates_the_torn_tail_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "run1-000007.journal"
    recs = _records()
    _write(path, recs).close()
    with path.open("ab") as f:
        f.write(b"\x10\x00\x00\x00garbage")
    w, scan = JournalWriter.resume(path)
    assert scan.torn and scan.torn_bytes == 11 and scan.frames == 5 and scan.events == 2
    assert path.stat().st_size == scan.valid_length
    assert (w.run_id, w.segment) == ("run1", 7)
    w.append_event(9, "recovery", '{"segment":7}')
    w.close()
    _h, records, _v, torn = read_journal(path)
    assert records == [*recs, EventRecord(9, "recovery", '{"segment":7}')]
    assert not torn


def test_corruption_inside_the_file_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "run1-000007.journal"
    recs = _records()
    _write(path, recs).close()
    data = bytearray(path.read_bytes())
    header = read_journal(path).header
    assert header is not None
    data[header.length + 10] ^= 0xFF  # inside the first record: everything after it is cut off
    path.write_bytes(bytes(data))
    w, scan = JournalWriter.resume(path, keep_torn_over=len(data) - header.length - 1)
    w.close()
    assert scan.torn and scan.valid_length == header.length and scan.frames == 0
    assert torn_path(path).read_bytes() == bytes(data[header.length :])
    assert path.stat().st_size == header.length


def test_a_live_journal_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    w = JournalWriter(path, "run1", 0)
    with pytest.raises(JournalBusy):
        JournalWriter.resume(path)
    w.close()
    w2, _ = JournalWriter.resume(path)
    w2.remove()
    assert not path.exists()
    assert not torn_path(path).exists()


def test_remove_deletes_the_segment(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    w = _write(path, _records())
    w.remove()
    assert list(tmp_path.iterdir()) == []


def test_full_disk_is_a_clear_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.journal"
    w = JournalWriter(path, "run1", 0)
    w.append_frame(1, 0, "in", b"{}")
    w.sync()
    good = path.read_bytes()

    def no_space(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", no_space)
    w.append_frame(2, 1, "in", b"{}")
    with pytest.raises(StorageError) as info:
        w.sync()
    err = info.value
    assert err.path == str(path)
    assert "No space left on device" in str(err) and "free disk space" in str(err)
    with pytest.raises(StorageError, match="No space left"):
        w.append_frame(3, 2, "in", b"{}")
    monkeypatch.undo()
    w.abandon()
    assert path.read_bytes() == good
    assert [r.seq for r in read_journal(path).records] == [0]  # type: ignore[union-attr]


def test_unwritable_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def denied(path: object, flags: int, mode: int = 0o777) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(StorageError, match="Read-only file system") as info:
        JournalWriter(tmp_path / "a.journal", "r", 0)
    assert "writable" in info.value.hint
    monkeypatch.undo()
    with pytest.raises(StorageError, match="cannot create the journal"):
        JournalWriter(tmp_path / "missing" / "a.journal", "r", 0)


def test_a_large_journal_streams(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    w = JournalWriter(path, "r", 0, max_buffer=64 * 1024)
    text = REAL.encode()
    for i in range(5000):
        w.append_frame(i, i, "in", text, has_rows=True)
    w.close()
    scan = scan_journal(path)
    assert scan.frames == 5000 and not scan.torn
    assert sum(1 for _ in iter_journal(path)) == 5000
