"""What a compaction of one KST date would do: which days may be compacted, their source files, the new names.

A day may still be written, and is refused, when (DESIGN.md "Reliability"; recorder/journal.py):

- a journal segment in ``DIR/_journal`` is *live* (a recorder or a recovery holds its ``flock``) and was
  created on or before that date: the recorder writes its segment's date and every later one (so
  today's date, in KST, is refused while any recorder runs);
- a journal segment is *dead* (a crashed recorder's, not yet recovered) and was created on that date or
  the day before (a segment opened before midnight may hold the next day's first records);
- a table's partition of that date holds a temporary part file (``.part-....parquet.tmp``), or any
  other name that is not a part file (the partition directory is swapped whole, so it would go).

New file names carry the compaction id (a :func:`kiwoom_tape.schemas.layout.new_run_id`), so they never equal an
old name and a compacted day is recognized by the ``kiwoom_tape.compaction`` key in every file's footer.
``frames`` keeps one file per recording run (``part-{run_id}.c{id}-000000.parquet``: replay reads each
run in its receive order and merges runs, so the day replays exactly as before); the normalized tables
and ``events`` become ``part-c{id}-{k:06d}.parquet``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pyarrow.parquet as pq

from kiwoom_tape import portable
from kiwoom_tape.recorder.journal_format import JOURNAL_SUFFIX, NEW_SUFFIX
from kiwoom_tape.recorder.journal_reader import parse_header
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.errors import DatasetError
from kiwoom_tape.schemas.market import KST

__all__ = [
    "META_COMPACTION",
    "DayPlan",
    "TablePlan",
    "blockers",
    "compacted_name",
    "partition_dates",
    "plan_day",
    "run_of",
]

META_COMPACTION: Final = b"kiwoom_tape.compaction"
"""Footer key of a compacted file: the compaction id that wrote it."""

_COMPACTED_RUN: Final = re.compile(r"(.*)\.c(\d{8}T\d{6}Z-[0-9a-f]{6})")


def compacted_name(compaction_id: str, index: int, run_id: str | None = None) -> str:
    """The name of a compacted file: per run for ``frames`` (``run_id`` given), else numbered."""
    return layout.part_filename(f"{run_id}.c{compaction_id}" if run_id else f"c{compaction_id}", index, "frames")


def run_of(name: str) -> tuple[str, int] | None:
    """(recording run, segment) of a part file name; a compacted frames file's run is the run it holds,
    and it sorts before the run's segment files (segment -1). None for a name that is not a part file."""
    parsed = layout.parse_part_filename(name)
    if parsed is None:
        return None
    m = _COMPACTED_RUN.fullmatch(parsed[0])
    return (m.group(1), -1) if m else parsed


def _kst_date(ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(ns / 1e9, KST).date()


def _journal_state(path: Path) -> tuple[dt.date | None, bool]:
    """(KST date the segment was created, or None if unknown; whether a process holds its lock)."""
    try:
        fd = os.open(path, os.O_RDONLY | portable.OPEN_FLAGS)
    except FileNotFoundError:
        return None, False
    try:
        # the recorder holds the journal's lock while it writes (or recovers) it; released by the close below
        live = not portable.try_lock(fd)
        head = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        header, _ = parse_header(head, len(head), path)
    except DatasetError:
        header = None
    except Exception:  # another format version: its date is unknown, which refuses conservatively
        header = None
    return (None if header is None else _kst_date(header.created_ns)), live


def blockers(root: Path, date: dt.date) -> list[str]:
    """Why ``date`` may still be written (module docstring), each with its fix; empty if it may be compacted."""
    out: list[str] = []
    jdir = root / layout.JOURNAL_DIR
    names = sorted(os.listdir(jdir)) if jdir.is_dir() else []
    for name in names:
        if not name.endswith((JOURNAL_SUFFIX, JOURNAL_SUFFIX + NEW_SUFFIX)):
            continue
        created, live = _journal_state(jdir / name)
        if live:
            if created is None or created <= date:
                out.append(f"a running recorder holds {layout.JOURNAL_DIR}/{name} (opened "
                           f"{created or 'just now'}) and may still write {date}: wait until it stops, "
                           "or compact an earlier day")
        elif created is None or created <= date <= created + dt.timedelta(days=1):
            out.append(f"{layout.JOURNAL_DIR}/{name} holds rows not in Parquet yet (a recorder crashed): "
                       f"run `record recover {root}` first")
    for table in layout.TABLE_NAMES:
        part = Path(layout.partition_dir(str(root), table, date))
        entries = sorted(os.listdir(part)) if part.is_dir() else []
        if any(n.endswith(layout.TMP_SUFFIX) for n in entries):
            out.append(f"{table}/date={date} holds a temporary part file (a recorder is writing it, or crashed): "
                       f"wait for it, or run `record recover {root}` when none runs")
        elif other := [n for n in entries if n.startswith((".", "_")) or not n.endswith(".parquet")]:
            out.append(f"{table}/date={date} holds {other[0]!r}, which is not a part file (the swap would take "
                       "it away with the old files): move it out of the dataset")
    return out


def partition_dates(root: Path) -> list[dt.date]:
    """Every KST date with a partition directory in any table, oldest first."""
    dates: set[dt.date] = set()
    for table in layout.TABLE_NAMES:
        tdir = root / table
        if not tdir.is_dir():
            continue
        for d in tdir.iterdir():
            if d.is_dir() and d.name.startswith("date="):
                try:
                    dates.add(dt.date.fromisoformat(d.name[5:]))
                except ValueError:
                    continue
    return sorted(dates)


@dataclass
class TablePlan:
    """One table's partition of the day: its source files, rows, bytes and whether it is compacted already."""

    table: str
    sources: list[Path]
    rows: int = 0
    nbytes: int = 0
    compacted_by: str | None = None
    """The compaction id, if every source file is the output of that one compaction (nothing to do)."""


@dataclass
class DayPlan:
    root: Path
    date: dt.date
    tables: list[TablePlan] = field(default_factory=list)

    @property
    def todo(self) -> list[TablePlan]:
        return [t for t in self.tables if t.compacted_by is None]


def plan_day(root: Path, date: dt.date) -> DayPlan:
    """The day's tables and source files (footers read). Raises DatasetError for an unreadable file."""
    plan = DayPlan(root, date)
    for table in layout.TABLE_NAMES:
        part = Path(layout.partition_dir(str(root), table, date))
        if not part.is_dir():
            continue
        files = sorted(part / n for n in os.listdir(part) if n.endswith(".parquet") and not n.startswith((".", "_")))
        if not files:
            continue
        tp = TablePlan(table, files)
        ids: set[str | None] = set()
        for f in files:
            try:
                md = pq.read_metadata(f)
            except Exception as exc:
                hint = f"run `kiwoom-tape verify {root}`, and move damaged files out of the dataset"
                raise DatasetError(f"cannot read {f}: {exc}", hint=hint) from None
            tp.rows += md.num_rows
            tp.nbytes += f.stat().st_size
            meta = md.metadata or {}
            ids.add(meta[META_COMPACTION].decode() if META_COMPACTION in meta else None)
        if len(ids) == 1 and None not in ids:
            tp.compacted_by = ids.pop()
        plan.tables.append(tp)
    return plan
