"""The recorder across connections: connect, run one :class:`kiwoom_tape.recorder.connection.Connection`, decide, again.

Every way a connection can end (refused, a handshake error, a close or an abort before, during or
after LOGIN, a stall of ``silence_timeout`` seconds, a terminal SYSTEM frame, a token endpoint out
of reach) is written to ``events`` as a ``disconnect`` with its cause and opens a gap (one gap per
hole in the data: it closes at the next LOGIN). What comes next is
:class:`kiwoom_tape.recorder.backoff.ReconnectPolicy`'s
decision: reconnect after a backoff that grows across failed connections; after a kick (R10001) wait
long, or end with :class:`kiwoom_tape.schemas.errors.SessionTakenOver`; after a LOGIN refused with an auth code of
docs/protocol.md 1.2 get one new token; after any other refusal stop with
:class:`kiwoom_tape.schemas.errors.LoginError`.
Only those, a StorageError, or ``stop`` end :meth:`Recorder.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kiwoom_tape.recorder.auth import TokenProvider
from kiwoom_tape.recorder.backoff import KICKED, Disconnect, Ended, ReconnectPolicy, classify_close
from kiwoom_tape.recorder.connection import Connection
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.schemas.errors import KiwoomTapeError, LoginError, SessionTakenOver, TokenEndpointUnreachable
from kiwoom_tape.schemas.items import ACCOUNT_TYPES
from kiwoom_tape.schemas.protocol import ClientSession, RegistrationDone, Subscription
from kiwoom_tape.schemas.redact import RedactTokens
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidURI, WebSocketException

__all__ = ["Recorder", "RecorderStats"]

log = logging.getLogger("kiwoom_tape.recorder")
_ws_log = logging.getLogger("kiwoom_tape.recorder.ws")
_ws_log.addFilter(RedactTokens())  # websockets logs frames at DEBUG, the LOGIN with its token


@dataclass
class RecorderStats:
    """What the status line shows. ``real_rows`` and ``parse_errors`` are the store's (``store``), as read."""

    store: Store | None = field(default=None, repr=False)
    frames_in: int = 0
    pings: int = 0
    connects: int = 0
    reconnects: int = 0
    last_frame_mono: float | None = None
    connected: bool = False
    last_cause: str = ""
    reg_failures: dict[str, int] = field(default_factory=dict)

    @property
    def real_rows(self) -> int:
        """Rows of REAL frames stored so far (read: :meth:`Store.add_received` reads frames in batches)."""
        if self.store is None:
            return 0
        st = self.store.stats
        return sum(n for table, n in st.rows.items() if table != "events") + st.other_rows

    @property
    def parse_errors(self) -> int:
        """Frames stored with a parse error so far."""
        return 0 if self.store is None else self.store.stats.parse_errors


class Recorder:
    """Records ``items`` x ``types``, and the pairs of each entry of ``also`` (types that take other items: ``[""]``
    for 1h, industry codes for 0J, :func:`kiwoom_tape.recorder.plan.subscriptions`), from ``url`` into ``store`` until
    ``stop``
    is set. Each set of types is one ``data`` entry of the REG (docs/protocol.md 1.3); reconnects register the same.

    ``policy`` is the reconnect policy (default :class:`ReconnectPolicy`: backoff 0.5 s to 30 s, reset
    after 60 s logged in and receiving, 60 s first wait after a kick); whether a token can be renewed
    comes from ``tokens``.
    """

    def __init__(
        self,
        url: str,
        items: Sequence[str],
        types: Sequence[str],
        store: Store,
        tokens: TokenProvider,
        *,
        policy: ReconnectPolicy | None = None,
        also: Sequence[Subscription] = (),
        silence_timeout: float = 60.0,
        open_timeout: float = 10.0,
        max_message: int = 4 * 2**20,
        clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        on_real: Callable[[bytes], None] | None = None,
    ) -> None:
        self.url = url
        self._on_real = on_real
        self._on_ack: Callable[[RegistrationDone], None] | None = None
        self.items = list(items)
        self.types = list(types)
        self.subscriptions = tuple(
            sub for sub in (Subscription(tuple(items), tuple(types)), *also) if sub.items and sub.types
        )
        self.unstored = ACCOUNT_TYPES - {t for sub in self.subscriptions for t in sub.types}
        """The account types (00, 04: the user's orders and balance) not asked for at the start: their frames are
        passed to ``on_real`` but not stored, also once :meth:`add_entries` registers them (for a local client)."""
        self.store = store
        self.tokens = tokens
        self.policy = dataclasses.replace(policy or ReconnectPolicy(), can_renew=tokens.renewable)
        self.silence_timeout = silence_timeout
        self.open_timeout = open_timeout
        self.max_message = max_message
        self.clock_ns = clock_ns
        self.monotonic = monotonic
        self.stats = RecorderStats(store)
        self._gap_since_ns: int | None = None
        self._gap_cause = ""
        self._conn: Connection | None = None
        # Fail before connecting if the request cannot be honoured (more than 200 items).
        check = ClientSession(token="")
        for sub in self.subscriptions:
            check.subscribe(sub.items, sub.types)

    @property
    def on_real(self) -> Callable[[bytes], None] | None:
        """Called with every REAL frame's exact bytes once the store has it (:class:`Connection`'s ``on_real``);
        set it any time, the live connection too takes it."""
        return self._on_real

    @on_real.setter
    def on_real(self, tap: Callable[[bytes], None] | None) -> None:
        self._on_real = tap
        if self._conn is not None:
            self._conn.on_real = tap

    @property
    def on_ack(self) -> Callable[[RegistrationDone], None] | None:
        """Called with every REG/REMOVE reply (:class:`Connection`'s ``on_ack``); set it any time, as ``on_real``."""
        return self._on_ack

    @on_ack.setter
    def on_ack(self, call: Callable[[RegistrationDone], None] | None) -> None:
        self._on_ack = call
        if self._conn is not None:
            self._conn.on_ack = call

    def add_items(self, items: Sequence[str], types: Sequence[str], *, by: str = "") -> list[str]:
        """Record ``items`` x ``types`` too: REG them on the live connection (paced by its
        :class:`ClientSession`) and on every reconnect. Returns the items that were new (those already
        recorded with every one of ``types`` are left alone). An ``items_added`` event says which, and ``by`` whom.

        Raises :class:`kiwoom_tape.schemas.errors.TooManyItems` when the connection would carry more than
        200 items (docs/protocol.md 4.1), changing nothing.
        """
        added = self.add_entries([Subscription(tuple(items), tuple(types))], by=by)
        return list(added[0].items) if added else []

    def add_entries(self, entries: Sequence[Subscription], *, by: str = "") -> list[Subscription]:
        """:meth:`add_items` for several sets of types at once (one ``data`` entry each, docs/protocol.md 1.3):
        all of them or, past the 200-item cap (:class:`kiwoom_tape.schemas.errors.TooManyItems`), none. Returns
        the entries as added (their items that were new); one ``items_added`` event each."""
        have = {(i, t) for sub in self.subscriptions for i in sub.items for t in sub.types}
        fresh: list[Subscription] = []
        for sub in entries:
            new = tuple(i for i in dict.fromkeys(sub.items) if any((i, t) not in have for t in sub.types))
            if new and sub.types:
                fresh.append(Subscription(new, tuple(sub.types)))
        if not fresh:
            return []
        check = ClientSession(token="")
        for sub in (*self.subscriptions, *fresh):
            check.subscribe(sub.items, sub.types)  # TooManyItems before anything changes
        self.subscriptions = (*self.subscriptions, *fresh)
        for entry in fresh:
            if self._conn is not None:
                self._conn.subscribe(entry.items, entry.types)
            self._event("items_added", {"items": list(entry.items), "types": list(entry.types), "by": by})
        return fresh

    def remove_items(
        self, items: Sequence[str], *, by: str = "", types: Sequence[str] | None = None, **why: Any
    ) -> list[str]:
        """Stop recording ``items`` (with every type, or only with ``types``): REMOVE them on the live connection,
        and leave them out of the REGs of later reconnects. Returns the items that were recorded (with one of
        ``types``); an ``items_removed`` event says which (and ``types``, when given, and ``why``)."""
        gone = {i for i in items if i} if types is None else set(items)
        kept: list[Subscription] = []
        removed: dict[str, None] = {}
        for sub in self.subscriptions:
            out = [i for i in sub.items if i in gone]
            out_types = sub.types if types is None else tuple(t for t in sub.types if t in types)
            if not out or not out_types:
                kept.append(sub)
                continue
            if self._conn is not None:
                self._conn.unsubscribe(out, out_types)
            removed.update(dict.fromkeys(out))
            rest = tuple(i for i in sub.items if i not in gone)
            if rest:
                kept.append(Subscription(rest, sub.types))
            other_types = tuple(t for t in sub.types if t not in out_types)
            if other_types:
                kept.append(Subscription(tuple(out), other_types))
        if removed:
            self.subscriptions = tuple(kept)
            detail: dict[str, Any] = {"items": list(removed), "by": by}
            if types is not None:
                detail["types"] = list(types)
            self._event("items_removed", {**detail, **why})
        return list(removed)

    def _event(self, kind: str, detail: dict[str, Any], return_code: int | None = None) -> None:
        self.store.add_event(self.clock_ns(), kind, detail, return_code)

    async def run(self, stop: asyncio.Event) -> None:
        """Record until ``stop`` is set. Raises LoginError, CredentialsError or SessionTakenOver when
        recording cannot go on (see the module docstring), StorageError when the dataset cannot be written."""
        try:
            await self._run(stop)
        except BaseException:
            # the recording ends inside its gap (a LoginError, a cancel): close it, unless the store is gone
            with contextlib.suppress(Exception):
                self._close_gap_if_stopping()
            raise
        self._close_gap_if_stopping()

    async def _run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            ended, refusal = await self._connection(stop)
            if stop.is_set():
                break
            decision = self.policy.after(ended)
            if decision.action == "stop":
                assert refusal is not None
                raise refusal
            if decision.action == "exit_kicked":
                raise SessionTakenOver
            if decision.action == "renew_token":
                assert refusal is not None
                log.warning("LOGIN refused (CODE=%s): getting a new token and trying once more", refusal.auth_code)
                self.tokens.discard()
                continue
            self.stats.reconnects += 1
            if ended.cause == KICKED:
                log.warning("%s: waiting %.0f s before connecting again, not to kick it in turn "
                            "(record --on-kick exit stops instead)", self.stats.last_cause, decision.delay)
            else:
                log.warning("disconnected (%s); reconnecting in %.1f s", self.stats.last_cause, decision.delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), decision.delay)

    def open_gap(self, cause: str, *, since_ns: int | None = None, detail: dict[str, Any] | None = None) -> None:
        """Mark the start of a hole in the data (``since_ns``, default now); the next login closes it."""
        if self._gap_since_ns is None:
            self._gap_since_ns = self.clock_ns() if since_ns is None else since_ns
            self._gap_cause = cause
            self.store.add_event(self._gap_since_ns, "gap_start", {"cause": cause, **(detail or {})})

    def _close_gap(self) -> None:
        if self._gap_since_ns is not None:
            now = self.clock_ns()
            self._event("gap_end", {"cause": self._gap_cause, "seconds": (now - self._gap_since_ns) / 1e9})
            self._gap_since_ns = None

    def _close_gap_if_stopping(self) -> None:
        if self._gap_since_ns is not None:
            self._event("gap_end", {"cause": self._gap_cause, "stopped": True})
            self._gap_since_ns = None

    def _lost(self, why: Disconnect, conn: Connection | None = None, **detail: Any) -> Ended:
        """A connection ended for ``why``: a ``disconnect`` event, a gap (if none is open), what the policy reads."""
        self.stats.last_cause = why.detail or why.cause
        self._event("disconnect", {"cause": why.cause, "detail": why.detail[:200], **detail})
        self.open_gap(why.cause)
        if conn is None:
            return Ended(why.cause)
        return Ended(why.cause, conn.logged_in, conn.healthy_for())

    async def _connection(self, stop: asyncio.Event) -> tuple[Ended, LoginError | None]:
        """One connection, start to end: how it ended, and the LoginError if LOGIN was refused."""
        self.stats.connects += 1
        try:
            token = await self.tokens.token()
        except TokenEndpointUnreachable as exc:
            return self._lost(Disconnect("token_unavailable", str(exc))), None
        self._event("connect", {"url": self.url, "attempt": self.stats.connects})
        try:
            ws = await connect(
                self.url,
                compression=None,
                ping_interval=None,  # Kiwoom's keepalive is the application PING (docs/protocol.md 0)
                max_size=self.max_message,
                open_timeout=self.open_timeout,
                close_timeout=2.0,
                user_agent_header="kiwoom-tape",
                logger=_ws_log,
            )
        except InvalidURI as exc:
            raise KiwoomTapeError(f"bad --url: {exc}", hint="use wss://HOST:PORT/api/dostk/websocket") from None
        except (OSError, WebSocketException, TimeoutError, EOFError) as exc:
            # refused, reset, a handshake the server answered with an HTTP error or not at all
            return self._lost(Disconnect("connect_failed", f"connect failed: {type(exc).__name__}: {exc}")), None
        conn = Connection(
            ws, ClientSession(token=token), self.store, self.stats, subscriptions=self.subscriptions,
            silence_timeout=self.silence_timeout, clock_ns=self.clock_ns, monotonic=self.monotonic,
            event=self._event, on_login=self._close_gap, on_real=self.on_real, on_ack=self.on_ack,
            unstored=self.unstored,
        )
        self.stats.connected = True
        self._conn = conn
        try:
            async with ws:
                await conn.run(stop)
        except LoginError as exc:
            ended = self._lost(Disconnect("login_failed", str(exc)), conn)
            return dataclasses.replace(ended, renew_token=exc.renew_token), exc
        finally:
            self.stats.connected = False
            self._conn = None
        if stop.is_set():
            self._event("disconnect", {"cause": "stopped", "pings": self.stats.pings})
            return Ended("stopped", conn.logged_in, conn.healthy_for()), None
        rcvd = ws.protocol.close_rcvd
        why = classify_close(rcvd.code if rcvd else None, rcvd.reason if rcvd else "", conn.system_code)
        if conn.system_code is None and conn.silent:
            why = Disconnect("silence", f"no frame for {self.silence_timeout:g} s")
        return self._lost(why, conn, pings=self.stats.pings, close_code=rcvd.code if rcvd else None), None
