"""``kiwoom-tape demo``: the command that runs the loop of :mod:`kiwoom_tape.demo` and prints what it saw."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Final

import click

from kiwoom_tape.clikit import friendly_errors, setup_logging
from kiwoom_tape.demo import (
    DEMO_ITEMS,
    DEMO_SECONDS,
    DEMO_SPEED,
    DEMO_START,
    DEMO_TYPES,
    Progress,
    record_simulation,
    replay_to_client,
)
from kiwoom_tape.replay.catalog import connect
from kiwoom_tape.schemas.errors import StorageError
from kiwoom_tape.schemas.layout import JOURNAL_DIR, TABLE_NAMES
from kiwoom_tape.sql import render_table, run_query

__all__ = ["MARKER", "demo_command"]

MARKER: Final = ".kiwoom-tape-demo"
"""A file the demo leaves in its --out directory, so that a second run may replace the first one's data."""


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _prepare_out(out: Path) -> bool:
    """Make ``out`` ready for a demo run; True if an earlier demo's data was replaced."""
    if out.exists() and not out.is_dir():
        raise StorageError(f"--out {out} is a file", path=str(out), hint="choose a directory with --out")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise StorageError(
                f"--out {out} is not empty and was not made by `kiwoom-tape demo`",
                path=str(out),
                hint="choose an empty or new directory with --out; the demo never deletes data it did not write",
            )
        for name in (*TABLE_NAMES, JOURNAL_DIR):
            shutil.rmtree(out / name, ignore_errors=True)
        return True
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("made by `kiwoom-tape demo`; the next demo run replaces this directory's data\n")
    except OSError as exc:
        raise StorageError(f"cannot write to --out {out}: {exc.strerror or exc}", path=str(out),
                           hint="choose a writable directory with --out") from None
    return False


def _status(p: Progress, tty: bool) -> None:
    line = (
        f"  recording {p.elapsed:4.1f}/{p.seconds:g} s | market {_hms(p.market_time)} KST | "
        f"{p.frames:,} frames | {p.rows_0d:,} 0D | {p.rows_0e:,} 0E | {p.rows_0b:,} 0B rows"
    )
    if tty:
        sys.stderr.write("\r" + line.ljust(100))
        sys.stderr.flush()
    else:
        click.echo(line, err=True)


def _book_line(row: dict[str, Any]) -> str:
    """``005930 at 15:29:00: bid 70,900 x 18,537 / ask 71,000 x 72,302`` from a 0D row's wire values."""

    def num(fid: str) -> str:
        try:
            return f"{abs(int(row.get(fid, ''))):,}"  # the wire sign means "vs the previous close"
        except ValueError:
            return "-"

    t = str(row.get("21", ""))
    at = f"{t[:2]}:{t[2:4]}:{t[4:6]}" if len(t) == 6 else "?"
    return f"{row.get('item')} at {at}: bid {num('51')} x {num('71')} / ask {num('41')} x {num('61')}"


SUMMARY_SQL: Final = """SELECT item, venue, count(*) AS book_rows,
       round(avg(spread), 1) AS avg_spread_won, round(avg(spread_ticks), 2) AS avg_spread_ticks,
       min(mid) AS min_mid, max(mid) AS max_mid, round(avg(imbalance), 3) AS avg_imbalance
FROM quotes GROUP BY ALL ORDER BY item"""

TABLES_SQL: Final = """SELECT 'frames' AS "table", count(*) AS "rows" FROM frames
UNION ALL SELECT 'orderbook', count(*) FROM orderbook
UNION ALL SELECT 'afterhours', count(*) FROM afterhours
UNION ALL SELECT 'trades', count(*) FROM trades
UNION ALL SELECT 'events', count(*) FROM events"""


@click.command("demo", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-data"),
              show_default=True, help="Where to write the dataset: a new or empty directory, or a former demo's.")
@click.option("--seconds", type=click.FloatRange(1, 600), default=DEMO_SECONDS, show_default=True,
              help="How long to record.")
@click.option("-v", "--verbose", count=True, help="Log lines of the recorder and the server (-vv for debug).")
@friendly_errors
def demo_command(out: Path, seconds: float, verbose: int) -> None:
    """Run the whole loop on this machine: simulated market -> record -> DuckDB -> replay. No credentials.

    Starts the simulated KRX/NXT market on a loopback port (clock 15:29:00 KST at 60x, so KRX 0D,
    NXT 0D and 0B trades, and after-hours 0E all flow), records 005930, 000660 and 005930_NX with the real recorder
    into --out, prints a DuckDB summary, replays the capture to a client, and tells you what to try
    next. Takes about half a minute and touches no network but 127.0.0.1.

    \b
    Example:
        kiwoom-tape demo
        kiwoom-tape demo --out /tmp/demo --seconds 10
    """
    setup_logging(verbose, quiet=verbose == 0)
    t_start = time.monotonic()
    replaced = _prepare_out(out)
    tty = sys.stderr.isatty()
    click.echo(
        f"1/3 Recording {', '.join(DEMO_ITEMS)} ({', '.join(DEMO_TYPES)}) from the simulated market for {seconds:g} s "
        f"into {out}"
        + (" (replacing the previous demo)" if replaced else "")
    )
    click.echo(f"    market clock {_hms(DEMO_START)} KST at {DEMO_SPEED:g}x: KRX 0D until 15:30, NXT 0D and "
               "0B from 15:30, 0E from 15:40")
    recording = asyncio.run(
        record_simulation(out, seconds=seconds, progress=lambda p: _status(p, tty), progress_interval=0.5 if tty else 5)
    )
    if tty:
        sys.stderr.write("\n")
    click.echo(
        f"    recorded {recording.frames:,} frames, {recording.rows.get('orderbook', 0):,} order-book rows, "
        f"{recording.rows.get('afterhours', 0):,} after-hours rows, {recording.rows.get('trades', 0):,} trades "
        f"(market {_hms(recording.market_start)}"
        f"-{_hms(recording.market_end)}, run {recording.run_id})"
    )

    click.echo(f"\n2/3 Querying {out} with DuckDB (replay.catalog.connect; the same views as `kiwoom-tape sql`)")
    con = connect(out)
    try:
        tables = run_query(con, TABLES_SQL)
        summary = run_query(con, SUMMARY_SQL)
        ((expected,),) = con.execute(
            "SELECT (SELECT count(*) FROM orderbook) + (SELECT count(*) FROM afterhours) "
            "+ (SELECT count(*) FROM trades)"
        ).fetchall()
    finally:
        con.close()
    assert tables is not None and summary is not None
    click.echo("    Rows per table:")
    click.echo("\n".join("      " + line for line in render_table(tables).splitlines()))
    click.echo("    Spread per item (view quotes):")
    click.echo("\n".join("      " + line for line in render_table(summary).splitlines()))

    click.echo("\n3/3 Replaying the capture to a client on a local mock server")
    received = asyncio.run(replay_to_client(out, expected_rows=int(expected)))
    click.echo(f"    {received.note}")
    per = ", ".join(f"{item} {typ} {n:,}" for (item, typ), n in sorted(received.rows.items()))
    click.echo(f"    the client logged in, registered {', '.join(DEMO_ITEMS)} and received {received.total:,} rows "
               f"in {received.frames:,} frames in {received.seconds:.1f} s: {per or 'nothing'}")
    verdict = "all of them" if received.total == expected else f"{received.total:,} of {int(expected):,}"
    click.echo(f"    recorded rows replayed: {verdict}")
    if received.first_row is not None:
        click.echo(f"    first book it saw: {_book_line(received.first_row)}")
    ok = received.total > 0
    click.echo(f"\n{'Done' if ok else 'Finished, but the client received nothing'} in "
               f"{time.monotonic() - t_start:.0f} s. Try next:")
    replay_next = (f"replay {out} --speed 10", "serve the capture to your own client")
    hints = [
        (f"kiwoom-tape sql {out} \"select item, count(*), avg(spread_ticks) from quotes group by all\"", ""),
        (f"kiwoom-tape book {out} 005930_NX", "the order book and the last trades, as a trader reads them"),
        (f"kiwoom-tape sql {out} \"from bars('1 minute') where item = '005930_NX'\"", ""),
        (f"kiwoom-tape sql {out}", "the duckdb shell on the views, if installed"),
        (f"kiwoom-tape verify {out}", "check every file, schema, gap and book"),
        replay_next,
        ("pip install jupyterlab && jupyter lab notebooks/", "capture-and-query, after-hours, strategy, trades"),
        ("record --items 005930 --out data", "the real market (KIWOOM_APPKEY + KIWOOM_SECRETKEY)"),
    ]
    width = max(len(cmd) for cmd, why in hints if why)
    click.echo("\n".join(f"  {cmd.ljust(width)}  # {why}" if why else f"  {cmd}" for cmd, why in hints))
    if not ok:
        raise SystemExit(1)
