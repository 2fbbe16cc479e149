"""Where a dataset's files live (DESIGN.md "Data layout"): pure path strings, no filesystem calls.

::

    ROOT/frames/date=2026-11-22/part-20261122T001500Z-ab12cd-000000.parquet
    ROOT/orderbook/date=2026-11-22/part-20261122T001500Z-ab12cd-000000.parquet
    ROOT/orderbook/date=2026-11-22/part-20261122T001500Z-ab12cd-000001.parquet.tmp   (being written)
    ROOT/_journal/20261122T001500Z-ab12cd-000002.journal

``date`` is the KST date of the receive time (:func:`kiwoom_tape.schemas.market.kst_date_of_ns`). A run (one
``record`` process) has a run id; its files are numbered by segment, one counter for all tables of the
run, so one segment's files in every table share a name. Names are deterministic: recovery after a
crash rewrites exactly the names the crashed run would have written. A file is written under its name
plus :data:`TMP_SUFFIX`, fsynced and renamed; readers ignore names :func:`parse_part_filename` rejects.
Paths use ``/`` on every platform.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

__all__ = [
    "JOURNAL_DIR",
    "TABLE_NAMES",
    "TMP_SUFFIX",
    "journal_dir",
    "journal_filename",
    "new_run_id",
    "parse_journal_filename",
    "parse_part_filename",
    "parse_run_id",
    "part_filename",
    "partition_dir",
]

TABLE_NAMES: Final = ("frames", "orderbook", "afterhours", "trades", "events")
"""The tables of a dataset, each a top-level directory (the keys of :data:`kiwoom_tape.schemas.tables.TABLES`)."""

TMP_SUFFIX: Final = ".tmp"
"""Suffix of a file still being written; it is renamed without the suffix once complete and fsynced."""

JOURNAL_DIR: Final = "_journal"
"""Directory under the root holding the crash-safe journal (leading ``_``: Hive readers skip it)."""

_RUN_ID_RE: Final = re.compile(r"(\d{8}T\d{6}Z)-([0-9a-f]{6})")
_SAFE_RUN_ID_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_PART_RE: Final = re.compile(r"part-([A-Za-z0-9_][A-Za-z0-9_.+-]*)-([0-9]{6,})\.parquet")
_JOURNAL_RE: Final = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.+-]*)-([0-9]{6,})\.journal")


def _root(root: str) -> str:
    if not root:
        raise ValueError("the dataset root must not be empty (use '.' for the current directory)")
    return root.rstrip("/")  # "/" -> "", so that f"{_root(root)}/x" is "/x"


def partition_dir(root: str, table: str, date: dt.date) -> str:
    """``ROOT/TABLE/date=YYYY-MM-DD`` for the KST trading ``date``; ValueError for an unknown table."""
    if table not in TABLE_NAMES:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLE_NAMES)}")
    if isinstance(date, dt.datetime):
        date = date.date()
    return f"{_root(root)}/{table}/date={date.isoformat()}"


def journal_dir(root: str) -> str:
    """``ROOT/_journal``."""
    return f"{_root(root)}/{JOURNAL_DIR}"


def _check(run_id: str, segment: int) -> None:
    if not _SAFE_RUN_ID_RE.fullmatch(run_id):
        raise ValueError(f"run id {run_id!r} is not a safe file name part (make one with new_run_id)")
    if segment < 0:
        raise ValueError(f"segment must be >= 0, not {segment}")


def part_filename(run_id: str, segment: int, table: str) -> str:
    """``part-RUNID-SEGMENT.parquet`` (segment zero-padded to 6 digits); the same for every table.

    ``table`` is checked but not part of the name: the partition directory already names the table.
    """
    if table not in TABLE_NAMES:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLE_NAMES)}")
    _check(run_id, segment)
    return f"part-{run_id}-{segment:06d}.parquet"


def _parse(pattern: re.Pattern[str], name: str) -> tuple[str, int] | None:
    m = pattern.fullmatch(name)
    if m is None:
        return None
    segment = int(m.group(2))
    if f"{segment:06d}" != m.group(2):  # only the names part_filename/journal_filename make
        return None
    return m.group(1), segment


def parse_part_filename(name: str) -> tuple[str, int] | None:
    """``(run_id, segment)`` of a complete part file's name, or None (temporary files, anything else)."""
    return _parse(_PART_RE, name)


def journal_filename(run_id: str, segment: int) -> str:
    """``RUNID-SEGMENT.journal``: the journal of one segment, replayed into its part files on recovery."""
    _check(run_id, segment)
    return f"{run_id}-{segment:06d}.journal"


def parse_journal_filename(name: str) -> tuple[str, int] | None:
    """``(run_id, segment)`` of a journal file's name, or None."""
    return _parse(_JOURNAL_RE, name)


def new_run_id(epoch_ns: int, rand: int) -> str:
    """A run id that sorts by start time: ``20261122T021500Z-ab12cd`` (UTC second + 24 random bits).

    The caller passes the clock and the randomness (``time.time_ns()``, ``secrets.randbits(24)``).
    """
    t = dt.datetime.fromtimestamp(epoch_ns // 1_000_000_000, dt.UTC)
    return f"{t:%Y%m%dT%H%M%SZ}-{rand & 0xFFFFFF:06x}"


def parse_run_id(run_id: str) -> dt.datetime | None:
    """The UTC start second encoded in a run id, or None if it is not one."""
    m = _RUN_ID_RE.fullmatch(run_id)
    if m is None:
        return None
    try:
        return dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
