"""The ``record`` command (and ``record recover DIR``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets as _secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import click
from kiwoom_tape.recorder.auth import (
    TokenProvider,
    check_token_url,
    is_loopback,
    rest_base_for,
    token_provider_from_env,
)
from kiwoom_tape.recorder.backoff import ReconnectPolicy
from kiwoom_tape.recorder.cli_checks import DEFAULT_TYPES, TYPES, Duration, check_item_options, check_out, parse_types
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.recorder.driver import drive_all
from kiwoom_tape.recorder.plan import (
    KeyFileError,
    PlanError,
    connection_entries,
    read_items_file,
    read_keys_file,
    resolve_key,
)
from kiwoom_tape.recorder.recovery import RecoveryReport, recover
from kiwoom_tape.recorder.status import StatusLine
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.recorder.upload import Uploader, resolve_out
from kiwoom_tape.schemas import auth
from kiwoom_tape.schemas.errors import KiwoomTapeError, SessionTakenOver
from kiwoom_tape.schemas.items import ITEM_KIND
from kiwoom_tape.schemas.layout import new_run_id
from kiwoom_tape.schemas.protocol import MOCK_WS_URL, PROD_WS_URL, Subscription

from kiwoom_tape.clikit import EVENT_LOOPS, ITEMS, friendly_errors, run_on_loop, setup_logging, verbosity_options
from kiwoom_tape.objstore import S3Url
from kiwoom_tape.portable import STOP_SIGNALS, on_stop_signals

__all__ = ["EXTENSIONS", "main", "record_command"]

log = logging.getLogger("kiwoom_tape.recorder")

EXIT_KICKED = 3
"""``record --on-kick exit``'s exit code when another session with the same app key took over (R10001)."""
EXTENSIONS: list[Callable[[Sequence[Recorder]], contextlib.AbstractAsyncContextManager[object]]] = []
"""Recording extensions: ``record`` enters ``ext(recorders)`` for each, around the recording (after the recorders
are built, before they connect), e.g. the live relay of ``record --serve`` (:mod:`kiwoom_tape.relay`)."""



@click.group(
    "record", invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--items", type=ITEMS, default=None, help="Items to record, comma-separated (max 200): 005930,000660_NX")
@click.option("--items-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Items to record, one code per line (# comments, blank lines): up to 200 per app key of --keys.")
@click.option("--keys", "keys_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A TOML list of app keys, each naming the environment variables of its key and secret "
              "([[key]] appkey_env = \"...\" secretkey_env = \"...\"): one connection per key, the items spread "
              "over them (200 at most each), all into one --out.")
@click.option("--types", "types_", default=DEFAULT_TYPES, show_default=True,
              help="Real-time types: 0B (trades), 0D (book), 0E (after-hours) get tables; every other type "
              f"({', '.join(t for t in TYPES if t not in ('0B', '0D', '0E'))}) is kept in frames (the rows view). "
              "Each type gets the items of its kind: stock codes from --items (ELW codes for 0m/0u), industry codes "
              "from --industries (0J/0U), MGD and MGU (0I), the empty item once (00/04/0s/1h: 1h is every VI). 00 "
              "(주문체결) and 04 (잔고) are your account's private data: stored only when named here.")
@click.option("--industries", type=click.STRING, default=None,
              help="Industry codes for 0J/0U, comma-separated: 001 (KOSPI), 101 (KOSDAQ).")
@click.option("--out", default="data", show_default=True,
              help="Dataset directory (Hive partitions frames/, orderbook/, afterhours/, trades/, events/), or "
              "s3://BUCKET/PREFIX: finished files are uploaded there from --spool (endpoint and credentials from "
              "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION).")
@click.option("--spool", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --out s3://...: the local directory of the journal, open files and files not yet uploaded "
              "[default: ~/.cache/kiwoom-tape/spool/BUCKET/PREFIX, or under $XDG_CACHE_HOME].")
@click.option("--url", default=None, help=f"WebSocket URL [default: {PROD_WS_URL}]; a local mock: "
              "ws://127.0.0.1:10000/api/dostk/websocket")
@click.option("--mock-trading", is_flag=True, help=f"Use Kiwoom's mock-trading server ({MOCK_WS_URL}).")
@click.option("--duration", type=Duration(), default=None,
              help="Stop after this long (30s, 5m, 2h). Default: until Ctrl-C.")
@click.option("--fsync-interval", type=click.FloatRange(0.001, 5.0), default=0.2, show_default=True,
              help="Seconds between journal fsyncs: the most a crash can lose.")
@click.option("--roll-minutes", type=click.FloatRange(0.1, 24 * 60), default=60.0, show_default=True,
              help="Close Parquet files and start new ones at least this often (also on size and at KST midnight).")
@click.option("--silence-timeout", type=click.FloatRange(0.5, 3600), default=60.0, show_default=True,
              help="Reconnect after this many seconds without any frame.")
@click.option("--on-kick", type=click.Choice(["wait", "exit"]), default="wait", show_default=True,
              help="When another session with the same app key takes over (R10001): wait --kick-wait, longer each "
              "time, before connecting again; or exit with code 3.")
@click.option("--kick-wait", type=click.FloatRange(0.1, 3600), default=60.0, show_default=True,
              help="Seconds to wait after the first kick (doubling with each kick in a row, up to 30 minutes).")
@click.option("--max-backoff", type=click.FloatRange(0.1, 3600), default=30.0, show_default=True,
              help="Longest wait between reconnect attempts; waits grow (with jitter) up to it across failed "
              "connections.")
@click.option("--healthy-after", type=click.FloatRange(0.1, 3600), default=60.0, show_default=True,
              help="Seconds a connection must stay logged in and receiving before the reconnect waits start small "
              "again.")
@click.option("--allow-insecure-url", is_flag=True,
              help="Allow a plain ws:// --url to another machine (the token then crosses the network in cleartext).")
@click.option("--event-loop", type=click.Choice(EVENT_LOOPS), default="auto", show_default=True,
              help="auto: uvloop when it is installed (pip install uvloop: less CPU per frame), else asyncio.")
@verbosity_options
@click.pass_context
@friendly_errors
def record_command(
    ctx: click.Context, items: tuple[str, ...] | None, items_file: Path | None, keys_file: Path | None, types_: str,
    industries: str | None,
    out: str, spool: Path | None, url: str | None,
    mock_trading: bool, duration: float | None, fsync_interval: float, roll_minutes: float,
    silence_timeout: float, on_kick: Literal["wait", "exit"], kick_wait: float, max_backoff: float,
    healthy_after: float, allow_insecure_url: bool, event_loop: str, verbose: int, quiet: bool,
) -> None:
    """Record Kiwoom real-time frames, trades and order-book rows into rolling, crash-safe Parquet.

    Every frame in both directions is stored verbatim (``frames``), every 0D row as a typed row
    (``orderbook``), every 0E row in ``afterhours``, every 0B row in ``trades``, connection history in
    ``events``. A crash loses
    at most --fsync-interval of data; the next start recovers the journal by itself.

    Credentials come from the environment only: KIWOOM_TOKEN, or KIWOOM_APPKEY and
    KIWOOM_SECRETKEY (tokens are then issued and renewed through au10001, over HTTPS to Kiwoom only,
    or to a loopback mock). A loopback --url (the local mock from ``replay --simulate``) needs none.
    More than 200 items need --keys: one connection per app key (each its own token, reconnects,
    gaps and run_id), the environment variables of each named in the file.

    Any drop, refusal or close (before, during or after LOGIN) is a reconnect with backoff and a gap
    in ``events``; only credentials a new token cannot fix, --duration or Ctrl-C end a run.

    \b
    Exit codes:
        0  stopped by --duration or Ctrl-C
        1  an error (credentials, LOGIN refused for good, the dataset cannot be written)
        2  bad arguments
        3  another session with the same app key took over, under --on-kick exit

    \b
    Examples:
        KIWOOM_TOKEN=... record --items 005930,000660 --out data
        record --items-file krx.txt --keys keys.toml --out data   # 200 items per key
        record --items 005930,005930_NX --url ws://127.0.0.1:10000/api/dostk/websocket --duration 30s
        record --items 005930 --types 0B,0D,0H,1h,0J --industries 001   # + VI, KOSPI index
        record recover data        # turn a crashed run's journal into Parquet now
    """
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(verbose, quiet)
    if items and items_file:
        raise click.UsageError("--items and --items-file both give the items: pass one")
    if url is not None and mock_trading:
        raise click.UsageError("--url and --mock-trading both choose the server: pass one")
    ws_url = url or (MOCK_WS_URL if mock_trading else PROD_WS_URL)
    if not re.match(r"wss?://", ws_url):
        raise click.BadParameter(f"{ws_url!r} is not a ws:// or wss:// URL", param_hint="--url")
    if ws_url.startswith("ws://") and not is_loopback(urlsplit(ws_url).hostname or "") and not allow_insecure_url:
        raise click.BadParameter(
            f"{ws_url!r} is plain ws:// to another machine: the token would cross the network in cleartext; use "
            "wss://, a loopback address (an SSH tunnel), or pass --allow-insecure-url if you mean it",
            param_hint="--url",
        )
    types = parse_types(types_)
    codes = tuple(dict.fromkeys(c.strip() for c in (industries or "").split(",") if c.strip()))
    check_item_options(types, bool(items or items_file), codes)
    try:
        if items_file is not None:
            items = read_items_file(items_file, [t for t in types if ITEM_KIND[t] == "stock"])
        plan = _plan(ws_url, types, items or (), codes, keys_file)
    except (PlanError, KeyFileError) as exc:
        raise click.UsageError(str(exc)) from None
    out_dir, target = resolve_out(out, spool)
    check_out(out_dir)
    policy = ReconnectPolicy(cap=max_backoff, healthy_after=healthy_after, kick_wait=kick_wait, on_kick=on_kick)
    _use_returning_memory_pool()
    try:
        code = run_on_loop(
            _record(ws_url, plan, types, out_dir, target, duration, fsync_interval, roll_minutes * 60, silence_timeout,
                    policy, quiet),
            event_loop,
        )
    except SessionTakenOver as exc:
        click.echo(f"Error: {exc}", err=True)
        code = EXIT_KICKED
    sys.exit(code)


Plan = list[tuple[str, tuple[Subscription, ...], TokenProvider]]
"""(connection name, its REG data entries, its token provider), one per connection."""


def _plan(
    ws_url: str, types: tuple[str, ...], items: tuple[str, ...], industries: tuple[str, ...], keys_file: Path | None
) -> Plan:
    """The connections: one with the environment's credentials, or one per app key of ``keys_file`` (the stock
    items spread over them, :func:`kiwoom_tape.recorder.plan.spread`; the other entries on the first,
    :func:`kiwoom_tape.recorder.plan.subscriptions`). Raises PlanError (usage), CredentialsError."""
    if keys_file is None:
        entries = connection_entries(types, items, industries, 1, source="one connection without --keys")
        return [("main", entries[0], token_provider_from_env(ws_url, os.environ))]
    keys = read_keys_file(keys_file)
    entries = connection_entries(types, items, industries, len(keys), source=f"--keys {keys_file} ({len(keys)} keys)")
    base = rest_base_for(ws_url)
    check_token_url(base + auth.TOKEN_PATH)  # fail at start, not at the first token
    plan: Plan = []
    seen: dict[str, str] = {}
    for key, group in zip(keys, entries, strict=False):
        appkey, secret = resolve_key(key, os.environ)
        if appkey in seen:
            raise PlanError(f"keys {seen[appkey]} and {key.name} hold the same app key: Kiwoom allows one connection "
                            "per app key, the second would kick the first", hint="list each app key once in --keys")
        seen[appkey] = key.name
        plan.append((key.name, group, TokenProvider(base, appkey=appkey, secretkey=secret)))
    return plan


def _use_returning_memory_pool() -> None:
    """Let Arrow allocate from jemalloc, which gives freed memory back: ``record`` runs for hours.

    With the pyarrow wheels' default (mimalloc) a recorder at the real peak settled about 90 MiB
    higher (about 215 MiB against 125 MiB, bench: memory). ARROW_DEFAULT_MEMORY_POOL, when set, wins;
    a pyarrow built without jemalloc keeps its default.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    import pyarrow as pa

    with contextlib.suppress(NotImplementedError):
        pa.set_memory_pool(pa.jemalloc_memory_pool())


async def _record(
    url: str, plan: Plan, types: tuple[str, ...], out: Path, target: S3Url | None, duration: float | None,
    fsync_interval: float, roll_seconds: float, silence_timeout: float, policy: ReconnectPolicy, quiet: bool,
) -> int:
    report = recover_interruptibly(out)
    if report.segments:
        log.warning("recovered %d journal segment(s) left by an earlier run: %d frames", report.segments, report.frames)
    for path in report.skipped:
        log.warning("journal %s is held by a running recorder: left alone", path)
    for path in report.unreadable:
        log.warning("%s could not be recovered and was left as it is", path)
    for line in report.damage + report.skipped_records:
        log.warning("%s", line)
    uploader = None if target is None else Uploader(out, target).start()
    stop = asyncio.Event()
    stop_signals = on_stop_signals(asyncio.get_running_loop(), stop.set)
    recs: list[tuple[str, Recorder]] = []
    # one store per connection, each its own run_id: its own journal and part file names in the one dataset
    for k, (name, entries, tokens) in enumerate(plan):
        run_id = new_run_id(time.time_ns(), _secrets.randbits(24))
        # staggered: the stores' Parquet flushes and rolls spread out instead of stalling the loop all at once
        store = Store(out, run_id, fsync_interval=fsync_interval, roll_seconds=roll_seconds, stagger=k / len(plan))
        try:
            store.open()
            recs.append((name, Recorder(url, (), (), store, tokens, policy=policy, also=entries,
                                        silence_timeout=silence_timeout)))
        except BaseException:
            store.close()
            for _, rec in recs:
                rec.store.close()
            stop_signals.restore()
            raise
        log.info("recording %s from %s into %s, run %s%s",
                 "; ".join(f"{len(e.items)} items x {','.join(e.types)}" for e in entries), url, out, run_id,
                 f" (key {name})" if len(plan) > 1 else "")
    try:
        async with contextlib.AsyncExitStack() as extensions:
            try:
                for ext in EXTENSIONS:
                    await extensions.enter_async_context(ext([rec for _, rec in recs]))
            except BaseException:
                for _, rec in recs:
                    rec.store.close()
                raise
            await drive_all([rec for _, rec in recs], stop, duration=duration, tick=min(0.1, fsync_interval / 2),
                            on_tick=StatusLine(recs, quiet), names=[name for name, _ in recs])
    finally:
        stop_signals.restore()
        if not quiet and sys.stderr.isatty():
            sys.stderr.write("\n")
        if uploader is not None:
            await asyncio.to_thread(uploader.close)
    for name, rec in recs:
        st = rec.store.stats
        click.echo(
            f"recorded {st.frames} frames, {st.rows.get('orderbook', 0)} orderbook rows, "
            f"{st.rows.get('afterhours', 0)} afterhours rows into {out} (run {rec.store.run_id}, "
            f"{rec.stats.reconnects} reconnects{f', key {name}' if len(recs) > 1 else ''})",
            err=True,
        )
    return 0


class RecoveryInterrupted(KiwoomTapeError):
    """SIGINT or SIGTERM arrived during start-up recovery: it stopped there, everything is recoverable."""


def recover_interruptibly(out: Path) -> RecoveryReport:
    """:func:`kiwoom_tape.recorder.recovery.recover`, stopped by SIGINT or SIGTERM within moments (RecoveryInterrupted).

    Recovery is crash-safe at every instant (the journal is deleted only after its files are in
    place), so an exception at any point leaves everything for the next start; the loop's own
    handlers would only run after recovery, so plain ones are installed for its duration.
    """

    def interrupt(signum: int, _frame: object) -> None:
        raise RecoveryInterrupted(
            f"stopped by {signal.Signals(signum).name} during the recovery of {out}",
            hint=f"nothing is lost: the journals stay, and the next start (or `record recover {out}`) finishes it",
        )

    if threading.current_thread() is not threading.main_thread():
        return recover(out)
    old = {sig: signal.signal(sig, interrupt) for sig in STOP_SIGNALS}
    try:
        return recover(out)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@record_command.command("recover")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@verbosity_options
@friendly_errors
def recover_command(directory: Path, verbose: int, quiet: bool) -> None:
    """Turn journals left by a crashed run into Parquet files, now.

    ``record`` does this by itself at start; this command is for a directory you want to query
    without recording again. Safe to run twice: nothing is duplicated.

    \b
    Example:
        record recover data
    """
    setup_logging(verbose, quiet)
    report = recover_interruptibly(directory)
    click.echo(
        f"recovered {report.segments} journal segment(s): {report.frames} frames, "
        f"{len(report.files)} files written, {len(report.crashes)} crash gap(s) recorded"
    )
    if report.dropped:
        for line in report.damage + report.skipped_records:
            click.echo(f"dropped: {line}", err=True)
        for path in report.unreadable:
            click.echo(f"dropped: {path} could not be read and was left as it is", err=True)
        click.echo(
            f"recovery dropped {report.torn_bytes} unreadable journal bytes ({report.frames_lost} frames known lost), "
            f"{len(report.skipped_records)} record(s) and {len(report.unreadable)} file(s); the bytes are kept in the "
            "journal's .torn file(s) named above, and `kiwoom-tape verify` lists the damage",
            err=True,
        )
        sys.exit(1)


def main() -> None:
    record_command()
