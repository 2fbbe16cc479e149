"""The crash-safe journal (recorder/journal.py): round trip, torn tails, corruption, locking, disk errors."""

from __future__ import annotations

import errno
import itertools
import json
import os
import random
from pathlib import Path

import pytest
from _clock import FakeClock
from kiwoom_tape.recorder import journal as jmod
from kiwoom_tape.recorder.journal import (
    EventRecord,
    FrameRecord,
    JournalBusy,
    JournalWriter,
    encode_event,
    encode_frame,
    iter_journal,
    read_journal,
    scan_journal,
)
from kiwoom_tape.recorder.journal_io import torn_path
from kiwoom_tape.schemas.errors import StorageError

REAL = '{"trnm":"REAL","data":[{"type":"0D","name":"주식호가잔량","item":"005930","values":{"21":"090000"}}]}'



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
        assert [(d.start, d.end) for d in scan_journal(path).damage] == ([(0, cut)] if cut else [])


def _offsets(data: bytes, header_length: int, recs: list[FrameRecord | EventRecord]) -> list[int]:
    """Start of each record and the end of the last one."""
    offsets = [header_length]
    for r in recs:
        if isinstance(r, FrameRecord):
            enc = encode_frame(
                r.recv_ns, r.seq, r.direction, r.text, has_rows=r.has_rows, parse_error=r.parse_error, trnm=r.trnm
            )
        else:
            enc = encode_event(r.recv_ns, r.kind, r.detail_json, r.return_code)
        offsets.append(offsets[-1] + len(enc))
    assert offsets[-1] == len(data)
    return offsets


def test_a_flipped_byte_loses_its_record_only(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    recs = _records()
    _write(path, recs).close()
    data = path.read_bytes()
    header = read_journal(path).header
    assert header is not None
    offsets = _offsets(data, header.length, recs)
    for k in range(len(recs)):
        for where in (offsets[k], offsets[k] + 5, offsets[k] + 9, offsets[k + 1] - 1):
            bad = bytearray(data)
            bad[where] ^= 0x40
            path.write_bytes(bytes(bad))
            _h, records, _valid, torn = read_journal(path)
            assert records == recs[:k] + recs[k + 1 :], (k, where)
            assert torn
            scan = scan_journal(path)
            assert [(d.start, d.end) for d in scan.damage] == [(offsets[k], offsets[k + 1])]
            assert scan.torn_bytes == offsets[k + 1] - offsets[k]


def test_a_damaged_header_loses_no_record(tmp_path: Path) -> None:
    path = tmp_path / "run1-000007.journal"
    recs = _records()
    _write(path, recs).close()
    data = path.read_bytes()
    hlen = read_journal(path).header.length  # type: ignore[union-attr]
    for where in range(hlen):
        bad = bytearray(data)
        bad[where] ^= 0x01
        path.write_bytes(bytes(bad))
        header, records, _valid, torn = read_journal(path)
        assert header is None and records == recs and torn, where
        assert [(d.start, d.end) for d in scan_journal(path).damage] == [(0, hlen)]


def test_random_flips_and_cuts_lose_only_the_damaged_records(tmp_path: Path) -> None:
    """60 seeded cases: 1-3 flipped bits and maybe a cut, at random offsets of a 400-record journal."""
    rng = random.Random(20261202)
    path = tmp_path / "run1-000007.journal"
    recs: list[FrameRecord | EventRecord] = []
    for i in range(400):
        if i % 50 == 7:
            recs.append(EventRecord(1_700_000_000_000_000_000 + i, "ping_summary", json.dumps({"n": i})))
        else:
            body = REAL.replace("090000", f"{i:06d}") * rng.randint(1, 4)
            recs.append(FrameRecord(1_700_000_000_000_000_000 + i, i, "in", body.encode(), has_rows=i % 2 == 0))
    _write(path, recs).close()
    data = path.read_bytes()
    hlen = read_journal(path).header.length  # type: ignore[union-attr]
    offsets = _offsets(data, hlen, recs)
    spans = [(0, hlen), *itertools.pairwise(offsets)]  # the header, then each record
    bad_path = tmp_path / "bad-000007.journal"
    for case in range(60):
        bad = bytearray(data)
        flips = [rng.randrange(len(data)) for _ in range(rng.randint(1, 3))]
        for at in flips:
            bad[at] ^= 1 << rng.randrange(8)
        cut = rng.randrange(hlen, len(data)) if rng.random() < 0.3 else len(data)
        bad_path.write_bytes(bytes(bad[:cut]))
        hit = [
            any(lo <= at < hi for at in flips) or hi > cut for lo, hi in spans
        ]
        want = [r for r, h in zip(recs, hit[1:], strict=True) if not h]
        ranges: list[list[int]] = []
        for (lo, hi), h in zip(spans, hit, strict=True):
            if h:
                lo, hi = lo, min(hi, cut)
                if lo >= hi:
                    continue
                if ranges and ranges[-1][1] == lo:
                    ranges[-1][1] = hi
                else:
                    ranges.append([lo, hi])
        assert list(iter_journal(bad_path)) == want, (case, flips, cut)
        scan = scan_journal(bad_path)
        assert [[d.start, d.end] for d in scan.damage] == ranges, (case, flips, cut)
        w, _scan = JournalWriter.resume(bad_path)
        w.close()
        assert torn_path(bad_path).read_bytes() == b"".join(bytes(bad[lo:hi]) for lo, hi in ranges)
        torn_path(bad_path).unlink()


def test_bad_magic_is_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "x.journal"
    path.write_bytes(b"PAR1 something else entirely")
    with pytest.raises(StorageError, match="not a kiwoom-tape journal"):
        read_journal(path)


def test_sync_on_interval_and_on_demand(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
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


def test_resume_keeps_the_torn_tail_aside_and_appends_after_it(tmp_path: Path) -> None:
    path = tmp_path / "run1-000007.journal"
    recs = _records()
    _write(path, recs).close()
    size = path.stat().st_size
    with path.open("ab") as f:
        f.write(b"\x10\x00\x00\x00garbage")
    w, scan = JournalWriter.resume(path)
    assert scan.torn and scan.torn_bytes == 11 and scan.frames == 5 and scan.events == 2
    assert [(d.start, d.end, d.at_tail) for d in scan.damage] == [(size, size + 11, True)]
    assert torn_path(path).read_bytes() == b"\x10\x00\x00\x00garbage"
    assert (w.run_id, w.segment) == ("run1", 7)
    w.append_event(9, "recovery", '{"segment":7}')
    w.close()
    _h, records, _v, _torn = read_journal(path)
    assert records == [*recs, EventRecord(9, "recovery", '{"segment":7}')]
    assert [(d.start, d.end, d.at_tail) for d in scan_journal(path).damage] == [(size, size + 11, False)]


def test_corruption_inside_the_file_is_kept_aside_whatever_its_size(tmp_path: Path) -> None:
    path = tmp_path / "run1-000007.journal"
    recs = _records()
    _write(path, recs).close()
    data = bytearray(path.read_bytes())
    header = read_journal(path).header
    assert header is not None
    offsets = _offsets(bytes(data), header.length, recs)
    data[header.length + 10] ^= 0xFF  # inside the first record: only it is lost
    path.write_bytes(bytes(data))
    w, scan = JournalWriter.resume(path)
    w.close()
    assert scan.torn and scan.frames == 4 and scan.events == 2
    (d,) = scan.damage
    assert (d.start, d.end, d.before_ns, d.after_ns, d.after_seq) == (offsets[0], offsets[1], None, recs[1].recv_ns, 1)
    assert torn_path(path).read_bytes() == bytes(data[offsets[0] : offsets[1]])
    assert path.stat().st_size == len(data)  # nothing cut off: the bytes stay where they were


def test_damage_between_frames_counts_the_frames_lost(tmp_path: Path) -> None:
    path = tmp_path / "run1-000007.journal"
    recs = [FrameRecord(100 + i, i, "in", b'{"trnm":"PING"}') for i in range(10)]
    _write(path, recs).close()
    data = bytearray(path.read_bytes())
    hlen = read_journal(path).header.length  # type: ignore[union-attr]
    offsets = _offsets(bytes(data), hlen, list(recs))
    data[offsets[3] + 12] ^= 1
    data[offsets[5] + 12] ^= 1
    data[offsets[4] + 12] ^= 1
    path.write_bytes(bytes(data))
    (d,) = scan_journal(path).damage
    assert (d.before_seq, d.after_seq, d.frames_lost, d.before_ns, d.after_ns) == (2, 6, 3, 102, 106)


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
