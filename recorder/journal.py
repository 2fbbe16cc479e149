"""The crash-safe journal: every frame and event, appended before anything is derived from it.

A journal *segment* is one file ``DIR/_journal/{run_id}-{segment:06d}.journal`` (``schemas.layout``).
It holds the source of truth for everything not yet in a closed Parquet file: the raw frames (both
directions, the LOGIN frame already redacted) and the events. Normalized rows are never journaled;
recovery derives them again from the frames with the same code as the live path (``recorder.store``).

File format (little-endian)::

    header   "KTAPEJNL" | u16 version | u16 len(run_id) | u32 segment | i64 created_ns | run_id utf-8
             | u32 crc32(all header bytes before it)
    record   u32 length | u32 crc32(payload) | payload[length]
    payload  frame: u8 1 | i64 recv_ns | i64 seq | u8 direction (0 in, 1 out) | u8 flags
                    | [u32 n | parse_error utf-8, if flags & 2] | [u16 n | trnm utf-8, if flags & 4]
                    | text (the rest: the frame's bytes as received, UTF-8)
                    flags & 1: the caller passed decoded rows (recovery decodes the text again)
             event: u8 2 | i64 recv_ns | u8 flags | [i64 return_code, if flags & 1] | u16 n | kind utf-8
                    | detail (the rest: a JSON object, UTF-8)

Durability contract of :class:`JournalWriter`: appends are buffered in memory; the buffer is written
and ``fdatasync``-ed when ``fsync_interval`` has passed since the last sync (checked on every append),
when it holds more than ``max_buffer`` bytes, and on :meth:`JournalWriter.sync` and
:meth:`JournalWriter.close`. The driver must also call :meth:`JournalWriter.sync` (through
``Store.tick``) from a periodic timer, so that a quiet stream is synced too: a ``kill -9`` or a power
cut then loses at most the records appended during the last ``fsync_interval`` seconds.

A crash can leave a torn tail (a record cut short or half-written). :func:`scan_journal` and
:func:`read_journal` stop at the first record that is short or fails its checksum and report where
the valid part ends; recovery truncates the file there (:meth:`JournalWriter.resume`).

Every ``OSError`` is translated once, here, into :class:`schemas.errors.StorageError` naming the path,
the system's reason and how to fix it (:func:`storage_error`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from schemas.errors import StorageError

__all__ = [
    "JOURNAL_SUFFIX",
    "KEEP_TORN_OVER",
    "MAGIC",
    "MAX_RECORD_BYTES",
    "NEW_SUFFIX",
    "TORN_SUFFIX",
    "VERSION",
    "EventRecord",
    "FrameRecord",
    "JournalBusy",
    "JournalContents",
    "JournalFormatError",
    "JournalHeader",
    "JournalScan",
    "JournalWriter",
    "Record",
    "encode_event",
    "encode_frame",
    "encode_header",
    "fsync_dir",
    "iter_journal",
    "read_journal",
    "scan_journal",
    "storage_error",
    "torn_path",
]

MAGIC = b"KTAPEJNL"
VERSION = 1
JOURNAL_SUFFIX = ".journal"
NEW_SUFFIX = ".new"
TORN_SUFFIX = ".torn"
KEEP_TORN_OVER = 8 * 2**20
"""A torn part longer than this (more than a crash can leave) is kept in ``{journal}.torn``."""
"""A journal being created: ``{name}.journal.new`` until its header is written (garbage after a crash)."""
MAX_RECORD_BYTES = 64 * 2**20
"""A length above this is corruption, not a record (a Kiwoom frame is a few KB; the server caps messages)."""

_HEAD_FIXED = struct.Struct("<8sHHIq")
_CRC = struct.Struct("<I")
_REC = struct.Struct("<II")
_FRAME = struct.Struct("<BqqBB")
_EVENT = struct.Struct("<BqB")
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")

_KIND_FRAME = 1
_KIND_EVENT = 2
_F_ROWS = 1
_F_PARSE_ERROR = 2
_F_TRNM = 4
_E_RETURN_CODE = 1

_TRNM_EXTRA: dict[str, bytes] = {}
"""Encoded ``u16 n | trnm`` of the few trnm values there are (REAL, PING, ...), built once."""
_DIRECTIONS = ("in", "out")
_DIR_CODE = {"in": 0, "out": 1}

_crc32 = zlib.crc32
_pack_rec = _REC.pack
_pack_frame = _FRAME.pack

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NO_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)


# --------------------------------------------------------------------------------------------------
# Errors


class JournalBusy(StorageError):
    """The journal is locked by a live recorder (or another recovery): it must not be touched."""


class JournalFormatError(StorageError):
    """The file is not a journal this version can read (bad magic, another format version)."""


def storage_error(exc: BaseException, path: str | os.PathLike[str], action: str) -> StorageError:
    """Translate an ``OSError`` (or pyarrow's I/O error) on ``path`` into a StorageError with a fix.

    ``action`` completes "cannot ...", e.g. ``"write the journal"``. The message names the path and
    the system's reason; ``hint`` says what the user can do (free space, fix permissions, --out).
    """
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    text = str(exc).lower()
    if code in _NO_SPACE or "no space left" in text or "quota" in text:
        hint = "free disk space or choose another --out"
    elif code in _NO_ACCESS or "permission denied" in text or "read-only file system" in text:
        hint = "make the directory writable or choose another --out"
    else:
        hint = "check the disk and the directory, or choose another --out"
    return StorageError(f"cannot {action} {os.fspath(path)}: {reason}", path=os.fspath(path), hint=hint)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so that entries created, renamed or removed in it survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class JournalHeader:
    version: int
    run_id: str
    segment: int
    created_ns: int
    length: int
    """Bytes of the header; the first record starts here."""


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One WebSocket message as the recorder saw it (``direction`` "in" = from the server)."""

    recv_ns: int
    seq: int
    direction: str
    text: bytes
    has_rows: bool = False
    parse_error: str | None = None
    trnm: str | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One recorder event (connect, login, reg ack, disconnect, gap, recovery, ...)."""

    recv_ns: int
    kind: str
    detail_json: str
    return_code: int | None = None

    @property
    def detail(self) -> dict[str, Any]:
        value = json.loads(self.detail_json)
        return value if isinstance(value, dict) else {"value": value}


Record = FrameRecord | EventRecord


def encode_header(run_id: str, segment: int, created_ns: int) -> bytes:
    rid = run_id.encode("utf-8")
    head = _HEAD_FIXED.pack(MAGIC, VERSION, len(rid), segment, created_ns) + rid
    return head + _CRC.pack(_crc32(head))


def _frame_parts(
    recv_ns: int,
    seq: int,
    direction: str,
    data: bytes,
    has_rows: bool,
    parse_error: str | None,
    trnm: str | None,
) -> tuple[bytes, bytes]:
    """(record header + fixed payload head + optional strings, crc-less tail = data) for one frame."""
    flags = _F_ROWS if has_rows else 0
    if trnm is None:
        extra = b""
    else:
        flags |= _F_TRNM
        extra = _TRNM_EXTRA.get(trnm, b"")
        if not extra:
            tb = trnm.encode("utf-8", "replace")[:0xFFFF]
            extra = _U16.pack(len(tb)) + tb
            if len(_TRNM_EXTRA) < 64:
                _TRNM_EXTRA[trnm] = extra
    if parse_error is not None:
        flags |= _F_PARSE_ERROR
        pe = parse_error.encode("utf-8", "replace")
        extra = _U32.pack(len(pe)) + pe + extra
    head = _pack_frame(_KIND_FRAME, recv_ns, seq, _DIR_CODE[direction], flags) + extra
    return _pack_rec(len(head) + len(data), _crc32(data, _crc32(head))) + head, data


def encode_frame(
    recv_ns: int,
    seq: int,
    direction: str,
    data: bytes,
    *,
    has_rows: bool = False,
    parse_error: str | None = None,
    trnm: str | None = None,
) -> bytes:
    """One complete frame record (length, crc, payload), as :meth:`JournalWriter.append_frame` writes it."""
    head, tail = _frame_parts(recv_ns, seq, direction, data, has_rows, parse_error, trnm)
    return head + tail


def encode_event(recv_ns: int, kind: str, detail_json: str, return_code: int | None = None) -> bytes:
    """One complete event record."""
    flags = 0 if return_code is None else _E_RETURN_CODE
    payload = _EVENT.pack(_KIND_EVENT, recv_ns, flags)
    if return_code is not None:
        payload += _I64.pack(return_code)
    kb = kind.encode("utf-8")[:0xFFFF]
    payload += _U16.pack(len(kb)) + kb + detail_json.encode("utf-8")
    return _pack_rec(len(payload), _crc32(payload)) + payload


def _decode_payload(p: bytes) -> Record:
    """Raises ValueError (struct.error, UnicodeDecodeError, KeyError-like) on a malformed payload."""
    kind = p[0]
    if kind == _KIND_FRAME:
        _, recv_ns, seq, dcode, flags = _FRAME.unpack_from(p, 0)
        off = _FRAME.size
        parse_error = trnm = None
        if flags & _F_PARSE_ERROR:
            (n,) = _U32.unpack_from(p, off)
            off += 4
            parse_error = p[off : off + n].decode("utf-8")
            off += n
        if flags & _F_TRNM:
            (n,) = _U16.unpack_from(p, off)
            off += 2
            trnm = p[off : off + n].decode("utf-8")
            off += n
        if off > len(p) or dcode > 1:
            raise ValueError("malformed frame record")
        return FrameRecord(recv_ns, seq, _DIRECTIONS[dcode], p[off:], bool(flags & _F_ROWS), parse_error, trnm)
    if kind == _KIND_EVENT:
        _, recv_ns, flags = _EVENT.unpack_from(p, 0)
        off = _EVENT.size
        rc = None
        if flags & _E_RETURN_CODE:
            (rc,) = _I64.unpack_from(p, off)
            off += 8
        (n,) = _U16.unpack_from(p, off)
        off += 2
        if off + n > len(p):
            raise ValueError("malformed event record")
        return EventRecord(recv_ns, p[off : off + n].decode("utf-8"), p[off + n :].decode("utf-8"), rc)
    raise ValueError(f"unknown record kind {kind}")


# --------------------------------------------------------------------------------------------------
# Reading


class JournalScan(NamedTuple):
    """What :func:`scan_journal` found. ``header`` is None when the header itself is torn."""

    header: JournalHeader | None
    valid_length: int
    torn: bool
    size: int
    frames: int
    events: int

    @property
    def torn_bytes(self) -> int:
        return self.size - self.valid_length


class JournalContents(NamedTuple):
    """What :func:`read_journal` returns: ``header, records, valid_length, torn = read_journal(p)``."""

    header: JournalHeader | None
    records: list[Record]
    valid_length: int
    torn: bool


def _read_header(f: BinaryIO, path: str | os.PathLike[str]) -> JournalHeader | None:
    """The header, or None if it is torn (a crash while the file was being created: nothing in it)."""
    fixed = f.read(_HEAD_FIXED.size)
    if len(fixed) >= len(MAGIC) and fixed[: len(MAGIC)] != MAGIC:
        raise JournalFormatError(
            f"{os.fspath(path)} is not a kiwoom-tape journal (bad magic)",
            path=os.fspath(path),
            hint="move the file out of the _journal directory",
        )
    if len(fixed) < _HEAD_FIXED.size:
        return None
    _, version, n, segment, created_ns = _HEAD_FIXED.unpack(fixed)
    if version != VERSION:
        raise JournalFormatError(
            f"{os.fspath(path)} is a journal of format version {version}; this kiwoom-tape reads {VERSION}",
            path=os.fspath(path),
            hint="recover it with the kiwoom-tape version that wrote it",
        )
    rest = f.read(n + _CRC.size)
    if len(rest) < n + _CRC.size:
        return None
    (crc,) = _CRC.unpack_from(rest, n)
    if crc != _crc32(fixed + rest[:n]):
        return None
    try:
        run_id = rest[:n].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return JournalHeader(version, run_id, segment, created_ns, _HEAD_FIXED.size + n + _CRC.size)


class _Walk:
    """One pass over a journal: iterate :meth:`records`; afterwards the attributes say where it ended."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.header: JournalHeader | None = None
        self.valid_length = 0
        self.torn = False
        self.size = 0
        self.frames = 0
        self.events = 0

    def records(self, decode: bool) -> Iterator[Record | None]:
        """Yield each valid record (None instead when not ``decode``), stopping at a torn tail."""
        path = self.path
        try:
            f = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - closed in the finally below
        except OSError as exc:
            raise storage_error(exc, path, "read the journal") from exc
        try:
            self.size = size = os.fstat(f.fileno()).st_size
            self.header = header = _read_header(f, path)
            if header is None:
                self.torn = size > 0
                return
            pos = header.length
            read = f.read
            while pos < size:
                rh = read(8)
                if len(rh) < 8:
                    break
                length, crc = _REC.unpack(rh)
                if length == 0 or length > MAX_RECORD_BYTES or pos + 8 + length > size:
                    break
                payload = read(length)
                if len(payload) < length or _crc32(payload) != crc:
                    break
                kind = payload[0]
                record: Record | None = None
                if decode:
                    try:
                        record = _decode_payload(payload)
                    except (ValueError, IndexError, struct.error):
                        break
                elif kind != _KIND_FRAME and kind != _KIND_EVENT:
                    break
                pos += 8 + length
                if kind == _KIND_FRAME:
                    self.frames += 1
                else:
                    self.events += 1
                self.valid_length = pos
                yield record
            self.valid_length = pos
            self.torn = pos < size
        except OSError as exc:
            raise storage_error(exc, path, "read the journal") from exc
        finally:
            f.close()


def scan_journal(path: str | os.PathLike[str]) -> JournalScan:
    """Check a journal without keeping its records: header, where the valid part ends, counts.

    Raises StorageError if the file is not a journal of this format version or cannot be read.
    """
    w = _Walk(path)
    for _ in w.records(decode=False):
        pass
    return JournalScan(w.header, w.valid_length, w.torn, w.size, w.frames, w.events)


def iter_journal(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Yield the valid records of a journal in order, stopping silently at a torn tail."""
    for rec in _Walk(path).records(decode=True):
        if rec is not None:
            yield rec


def read_journal(path: str | os.PathLike[str]) -> JournalContents:
    """All valid records of a journal, where the valid part ends, and whether a torn tail follows it.

    ``torn`` is True when bytes follow the last valid record (a record cut short, a bad checksum, a
    malformed payload) or when the header itself is cut short. Nothing is modified.
    """
    w = _Walk(path)
    records = [r for r in w.records(decode=True) if r is not None]
    return JournalContents(w.header, records, w.valid_length, w.torn)


# --------------------------------------------------------------------------------------------------
# Writing


class JournalWriter:
    """Appends records to one journal segment; see the module docstring for the durability contract.

    Creating a writer creates the file (never overwriting one), writes and fsyncs its header and the
    directory entry, and takes an exclusive ``flock`` on it so that recovery (in this or another
    process) leaves a live journal alone. After :meth:`close`, the caller must either keep the file
    (its records are not in closed Parquet files yet) or :meth:`remove` it once they are.

    After a write error the writer is *failed*: every later call raises the same StorageError; what
    was synced before stays valid and a partly written tail is cut off by recovery.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        run_id: str,
        segment: int,
        *,
        fsync_interval: float = 0.2,
        max_buffer: int = 4 * 2**20,
        monotonic: Callable[[], float] = time.monotonic,
        created_ns: int | None = None,
        _fd: int | None = None,
        _size: int = 0,
    ) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.segment = segment
        self.fsync_interval = fsync_interval
        self.max_buffer = max_buffer
        self._monotonic = monotonic
        # Appends are copied into one buffer that is reused from sync to sync (it only grows, to the
        # largest amount buffered between two syncs): no allocation per sync, so the heap does not
        # fragment over a long run (bench/README: RSS of record).
        self._arena = bytearray(1 << 18)
        self._buffered = 0
        self._failed: StorageError | None = None
        self.closed = False
        self.frames = 0
        self.events = 0
        if _fd is not None:
            self._fd = _fd
            self.size = _size
            self._last_sync = monotonic()
            return
        head = encode_header(run_id, segment, time.time_ns() if created_ns is None else created_ns)
        # Written and locked under a temporary name, then renamed: a ``.journal`` file always has a
        # complete header, and recovery can never open it before its writer holds the lock.
        tmp = self.path.with_name(self.path.name + NEW_SUFFIX)
        if self.path.exists():
            raise StorageError(
                f"journal {self.path} already exists",
                path=str(self.path),
                hint="recover the dataset first (record recover DIR) or use a new run id",
            )
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise storage_error(exc, tmp, "create the journal") from exc
        try:
            _lock(fd, tmp)
            _write_all(fd, head)
            os.fdatasync(fd)
            os.rename(tmp, self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise storage_error(exc, self.path, "create the journal") from exc
        self._fd = fd
        self.size = len(head)
        self._last_sync = monotonic()

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike[str],
        *,
        fsync_interval: float = 0.2,
        monotonic: Callable[[], float] = time.monotonic,
        keep_torn_over: int = KEEP_TORN_OVER,
    ) -> tuple[JournalWriter, JournalScan]:
        """Lock an existing journal, cut its torn tail off, and return a writer appending after it.

        A crash tears at most the last unsynced write (``max_buffer`` plus a record). A longer torn
        part means corruption inside the file, with valid records possibly after it: those bytes are
        first copied to ``{path}.torn`` (left for a human; see :func:`torn_path`), then cut off.
        Raises JournalBusy if a live recorder (or another recovery) holds it, JournalFormatError if it
        is not a journal. The caller must :meth:`close` or :meth:`remove` the writer.
        """
        p = Path(path)
        try:
            fd = os.open(p, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except OSError as exc:
            raise storage_error(exc, p, "open the journal") from exc
        try:
            _lock(fd, p)
            scan = scan_journal(p)
            if scan.torn:
                if scan.torn_bytes > keep_torn_over:
                    _save_tail(fd, scan.valid_length, torn_path(p))
                os.ftruncate(fd, scan.valid_length)
                os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise storage_error(exc, p, "repair the journal") from exc
        except BaseException:
            os.close(fd)
            raise
        header = scan.header
        run_id, segment = (header.run_id, header.segment) if header is not None else ("", 0)
        w = cls(p, run_id, segment, fsync_interval=fsync_interval, monotonic=monotonic, _fd=fd, _size=scan.valid_length)
        w.frames, w.events = scan.frames, scan.events
        return w, scan

    # -- appending ---------------------------------------------------------------------------------

    def append_frame(
        self,
        recv_ns: int,
        seq: int,
        direction: str,
        data: bytes,
        *,
        has_rows: bool = False,
        parse_error: str | None = None,
        trnm: str | None = None,
    ) -> None:
        """Buffer one frame record (``data`` = the frame's UTF-8 bytes); syncs if the interval passed."""
        if self._failed is not None or self.closed:
            self._raise_closed()
        head, tail = _frame_parts(recv_ns, seq, direction, data, has_rows, parse_error, trnm)
        pos = self._buffered
        mid = pos + len(head)
        end = mid + len(tail)
        if end > len(self._arena):
            self._grow(end)
        arena = self._arena
        arena[pos:mid] = head
        arena[mid:end] = tail
        self._buffered = end
        self.frames += 1
        if self._monotonic() - self._last_sync >= self.fsync_interval or self._buffered >= self.max_buffer:
            self.sync()

    def append_event(self, recv_ns: int, kind: str, detail_json: str, return_code: int | None = None) -> None:
        """Buffer one event record (``detail_json`` = a JSON object's text)."""
        if self._failed is not None or self.closed:
            self._raise_closed()
        rec = encode_event(recv_ns, kind, detail_json, return_code)
        pos = self._buffered
        end = pos + len(rec)
        if end > len(self._arena):
            self._grow(end)
        self._arena[pos:end] = rec
        self._buffered = end
        self.events += 1
        if self._monotonic() - self._last_sync >= self.fsync_interval:
            self.sync()

    def maybe_sync(self) -> None:
        """:meth:`sync` if ``fsync_interval`` has passed since the last sync (call it from a timer)."""
        if self._buffered and self._monotonic() - self._last_sync >= self.fsync_interval:
            self.sync()

    @property
    def buffered(self) -> int:
        """Bytes appended but not yet written and synced."""
        return self._buffered

    def sync(self) -> None:
        """Write the buffer and fdatasync: everything appended so far survives a crash after this returns."""
        if self._failed is not None:
            raise self._failed
        if self.closed:
            return
        self._last_sync = self._monotonic()
        size = self._buffered
        if not size:
            return
        self._buffered = 0
        try:
            with memoryview(self._arena) as view:
                _write_all(self._fd, view[:size])
            os.fdatasync(self._fd)
        except OSError as exc:
            self._failed = storage_error(exc, self.path, "write the journal")
            raise self._failed from exc
        self.size += size

    def _grow(self, need: int) -> None:
        """Make the buffer hold ``need`` bytes (doubling; kept for the writer's life)."""
        new = len(self._arena)
        while new < need:
            new *= 2
        self._arena.extend(bytes(new - len(self._arena)))

    def close(self) -> None:
        """Sync and close; the file stays (its records are the truth until they are in Parquet)."""
        if self.closed:
            return
        try:
            if self._failed is None:
                self.sync()
        finally:
            self.closed = True
            os.close(self._fd)

    def abandon(self) -> None:
        """Close without writing the buffer (after a failure): what was synced stays on disk."""
        if not self.closed:
            self.closed = True
            self._buffered = 0
            os.close(self._fd)

    def remove(self) -> None:
        """Delete the segment (its contents are in closed Parquet files now) and fsync the directory.

        Call only after every Parquet file derived from this segment has been renamed into place.
        Records still buffered are discarded.
        """
        self._buffered = 0
        try:
            os.unlink(self.path)  # while still holding the lock: no recovery can pick it up half-way
            fsync_dir(self.path.parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise storage_error(exc, self.path, "delete the finished journal") from exc
        finally:
            if not self.closed:
                self.closed = True
                os.close(self._fd)

    def _raise_closed(self) -> None:
        if self._failed is not None:
            raise self._failed
        raise StorageError(
            f"journal {self.path} is closed", path=str(self.path), hint="this is a bug; please report it"
        )


def torn_path(path: str | os.PathLike[str]) -> Path:
    """Where :meth:`JournalWriter.resume` keeps a suspiciously long torn part of ``path``."""
    return Path(os.fspath(path) + TORN_SUFFIX)


def _save_tail(fd: int, start: int, dest: Path) -> None:
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        pos = start
        while chunk := os.pread(fd, 1 << 20, pos):
            _write_all(out, chunk)
            pos += len(chunk)
        os.fsync(out)
    finally:
        os.close(out)
    fsync_dir(dest.parent)


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise JournalBusy(
            f"journal {path} is in use by a running recorder or recovery",
            path=str(path),
            hint="stop the other recorder first, or record into another --out",
        ) from None


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]

