"""The server side of a Kiwoom real-time connection, sans I/O: LOGIN, REG/REMOVE groups, PING, closes.

docs/protocol.md 1.2-1.9 and 4.1 are the spec; ``replay/`` drives :class:`ServerSession` over a socket, tests
drive it with no socket at all.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from kiwoom_tape.schemas.envelopes import (
    MAX_ITEMS_PER_CONNECTION,
    PING_TEXT,
    RC_ERROR,
    RC_ITEM_CAP,
    RC_REG_RATE,
    SYSTEM_KICKED,
    SYSTEM_NO_HEARTBEAT,
    SYSTEM_NO_LOGIN,
    ack,
    item_cap_msg,
    login_failed,
    login_ok,
    system,
)
from kiwoom_tape.schemas.errors import ProtocolError
from kiwoom_tape.schemas.fields import REAL_TYPE_NAMES
from kiwoom_tape.schemas.items import covers_every_item
from kiwoom_tape.schemas.messages import (
    Login,
    Ping,
    Reg,
    Remove,
    Subscription,
    Unknown,
    decode_client_message,
    guess_trnm,
)


class ServerState(Enum):
    AWAIT_LOGIN = "await_login"
    OPEN = "open"
    CLOSED = "closed"


def _accept_any_token(token: str) -> int | None:
    return None if token.strip() else 8005


@dataclass
class ServerConfig:
    """How a :class:`ServerSession` behaves. Times are seconds.

    ``check_token(token)`` returns None to accept, or the REST auth code to refuse with (8005).
    """

    check_token: Callable[[str], int | None] = _accept_any_token
    login_timeout: float = 10.0
    ping_interval: float = 15.0
    max_missed_pings: int = 5
    max_items: int = MAX_ITEMS_PER_CONNECTION
    reg_rate: int = 5
    reg_window: float = 1.0
    known_types: frozenset[str] = frozenset(REAL_TYPE_NAMES)


class ServerSession:
    """One client connection as the Kiwoom server sees it (docs/protocol.md 1.2-1.8, 4.1).

    Contract for the driver: after every :meth:`receive` or :meth:`tick`, send everything
    :meth:`data_to_send` returns, in order; then, if :attr:`close_request` is set, close the socket
    with that (code, reason). Call :meth:`tick` at :meth:`next_deadline` at the latest.
    Use :meth:`wants` to decide which REAL rows this client gets.
    """

    def __init__(self, config: ServerConfig | None = None, *, now: float) -> None:
        self.config = config or ServerConfig()
        self.state = ServerState.AWAIT_LOGIN
        self.close_request: tuple[int, str] | None = None
        self.groups: dict[str, set[tuple[str, str]]] = {}
        self._wanted: set[tuple[str, str]] = set()
        self._outbox: list[str] = []
        self._login_deadline = now + self.config.login_timeout
        self._next_ping: float | None = None
        self._missed = 0
        self._reg_times: deque[float] = deque()
        self.protocol_errors = 0

    # -- queries

    def wants(self, item: str, real_type: str) -> bool:
        """Whether this client registered (item, type) in any group, or the empty item of an account- or
        market-wide type, which covers every item (:func:`kiwoom_tape.schemas.items.covers_every_item`)."""
        return (item, real_type) in self._wanted or (
            ("", real_type) in self._wanted and covers_every_item(real_type, "")
        )

    @property
    def registered(self) -> frozenset[tuple[str, str]]:
        return frozenset(self._wanted)

    @property
    def items(self) -> frozenset[str]:
        return frozenset(i for i, _ in self._wanted)

    def next_deadline(self) -> float | None:
        if self.state is ServerState.AWAIT_LOGIN:
            return self._login_deadline
        if self.state is ServerState.OPEN:
            return self._next_ping
        return None

    def data_to_send(self) -> list[str]:
        out, self._outbox = self._outbox, []
        return out

    # -- inputs

    def tick(self, now: float) -> None:
        """Advance timers: the LOGIN timeout (R10004) and the PING schedule (R10002)."""
        if self.state is ServerState.AWAIT_LOGIN and now >= self._login_deadline:
            self._close_with_system(SYSTEM_NO_LOGIN)
        elif self.state is ServerState.OPEN and self._next_ping is not None and now >= self._next_ping:
            if self._missed >= self.config.max_missed_pings:
                self._close_with_system(SYSTEM_NO_HEARTBEAT)
                return
            self._outbox.append(PING_TEXT)
            self._missed += 1
            self._next_ping = now + self.config.ping_interval

    def kick(self) -> None:
        """A second session with the same app key took over (docs/protocol.md 1.9): R10001, close 1000 "Bye"."""
        if self.state is not ServerState.CLOSED:
            self._outbox.append(system(*SYSTEM_KICKED))
            self.state = ServerState.CLOSED
            self.close_request = (1000, "Bye")

    def receive(self, text: str | bytes, now: float) -> None:
        """Feed one client text frame. Never raises for bad input: it answers as Kiwoom does."""
        if self.state is ServerState.CLOSED:
            return
        try:
            msg = decode_client_message(text)
        except ProtocolError as exc:
            self.protocol_errors += 1
            trnm = guess_trnm(text)
            self._outbox.append(ack(trnm or "SYSTEM", RC_ERROR, f"잘못된 요청입니다: {exc.reason}"))
            return
        if self.state is ServerState.AWAIT_LOGIN:
            if isinstance(msg, Login):
                self._login(msg, now)
            elif isinstance(msg, Ping):
                pass
            else:
                self._close_with_system(SYSTEM_NO_LOGIN)
            return
        if isinstance(msg, Ping):
            self._missed = 0
        elif isinstance(msg, Login):  # a second LOGIN is checked like the first
            self._login(msg, now)
        elif isinstance(msg, Reg):
            self._reg(msg, now)
        elif isinstance(msg, Remove):
            self._remove(msg, now)
        elif isinstance(msg, Unknown):
            self._outbox.append(ack(msg.trnm[:20], RC_ERROR, "지원하지 않는 서비스입니다"))

    # -- internals

    def _login(self, msg: Login, now: float) -> None:
        refused = self.config.check_token(msg.token)
        if refused is not None:
            self._outbox.append(login_failed(refused))
            self.state = ServerState.CLOSED
            self.close_request = (1000, "")
            return
        self._outbox.append(login_ok())
        self.state = ServerState.OPEN
        self._next_ping = now + self.config.ping_interval

    def _rate_limited(self, now: float) -> bool:
        q = self._reg_times
        while q and now - q[0] >= self.config.reg_window:
            q.popleft()
        if len(q) >= self.config.reg_rate:
            return True
        q.append(now)
        return False

    def _pairs(self, data: Iterable[Subscription]) -> set[tuple[str, str]] | str:
        pairs: set[tuple[str, str]] = set()
        for sub in data:
            for t in sub.types:
                if t not in self.config.known_types:
                    return f"알 수 없는 실시간 항목입니다: {t[:10]}"
            pairs.update((i, t) for i in sub.items for t in sub.types)
        return pairs

    def _recompute(self) -> None:
        self._wanted = set().union(*self.groups.values()) if self.groups else set()

    def _reg(self, msg: Reg, now: float) -> None:
        if self._rate_limited(now):
            self._outbox.append(ack("REG", RC_REG_RATE, "해당 TRNM 허용 요청 건수 초과"))
            return
        pairs = self._pairs(msg.data)
        if isinstance(pairs, str):
            self._outbox.append(ack("REG", RC_ERROR, pairs))
            return
        group = set() if msg.refresh == "0" else set(self.groups.get(msg.grp_no, ()))
        group |= pairs
        others = {p for g, s in self.groups.items() if g != msg.grp_no for p in s}
        items = {i for i, _ in group | others if i}
        if len(items) > self.config.max_items:
            self._outbox.append(ack("REG", RC_ITEM_CAP, item_cap_msg(self.config.max_items)))
            return
        self.groups[msg.grp_no] = group
        self._recompute()
        self._outbox.append(ack("REG"))

    def _remove(self, msg: Remove, now: float) -> None:
        """Three forms, each answered ``return_code`` 0 (docs/protocol.md 1.4): with no ``data``, the whole
        group goes; an entry with ``type`` and no ``item`` removes those types for the group's items;
        ``item`` x ``type`` removes those pairs."""
        if self._rate_limited(now):
            self._outbox.append(ack("REMOVE", RC_REG_RATE, "해당 TRNM 허용 요청 건수 초과"))
            return
        group = self.groups.get(msg.grp_no, set())
        gone: set[tuple[str, str]] = set(group)
        if msg.data is not None:
            pairs = self._pairs(msg.data)
            if isinstance(pairs, str):
                self._outbox.append(ack("REMOVE", RC_ERROR, pairs))
                return
            every_item = {t for sub in msg.data if not sub.items for t in sub.types}
            gone = pairs | {p for p in group if p[1] in every_item}
        if group:
            group -= gone
            if not group:
                del self.groups[msg.grp_no]
            self._recompute()
        self._outbox.append(ack("REMOVE"))

    def _close_with_system(self, sysmsg: tuple[str, str]) -> None:
        self._outbox.append(system(*sysmsg))
        self.state = ServerState.CLOSED
        self.close_request = (1000, "")
