"""The one recording driver: a :class:`kiwoom_tape.recorder.client.Recorder` run to its end, its store ticked, then
closed.

``record`` (:mod:`kiwoom_tape.recorder.cli`), ``kiwoom-tape demo`` and the tests
(:func:`kiwoom_tape.testing.run_recorder`)
all record through :func:`drive`, so the tests exercise what users run; ``record --keys`` runs one recorder per
app key (each with its own store, ``run_id``, token, reconnects and gaps) through :func:`drive_all`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.recorder.labels import labelled

__all__ = ["drive", "drive_all"]


async def drive(
    rec: Recorder,
    stop: asyncio.Event | None = None,
    *,
    until: Callable[[Recorder], Awaitable[object]] | None = None,
    duration: float | None = None,
    tick: float = 0.1,
    on_tick: Callable[[], None] | None = None,
) -> Recorder:
    """Run ``rec`` until ``stop`` is set (a signal handler's), ``duration`` seconds passed, or ``until(rec)``
    returned; the recorder may also end by itself (LoginError, SessionTakenOver, StorageError, ...).

    Every ``tick`` seconds the store is ticked (:meth:`Store.tick`: the journal's fsync bound holds when
    no frame arrives) and ``on_tick()`` called (a status line). ``until`` starts with the recorder and may
    inject faults or watch ``rec.stats``; it is cancelled if the recorder ends first. The store
    (``rec.store``) is closed on the way out, whatever happened. Raises what the recorder, the store,
    ``on_tick`` or ``until`` raised (the first of them, not an ExceptionGroup).
    """
    stop = stop or asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)
            rec.store.tick()
            if on_tick is not None:
                on_tick()

    async def stopper() -> None:
        timer = asyncio.timeout(duration)
        try:
            async with timer:
                await (until(rec) if until is not None else stop.wait())
        except TimeoutError:
            if not timer.expired():
                raise
        finally:
            stop.set()

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(ticker())
            waiting = tg.create_task(stopper()) if until is not None or duration is not None else None
            try:
                await rec.run(stop)
            finally:
                stop.set()
                if waiting is not None:
                    waiting.cancel()  # a no-op once it returned
    except* Exception as group:
        raise group.exceptions[0] from None
    finally:
        rec.store.close()
    return rec


async def drive_all(
    recs: Sequence[Recorder],
    stop: asyncio.Event | None = None,
    *,
    duration: float | None = None,
    tick: float = 0.1,
    on_tick: Callable[[], None] | None = None,
    names: Sequence[str] | None = None,
) -> Sequence[Recorder]:
    """Run every recorder of ``recs`` (one connection each, each with its own store) as :func:`drive` does, at once.

    They share ``stop``: ``stop``, ``duration`` or any recorder ending stops them all, so a recorder that cannot
    go on (LoginError, SessionTakenOver under ``--on-kick exit``, StorageError) ends the whole recording, every
    store closed, and its exception is raised (the first, not an ExceptionGroup). ``on_tick()`` is called once
    per ``tick`` for all of them (a status line that sums them). With ``names`` (one per recorder), each
    recorder's log lines start with ``[key NAME]`` (:mod:`kiwoom_tape.recorder.labels`). One recorder is exactly
    :func:`drive`.
    """
    if len(recs) == 1:
        return [await drive(recs[0], stop, duration=duration, tick=tick, on_tick=on_tick)]
    shared = stop or asyncio.Event()

    async def status() -> None:
        assert on_tick is not None
        while not shared.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(shared.wait(), tick)
            on_tick()

    try:
        async with asyncio.TaskGroup() as tg:
            for n, rec in enumerate(recs):
                run = drive(rec, shared, duration=duration, tick=tick)
                tg.create_task(labelled(names[n], run) if names is not None else run)
            if on_tick is not None:
                tg.create_task(status())
    except* Exception as group:
        shared.set()
        raise group.exceptions[0] from None
    return recs
