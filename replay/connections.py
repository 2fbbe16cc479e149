"""The mock server's WebSocket side: one Kiwoom session per connection (LOGIN, REG/REMOVE, PING, kicks).

:class:`Connections` is the part of :class:`kiwoom_tape.replay.server.Server` that talks to each client on
``/api/dostk/websocket``: it drives a :class:`kiwoom_tape.schemas.protocol.ServerSession` per connection
(docs/protocol.md
section 1) with a reader, a PING timer and a writer (:func:`kiwoom_tape.replay.outbox.write_loop`), keeps each client's
``wanted`` pairs for the routing of rows (:class:`kiwoom_tape.replay.routing.Router`, its base), counts the items it
holds in the item tracker, and allows one connection per app key (docs/protocol.md 1.9). A REG of a type the
source serves no data of (:attr:`Connections.served`) is acknowledged as Kiwoom acknowledges any REG
(docs/protocol.md 1.4), and logged once per (connection, type) with its items. The HTTP endpoints
on the same port and the server's life cycle are :mod:`kiwoom_tape.replay.server`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from kiwoom_tape.replay.outbox import Client, write_loop
from kiwoom_tape.replay.routing import Router
from kiwoom_tape.replay.tracker import ItemTracker
from kiwoom_tape.schemas.errors import ProtocolError
from kiwoom_tape.schemas.items import covers_every_item, item_problem
from kiwoom_tape.schemas.protocol import (
    WS_PATH,
    Login,
    Reg,
    ServerConfig,
    ServerSession,
    ServerState,
    ack,
    decode_client_message,
)
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from kiwoom_tape.replay.contracts import Registrar
    from kiwoom_tape.replay.faults import FaultRunner
    from kiwoom_tape.replay.rest import TokenDesk

__all__ = ["Connections"]

log = logging.getLogger("kiwoom_tape.replay")


class Connections(Router):
    """The clients' WebSocket sessions (see the module docstring); :class:`kiwoom_tape.replay.server.Server`
    builds on it."""

    WRITE_BATCH = 64
    """A writer sends at most this many queued frames in one socket write."""

    def __init__(
        self,
        *,
        tokens: TokenDesk,
        config: ServerConfig,
        items: ItemTracker,
        keep_sent: bool,
        clock: Callable[[], float] = time.monotonic,
        max_queue_frames: int,
        max_backlog_bytes: int,
        max_total_backlog_bytes: int,
        backpressure_frames: int,
    ) -> None:
        super().__init__(
            max_queue_frames=max_queue_frames, max_backlog_bytes=max_backlog_bytes,
            max_total_backlog_bytes=max_total_backlog_bytes, backpressure_frames=backpressure_frames,
        )
        self.tokens = tokens
        self.clock = clock
        self.items = items
        """Which items the source produces (:class:`kiwoom_tape.replay.tracker.ItemTracker`)."""
        self.sent: list[tuple[int, float, str]] | None = [] if keep_sent else None
        """With ``keep_sent``: every REAL frame written to a client, as (connection number, clock(), text)."""
        self.faults: FaultRunner | None = None
        """With a fault script: its runner (:mod:`kiwoom_tape.replay.faults`), its ``fired`` list."""
        self._config = config
        self._by_app_key: dict[str, Client] = {}
        """App key digest -> the connection logged in with a token issued to it (one per key)."""
        self.registrar: Registrar | None = None
        """The source, when it takes part in registrations (:class:`kiwoom_tape.replay.contracts.Registrar`)."""
        self.served: frozenset[str] | None = None
        """The REAL types the source serves (its ``types`` hook, :class:`kiwoom_tape.replay.contracts.ServesTypes`);
        None: unknown, every type is taken as served."""
        self._warned: dict[int, set[str]] = {}
        """Connection number -> the unserved types it has been warned about (one warning per type)."""

    @property
    def clients(self) -> int:
        return len(self._clients)

    def connections(self) -> list[Client]:
        """The connections open now (closing ones included)."""
        return list(self._clients)

    async def drop_all(self, code: int | None = 1011, reason: str = "") -> int:
        """Close every client connection (a fault for tests): with a close frame, or abort the TCP
        connection with none when ``code`` is None. Returns how many were dropped.

        The close frame goes after the frames already queued (and counted in :attr:`stats`): a client
        gets every frame counted before the drop, whichever task runs first. Nothing is queued after it.
        """
        clients = list(self._clients)
        for client in clients:
            client.session.state = ServerState.CLOSED
            if code is None:
                client.conn.transport.abort()
            else:
                client.push((code, reason))
        return len(clients)

    def kick_all(self) -> None:
        """What a second session with the same app key does (docs/protocol.md 1.9): R10001, close 1000 "Bye"."""
        for client in list(self._clients):
            _kick(client)

    def _claim_app_key(self, client: Client, login: str | bytes) -> None:
        """``client`` just logged in with the LOGIN frame ``login``: if its token was issued to an app key
        (:meth:`kiwoom_tape.replay.rest.TokenDesk.app_key_of`), the connection that held that key is kicked, as Kiwoom
        allows one connection per app key (docs/protocol.md 1.9, 4.1). Other tokens are not limited."""
        try:
            msg = decode_client_message(login)
        except ProtocolError:
            return
        key = self.tokens.app_key_of(msg.token) if isinstance(msg, Login) else None
        if key is None:
            return
        old = self._by_app_key.get(key)
        self._by_app_key[key] = client
        if old is not None and old is not client and old in self._clients:
            self.stats.kicks += 1
            log.info("client %s logged in with the app key of client %s: kicking it (R10001)", client.peer, old.peer)
            _kick(old)

    async def _handle(self, conn: ServerConnection) -> None:
        path = conn.request.path.split("?", 1)[0] if conn.request else ""
        if path != WS_PATH:
            await conn.close(1008, f"unknown path; use {WS_PATH}")
            return
        session = ServerSession(self._config, now=self.clock())
        self.stats.connections += 1
        client = Client(conn, session, self.stats.connections)
        if self.faults is not None:
            closing = self.faults.at_handshake(client)  # close_after_handshake
            if closing is not None:
                if closing[0] == 0:
                    conn.transport.abort()
                else:
                    await conn.close(*closing)
                return
        self._clients.add(client)
        log.info("client %s connected", client.peer)
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(
                    write_loop(client, low=self.backpressure_frames // 2, cap=self.WRITE_BATCH, faults=self.faults,
                               sent=self.sent, clock=self.clock)
                )
                timer = tg.create_task(self._timer(client))
                try:
                    await self._reader(client)
                finally:
                    timer.cancel()
                    if not writer.done():
                        # let queued replies (e.g. a SYSTEM before close) go out, briefly
                        client.push((1000, ""))
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(asyncio.shield(writer), 2.0)
                        writer.cancel()
        except* ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)
            for key in [k for k, c in self._by_app_key.items() if c is client]:
                del self._by_app_key[key]
            self._track(client, frozenset())
            self._warned.pop(client.number, None)
            client.clear()
            client.space.set()
            self.stats.protocol_errors += session.protocol_errors
            log.info(
                "client %s gone after %d frames, %d rows (close %s)",
                client.peer, client.frames_sent, client.rows_sent, conn.close_code,
            )

    async def _reader(self, client: Client) -> None:
        session = client.session
        was_open = False
        with contextlib.suppress(ConnectionClosed):
            async for message in client.conn:
                if self.faults is not None and self.faults.intercept(client, message):
                    if session.state is ServerState.CLOSED:  # a refused LOGIN
                        await client.conn.wait_closed()
                        return
                    continue
                if self.registrar is not None and session.state is ServerState.OPEN:
                    refusal = await self._admit(client, message)
                    if refusal is not None:  # the source refused the REG: answered as Kiwoom does, nothing applied
                        client.push(ack("REG", *refusal))
                        continue
                before = session.registered
                session.receive(message, self.clock())
                if not was_open and session.state is ServerState.OPEN:
                    was_open = True
                    self.stats.logins += 1
                    log.info("client %s logged in", client.peer)
                    self._claim_app_key(client, message)
                after = session.registered
                if after != before:
                    self._track(client, after, after - before)
                client.flush_session()
                if session.state is ServerState.CLOSED:
                    # stay until the writer has closed the socket
                    await client.conn.wait_closed()
                    return

    def _track(
        self, client: Client, registered: frozenset[tuple[str, str]], new: Iterable[tuple[str, str]] = ()
    ) -> None:
        """``client`` now has ``registered`` (``new`` of them just now): it gets data for the pairs that
        can be items of their type (:func:`kiwoom_tape.schemas.items.item_problem`; the ``new`` others get one log
        line and no data), and the item tracker counts its items."""
        new = tuple(new)
        problems = [problem for i, t in new if (problem := item_problem(t, i)) is not None]
        if problems:
            self.stats.items_refused += len(problems)
            log.warning("%r registered %d pair(s) that get no data, e.g. %s", client, len(problems), problems[0])
        client.wanted = frozenset(p for p in registered if item_problem(p[1], p[0]) is None)
        client.every_item = frozenset(t for i, t in client.wanted if covers_every_item(t, i))
        if self.registrar is not None:
            self.registrar.registered(client, client.wanted)
        if self.served is not None and new:
            self._warn_unserved(client, [p for p in new if p in client.wanted], self.served)
        items = {i for i, _ in client.wanted if i}
        now = self.clock()
        for item in client.held - items:
            self.items.unwant(item, now)
        for item in items - client.held:
            if not self.items.want(item, now):
                items.discard(item)
        client.held = items

    async def _admit(self, client: Client, message: str | bytes) -> tuple[int, str] | None:
        """What :attr:`registrar` says of ``message`` if it is a REG that adds pairs ``client`` can get rows of."""
        assert self.registrar is not None
        try:
            msg = decode_client_message(message)
        except ProtocolError:
            return None
        if not isinstance(msg, Reg):
            return None
        have = client.session.registered
        known = self._config.known_types
        pairs = frozenset(
            (i, t) for sub in msg.data for t in sub.types if t in known for i in sub.items
            if (i, t) not in have and item_problem(t, i) is None
        )
        return await self.registrar.admit(client, pairs) if pairs else None

    def _warn_unserved(self, client: Client, new: list[tuple[str, str]], served: frozenset[str]) -> None:
        """One warning per (connection, type) for the ``new`` pairs whose type ``served`` lacks, naming the items."""
        missing: dict[str, list[str]] = {}
        for item, real_type in new:
            if real_type not in served:
                missing.setdefault(real_type, []).append(item)
        warned = self._warned.setdefault(client.number, set())
        for real_type, items in sorted(missing.items()):
            if real_type in warned:
                continue
            warned.add(real_type)
            log.warning(
                "%r registered type %s for %s, but this source has no %s data (it serves %s): the REG is "
                "acknowledged as Kiwoom does, and no %s row will come (see GET /control)",
                client, real_type, _some(items), real_type, ", ".join(sorted(served)) or "no type", real_type,
            )

    def registered_without_data(self) -> list[dict[str, str | list[str]]]:
        """The (type, items) the open connections registered of types the source does not serve, by type."""
        served = self.served
        if served is None:
            return []
        by_type: dict[str, set[str]] = {}
        for client in self._clients:
            for item, real_type in client.wanted:
                if real_type not in served:
                    by_type.setdefault(real_type, set()).add(item)
        return [{"type": t, "items": sorted(items)} for t, items in sorted(by_type.items())]

    async def _timer(self, client: Client) -> None:
        session = client.session
        while session.state is not ServerState.CLOSED:
            deadline = session.next_deadline()
            delay = 1.0 if deadline is None else max(0.0, deadline - self.clock())
            await asyncio.sleep(min(delay, 1.0))
            if self.faults is not None:
                await self.faults.hold_pings(client)  # a stall or no_pings window
            session.tick(self.clock())
            client.flush_session()


def _some(items: list[str], shown: int = 10) -> str:
    """``items`` for a log line: the first ``shown``, quoted, and how many more."""
    head = ", ".join(repr(i) for i in sorted(items)[:shown])
    return head + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _kick(client: Client) -> None:
    client.session.kick()
    client.flush_session()
