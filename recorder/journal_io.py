"""The journal's file operations below :class:`kiwoom_tape.recorder.journal.JournalWriter`: lock, write, close.

:func:`lock_journal` takes a journal's exclusive lock or raises JournalBusy, :func:`write_all` writes every byte
(``os.write`` may write fewer), :func:`close_fd` closes a descriptor that may already be closed, and
:func:`save_damage` copies a journal's unreadable ranges to ``{journal}.torn`` (:func:`torn_path`) before recovery
appends to it. ``OSError`` passes through: the caller translates it into a StorageError naming what it was doing
(:func:`kiwoom_tape.recorder.journal_format.storage_error`).
"""

from __future__ import annotations

import os
from pathlib import Path

from kiwoom_tape.recorder.journal_format import TORN_SUFFIX, JournalBusy, fsync_dir
from kiwoom_tape.recorder.journal_reader import Damage

from kiwoom_tape import portable

__all__ = ["close_fd", "lock_journal", "save_damage", "torn_path", "write_all"]


def torn_path(path: str | os.PathLike[str]) -> Path:
    """Where :meth:`JournalWriter.resume` keeps the unreadable ranges of ``path``: ``{path}.torn``."""
    return Path(os.fspath(path) + TORN_SUFFIX)


def save_damage(fd: int, damage: tuple[Damage, ...], dest: Path) -> None:
    """Write the bytes of every range of ``damage`` (read from ``fd``), in order, to ``dest``; fsync it.

    The ranges' offsets are in the ``journal_damage`` events recovery records (:mod:`kiwoom_tape.recorder.recovery`).
    """
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | portable.OPEN_FLAGS, 0o644)
    try:
        for d in damage:
            pos = d.start
            while pos < d.end and (chunk := portable.pread(fd, min(1 << 20, d.end - pos), pos)):
                write_all(out, chunk)
                pos += len(chunk)
        os.fsync(out)
    finally:
        os.close(out)
    fsync_dir(dest.parent)


def lock_journal(fd: int, path: Path) -> None:
    """Lock the journal open as ``fd`` (:func:`kiwoom_tape.portable.try_lock`), or raise JournalBusy."""
    if not portable.try_lock(fd):
        raise JournalBusy(
            f"journal {path} is in use by a running recorder or recovery",
            path=str(path),
            hint="stop the other recorder first, or record into another --out",
        )


def close_fd(fd: int) -> int:
    """Close ``fd`` if it is open (>= 0); returns -1, the "closed" value."""
    if fd >= 0:
        os.close(fd)
    return -1


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd``, looping over short writes."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
