"""A journal's timed write+fdatasync on a worker thread, off the event loop (:class:`BackgroundSync`).

:class:`kiwoom_tape.recorder.journal.JournalWriter` with ``background=True`` (the live Store's journals) hands the
buffer it filled to a worker thread when ``fsync_interval`` has passed, and goes on appending into a second
buffer: double buffering. At most one write+fdatasync is in flight per journal, so the file holds the records
in the order they were appended; an explicit :meth:`JournalWriter.sync`, :meth:`JournalWriter.close` and the
recovery paths wait for it and then write what is left on the calling thread, as before.

Why: ``record --keys`` runs one journal per app key on one event loop; 14 journals syncing every 0.2 s
spent 14.5 % of the loop thread's time in ``fdatasync`` (p99 12 ms, max 0.4 s; an instrumented market bench
run, see bench/results/market-2026-12-03-bgsync-stagger.json's commit). ``os.write``
and ``fdatasync`` release the GIL, so the loop receives while a worker waits for the disk.

The worker threads are shared by every journal of the process (a small pool, created at the first hand-off).
An ``OSError`` on the worker fails the journal as a failed sync on the loop thread did: the writer's ``_failed``
is set (the StorageError naming the file and the fix, :func:`kiwoom_tape.recorder.journal_format.storage_error`)
and its next append, sync or close raises it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from kiwoom_tape.recorder.journal_io import write_all

from kiwoom_tape import portable

__all__ = ["WORKERS", "BackgroundSync"]

WORKERS = 4
"""Worker threads shared by all journals: each waits on one journal's fdatasync at a time."""

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="journal-sync")
        return _pool


class BackgroundSync:
    """The spare buffer and the one write+fdatasync in flight of a journal open as ``fd``.

    Used by one thread (the writer's); only :meth:`_run` runs on a worker. ``on_error(exc)`` is called on the
    worker with the OSError of a failed write or fdatasync (the writer records it; it must not raise).
    """

    __slots__ = ("_fd", "_future", "_on_error", "_spare", "inflight")

    def __init__(self, fd: int, on_error: Callable[[OSError], None]) -> None:
        self._fd = fd
        self._on_error = on_error
        self._spare = bytearray(1 << 18)  # reused like the writer's own buffer: no allocation per sync
        self._future: Future[bool] | None = None
        self.inflight = 0
        """Bytes handed to the worker and not yet known to be written and synced."""

    @property
    def busy(self) -> bool:
        """A write+fdatasync is in flight."""
        f = self._future
        return f is not None and not f.done()

    def submit(self, arena: bytearray, size: int) -> bytearray:
        """Hand ``arena[:size]`` to a worker; return the empty buffer to append into next.

        The caller must :meth:`wait` first (at most one in flight); ``arena`` belongs to the worker until then.
        """
        assert self._future is None, "one write+fdatasync in flight per journal"
        spare, self._spare = self._spare, arena
        self.inflight = size
        self._future = _executor().submit(self._run, arena, size)
        return spare

    def wait(self) -> int:
        """Wait for the write+fdatasync in flight, if any; return the bytes it made durable (0 if it failed)."""
        f, self._future = self._future, None
        if f is None:
            return 0
        done, self.inflight = self.inflight, 0
        return done if f.result() else 0

    def _run(self, arena: bytearray, size: int) -> bool:
        """On a worker: write ``arena[:size]`` and fdatasync; False (after ``on_error``) on an OSError."""
        try:
            with memoryview(arena) as view:  # released on the way out: arena may be resized once handed back
                write_all(self._fd, view[:size])
            portable.datasync(self._fd)
        except OSError as exc:
            self._on_error(exc)
            return False
        return True
