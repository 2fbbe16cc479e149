"""Replay a recorded day through the mock server: the ``frames`` table of a dataset as a frame source.

::

    from kiwoom_tape.replay.recorded import RecordedSource
    from kiwoom_tape.replay.server import serve

    async with serve(RecordedSource("data", speed=None), port=0) as server:
        ...  # point the strategy at server.url; it gets the recorded REAL frames of the last day

**What is replayed.** The REAL frames the recorder received (``direction = 'in'``, ``trnm = 'REAL'``) on
one KST date (default: the last recorded one), in the order of ``(recv_ts, run_id, seq)``: each run's
part files are read in segment order, in record batches (never a whole day of Python objects), and
runs that overlap in time are merged by receive time. Files that appear after the replay started are
not seen. Each client gets, from its REG on, the rows it registered: the recorded text unchanged when
it registered every row of a frame, else a frame rebuilt from the recorded rows' own texts in their
original order and formatting (:mod:`kiwoom_tape.schemas.realframe`). Frames that do not parse as REAL rows are
skipped and counted (``skipped`` in the status).

**Time.** One replay clock per server, shared by every client. It starts ``start_delay`` seconds after
the first client has registered (so that a strategy's other connections join the same timeline), at
``start`` (``--from``) if given, else at the first frame. Frames go out at their recorded spacing divided
by ``speed``; ``speed=None`` sends as fast as the slowest client reads (:meth:`Server.dispatch` with
``wait=True``: at most ``Server.backpressure_frames`` queued per client, never an unbounded buffer). A
hole in the recording (``events`` gap_start/gap_end) is silence at 1x, as it was. ``end`` (``--to``) is
exclusive. At the end of the tape the connections stay open (PINGs go on) and the end is logged; with
``loop=True`` the tape starts over at ``start``. ``/control`` pauses, steps, seeks and changes the
speed (:mod:`kiwoom_tape.replay.control`); :meth:`RecordedSource.status` is what it reports.

**Reading.** A worker thread (its own, one read at a time) reads and merges Arrow batches and turns
each into Python lists of receive times and frame bytes (the recorded UTF-8, never decoded to ``str``),
so decompression does not stall the event loop. The event loop reads each frame's rows' item and type
(msgspec, from the bytes) and hands the server every frame that is due at once (at max speed, a
chunk of them): :meth:`kiwoom_tape.replay.server.Server.dispatch_frames`, which queues them for every client in one
go. At 1x it sleeps until the next frame is due on the monotonic clock, then sends all that are due.
Row groups entirely outside the window are skipped using the Parquet statistics of ``recv_ts``, so a
seek does not read the morning to get to the afternoon.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from kiwoom_tape.replay.control import (
    Command,
    ControlError,
    Pause,
    Resume,
    Seek,
    SetSpeed,
    Status,
    Step,
    format_time_of_day,
    parse_time_of_day,
)
from kiwoom_tape.replay.recorded_types import day_types
from kiwoom_tape.replay.server import Dispatch, EncodedFrame
from kiwoom_tape.schemas.errors import DatasetError
from kiwoom_tape.schemas.layout import JOURNAL_DIR, parse_part_filename
from kiwoom_tape.schemas.market import KST
from kiwoom_tape.schemas.realframe import RealFrame, parse_real_frame

__all__ = ["RecordedSource", "Recording", "TimeOfDay", "recorded_dates"]

log = logging.getLogger("kiwoom_tape.replay")

TimeOfDay = str | float | int | dt.time
"""A KST time of day: ``"09:30"``, ``"09:30:05.250"``, seconds since midnight, or a ``datetime.time``."""

COLUMNS: Final = ("recv_ts", "run_id", "seq", "direction", "trnm", "text")
"""The ``frames`` columns a replay reads."""

_NS: Final = 1_000_000_000
_DAY_NS: Final = 86_400 * _NS
_HINT_DATASET: Final = (
    "give the directory a `record --out DIR` run wrote (it holds frames/, orderbook/, events/)"
)


# --------------------------------------------------------------------------------------------------
# What is on disk


def _check_root(root: Path) -> Path:
    if not root.exists():
        raise DatasetError(f"{root} does not exist", hint=_HINT_DATASET)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory", hint=_HINT_DATASET)
    if not (root / "frames").is_dir():
        raise DatasetError(f"{root} is not a kiwoom-tape dataset: it has no frames/ directory", hint=_HINT_DATASET)
    return root


def _partitions(root: Path) -> dict[dt.date, Path]:
    out: dict[dt.date, Path] = {}
    for d in (root / "frames").iterdir():
        if not d.is_dir() or not d.name.startswith("date="):
            continue
        try:
            day = dt.date.fromisoformat(d.name[5:])
        except ValueError:
            continue
        if any(parse_part_filename(f.name) for f in d.iterdir()):
            out[day] = d
    return out


def recorded_dates(dataset_dir: str | os.PathLike[str]) -> list[dt.date]:
    """The KST dates with at least one complete ``frames`` file, oldest first. DatasetError if not a dataset."""
    return sorted(_partitions(_check_root(Path(dataset_dir).expanduser())))


def kst_day_start_ns(day: dt.date) -> int:
    """Epoch nanoseconds of 00:00 KST on ``day``."""
    return int(dt.datetime.combine(day, dt.time(), KST).timestamp()) * _NS


@dataclass(frozen=True, slots=True)
class _Part:
    path: Path
    run_id: str
    segment: int
    groups: tuple[tuple[int, int, int], ...]
    """(row group index, min recv_ts, max recv_ts); unknown statistics are (i, -inf-ish, +inf-ish)."""


def _read_part(path: Path, run_id: str, segment: int, root: Path) -> _Part:
    hint = f"move the file out of the dataset and try again (after a recorder crash, run `record recover {root}`)"
    try:
        with pq.ParquetFile(path) as pf:
            names = pf.schema_arrow.names
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise DatasetError(f"{path} is not a frames file: no column {', '.join(missing)}", hint=hint)
            md = pf.metadata
            col = names.index("recv_ts")
            groups = []
            for i in range(md.num_row_groups):
                rg = md.row_group(i)
                if rg.num_rows == 0:
                    continue
                st = rg.column(col).statistics
                if st is not None and st.has_min_max and isinstance(st.min_raw, int):
                    groups.append((i, int(st.min_raw), int(st.max_raw)))
                else:
                    groups.append((i, -(2**63), 2**63 - 1))
    except DatasetError:
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise DatasetError(f"cannot read {path}: {reason}", hint=hint) from None
    return _Part(path, run_id, segment, tuple(groups))


@dataclass(frozen=True)
class Recording:
    """The ``frames`` files of one recorded KST date, grouped by run, checked readable. Use :meth:`open`."""

    root: Path
    date: dt.date
    runs: tuple[tuple[_Part, ...], ...]
    """Each run's part files, in segment order."""
    first_ns: int | None
    """The earliest receive time in the files (any frame), from the Parquet statistics."""
    last_ns: int | None

    @property
    def files(self) -> int:
        return sum(len(r) for r in self.runs)

    @property
    def day_start_ns(self) -> int:
        return kst_day_start_ns(self.date)

    @classmethod
    def open(cls, dataset_dir: str | os.PathLike[str], date: dt.date | str | None = None) -> Recording:
        """Find the day's files and read their footers. Raises DatasetError naming the fix."""
        root = _check_root(Path(dataset_dir).expanduser())
        parts = _partitions(root)
        if not parts:
            journal = root / JOURNAL_DIR
            if journal.is_dir() and any(journal.glob("*.journal")):
                hint = f"a recorder is running or crashed: run `record recover {root}` (or wait for it to roll a file)"
            else:
                hint = f"record one first, e.g. `record --items 005930 --out {root}`"
            raise DatasetError(f"{root} holds no recorded day yet (frames/ has no complete file)", hint=hint)
        if isinstance(date, str):
            try:
                date = dt.date.fromisoformat(date)
            except ValueError:
                raise DatasetError(f"{date!r} is not a date", hint="write it as YYYY-MM-DD, e.g. 2026-11-20") from None
        days = sorted(parts)
        if date is None:
            date = days[-1]
        elif date not in parts:
            shown = ", ".join(d.isoformat() for d in days[-12:])
            if len(days) > 12:
                shown += f" (and {len(days) - 12} earlier)"
            raise DatasetError(
                f"no frames recorded on {date.isoformat()} in {root}",
                hint=f"recorded days: {shown}; pass one of them to --date, or leave --date out for the last one",
            )
        by_run: dict[str, list[_Part]] = {}
        for f in sorted(parts[date].iterdir()):
            parsed = parse_part_filename(f.name)
            if parsed is None or not f.is_file():
                continue
            run_id, segment = parsed
            by_run.setdefault(run_id, []).append(_read_part(f, run_id, segment, root))
        runs = tuple(tuple(sorted(ps, key=lambda p: p.segment)) for _, ps in sorted(by_run.items()))
        known = [g for r in runs for p in r for g in p.groups if g[1] > -(2**63) and g[2] < 2**63 - 1]
        first = min((g[1] for g in known), default=None)
        last = max((g[2] for g in known), default=None)
        return cls(root, date, runs, first, last)

    def time_of_day(self, ns: int) -> str:
        """``HH:MM:SS.mmm`` KST of an epoch-ns time on this date."""
        return format_time_of_day((ns - self.day_start_ns) / _NS)


# --------------------------------------------------------------------------------------------------
# Reading, in a worker thread


class _RunReader:
    """One run's REAL frames in [lo, hi), file after file, as small Arrow tables (recv_ts int64, ...)."""

    def __init__(self, parts: Sequence[_Part], lo: int, hi: int, batch_rows: int) -> None:
        self._plan = [(p, [i for i, mn, mx in p.groups if mx >= lo and mn < hi]) for p in parts]
        self._plan = [(p, groups) for p, groups in self._plan if groups]
        self._lo, self._hi = lo, hi
        self._batch_rows = batch_rows
        self._file: pq.ParquetFile | None = None
        self._part: _Part = parts[0] if parts else _Part(Path(), "", 0, ())
        self._batches: Iterator[pa.RecordBatch] | None = None
        self.done = False

    def next_table(self) -> pa.Table | None:
        """The next non-empty filtered table, or None (and ``done``) at the end."""
        while not self.done:
            if self._batches is None:
                if not self._plan:
                    self.close()
                    self.done = True
                    return None
                part, groups = self._plan.pop(0)
                self._part = part
                try:
                    self._file = pq.ParquetFile(part.path)
                    self._batches = self._file.iter_batches(  # decoded in this (background) thread
                        batch_size=self._batch_rows, row_groups=groups, columns=list(COLUMNS), use_threads=False
                    )
                except (OSError, pa.ArrowException) as exc:
                    raise DatasetError(f"cannot read {part.path}: {exc}", hint="move the file aside") from None
            try:
                batch = next(self._batches, None)
            except (OSError, pa.ArrowException) as exc:
                raise DatasetError(f"cannot read {self._part.path}: {exc}", hint="move the file aside") from None
            if batch is None:
                self._close_file()
                continue
            ts = batch.column("recv_ts").cast(pa.int64())
            mask = pc.and_(
                pc.and_(pc.equal(batch.column("direction"), "in"), pc.equal(batch.column("trnm"), "REAL")),
                pc.and_(pc.greater_equal(ts, self._lo), pc.less(ts, self._hi)),
            )
            table = pa.Table.from_arrays(
                [ts, batch.column("run_id"), batch.column("seq"), batch.column("text")],
                names=["recv_ts", "run_id", "seq", "text"],
            ).filter(mask)
            if table.num_rows:
                return table
        return None

    def _close_file(self) -> None:
        self._batches = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        self._plan = []
        self._close_file()


class _Cursor:
    """The merged REAL frames of every run in [lo, hi), as tables sorted by (recv_ts, run_id, seq).

    Used from one worker thread at a time; :meth:`close` may be called from any thread (it waits for
    a read in progress).
    """

    def __init__(self, recording: Recording, lo: int, hi: int, batch_rows: int) -> None:
        self._args = (recording, lo, hi, batch_rows)
        self._runs: list[_RunReader] | None = None
        self._bufs: list[pa.Table | None] = []
        self._lock = threading.Lock()
        self._closed = False

    def read(self) -> pa.Table | None:
        """The next table (columns recv_ts int64, text), or None at the end."""
        with self._lock:
            if self._closed:
                return None
            if self._runs is None:
                recording, lo, hi, batch_rows = self._args
                self._runs = [_RunReader(parts, lo, hi, batch_rows) for parts in recording.runs]
                self._bufs = [None] * len(self._runs)
            return self._merge(self._runs)

    def _merge(self, runs: list[_RunReader]) -> pa.Table | None:
        bufs = self._bufs
        for i, run in enumerate(runs):
            if bufs[i] is None and not run.done:
                bufs[i] = run.next_table()
        tables = [(i, b) for i, b in enumerate(bufs) if b is not None]
        if not tables:
            return None
        if len(tables) == 1:  # every other run is done
            i, out = tables[0]
            bufs[i] = None
            return out.select(["recv_ts", "text"])
        # A run that is not done has rows buffered (a run is done only once its buffer is empty). What
        # is at or before the earliest of the buffers' last receive times can go out now, sorted; the
        # rest waits for the next tables of the runs that ran out.
        watermark = min(b.column("recv_ts")[-1].as_py() for _, b in tables)
        parts = []
        for i, b in tables:
            early = pc.less_equal(b.column("recv_ts"), watermark)
            parts.append(b.filter(early))
            rest = b.filter(pc.invert(early))
            bufs[i] = rest if rest.num_rows else None
        merged = pa.concat_tables(parts).sort_by([("recv_ts", "ascending"), ("run_id", "ascending"),
                                                  ("seq", "ascending")])
        return merged.select(["recv_ts", "text"])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for run in self._runs or ():
                run.close()
            self._runs = []
            self._bufs = []


_Batch = tuple[list[int], list[bytes | None]]
"""Receive times (epoch ns) and frame texts (UTF-8 bytes) of a run of frames, as Python lists."""


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _read_batch(cursor: _Cursor) -> _Batch | None:
    """The cursor's next table as Python lists (in the worker thread: the event loop only swaps them in)."""
    table = cursor.read()
    if table is None:
        return None
    text = table.column("text")
    binary = pa.large_binary() if pa.types.is_large_string(text.type) else pa.binary()
    return table.column("recv_ts").to_pylist(), text.cast(binary).to_pylist()  # the exact bytes, never decoded


# --------------------------------------------------------------------------------------------------
# A recorded frame, ready to send


class _Head(msgspec.Struct, gc=False):
    type: str
    item: str


class _Heads(msgspec.Struct, gc=False):
    trnm: str
    data: list[_Head]


_heads = msgspec.json.Decoder(_Heads)
"""What :func:`kiwoom_tape.schemas.realframe.parse_real_frame` checks and reads, straight from the recorded bytes."""


class _Recorded(msgspec.Struct, gc=False):
    """A recorded REAL frame as :meth:`Server.dispatch_frames` takes it
    (:class:`kiwoom_tape.replay.server.EncodedFrame`):
    its exact UTF-8 bytes and each row's (item, type); the rows' own texts are found only for a subset.
    (A Struct without GC tracking: one is made per frame played, and none is part of a cycle.)"""

    data: bytes
    keys: tuple[tuple[str, str], ...]
    parsed: RealFrame | None = None

    @property
    def real(self) -> RealFrame:
        """The frame as :class:`RealFrame` (parsed on first use)."""
        if self.parsed is None:
            self.parsed = parse_real_frame(self.data.decode("utf-8"))
        return self.parsed

    def subset(self, keep: Sequence[int]) -> str:
        real = self.real
        rows = real.rows
        return real.subset([rows[k] for k in keep])


def _encode(data: bytes | None, items: frozenset[str] | None, env: _Heads | None = None) -> _Recorded | str | None:
    """A recorded frame's bytes (and their ``env``, if decoded already) as a :class:`_Recorded`; None if
    it has no row to replay (none of ``items``), or why it is not REAL rows (the checks of
    :func:`kiwoom_tape.schemas.realframe.parse_real_frame`)."""
    if data is None:
        return "no text"
    if env is None:
        try:
            env = _heads.decode(data)
        except (msgspec.DecodeError, UnicodeError) as exc:  # ValidationError is a DecodeError
            return f"not a REAL frame with item/type rows ({exc})"
        except RecursionError:
            return "JSON nested too deeply"
    if env.trnm != "REAL":
        return f"trnm is {env.trnm[:20]!r}, not 'REAL'"
    rows = env.data
    if items is not None and not all(h.item in items for h in rows):
        real = parse_real_frame(data.decode("utf-8"))
        real = real.only(r for r in real.rows if r.item in items)
        if not real.rows:
            return None
        return _Recorded(real.text.encode("utf-8"), tuple((r.item, r.type) for r in real.rows), real)
    if not rows:
        return None
    return _Recorded(data, tuple([(h.item, h.type) for h in rows]))


# --------------------------------------------------------------------------------------------------
# The source


def _seconds(value: TimeOfDay, what: str) -> float:
    if isinstance(value, dt.time):
        return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    try:
        return parse_time_of_day(value)
    except ControlError as exc:
        raise DatasetError(f"{what}: {exc}", hint="write a KST time of day as HH:MM[:SS], e.g. 09:30") from None


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
        self.start_ns = day0 if start_s is None else day0 + round(start_s * _NS)
        self.end_ns = day0 + _DAY_NS if end_s is None else day0 + round(end_s * _NS)
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
        self._speed = speed
        self._types: frozenset[str] | None = None
        self._types_read = False
        # clock state (see status())
        self._registered = False
        self._start_at: float | None = None
        self._started = False
        self._paused = False
        self._ended = False
        self._steps = 0
        self._anchor_wall = 0.0
        self._anchor_tape: int | None = None
        self._position_ns: int | None = None
        self._last_frame_ns: int | None = None
        self._played = 0
        self._skipped = 0
        self._loops = 0
        # reading state (made in run())
        self._gen = 0
        self._cursor: _Cursor | None = None
        self._reading: _Cursor | None = None
        self._ts: list[int] = []
        self._data: list[bytes | None] = []
        self._i = 0
        self._eof = False
        self._wake: asyncio.Event | None = None
        self._sleeper: asyncio.Future[None] | None = None
        self._seeked: asyncio.Event | None = None
        self._queue: asyncio.Queue[tuple[int, _Batch | None]] | None = None
        self._reader: ThreadPoolExecutor | None = None

    # -- Source

    def add_item(self, item: str) -> None:
        """A client registered something: the clock starts ``start_delay`` seconds after the first time."""
        if not self._registered:
            self._registered = True
            self._poke()

    def types(self) -> frozenset[str] | None:
        """The REAL types the replayed day holds (:func:`kiwoom_tape.replay.recorded_types.day_types`), read on first call."""
        if not self._types_read:
            self._types = day_types(p.path for run in self.recording.runs for p in run)
            self._types_read = True
        return self._types

    def market_time(self) -> float | None:
        """The replay clock as a KST time of day on the replayed date (seconds), None before it started.

        The server's ``market_time`` fault trigger reads it. Recorded frames carry every item, so this
        source needs no ``remove_item``: the server routes each client only what it registered."""
        now = self._tape_now()
        return None if now is None else (now - self.recording.day_start_ns) / _NS

    async def run(self, dispatch: Dispatch) -> None:
        self._wake = asyncio.Event()
        self._seeked = asyncio.Event()
        self._queue = asyncio.Queue(maxsize=2)
        self._cursor = self._new_cursor(self.start_ns)
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="replay-reader")
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._produce())
                await self._play(dispatch)
        except* Exception as group:  # the reader failed (a file changed under us): say which
            raise group.exceptions[0] from None
        finally:
            if self._cursor is not None:
                self._cursor.close()
            self._reader.shutdown(wait=False, cancel_futures=True)

    # -- Controllable

    @property
    def speed(self) -> float | None:
        return self._speed

    def status(self) -> dict[str, Any]:
        """What ``GET /control`` answers (times are KST on the replayed date)."""
        rec = self.recording
        if not self._started:
            state = "paused" if self._paused else "waiting"
        elif self._paused:
            state = "paused"
        elif self._ended:
            state = "ended"
        else:
            state = "playing"
        now = self._tape_now()
        return {
            "state": state,
            "dataset": str(rec.root),
            "date": rec.date.isoformat(),
            "speed": "max" if self._speed is None else self._speed,
            "position": None if now is None else rec.time_of_day(now),
            "position_ns": now,
            "last_frame": None if self._last_frame_ns is None else rec.time_of_day(self._last_frame_ns),
            "frames_played": self._played,
            "skipped": self._skipped,
            "step_pending": self._steps,
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
        if isinstance(command, Pause):
            self._pause()
        elif isinstance(command, Resume):
            was_paused, self._paused = self._paused, False
            if not self._started:
                self._begin()
            elif was_paused:
                self._anchor(self._position_ns)
        elif isinstance(command, Step):
            if not self._started:
                self._begin()
            self._pause()
            self._steps += command.n
        elif isinstance(command, Seek):
            if self._queue is None:
                raise ControlError("the replay is not running yet")
            target = self.recording.day_start_ns + round(command.seconds * _NS)
            self._seek(min(max(target, self.start_ns), self.end_ns))
            log.info("seek to %s", self.recording.time_of_day(self._position_ns or target))
        elif isinstance(command, SetSpeed):
            now = self._tape_now()
            self._speed = command.speed
            self._anchor(now)
            log.info("speed %s", "max" if command.speed is None else f"{command.speed:g}x")
        self._poke()

    # -- clock

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()
        if self._sleeper is not None:
            _resolve(self._sleeper)

    def _anchor(self, tape_ns: int | None) -> None:
        """From now on, the replay clock reads ``tape_ns`` + elapsed x speed (None: the next frame's time)."""
        self._anchor_wall = self.clock()
        self._anchor_tape = tape_ns

    def _tape_now(self) -> int | None:
        if not self._started or self._paused or self._ended or self._speed is None or self._anchor_tape is None:
            return self._position_ns
        return self._anchor_tape + round((self.clock() - self._anchor_wall) * self._speed * _NS)

    def _begin(self) -> None:
        self._started = True
        if self._position_ns is not None:  # seeked before the start
            self._anchor(self._position_ns)
        else:
            self._anchor(self.start_ns if self._start_given else None)
        log.info(
            "replay clock starts: %s from %s at %s",
            self.recording.date.isoformat(),
            self.recording.time_of_day(self.start_ns) if self._start_given else "the first frame",
            "max speed" if self._speed is None else f"{self._speed:g}x",
        )

    def _pause(self) -> None:
        if not self._paused:
            self._position_ns = self._tape_now()
            self._paused = True

    def _seek(self, target_ns: int, *, anchor_at_first_frame: bool = False) -> None:
        assert self._queue is not None and self._seeked is not None
        self._gen += 1
        old = self._cursor
        self._cursor = self._new_cursor(target_ns)
        if old is not None and old is not self._reading:
            old.close()  # never opened, or finished: closing does not wait
        while not self._queue.empty():  # stale tables; the producer may still add one, tagged stale
            self._queue.get_nowait()
        self._seeked.set()
        self._ts, self._data, self._i = [], [], 0
        self._eof = self._ended = False
        self._position_ns = None if anchor_at_first_frame else target_ns
        self._anchor(None if anchor_at_first_frame else target_ns)

    def _new_cursor(self, lo: int) -> _Cursor:
        return _Cursor(self.recording, lo, self.end_ns, self.batch_rows)

    # -- the two tasks

    async def _produce(self) -> None:
        """Read tables in a worker thread, one at a time, into the bounded queue (tagged by seek generation)."""
        assert self._queue is not None and self._seeked is not None
        loop = asyncio.get_running_loop()
        current: _Cursor | None = None
        try:
            while True:
                cursor, gen = self._cursor, self._gen
                assert cursor is not None
                if current is not None and current is not cursor:
                    current.close()
                current = self._reading = cursor
                batch = await loop.run_in_executor(self._reader, _read_batch, cursor)
                if gen != self._gen:
                    continue
                await self._queue.put((gen, batch))
                if batch is None:
                    while gen == self._gen:
                        self._seeked.clear()
                        await self._seeked.wait()
        finally:
            if current is not None:
                current.close()  # waits for a read still running in the worker thread

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

    CHUNK = 64
    """At most this many frames are handed to the server in one call (one loop turn): at max speed
    and when stepping; at 1x, every frame that is due, up to this many at a time."""

    async def _play(self, dispatch: Dispatch) -> None:
        assert self._wake is not None and self._queue is not None
        wake, queue = self._wake, self._queue
        send = getattr(dispatch, "frames", None) or self._one_by_one(dispatch)
        while not self._started:
            wake.clear()
            if self._registered and self._start_at is None:
                self._start_at = self.clock() + self.start_delay
                log.info("a client registered: the replay clock starts in %g s", self.start_delay)
            if self._start_at is not None and self.clock() >= self._start_at:
                self._begin()
                break
            await self._wait(None if self._start_at is None else self._start_at - self.clock())
        while True:
            wake.clear()
            if self._i >= len(self._ts):
                if not self._eof:
                    gen, batch = await queue.get()
                    if gen != self._gen:
                        continue
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
                if not self._ended:
                    self._ended = True
                    self._position_ns = self._last_frame_ns
                    self._steps = 0
                    log.info(
                        "end of tape at %s: %d frames played; connections stay open (seek with /control%s)",
                        self.recording.time_of_day(self._last_frame_ns or self.end_ns), self._played,
                        "" if self.loop else ", or --loop",
                    )
                await self._wait(None)
                continue
            stepping = self._steps > 0
            hi = min(len(self._ts), self._i + self.CHUNK)
            if not stepping:
                if self._paused:
                    await self._wait(None)
                    continue
                if self._speed is not None:
                    if self._anchor_tape is None:
                        self._anchor(self._ts[self._i])
                    assert self._anchor_tape is not None
                    # every frame due by now goes out at once; sleep until the next one is due
                    now = self.clock()
                    horizon = self._anchor_tape + int((now - self._anchor_wall) * self._speed * _NS)
                    ts = self._ts
                    k = self._i
                    while k < hi and ts[k] <= horizon:
                        k += 1
                    if k == self._i:
                        await self._wait((ts[k] - horizon) / (_NS * self._speed))
                        continue
                    hi = k
            frames = self._take(hi, self._steps if stepping else 0)
            if stepping or self._speed is None:
                self._position_ns = self._last_frame_ns
            if frames:
                self._played += len(frames)
                if stepping:
                    self._steps = max(0, self._steps - len(frames))
                await send(frames, wait=stepping or self._speed is None)

    def _take(self, hi: int, steps: int) -> list[_Recorded]:
        """The frames from the current one to ``hi`` (exclusive) that are part of the replay (at most
        ``steps`` of them if ``steps``), moving the position past them and counting the skipped ones."""
        ts, data = self._ts, self._data
        decode, items = _heads.decode, self.items
        i = self._i
        out: list[_Recorded] = []
        while i < hi:
            text = data[i]
            i += 1
            f: _Recorded | str | None
            try:  # the common case inline: a REAL frame, no --items (else see _encode)
                env = decode(text)  # type: ignore[arg-type]  # None: _encode says why
            except Exception:
                f = _encode(text, items)
            else:
                rows = env.data
                if env.trnm != "REAL" or items is not None or not rows:
                    f = _encode(text, items, env)
                elif len(rows) == 1:
                    h = rows[0]
                    f = _Recorded(text, ((h.item, h.type),))  # type: ignore[arg-type]
                else:
                    f = _Recorded(text, tuple([(h.item, h.type) for h in rows]))  # type: ignore[arg-type]
            if f is None:
                continue
            if isinstance(f, str):
                self._skipped += 1
                log.debug("skipping a recorded frame that is not REAL rows: %s", f)
                continue
            out.append(f)
            if len(out) == steps:
                break
        self._i = i
        self._last_frame_ns = ts[i - 1]
        return out

    @staticmethod
    def _one_by_one(dispatch: Dispatch) -> Callable[..., Awaitable[None]]:
        """For a ``dispatch`` without ``frames``: each frame on its own, as rows of a :class:`RealFrame`."""

        async def send(frames: Sequence[EncodedFrame], *, wait: bool) -> None:
            for f in frames:
                real = f.real if isinstance(f, _Recorded) else parse_real_frame(f.data.decode("utf-8"))
                await dispatch(real.rows, real, wait=wait)

        return send
