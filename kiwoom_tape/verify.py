"""``kiwoom-tape verify DIR``: is this dataset whole and sane? A report, and an exit code for scripts.

Two passes. First every part file is read in full with pyarrow (a file that cannot be decoded to its
last page is *unreadable*), its footer checked (schema version, table, columns), its rows counted and
its receive times compared with its ``date`` partition. Then the readable files are queried through
the catalog's views (:mod:`kiwoom_tape.schemas.views`, over the explicit file list): duplicated rows, books that
are crossed or off the KRX tick grid, trades that cannot be right or are unusual
(:mod:`kiwoom_tape.verify_trades`), frames that failed to parse, rows with missing or unreadable
FIDs, and the gaps the recorder wrote to ``events``.

Errors (exit 1) mean the data is damaged or wrong: unreadable files, unknown schema versions, columns
that do not match, rows in the wrong partition, duplicates, crossed books outside the call auctions,
prices off every tick grid, trades outside the price band or with a falling cumulative volume.
Warnings (exit 0, or 1 with ``--strict``) are facts a user should know:
gaps, unparsed frames, flagged rows, a journal not yet turned into Parquet, stray temporary files,
crossed books during a call auction, prices only on the 5-won ETF/ETN grid, trades away from the
book's touch or outside the hours 0B flows in.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Final

import click
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kiwoom_tape.clikit import friendly_errors
from kiwoom_tape.replay.catalog import dataset_root
from kiwoom_tape.replay.s3copy import local_dataset
from kiwoom_tape.schemas import views
from kiwoom_tape.schemas.layout import (
    JOURNAL_DIR,
    STAGING_DIR,
    TABLE_NAMES,
    TMP_SUFFIX,
    parse_part_filename,
    parse_staging_filename,
)
from kiwoom_tape.schemas.market import KST
from kiwoom_tape.schemas.tables import META_TABLE, META_WRITER, SCHEMA_VERSION, TABLES, TABLES_V1, schema_version_of
from kiwoom_tape.schemas.versions import recv_ns_of
from kiwoom_tape.verify_report import FileCheck, Problem, VerifyReport, format_report
from kiwoom_tape.verify_trades import check_trades, off_grid_sql

__all__ = ["FileCheck", "Problem", "VerifyReport", "format_report", "verify", "verify_command"]

_DATE_DIR: Final = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_NS: Final = 1_000_000_000
_PRICE_COLUMNS: Final = [f"{side}_price_{n}" for side in ("ask", "bid") for n in range(1, 11)]
# KRX call auctions, seconds of the KST day (docs/protocol.md 5.1): 장전 동시호가 08:30-09:00, 장마감 15:20-15:30.
# A crossed book there is how a call auction looks, not damage. NXT (venue 'NXT') has no auction.
_AUCTIONS: Final = ((8 * 3600 + 30 * 60, 9 * 3600), (15 * 3600 + 20 * 60, 15 * 3600 + 30 * 60))


# --------------------------------------------------------------------------------------------------
# Pass 1: files


def _rel(report: VerifyReport, path: Path) -> str:
    try:
        return path.relative_to(report.root).as_posix()
    except ValueError:
        return str(path)


def _kst_date(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns // _NS, KST).date().isoformat()


def _same_type(got: pa.DataType, want: pa.DataType) -> bool:
    if pa.types.is_timestamp(got) and pa.types.is_timestamp(want):
        return (got.tz is None) == (want.tz is None)  # Parquet stores timestamp[s] as [ms]
    return bool(got == want)


def _check_file(report: VerifyReport, fc: FileCheck) -> None:
    name = _rel(report, fc.path)
    try:
        pf = pq.ParquetFile(fc.path, page_checksum_verification=True)  # every page's CRC, where written
    except Exception as exc:  # any failure to open the footer: the file is unreadable
        fc.error = f"unreadable: {_short(exc)}"
        report.error(f"{name}: {fc.error}", "move it out of the dataset: the other files stay queryable")
        return
    with pf:
        schema = pf.schema_arrow
        meta = schema.metadata or {}
        fc.schema_version = schema_version_of(schema)
        fc.writer = meta.get(META_WRITER, b"").decode("utf-8", "replace")
        table_meta = meta.get(META_TABLE, b"").decode("utf-8", "replace")
        if fc.schema_version is None:
            fc.error = "no kiwoom-tape schema version in its metadata: not written by kiwoom-tape"
            report.error(f"{name}: {fc.error}", "move files of other tools out of the dataset directory")
            return
        if fc.schema_version > SCHEMA_VERSION:
            fc.error = f"schema version {fc.schema_version} is newer than this kiwoom-tape reads ({SCHEMA_VERSION})"
            report.error(f"{name}: {fc.error}", "upgrade kiwoom-tape")
            return
        if table_meta and table_meta != fc.table:
            fc.error = f"holds table {table_meta!r} but sits in {fc.table}/"
            report.error(f"{name}: {fc.error}", f"move it to {table_meta}/")
            return
        if fc.schema_version in (1, SCHEMA_VERSION):
            want = (TABLES if fc.schema_version == SCHEMA_VERSION else TABLES_V1)[fc.table]
            got = [(f.name, f.type) for f in schema]
            expected = [(f.name, f.type) for f in want]
            if [n for n, _ in got] != [n for n, _ in expected] or not all(
                _same_type(g, w) for (_, g), (_, w) in zip(got, expected, strict=True)
            ):
                missing = sorted({n for n, _ in expected} - {n for n, _ in got})
                extra = sorted({n for n, _ in got} - {n for n, _ in expected})
                detail = f"missing {missing[:5]}" if missing else ""
                detail += (", " if detail and extra else "") + (f"unexpected {extra[:5]}" if extra else "")
                fc.error = (f"columns do not match schema version {fc.schema_version} of {fc.table} "
                            f"({detail or 'types'})")
                report.error(f"{name}: {fc.error}", "the file was changed by another tool: restore or remove it")
                return
        declared = pf.metadata.num_rows
        first: int | None = None
        last: int | None = None
        rows = 0
        try:
            for batch in pf.iter_batches(batch_size=65_536):
                rows += batch.num_rows
                if "recv_ts" in batch.schema.names and batch.num_rows:
                    mm = pc.min_max(recv_ns_of(batch))
                    lo, hi = mm["min"].as_py(), mm["max"].as_py()
                    if lo is not None:
                        first = lo if first is None else min(first, lo)
                        last = hi if last is None else max(last, hi)
        except Exception as exc:  # a page that does not decode: unreadable from there on
            fc.error = f"unreadable after {rows} rows: {_short(exc)}"
            report.error(f"{name}: {fc.error}", "move it aside; the rows before the damage can be read with pyarrow")
            return
    fc.rows, fc.first_ns, fc.last_ns = rows, first, last
    if rows != declared:
        fc.error = f"footer declares {declared} rows but {rows} were read"
        report.error(f"{name}: {fc.error}", "move it aside")
        return
    if first is not None and last is not None and not (_kst_date(first) == fc.date == _kst_date(last)):
        report.error(
            f"{name}: rows received on {_kst_date(first)}..{_kst_date(last)} (KST) sit in partition date={fc.date}",
            "queries filtering on date will miss them: move the file to the partition of its KST date",
        )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _warn_temporary(report: VerifyReport, f: Path) -> None:
    report.warn(
        f"{_rel(report, f)}: a temporary file (a recorder is writing it, or crashed)",
        f"when no recorder runs, `record recover {report.root}` removes it and rewrites its rows from the journal",
    )


def _scan_files(report: VerifyReport) -> None:
    root = report.root
    for table in TABLE_NAMES:
        tdir = root / table
        if not tdir.is_dir():
            continue
        for part in sorted(tdir.iterdir()):
            if part.name.startswith((".", "_")):
                continue
            m = _DATE_DIR.fullmatch(part.name)
            if not part.is_dir() or m is None:
                report.warn(f"{_rel(report, part)}: not a date=YYYY-MM-DD partition", "move it out of the dataset")
                continue
            try:
                dt.date.fromisoformat(m.group(1))
            except ValueError:
                report.error(f"{_rel(report, part)}: {m.group(1)} is not a date", "rename or remove the directory")
                continue
            for f in sorted(part.iterdir()):
                if f.name.endswith(TMP_SUFFIX):  # a recorder's, in the layout before _tmp/
                    _warn_temporary(report, f)
                    continue
                if not f.name.endswith(".parquet"):
                    continue
                fc = FileCheck(table, m.group(1), f, f.stat().st_size)
                report.files.append(fc)
                if parse_part_filename(f.name) is None:
                    report.warn(f"{_rel(report, f)}: not named like a kiwoom-tape part file",
                                "the views read it all the same; move it out if it is not yours")
                _check_file(report, fc)
    staging = root / STAGING_DIR
    for f in sorted(staging.iterdir()) if staging.is_dir() else []:
        if parse_staging_filename(f.name) is not None:  # the recorder's; other names are other writers' (layout)
            _warn_temporary(report, f)
    jdir = root / JOURNAL_DIR
    journals = sorted(jdir.glob("*.journal")) if jdir.is_dir() else []
    for kept in sorted(jdir.glob("*.journal.torn")) if jdir.is_dir() else []:
        report.warn(
            f"{_rel(report, kept)}: {kept.stat().st_size} unreadable journal bytes, kept by recovery",
            "the journal_damage events say where they were; delete the file once you have looked at it",
        )
    if journals:
        report.warn(
            f"{len(journals)} journal segment(s) in {JOURNAL_DIR}/ are not in Parquet yet "
            "(a recorder is running, or one crashed)",
            f"when no recorder runs, `record recover {root}` turns them into Parquet files",
        )


# --------------------------------------------------------------------------------------------------
# Pass 2: content, through the views over the readable files


def _kst_text(value: Any) -> str:
    return "" if value is None else str(value)


def _check_content(report: VerifyReport, con: duckdb.DuckDBPyConnection) -> None:
    def one(sql: str) -> tuple[Any, ...]:
        (row,) = con.execute(sql).fetchall()  # fetchall: a result fully read frees the connection
        return tuple(row)

    for table, key in (("frames", "run_id, seq"), ("orderbook", "run_id, frame_seq, row_idx"),
                       ("afterhours", "run_id, frame_seq, row_idx"), ("trades", "run_id, frame_seq, row_idx")):
        (dupes,) = one(f"SELECT count(*) - count(DISTINCT ({key})) FROM {table}")
        if dupes:
            report.error(f"{table}: {dupes} duplicated rows (same {key})",
                         "two files hold the same rows: a copied file, or a recovery run twice by hand")

    sod = "((epoch(quote_time)::BIGINT + 32400) % 86400)"  # second of the KST day
    in_auction = " OR ".join(f"({sod} >= {a} AND {sod} < {b})" for a, b in _AUCTIONS)
    grids = [off_grid_sql(c) for c in _PRICE_COLUMNS]
    off_stock = " OR ".join(stock for stock, _all in grids)
    off_all = " OR ".join(every for _stock, every in grids)
    rows, crossed, crossed_auction, off_any, off_stock_n = one(
        f"""SELECT count(*),
                   count(*) FILTER (WHERE bid_price_1 >= ask_price_1 AND NOT (venue <> 'NXT' AND ({in_auction}))),
                   count(*) FILTER (WHERE bid_price_1 >= ask_price_1 AND venue <> 'NXT' AND ({in_auction})),
                   count(*) FILTER (WHERE {off_all}),
                   count(*) FILTER (WHERE ({off_stock}) AND NOT ({off_all}))
            FROM orderbook"""
    )
    report.book_rows, report.crossed, report.crossed_in_auction = rows, crossed, crossed_auction
    report.off_grid, report.off_stock_grid_only = off_any, off_stock_n
    if crossed:
        examples = con.execute(
            f"""SELECT item, count(*), min(quote_time)::VARCHAR, any_value(bid_price_1), any_value(ask_price_1)
                FROM orderbook
                WHERE bid_price_1 >= ask_price_1 AND NOT (venue <> 'NXT' AND ({in_auction}))
                GROUP BY item ORDER BY 2 DESC LIMIT 5"""
        ).fetchall()
        where = "; ".join(f"{i}: {n} rows from {t} (e.g. bid {b} >= ask {a})" for i, n, t, b, a in examples)
        report.error(
            f"orderbook: {crossed} crossed books (best bid >= best ask) outside the call auctions: {where}",
            "a VI (volatility interruption) auction also crosses a book for 2 minutes; otherwise the rows are damaged",
        )
    if crossed_auction:
        report.warn(f"orderbook: {crossed_auction} crossed books during the KRX call auctions (expected there)")
    if off_any:
        examples = con.execute(
            f"SELECT item, count(*) FROM orderbook WHERE {off_all} GROUP BY item ORDER BY 2 DESC LIMIT 5"
        ).fetchall()
        report.error(
            f"orderbook: {off_any} rows with a price off the KRX tick grid (docs/protocol.md 5.5): "
            + ", ".join(f"{i} ({n})" for i, n in examples),
            "prices are stored as absolute won: damaged rows, or a normalizer bug",
        )
    if off_stock_n:
        examples = con.execute(
            f"SELECT item, count(*) FROM orderbook WHERE ({off_stock}) AND NOT ({off_all}) GROUP BY item LIMIT 5"
        ).fetchall()
        report.warn(
            f"orderbook: {off_stock_n} rows priced off the stock tick grid but on the 5-won grid: "
            + ", ".join(f"{i} ({n})" for i, n in examples),
            "expected for ETFs, ETNs and ELWs (5-won tick); an error for a stock",
        )

    report.parse_errors = [
        (str(d), str(r), int(n))
        for d, r, n in con.execute(
            """SELECT "date"::VARCHAR, parse_error, count(*) FROM frames WHERE parse_error IS NOT NULL
               GROUP BY ALL ORDER BY 1, 3 DESC"""
        ).fetchall()
    ]
    if report.parse_errors:
        total = sum(n for _, _, n in report.parse_errors)
        top = ", ".join(f"{r!r} x{n}" for _, r, n in report.parse_errors[:3])
        report.warn(f"frames: {total} frames failed to parse ({top})",
                    "they are kept verbatim: `select text from frames where parse_error is not null`")

    check_trades(report, con)

    for table in ("orderbook", "afterhours", "trades"):
        missing, invalid = one(
            f"SELECT count(*) FILTER (WHERE flags & 1 <> 0), count(*) FILTER (WHERE flags & 2 <> 0) FROM {table}"
        )
        report.flagged[table] = (missing, invalid)
        if missing or invalid:
            report.warn(f"{table}: {missing} rows with a missing FID, {invalid} with an unreadable one (flags)",
                        f"the raw frames are in frames: join on run_id and seq = {table}.frame_seq")

    _check_journal_damage(report, con)
    report.gaps = [
        (str(r), _kst_text(s), _kst_text(e), None if sec is None else float(sec), str(c or ""))
        for r, s, e, sec, c in con.execute(
            "SELECT run_id, gap_start::VARCHAR, gap_end::VARCHAR, seconds, cause FROM gaps"
        ).fetchall()
    ]
    if report.gaps:
        gap_seconds = math.fsum(g[3] for g in report.gaps if g[3] is not None)
        still_open = sum(1 for g in report.gaps if g[3] is None)
        crashes = sum(1 for g in report.gaps if g[4] == "crash")
        report.warn(
            f"events: {len(report.gaps)} gap(s) in the recording, {gap_seconds:.1f} s in all"
            + (f", {crashes} of them crash(es) (a run that did not stop cleanly)" if crashes else "")
            + (f", {still_open} never closed" if still_open else ""),
            "listed above; `select * from gaps` shows them",
        )


def _check_journal_damage(report: VerifyReport, con: duckdb.DuckDBPyConnection) -> None:
    """Unreadable journal ranges recovery recorded (``journal_damage`` events, :mod:`kiwoom_tape.recorder.recovery`).

    Damage followed by valid records (bytes lost inside a run: a bad disk, not a crash) is an error;
    a torn tail (what a crash in the middle of a write leaves, inside the run's crash gap) a warning.
    """
    rows = con.execute("SELECT run_id, detail FROM events WHERE kind = 'journal_damage' ORDER BY recv_ns").fetchall()
    for run_id, detail_text in rows:
        try:
            d = json.loads(detail_text)
        except (TypeError, ValueError):
            d = {}
        lost = d.get("frames_lost")
        what = (f"{d.get('bytes', '?')} bytes at {d.get('start', '?')}..{d.get('end', '?')} of journal "
                f"{d.get('journal', '?')} (run {run_id})" + (f", {lost} frame(s) lost" if lost else ""))
        kept = f"the bytes are kept in {JOURNAL_DIR}/{d.get('kept_in', '?')}"
        if d.get("until_ns") is None:
            report.warn(f"events: a torn journal tail: {what}", f"a crash in the middle of a write; {kept}")
        else:
            report.error(f"events: damaged journal: {what}, recovered around it",
                         f"check the disk; the gap is in `select * from gaps`; {kept}")


def verify(root: str | Path) -> VerifyReport:
    """Check the dataset at ``root`` (see the module docstring). Raises DatasetError if it is not one."""
    report = VerifyReport(dataset_root(root))
    _scan_files(report)
    good: dict[str, list[str]] = defaultdict(list)
    seen: dict[str, set[int | None]] = defaultdict(set)
    for fc in report.files:
        if fc.error is None:
            good[fc.table].append(fc.path.as_posix())
            seen[fc.table].add(fc.schema_version)
    old = sum(1 for fc in report.files if fc.error is None and fc.schema_version == 1)
    if old:
        report.warn(f"{old} file{'s' if old != 1 else ''} of schema version 1 (this kiwoom-tape writes "
                    f"{SCHEMA_VERSION}): read as they are", f"`kiwoom-tape migrate {report.root}` rewrites them")
    versions = {t: ("1" if v == {1} else "mixed") for t, v in seen.items() if 1 in v}
    con = duckdb.connect(":memory:")
    try:
        statements = views.statements_for(good, versions)
        with contextlib.suppress(duckdb.Error):
            con.execute(statements[0])  # SET TimeZone (ICU)
        for stmt in statements[1:]:
            con.execute(stmt)
        _check_content(report, con)
    except duckdb.Error as exc:
        report.error(f"DuckDB could not read the files pyarrow read: {_short(exc)}",
                     "please report this with the file attached")
    finally:
        con.close()
    return report


# --------------------------------------------------------------------------------------------------
# The report


@click.command("verify", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("directory", default="data", required=False)
@click.option("--strict", is_flag=True, help="Exit non-zero on warnings too (gaps, unparsed frames, journals).")
@friendly_errors
def verify_command(directory: str, strict: bool) -> None:
    """Check a dataset: files readable, schema versions, rows, gaps, bad books and trades; exit 1 if damaged.

    Reads every Parquet file in full, then reports rows and time range per table and date, the gaps
    the recorder wrote to events, frames that failed to parse, books that are crossed or off the
    KRX tick grid, and trades off the grid, outside the price band, with a falling cumulative volume
    (errors), away from the book's touch or outside trading hours (warnings). Exit status: 0 when
    nothing is wrong (warnings allowed unless --strict), 1 otherwise.

    \b
    Examples:
        kiwoom-tape verify demo-data
        kiwoom-tape verify data --strict && echo "all good"
        kiwoom-tape verify s3://bucket/prefix     # on a temporary local copy
    """
    with local_dataset(directory) as (path, shown):
        report = verify(path)
        text = format_report(report, strict=strict)
    click.echo(text if shown is None else text.replace(f"Dataset {report.root}", f"Dataset {shown}", 1))
    if not report.ok(strict=strict):
        raise SystemExit(1)
