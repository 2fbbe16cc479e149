"""One WebSocket connection of the recorder, from LOGIN to close: its receive loop, its timers, its frames.

:class:`Connection` drives a :class:`kiwoom_tape.schemas.protocol.ClientSession` over an open socket: it sends
LOGIN, REGisters every item in paced batches, echoes every PING verbatim and hands every frame, in
and out, to the :class:`kiwoom_tape.recorder.store.Store` before anything else happens to it. It ends when the
socket closes (by the server, after ``silence_timeout`` without a frame, or when ``stop`` is set) and
says what it learnt (:attr:`logged_in`, :attr:`system_code`, :attr:`silent`, :meth:`healthy_for`);
what happens next is :mod:`kiwoom_tape.recorder.client`'s business. A LOGIN refusal raises
:class:`kiwoom_tape.schemas.errors.LoginError` (with the protocol layer's ``renew_token`` verdict).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from kiwoom_tape.schemas.errors import LoginError
from kiwoom_tape.schemas.protocol import (
    ClientSession,
    LoggedIn,
    LoginRejected,
    PingEchoed,
    RealData,
    RegistrationDone,
    Subscription,
    SystemNotice,
    UnexpectedMessage,
)
from kiwoom_tape.schemas.realframe import real_heads
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from kiwoom_tape.recorder.client import RecorderStats
    from kiwoom_tape.recorder.store import Store

__all__ = ["Connection"]

log = logging.getLogger("kiwoom_tape.recorder")

_REAL_TAIL: Final = b'"trnm":"REAL"}'
_REAL_HEAD: Final = b'{"trnm":"REAL"'
"""A REAL frame as Kiwoom writes it (compact JSON, ``trnm`` last or first; docs/protocol.md 1.7): the receive
loop hands it to :meth:`Store.add_received` without decoding it, the session has nothing to do with it.
Any other frame (a REAL frame formatted otherwise included) goes through the session first."""


class Connection:
    """One connection's life on ``ws``: :meth:`run` until it closes. See the module docstring."""

    def __init__(
        self,
        ws: ClientConnection,
        session: ClientSession,
        store: Store,
        stats: RecorderStats,
        *,
        subscriptions: Sequence[Subscription],
        silence_timeout: float,
        clock_ns: Callable[[], int],
        monotonic: Callable[[], float],
        event: Callable[[str, dict[str, Any], int | None], None],
        on_login: Callable[[], None],
        on_real: Callable[[bytes], None] | None = None,
        on_ack: Callable[[RegistrationDone], None] | None = None,
        unstored: frozenset[str] = frozenset(),
    ) -> None:
        """``on_real(data)``, if given, is called with every REAL frame's exact bytes once the store has it
        (the tap of ``record --serve``): after :meth:`Store.add_received`, never before. A REAL frame whose rows
        are all of ``unstored`` types (account types no one asked to record) is not stored: it only goes to
        ``on_real``. ``on_ack`` is called with every REG/REMOVE reply, after its ``reg_ack`` event."""
        self.ws, self.session, self.store, self.stats = ws, session, store, stats
        self.on_real = on_real
        self.on_ack = on_ack
        self.unstored = unstored
        self._unstored_marks = tuple(f'"{t}"'.encode() for t in sorted(unstored))
        """A frame without one of these quoted type codes has no row of an unstored type (whatever its spacing)."""
        self.subscriptions = subscriptions
        self.items = list(dict.fromkeys(i for sub in subscriptions for i in sub.items))
        self.types = list(dict.fromkeys(t for sub in subscriptions for t in sub.types))
        self.silence_timeout = silence_timeout
        self.clock_ns, self.monotonic = clock_ns, monotonic
        self._event, self._on_login = event, on_login
        self.logged_in = False
        self.login_mono: float | None = None
        self.system_code: str | None = None
        self.silent = False
        self._watchdog_error: BaseException | None = None
        self._last_frame = monotonic()
        self._watch_until = float("inf")
        self._wake: asyncio.Event | None = None

    def healthy_for(self) -> float:
        """Seconds from the LOGIN ack to the last frame received; 0 if it never logged in."""
        return 0.0 if self.login_mono is None else max(0.0, self._last_frame - self.login_mono)

    async def run(self, stop: asyncio.Event) -> None:
        """LOGIN, REG and receive until the socket closes. Raises LoginError on a refused LOGIN, and
        StorageError when a frame cannot be stored; a closed socket (at any point) just returns."""
        self.session.connect(self.monotonic())
        try:
            await self._flush()
            for sub in self.subscriptions:  # one data entry per set of types (docs/protocol.md 1.3)
                self.session.subscribe(sub.items, sub.types)
            await self._receive_loop(stop)
        except ConnectionClosed:
            pass  # closed before or during LOGIN, or while sending: the close frame (if any) says why

    async def _receive_loop(self, stop: asyncio.Event) -> None:
        """Receive and store frames until the connection ends (PERF-LIMITS.md section 6).

        This task only receives: a frame already buffered costs no trip through the event loop, and no
        timer is armed per frame. Timers belong to :meth:`_watchdog`: it ticks the session at its REG
        deadlines, closes the connection after ``silence_timeout`` without a frame, and closes it when
        ``stop`` is set; the frames that arrive before the server's close frame are still received
        and stored here. A REAL frame the store reads by itself (:meth:`Store.add_real_frame`) skips the
        session: a REAL frame never changes the session's state.
        """
        wake = self._wake = asyncio.Event()
        watchdog = asyncio.create_task(self._watchdog(stop, wake))
        recv = self.ws.recv
        add_received = self.store.add_received
        clock_ns, monotonic, stats, session = self.clock_ns, self.monotonic, self.stats, self.session
        marks = self._unstored_marks  # a frame without them is stored after two substring scans at most
        try:
            while True:
                try:
                    data = await recv(False)
                except ConnectionClosed:
                    if self._watchdog_error is not None:
                        raise self._watchdog_error from None
                    return  # closed by us (stop, silence) or by the server
                recv_ns = clock_ns()
                now = monotonic()
                if data[-14:] == _REAL_TAIL or data[:14] == _REAL_HEAD:
                    if not (marks and any(m in data for m in marks) and self._not_stored(data)):
                        add_received(recv_ns, data)  # journaled now, read with the next batch
                    tap = self.on_real  # may be set while the connection runs (record --serve)
                    if tap is not None:
                        tap(data)
                    stats.last_frame_mono = self._last_frame = now
                    stats.frames_in += 1
                    continue
                self._on_frame(data, recv_ns, now)
                await self._flush()
                due = session.next_deadline()
                if due is not None and due < self._watch_until:
                    wake.set()
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

    async def _watchdog(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """The receive loop's timers: REG pacing, the silence timeout, and ``stop``. See :meth:`_receive_loop`."""
        ws, session = self.ws, self.session
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            while True:
                now = self.monotonic()
                deadline = self._last_frame + self.silence_timeout
                reg_due = session.next_deadline()
                if reg_due is not None:
                    deadline = min(deadline, reg_due)
                self._watch_until = deadline
                if not stop.is_set() and deadline > now:
                    wake.clear()
                    wake_wait = asyncio.ensure_future(wake.wait())
                    try:
                        await asyncio.wait({stop_wait, wake_wait}, timeout=deadline - now,
                                           return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        wake_wait.cancel()
                    if wake.is_set() and not stop.is_set():
                        await self._flush()  # a REG/REMOVE queued from outside (subscribe, unsubscribe)
                        continue  # a new deadline: compute it again
                if stop.is_set():
                    await ws.close(1000, "recorder stopping")
                    return
                now = self.monotonic()
                if now - self._last_frame >= self.silence_timeout:
                    self.silent = True
                    await ws.close(1000, "silence")
                    return
                session.tick(now)
                await self._flush()
        except ConnectionClosed:
            return  # the receive loop sees it too
        except Exception as exc:  # a StorageError while storing an out-frame: the receive loop raises it
            self._watchdog_error = exc
            ws.transport.abort()
        finally:
            stop_wait.cancel()

    def _not_stored(self, data: bytes) -> bool:
        """Whether every row of the REAL frame ``data`` is of an :attr:`unstored` type (a frame that mixes
        them with other types is stored whole)."""
        heads = real_heads(data)
        return not isinstance(heads, str) and bool(heads.data) and all(h.type in self.unstored for h in heads.data)

    def subscribe(self, items: Sequence[str], types: Sequence[str]) -> None:
        """REG ``items`` x ``types`` on this connection too, paced by its session (docs/protocol.md 1.3, 4.1).
        Raises :class:`kiwoom_tape.schemas.errors.TooManyItems` past the session's cap, registering nothing."""
        self.session.subscribe(items, types, self.monotonic())
        self._poke()

    def unsubscribe(self, items: Sequence[str], types: Sequence[str]) -> None:
        """REMOVE ``items`` x ``types`` on this connection, paced by its session."""
        self.session.unsubscribe(items, types, self.monotonic())
        self._poke()

    def _poke(self) -> None:
        """Have the watchdog send what the session queued and compute its next deadline."""
        if self._wake is not None:
            self._wake.set()

    def _on_frame(self, text: str | bytes, recv_ns: int, now: float) -> None:
        """Store one received frame (always exactly once, before acting on it) and handle its events."""
        self.stats.last_frame_mono = self._last_frame = now
        self.stats.frames_in += 1
        events = self.session.receive(text, now)
        stored = False
        for ev in events:
            if isinstance(ev, RealData):
                stored = True
                if not (ev.rows and all(r.type in self.unstored for r in ev.rows)):
                    self.store.add_frame(recv_ns, "in", text, rows=ev.rows, trnm="REAL")
                if self.on_real is not None:
                    self.on_real(text.encode("utf-8") if isinstance(text, str) else text)
            elif isinstance(ev, UnexpectedMessage):
                self.store.add_frame(recv_ns, "in", text, parse_error=ev.reason or "unexpected")
                stored = True
            else:
                if not stored:  # a control frame: the store reads its trnm itself
                    self.store.add_frame(recv_ns, "in", text)
                    stored = True
                self._on_event(ev, now)

    def _on_event(self, ev: object, now: float) -> None:
        if isinstance(ev, LoggedIn):
            self.logged_in, self.login_mono = True, now
            self._event("login", {"items": len([i for i in self.items if i]), "types": self.types}, None)
            log.info("logged in; registering %s", "; ".join(
                f"{len(sub.items)} items x {','.join(sub.types)}" for sub in self.subscriptions))
            self._on_login()
        elif isinstance(ev, LoginRejected):
            self._event("login_failed", {"return_msg": ev.return_msg[:200], "auth_code": ev.auth_code},
                        ev.return_code)
            raise LoginError(ev.return_code, ev.return_msg, ev.auth_code, renew_token=ev.renew_token)
        elif isinstance(ev, RegistrationDone):
            detail: dict[str, Any] = {"trnm": ev.trnm, "items": list(ev.items), "types": list(ev.types),
                                      "return_msg": ev.return_msg, "will_retry": ev.will_retry}
            if len(ev.entries) > 1:  # which items got which types
                detail["entries"] = [{"item": list(e.items), "type": list(e.types)} for e in ev.entries]
            self._event("reg_ack", detail, ev.return_code)
            if self.on_ack is not None:
                self.on_ack(ev)
            if ev.return_code != 0:
                fails = self.stats.reg_failures
                fails[str(ev.return_code)] = fails.get(str(ev.return_code), 0) + 1
                log.warning("%s refused for %d items: %s %s%s", ev.trnm, len(ev.items), ev.return_code,
                            ev.return_msg, " (will retry)" if ev.will_retry else "")
        elif isinstance(ev, PingEchoed):
            self.stats.pings += 1
        elif isinstance(ev, SystemNotice):
            self.system_code = ev.code
            self._event("system", {"code": ev.code, "message": ev.message[:200], "terminal": ev.terminal}, None)
            (log.warning if ev.terminal else log.info)("SYSTEM %s: %s", ev.code, ev.message)

    async def _flush(self) -> None:
        for out in self.session.data_to_send():
            text = out if isinstance(out, str) else out.decode("utf-8", "replace")
            self.store.add_frame(self.clock_ns(), "out", text)
            await self.ws.send(out, text=True)  # a text frame, also when echoing a PING received as bytes
