"""``kiwoom-tape sql``: SQL over a dataset through the DuckDB catalog of :mod:`kiwoom_tape.replay.catalog`.

The library first (:func:`run_query`, :func:`render_table`, :func:`write_result`), the click command a
thin shell over it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import click
import duckdb

from kiwoom_tape.clikit import friendly_errors
from kiwoom_tape.replay.catalog import connect, dataset_root, table_versions, tables_with_files
from kiwoom_tape.schemas import views
from kiwoom_tape.schemas.errors import DatasetError, KiwoomTapeError

__all__ = ["FORMATS", "Result", "render_table", "row_count_line", "run_query", "sql_command", "write_result"]

FORMATS: Final = ("table", "csv", "json", "parquet")
MAX_CELL: Final = 80
"""Cells longer than this are cut in the aligned table (use --format csv/json for whole values)."""

_NUMERIC: Final = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                   "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL")
_RESULT_VIEW: Final = "_kiwoom_tape_result"


@dataclass
class Result:
    """The first rows of a query's result, every value as DuckDB prints it (VARCHAR) or None for NULL."""

    columns: list[str]
    types: list[str]
    rows: list[tuple[str | None, ...]]
    more: bool
    """True if the result had more rows than were fetched."""


def _relation(con: duckdb.DuckDBPyConnection, query: str) -> Any:
    try:
        return con.sql(query)
    except duckdb.Error as exc:
        raise KiwoomTapeError(
            f"DuckDB: {exc}",
            hint=f"the views are {', '.join(views.VIEW_NAMES)}; "
            "`kiwoom-tape sql DIR \"describe quotes\"` lists a view's columns",
        ) from None


def run_query(con: duckdb.DuckDBPyConnection, query: str, *, max_rows: int | None = 100) -> Result | None:
    """Run ``query``; its first ``max_rows`` rows (all if None) as text, or None for a statement with no result.

    Values are converted by DuckDB itself (timestamps in the session time zone, KST), so nothing needs
    Python-side time zone support. Raises KiwoomTapeError with DuckDB's message for a bad query.
    """
    rel = _relation(con, query)
    if rel is None:
        return None
    columns = list(rel.columns)
    types = [str(t) for t in rel.types]
    try:
        text = rel.project("COLUMNS(*)::VARCHAR")
        if max_rows is None:
            rows = text.fetchall()
            more = False
        else:
            rows = text.limit(max_rows + 1).fetchall()
            more = len(rows) > max_rows
            rows = rows[:max_rows]
    except duckdb.Error as exc:
        raise KiwoomTapeError(f"DuckDB: {exc}", hint="check the query, or run `kiwoom-tape verify DIR`") from None
    return Result(columns, types, [tuple(r) for r in rows], more)


def _cell(value: str | None) -> str:
    if value is None:
        return "NULL"
    value = value.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return value if len(value) <= MAX_CELL else value[: MAX_CELL - 1] + "…"


def render_table(result: Result) -> str:
    """An aligned text table: header, rule, rows; numbers right-aligned. EXPLAIN plans print as they are."""
    if result.columns == ["explain_key", "explain_value"]:
        return "\n".join(str(r[1]) for r in result.rows)
    cells = [[_cell(v) for v in row] for row in result.rows]
    widths = [len(c) for c in result.columns]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    right = [t.split("(")[0] in _NUMERIC for t in result.types]

    def line(values: list[str]) -> str:
        cells = (v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True))
        return "  ".join(cells).rstrip()

    out = [line(result.columns), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    return "\n".join(out)


def write_result(con: duckdb.DuckDBPyConnection, query: str, fmt: str, path: Path) -> None:
    """Write the whole result of ``query`` to ``path`` as csv (with header), json (one array) or parquet (zstd)."""
    options = {
        "csv": "FORMAT csv, HEADER true",
        "json": "FORMAT json, ARRAY true",
        "parquet": "FORMAT parquet, COMPRESSION zstd",
    }[fmt]
    rel = _relation(con, query)
    if rel is None:
        raise KiwoomTapeError("the statement returns no rows to write", hint="pass a SELECT query")
    try:
        rel.create_view(_RESULT_VIEW, replace=True)
        con.execute(f"COPY (FROM {_RESULT_VIEW}) TO {views.sql_string(str(path))} ({options})")
    except duckdb.Error as exc:
        raise KiwoomTapeError(f"DuckDB: {exc}", hint=f"check the query and that {path} can be written") from None
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DROP VIEW IF EXISTS {_RESULT_VIEW}")


def _shares_destination(a: IO[Any], b: IO[Any]) -> bool:
    """Whether two streams write to the same terminal, pipe or file, so that what one writes after the other
    (each write flushed, as ``click.echo`` does) lands after it. Unknown (no file descriptor): True."""
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return True
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def row_count_line(n: int, more: bool, *, separate_streams: bool) -> str:
    """The ``(3 rows)`` line written to stderr after the table on stdout.

    On one terminal or pipe (``2>&1 | cat``) the table, flushed, ends with its newline before this line is
    written. When the streams go to different places, whatever shows them together (a CI log, an IDE, a
    tool that captured both) joins them in its own way, often with stdout's last newline trimmed
    (``1.0(3 rows)``), so the line then starts with a newline of its own.
    """
    hint = "; more not shown (--max-rows 0 shows all, --output FILE saves all)" if more else ""
    lead = "\n" if separate_streams else ""
    return f"{lead}({n} row{'s' if n != 1 else ''}{hint})"


def _split_args(args: tuple[str, ...]) -> tuple[str, str | None]:
    """``[DIR] [QUERY]`` -> (dir, query). One argument is a query if it has a space, else the directory."""
    if len(args) > 2:
        raise click.UsageError(
            f"expected at most DIR and QUERY, got {len(args)} arguments: quote the query, "
            'e.g. kiwoom-tape sql data "select count(*) from quotes"'
        )
    if not args:
        return "data", None
    if len(args) == 2:
        return args[0], args[1]
    one = args[0]
    if one == "-" or any(c.isspace() for c in one):
        return "data", one
    return one, None


def _interactive(root: str, init_only: bool) -> int:
    path = dataset_root(root)
    try:
        present = tables_with_files(path)
        script = views.init_script(path.as_posix(), present, table_versions(path, present))
    except ValueError as exc:
        raise DatasetError(str(exc), hint="move the dataset, or link it, to a path without those characters") from None
    if init_only:
        click.echo(script, nl=False)
        return 0
    exe = shutil.which("duckdb")
    if exe is None:
        raise click.ClickException(
            "the duckdb shell is not on PATH, so there is no interactive session to open.\n"
            "  Pass a query:      kiwoom-tape sql "
            f'{root} "select item, count(*), avg(spread_ticks) from quotes group by all"\n'
            "  or install the shell (https://duckdb.org/docs/installation) and run this again,\n"
            f"  or use your own:   kiwoom-tape sql {root} --init-script > catalog.sql && duckdb -init catalog.sql"
        )
    fd, tmp = tempfile.mkstemp(prefix="kiwoom-tape-", suffix=".sql")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(script)
        click.echo(f"DuckDB on {path}: views {', '.join(views.VIEW_NAMES)}; book_asof(item, ts). .quit leaves.",
                   err=True)
        return subprocess.run([exe, "-init", tmp], check=False).returncode
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@click.command("sql", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("args", nargs=-1, metavar="[DIR] [QUERY]")
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output: an aligned table, or csv/json/parquet (parquet needs --output).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="Write the whole result to this file instead of the terminal.")
@click.option("--max-rows", type=click.IntRange(min=0), default=100, show_default=True,
              help="Rows shown in table format (0: all). csv/json/parquet always get every row.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="DuckDB worker threads (default: one per core).")
@click.option("--init-script", is_flag=True,
              help="Print the SQL that creates the views (for `duckdb -init FILE`) and exit.")
@friendly_errors
def sql_command(
    args: tuple[str, ...], fmt: str, output: Path | None, max_rows: int, threads: int | None, init_script: bool
) -> None:
    """Query a dataset with SQL (DuckDB), without knowing where its files are.

    Views: frames, orderbook, afterhours, trades, events (the stored tables plus their `date` partition;
    trades adds `side` buy/sell from the sign of FID 15 and `qty`), quotes (best bid/ask, mid, spread in
    won and ticks, microprice, imbalance per book row), gaps, rows (every REAL row of any type,
    its FIDs in a MAP "values"), and quote_mid_at_trade (each trade with the quote in force when it
    came: bid, ask, mid, and the effective spread 2 x |price - mid| in won and in KRX ticks); table
    macros book_asof(item, ts): the book in force at a time (`kiwoom-tape book DIR ITEM --at HH:MM:SS`
    prints it as a ladder with the last trades), and bars(interval): OHLCV, VWAP, trade count, buy/sell
    volume per item and interval of exchange time, from trades. Times print in KST. Group by `minute`
    (recv_ts floored to the minute, in every view with recv_ts) for per-minute figures: it is much
    cheaper than date_trunc. DIR defaults to ./data; QUERY "-" reads the query from stdin. With no
    query, opens the duckdb shell on the views.

    \b
    Examples:
        kiwoom-tape sql demo-data "select item, count(*) from orderbook group by all"
        kiwoom-tape sql demo-data "select item, avg(spread_ticks), avg(imbalance) from quotes group by all"
        kiwoom-tape sql demo-data "select item, minute, avg(mid) from quotes group by all order by all"
        kiwoom-tape sql demo-data "from book_asof('005930_NX', now())"
        kiwoom-tape sql demo-data "from bars('1 minute') where item = '005930'"
        kiwoom-tape sql demo-data "select item, side, sum(qty) from trades group by all"
        kiwoom-tape sql demo-data "select item, side, avg(effective_spread_ticks) from quote_mid_at_trade group by all"
        kiwoom-tape sql demo-data "from rows where type = '0H' limit 5"
        kiwoom-tape sql demo-data "from quotes" --format parquet --output quotes.parquet
        kiwoom-tape sql demo-data          # interactive duckdb shell, if installed
    """
    root, query = _split_args(args)
    if query is None:
        sys.exit(_interactive(root, init_script))
    if init_script:
        raise click.UsageError("--init-script prints the catalog SQL: pass DIR only")
    if query == "-":
        query = sys.stdin.read()
    if not query.strip():
        raise click.UsageError('the query is empty; e.g. kiwoom-tape sql data "select count(*) from quotes"')
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet writes a file: add --output FILE")
    con = connect(root, threads=threads)
    try:
        if output is not None:
            if fmt == "table":
                fmt = {".csv": "csv", ".json": "json", ".parquet": "parquet"}.get(output.suffix.lower(), "csv")
            write_result(con, query, fmt, output)
            click.echo(f"wrote {output} ({fmt})", err=True)
        elif fmt == "table":
            result = run_query(con, query, max_rows=max_rows or None)
            if result is None:
                click.echo("OK")
                return
            click.echo(render_table(result))
            separate = not _shares_destination(sys.stdout, sys.stderr)
            click.echo(row_count_line(len(result.rows), result.more, separate_streams=separate), err=True)
        else:
            with tempfile.TemporaryDirectory(prefix="kiwoom-tape-") as tmp:
                path = Path(tmp) / f"result.{fmt}"
                write_result(con, query, fmt, path)
                click.echo(path.read_text(encoding="utf-8"), nl=False)
    finally:
        con.close()
