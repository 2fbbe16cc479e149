"""Where a dataset's files live (DESIGN.md "Data layout"): pure path strings, no filesystem calls.

::

    ROOT/frames/date=2026-11-22/part-20261122T001500Z-ab12cd-000000.parquet
    ROOT/orderbook/date=2026-11-22/part-20261122T001500Z-ab12cd-000000.parquet
    ROOT/_journal/20261122T001500Z-ab12cd-000002.journal
    ROOT/_tmp/orderbook.2026-11-22.part-20261122T001500Z-ab12cd-000001.parquet.tmp   (being written)

``date`` is the KST date of the receive time (:func:`kiwoom_tape.schemas.market.kst_date_of_ns`). A run (one
``record`` process) has a run id; its files are numbered by segment, one counter for all tables of the
run, so one segment's files in every table share a name. Names are deterministic: recovery after a
crash rewrites exactly the names the crashed run would have written. Readers ignore names
:func:`parse_part_filename` rejects. Paths use ``/`` on every platform.

**Files being written live in ``ROOT/_tmp/``** (:data:`STAGING_DIR`), never in a table's folder, so that
every reader of a table folder (``polars.scan_parquet('ROOT/orderbook')``, a DuckDB or polars ``**``
glob, pyarrow.dataset, Spark) sees only complete Parquet files while ``record`` runs; the leading ``_``
makes Hive-style readers of the root skip it too. The contract, for every writer of a dataset:

- a file is written in ``_tmp/`` (same filesystem as the tables), fsynced, renamed with ``os.replace``
  to its final path in ``TABLE/date=.../`` (atomic), and that directory is fsynced;
- the recorder's files are directly in ``_tmp/``, named :func:`staging_filename` ``(table, date, final)``
  and owned by the run their final name carries. After a crash, ``record recover`` deletes those of runs
  that are not running (their rows are rewritten from the journal); ``kiwoom-tape verify`` warns about them;
- any other writer (``kiwoom-tape compact``) stages in a subfolder of its own, ``_tmp/NAME/``, and
  recovers its leftovers itself; a file of its own directly in ``_tmp/`` (a lock) must have a name
  :func:`parse_staging_filename` rejects. The recorder touches nothing else in ``_tmp/``.

Datasets written before ``_tmp/`` existed have their files being written in the partition itself, as
``.{final}.tmp`` (or ``{final}.tmp``); recovery cleans those as well (:data:`TMP_SUFFIX`).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

__all__ = [
    "JOURNAL_DIR",
    "STAGING_DIR",
    "TABLE_NAMES",
    "TMP_SUFFIX",
    "journal_dir",
    "journal_filename",
    "new_run_id",
    "parse_journal_filename",
    "parse_part_filename",
    "parse_run_id",
    "parse_staging_filename",
    "part_filename",
    "partition_dir",
    "staging_filename",
]

TABLE_NAMES: Final = ("frames", "orderbook", "afterhours", "trades", "events")
"""The tables of a dataset, each a top-level directory (the keys of :data:`kiwoom_tape.schemas.tables.TABLES`)."""

TMP_SUFFIX: Final = ".tmp"
"""Suffix of a file still being written; it is renamed without the suffix once complete and fsynced."""

JOURNAL_DIR: Final = "_journal"
"""Directory under the root holding the crash-safe journal (leading ``_``: Hive readers skip it)."""

STAGING_DIR: Final = "_tmp"
"""Directory under the root holding the files being written (module docstring: the ``_tmp/`` contract)."""

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


def staging_filename(table: str, date: dt.date, final_name: str) -> str:
    """``TABLE.YYYY-MM-DD.FINAL.tmp``: the name in ``_tmp/`` of the file to be renamed to
    ``partition_dir(root, table, date)/FINAL`` (unique across tables and dates in one flat folder)."""
    if table not in TABLE_NAMES:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLE_NAMES)}")
    if isinstance(date, dt.datetime):
        date = date.date()
    if not final_name or "/" in final_name or final_name.startswith("."):
        raise ValueError(f"{final_name!r} is not a plain file name")
    return f"{table}.{date.isoformat()}.{final_name}{TMP_SUFFIX}"


def parse_staging_filename(name: str) -> tuple[str, dt.date, str] | None:
    """``(table, date, final name)`` of a :func:`staging_filename`, or None for any other name."""
    table, _, rest = name.partition(".")
    if table not in TABLE_NAMES or not name.endswith(TMP_SUFFIX) or rest[10:11] != ".":
        return None
    try:
        date = dt.date.fromisoformat(rest[:10])
    except ValueError:
        return None
    final = rest[11 : -len(TMP_SUFFIX)]
    if not final or final.startswith(".") or date.isoformat() != rest[:10]:
        return None
    return table, date, final


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
