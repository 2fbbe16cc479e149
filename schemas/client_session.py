"""The client side of a Kiwoom real-time connection, sans I/O: LOGIN, paced REG/REMOVE, PING echo, events.

docs/protocol.md 1.2-1.8 are the spec; ``recorder/`` drives :class:`ClientSession` over a socket, tests drive
it against :class:`kiwoom_tape.schemas.server_session.ServerSession` with no socket at all.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from kiwoom_tape.schemas.envelopes import (
    MAX_ITEMS_PER_CONNECTION,
    RC_OK,
    RC_REG_RATE,
    TERMINAL_SYSTEM_CODES,
    auth_code_of,
    login,
    reg_entries,
    renews_token,
)
from kiwoom_tape.schemas.errors import ProtocolError, TooManyItems
from kiwoom_tape.schemas.messages import (
    Ack,
    LoginReply,
    Ping,
    Real,
    RealRow,
    Subscription,
    SystemMsg,
    Unknown,
    decode_server_message,
)


class ClientState(Enum):
    NEW = "new"
    LOGIN_SENT = "login_sent"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """The server accepted LOGIN."""


@dataclass(frozen=True, slots=True)
class LoginRejected:
    """The server refused LOGIN; ``renew_token`` says whether a fresh token may fix it (8005/8031/8103)."""

    return_code: int
    return_msg: str
    auth_code: int | None
    renew_token: bool


@dataclass(frozen=True, slots=True)
class RegistrationDone:
    """A REG or REMOVE was answered. ``return_code`` 0 means applied; ``will_retry``: the session sends
    the batch again later (105110 after ``rate_backoff``; other refusals of a REG with a doubling delay).
    ``items`` and ``types`` are those of the whole message, in order; ``entries`` its ``data`` entries, each the
    cartesian product of its items and types (one entry per set of types, docs/protocol.md 1.3)."""

    trnm: str
    items: tuple[str, ...]
    types: tuple[str, ...]
    return_code: int
    return_msg: str
    will_retry: bool
    entries: tuple[Subscription, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class PingEchoed:
    """A server PING arrived and its echo is queued."""

    text: str


@dataclass(frozen=True, slots=True)
class RealData:
    """A REAL frame: its verbatim text and its decoded rows."""

    text: str | bytes
    rows: tuple[RealRow, ...]


@dataclass(frozen=True, slots=True)
class SystemNotice:
    """A SYSTEM frame. ``terminal`` ones (R10001/R10002/R10004) precede a server close."""

    code: str
    message: str
    terminal: bool


@dataclass(frozen=True, slots=True)
class UnexpectedMessage:
    """A frame that is not a valid envelope, or one that makes no sense now. Kept, never raised."""

    text: str | bytes
    reason: str


Event = LoggedIn | LoginRejected | RegistrationDone | PingEchoed | RealData | SystemNotice | UnexpectedMessage


@dataclass
class _Pending:
    """One REG/REMOVE message to send: its ``data`` entries."""

    trnm: str
    entries: tuple[Subscription, ...]
    not_before: float = 0.0
    refusals: int = 0

    @property
    def items(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i for e in self.entries for i in e.items))

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for e in self.entries for t in e.types))


@dataclass
class ClientSession:
    """The client side (docs/protocol.md 1.2-1.8): LOGIN, paced REG batches, PING echo, REAL events.

    Contract for the driver: call :meth:`connect` once the socket is open; feed every received text
    frame to :meth:`receive` and handle the returned events; after each call (and at
    :meth:`next_deadline`, via :meth:`tick`) send what :meth:`data_to_send` returns. The session
    holds at most one REG/REMOVE in flight (acks carry no id), spaces them ``reg_interval`` apart,
    retries a batch refused with 105110 after ``rate_backoff``, and a batch refused otherwise (1,
    105115, ...) after ``refused_backoff``, doubling, forgetting it after ``reg_retries`` refusals.
    """

    token: str = field(repr=False)
    grp_no: str = "1"
    reg_batch: int = 50
    reg_interval: float = 0.35
    rate_backoff: float = 1.0
    refused_backoff: float = 1.0
    reg_retries: int = 5
    max_items: int = MAX_ITEMS_PER_CONNECTION
    state: ClientState = ClientState.NEW
    subscribed: dict[tuple[str, str], None] = field(default_factory=dict)
    _outbox: list[str | bytes] = field(default_factory=list)
    _queue: deque[_Pending] = field(default_factory=deque)
    _in_flight: _Pending | None = None
    _last_sent: float = float("-inf")

    def connect(self, now: float) -> None:
        """Queue LOGIN. After a reconnect, call it on a fresh session (or reuse: state resets here)."""
        self.state = ClientState.LOGIN_SENT
        self._in_flight = None
        self._queue.clear()
        self._outbox.append(login(self.token))

    def subscribe(self, items: Sequence[str], types: Sequence[str], now: float = 0.0) -> None:
        """Add items x types to the wanted set; REGs go out in batches once logged in.

        Raises TooManyItems if the connection would carry more than ``max_items`` distinct items (the empty item
        of 00/04/0s/1h takes no slot, docs/protocol.md 1.3, 4.1). Call it once per set of types that take the same
        items (stock codes; ``[""]`` for 1h; industry codes for 0J): each is its own ``data`` entry.
        """
        new = {(i, t): None for i in items for t in types}
        all_items = {i for i, _ in self.subscribed if i} | {i for i in items if i}
        if len(all_items) > self.max_items:
            raise TooManyItems(len(all_items), self.max_items)
        fresh = [p for p in new if p not in self.subscribed]
        self.subscribed.update(new)
        if self.state is ClientState.OPEN and fresh:
            self._enqueue("REG", [i for i in dict.fromkeys(i for i, _ in fresh)], list(types), now)

    def unsubscribe(self, items: Sequence[str], types: Sequence[str], now: float = 0.0) -> None:
        """Drop items x types from the wanted set, and from the REGs queued and not sent yet (a refused REG
        waiting for its retry included); REMOVE them once logged in."""
        for i in items:
            for t in types:
                self.subscribed.pop((i, t), None)
        for pending in list(self._queue):
            if pending.trnm == "REG":
                pending.entries = tuple(
                    e for e in (_without(e, items, types) for e in pending.entries) if e.items and e.types)
                if not pending.entries:
                    self._queue.remove(pending)
        if self.state is ClientState.OPEN:
            self._enqueue("REMOVE", list(items), list(types), now)

    def _enqueue(self, trnm: str, items: list[str], types: list[str], now: float) -> None:
        self._enqueue_entries(trnm, [(items, tuple(types))], now)

    def _enqueue_entries(self, trnm: str, groups: Sequence[tuple[Sequence[str], tuple[str, ...]]], now: float) -> None:
        """Queue ``groups`` (items, types) as messages of at most ``reg_batch`` items, each group one ``data``
        entry (split over messages when it has more items than a message has room for)."""
        batch: list[Subscription] = []
        room = self.reg_batch
        for items, types in groups:
            k = 0
            while k < len(items):
                part = tuple(items[k : k + room])
                batch.append(Subscription(part, types))
                k += len(part)
                room -= len(part)
                if room == 0:
                    self._queue.append(_Pending(trnm, tuple(batch)))
                    batch, room = [], self.reg_batch
        if batch:
            self._queue.append(_Pending(trnm, tuple(batch)))
        self.tick(now)

    def _register_all(self, now: float) -> None:
        """REG every subscribed pair: the items grouped by their set of types, one entry per group."""
        by_types: dict[tuple[str, ...], list[str]] = {}
        items_types: dict[str, list[str]] = {}
        for i, t in self.subscribed:
            items_types.setdefault(i, []).append(t)
        for i, ts in items_types.items():
            by_types.setdefault(tuple(ts), []).append(i)
        self._enqueue_entries("REG", [(item_list, type_key) for type_key, item_list in by_types.items()], now)

    def next_deadline(self) -> float | None:
        if self.state is ClientState.OPEN and self._in_flight is None and self._queue:
            return max(self._last_sent + self.reg_interval, self._queue[0].not_before)
        return None

    def tick(self, now: float) -> None:
        if self.state is not ClientState.OPEN or self._in_flight is not None or not self._queue:
            return
        head = self._queue[0]
        if now < self._last_sent + self.reg_interval or now < head.not_before:
            return
        self._queue.popleft()
        self._in_flight = head
        self._last_sent = now
        self._outbox.append(
            reg_entries([(e.items, e.types) for e in head.entries], grp_no=self.grp_no, trnm=head.trnm)
        )

    def data_to_send(self) -> list[str | bytes]:
        out, self._outbox = self._outbox, []
        return out

    @property
    def registration_pending(self) -> bool:
        return self._in_flight is not None or bool(self._queue)

    def receive(self, text: str | bytes, now: float) -> list[Event]:
        """Feed one server frame; returns what happened. Never raises for bad input."""
        try:
            msg = decode_server_message(text)
        except ProtocolError as exc:
            return [UnexpectedMessage(text, exc.reason)]
        if isinstance(msg, Real):
            return [RealData(text, msg.rows)]
        if isinstance(msg, Ping):
            self._outbox.append(text)  # echo verbatim (docs/protocol.md 1.6)
            return [PingEchoed(msg.text)]
        if isinstance(msg, LoginReply):
            return self._on_login(msg, text, now)
        if isinstance(msg, Ack):
            return self._on_ack(msg, text, now)
        if isinstance(msg, SystemMsg):
            terminal = msg.code in TERMINAL_SYSTEM_CODES
            if terminal:
                self.state = ClientState.CLOSED
            return [SystemNotice(msg.code, msg.message, terminal)]
        return [UnexpectedMessage(text, f"unexpected trnm {msg.trnm!r}" if isinstance(msg, Unknown) else "")]

    def _on_login(self, msg: LoginReply, text: str | bytes, now: float) -> list[Event]:
        if self.state is not ClientState.LOGIN_SENT:
            return [UnexpectedMessage(text, "LOGIN reply without a LOGIN in flight")]
        if msg.return_code != RC_OK:
            self.state = ClientState.CLOSED
            code = auth_code_of(msg.return_msg)
            return [LoginRejected(msg.return_code, msg.return_msg, code, renews_token(msg.return_code, msg.return_msg))]
        self.state = ClientState.OPEN
        self._register_all(now)
        return [LoggedIn()]

    def _on_ack(self, msg: Ack, text: str | bytes, now: float) -> list[Event]:
        head = self._in_flight
        if head is None or head.trnm != msg.trnm:
            return [UnexpectedMessage(text, f"{msg.trnm} ack with no request in flight")]
        self._in_flight = None
        retry = False
        if msg.return_code == RC_REG_RATE:
            retry = True
            head.not_before = now + self.rate_backoff
            self._queue.appendleft(head)
        elif msg.return_code != RC_OK and head.trnm == "REG":
            # A refusal may be passing (a server-side hiccup, a stale registration count): try again,
            # later each time, and forget the batch only after reg_retries refusals.
            if head.refusals < self.reg_retries:
                retry = True
                head.not_before = now + self.refused_backoff * 2**head.refusals
                head.refusals += 1
                self._queue.append(head)
            else:
                for e in head.entries:
                    for i in e.items:
                        for t in e.types:
                            self.subscribed.pop((i, t), None)
        self.tick(now)
        return [
            RegistrationDone(msg.trnm, head.items, head.types, msg.return_code, msg.return_msg, retry, head.entries)
        ]

    def closed(self) -> None:
        """The socket closed: pending requests are void; :meth:`connect` starts over and re-REGs all."""
        self.state = ClientState.CLOSED
        self._in_flight = None
        self._queue.clear()


def _without(entry: Subscription, items: Sequence[str], types: Sequence[str]) -> Subscription:
    """``entry`` less the pairs ``items`` x ``types``: its items that keep a type; an entry that lost some of its
    types for some items only keeps them all (it is one cartesian product: a REMOVE follows for those pairs)."""
    if not set(entry.types) - set(types):
        return Subscription(tuple(i for i in entry.items if i not in items), entry.types)
    return entry
