"""The mock Kiwoom server: its plain-HTTP endpoints, its life cycle, and the WebSocket sessions it builds on.

The WebSocket connection handling (one :class:`kiwoom_tape.schemas.protocol.ServerSession` per connection) is
:mod:`kiwoom_tape.replay.connections`, the routing of rows to clients :mod:`kiwoom_tape.replay.routing`; this module
adds the
source, the token endpoints and ``/control`` on the same port (:mod:`kiwoom_tape.replay.rest`,
:mod:`kiwoom_tape.replay.control`),
and the start and stop.

One port serves both what a Kiwoom client talks to:

- ``ws://HOST:PORT/api/dostk/websocket``: LOGIN, REG/REMOVE with ``grp_no``/``refresh``, PING, REAL,
  SYSTEM, exactly as :mod:`kiwoom_tape.schemas.protocol` decides (docs/protocol.md section 1);
- ``POST /oauth2/token`` (au10001) and ``POST /oauth2/revoke`` (au10002), so a client that fetches
  its own token works unchanged (docs/protocol.md 4.3-4.4).

A *source* produces REAL rows on its own clock and hands them to :meth:`Server.dispatch`; each client
receives, from the moment of its REG, only the rows it registered, batched as the source batched them.
A frame whose rows a client wants in full is sent as the source's exact text; a client that wants some
of the rows gets the source's :meth:`Frame.subset` of them (a recorded frame's own row texts), or a
frame built with :func:`kiwoom_tape.schemas.protocol.encode_real_frame`.

``/control`` on the same port drives a source that has controls (a recorded replay, see
:mod:`kiwoom_tape.replay.control`): ``GET`` reads its status, ``POST`` runs a command.

Usage::

    async with serve(SimSource(SimulatedMarket(seed=1)), port=0) as server:
        print(server.url)          # ws://127.0.0.1:PORT/api/dostk/websocket
        ...

The server binds to 127.0.0.1 by default, refuses messages over ``max_message`` bytes (close 1009),
and never crashes on a client's input: bad messages get the error reply of :class:`ServerSession`.
``faults=`` (a :class:`kiwoom_tape.replay.faults.FaultScript`) scripts drops, stalls, refusals and bad frames.
permessage-deflate is not offered: it cuts loopback throughput about 5x (PERF-LIMITS.md §4), and a
client that offers it (websockets does by default) simply runs uncompressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import http
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec
from kiwoom_tape.replay import control, rest
from kiwoom_tape.replay.connections import Connections
from kiwoom_tape.replay.contracts import (
    Dispatch,
    EncodedFrame,
    Frame,
    Registrar,
    Row,
    ServerStats,
    ServesTypes,
    Source,
)
from kiwoom_tape.replay.faults import Fault, FaultRunner, FaultScript, script_of
from kiwoom_tape.replay.outbox import BatchConnection
from kiwoom_tape.replay.routing import Dispatcher
from kiwoom_tape.replay.tracker import ItemTracker
from kiwoom_tape.schemas import auth
from kiwoom_tape.schemas.protocol import WS_PATH, ServerConfig, ServerState
from kiwoom_tape.schemas.redact import RedactTokens
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

__all__ = ["Dispatch", "EncodedFrame", "Frame", "Row", "Server", "ServerStats", "Source", "exposed", "serve"]

log = logging.getLogger("kiwoom_tape.replay")
_ws_log = logging.getLogger("kiwoom_tape.replay.ws")
_ws_log.addFilter(RedactTokens())

_BatchConnection = BatchConnection  # the name tests used before the split


def exposed(host: str) -> bool:
    """Whether binding ``host`` makes the server reachable from other machines (anything not loopback)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True  # a host name other than localhost: assume it resolves to a real interface


class Server(Connections):
    """A running mock server. Create it with :func:`serve`.

    The WebSocket sessions are :class:`kiwoom_tape.replay.connections.Connections` (its base); this class adds the
    source, the plain-HTTP endpoints on the same port (tokens, ``/control``) and the start and stop."""

    STOP_GRACE = 0.5
    """Seconds :meth:`stop` gives clients to read their close frame before it cuts their connection."""

    def __init__(
        self,
        source: Source | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        appkey: str | None = None,
        secretkey: str | None = None,
        credentials: Sequence[tuple[str, str]] = (),
        tokens: rest.TokenDesk | None = None,
        ping_interval: float = 15.0,
        login_timeout: float = 10.0,
        max_message: int = 64 * 1024,
        max_queue_frames: int = 50_000,
        max_backlog_bytes: int = 4 * 1024 * 1024,
        max_total_backlog_bytes: int = 64 * 1024 * 1024,
        backpressure_frames: int = 256,
        forget_after: float = 60.0,
        max_items: int = 200,
        keep_sent: bool = False,
        faults: FaultScript | Sequence[Fault] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """See the module docstring. ``token``: the one token LOGIN accepts; ``appkey``/``secretkey`` and
        ``credentials``: the pairs ``POST /oauth2/token`` accepts (:class:`kiwoom_tape.replay.rest.TokenDesk`);
        ``tokens``: a desk of the caller's instead (the relay's, which accepts only the tokens it issued). A client
        whose unsent frames pass ``max_backlog_bytes`` (or ``max_queue_frames``) is dropped as too slow, and so is
        the client with the largest backlog while all together pass ``max_total_backlog_bytes``. ``forget_after`` and
        ``max_items``: see :class:`kiwoom_tape.replay.tracker.ItemTracker`."""
        if tokens is None:
            tokens = rest.TokenDesk(token, appkey, secretkey, credentials)
        elif token is not None or appkey is not None or credentials:
            raise ValueError("give a TokenDesk or the token and credentials to build one, not both")
        super().__init__(
            tokens=tokens,
            config=ServerConfig(check_token=tokens.check, ping_interval=ping_interval, login_timeout=login_timeout),
            items=ItemTracker(
                source.add_item if source is not None else _ignore,
                getattr(source, "remove_item", None),
                forget_after=forget_after, max_items=max_items, initial=_initial_items(source), now=clock(),
            ),
            keep_sent=keep_sent, clock=clock,
            max_queue_frames=max_queue_frames, max_backlog_bytes=max_backlog_bytes,
            max_total_backlog_bytes=max_total_backlog_bytes, backpressure_frames=backpressure_frames,
        )
        self.source = source
        self.registrar = source if isinstance(source, Registrar) else None
        self.host = host
        self.port = port
        self.max_message = max_message
        self._ws: WsServer | None = None
        self._source_task: asyncio.Task[None] | None = None
        self._faults_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        script = script_of(faults)
        self.faults = FaultRunner(script, self) if script is not None else None

    # -- public

    @property
    def url(self) -> str:
        """The WebSocket URL to give a client in place of Kiwoom's ``SOCKET_URL``."""
        return f"ws://{self._url_host}:{self.port}{WS_PATH}"

    @property
    def rest_url(self) -> str:
        """The REST base URL (``POST {rest_url}/oauth2/token``)."""
        return f"http://{self._url_host}:{self.port}"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def expire_tokens(self) -> None:
        """Every token issued so far (and the ``--token``) stops working: the next LOGIN with one of
        them is refused with ``[CODE=8005, ...]``, as after Kiwoom's token expiry."""
        self.tokens.expire_all()

    def issue_token(self) -> str:
        """A token LOGIN accepts (what ``POST /oauth2/token`` hands out to a caller that authenticated)."""
        return self.tokens.issue()

    @property
    def required_token(self) -> str | None:
        """The one token LOGIN accepts now (``token=``, redrawn by :meth:`expire_tokens`), or None."""
        return self.tokens.required_token

    @property
    def _issued(self) -> set[str]:
        """The tokens issued and not expired nor revoked (kept for the tests that audit them)."""
        return self.tokens.issued

    @property
    def _expired(self) -> set[str]:
        return self.tokens.expired

    def market_time(self) -> float | None:
        """The source's market clock (its ``market_time()``), or None if it has none."""
        clock = getattr(self.source, "market_time", None)
        return clock() if callable(clock) else None

    async def start(self) -> None:
        """Read which types the source serves (a recorded day: its REG frames, in a thread), then listen."""
        if isinstance(self.source, ServesTypes):
            self.served = await asyncio.to_thread(self.source.types)
        conn_cls = rest.make_connection_class(self.handle_rest)
        self._ws = await ws_serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=None,
            max_size=self.max_message,
            ping_interval=None,  # Kiwoom keeps alive with application PINGs (docs/protocol.md 0)
            close_timeout=2.0,  # a closing handshake the client does not finish: cut after 2 s
            create_connection=conn_cls,
            logger=_ws_log,
        )
        sock = next(iter(self._ws.sockets))
        self.port = sock.getsockname()[1]
        if self.source is not None:
            self._source_task = asyncio.create_task(self._run_source(self.source))
        self._sweep_task = asyncio.create_task(self._sweep_items())
        if self.faults is not None:
            self._faults_task = asyncio.create_task(self.faults.run())
        if exposed(self.host):
            log.warning("listening on %s: reachable from other machines", self.host)
        log.info("serving %s (token endpoint %s%s)", self.url, self.rest_url, auth.TOKEN_PATH)

    async def stop(self) -> None:
        """Stop serving, within about 2 x :attr:`STOP_GRACE` seconds whatever the clients do: the source
        and fault tasks end, every client gets the frames already queued and a close 1001 if it reads
        them within :attr:`STOP_GRACE` seconds, and has its TCP connection cut otherwise."""
        tasks = [t for t in (self._faults_task, self._source_task, self._sweep_task) if t is not None]
        self._faults_task = self._source_task = self._sweep_task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._ws is None:
            return
        ws, self._ws = self._ws, None
        ws.close(close_connections=False)  # no new connections
        for client in list(self._clients):
            client.session.state = ServerState.CLOSED
            client.push((1001, "server shutting down"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.STOP_GRACE):
                await ws.wait_closed()  # every handler returned
        for client in list(self._clients):
            client.conn.transport.abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.STOP_GRACE):
                await ws.wait_closed()

    # -- internals

    async def _run_source(self, source: Source) -> None:
        try:
            await source.run(Dispatcher(self))
            log.info("source finished: connections stay open")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the frame source failed; connections stay open but no more data will flow")

    async def _sweep_items(self) -> None:
        """Forget the items nobody has registered for ``forget_after`` seconds (checked every second at most)."""
        tracker = self.items
        while True:
            await asyncio.sleep(min(1.0, max(0.05, tracker.forget_after / 4)))
            forgotten = tracker.sweep(self.clock())
            if forgotten:
                self.stats.items_forgotten += forgotten
                log.info("forgot %d item(s) no client has registered for %g s", forgotten, tracker.forget_after)
                _give_back_memory()

    # -- REST (au10001 / au10002, /control): see replay.rest

    def handle_rest(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one plain-HTTP request on the server's port: (HTTP status, JSON body)."""
        return rest.route(path, method, body, self.tokens, self.handle_control)

    # -- /control (see replay.control)

    def handle_control(self, method: str, query: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer ``METHOD /control?QUERY`` with ``body``: the source's status, after a command if any."""
        extra = {"url": self.url, "clients": self.clients, "frames_sent": self.stats.frames_sent,
                 "rows_sent": self.stats.rows_sent, "slow_clients_dropped": self.stats.slow_clients_dropped,
                 "connections": self.stats.connections, "logins": self.stats.logins, "kicks": self.stats.kicks,
                 "types_served": None if self.served is None else sorted(self.served),
                 "registered_without_data": self.registered_without_data(),
                 "market_time": self.market_time(), "items_served": len(self.stats.rows_by_item),
                 "logged_in": sum(c.session.state is ServerState.OPEN for c in self._clients),
                 "backlog": sum(c.backlog + c.conn.transport.get_write_buffer_size() for c in self._clients)}
        return control.handle_http(self.source, method, query, body, extra)

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        """websockets' hook: a plain ``GET /control`` (no Upgrade) is answered here; all else is WebSocket."""
        path, _, query = request.path.partition("?")
        if path != control.CONTROL_PATH or "websocket" in request.headers.get("Upgrade", "").lower():
            return None
        status, payload = self.handle_control("GET", query, b"")
        body = msgspec.json.encode(payload)
        headers = Headers(
            [("Content-Type", "application/json;charset=UTF-8"), ("Content-Length", str(len(body))),
             ("Connection", "close")]
        )
        return Response(status, http.HTTPStatus(status).phrase, headers, body)


@contextlib.asynccontextmanager
async def serve(source: Source | None = None, **kwargs: Any) -> AsyncIterator[Server]:
    """Run a mock server for the duration of the block; see :class:`Server` for the options.

    ``async with serve(SimSource(SimulatedMarket()), port=0) as server: server.url``
    """
    server = Server(source, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _give_back_memory() -> None:
    """Collect cycles and hand freed heap pages back to the OS (glibc's ``malloc_trim``; elsewhere a no-op),
    so that the RSS falls again once a flood of items is forgotten."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def _ignore(item: str) -> None:
    """The item hook of a server without a source."""


def _initial_items(source: Source | None) -> tuple[str, ...]:
    """The items a source produces before any client registers one (a simulated market's universe)."""
    items = getattr(getattr(source, "market", None), "items", ())
    return tuple(i for i in items if isinstance(i, str)) if isinstance(items, tuple) else ()
