"""Talking to the live relay (``record --serve``) as a local client does. Shared test helper.

:func:`post_token` asks a relay's (or the mock's) ``POST /oauth2/token`` over a raw socket and returns the answer's
bytes as received; :func:`relay_token` the token of a successful answer. :class:`Tap` is a TCP proxy that keeps every
byte the server sent through it (HTTP headers, WebSocket handshake and frames, close frames), for the scans that
prove no secret reaches a local client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

SEED_TOKEN_LINE = "ACCESS_TOKEN = '사용자 AccessToken'"
"""The seed client's token line, with the placeholder the user replaces by their token (a relay token here)."""


async def post_token(url: str, body: dict[str, Any], path: str = "/oauth2/token") -> bytes:
    """POST ``body`` (JSON) to ``path`` at the host and port of ``url`` (ws:// or http://); every byte answered."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    data = json.dumps(body).encode()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nContent-Type: application/json;"
                 f"charset=UTF-8\r\napi-id: au10001\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def answer(raw: bytes) -> dict[str, Any]:
    """The JSON body of an HTTP answer of :func:`post_token`."""
    body: dict[str, Any] = json.loads(raw.partition(b"\r\n\r\n")[2])
    return body


async def relay_token(url: str, appkey: str, secretkey: str) -> str:
    """A token from the relay at ``url``, issued for ``appkey`` and ``secretkey`` (au10001)."""
    body = answer(await post_token(url, {"grant_type": "client_credentials", "appkey": appkey,
                                         "secretkey": secretkey}))
    assert body["return_code"] == 0, body
    token: str = body["token"]
    return token


class Tap:
    """A TCP proxy on 127.0.0.1, port 0, in front of the server at ``url``; :attr:`received` holds every byte the
    server sent to any client through it. Use as ``async with Tap(url) as tap: tap.url``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._url = url
        self.received = bytearray()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """``url`` with the tap's port."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return urlsplit(self._url)._replace(netloc=f"127.0.0.1:{port}").geturl()

    async def __aenter__(self) -> Tap:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
            await asyncio.gather(self._pump(reader, up_writer, keep=False), self._pump(up_reader, writer, keep=True))
        finally:
            self._tasks.discard(task)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, keep: bool) -> None:
        try:
            while data := await src.read(65536):
                if keep:
                    self.received += data
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()
