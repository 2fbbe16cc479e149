"""The journal's bytes: file header and record encoding and decoding, its errors, its OS helpers.

The format is in :mod:`kiwoom_tape.recorder.journal`'s docstring (a header, then ``u32 length | u32 crc32 | payload``
records). Pure functions over bytes, plus :func:`storage_error` (every ``OSError`` of the journal and
the store becomes a :class:`kiwoom_tape.schemas.errors.StorageError` naming the path and the fix) and
:func:`fsync_dir`.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from kiwoom_tape.schemas.errors import StorageError

__all__ = [
    "JOURNAL_SUFFIX",
    "MAGIC",
    "MAX_RECORD_BYTES",
    "NEW_SUFFIX",
    "TORN_SUFFIX",
    "VERSION",
    "EventRecord",
    "FrameRecord",
    "JournalBusy",
    "JournalFormatError",
    "JournalHeader",
    "Record",
    "encode_event",
    "encode_frame",
    "encode_header",
    "fsync_dir",
    "storage_error",
]

MAGIC = b"KTAPEJNL"
VERSION = 1
JOURNAL_SUFFIX = ".journal"
NEW_SUFFIX = ".new"
"""A journal being created: ``{name}.journal.new`` until its header is written (garbage after a crash)."""
TORN_SUFFIX = ".torn"
"""``{journal}.torn`` keeps every unreadable byte range recovery found in ``{journal}``."""
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

