"""``kiwoom-tape demo``: simulated market -> record -> query -> replay, on loopback, with no credentials.

The pieces are library functions the notebooks use too:

- :func:`record_simulation` serves a :class:`kiwoom_tape.replay.simulator.SimulatedMarket` on a loopback port and
  records it with the real recorder (:func:`kiwoom_tape.testing.run_recorder`: a
  :class:`kiwoom_tape.recorder.client.Recorder` into a :class:`kiwoom_tape.recorder.store.Store`), as ``record --url
  ws://127.0.0.1:...`` would;
- :func:`replay_to_client` serves a dataset back (``kiwoom_tape.replay.recorded.RecordedSource`` when this
  installation has it, else the simulated market again) and counts what a plain client receives.

The market clock starts at 15:29:00 KST and runs 60x, so 20 s of recording cover KRX 0D until the
15:30 close, NXT 0D from 15:30 (NXT halts 15:20-15:30) and KRX 0E from 15:40 (docs/protocol.md 5.3).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import click
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from kiwoom_tape.clikit import friendly_errors, setup_logging
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.replay.catalog import connect
from kiwoom_tape.replay.server import Source, serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.errors import KiwoomTapeError, StorageError
from kiwoom_tape.schemas.layout import JOURNAL_DIR, TABLE_NAMES, new_run_id
from kiwoom_tape.schemas.protocol import ClientSession, LoginRejected, RealData
from kiwoom_tape.sql import render_table, run_query
from kiwoom_tape.testing import loopback_recorder, run_recorder

__all__ = [
    "DEMO_ITEMS",
    "DEMO_SECONDS",
    "DEMO_SPEED",
    "DEMO_START",
    "Progress",
    "Received",
    "Recording",
    "demo_command",
    "record_simulation",
    "replay_to_client",
]

log = logging.getLogger("kiwoom_tape.demo")

DEMO_ITEMS: Final = ("005930", "000660", "005930_NX")
DEMO_START: Final = 15 * 3600 + 29 * 60  # 15:29:00 KST
DEMO_SPEED: Final = 60.0
DEMO_SECONDS: Final = 20.0
MARKER: Final = ".kiwoom-tape-demo"
"""A file the demo leaves in its --out directory, so that a second run may replace the first one's data."""


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass(frozen=True)
class Progress:
    """A snapshot while :func:`record_simulation` runs."""

    elapsed: float
    seconds: float
    market_time: float
    """Seconds since KST midnight on the simulated clock."""
    frames: int
    rows_0d: int
    rows_0e: int


@dataclass
class Recording:
    """What :func:`record_simulation` recorded."""

    root: Path
    run_id: str
    frames: int
    rows: dict[str, int]
    """Rows written per table (orderbook, afterhours, events)."""
    seconds: float
    market_start: float
    market_end: float
    reconnects: int


async def record_simulation(
    out: str | Path,
    *,
    items: Sequence[str] = DEMO_ITEMS,
    types: Sequence[str] = ("0D", "0E"),
    sim_start: float = DEMO_START,
    speed: float = DEMO_SPEED,
    seconds: float = DEMO_SECONDS,
    seed: int = 0,
    progress: Callable[[Progress], None] | None = None,
    progress_interval: float = 0.5,
) -> Recording:
    """Serve the simulated market on 127.0.0.1 (a free port) and record ``items`` x ``types`` for ``seconds``.

    ``sim_start`` is the market clock at start (seconds since KST midnight), ``speed`` market seconds
    per real second. The dataset goes to ``out`` (created if needed; a new run beside any earlier
    one). ``progress`` is called every ``progress_interval`` seconds. Works in a running event loop
    (``await`` it in Jupyter). Raises KiwoomTapeError if recording fails.
    """
    root = Path(out)
    market = SimulatedMarket(seed=seed, items=items, start=sim_start)
    run_id = new_run_id(time.time_ns(), secrets.randbits(24))
    async with serve(SimSource(market, speed=speed), port=0) as server:
        rec = loopback_recorder(server.url, root, items, types, run_id=run_id, fsync_interval=0.2, backoff_cap=0.5)
        t0 = time.monotonic()

        async def until(rec: Recorder) -> None:
            last = -progress_interval
            while True:
                await asyncio.sleep(0.1)
                elapsed = time.monotonic() - t0
                done = elapsed >= seconds
                if progress is not None and (elapsed - last >= progress_interval or done):
                    last = elapsed
                    st = rec.store.stats
                    progress(Progress(min(elapsed, seconds), seconds, market.now, st.frames,
                                      st.rows.get("orderbook", 0), st.rows.get("afterhours", 0)))
                if done:
                    return

        await run_recorder(rec, until, tick=0.1)
        st = rec.store.stats
    return Recording(root, run_id, st.frames, dict(st.rows), time.monotonic() - t0, sim_start, market.now,
                     rec.stats.reconnects)


@dataclass
class Received:
    """What :func:`replay_to_client` saw."""

    source: str
    """``"recorded"`` (the dataset itself) or ``"simulated"`` (the fallback)."""
    note: str
    rows: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Rows received per (item, type)."""
    frames: int = 0
    seconds: float = 0.0
    first_row: dict[str, Any] | None = None

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _recorded_source(root: Path, speed: float | None) -> Source | None:
    """``kiwoom_tape.replay.recorded.RecordedSource`` over ``root`` if this installation has it, else None."""
    try:
        from kiwoom_tape.replay.recorded import RecordedSource  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    source: Source = RecordedSource(root, speed=speed, start_delay=0.5)
    return source


async def replay_to_client(
    root: str | Path,
    items: Sequence[str] = DEMO_ITEMS,
    types: Sequence[str] = ("0D", "0E"),
    *,
    expected_rows: int | None = None,
    speed: float | None = 10.0,
    max_seconds: float = 15.0,
    idle: float = 2.0,
    fallback_start: float = DEMO_START,
    fallback_speed: float = DEMO_SPEED,
    fallback_seconds: float | None = None,
) -> Received:
    """Serve the dataset at ``root`` on loopback and receive it with a minimal Kiwoom client.

    The client speaks the protocol as any Kiwoom client does (LOGIN, REG ``items`` x ``types``, PING
    echo) and counts REAL rows; it stops at ``expected_rows``, after ``idle`` seconds without a frame
    once rows have come, or after ``max_seconds``. Without ``kiwoom_tape.replay.recorded`` the simulated market is
    served
    instead (``Received.source`` says which), for ``fallback_seconds`` (default ``max_seconds``).
    """
    source = _recorded_source(Path(root), speed)
    if source is not None:
        received = Received("recorded", f"replaying {root} at {'max' if speed is None else f'{speed:g}x'} speed")
    else:
        source = SimSource(SimulatedMarket(seed=0, items=items, start=fallback_start), speed=fallback_speed)
        received = Received("simulated", "this installation has no recorded replay (replay.recorded): "
                            "serving the simulated market instead")
        expected_rows = None
        if fallback_seconds is not None:
            max_seconds = fallback_seconds
    async with serve(source, port=0) as server:
        t0 = time.monotonic()
        session = ClientSession(token="kiwoom-tape-demo")
        async with ws_connect(server.url, compression=None, ping_interval=None, max_size=2**22) as ws:
            session.connect(time.monotonic())
            session.subscribe(list(items), list(types))
            deadline = t0 + max_seconds
            last_frame: float | None = None
            try:
                while True:
                    for out in session.data_to_send():
                        await ws.send(out)
                    if expected_rows is not None and received.total >= expected_rows:
                        break
                    now = time.monotonic()
                    end = deadline if last_frame is None else min(deadline, last_frame + idle)
                    if now >= end:
                        break
                    wait = end - now
                    due = session.next_deadline()
                    if due is not None:
                        wait = min(wait, max(0.0, due - now))
                    try:
                        text = await asyncio.wait_for(ws.recv(), max(wait, 0.001))
                    except TimeoutError:
                        session.tick(time.monotonic())
                        continue
                    for ev in session.receive(text, time.monotonic()):
                        if isinstance(ev, RealData):
                            received.frames += 1
                            last_frame = time.monotonic()
                            for row in ev.rows:
                                received.rows[(row.item, row.type)] += 1
                                if received.first_row is None and row.type == "0D":
                                    received.first_row = {"item": row.item, **row.values}
                        elif isinstance(ev, LoginRejected):
                            raise KiwoomTapeError(f"the local replay server refused LOGIN: {ev.return_msg}")
            except ConnectionClosed:
                pass
        received.seconds = time.monotonic() - t0
    return received


# --------------------------------------------------------------------------------------------------
# The command


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
        f"{p.frames:,} frames | {p.rows_0d:,} 0D rows | {p.rows_0e:,} 0E rows"
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
    NXT 0D and after-hours 0E all flow), records 005930, 000660 and 005930_NX with the real recorder
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
        f"1/3 Recording {', '.join(DEMO_ITEMS)} (0D, 0E) from the simulated market for {seconds:g} s into {out}"
        + (" (replacing the previous demo)" if replaced else "")
    )
    click.echo(f"    market clock {_hms(DEMO_START)} KST at {DEMO_SPEED:g}x: KRX 0D until 15:30, NXT 0D from 15:30, "
               "0E from 15:40")
    recording = asyncio.run(
        record_simulation(out, seconds=seconds, progress=lambda p: _status(p, tty), progress_interval=0.5 if tty else 5)
    )
    if tty:
        sys.stderr.write("\n")
    click.echo(
        f"    recorded {recording.frames:,} frames, {recording.rows.get('orderbook', 0):,} order-book rows, "
        f"{recording.rows.get('afterhours', 0):,} after-hours rows (market {_hms(recording.market_start)}"
        f"-{_hms(recording.market_end)}, run {recording.run_id})"
    )

    click.echo(f"\n2/3 Querying {out} with DuckDB (replay.catalog.connect; the same views as `kiwoom-tape sql`)")
    con = connect(out)
    try:
        tables = run_query(con, TABLES_SQL)
        summary = run_query(con, SUMMARY_SQL)
        ((expected,),) = con.execute(
            "SELECT (SELECT count(*) FROM orderbook) + (SELECT count(*) FROM afterhours)"
        ).fetchall()
    finally:
        con.close()
    assert tables is not None and summary is not None
    click.echo("    Rows per table:")
    click.echo("\n".join("      " + line for line in render_table(tables).splitlines()))
    click.echo("    Spread per item (view quotes):")
    click.echo("\n".join("      " + line for line in render_table(summary).splitlines()))

    click.echo("\n3/3 Replaying the capture to a client on a local mock server")
    received = asyncio.run(replay_to_client(out, expected_rows=int(expected), fallback_seconds=4.0))
    if received.source != "recorded":
        click.echo(f"    note: {received.note}")
    else:
        click.echo(f"    {received.note}")
    per = ", ".join(f"{item} {typ} {n:,}" for (item, typ), n in sorted(received.rows.items()))
    click.echo(f"    the client logged in, registered {', '.join(DEMO_ITEMS)} and received {received.total:,} rows "
               f"in {received.frames:,} frames in {received.seconds:.1f} s: {per or 'nothing'}")
    if received.source == "recorded":
        verdict = "all of them" if received.total == expected else f"{received.total:,} of {int(expected):,}"
        click.echo(f"    recorded rows replayed: {verdict}")
    if received.first_row is not None:
        click.echo(f"    first book it saw: {_book_line(received.first_row)}")
    ok = received.total > 0
    click.echo(f"\n{'Done' if ok else 'Finished, but the client received nothing'} in "
               f"{time.monotonic() - t_start:.0f} s. Try next:")
    replay_next = (
        (f"replay {out} --speed 10", "serve the capture to your own client")
        if received.source == "recorded"
        else ("replay --simulate --port 10000", "serve the simulated market to your own client")
    )
    hints = [
        (f"kiwoom-tape sql {out} \"select item, count(*), avg(spread_ticks) from quotes group by all\"", ""),
        (f"kiwoom-tape sql {out} \"from book_asof('005930_NX', now())\"", ""),
        (f"kiwoom-tape sql {out}", "the duckdb shell on the views, if installed"),
        (f"kiwoom-tape verify {out}", "check every file, schema, gap and book"),
        replay_next,
        ("pip install jupyterlab && jupyter lab notebooks/", "capture-and-query, after-hours, strategy"),
        ("record --items 005930 --out data", "the real market (KIWOOM_APPKEY + KIWOOM_SECRETKEY)"),
    ]
    width = max(len(cmd) for cmd, why in hints if why)
    click.echo("\n".join(f"  {cmd.ljust(width)}  # {why}" if why else f"  {cmd}" for cmd, why in hints))
    if not ok:
        raise SystemExit(1)
