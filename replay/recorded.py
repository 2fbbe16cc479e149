"""Replay a recorded day through the mock server: the ``frames`` table of a dataset as a frame source.

::

    from kiwoom_tape.replay.recorded import RecordedSource
    from kiwoom_tape.replay.server import serve

    async with serve(RecordedSource("data", speed=None), port=0) as server:
        ...  # point the strategy at server.url; it gets the recorded REAL frames of the last day

**What is replayed.** The REAL frames the recorder received (``direction = 'in'``, ``trnm = 'REAL'``) on
one KST date (default: the last recorded one, :class:`kiwoom_tape.replay.recording.Recording`), in the order of
``(recv_ts, run_id, seq)``: each run's part files are read in segment order, in record batches (never a
whole day of Python objects), and runs that overlap in time are merged by receive time (:mod:`kiwoom_tape.replay.tape`).
Files that appear after the replay started are not seen. Each client gets, from its REG on, the rows it
registered: the recorded text unchanged when it registered every row of a frame, else a frame rebuilt from
the recorded rows' own texts in their original order and formatting (:mod:`kiwoom_tape.replay.recorded_frame`,
:mod:`kiwoom_tape.schemas.realframe`). Frames that do not parse as REAL rows are skipped and counted (``skipped`` in
the status).

**Time.** One replay clock per server, shared by every client (:mod:`kiwoom_tape.replay.clock`). It starts
``start_delay`` seconds after the first client has registered (so that a strategy's other connections
join the same timeline), at ``start`` (``--from``) if given, else at the first frame. Frames go out at
their recorded spacing divided by ``speed``; ``speed=None`` sends as fast as the slowest client reads
(:meth:`Server.dispatch` with ``wait=True``: at most ``Server.backpressure_frames`` queued per client,
never an unbounded buffer). A hole in the recording (``events`` gap_start/gap_end) is silence at 1x, as
it was. ``end`` (``--to``) is exclusive. At the end of the tape the connections stay open (PINGs go on)
and the end is logged; with ``loop=True`` the tape starts over at ``start``. ``/control`` pauses, steps,
seeks and changes the speed (:mod:`kiwoom_tape.replay.control`); :meth:`RecordedSource.status` is what it reports.

**Reading.** A worker thread reads and merges the Arrow batches ahead of the event loop
(:class:`kiwoom_tape.replay.tape.Feed`), skipping row groups outside the window by their ``recv_ts`` statistics. The
event loop reads each frame's rows' item and type (msgspec, from the bytes) and hands the server every
frame that is due at once (at max speed, a chunk of them): :meth:`kiwoom_tape.replay.server.Server.dispatch_frames`,
which queues them for every client in one go. At 1x it sleeps until the next frame is due on the
monotonic clock, then sends all that are due.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from kiwoom_tape.replay.clock import ReplayClock
from kiwoom_tape.replay.contracts import Dispatch
from kiwoom_tape.replay.control import (
    Command,
    ControlError,
    Seek,
    Status,
    format_time_of_day,
    parse_time_of_day,
)
from kiwoom_tape.replay.recorded_frame import one_by_one, take
from kiwoom_tape.replay.recorded_types import day_types
from kiwoom_tape.replay.recording import NS, Recording
from kiwoom_tape.replay.tape import Feed
from kiwoom_tape.schemas.errors import DatasetError

__all__ = ["RecordedSource", "Recording", "TimeOfDay"]

log = logging.getLogger("kiwoom_tape.replay")

TimeOfDay = str | float | int | dt.time
"""A KST time of day: ``"09:30"``, ``"09:30:05.250"``, seconds since midnight, or a ``datetime.time``."""

_DAY_NS: Final = 86_400 * NS


def _seconds(value: TimeOfDay, what: str) -> float:
    if isinstance(value, dt.time):
        return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    try:
        return parse_time_of_day(value)
    except ControlError as exc:
        raise DatasetError(f"{what}: {exc}", hint="write a KST time of day as HH:MM[:SS], e.g. 09:30") from None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RecordedSource:
    """A recorded day as the mock server's frame source (module docstring). Also :class:`Controllable`.

    ``dataset_dir``: a directory written by ``record``; ``date``: the KST date to replay (default the last
    recorded); ``start``/``end``: KST times of day (``--from``/``--to``; ``end`` exclusive); ``speed``:
    recorded seconds per real second, or None for as fast as the slowest client reads; ``items``: replay
    only these items' rows; ``loop``: start over at the end; ``start_delay``: seconds between the first
    registration and the start of the clock. Raises DatasetError (with the fix) for a directory that is
    not a dataset, a date with no data, unreadable files, or an empty or inverted time window.
    """

    def __init__(
        self,
        dataset_dir: str | os.PathLike[str],
        *,
        date: dt.date | str | None = None,
        start: TimeOfDay | None = None,
        end: TimeOfDay | None = None,
        speed: float | None = 1.0,
        items: Iterable[str] | None = None,
        loop: bool = False,
        start_delay: float = 1.0,
        batch_rows: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a number > 0 or None (as fast as possible), not {speed!r}")
        if not (math.isfinite(start_delay) and start_delay >= 0):
            raise ValueError(f"start_delay must be >= 0 seconds, not {start_delay!r}")
        self.recording = rec = Recording.open(dataset_dir, date)
        day0 = rec.day_start_ns
        start_s = None if start is None else _seconds(start, "start (--from)")
        end_s = None if end is None else _seconds(end, "end (--to)")
        if start_s is not None and end_s is not None and start_s >= end_s:
            raise DatasetError(
                f"the start {format_time_of_day(start_s)} (--from) is not before the end "
                f"{format_time_of_day(end_s)} (--to)",
                hint="swap them, or leave one out",
            )
        self.start_ns = day0 if start_s is None else day0 + round(start_s * NS)
        self.end_ns = day0 + _DAY_NS if end_s is None else day0 + round(end_s * NS)
        self._start_given = start_s is not None
        if rec.first_ns is not None and rec.last_ns is not None and (
            self.start_ns > rec.last_ns or self.end_ns <= rec.first_ns
        ):
            raise DatasetError(
                f"nothing was recorded between {rec.time_of_day(self.start_ns)} and {rec.time_of_day(self.end_ns)} "
                f"KST on {rec.date.isoformat()}",
                hint=f"the recording covers {rec.time_of_day(rec.first_ns)} to {rec.time_of_day(rec.last_ns)}; "
                "pick --from/--to inside that",
            )
        self.items = frozenset(items) if items is not None else None
        self.loop = loop
        self.start_delay = start_delay
        self.batch_rows = max(1, batch_rows)
        self.clock = clock
        self._clock = ReplayClock(
            origin_ns=self.start_ns if self._start_given else None, speed=speed, start_delay=start_delay, clock=clock
        )
        self._feed = Feed(rec, self.end_ns, self.batch_rows)
        self._types: frozenset[str] | None = None
        self._types_read = False
        # the tape (see status())
        self._last_frame_ns: int | None = None
        self._played = 0
        self._skipped = 0
        self._loops = 0
        # the batch being played (swapped in from the feed)
        self._ts: list[int] = []
        self._data: list[bytes | None] = []
        self._i = 0
        self._eof = False
        # waking the player (made in run())
        self._wake: asyncio.Event | None = None
        self._sleeper: asyncio.Future[None] | None = None

    # -- Source

    def add_item(self, item: str) -> None:
        """A client registered something: the clock starts ``start_delay`` seconds after the first time."""
        if self._clock.register():
            self._poke()

    def types(self) -> frozenset[str] | None:
        """The REAL types the replayed day holds (:func:`kiwoom_tape.replay.recorded_types.day_types`), read on
        first call."""
        if not self._types_read:
            self._types = day_types(p.path for run in self.recording.runs for p in run)
            self._types_read = True
        return self._types

    def market_time(self) -> float | None:
        """The replay clock as a KST time of day on the replayed date (seconds), None before it started.

        The server's ``market_time`` fault trigger reads it. Recorded frames carry every item, so this
        source needs no ``remove_item``: the server routes each client only what it registered."""
        now = self._clock.now()
        return None if now is None else (now - self.recording.day_start_ns) / NS

    async def run(self, dispatch: Dispatch) -> None:
        self._wake = asyncio.Event()
        self._feed.open(self.start_ns)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._feed.produce())
                await self._play(dispatch)
        except* Exception as group:  # the reader failed (a file changed under us): say which
            raise group.exceptions[0] from None
        finally:
            self._feed.close()

    # -- Controllable

    @property
    def speed(self) -> float | None:
        return self._clock.speed

    def status(self) -> dict[str, Any]:
        """What ``GET /control`` answers (times are KST on the replayed date)."""
        rec = self.recording
        now = self._clock.now()
        return {
            "state": self._clock.state,
            "dataset": str(rec.root),
            "date": rec.date.isoformat(),
            "speed": "max" if self._clock.speed is None else self._clock.speed,
            "position": None if now is None else rec.time_of_day(now),
            "position_ns": now,
            "last_frame": None if self._last_frame_ns is None else rec.time_of_day(self._last_frame_ns),
            "frames_played": self._played,
            "skipped": self._skipped,
            "step_pending": self._clock.steps,
            "loop": self.loop,
            "loops": self._loops,
            "from": rec.time_of_day(self.start_ns),
            "to": rec.time_of_day(self.end_ns),
            "recording": {
                "first": None if rec.first_ns is None else rec.time_of_day(rec.first_ns),
                "last": None if rec.last_ns is None else rec.time_of_day(rec.last_ns),
                "files": rec.files,
                "runs": len(rec.runs),
            },
        }

    def apply(self, command: Command) -> None:
        """Run a ``/control`` command (see :mod:`kiwoom_tape.replay.control`). Raises ControlError if it cannot."""
        if isinstance(command, Status):
            return
        waiting = not self._clock.started
        if isinstance(command, Seek):
            if not self._feed.opened:
                raise ControlError("the replay is not running yet")
            target = self.recording.day_start_ns + round(command.seconds * NS)
            self._seek(min(max(target, self.start_ns), self.end_ns))
            log.info("seek to %s", self.recording.time_of_day(self._clock.position_ns or target))
        else:
            self._clock.apply(command)
            if waiting and self._clock.started:
                self._log_start()
        self._poke()

    # -- waking the player

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()
        if self._sleeper is not None:
            _resolve(self._sleeper)

    async def _wait(self, seconds: float | None) -> None:
        """Until a control command or registration pokes us, or ``seconds`` pass (None: no limit).

        A timed wait is a bare future and a timer (the pace at 1x): no task is cancelled to end it."""
        assert self._wake is not None
        if self._wake.is_set():
            return
        if seconds is None:
            await self._wake.wait()
            return
        loop = asyncio.get_running_loop()
        self._sleeper = sleeper = loop.create_future()
        timer = loop.call_later(seconds, _resolve, sleeper)
        try:
            await sleeper
        finally:
            timer.cancel()
            self._sleeper = None

    # -- playing

    def _log_start(self) -> None:
        speed = self._clock.speed
        log.info(
            "replay clock starts: %s from %s at %s",
            self.recording.date.isoformat(),
            self.recording.time_of_day(self.start_ns) if self._start_given else "the first frame",
            "max speed" if speed is None else f"{speed:g}x",
        )

    def _seek(self, target_ns: int, *, anchor_at_first_frame: bool = False) -> None:
        self._feed.seek(target_ns)
        self._ts, self._data, self._i = [], [], 0
        self._eof = False
        self._clock.seek(None if anchor_at_first_frame else target_ns)

    CHUNK = 64
    """At most this many frames are handed to the server in one call (one loop turn): at max speed
    and when stepping; at 1x, every frame that is due, up to this many at a time."""

    async def _play(self, dispatch: Dispatch) -> None:
        assert self._wake is not None
        wake, clock = self._wake, self._clock
        send = getattr(dispatch, "frames", None) or one_by_one(dispatch)
        while not clock.started:
            wake.clear()
            wait = clock.until_start()
            if wait is not None and wait <= 0:
                clock.begin()
                self._log_start()
                break
            await self._wait(wait)
        while True:
            wake.clear()
            if self._i >= len(self._ts):
                if not self._eof:
                    batch = await self._feed.next()
                    if batch is None:
                        self._eof = True
                    else:
                        self._ts, self._data = batch
                        self._i = 0
                    continue
                if self.loop and self._played:
                    self._loops += 1
                    log.info("end of tape: starting over (loop %d)", self._loops)
                    self._seek(self.start_ns, anchor_at_first_frame=not self._start_given)
                    continue
                if not clock.ended:
                    clock.end(self._last_frame_ns)
                    log.info(
                        "end of tape at %s: %d frames played; connections stay open (seek with /control%s)",
                        self.recording.time_of_day(self._last_frame_ns or self.end_ns), self._played,
                        "" if self.loop else ", or --loop",
                    )
                await self._wait(None)
                continue
            stepping = clock.steps > 0
            hi = min(len(self._ts), self._i + self.CHUNK)
            speed = clock.speed
            if not stepping:
                if clock.paused:
                    await self._wait(None)
                    continue
                if speed is not None:
                    # every frame due by now goes out at once; sleep until the next one is due
                    ts = self._ts
                    k = self._i
                    horizon = clock.horizon(ts[k])
                    while k < hi and ts[k] <= horizon:
                        k += 1
                    if k == self._i:
                        await self._wait((ts[k] - horizon) / (NS * speed))
                        continue
                    hi = k
            frames, self._i, skipped = take(self._data, self._i, hi, self.items, clock.steps if stepping else 0)
            self._skipped += skipped
            self._last_frame_ns = self._ts[self._i - 1]
            if stepping or speed is None:
                clock.position_ns = self._last_frame_ns
            if frames:
                self._played += len(frames)
                if stepping:
                    clock.steps = max(0, clock.steps - len(frames))
                await send(frames, wait=stepping or speed is None)
