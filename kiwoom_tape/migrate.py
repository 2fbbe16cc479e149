"""``kiwoom-tape migrate DIR [--date D] [--dry-run]``: rewrite a dataset's schema version 1 files as version 2.

Version 2 (:mod:`kiwoom_tape.schemas.tables`) stores ``recv_ts`` in microseconds plus ``recv_sub_us`` and the
time columns as UTC instants in milliseconds, which Spark, Trino and Hive read with their default settings;
every reader of kiwoom-tape reads both versions, so migrating is only needed for other engines. Each file
is rewritten on its own, crash-safely:

1. refuse a dataset a recorder is writing, or a day whose journal needs ``record recover``
   (:func:`kiwoom_tape.compact_plan.blockers`, as ``compact`` does), and run while no ``compact`` runs (they
   share its lock) after finishing any compaction a crash interrupted;
2. write the new file under ``DIR/_tmp/`` (:data:`kiwoom_tape.schemas.layout.STAGING_DIR`, outside every
   table folder), one row group per row group of the old file, with the writer options of the recorder (or of
   ``compact``, for a compacted file), the old file's key-value metadata kept (a compacted file stays
   marked as such) and the schema's own on top; fsync it;
3. check it: the same row count as the old file and the same exact receive nanoseconds (``recv_ns_of``);
4. rename it over the old file (atomic), fsync the folder.

A ``kill -9`` leaves every file either old (version 1) or new (version 2), plus perhaps a stray staged
file, which the next run deletes. Version 2 files are left alone, so running it again does nothing.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import click
import pyarrow as pa
import pyarrow.parquet as pq

from kiwoom_tape import portable
from kiwoom_tape.clikit import friendly_errors
from kiwoom_tape.compact import _locked
from kiwoom_tape.compact_commit import recover
from kiwoom_tape.compact_plan import META_COMPACTION, blockers, partition_dates
from kiwoom_tape.compact_write import COMPRESSION_LEVEL
from kiwoom_tape.recorder.journal_format import fsync_dir
from kiwoom_tape.recorder.parquet_parts import parquet_options
from kiwoom_tape.replay.catalog import dataset_root
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.errors import DatasetError
from kiwoom_tape.schemas.tables import SCHEMA_VERSION, TABLES, schema_version_of
from kiwoom_tape.schemas.versions import recv_ns_of, upgrade

__all__ = ["MigrateResult", "migrate", "migrate_command", "migrate_file"]

Progress = Callable[[str], None]

STAGE_PREFIX: Final = "migrate-"
"""Staged files of a migration in ``DIR/_tmp/``: ``migrate-TABLE.DATE.NAME``."""


@dataclass
class MigrateResult:
    """What :func:`migrate` did: files rewritten (or, in a dry run, to rewrite), files already version 2."""

    migrated: list[Path] = field(default_factory=list)
    current: int = 0
    rows: int = 0


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDWR | portable.OPEN_FLAGS)  # Windows fsyncs only a writable handle
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def migrate_file(path: Path, table: str, stage: Path) -> int:
    """Rewrite the version 1 file ``path`` of ``table`` as version 2 in place (module docstring); its rows.

    Raises DatasetError if the new file does not hold the old one's rows (the old file is then kept).
    """
    tmp = stage / f"{STAGE_PREFIX}{table}.{path.parent.name}.{path.name}"
    stage.mkdir(exist_ok=True)
    with pq.ParquetFile(path) as pf:
        md = pf.metadata
        meta = {k: v for k, v in (pf.schema_arrow.metadata or {}).items() if k != b"ARROW:schema"}
        schema = TABLES[table].with_metadata({**meta, **(TABLES[table].metadata or {})})
        opts = parquet_options(table)  # as the recorder writes, or as compact does for a compacted file
        if META_COMPACTION in meta:
            opts["compression_level"] = COMPRESSION_LEVEL
        with pq.ParquetWriter(str(tmp), schema, **opts) as writer:
            for i in range(md.num_row_groups):
                t = upgrade(pf.read_row_group(i), table)
                writer.write_table(pa.Table.from_batches(t.to_batches(), schema=schema), row_group_size=len(t) or 1)
        _fsync(tmp)
        with pq.ParquetFile(tmp) as new:
            same = new.metadata.num_rows == md.num_rows and new.metadata.num_row_groups == md.num_row_groups and all(
                recv_ns_of(new.read_row_group(i, columns=["recv_ts", "recv_sub_us"])).equals(
                    recv_ns_of(pf.read_row_group(i, columns=["recv_ts"])))
                for i in range(md.num_row_groups))
            got = new.metadata.num_rows
    if not same:
        tmp.unlink()
        raise DatasetError(f"{path}: the rewritten file does not hold the same rows ({got} of {md.num_rows})",
                           hint="nothing was changed; please report this with the file attached")
    rows: int = md.num_rows
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return rows


def _clean_stage(stage: Path, progress: Progress) -> None:
    for f in sorted(stage.iterdir()) if stage.is_dir() else []:
        if f.name.startswith(STAGE_PREFIX):
            f.unlink()
            progress(f"removed {layout.STAGING_DIR}/{f.name}, left by an interrupted migrate")


def _old_files(root: Path, date: dt.date) -> tuple[list[tuple[str, Path]], int]:
    """The version 1 files of ``date`` (table, path), and how many files of the day are already current."""
    old: list[tuple[str, Path]] = []
    current = 0
    for table in layout.TABLE_NAMES:
        part = Path(layout.partition_dir(str(root), table, date))
        for f in sorted(part.glob("*.parquet")) if part.is_dir() else []:
            try:
                version = schema_version_of(pq.read_schema(f))
            except (OSError, pa.ArrowException) as exc:
                raise DatasetError(f"{f}: unreadable ({str(exc).splitlines()[0]})",
                                   hint=f"run `kiwoom-tape verify {root}`, move the file aside, then migrate") from None
            if version == 1:
                old.append((table, f))
            elif version == SCHEMA_VERSION:
                current += 1
            else:
                raise DatasetError(f"{f}: schema version {version}, which this kiwoom-tape cannot migrate",
                                   hint="upgrade kiwoom-tape, or move the file aside")
    return old, current


def migrate(root: str | os.PathLike[str], date: dt.date | None = None, *, dry_run: bool = False,
            progress: Progress = lambda _: None) -> MigrateResult:
    """Rewrite the version 1 files of ``date`` (default: every day) as version 2; see the module docstring.

    Raises DatasetError if ``root`` is not a dataset or a day to migrate may still be written.
    """
    path = dataset_root(root)
    dates = [date] if date is not None else partition_dates(path)
    # any live recorder refuses the dataset (dt.date.max: whatever day its journal was opened), as do the days
    # a crashed recorder's journal may still hold rows of
    reasons = sorted({r for d in (*dates, dt.date.max) for r in blockers(path, d)})
    if reasons:
        raise DatasetError("the dataset is being recorded or needs recovery: " + "; ".join(reasons),
                           hint="migrate when no recorder writes it (after `record recover` if one crashed)")
    result = MigrateResult()
    stage = path / layout.STAGING_DIR
    if dry_run:
        for d in dates:
            old, current = _old_files(path, d)
            result.current += current
            for _table, f in old:
                result.migrated.append(f)
                result.rows += pq.read_metadata(f).num_rows
                progress(f"would migrate {f.relative_to(path).as_posix()}")
        return result
    with _locked(path):  # no compact meanwhile; its own lock file lives in DIR/_tmp/
        for msg in recover(path, progress):
            progress(msg)
        _clean_stage(stage, progress)
        for d in dates:
            old, current = _old_files(path, d)
            result.current += current
            for k, (table, f) in enumerate(old):
                rows = migrate_file(f, table, stage)
                result.migrated.append(f)
                result.rows += rows
                progress(f"{d}: {k + 1}/{len(old)} {f.relative_to(path).as_posix()}: {rows} rows")
    return result


@click.command("migrate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("dataset", type=click.Path(file_okay=False, path_type=Path))
@click.option("--date", "date", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Migrate only this KST date (YYYY-MM-DD); default: every day.")
@click.option("--dry-run", is_flag=True, help="Print which files would be rewritten, change nothing.")
@friendly_errors
def migrate_command(dataset: Path, date: dt.datetime | None, dry_run: bool) -> None:
    """Rewrite schema version 1 files as version 2, which Spark, Trino and Hive read with default settings.

    Version 2 stores recv_ts in microseconds plus recv_sub_us (the nanoseconds past it) and the time
    columns as UTC instants. kiwoom-tape itself reads both versions, side by side too. Each file is
    written anew under DIR/_tmp/, checked (same rows, same receive times), then renamed over the old one:
    safe to interrupt, even with kill -9. Version 2 files are left alone, so running it again does
    nothing. A dataset a recorder is writing is refused.

    \b
    Examples:
        kiwoom-tape migrate data --dry-run           # which files would change
        kiwoom-tape migrate data --date 2026-11-20   # one day
        kiwoom-tape migrate data                     # every day
    """
    result = migrate(dataset, None if date is None else date.date(), dry_run=dry_run,
                     progress=lambda m: click.echo(m, err=True))
    verb = "would migrate" if dry_run else "migrated"
    click.echo(f"{verb} {len(result.migrated)} file(s), {result.rows} rows, to schema version {SCHEMA_VERSION}; "
               f"{result.current} file(s) already version {SCHEMA_VERSION}")
