"""The live relay of ``record --serve``: the recorder's one Kiwoom connection, served to local clients as replay does.

Kiwoom allows one WebSocket connection per app key (docs/protocol.md 4.1), so the recorder becomes the user's
only connection and the relay shares it: every REAL frame the recorder receives is journaled first
(:class:`kiwoom_tape.recorder.connection.Connection`'s ``on_real`` tap runs after ``Store.add_received``), then
pushed into a :class:`kiwoom_tape.replay.live.LiveSource` that :func:`kiwoom_tape.replay.server.serve` serves with
the LOGIN / REG / REMOVE / PING / REAL behaviour of ``replay`` (docs/protocol.md 1) and its own ``/oauth2/token``:
local clients never see the user's token, and LOGIN takes only a token the relay issued
(:mod:`kiwoom_tape.relay_tokens`). A local client's REG for pairs (item, type) the recorder does not
record is registered upstream first, its reply is upstream's, and the pairs are removed upstream once no local
client has wanted them for ``forget_after`` seconds (:mod:`kiwoom_tape.relay_regs`). Frames of the account types
(00, 04) not in ``--types`` reach the clients that registered them and are not stored
(:class:`kiwoom_tape.recorder.connection.Connection`'s ``unstored``). The recorder and the replay server never
import each other: they meet here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import click

from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.relay_regs import Registrations
from kiwoom_tape.relay_tokens import relay_desk
from kiwoom_tape.replay.live import LiveSource
from kiwoom_tape.replay.server import Server, exposed
from kiwoom_tape.schemas.errors import KiwoomTapeError
from kiwoom_tape.schemas.items import ACCOUNT_TYPES

__all__ = ["Relay", "relay_extension", "relaying"]

log = logging.getLogger("kiwoom_tape.relay")


class Relay:
    """Joins ``recorders`` (their frames, their registrations) to one :class:`LiveSource` (:attr:`source`).

    The pairs of ``recorders`` at the start (``--items`` x ``--types``) are theirs for good; what local clients
    register is merged in by :attr:`registrations` (:class:`kiwoom_tape.relay_regs.Registrations`).
    """

    def __init__(self, recorders: Sequence[Recorder], *, forget_after: float = 60.0, ack_wait: float = 5.0) -> None:
        self.recorders = list(recorders)
        self.registrations = Registrations(self.recorders, forget_after=forget_after, ack_wait=ack_wait)
        regs = self.registrations
        self.source = LiveSource(on_admit=regs.admit, on_registered=regs.registered)
        for rec in self.recorders:
            rec.on_real = self.source.push

    async def sweeping(self) -> None:
        """Remove upstream what no local client has wanted for ``forget_after`` seconds, until cancelled."""
        regs = self.registrations
        while True:
            await asyncio.sleep(min(1.0, max(0.05, regs.forget_after / 4)))
            regs.sweep()


@contextlib.asynccontextmanager
async def relaying(
    recorders: Sequence[Recorder], host: str = "127.0.0.1", port: int = 0, serve_secret: str | None = None,
    **server_options: Any,
) -> AsyncIterator[Server]:
    """Serve the live stream of ``recorders`` on ``host:port`` for the duration of the block (see the module
    docstring); ``server_options`` go to :class:`kiwoom_tape.replay.server.Server`. Prints the URL to stderr.
    Local clients get their tokens with the recorders' app key and secret, or ``serve_secret``
    (:func:`kiwoom_tape.relay_tokens.relay_desk`).

    Raises KiwoomTapeError when ``host`` is reachable from other machines while ``recorders`` record account
    types (00, 04: the user's orders and balance, docs/protocol.md 3), when no secret can check who gets a
    token, or when it cannot listen."""
    private = sorted({t for rec in recorders for sub in rec.subscriptions for t in sub.types} & ACCOUNT_TYPES)
    if private and exposed(host):
        raise KiwoomTapeError(
            f"record --serve {host}:{port} would serve your account data ({','.join(private)}) to other machines",
            hint="serve on loopback (--serve PORT) and reach it through an SSH tunnel, or leave 00/04 out of --types",
        )
    tokens = relay_desk(recorders, serve_secret)
    relay = Relay(recorders, forget_after=server_options.get("forget_after", 60.0))
    server = Server(relay.source, host=host, port=port, tokens=tokens, **server_options)
    try:
        await server.start()
    except OSError as exc:
        raise KiwoomTapeError(f"record --serve cannot listen on {host}:{port}: {exc.strerror or exc}",
                              hint="pick another port with --serve (0: any free port)") from None
    try:
        with_ = "record's app key and secret" + (" or --serve-secret-env's secret" if serve_secret else "")
        click.echo(f"relay: local clients connect to {server.url} (token: POST {server.rest_url}/oauth2/token "
                   f"with {with_})", err=True)
        sweeping = asyncio.create_task(relay.sweeping())
        try:
            yield server
        finally:
            sweeping.cancel()
    finally:
        await server.stop()


def relay_extension(
    host: str, port: int, serve_secret: str | None = None
) -> Callable[[Sequence[Recorder]], contextlib.AbstractAsyncContextManager[object]]:
    """The recording extension (:data:`kiwoom_tape.recorder.cli.EXTENSIONS`) of ``record --serve HOST:PORT``
    (``serve_secret``: the value of ``--serve-secret-env``'s variable)."""

    def extension(recorders: Sequence[Recorder]) -> contextlib.AbstractAsyncContextManager[object]:
        return relaying(recorders, host, port, serve_secret)

    return extension
