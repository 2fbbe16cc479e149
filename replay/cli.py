"""The ``replay`` command: a mock Kiwoom server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal

import click

from kiwoom_tape.clikit import HMS, ITEMS, friendly_errors, setup_logging, verbosity_options
from replay.server import serve
from replay.simulator import DEFAULT_UNIVERSE, SimulatedMarket
from replay.sources import SimSource

__all__ = ["main", "replay_command"]

log = logging.getLogger("kiwoom_tape.replay")


def _fmt_hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


@click.command("replay", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--simulate", is_flag=True, help="Serve the built-in simulated KRX/NXT market.")
@click.option("--items", type=ITEMS, default=None, help="Items to simulate (default: 31 large caps).")
@click.option(
    "--sim-start", type=HMS, default="08:59:50", show_default=True,
    help="Market clock at start, KST. 0D flows 08:50-15:30 (KRX) and 08:00-20:00 (_NX); 0E at 08:30-08:40 "
    "and 15:40-18:00.",
)
@click.option("--speed", type=click.FloatRange(min=0.01, max=10_000), default=1.0, show_default=True,
              help="Market seconds per real second.")
@click.option("--seed", type=int, default=0, show_default=True, help="Simulator seed (same seed, same market).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; loopback by default.")
@click.option("--port", type=click.IntRange(0, 65535), default=10000, show_default=True, help="0 picks a free port.")
@click.option("--token", envvar="KIWOOM_REPLAY_TOKEN", default=None,
              help="Demand this token at LOGIN (default: any non-empty token). Env: KIWOOM_REPLAY_TOKEN.")
@click.option("--ping-interval", type=click.FloatRange(min=0.05), default=15.0, show_default=True,
              help="Seconds between server PINGs; 5 unanswered close the connection (R10002).")
@verbosity_options
@friendly_errors
def replay_command(
    simulate: bool, items: tuple[str, ...] | None, sim_start: float, speed: float, seed: int, host: str,
    port: int, token: str | None, ping_interval: float, verbose: int, quiet: bool,
) -> None:
    """Serve a mock Kiwoom WebSocket server on loopback.

    Trading clients connect unchanged but for the URL: LOGIN, REG/REMOVE, PING and REAL behave as on
    wss://api.kiwoom.com:10000 (see PROTOCOL.md), and POST /oauth2/token issues tokens.

    \b
    Example:
        replay --simulate --items 005930,000660,005930_NX --sim-start 08:59:50 --speed 1
        # then, in a Kiwoom sample client:
        SOCKET_URL = 'ws://127.0.0.1:10000/api/dostk/websocket'
    """
    setup_logging(verbose, quiet)
    if not simulate:
        raise click.UsageError(
            "nothing to serve: pass --simulate for the built-in market "
            "(serving a recorded directory is not implemented yet)"
        )
    market = SimulatedMarket(seed=seed, items=items or DEFAULT_UNIVERSE, start=sim_start)
    asyncio.run(_serve(SimSource(market, speed=speed), host, port, token, ping_interval, sim_start, speed, quiet))


async def _serve(
    source: SimSource, host: str, port: int, token: str | None, ping_interval: float, sim_start: float,
    speed: float, quiet: bool,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with serve(source, host=host, port=port, token=token, ping_interval=ping_interval) as server:
            if not quiet:
                today = dt.date.today().isoformat()
                click.echo(
                    f"Simulated market on {server.url}\n"
                    f"  market clock {today} {_fmt_hms(sim_start)} KST at {speed:g}x; tokens: POST "
                    f"{server.rest_url}/oauth2/token\n"
                    f"  point a Kiwoom client here: SOCKET_URL = '{server.url}'\n"
                    "  Ctrl-C stops.",
                    err=True,
                )
            await stop.wait()
            log.info("stopping: %d connections, %d frames sent", server.stats.connections, server.stats.frames_sent)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}. Pick another --port (0 = any free port)."
        ) from None


def main() -> None:
    replay_command()
