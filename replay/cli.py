"""The ``replay`` command: a mock Kiwoom server on loopback, serving a recorded day or a simulated market."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from kiwoom_tape.replay.faults import FaultScript
from kiwoom_tape.replay.faults import summary as fault_summary
from kiwoom_tape.replay.recorded import RecordedSource
from kiwoom_tape.replay.s3copy import local_dataset
from kiwoom_tape.replay.server import Server, Source, serve
from kiwoom_tape.replay.simulator import DEFAULT_UNIVERSE, SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas.keyfile import KeyFileError, parse_keys, resolve_key

from kiwoom_tape.clikit import HMS, ITEMS, friendly_errors, setup_logging, verbosity_options
from kiwoom_tape.portable import on_stop_signals

__all__ = ["main", "replay_command"]

log = logging.getLogger("kiwoom_tape.replay")


def _fmt_hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _Speed(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic only in click >= 8.2
    """A speed factor in (0, 10000], or ``max`` (converted to None)."""

    name = "1|N|max"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float | None:
        if value is None or isinstance(value, float):
            return value
        if str(value).strip().lower() == "max":
            return None
        try:
            speed = float(value)
        except ValueError:
            speed = float("nan")
        if not 0.01 <= speed <= 10_000:
            self.fail(f"{value!r} is not a speed; give a factor from 0.01 to 10000 (1 = real time) or max", param, ctx)
        return speed


SPEED = _Speed()
_RECORDED_ONLY = ("date", "from_", "to", "loop", "start_delay")
_SIMULATED_ONLY = ("sim_start", "seed")


def _given(ctx: click.Context, names: tuple[str, ...]) -> list[str]:
    """The options among ``names`` that the user typed (not defaults), as ``--option`` names."""
    out = []
    for name in names:
        if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            opt = next(p for p in ctx.command.params if p.name == name)
            out.append(opt.opts[0])
    return out


@click.command("replay", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("dataset", required=False, metavar="[DIR]")
@click.option("--simulate", is_flag=True, help="Serve the built-in simulated KRX/NXT market instead of a DIR.")
@click.option("--date", default=None, metavar="YYYY-MM-DD",
              help="The KST date to replay from DIR (default: the last recorded day).")
@click.option("--from", "from_", type=HMS, default=None, help="Start the replay at this KST time of day.")
@click.option("--to", type=HMS, default=None, help="End the replay at this KST time of day (exclusive).")
@click.option("--items", type=ITEMS, default=None,
              help="Only these items: of DIR, replay just their rows; simulated, the universe (default: 31 large "
              "caps).")
@click.option("--speed", type=SPEED, default="1", show_default=True, metavar="1|N|max",
              help="Recorded (or market) seconds per real second; max = as fast as the slowest client reads "
              "(DIR only).")
@click.option("--loop", is_flag=True, help="At the end of the recording, start over at --from.")
@click.option("--start-delay", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds between the first client's REG and the start of the replay clock (so that all of a "
              "strategy's connections join one timeline).")
@click.option(
    "--sim-start", type=HMS, default="08:59:50", show_default=True,
    help="Simulated market clock at start, KST. 0D flows 08:50-15:30 (KRX) and 08:00-20:00 (_NX); 0E at "
    "08:30-08:40 and 15:40-18:00.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Simulator seed (same seed, same market).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; loopback by default.")
@click.option("--port", type=click.IntRange(0, 65535), default=10000, show_default=True, help="0 picks a free port.")
@click.option("--token", envvar="KIWOOM_REPLAY_TOKEN", default=None,
              help="Demand this token at LOGIN (default: any non-empty token). Env: KIWOOM_REPLAY_TOKEN.")
@click.option("--appkey", envvar="KIWOOM_REPLAY_APPKEY", default=None, show_envvar=True,
              help="Check credentials: POST /oauth2/token issues a token (the --token one included) only for this "
              "app key and the secret in the environment variable KIWOOM_REPLAY_SECRETKEY; a wrong pair gets "
              "return_code 8001. Without both, any well-formed request gets a token. (Not KIWOOM_APPKEY: that is "
              "where your real key lives.) Either way, one connection per app key: a LOGIN with a token issued to "
              "the key of a connected client kicks that client (R10001).")
@click.option("--keys", "keys_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Check credentials for several app keys: the keys file of record --keys (a TOML list naming the "
              "environment variables of each key and secret); POST /oauth2/token accepts any of those pairs.")
@click.option("--max-backlog", type=click.FloatRange(min=0.01), default=4.0, show_default=True, metavar="MIB",
              help="Close (1008) a client whose unsent frames pass this many MiB: a client that does not read "
              "cannot grow the server.")
@click.option("--forget-after", type=click.FloatRange(min=0), default=60.0, show_default=True, metavar="SECONDS",
              help="Stop producing an item once no connected client has had it registered this long.")
@click.option("--max-items", type=click.IntRange(min=1), default=200, show_default=True,
              help="Track at most this many items; beyond, a new item evicts the longest-unregistered one, or gets "
              "no data if all are registered. A recording over several app keys (record --keys) needs more: "
              "450 items cost the server about 40 MiB, the whole market (3000) about 250 MiB.")
@click.option("--ping-interval", type=click.FloatRange(min=0.05), default=15.0, show_default=True,
              help="Seconds between server PINGs; 5 unanswered close the connection (R10002).")
@click.option("--faults", "faults_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A TOML fault script: drops, kicks, stalls, refused LOGIN/REG, bad frames... (docs/faults.md).")
@verbosity_options
@friendly_errors
def replay_command(
    dataset: str | None, simulate: bool, date: str | None, from_: float | None, to: float | None,
    items: tuple[str, ...] | None, speed: float | None, loop: bool, start_delay: float, sim_start: float,
    seed: int, host: str, port: int, token: str | None, appkey: str | None, keys_file: Path | None,
    max_backlog: float, forget_after: float,
    max_items: int, ping_interval: float, faults_file: Path | None, verbose: int, quiet: bool,
) -> None:
    """Serve a recorded day (DIR) or a simulated market as a mock Kiwoom WebSocket server on loopback.

    Trading clients connect unchanged but for the URL: LOGIN, REG/REMOVE, PING and REAL behave as on
    wss://api.kiwoom.com:10000 (see docs/protocol.md), and POST /oauth2/token issues tokens. A recorded day
    is served byte for byte at its recorded pace (/ --speed), one clock for all clients, starting
    --start-delay after the first REG; GET/POST /control on the same port pauses, steps, seeks and
    changes the speed.

    \b
    Example:
        replay data --date 2026-11-20 --from 09:00 --to 09:30 --speed 10
        replay s3://bucket/prefix --speed max     # a temporary copy of the day's frames
        replay --simulate --items 005930,000660,005930_NX --sim-start 08:59:50
        # then, in a Kiwoom sample client:
        SOCKET_URL = 'ws://127.0.0.1:10000/api/dostk/websocket'
        # and, to drive a recorded replay:
        curl -s -X POST http://127.0.0.1:10000/control -d '{"cmd": "pause"}'
        # kick the client 5 s after its LOGIN, as a second session would (see docs/faults.md):
        printf '[[fault]]\\nkind = "kick"\\nat = "5s"\\n' > faults.toml
        replay --simulate --faults faults.toml
    """
    setup_logging(verbose, quiet)
    ctx = click.get_current_context()
    if dataset is not None and simulate:
        raise click.UsageError("give either a recorded DIR or --simulate, not both")
    if dataset is None and not simulate:
        raise click.UsageError(
            "nothing to serve: give a recorded dataset DIR (e.g. `replay data`), or --simulate for the "
            "built-in market"
        )
    faults = FaultScript.load(faults_file) if faults_file is not None else None
    secretkey = os.environ.get("KIWOOM_REPLAY_SECRETKEY", "").strip() or None
    appkey = (appkey or "").strip() or None
    if (appkey is None) != (secretkey is None):
        raise click.UsageError(
            "give both an app key (--appkey or KIWOOM_REPLAY_APPKEY) and KIWOOM_REPLAY_SECRETKEY (environment only) "
            "to check "
            "credentials at POST /oauth2/token, or neither to issue tokens to any well-formed request"
        )
    credentials = _credentials(keys_file)
    options: dict[str, Any] = {
        "host": host, "port": port, "token": token, "appkey": appkey, "secretkey": secretkey,
        "credentials": credentials,
        "ping_interval": ping_interval, "faults": faults, "max_backlog_bytes": round(max_backlog * 2**20),
        "forget_after": forget_after, "max_items": max_items,
    }
    source: Source
    if simulate:
        wrong = _given(ctx, _RECORDED_ONLY)
        if wrong:
            raise click.UsageError(f"{', '.join(wrong)}: only for a recorded DIR, not for --simulate")
        if speed is None:
            raise click.UsageError("--speed max only applies to a recorded DIR; give --simulate a factor, e.g. 10")
        market = SimulatedMarket(seed=seed, items=items or DEFAULT_UNIVERSE, start=sim_start)
        source = SimSource(market, speed=speed)

        def banner(server: Server) -> str:
            return (
                f"Simulated market on {server.url}\n"
                f"  market clock {dt.date.today().isoformat()} {_fmt_hms(sim_start)} KST at {speed:g}x; tokens: "
                f"POST {server.rest_url}/oauth2/token\n"
            )
    else:
        assert dataset is not None
        wrong = _given(ctx, _SIMULATED_ONLY)
        if wrong:
            raise click.UsageError(f"{', '.join(wrong)}: only for --simulate, not for a recorded DIR")
        def banner(server: Server) -> str:
            st = recorded.status()
            rec = st["recording"]
            pace = "max speed" if speed is None else f"{speed:g}x"
            return (
                f"Replaying {dataset} on {server.url}\n"
                f"  {st['date']} KST, recorded {rec['first']}-{rec['last']} ({rec['files']} files), "
                f"window {st['from']}-{st['to']}, at {pace}{', looping' if loop else ''}\n"
                f"  the clock starts {start_delay:g} s after the first REG; control: curl -s {server.rest_url}/control"
                f" ; curl -s -X POST {server.rest_url}/control -d '{{\"cmd\": \"pause\"}}'\n"
            )
        with local_dataset(dataset, tables=("frames",), last_day=date is None) as (path, _shown):
            recorded = RecordedSource(
                path, date=date, start=from_, end=to, speed=speed, items=items, loop=loop, start_delay=start_delay
            )
            asyncio.run(_serve(recorded, banner, quiet, options))
        return
    asyncio.run(_serve(source, banner, quiet, options))


def _credentials(keys_file: Path | None) -> list[tuple[str, str]]:
    """The (app key, secret) pairs of ``replay --keys`` (:mod:`kiwoom_tape.schemas.keyfile`), from the environment."""
    if keys_file is None:
        return []
    try:
        keys = parse_keys(keys_file.read_text(encoding="utf-8"), source=f"--keys {keys_file}")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {keys_file}: {exc}", param_hint="--keys") from None
    except KeyFileError as exc:
        raise click.UsageError(str(exc)) from None
    return [resolve_key(key, os.environ) for key in keys]


async def _serve(source: Source, banner: Callable[[Server], str], quiet: bool, options: dict[str, Any]) -> None:
    """Serve until SIGINT or SIGTERM, then stop within about a second (:meth:`Server.stop`), exit code 0."""
    faults: FaultScript | None = options["faults"]
    stop = asyncio.Event()
    stop_signals = on_stop_signals(asyncio.get_running_loop(), stop.set)
    try:
        async with serve(source, **options) as server:
            if not quiet:
                scripted = "".join(f"  fault {line}\n" for line in fault_summary(faults)) if faults else ""
                click.echo(
                    banner(server) + scripted
                    + f"  point a Kiwoom client here: SOCKET_URL = '{server.url}'\n  Ctrl-C stops.",
                    err=True,
                )
            await stop.wait()
            log.info("stopping: %d connections, %d frames sent", server.stats.connections, server.stats.frames_sent)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {options['host']}:{options['port']}: {exc.strerror or exc}. "
            "Pick another --port (0 = any free port)."
        ) from None
    finally:
        stop_signals.restore()


def main() -> None:
    replay_command()
