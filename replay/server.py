"""The mock Kiwoom server: an asyncio driver of :class:`schemas.protocol.ServerSession`.

One port serves both what a Kiwoom client talks to:

- ``ws://HOST:PORT/api/dostk/websocket``: LOGIN, REG/REMOVE with ``grp_no``/``refresh``, PING, REAL,
  SYSTEM, exactly as :mod:`schemas.protocol` decides (PROTOCOL.md section 1);
- ``POST /oauth2/token`` (au10001) and ``POST /oauth2/revoke`` (au10002), so a client that fetches
  its own token works unchanged (PROTOCOL.md 4.3-4.4).

A *source* produces REAL rows on its own clock and hands them to :meth:`Server.dispatch`; each client
receives, from the moment of its REG, only the rows it registered, batched as the source batched them.
A frame whose rows a client wants in full is sent as the source's exact text; a client that wants some
of the rows gets the source's :meth:`Frame.subset` of them (a recorded frame's own row texts), or a
frame built with :func:`schemas.protocol.encode_real_frame`.

``/control`` on the same port drives a source that has controls (a recorded replay, see
:mod:`replay.control`): ``GET`` reads its status, ``POST`` runs a command.

Usage::

    async with serve(SimSource(SimulatedMarket(seed=1)), port=0) as server:
        print(server.url)          # ws://127.0.0.1:PORT/api/dostk/websocket
        ...

The server binds to 127.0.0.1 by default, refuses messages over ``max_message`` bytes (close 1009),
and never crashes on a client's input: bad messages get the error reply of :class:`ServerSession`.
``faults=`` (a :class:`replay.faults.FaultScript`) scripts drops, stalls, refusals and bad frames.
permessage-deflate is not offered: it cuts loopback throughput about 5x (PERF-LIMITS.md §4), and a
client that offers it (websockets does by default) simply runs uncompressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import ipaddress
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from replay import control
from replay.faults import Fault, FaultRunner, FaultScript, script_of
from schemas import auth
from schemas.protocol import WS_PATH, ServerConfig, ServerSession, ServerState, encode_real_frame, is_real_text
from schemas.redact import RedactTokens

__all__ = ["Dispatch", "EncodedFrame", "Frame", "Row", "Server", "ServerStats", "Source", "exposed", "serve"]

log = logging.getLogger("kiwoom_tape.replay")
_ws_log = logging.getLogger("kiwoom_tape.replay.ws")
_ws_log.addFilter(RedactTokens())

MAX_HTTP_BODY = 64 * 1024
TOKEN_LIFETIME = 24 * 3600.0


def exposed(host: str) -> bool:
    """Whether binding ``host`` makes the server reachable from other machines (anything not loopback)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True  # a host name other than localhost: assume it resolves to a real interface


class Row(Protocol):
    """One REAL row as a source makes it: the subscribed item, the type and the encoded row JSON."""

    @property
    def item(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def text(self) -> str: ...


class Frame(Protocol):
    """A batch's frame as the source has it: its exact ``text``, and the frame of only some of its rows."""

    @property
    def text(self) -> str: ...

    def subset(self, rows: Sequence[Row]) -> str:
        """The frame of ``rows`` (some of the batch's rows, in order)."""
        ...


class EncodedFrame(Protocol):
    """A frame handed over ready to send (:meth:`Server.dispatch_frames`): its exact UTF-8 ``data``,
    the ``(item, type)`` of each row in order (``keys``), and the frame of only some of its rows."""

    @property
    def data(self) -> bytes: ...
    @property
    def keys(self) -> tuple[tuple[str, str], ...]: ...

    def subset(self, keep: Sequence[int]) -> str | bytes:
        """The frame of the rows at the indexes ``keep`` (ascending)."""
        ...


class Dispatch(Protocol):
    """:meth:`Server.dispatch`, as a source sees it; ``frames`` is :meth:`Server.dispatch_frames`."""

    def __call__(
        self, rows: Sequence[Row], frame: str | bytes | Frame | None = None, /, *, wait: bool = False
    ) -> Awaitable[None]: ...

    def frames(self, frames: Sequence[EncodedFrame], /, *, wait: bool = False) -> Awaitable[None]: ...


class Source(Protocol):
    """Where REAL rows come from. ``run`` paces itself and awaits ``dispatch(rows, frame)`` per batch.

    ``frame`` is the whole batch as one frame: its exact text (``str``, or its UTF-8 ``bytes``), a
    :class:`Frame`, or None to let the server build it. ``wait=True`` makes ``dispatch`` wait while a
    client has more than ``Server.backpressure_frames`` frames queued (the pace of the slowest reader)
    instead of closing clients that fall ``max_queue_frames`` behind. ``dispatch.frames(frames)`` hands
    over many frames at once, each already encoded and split into rows (:class:`EncodedFrame`): the
    fast path, with fewer awaits and socket writes per frame. ``add_item`` is called when any client
    registers an item, so a source can start producing it (or start its clock).
    """

    def add_item(self, item: str) -> None: ...
    async def run(self, dispatch: Dispatch) -> None: ...


@dataclass
class ServerStats:
    """Counters, for tests and the status line: what went out, to whom."""

    connections: int = 0
    logins: int = 0
    frames_sent: int = 0
    rows_sent: int = 0
    rows_by_item: dict[str, int] = field(default_factory=dict)
    slow_clients_dropped: int = 0
    protocol_errors: int = 0


Outgoing = str | bytes | tuple[int, str]
"""What a client's outbox holds: a text frame (``str``, or ``bytes`` already UTF-8), or (code, reason) to close."""


class _Client:
    __slots__ = ("conn", "frames_sent", "number", "outbox", "peer", "rows_sent", "session", "space", "wake", "wanted")

    def __init__(self, conn: ServerConnection, session: ServerSession, number: int) -> None:
        self.number = number
        self.conn = conn
        self.session = session
        self.wanted: frozenset[tuple[str, str]] = session.registered
        """``session.registered``, refreshed after every message the session receives (it changes only then)."""
        self.outbox: deque[Outgoing] = deque()
        self.wake = asyncio.Event()
        self.space = asyncio.Event()
        """Set when the outbox is short again (backpressure, see :meth:`Server.dispatch`)."""
        self.frames_sent = 0
        self.rows_sent = 0
        self.peer = "{}:{}".format(*conn.remote_address[:2]) if conn.remote_address else "?"

    def push(self, item: Outgoing) -> None:
        self.outbox.append(item)
        self.wake.set()

    def flush_session(self) -> None:
        for text in self.session.data_to_send():
            self.push(text)
        if self.session.close_request is not None:
            self.push(self.session.close_request)
            self.session.close_request = None


class Server:
    """A running mock server. Create it with :func:`serve`."""

    YIELD_EVERY = 32
    """``dispatch(wait=True)`` yields to the event loop after this many calls or queued frames."""
    WRITE_BATCH = 64
    """A writer sends at most this many queued frames in one socket write."""

    def __init__(
        self,
        source: Source | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        ping_interval: float = 15.0,
        login_timeout: float = 10.0,
        max_message: int = 64 * 1024,
        max_queue_frames: int = 50_000,
        backpressure_frames: int = 256,
        keep_sent: bool = False,
        faults: FaultScript | Sequence[Fault] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.host = host
        self.port = port
        self.required_token = token
        self.max_message = max_message
        self.max_queue_frames = max_queue_frames
        self.backpressure_frames = max(1, backpressure_frames)
        self.clock = clock
        self.stats = ServerStats()
        self.sent: list[tuple[int, float, str]] | None = [] if keep_sent else None
        """With ``keep_sent``: every REAL frame written to a client, as (connection number, clock(), text)."""
        self._issued: set[str] = set()
        self._expired: set[str] = set()
        self._clients: set[_Client] = set()
        self._config = ServerConfig(
            check_token=self._check_token, ping_interval=ping_interval, login_timeout=login_timeout
        )
        self._ws: WsServer | None = None
        self._source_task: asyncio.Task[None] | None = None
        script = script_of(faults)
        self.faults: FaultRunner | None = FaultRunner(script, self) if script is not None else None
        """With ``faults``: the runner of the fault script (:mod:`replay.faults`), its ``fired`` list."""
        self._faults_task: asyncio.Task[None] | None = None
        self._unyielded = 0

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

    @property
    def clients(self) -> int:
        return len(self._clients)

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
        """What a second session with the same app key does (PROTOCOL.md 1.9): R10001, close 1000 "Bye"."""
        for client in list(self._clients):
            client.session.kick()
            client.flush_session()

    def expire_tokens(self) -> None:
        """Every token issued so far (and the ``--token``) stops working: the next LOGIN with one of
        them is refused with ``[CODE=8005, ...]``, as after Kiwoom's token expiry."""
        self._expired |= self._issued
        self._issued.clear()
        if self.required_token is not None:
            self._expired.add(self.required_token)
            self.required_token = secrets.token_urlsafe(32)

    def issue_token(self) -> str:
        """A token LOGIN accepts (what ``POST /oauth2/token`` hands out)."""
        if self.required_token is not None:
            return self.required_token
        tok = secrets.token_urlsafe(32)
        self._issued.add(tok)
        return tok

    async def dispatch(
        self, rows: Sequence[Row], frame: str | bytes | Frame | None = None, *, wait: bool = False
    ) -> None:
        """Send each logged-in client the rows it registered, as one frame per client.

        With ``wait``, return only once every client has at most ``backpressure_frames`` frames queued
        (or has gone): the source then runs at the pace of the slowest reader and nothing piles up. It
        then yields to the event loop only every :attr:`YIELD_EVERY` calls (or queued frames).
        """
        whole: str | bytes | None = frame if isinstance(frame, str | bytes) or frame is None else frame.text
        keys = [(r.item, r.type) for r in rows]
        pushed: list[_Client] = []
        for client in list(self._clients):
            if client.session.state is not ServerState.OPEN:
                continue
            wanted = client.wanted
            chosen: Sequence[Row]
            if keys and wanted.issuperset(keys):
                if whole is None:
                    whole = encode_real_frame([r.text for r in rows])
                text, chosen = whole, rows
            else:
                chosen = [r for r, key in zip(rows, keys, strict=True) if key in wanted]
                if not chosen:
                    continue
                if frame is not None and not isinstance(frame, str | bytes):
                    text = frame.subset(chosen)
                else:
                    text = encode_real_frame([r.text for r in chosen])
            if not wait and len(client.outbox) >= self.max_queue_frames:
                self._too_slow(client)
                continue
            client.push(text)
            pushed.append(client)
            client.frames_sent += 1
            client.rows_sent += len(chosen)
            self.stats.frames_sent += 1
            self.stats.rows_sent += len(chosen)
            by_item = self.stats.rows_by_item
            for r in chosen:
                by_item[r.item] = by_item.get(r.item, 0) + 1
        if wait:
            for client in pushed:
                await self._backpressure(client)
            # Full speed: let the writers run once a few frames are queued (they then send them in one go),
            # or every few calls, rather than after every frame (PERF: one loop turn per frame costs ~3x).
            self._unyielded += 1
            if self._unyielded < self.YIELD_EVERY and all(len(c.outbox) < self.YIELD_EVERY for c in pushed):
                return
        self._unyielded = 0
        await asyncio.sleep(0)

    async def dispatch_frames(self, frames: Sequence[EncodedFrame], *, wait: bool = False) -> None:
        """:meth:`dispatch` for many frames at once, each already encoded and split into rows.

        Every logged-in client gets, in order, each frame whose rows it all registered as the frame's
        exact ``data``, and the :meth:`EncodedFrame.subset` of the rows it registered of the others.
        The frames are queued in one go; the writers then send each client's queue in few socket writes.
        ``wait`` is as for :meth:`dispatch`. Yields to the event loop once per call.
        """
        clients = [c for c in self._clients if c.session.state is ServerState.OPEN]
        if clients and frames:
            self._queue_frames(clients, frames, wait)
            if wait:
                for client in clients:
                    if len(client.outbox) > self.backpressure_frames:
                        await self._backpressure(client)
        self._unyielded = 0
        await asyncio.sleep(0)

    def _queue_frames(self, clients: list[_Client], frames: Sequence[EncodedFrame], wait: bool) -> None:
        """The routing of :meth:`dispatch_frames`: no awaits, so no client changes its registration meanwhile."""
        by_item = self.stats.rows_by_item
        limit = self.max_queue_frames
        frames_out = rows_out = 0
        open_ = ServerState.OPEN
        for f in frames:
            keys = f.keys
            n = len(keys)
            if not n:
                continue
            full = 0
            for client in clients:
                if client.session.state is not open_:  # closed meanwhile (too slow)
                    continue
                wanted = client.wanted
                keep: list[int] | None = None
                if not (keys[0] in wanted if n == 1 else wanted.issuperset(keys)):
                    if n == 1:
                        continue
                    keep = [k for k, key in enumerate(keys) if key in wanted]
                    if not keep:
                        continue
                outbox = client.outbox
                if not wait and len(outbox) >= limit:
                    self._too_slow(client)
                    continue
                if keep is None:
                    data: str | bytes = f.data
                    m = n
                    full += 1
                else:
                    data = f.subset(keep)
                    m = len(keep)
                    for k in keep:
                        item = keys[k][0]
                        by_item[item] = by_item.get(item, 0) + 1
                outbox.append(data)
                client.frames_sent += 1
                client.rows_sent += m
                frames_out += 1
                rows_out += m
            if full:
                for item, _ in keys:
                    by_item[item] = by_item.get(item, 0) + full
        self.stats.frames_sent += frames_out
        self.stats.rows_sent += rows_out
        for client in clients:
            if client.outbox:
                client.wake.set()

    def _too_slow(self, client: _Client) -> None:
        self.stats.slow_clients_dropped += 1
        log.warning("client %s reads too slowly (%d frames queued): closing it", client.peer, self.max_queue_frames)
        client.outbox.clear()
        client.push((1008, "client too slow"))
        client.session.state = ServerState.CLOSED

    async def _backpressure(self, client: _Client) -> None:
        """Wait until ``client`` has at most ``backpressure_frames`` queued, or is closing or gone."""
        while (
            len(client.outbox) > self.backpressure_frames
            and client.session.state is ServerState.OPEN
            and client in self._clients
        ):
            client.space.clear()
            with contextlib.suppress(TimeoutError):  # re-check the state now and then
                async with asyncio.timeout(1.0):
                    await client.space.wait()

    async def start(self) -> None:
        conn_cls = _make_connection_class(self)
        self._ws = await ws_serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=None,
            max_size=self.max_message,
            ping_interval=None,  # Kiwoom keeps alive with application PINGs (PROTOCOL.md 0)
            create_connection=conn_cls,
            logger=_ws_log,
        )
        sock = next(iter(self._ws.sockets))
        self.port = sock.getsockname()[1]
        if self.source is not None:
            self._source_task = asyncio.create_task(self._run_source(self.source))
        if self.faults is not None:
            self._faults_task = asyncio.create_task(self.faults.run())
        if exposed(self.host):
            log.warning("listening on %s: reachable from other machines", self.host)
        log.info("serving %s (token endpoint %s%s)", self.url, self.rest_url, auth.TOKEN_PATH)

    async def stop(self) -> None:
        if self._faults_task is not None:
            self._faults_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._faults_task
            self._faults_task = None
        if self._source_task is not None:
            self._source_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._source_task
            self._source_task = None
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
            self._ws = None

    # -- internals

    async def _run_source(self, source: Source) -> None:
        try:
            await source.run(_Dispatcher(self))
            log.info("source finished: connections stay open")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the frame source failed; connections stay open but no more data will flow")

    def _check_token(self, token: str) -> int | None:
        if token in self._expired:
            return 8005
        if self.required_token is not None:
            return None if secrets.compare_digest(token, self.required_token) else 8005
        return None if token.strip() else 8005

    async def _handle(self, conn: ServerConnection) -> None:
        path = conn.request.path.split("?", 1)[0] if conn.request else ""
        if path != WS_PATH:
            await conn.close(1008, f"unknown path; use {WS_PATH}")
            return
        session = ServerSession(self._config, now=self.clock())
        self.stats.connections += 1
        client = _Client(conn, session, self.stats.connections)
        self._clients.add(client)
        log.info("client %s connected", client.peer)
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self._writer(client))
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
            client.space.set()
            self.stats.protocol_errors += session.protocol_errors
            log.info(
                "client %s gone after %d frames, %d rows (close %s)",
                client.peer, client.frames_sent, client.rows_sent, conn.close_code,
            )

    async def _reader(self, client: _Client) -> None:
        session = client.session
        was_open = False
        with contextlib.suppress(ConnectionClosed):
            async for message in client.conn:
                if self.faults is not None and self.faults.intercept(client, message):
                    if session.state is ServerState.CLOSED:  # a refused LOGIN
                        await client.conn.wait_closed()
                        return
                    continue
                before = session.registered
                session.receive(message, self.clock())
                if not was_open and session.state is ServerState.OPEN:
                    was_open = True
                    self.stats.logins += 1
                    log.info("client %s logged in", client.peer)
                after = session.registered
                if after != before:
                    client.wanted = after
                if after != before and self.source is not None:
                    for item in {i for i, _ in after - before}:
                        if item:
                            self.source.add_item(item)
                client.flush_session()
                if session.state is ServerState.CLOSED:
                    # stay until the writer has closed the socket
                    await client.conn.wait_closed()
                    return

    async def _timer(self, client: _Client) -> None:
        session = client.session
        while session.state is not ServerState.CLOSED:
            deadline = session.next_deadline()
            delay = 1.0 if deadline is None else max(0.0, deadline - self.clock())
            await asyncio.sleep(min(delay, 1.0))
            if self.faults is not None:
                await self.faults.hold_pings(client)  # a stall or no_pings window
            session.tick(self.clock())
            client.flush_session()

    async def _writer(self, client: _Client) -> None:
        """Send what is queued for ``client``, in order: as many frames as are queued (up to
        :attr:`WRITE_BATCH`) in one socket write; one at a time through the fault hooks when faults are on."""
        conn = client.conn
        outbox = client.outbox
        wake, space = client.wake, client.space
        low = self.backpressure_frames // 2
        batching = isinstance(conn, _BatchConnection)
        cap = self.WRITE_BATCH
        while True:
            while not outbox:
                wake.clear()
                await wake.wait()
            if self.faults is not None or not batching:
                item = outbox.popleft()
                if len(outbox) <= low:
                    space.set()
                if isinstance(item, tuple):
                    await conn.close(item[0], item[1])
                    return
                text = item.decode() if isinstance(item, bytes) else item
                if self.faults is not None:
                    await self.faults.send(client, text)  # stall, slow, burst, duplicate, reorder
                    continue
                await conn.send(text)
                if self.sent is not None and is_real_text(text):
                    self.sent.append((client.number, self.clock(), text))
                continue
            batch: list[str | bytes] = []
            close: tuple[int, str] | None = None
            while outbox:
                out = outbox.popleft()
                if isinstance(out, tuple):
                    close = out
                    break
                batch.append(out)
                if len(batch) >= cap:
                    break
            if len(outbox) <= low:
                space.set()
            if batch:
                assert isinstance(conn, _BatchConnection)
                await conn.send_texts(batch)
                if self.sent is not None:
                    now = self.clock()
                    self.sent.extend(
                        (client.number, now, m.decode() if isinstance(m, bytes) else m)
                        for m in batch
                        if is_real_text(m)
                    )
            if close is not None:
                await conn.close(close[0], close[1])
                return

    # -- REST (au10001 / au10002), see _RestConnection

    def handle_rest(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        path, _, query = path.partition("?")
        if path == control.CONTROL_PATH:
            return self.handle_control(method, query, body)
        if path not in (auth.TOKEN_PATH, auth.REVOKE_PATH):
            return 404, auth.token_error_response(404, f"no such endpoint {path[:60]}; try POST {auth.TOKEN_PATH}")
        if method != "POST":
            return 405, auth.token_error_response(405, f"use POST {path}")
        try:
            obj = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deeply
            return 400, auth.token_error_response(1501, "요청 본문이 JSON 이 아닙니다 (body is not JSON)")
        if path == auth.TOKEN_PATH:
            problem = auth.validate_token_request(obj)
            if problem is not None:
                return 200, auth.token_error_response(1501, problem)
            return 200, auth.token_response(self.issue_token(), time.time() + TOKEN_LIFETIME)
        if isinstance(obj, dict) and isinstance(obj.get("token"), str):
            self._issued.discard(obj["token"])
        return 200, {"return_code": 0, "return_msg": auth.OK_MSG}

    # -- /control (see replay.control)

    def handle_control(self, method: str, query: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer ``METHOD /control?QUERY`` with ``body``: the source's status, after a command if any."""
        extra = {"url": self.url, "clients": self.clients, "frames_sent": self.stats.frames_sent,
                 "rows_sent": self.stats.rows_sent, "slow_clients_dropped": self.stats.slow_clients_dropped}
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


class _Dispatcher:
    """What a source's ``run`` gets: :meth:`Server.dispatch`, callable, and :meth:`Server.dispatch_frames`."""

    __slots__ = ("_server",)

    def __init__(self, server: Server) -> None:
        self._server = server

    def __call__(
        self, rows: Sequence[Row], frame: str | bytes | Frame | None = None, /, *, wait: bool = False
    ) -> Awaitable[None]:
        return self._server.dispatch(rows, frame, wait=wait)

    def frames(self, frames: Sequence[EncodedFrame], /, *, wait: bool = False) -> Awaitable[None]:
        return self._server.dispatch_frames(frames, wait=wait)


class _BatchConnection(ServerConnection):
    """A websockets server connection that can send many text messages in one socket write."""

    async def send_texts(self, messages: Sequence[str | bytes]) -> None:
        """Send each of ``messages`` as one text message (``bytes`` are UTF-8 already), all in one socket
        write; then wait while the write buffer is over its limit, as :meth:`send` does.

        It runs in websockets' own send context (the connection must be open; a failed write closes it).
        The frames are what websockets' protocol makes of ``send_text`` on a server connection without
        extensions (RFC 6455 5.2: FIN, opcode 1, the length, no mask), built here because the library's
        per-frame path costs twice the rest of a replayed frame. With an extension, or a fragmented
        message in progress (this server sends neither), the library's protocol frames them.
        """
        async with self.send_context():
            protocol = self.protocol
            if protocol.extensions or protocol.expect_continuation_frame:
                for m in messages:
                    protocol.send_text(m if isinstance(m, bytes) else m.encode())
                return
            parts: list[bytes] = []
            for m in messages:
                data = m if isinstance(m, bytes) else m.encode()
                n = len(data)
                if n < 126:
                    parts.append(bytes((0x81, n)))
                elif n < 65536:
                    parts.append(b"\x81\x7e" + n.to_bytes(2, "big"))
                else:
                    parts.append(b"\x81\x7f" + n.to_bytes(8, "big"))
                parts.append(data)
            self.send_data()  # whatever the protocol has queued goes first (there is nothing, normally)
            self.transport.write(b"".join(parts))

    def send_data(self) -> None:
        """websockets' ``send_data``, with the queued frames joined into one ``transport.write``."""
        pending: list[bytes] = []
        for data in self.protocol.data_to_send():
            if data:
                pending.append(data)
                continue
            if pending:
                self.transport.write(b"".join(pending))
                pending = []
            # the end of the stream, as websockets does it: half-close when possible, else close
            if self.transport.can_write_eof():
                with contextlib.suppress(Exception):
                    self.transport.write_eof()
            else:
                self.transport.close()
        if pending:
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))


def _make_connection_class(server: Server) -> type[ServerConnection]:
    """A websockets connection that answers plain HTTP POSTs (token endpoints, /control) on the same port.

    websockets' HTTP parser only takes bodiless GETs, so the first bytes decide: ``GET`` goes to
    websockets untouched; anything else is read as one small HTTP/1.1 request and answered here.
    """

    class _RestConnection(_BatchConnection):
        _mode: str | None = None
        _buf: bytes = b""

        def data_received(self, data: bytes) -> None:
            if self._mode == "ws":
                super().data_received(data)
                return
            self._buf += data
            if self._mode is None:
                if len(self._buf) < 4:
                    return
                self._mode = "ws" if self._buf.startswith(b"GET ") else "http"
                if self._mode == "ws":
                    buf, self._buf = self._buf, b""
                    super().data_received(buf)
                    return
            self._http()

        def _http(self) -> None:
            head_end = self._buf.find(b"\r\n\r\n")
            if head_end < 0:
                if len(self._buf) > 16 * 1024:
                    self._reply(431, {"return_code": 431, "return_msg": "request header too large"})
                return
            head = self._buf[:head_end].decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self._reply(400, {"return_code": 400, "return_msg": "bad request line"})
                return
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        length = -1
            if length < 0 or length > MAX_HTTP_BODY:
                self._reply(413, {"return_code": 413, "return_msg": "body too large or bad Content-Length"})
                return
            body = self._buf[head_end + 4 : head_end + 4 + length]
            if len(body) < length:
                return
            status, payload = server.handle_rest(parts[0], parts[1], body)
            self._reply(status, payload)

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            body = msgspec.json.encode(payload)
            reason = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ else "Error"
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json;charset=UTF-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            self._mode = "done"
            self.transport.write(head.encode("latin-1") + body)
            self.transport.close()

    return _RestConnection


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
