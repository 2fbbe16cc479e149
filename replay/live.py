"""A live frame source: REAL frames pushed in as a connection receives them, served to local clients as they are.

:class:`LiveSource` implements :class:`kiwoom_tape.replay.contracts.Source` for a stream that has no clock of
its own (the relay of ``record --serve``): :meth:`LiveSource.push` queues a REAL frame's exact bytes, and
:meth:`LiveSource.run` hands what is queued to the server's ``dispatch.frames`` as
:class:`kiwoom_tape.replay.recorded_frame.RecordedFrame` (byte-exact to a client that registered every row,
rebuilt from the rows' own texts otherwise, docs/protocol.md 1.7). The item hooks of the server
(``add_item``/``remove_item``) go to the optional ``on_add``/``on_remove`` callbacks, and its registration hooks
(:class:`kiwoom_tape.replay.contracts.Registrar`: ``admit``, ``registered``) to ``on_admit``/``on_registered``, so
that whoever feeds the source can register upstream what local clients ask for, pass back a refusal, or drop it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from kiwoom_tape.replay.contracts import Dispatch
from kiwoom_tape.replay.recorded_frame import one_by_one, take

if TYPE_CHECKING:
    from kiwoom_tape.replay.outbox import Client

__all__ = ["LiveSource"]

Pairs = frozenset[tuple[str, str]]

log = logging.getLogger("kiwoom_tape.replay")


class LiveSource:
    """Frames pushed in (:meth:`push`), served in the order pushed, as soon as the event loop runs :meth:`run`.

    ``push`` may be called before ``run`` starts: the frames wait. A pushed frame that is not REAL rows is
    skipped and counted (:attr:`skipped`). ``on_add(item)``: a local client registered ``item`` and no client
    had it; ``on_remove(item)``: no client has had it for the server's ``forget_after`` seconds.
    ``on_admit(client, pairs)``: ``client``'s REG adds ``pairs``, None applies it, (return_code, return_msg)
    refuses it; ``on_registered(client, pairs)``: what ``client`` has registered now (none once gone).
    """

    def __init__(
        self,
        *,
        on_add: Callable[[str], None] | None = None,
        on_remove: Callable[[str], None] | None = None,
        on_admit: Callable[[Client, Pairs], Awaitable[tuple[int, str] | None]] | None = None,
        on_registered: Callable[[Client, Pairs], None] | None = None,
        max_pending: int = 100_000,
    ) -> None:
        if max_pending < 2:
            raise ValueError(f"max_pending must be at least 2, got {max_pending}")
        self.on_add = on_add
        self.max_pending = max_pending
        """Frames waiting to be served at most: past it (the server not serving, e.g. its source task failed)
        the older half is dropped and counted in :attr:`dropped`; whoever pushes is never held up nor grows memory."""
        self.dropped = 0
        """Frames pushed and never served, dropped past :attr:`max_pending`."""
        self.on_remove = on_remove
        self.on_admit = on_admit
        self.on_registered = on_registered
        self.pushed = 0
        """Frames pushed so far."""
        self.skipped = 0
        """Frames pushed that were not REAL rows (not served)."""
        self._pending: list[bytes | None] = []
        self._ready = asyncio.Event()

    def push(self, data: bytes | str) -> None:
        """Queue one received REAL frame, exactly as received (``str`` is taken as its UTF-8 bytes)."""
        pending = self._pending
        if len(pending) >= self.max_pending:
            drop = len(pending) // 2
            del pending[:drop]
            if not self.dropped:
                log.warning("relay: %d frames waited to be served: dropping the oldest (local clients miss them; "
                            "the recording is not affected)", self.max_pending)
            self.dropped += drop
        pending.append(data.encode("utf-8") if isinstance(data, str) else data)
        self.pushed += 1
        self._ready.set()

    def add_item(self, item: str) -> None:
        if self.on_add is not None:
            self.on_add(item)

    def remove_item(self, item: str) -> None:
        if self.on_remove is not None:
            self.on_remove(item)

    async def admit(self, client: Client, pairs: Pairs) -> tuple[int, str] | None:
        return None if self.on_admit is None else await self.on_admit(client, pairs)

    def registered(self, client: Client, pairs: Pairs) -> None:
        if self.on_registered is not None:
            self.on_registered(client, pairs)

    async def run(self, dispatch: Dispatch) -> None:
        """Serve what is pushed until cancelled: every frame queued since the last round in one ``dispatch.frames``."""
        send = getattr(dispatch, "frames", None) or one_by_one(dispatch)
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._pending = self._pending, []
            frames, _, skipped = take(batch, 0, len(batch), None)
            if skipped:
                self.skipped += skipped
                log.debug("relay: %d pushed frame(s) were not REAL rows", skipped)
            if frames:
                await send(frames, wait=False)
