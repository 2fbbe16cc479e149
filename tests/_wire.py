"""Reading a mock server's frames as a plain Kiwoom client does (PINGs echoed). Shared test helper."""

from __future__ import annotations

import asyncio

from kiwoom_tape.schemas.protocol import PING_TEXT
from websockets.asyncio.client import ClientConnection


async def drain(ws: ClientConnection, quiet: float = 0.3) -> list[str]:
    """Every frame but PINGs (echoed, as Kiwoom clients do) until ``quiet`` seconds pass without one."""
    got: list[str] = []
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), quiet)
        except TimeoutError:
            return got
        assert isinstance(raw, str)
        if raw == PING_TEXT:
            await ws.send(raw)
        else:
            got.append(raw)
