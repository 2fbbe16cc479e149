"""The live relay of ``record --serve``: the recorder's one Kiwoom connection, served to local clients as replay does.

Kiwoom allows one WebSocket connection per app key (docs/protocol.md 4.1), so the recorder becomes the user's
only connection and the relay shares it: every REAL frame the recorder receives is journaled first
(:class:`kiwoom_tape.recorder.connection.Connection`'s ``on_real`` tap runs after ``Store.add_received``), then
pushed into a :class:`kiwoom_tape.replay.live.LiveSource` that :func:`kiwoom_tape.replay.server.serve` serves with
the LOGIN / REG / REMOVE / PING / REAL behaviour of ``replay`` (docs/protocol.md 1) and its own ``/oauth2/token``:
local clients never see the user's token, and LOGIN takes only a token the relay issued
(:mod:`kiwoom_tape.relay_tokens`). A local client's REG for a stock item the recorder does not record is
registered upstream with the recorded stock types (:meth:`kiwoom_tape.recorder.client.Recorder.add_items`, paced by
its session, 200 items at most); once no local client has wanted it for ``forget_after`` seconds, and it is not one
of ``--items``, it is removed upstream again. The recorder and the replay server never import each other: they
meet here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import click

from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.relay_tokens import relay_desk
from kiwoom_tape.replay.live import LiveSource
from kiwoom_tape.replay.server import Server, exposed
from kiwoom_tape.schemas.errors import KiwoomTapeError, TooManyItems
from kiwoom_tape.schemas.items import ACCOUNT_TYPES, ITEM_KIND, item_problem

__all__ = ["Relay", "relay_extension", "relaying"]

log = logging.getLogger("kiwoom_tape.relay")

BY_CLIENT = "relay client"
"""``events.detail.by`` of the items registered upstream for a local client."""


class Relay:
    """Joins ``recorders`` (their frames, their registrations) to one :class:`LiveSource` (:attr:`source`).

    The items of ``recorders`` at the start (``--items``) are theirs for good; an item a local client brings is
    registered on the first recorder with room for it, and removed when the server forgets it.
    """

    def __init__(self, recorders: Sequence[Recorder]) -> None:
        self.recorders = list(recorders)
        self.own = frozenset(i for rec in self.recorders for sub in rec.subscriptions for i in sub.items if i)
        self.source = LiveSource(on_add=self.add, on_remove=self.remove)
        for rec in self.recorders:
            rec.on_real = self.source.push

    def add(self, item: str) -> None:
        """A local client registered ``item``: record it too, unless it is recorded already."""
        if any(item in sub.items for rec in self.recorders for sub in rec.subscriptions):
            return
        for rec in self.recorders:
            types = [t for t in _stock_types(rec) if item_problem(t, item) is None]
            if not types:
                continue
            try:
                rec.add_items([item], types, by=BY_CLIENT)
            except TooManyItems:
                continue
            log.info("relay: registering %s x %s upstream for a local client", item, ",".join(types))
            return
        log.warning("relay: %s cannot be registered upstream (no recorded stock type takes it, or every connection "
                    "carries 200 items): local clients get no data for it", item)

    def remove(self, item: str) -> None:
        """No local client has wanted ``item`` for a while: stop recording it, unless it is one of ``--items``."""
        if item in self.own:
            return
        for rec in self.recorders:
            if rec.remove_items([item], by=BY_CLIENT):
                log.info("relay: removing %s upstream: no local client wants it", item)


def _stock_types(rec: Recorder) -> list[str]:
    """The types ``rec`` records that take stock codes (docs/protocol.md 3), in order."""
    types = (t for sub in rec.subscriptions for t in sub.types)
    return [t for t in dict.fromkeys(types) if ITEM_KIND.get(t) == "stock"]


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
    relay = Relay(recorders)
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
        yield server
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
