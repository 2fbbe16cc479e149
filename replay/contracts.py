"""The interfaces between the mock server and what plugs into it: frame sources, and the fault runner.

:mod:`kiwoom_tape.replay.server` implements :class:`Dispatch` and :class:`FaultHost`; :mod:`kiwoom_tape.replay.sources`
and
:mod:`kiwoom_tape.replay.recorded` implement :class:`Source`; :mod:`kiwoom_tape.replay.faults` acts only through
:class:`FaultHost`.
The names are re-exported by :mod:`kiwoom_tape.replay.server`, where users import them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kiwoom_tape.replay.outbox import Client

__all__ = [
    "Dispatch", "EncodedFrame", "FaultHost", "Frame", "Registrar", "Row", "ServerStats", "ServesTypes", "Source",
]


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
    instead of closing clients that fall behind. ``dispatch.frames(frames)`` hands over many frames at
    once, each already encoded and split into rows (:class:`EncodedFrame`): the fast path, with fewer
    awaits and socket writes per frame. ``add_item`` is called when a client registers an item that
    can be one (:mod:`kiwoom_tape.schemas.items`), so a source can start producing it (or start its clock).

    Optional hooks, used when a source has them:

    - ``remove_item(item)``: no connected client has had ``item`` registered for the server's
      ``forget_after`` seconds (or the server tracks too many items): stop producing it and forget
      its state. ``add_item`` may bring it back later.
    - ``market_time() -> float | None``: the source's market clock, seconds since KST midnight (for
      the ``market_time`` fault trigger); None while it has not started.
    - ``types() -> frozenset[str] | None``: the REAL types (docs/protocol.md section 3) it can produce rows
      of: the simulated market's modelled types, a recorded day's types. A REG of any other type is
      acknowledged as Kiwoom does, then the server logs one warning per (connection, type) and lists it in
      the ``/control`` status (:class:`ServesTypes`). Without the hook, or None: unknown, no warning.
    """

    def add_item(self, item: str) -> None: ...
    async def run(self, dispatch: Dispatch) -> None: ...


@runtime_checkable
class ServesTypes(Protocol):
    """A :class:`Source` that says which REAL types it serves (its ``types`` hook)."""

    def types(self) -> frozenset[str] | None:
        """The REAL types it can produce rows of; None: it cannot tell."""
        ...


@runtime_checkable
class Registrar(Protocol):
    """A :class:`Source` that takes part in its clients' registrations (the relay of ``record --serve``: it
    registers upstream what its clients ask for). The server calls :meth:`admit` before a client's REG is applied
    and :meth:`registered` whenever a client's registrations change (and with none when it leaves)."""

    async def admit(self, client: Client, pairs: frozenset[tuple[str, str]]) -> tuple[int, str] | None:
        """``client`` sent a REG that adds ``pairs`` (item, type) to what it has: None to apply it (and answer
        return_code 0), or the (return_code, return_msg) to answer instead, registering nothing."""
        ...

    def registered(self, client: Client, pairs: frozenset[tuple[str, str]]) -> None:
        """``client`` now has ``pairs`` registered (the pairs it gets rows of; empty once it is gone)."""
        ...


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
    items_forgotten: int = 0
    items_refused: int = 0
    """(item, type) pairs registered that cannot be an item of that type (no data for them)."""
    kicks: int = 0
    """Connections kicked (R10001) because another logged in with a token of the same app key."""


class FaultHost(Protocol):
    """What :class:`kiwoom_tape.replay.faults.FaultRunner` may touch on a server: its clock, counters, connections,
    the frames log, and the server-wide actions a fault takes."""

    stats: ServerStats
    sent: list[tuple[int, float, str]] | None

    @property
    def clock(self) -> Callable[[], float]: ...

    def connections(self) -> list[Client]:
        """The connections open now (closing ones included), in no particular order."""
        ...

    def market_time(self) -> float | None:
        """The source's market clock (seconds since KST midnight), or None if it has none (yet)."""
        ...

    async def drop_all(self, code: int | None = 1011, reason: str = "") -> int: ...
    def kick_all(self) -> None: ...
    def expire_tokens(self) -> None: ...
