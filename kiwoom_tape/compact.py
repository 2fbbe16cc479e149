"""``kiwoom-tape compact DIR [--date D]``: a finished day's many segment files become a few large sorted ones.

For each table of the day (``frames``, ``orderbook``, ``afterhours``, ``trades``, ``events``), the part
files the recorder rolled (one per segment and run) are rewritten as a few large files, sorted by item
and time, in large row groups, compressed harder (:mod:`kiwoom_tape.compact_write` says the order of
each table); every column and its metadata are kept. Then, crash-safely (:mod:`kiwoom_tape.compact_commit`):

1. refuse a day that may still be written (:func:`kiwoom_tape.compact_plan.blockers`);
2. finish or undo any compaction a crash interrupted;
3. write the new files under ``DIR/_tmp/compact-<id>/``, complete and fsynced;
4. verify: per table the same row count and the same checksum of every row (frames: every verbatim
   text), old files against new; on a mismatch the stage is deleted and nothing changes;
5. commit: an intent file, an atomic swap of each table's partition directory, then delete the old files.

A ``kill -9`` at any point leaves each table's partition with exactly its old or exactly its new files;
the next ``compact`` completes a committed compaction or deletes an uncommitted one. Compacting a day
that is already compacted does nothing and says so.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import click
import duckdb

from kiwoom_tape import portable
from kiwoom_tape.clikit import friendly_errors
from kiwoom_tape.compact_commit import TMP_DIR, Intent, checkpoint, commit, recover, remove_tree, stage_dir
from kiwoom_tape.compact_plan import DayPlan, blockers, partition_dates, plan_day
from kiwoom_tape.compact_write import BUCKET_ROWS, SORT_ORDER, checksum, write_table
from kiwoom_tape.recorder.journal_format import fsync_dir
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.errors import DatasetError

__all__ = ["DayResult", "TableResult", "compact", "compact_command", "compact_day"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TableResult:
    table: str
    old_files: int
    new_files: int
    rows: int
    old_bytes: int
    new_bytes: int
    checksum: int


@dataclass
class DayResult:
    """What :func:`compact_day` did to one date: ``status`` is compacted, already, planned or refused."""

    date: dt.date
    status: str
    compaction_id: str | None = None
    reasons: list[str] = field(default_factory=list)
    tables: list[TableResult] = field(default_factory=list)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One ``compact`` at a time per dataset (:func:`kiwoom_tape.portable.try_lock` on ``DIR/_tmp/.compact.lock``)."""
    tmp = root / TMP_DIR
    tmp.mkdir(exist_ok=True)
    fd = os.open(tmp / ".compact.lock", os.O_RDWR | os.O_CREAT | portable.OPEN_FLAGS, 0o644)
    try:
        if not portable.try_lock(fd):
            raise DatasetError(f"another `kiwoom-tape compact` is running on {root}", hint="wait for it to finish")
        yield
    finally:
        os.close(fd)


def _describe(plan: DayPlan, progress: Progress) -> None:
    for tp in plan.tables:
        if tp.compacted_by is not None:
            progress(f"  {tp.table}: {len(tp.sources)} file(s), {tp.rows} rows: compacted already ({tp.compacted_by})")
            continue
        order = "per run, in receive order" if tp.table == "frames" else "by " + ", ".join(SORT_ORDER[tp.table])
        progress(f"  {tp.table}: {len(tp.sources)} file(s), {tp.rows} rows, {tp.nbytes / 2**20:.1f} MiB "
                 f"-> a few sorted files ({order})")


def compact_day(root: str | os.PathLike[str], date: dt.date, *, dry_run: bool = False,
                progress: Progress = lambda _: None, bucket_rows: int = BUCKET_ROWS) -> DayResult:
    """Compact ``date`` of the dataset ``root`` (module docstring); :func:`compact` takes the lock first.

    Returns ``status`` "refused" with the ``reasons`` when the day may still be written, "already" when
    it is compacted, "planned" with ``dry_run``. Raises DatasetError if the day has no files, or if the
    new files do not check out (then nothing changed).
    """
    root = Path(root)
    plan = plan_day(root, date)
    if not plan.tables:
        raise DatasetError(f"{root} has no files dated {date}", hint="`kiwoom-tape verify DIR` lists the dates")
    if not plan.todo:
        ids = sorted({t.compacted_by or "" for t in plan.tables})
        return DayResult(date, "already", ", ".join(ids))
    reasons = blockers(root, date)
    if reasons:
        return DayResult(date, "refused", reasons=reasons)
    if dry_run:
        progress(f"{date}: would compact {len(plan.todo)} table(s):")
        _describe(plan, progress)
        return DayResult(date, "planned")
    cid = layout.new_run_id(time.time_ns(), secrets.randbits(24))
    stage = stage_dir(root, cid)
    stage.mkdir(parents=True)
    fsync_dir(stage.parent)
    result = DayResult(date, "compacted", cid)
    tables: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    con = duckdb.connect()
    try:
        for tp in plan.todo:
            progress(f"{date} {tp.table}: {len(tp.sources)} file(s), {tp.rows} rows ...")
            names = write_table(stage / tp.table, tp.table, tp.sources, cid, bucket_rows=bucket_rows,
                                progress=lambda m: progress(f"{date} {m}"))
            fsync_dir(stage / tp.table)
            new = [stage / tp.table / n for n in names]
            before, after = checksum(con, tp.sources), checksum(con, new)
            if before != after:
                raise DatasetError(
                    f"compaction of {tp.table} on {date} does not check out: {before[0]} rows before, {after[0]} "
                    "after, or their checksums differ; nothing was changed",
                    hint="report this as a bug, with `kiwoom-tape verify DIR`'s output",
                )
            new_bytes = sum(p.stat().st_size for p in new)
            result.tables.append(TableResult(tp.table, len(tp.sources), len(names), tp.rows, tp.nbytes,
                                             new_bytes, before[1]))
            tables[tp.table] = (frozenset(p.name for p in tp.sources), frozenset(names))
            progress(f"{date} {tp.table}: {tp.rows} rows checked, {tp.nbytes / 2**20:.1f} -> "
                     f"{new_bytes / 2**20:.1f} MiB in {len(names)} file(s)")
            checkpoint()
    except BaseException:
        remove_tree(stage)  # not committed: the old files were never touched
        raise
    finally:
        con.close()
    commit(root, stage, Intent(cid, date.isoformat(), tables), lambda m: progress(f"{date} {m}"))
    return result


def compact(root: str | os.PathLike[str], date: dt.date | None = None, *, dry_run: bool = False,
            progress: Progress = lambda _: None, bucket_rows: int = BUCKET_ROWS) -> list[DayResult]:
    """Compact ``date``, or every day of the dataset that may be (refused days are reported, not raised).

    First completes or undoes compactions a crash interrupted. With a ``date`` that is refused,
    raises DatasetError naming why and the fix.
    """
    root = Path(root).expanduser()
    if not root.is_dir() or not (root / "frames").is_dir():
        raise DatasetError(f"{root} is not a kiwoom-tape dataset (no frames/ directory)",
                           hint="give the directory a `record --out DIR` run wrote")
    with nullcontext() if dry_run else _locked(root):  # a dry run writes nothing, not even the lock file
        if not dry_run:
            for msg in recover(root, progress):
                progress(msg)
        dates = [date] if date is not None else partition_dates(root)
        results = [compact_day(root, d, dry_run=dry_run, progress=progress, bucket_rows=bucket_rows) for d in dates]
    for r in results:
        if r.status == "refused":
            if date is not None:
                raise DatasetError(f"{r.date} may still be written: " + "; ".join(r.reasons),
                                   hint="compact it when no recorder writes it")
            progress(f"{r.date}: skipped: " + "; ".join(r.reasons))
    return results


@click.command("compact", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("dataset", type=click.Path(file_okay=False, path_type=Path))
@click.option("--date", "date", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Compact only this KST date (YYYY-MM-DD); default: every finished day.")
@click.option("--dry-run", is_flag=True, help="Print what would be rewritten, change nothing.")
@friendly_errors
def compact_command(dataset: Path, date: dt.datetime | None, dry_run: bool) -> None:
    """Rewrite finished days as a few large sorted files: smaller on disk, faster to query, same rows.

    Each table's segment files of a day become a few files sorted by item and time (frames: one per
    recording run, in receive order, so replay is unchanged), with large row groups and stronger
    compression; every column and its metadata are kept. Before the old files go, the new ones are
    checked (same rows, same checksum of every row and every raw frame). Safe to interrupt, even with
    kill -9: readers always see the old files or the new ones, and the next run finishes the job.
    Days a recorder may still write (its journal is open, or it crashed and needs `record recover`)
    are refused. Running it again on a compacted day does nothing.

    \b
    Examples:
        kiwoom-tape compact data --dry-run           # what would change
        kiwoom-tape compact data --date 2026-11-20   # one day
        kiwoom-tape compact data                     # every finished day
    """
    results = compact(dataset, None if date is None else date.date(), dry_run=dry_run,
                      progress=lambda m: click.echo(m, err=True))
    for r in results:
        if r.status == "compacted":
            old = sum(t.old_bytes for t in r.tables)
            new = sum(t.new_bytes for t in r.tables)
            click.echo(f"{r.date}: compacted ({r.compaction_id}): "
                       + ", ".join(f"{t.table} {t.old_files}->{t.new_files} files" for t in r.tables)
                       + f"; {old / 2**20:.1f} -> {new / 2**20:.1f} MiB")
        elif r.status == "already":
            click.echo(f"{r.date}: already compacted ({r.compaction_id}); nothing to do")
