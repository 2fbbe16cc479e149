"""Reading a journal back, resynchronising on the next valid record after any damage.

A record is *valid* when its length is sane, its bytes are all there, its CRC-32 matches and its
payload decodes (format: :mod:`kiwoom_tape.recorder.journal`). Reading never stops at a bad byte: from an invalid
position it looks for the next position where a valid record starts (a record's payload begins with
kind byte 1 or 2, so only those positions are tried) and goes on from there. Every byte range between
valid records, before the first or after the last, is a :class:`Damage`: the reader says where it is,
which records surround it, and how many frames it held when the frame numbers around it tell
(``seq`` counts every frame of a run). A torn tail (a crash in the middle of a write) is the special
case of a damage that runs to the end of the file. A damaged header is a damage too: the records after
it are still read (the run id and segment are in the file name,
:func:`kiwoom_tape.schemas.layout.parse_journal_filename`).

A false resynchronisation needs a random CRC-32 match plus a well-formed payload: about one chance in
2**32 per position tried.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from kiwoom_tape.recorder.journal_format import (
    _CRC,
    _HEAD_FIXED,
    _KIND_EVENT,
    _KIND_FRAME,
    _REC,
    MAGIC,
    MAX_RECORD_BYTES,
    VERSION,
    FrameRecord,
    JournalFormatError,
    JournalHeader,
    Record,
    _crc32,
    _decode_payload,
    storage_error,
)

__all__ = [
    "Damage",
    "JournalContents",
    "JournalScan",
    "iter_journal",
    "iter_journal_at",
    "parse_header",
    "read_journal",
    "scan_journal",
]


@dataclass(frozen=True, slots=True)
class Damage:
    """One unreadable byte range ``[start, end)`` of a journal, and the valid records around it."""

    start: int
    end: int
    before_ns: int | None
    """Receive time of the last valid record before the range (None: none before it)."""
    after_ns: int | None
    """Receive time of the first valid record after it (None: the range runs to the end of the file)."""
    before_seq: int | None
    """``seq`` of the last valid frame before the range (None: none)."""
    after_seq: int | None
    """``seq`` of the first valid frame after the range (None: none)."""

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def frames_lost(self) -> int | None:
        """Frames the range held, when valid frames on both sides tell (``seq`` has no holes in a run)."""
        if self.before_seq is None or self.after_seq is None:
            return None
        return max(0, self.after_seq - self.before_seq - 1)

    @property
    def at_tail(self) -> bool:
        """The range runs to the end of the file: a torn tail, as a crash in the middle of a write leaves."""
        return self.after_ns is None


class JournalScan(NamedTuple):
    """What :func:`scan_journal` found. ``header`` is None when the header itself is torn or damaged."""

    header: JournalHeader | None
    valid_length: int
    """End of the last valid record (of the header if there is none)."""
    torn: bool
    """Some bytes are unreadable (``damage`` is not empty)."""
    size: int
    frames: int
    events: int
    damage: tuple[Damage, ...] = ()
    last_ns: int | None = None
    """Receive time of the last valid record, or None."""
    recovery_events: int = 0
    """``recovery`` events among the records (an earlier recovery of this segment was interrupted)."""

    @property
    def torn_bytes(self) -> int:
        """Unreadable bytes, over every damaged range."""
        return sum(d.nbytes for d in self.damage)


class JournalContents(NamedTuple):
    """What :func:`read_journal` returns: ``header, records, valid_length, torn = read_journal(p)``."""

    header: JournalHeader | None
    records: list[Record]
    valid_length: int
    torn: bool


def parse_header(buf: mmap.mmap | bytes, size: int, path: str | os.PathLike[str]) -> tuple[JournalHeader | None, bool]:
    """Parse the header at the start of ``buf`` (``size`` bytes of a journal file; a prefix is enough):
    (header or None if torn/damaged, whether the magic is wrong). Raises JournalFormatError for a
    complete, intact header of another format version."""
    fixed = buf[: _HEAD_FIXED.size]
    bad_magic = len(fixed) >= len(MAGIC) and fixed[: len(MAGIC)] != MAGIC
    if bad_magic or len(fixed) < _HEAD_FIXED.size:
        return None, bad_magic
    _, version, n, segment, created_ns = _HEAD_FIXED.unpack(fixed)
    end = _HEAD_FIXED.size + n + _CRC.size
    if end > size:
        return None, False
    (crc,) = _CRC.unpack_from(buf, end - _CRC.size)
    if crc != _crc32(buf[: end - _CRC.size]):
        return None, False
    if version != VERSION:
        raise JournalFormatError(
            f"{os.fspath(path)} is a journal of format version {version}; this kiwoom-tape reads {VERSION}",
            path=os.fspath(path),
            hint="recover it with the kiwoom-tape version that wrote it",
        )
    try:
        run_id = bytes(buf[_HEAD_FIXED.size : end - _CRC.size]).decode("utf-8")
    except UnicodeDecodeError:
        return None, False
    return JournalHeader(version, run_id, segment, created_ns, end), False


class _Walk:
    """One pass over a journal: iterate :meth:`records`; afterwards the attributes say what it found."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.header: JournalHeader | None = None
        self.valid_length = 0
        self.size = 0
        self.frames = 0
        self.events = 0
        self.damage: list[Damage] = []
        self.last_ns: int | None = None
        self.recovery_events = 0

    def records(self) -> Iterator[tuple[int, Record]]:
        """Yield (offset, record) for each valid record, resynchronising after damage (module docstring)."""
        path = self.path
        try:
            with open(path, "rb") as f:
                self.size = size = os.fstat(f.fileno()).st_size
                if size == 0:
                    return
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    yield from self._records(mm, size)
        except OSError as exc:
            raise storage_error(exc, path, "read the journal") from exc

    def _records(self, mm: mmap.mmap, size: int) -> Iterator[tuple[int, Record]]:
        header, bad_magic = parse_header(mm, size, self.path)
        self.header = header
        pos = header.length if header is not None else 0
        self.valid_length = pos
        bad_from: int | None = None if header is not None else 0
        last_ns: int | None = None
        last_seq: int | None = None
        found = 0
        next_at = {1: -1, 2: -1}  # cached positions of the next kind bytes, for resynchronising
        while pos < size:
            rec = _record_at(mm, pos, size)
            if rec is None:
                if bad_from is None:
                    bad_from = pos
                pos = _next_candidate(mm, pos + 1, size, next_at)
                continue
            length, record = rec
            if bad_from is not None:
                seq = record.seq if isinstance(record, FrameRecord) else None
                self.damage.append(Damage(bad_from, pos, last_ns, record.recv_ns, last_seq, seq))
                bad_from = None
            found += 1
            last_ns = record.recv_ns
            if isinstance(record, FrameRecord):
                self.frames += 1
                last_seq = record.seq
            else:
                self.events += 1
                self.recovery_events += record.kind == "recovery"
            self.last_ns = last_ns
            yield pos, record
            pos += 8 + length
            self.valid_length = pos
        if bad_from is not None and bad_from < size:
            self.damage.append(Damage(bad_from, size, last_ns, None, last_seq, None))
        if bad_magic and not found:
            raise JournalFormatError(
                f"{os.fspath(self.path)} is not a kiwoom-tape journal (bad magic)",
                path=os.fspath(self.path),
                hint="move the file out of the _journal directory",
            )


def _record_at(mm: mmap.mmap, pos: int, size: int) -> tuple[int, Record] | None:
    """(payload length, record) of a valid record at ``pos``, or None."""
    if pos + 9 > size:
        return None
    length, crc = _REC.unpack_from(mm, pos)
    if length == 0 or length > MAX_RECORD_BYTES or pos + 8 + length > size:
        return None
    kind = mm[pos + 8]
    if kind != _KIND_FRAME and kind != _KIND_EVENT:
        return None
    payload = mm[pos + 8 : pos + 8 + length]
    if _crc32(payload) != crc:
        return None
    try:
        return length, _decode_payload(payload)
    except (ValueError, IndexError, struct.error):
        return None


def _next_candidate(mm: mmap.mmap, start: int, size: int, next_at: dict[int, int]) -> int:
    """The first position >= ``start`` whose payload's kind byte (at +8) is 1 or 2; ``size`` if none."""
    best = size
    for kind in (_KIND_FRAME, _KIND_EVENT):
        at = next_at[kind]
        if at < start + 8:
            at = mm.find(bytes((kind,)), start + 8)
            next_at[kind] = size + 8 if at < 0 else at
            at = next_at[kind]
        best = min(best, at - 8)
    return best


def scan_journal(path: str | os.PathLike[str]) -> JournalScan:
    """Check a journal without keeping its records: header, damaged ranges, counts.

    Raises StorageError if the file is not a journal of this format version or cannot be read.
    """
    w = _Walk(path)
    for _ in w.records():
        pass
    return JournalScan(
        w.header, w.valid_length, bool(w.damage), w.size, w.frames, w.events, tuple(w.damage), w.last_ns,
        w.recovery_events,
    )


def iter_journal_at(path: str | os.PathLike[str]) -> Iterator[tuple[int, Record]]:
    """Yield (byte offset, record) for each valid record of a journal, in order, skipping damaged ranges."""
    yield from _Walk(path).records()


def iter_journal(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Yield the valid records of a journal in order, skipping damaged ranges (:func:`scan_journal` lists them)."""
    for _pos, rec in _Walk(path).records():
        yield rec


def read_journal(path: str | os.PathLike[str]) -> JournalContents:
    """All valid records of a journal, where the last one ends, and whether any bytes are unreadable.

    ``torn`` is True when some range of the file is not valid records (a record cut short, a bad
    checksum, a malformed payload, a damaged header). Nothing is modified.
    """
    w = _Walk(path)
    records = [r for _pos, r in w.records()]
    return JournalContents(w.header, records, w.valid_length, bool(w.damage))
