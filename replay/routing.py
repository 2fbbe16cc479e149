"""Routing REAL rows to the mock server's clients: who gets which frame, and what a client may queue.

:class:`Router` is the part of :class:`kiwoom_tape.replay.server.Server` that a source's ``dispatch`` reaches: each
logged-in client gets the rows it registered (its ``wanted`` pairs), as the source's own frame when it
wants all of them. A client whose unsent frames pass ``max_backlog_bytes`` (or ``max_queue_frames``) is
dropped as a slow consumer; so is the largest backlog while all together pass ``max_total_backlog_bytes``.
With ``wait`` (``--speed max``) the source instead waits for the slowest reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

from kiwoom_tape.replay.contracts import EncodedFrame, Frame, Row, ServerStats
from kiwoom_tape.replay.outbox import Client
from kiwoom_tape.schemas.protocol import ServerState, encode_real_frame

if TYPE_CHECKING:
    from kiwoom_tape.replay.server import Server

__all__ = ["Dispatcher", "Router"]

log = logging.getLogger("kiwoom_tape.replay")


class Router:
    """The clients, the counters and the routing of rows to them (see the module docstring)."""

    SLOW_CLOSE_GRACE = 2.0
    """Seconds a client dropped as too slow has to read its close frame before its connection is cut."""
    YIELD_EVERY = 32
    """``dispatch(wait=True)`` yields to the event loop after this many calls or queued frames."""

    def __init__(
        self, *, max_queue_frames: int, max_backlog_bytes: int, max_total_backlog_bytes: int, backpressure_frames: int
    ) -> None:
        if max_backlog_bytes < 1:
            raise ValueError(f"max_backlog_bytes must be >= 1, got {max_backlog_bytes!r}")
        self.max_queue_frames = max_queue_frames
        self.max_backlog_bytes = max_backlog_bytes
        self.max_total_backlog_bytes = max(max_backlog_bytes, max_total_backlog_bytes)
        self.backpressure_frames = max(1, backpressure_frames)
        self.stats = ServerStats()
        self._clients: set[Client] = set()
        self._unyielded = 0

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
        pushed: list[Client] = []
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
            if not wait and (len(client.outbox) >= self.max_queue_frames or client.backlog >= self.max_backlog_bytes):
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
        if not wait and pushed:
            self._bound_total()
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
            if not wait:
                self._bound_total()
            if wait:
                for client in clients:
                    if len(client.outbox) > self.backpressure_frames:
                        await self._backpressure(client)
        self._unyielded = 0
        await asyncio.sleep(0)

    def _queue_frames(self, clients: list[Client], frames: Sequence[EncodedFrame], wait: bool) -> None:
        """The routing of :meth:`dispatch_frames`: no awaits, so no client changes its registration meanwhile."""
        by_item = self.stats.rows_by_item
        limit = self.max_queue_frames
        max_bytes = self.max_backlog_bytes
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
                if not wait and (len(client.outbox) >= limit or client.backlog >= max_bytes):
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
                client.append(data)
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

    def _bound_total(self) -> None:
        """While the clients' backlogs add up to more than ``max_total_backlog_bytes``, drop the largest."""
        total = sum(c.backlog for c in self._clients)
        while total > self.max_total_backlog_bytes:
            worst = max(self._clients, key=lambda c: c.backlog)
            total -= worst.backlog
            self._too_slow(worst)

    def _too_slow(self, client: Client) -> None:
        """Drop a client that does not read, as a server drops a slow consumer: its unsent frames go,
        a close 1008 "client too slow" is queued, and the TCP connection is cut if the client has not
        read the close within :attr:`SLOW_CLOSE_GRACE` seconds."""
        self.stats.slow_clients_dropped += 1
        log.warning(
            "%r reads too slowly: %d bytes in %d frames unsent (bounds: %d bytes, %d frames): closing it (1008)",
            client, client.backlog, len(client.outbox), self.max_backlog_bytes, self.max_queue_frames,
        )
        client.clear()
        client.push((1008, "client too slow"))
        client.session.state = ServerState.CLOSED
        asyncio.get_running_loop().call_later(self.SLOW_CLOSE_GRACE, client.conn.transport.abort)

    async def _backpressure(self, client: Client) -> None:
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


class Dispatcher:
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

