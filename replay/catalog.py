"""The DuckDB catalog over a dataset: tables you query without knowing file paths (DESIGN.md).

::

    from kiwoom_tape.replay.catalog import connect

    con = connect("data")
    con.sql("select item, count(*), avg(spread_ticks) from quotes group by all").show()
    con.sql("select item, minute, avg(mid), max(spread) from quotes group by all order by all").show()
    con.sql("select * from book_asof('005930', '2026-11-23 10:00:00')").show()

The views and macros are defined as SQL text in :mod:`kiwoom_tape.schemas.views` (frames, orderbook, afterhours,
events, quotes, gaps, book_asof, krx_tick_size, krx_tick_index; ``minute``, the cheap per-minute bucket of
every view with ``recv_ts``: :data:`kiwoom_tape.schemas.views.MINUTE_SQL`); this module only decides which tables
have files and runs the statements. A view reads its files when queried, so part files a running
recorder finishes later show up in the next query; a table that had no file at all when the catalog
was made stays an empty view until the next :func:`connect`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from kiwoom_tape.replay.catalog_s3 import register_s3_tables
from kiwoom_tape.schemas import views
from kiwoom_tape.schemas.errors import DatasetError
from kiwoom_tape.schemas.layout import JOURNAL_DIR, TABLE_NAMES

from kiwoom_tape.objstore import is_s3_url, parse_s3_url

__all__ = ["connect", "dataset_root", "install_views", "table_versions", "tables_with_files"]

_NOT_A_DATASET_HINT = (
    "pass the --out directory of a record run (it holds frames/, orderbook/, afterhours/, events/), "
    "or run `kiwoom-tape demo` to make one"
)


def dataset_root(root: str | os.PathLike[str]) -> Path:
    """The absolute path of the dataset at ``root``; DatasetError if it is not one.

    A dataset is a directory holding at least one table directory (``orderbook/``, ...) or a
    ``_journal/`` (a recorder that has not finished a file yet).
    """
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"{path} does not exist", hint=_NOT_A_DATASET_HINT)
    if not path.is_dir():
        raise DatasetError(f"{path} is not a directory", hint=_NOT_A_DATASET_HINT)
    if not any((path / name).is_dir() for name in (*TABLE_NAMES, JOURNAL_DIR)):
        raise DatasetError(f"{path} is not a kiwoom-tape dataset", hint=_NOT_A_DATASET_HINT)
    return path.resolve()


def tables_with_files(root: Path) -> set[str]:
    """The tables with at least one complete part file (``TABLE/date=*/*.parquet``)."""
    return {t for t in TABLE_NAMES if next((root / t).glob("date=*/*.parquet"), None) is not None}


def table_versions(root: Path, present: Collection[str]) -> dict[str, str]:
    """Table -> ``"1"`` (its oldest and newest part files are of schema version 1: no ``recv_sub_us``) or
    ``"mixed"`` (one of each: a user upgraded, or a ``migrate`` was interrupted, which goes oldest first);
    tables all of version 2 are left out. Two footer reads per table
    (:func:`kiwoom_tape.schemas.views.table_view`)."""
    out = {}
    for table in present:
        files = sorted((root / table).glob("date=*/*.parquet"))
        if files:
            old, new = _has_sub_us(files[0]), _has_sub_us(files[-1])
            if not (old and new):
                out[table] = "1" if not (old or new) else "mixed"
    return out


def _has_sub_us(path: Path) -> bool:
    try:
        return "recv_sub_us" in pq.read_schema(path).names
    except (OSError, pa.ArrowException):
        return True  # unreadable: the views' query says so (kiwoom-tape verify finds it)


def install_views(con: duckdb.DuckDBPyConnection, root: str | os.PathLike[str]) -> None:
    """Create the catalog's views and macros of the dataset at ``root`` on an existing connection.

    Replaces views of the same names. Raises DatasetError if ``root`` is not a dataset. ``root`` may be
    ``s3://bucket/prefix`` (:mod:`kiwoom_tape.replay.catalog_s3`).
    """
    if is_s3_url(root):
        try:
            url = parse_s3_url(str(root))
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
        _run(con, views.statements_for(register_s3_tables(con, url)), str(url))
        return
    path = dataset_root(root)
    try:
        present = tables_with_files(path)
        statements = views.catalog_statements(path.as_posix(), present, table_versions(path, present))
    except ValueError as exc:
        raise DatasetError(str(exc), hint="move the dataset, or link it, to a path without those characters") from None
    _run(con, statements, path)


def _run(con: duckdb.DuckDBPyConnection, statements: list[str], path: str | Path) -> None:
    first, rest = statements[0], statements[1:]
    with contextlib.suppress(duckdb.Error):
        con.execute(first)  # SET TimeZone: needs ICU, present in the usual builds; UTC display without it
    for stmt in rest:
        try:
            con.execute(stmt)
        except duckdb.Error as exc:
            # Binding a table view opens its first file: an unreadable one stops the catalog here.
            raise DatasetError(
                f"cannot make the catalog of {path}: {str(exc).splitlines()[0]}",
                hint=f"run `kiwoom-tape verify {path}` to find the unreadable file, then move it aside",
            ) from None


def connect(root: str | os.PathLike[str] = "data", *, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the catalog of the dataset at ``root`` (see the module doc).

    ``threads`` caps DuckDB's worker threads (default: DuckDB's, one per core). Raises DatasetError
    (with a hint) if ``root`` is not a dataset. The caller closes the connection.
    """
    config: dict[str, str | bool | int | float | list[str]] = {} if threads is None else {"threads": threads}
    con = duckdb.connect(":memory:", config=config)
    try:
        install_views(con, root)
    except BaseException:
        con.close()
        raise
    return con
