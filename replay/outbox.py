"""One connected client of the mock server: its session, its queue of unsent frames and the writer that drains it.

The queue counts what it holds (:attr:`Client.backlog`, in characters of ``str`` frames and bytes of
``bytes`` ones), so that the server can drop a client that does not read before it sinks the server
(:meth:`kiwoom_tape.replay.server.Server.dispatch`). Every change to the queue goes through :class:`Client`'s methods.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from kiwoom_tape.schemas.protocol import ServerSession, is_real_text
from websockets.asyncio.server import ServerConnection

if TYPE_CHECKING:
    from kiwoom_tape.replay.faults import FaultRunner

__all__ = ["BatchConnection", "Client", "Outgoing", "write_loop"]

Outgoing = str | bytes | tuple[int, str]
"""What a client's outbox holds: a text frame (``str``, or ``bytes`` already UTF-8), or (code, reason) to close."""


def _size(item: Outgoing) -> int:
    return 0 if isinstance(item, tuple) else len(item)


class Client:
    """A connection as the server tracks it: ``number`` (1, 2, ... per server), ``peer``, ``session``,
    ``wanted`` (the (item, type) pairs it gets data for) and the outbox with its ``backlog`` size."""

    __slots__ = (
        "backlog", "conn", "every_item", "frames_sent", "held", "number", "outbox", "peer", "rows_sent", "session",
        "space", "wake", "wanted",
    )

    def __init__(self, conn: ServerConnection, session: ServerSession, number: int) -> None:
        self.number = number
        self.conn = conn
        self.session = session
        self.wanted: frozenset[tuple[str, str]] = frozenset()
        """The registered pairs that can be items of their type, refreshed after every message received."""
        self.every_item: frozenset[str] = frozenset()
        """The types of :attr:`wanted` registered with the empty item, which gets every item's rows
        (:func:`kiwoom_tape.schemas.items.covers_every_item`: 1h, 00, 04, 0s)."""
        self.outbox: deque[Outgoing] = deque()
        """Read it freely; change it only through :meth:`push`, :meth:`append`, :meth:`popleft`, :meth:`take`,
        :meth:`requeue` and :meth:`clear`, which keep :attr:`backlog` right."""
        self.held: set[str] = set()
        """The items of :attr:`wanted` that the server's item tracker counts for this client."""
        self.backlog = 0
        """The size of the unsent frames in :attr:`outbox`."""
        self.wake = asyncio.Event()
        self.space = asyncio.Event()
        """Set when the outbox is short again (backpressure, see :meth:`Server.dispatch`)."""
        self.frames_sent = 0
        self.rows_sent = 0
        self.peer = "{}:{}".format(*conn.remote_address[:2]) if conn.remote_address else "?"

    def __repr__(self) -> str:
        return f"client #{self.number} {self.peer}"

    def push(self, item: Outgoing) -> None:
        """Queue ``item`` and wake the writer."""
        self.append(item)
        self.wake.set()

    def append(self, item: Outgoing) -> None:
        """Queue ``item``; the caller sets :attr:`wake` once it has queued all it had."""
        self.outbox.append(item)
        self.backlog += _size(item)

    def popleft(self) -> Outgoing:
        item = self.outbox.popleft()
        self.backlog -= _size(item)
        return item

    def take(self, cap: int) -> tuple[list[str | bytes], tuple[int, str] | None]:
        """Pop up to ``cap`` frames from the front of the queue, and the close request if one comes first
        after them (the frames are sent before it)."""
        outbox = self.outbox
        batch: list[str | bytes] = []
        close: tuple[int, str] | None = None
        while outbox and len(batch) < cap:
            out = outbox.popleft()
            if isinstance(out, tuple):
                close = out
                break
            batch.append(out)
        self.backlog -= sum(map(len, batch))
        return batch, close

    def requeue(self, items: Sequence[str]) -> None:
        """Put ``items`` back at the front of the queue, in this order (faults: burst, reorder), and wake the writer."""
        self.outbox.extendleft(reversed(items))
        self.backlog += sum(len(i) for i in items)
        self.wake.set()

    def clear(self) -> None:
        """Drop every unsent frame."""
        self.outbox.clear()
        self.backlog = 0

    def flush_session(self) -> None:
        """Queue what the session has to send, then its close request if any."""
        for text in self.session.data_to_send():
            self.push(text)
        if self.session.close_request is not None:
            self.push(self.session.close_request)
            self.session.close_request = None


async def write_loop(
    client: Client,
    *,
    low: int,
    cap: int,
    faults: FaultRunner | None,
    sent: list[tuple[int, float, str]] | None,
    clock: Callable[[], float],
) -> None:
    """Send what is queued for ``client``, in order, until a close: as many frames as are queued (up to
    ``cap``) in one socket write; one at a time through the fault hooks when ``faults`` are on. Sets
    ``client.space`` when at most ``low`` frames are left; logs every REAL frame written in ``sent``."""
    conn = client.conn
    outbox = client.outbox
    wake, space = client.wake, client.space
    batching = isinstance(conn, BatchConnection)
    while True:
        while not outbox:
            wake.clear()
            await wake.wait()
        if faults is not None or not batching:
            item = client.popleft()
            if len(outbox) <= low:
                space.set()
            if isinstance(item, tuple):
                await conn.close(item[0], item[1])
                return
            text = item.decode() if isinstance(item, bytes) else item
            if faults is not None:
                await faults.send(client, text)  # stall, slow, burst, duplicate, reorder
                continue
            await conn.send(text)
            if sent is not None and is_real_text(text):
                sent.append((client.number, clock(), text))
            continue
        batch, close = client.take(cap)
        if len(outbox) <= low:
            space.set()
        if batch:
            assert isinstance(conn, BatchConnection)
            await conn.send_texts(batch)
            if sent is not None:
                now = clock()
                sent.extend(
                    (client.number, now, m.decode() if isinstance(m, bytes) else m) for m in batch if is_real_text(m)
                )
        if close is not None:
            await conn.close(close[0], close[1])
            return


def _text_header(n: int) -> bytes:
    """The header of an unmasked, final text frame of ``n`` payload bytes (RFC 6455 5.2)."""
    if n < 126:
        return bytes((0x81, n))
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


_HEADERS: dict[int, bytes] = {}
"""Payload length -> :func:`_text_header`: frames of a day have few distinct lengths, and building a header costs
as much as the rest of a frame's way through :meth:`BatchConnection.send_texts` (bench: 1.9 -> 0.9 us per frame)."""
_MAX_HEADERS = 4096


class BatchConnection(ServerConnection):
    """A websockets server connection that can send many text messages in one socket write."""

    async def send_texts(self, messages: Iterable[str | bytes]) -> None:
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
            headers = _HEADERS
            for m in messages:
                data = m if isinstance(m, bytes) else m.encode()
                n = len(data)
                head = headers.get(n)
                if head is None:
                    head = _text_header(n)
                    if len(headers) >= _MAX_HEADERS:
                        headers.clear()
                    headers[n] = head
                parts.append(head)
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
