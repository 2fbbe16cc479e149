"""The platform calls kiwoom-tape makes (file lock, directory fsync, stop signals, some `os` calls), with fallbacks.

A leaf module: it imports nothing from the project, and ``recorder/`` and ``replay/`` call the operating
system through it wherever Linux, macOS and Windows differ, so that every package imports on all three.
Each function says what its fallback guarantees and what it does not.

The implementation of each call is chosen once, at import. ``KIWOOM_TAPE_PORTABLE=fallback`` in the
environment (read at import) forces every fallback even where the native call exists, so that the
fallbacks run in this repository's tests on Linux (tests/test_portable.py):

=======================  ================================  ===============================================
call                     native (Linux, macOS, BSD)        fallback (Windows, or forced)
=======================  ================================  ===============================================
:func:`try_lock`         ``fcntl.flock`` LOCK_EX|LOCK_NB   ``msvcrt.locking`` LK_NBLCK on one byte;
                                                           neither: OSError(ENOTSUP), a clear refusal
:func:`fsync_dir`        open with O_DIRECTORY, ``fsync``  nothing (Windows cannot open a directory)
:func:`datasync`         ``os.fdatasync``                  ``os.fsync`` (also where fdatasync is missing:
                                                           macOS, Windows)
:func:`pread`            ``os.pread``                      ``os.lseek`` + ``os.read``
:func:`on_stop_signals`  ``loop.add_signal_handler``       ``signal.signal`` + ``loop.call_soon_threadsafe``
=======================  ================================  ===============================================

Also :data:`OPEN_FLAGS` (``O_BINARY`` on Windows) for every ``os.open`` of a data file, and
:data:`RENAMES_OPEN_FILES` (False on Windows: close a file before renaming or deleting it).
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any

__all__ = [
    "FALLBACK",
    "OPEN_FLAGS",
    "RENAMES_OPEN_FILES",
    "STOP_SIGNALS",
    "StopSignals",
    "datasync",
    "fsync_dir",
    "on_stop_signals",
    "pread",
    "try_lock",
]

log = logging.getLogger("kiwoom_tape.portable")

FALLBACK: bool = os.environ.get("KIWOOM_TAPE_PORTABLE", "").strip().lower() == "fallback"
"""True when ``KIWOOM_TAPE_PORTABLE=fallback`` was set at import: every call below takes its fallback."""

OPEN_FLAGS: int = getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
"""Or these into the flags of every ``os.open`` of a data file: ``O_BINARY`` on Windows (without it the C
runtime opens in text mode and rewrites the bytes ``\\n`` as ``\\r\\n``), ``O_CLOEXEC`` where it exists
(Python makes every descriptor non-inheritable anyway, PEP 446; the flag closes the moment between open
and that). Both are 0 where they do not exist."""

RENAMES_OPEN_FILES: bool = not FALLBACK and os.name != "nt"
"""Whether a file may be renamed or deleted while it is open. True on POSIX. False on Windows, where
``os.open`` does not share delete access (``FILE_SHARE_DELETE``), so the rename or delete fails with a
sharing violation until every descriptor of the file is closed: callers close first there."""

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM) + (
    (signal.Signals(sig),) if (sig := getattr(signal, "SIGBREAK", None)) is not None else ()
)
"""The signals that mean "stop cleanly": SIGINT (Ctrl-C), SIGTERM, and SIGBREAK (Ctrl-Break) on Windows."""


def _module(name: str) -> ModuleType | None:
    """The module ``name``, or None where it does not import (``sys.modules[name] = None`` included)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


_fcntl = None if FALLBACK else _module("fcntl")
_msvcrt = _module("msvcrt")

# -- file lock -------------------------------------------------------------------------------------

LOCK_OFFSET = 2**31 - 2
"""Where :func:`try_lock`'s msvcrt fallback puts its one locked byte: far past any data, so that the lock
(mandatory on Windows: nobody else may read a locked byte) never hides a byte of the file from a reader,
and under 2 GiB, where every C runtime's ``_locking`` can reach it."""


def try_lock(fd: int) -> bool:
    """Take an exclusive, non-blocking lock on the open file ``fd``; False if another open file holds it.

    The lock belongs to this open file: a second ``os.open`` of the same path, in this process or another,
    cannot take it until ``fd`` is closed or its process ends (the kernel releases it then, crash included).

    Native (POSIX): ``fcntl.flock(fd, LOCK_EX | LOCK_NB)``, advisory: it stops every kiwoom-tape process
    and nothing else. Fallback (Windows): ``msvcrt.locking(fd, LK_NBLCK, 1)`` on the byte at
    :data:`LOCK_OFFSET` (the file position is kept). It refuses a second locker the same way, and is
    released when ``fd`` is closed or its process ends, though Windows only promises to release a dead
    process's locks "at some time after" it ends: a restart within moments of a crash may find the
    journal busy, and its recovery then leaves that journal for the next start. Where neither exists,
    raises OSError(ENOTSUP) naming both: refusing to write beats two writers that cannot see each other.
    """
    if _fcntl is not None:
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    if _msvcrt is not None:
        return _lock_msvcrt(_msvcrt, fd)
    raise OSError(
        errno.ENOTSUP,
        "no file lock on this platform (neither fcntl.flock nor msvcrt.locking); kiwoom-tape needs one "
        "to keep a second recorder or a recovery away from a live journal",
    )


def _lock_msvcrt(msvcrt: Any, fd: int) -> bool:
    here = os.lseek(fd, 0, os.SEEK_CUR)
    os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EDEADLK, getattr(errno, "EDEADLOCK", errno.EDEADLK)):
            return False
        raise
    finally:
        os.lseek(fd, here, os.SEEK_SET)
    return True


# -- durability ------------------------------------------------------------------------------------

_dir_flag: int | None = None if FALLBACK else getattr(os, "O_DIRECTORY", None)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the entries created, renamed or removed in directory ``path`` survive a power cut.

    Native (POSIX): open the directory with ``O_DIRECTORY`` and ``fsync`` it. Fallback (Windows, where a
    directory cannot be opened with ``os.open``): nothing. NTFS journals its metadata and writes that log
    in order, so a rename is never kept while a later delete is lost (what recovery relies on), but a
    rename may still be rolled back by a power cut in the second or so before Windows flushes the log:
    the file is then found under its old name (``.tmp``, ``.new``) and recovery redoes the step.
    """
    if _dir_flag is None:
        return
    fd = os.open(path, os.O_RDONLY | _dir_flag | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_fdatasync: Callable[[int], None] | None = None if FALLBACK else getattr(os, "fdatasync", None)


def datasync(fd: int) -> None:
    """Flush the data written to ``fd`` (and the metadata needed to read it back) to the disk.

    Native (Linux, BSD): ``os.fdatasync``. Fallback (macOS and Windows, which lack it): ``os.fsync``,
    which flushes the other metadata too: the same guarantee, a little slower. On macOS neither call
    empties the drive's own write cache (that is ``F_FULLFSYNC``, not used): a power cut can lose what the
    drive acknowledged, as with any macOS program that does not ask for it.
    """
    if _fdatasync is not None:
        _fdatasync(fd)
    else:
        os.fsync(fd)


_pread: Callable[[int, int, int], bytes] | None = None if FALLBACK else getattr(os, "pread", None)


def pread(fd: int, n: int, offset: int) -> bytes:
    """Up to ``n`` bytes of ``fd`` from ``offset`` (fewer at the end of the file).

    Native (POSIX): ``os.pread``, which leaves the file position alone. Fallback (Windows): ``os.lseek``
    then ``os.read``, which moves the position to ``offset + len(result)``: harmless for a file opened with
    ``O_APPEND`` (every write goes to the end), not safe for two threads sharing ``fd``.
    """
    if _pread is not None:
        return _pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, n)


# -- stop signals ----------------------------------------------------------------------------------


class StopSignals:
    """The handlers :func:`on_stop_signals` installed; :meth:`restore` (or leaving ``with``) removes them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._native: dict[signal.Signals, Any] = {}
        self._fallback: dict[signal.Signals, Any] = {}

    @property
    def installed(self) -> tuple[signal.Signals, ...]:
        """The signals handled, natively or through ``signal.signal``."""
        return (*self._native, *self._fallback)

    @property
    def fallback(self) -> tuple[signal.Signals, ...]:
        """The signals handled through ``signal.signal`` (the fallback)."""
        return tuple(self._fallback)

    def restore(self) -> None:
        """Put back the handlers that were there before; safe to call twice, and after the loop is closed."""
        native, self._native = self._native, {}
        for sig in native:
            if not self._loop.is_closed():
                self._loop.remove_signal_handler(sig)  # leaves SIG_DFL, not what was there
        previous, self._fallback = self._fallback, {}
        for sig, old in (native | previous).items():
            if old is not None:  # None: installed from C, cannot be put back from Python
                signal.signal(sig, old)

    def __enter__(self) -> StopSignals:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def on_stop_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> StopSignals:
    """Call ``callback`` on ``loop``, in the loop's thread, on each of :data:`STOP_SIGNALS`.

    Call from the thread running ``loop``. Use as ``with on_stop_signals(loop, stop.set): ...`` or call
    ``.restore()`` when done; the previous handlers come back then.

    Native: ``loop.add_signal_handler`` (asyncio and uvloop on POSIX). Fallback (Windows, whose loops
    raise NotImplementedError, or forced): ``signal.signal`` with a handler that hands ``callback`` to the
    loop with ``loop.call_soon_threadsafe``; it wakes a loop waiting in ``select`` or the proactor
    (Python 3.8+ wakes both on a signal), so stopping takes as long as natively. What it does not do:
    a signal that arrives after the loop closed, before :meth:`StopSignals.restore`, gets the previous
    handler's behaviour (it is put back and the signal raised again), not ``callback``. Python delivers
    signals to the main thread only: from another thread nothing is installed (``installed`` is empty)
    and the caller must stop the loop some other way.
    """
    handlers = StopSignals(loop)
    if threading.current_thread() is not threading.main_thread():
        return handlers
    for sig in STOP_SIGNALS:
        if not FALLBACK:
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, callback)
            except NotImplementedError:
                pass
            else:
                handlers._native[sig] = previous
                continue
        handlers._fallback[sig] = signal.signal(sig, _handler(handlers, loop, callback))
    if handlers.fallback:
        log.debug("stop signals %s: through signal.signal (the fallback)", ", ".join(s.name for s in handlers.fallback))
    return handlers


def _handler(
    handlers: StopSignals, loop: asyncio.AbstractEventLoop, callback: Callable[[], object]
) -> Callable[[int, FrameType | None], None]:
    def handle(signum: int, _frame: FrameType | None) -> None:
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed: behave as before us
            handlers.restore()
            signal.raise_signal(signum)

    return handle

