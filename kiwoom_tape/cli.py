"""``kiwoom-tape``: the command group that holds every command (record, replay, and what follows)."""

from __future__ import annotations

import importlib.metadata

import click

from kiwoom_tape.book import book_command
from kiwoom_tape.compact import compact_command
from kiwoom_tape.ddl import main as ddl_command
from kiwoom_tape.demo_cli import demo_command
from kiwoom_tape.migrate import migrate_command
from kiwoom_tape.relay_cli import record_command
from kiwoom_tape.replay.cli import replay_command
from kiwoom_tape.sql import sql_command
from kiwoom_tape.verify import verify_command

__all__ = ["cli", "main"]


def _version() -> str:
    try:
        return importlib.metadata.version("kiwoom-tape")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="kiwoom-tape")
def cli() -> None:
    """Record, query and replay Kiwoom real-time market data (0B trades, 0D order book, 0E after-hours).

    \b
    Examples:
        kiwoom-tape demo                  # start here: simulated market -> record -> query -> replay
        kiwoom-tape replay --simulate --port 10000
        kiwoom-tape sql data "select item, avg(spread_ticks) from quotes group by all"
        kiwoom-tape book data 005930 --at 10:00:00
    """


cli.add_command(record_command)
cli.add_command(replay_command)
cli.add_command(sql_command)
cli.add_command(verify_command)
cli.add_command(book_command)
cli.add_command(demo_command)
cli.add_command(compact_command)
cli.add_command(migrate_command)
cli.add_command(ddl_command)


def main() -> None:
    cli()
