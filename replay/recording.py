"""The ``frames`` files of one recorded KST date: each run's part files and their row groups' receive times.

:class:`Recording` is what :class:`kiwoom_tape.replay.recorded.RecordedSource` replays: the complete part files of
``frames/date=YYYY-MM-DD/`` (:func:`kiwoom_tape.schemas.layout.parse_part_filename`; temporary files are not seen),
grouped by run in segment order, each checked readable and holding the columns a replay reads, with
the ``recv_ts`` statistics of every row group (so that a read of a time window skips the rest, see
:mod:`kiwoom_tape.replay.tape`). Files that appear after :meth:`Recording.open` are not seen. Every problem is a
:class:`DatasetError` naming the fix.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq
from kiwoom_tape.replay.control import format_time_of_day
from kiwoom_tape.schemas.errors import DatasetError
from kiwoom_tape.schemas.layout import JOURNAL_DIR, parse_part_filename
from kiwoom_tape.schemas.market import KST

__all__ = ["COLUMNS", "NS", "PartFile", "Recording", "kst_day_start_ns"]

COLUMNS: Final = ("recv_ts", "run_id", "seq", "direction", "trnm", "text")
"""The ``frames`` columns a replay reads."""

NS: Final = 1_000_000_000
"""Nanoseconds per second (receive times are epoch nanoseconds)."""

_NO_MIN: Final = -(2**63)
_NO_MAX: Final = 2**63 - 1
_HINT_DATASET: Final = (
    "give the directory a `record --out DIR` run wrote (it holds frames/, orderbook/, events/)"
)


def kst_day_start_ns(day: dt.date) -> int:
    """Epoch nanoseconds of 00:00 KST on ``day``."""
    return int(dt.datetime.combine(day, dt.time(), KST).timestamp()) * NS


@dataclass(frozen=True, slots=True)
class PartFile:
    """One complete ``frames`` part file of a run: where it is, and its non-empty row groups."""

    path: Path
    run_id: str
    segment: int
    groups: tuple[tuple[int, int, int], ...]
    """(row group index, min recv_ts, max recv_ts); unknown statistics are (i, -2**63, 2**63 - 1)."""


@dataclass(frozen=True)
class Recording:
    """The ``frames`` files of one recorded KST date, grouped by run, checked readable. Use :meth:`open`."""

    root: Path
    date: dt.date
    runs: tuple[tuple[PartFile, ...], ...]
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
        """Find the day's files (default: the last recorded day) and read their footers.

        Raises DatasetError naming the fix: not a dataset, no complete file yet, no such date, or an
        unreadable file or one without the :data:`COLUMNS`."""
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
        by_run: dict[str, list[PartFile]] = {}
        for f in sorted(parts[date].iterdir()):
            parsed = parse_part_filename(f.name)
            if parsed is None or not f.is_file():
                continue
            run_id, segment = parsed
            by_run.setdefault(run_id, []).append(_read_part(f, run_id, segment, root))
        runs = tuple(tuple(sorted(ps, key=lambda p: p.segment)) for _, ps in sorted(by_run.items()))
        known = [g for r in runs for p in r for g in p.groups if g[1] > _NO_MIN and g[2] < _NO_MAX]
        first = min((g[1] for g in known), default=None)
        last = max((g[2] for g in known), default=None)
        return cls(root, date, runs, first, last)

    def time_of_day(self, ns: int) -> str:
        """``HH:MM:SS.mmm`` KST of an epoch-ns time on this date."""
        return format_time_of_day((ns - self.day_start_ns) / NS)


def _check_root(root: Path) -> Path:
    if not root.exists():
        raise DatasetError(f"{root} does not exist", hint=_HINT_DATASET)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory", hint=_HINT_DATASET)
    if not (root / "frames").is_dir():
        raise DatasetError(f"{root} is not a kiwoom-tape dataset: it has no frames/ directory", hint=_HINT_DATASET)
    return root


def _partitions(root: Path) -> dict[dt.date, Path]:
    """The ``frames/date=...`` directories holding at least one complete part file, by KST date."""
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


def _read_part(path: Path, run_id: str, segment: int, root: Path) -> PartFile:
    hint = f"move the file out of the dataset and try again (after a recorder crash, run `record recover {root}`)"
    try:
        with pq.ParquetFile(path) as pf:
            names = pf.schema_arrow.names
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise DatasetError(f"{path} is not a frames file: no column {', '.join(missing)}", hint=hint)
            md = pf.metadata
            col = names.index("recv_ts")
            k = 1000 if "recv_sub_us" in names else 1
            groups = []
            for i in range(md.num_row_groups):
                rg = md.row_group(i)
                if rg.num_rows == 0:
                    continue
                st = rg.column(col).statistics
                if st is not None and st.has_min_max and isinstance(st.min_raw, int):
                    # schema v2 stores microseconds (the exact ns is up to 999 more), v1 nanoseconds
                    groups.append((i, int(st.min_raw) * k, int(st.max_raw) * k + k - 1))
                else:
                    groups.append((i, _NO_MIN, _NO_MAX))
    except DatasetError:
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise DatasetError(f"cannot read {path}: {reason}", hint=hint) from None
    return PartFile(path, run_id, segment, tuple(groups))
