"""The recorder's connection loop: an asyncio driver of :class:`schemas.protocol.ClientSession`.

It connects, LOGINs, REGisters every item in paced batches, echoes every PING verbatim, and hands
every frame, in and out, to the :class:`recorder.store.Store` before anything else happens to it.
Any drop, a stall of ``silence_timeout`` seconds, or a terminal SYSTEM frame ends the connection;
the loop writes the gap to ``events`` and reconnects after a jittered, capped backoff
(:mod:`recorder.backoff`), re-LOGINs and re-REGisters everything. A LOGIN refused with an auth code
(8005/8031/8103) gets one new token; refused again, or refused for good, the recorder stops with
:class:`schemas.errors.LoginError` rather than loop on a dead token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from recorder.auth import TokenProvider
from recorder.backoff import backoff, classify_close
from recorder.store import Store
from schemas.errors import KiwoomTapeError, LoginError
from schemas.protocol import (
    ClientSession,
    LoggedIn,
    LoginRejected,
    PingEchoed,
    RealData,
    RegistrationDone,
    SystemNotice,
    UnexpectedMessage,
)
from schemas.redact import RedactTokens

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
        return st.rows["orderbook"] + st.rows["afterhours"] + st.other_rows

    @property
    def parse_errors(self) -> int:
        """Frames stored with a parse error so far."""
        return 0 if self.store is None else self.store.stats.parse_errors


_REAL_TAIL: Final = b'"trnm":"REAL"}'
_REAL_HEAD: Final = b'{"trnm":"REAL"'
"""A REAL frame as Kiwoom writes it (compact JSON, ``trnm`` last or first; PROTOCOL.md 1.7): the receive
loop hands it to :meth:`Store.add_received` without decoding it, the session has nothing to do with it.
Any other frame (a REAL frame formatted otherwise included) goes through the session first."""


class _StopRecording(Exception):
    pass


class Recorder:
    """Records ``items`` x ``types`` from ``url`` into ``store`` until ``stop`` is set."""

    def __init__(
        self,
        url: str,
        items: Sequence[str],
        types: Sequence[str],
        store: Store,
        tokens: TokenProvider,
        *,
        silence_timeout: float = 60.0,
        open_timeout: float = 10.0,
        max_message: int = 4 * 2**20,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.items = list(items)
        self.types = list(types)
        self.store = store
        self.tokens = tokens
        self.silence_timeout = silence_timeout
        self.open_timeout = open_timeout
        self.max_message = max_message
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.clock_ns = clock_ns
        self.monotonic = monotonic
        self.stats = RecorderStats(store)
        self._gap_since_ns: int | None = None
        self._gap_cause = ""
        self._silent = False
        self._closing = False
        self._watchdog_error: BaseException | None = None
        self._last_frame = 0.0
        self._watch_until = float("inf")
        # Fail before connecting if the request cannot be honoured (more than 200 items).
        ClientSession(token="").subscribe(self.items, self.types)

    def _event(self, kind: str, detail: dict[str, Any], return_code: int | None = None) -> None:
        self.store.add_event(self.clock_ns(), kind, detail, return_code)

    async def run(self, stop: asyncio.Event) -> None:
        """Record until ``stop`` is set. Raises LoginError/CredentialsError when recording cannot go on."""
        try:
            await self._run(stop)
        except BaseException:
            # the recording ends inside its gap (a LoginError, a cancel): close it, unless the store is gone
            with contextlib.suppress(Exception):
                self._close_gap_if_stopping()
            raise
        self._close_gap_if_stopping()

    async def _run(self, stop: asyncio.Event) -> None:
        delays = backoff(self.backoff_base, self.backoff_cap)
        renewed_for_this_failure = False
        while not stop.is_set():
            try:
                worked = await self._connection(stop)
            except _StopRecording:
                break
            except LoginError as exc:
                self._event("disconnect", {"cause": "login_failed", "detail": str(exc)[:200]})
                self.open_gap("login_failed")
                if exc.auth_code is None or renewed_for_this_failure or not self.tokens.renewable:
                    raise
                log.warning("LOGIN refused (CODE=%s): getting a new token and trying once more", exc.auth_code)
                await self.tokens.renew()
                renewed_for_this_failure = True
                continue
            if worked:
                delays = backoff(self.backoff_base, self.backoff_cap)
                renewed_for_this_failure = False
            if stop.is_set():
                break
            delay = next(delays)
            self.stats.reconnects += 1
            log.warning("disconnected (%s); reconnecting in %.1f s", self.stats.last_cause, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

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

    async def _connection(self, stop: asyncio.Event) -> bool:
        """One connection, start to end. Returns True if it logged in (so the backoff resets)."""
        token = await self.tokens.token()
        session = ClientSession(token=token)
        self.stats.connects += 1
        self._event("connect", {"url": self.url, "attempt": self.stats.connects})
        try:
            ws = await connect(
                self.url,
                compression=None,
                ping_interval=None,  # Kiwoom's keepalive is the application PING (PROTOCOL.md 0)
                max_size=self.max_message,
                open_timeout=self.open_timeout,
                close_timeout=2.0,
                user_agent_header="kiwoom-tape",
                logger=_ws_log,
            )
        except InvalidURI as exc:
            raise KiwoomTapeError(f"bad --url: {exc}", hint="use wss://HOST:PORT/api/dostk/websocket") from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            self.stats.last_cause = f"connect failed: {type(exc).__name__}: {exc}"[:200]
            self._event("disconnect", {"cause": "connect_failed", "detail": self.stats.last_cause})
            self.open_gap("connect_failed")
            return False
        logged_in = False
        system_code: str | None = None
        async with ws:
            self.stats.connected = True
            session.connect(self.monotonic())
            await self._flush(ws, session)
            session.subscribe(self.items, self.types)
            try:
                logged_in, system_code = await self._receive_loop(ws, session, stop)
            except ConnectionClosed:
                pass
            finally:
                self.stats.connected = False
            if stop.is_set():
                self._event("disconnect", {"cause": "stopped", "pings": self.stats.pings})
                return logged_in
        rcvd = ws.protocol.close_rcvd
        verdict = classify_close(rcvd.code if rcvd else None, rcvd.reason if rcvd else "", system_code)
        if system_code is None and self._silent:
            verdict = verdict.__class__("silence", True, f"no frame for {self.silence_timeout:g} s")
        self.stats.last_cause = verdict.detail or verdict.cause
        self._event(
            "disconnect",
            {"cause": verdict.cause, "detail": verdict.detail, "pings": self.stats.pings,
             "close_code": rcvd.code if rcvd else None},
        )
        self.open_gap(verdict.cause)
        return logged_in

    async def _receive_loop(
        self, ws: ClientConnection, session: ClientSession, stop: asyncio.Event
    ) -> tuple[bool, str | None]:
        """Receive and store frames until the connection ends (PERF-LIMITS.md section 6).

        This task only receives: a frame already buffered costs no trip through the event loop, and no
        timer is armed per frame. Timers belong to :meth:`_watchdog`: it ticks the session at its REG
        deadlines, closes the connection after ``silence_timeout`` without a frame, and closes it when
        ``stop`` is set; the frames that arrive before the server's close frame are still received
        and stored here. A REAL frame the store reads by itself (:meth:`Store.add_real_frame`) skips the
        session: a REAL frame never changes the session's state.
        """
        logged_in = False
        system_code: str | None = None
        self._silent = False
        self._closing = False
        self._watchdog_error = None
        self._last_frame = self.monotonic()
        self._watch_until = float("inf")
        wake = asyncio.Event()
        watchdog = asyncio.create_task(self._watchdog(ws, session, stop, wake))
        recv = ws.recv
        add_received = self.store.add_received
        clock_ns, monotonic, stats = self.clock_ns, self.monotonic, self.stats
        try:
            while True:
                try:
                    data = await recv(False)
                except ConnectionClosed:
                    if self._watchdog_error is not None:
                        raise self._watchdog_error from None
                    # closed by us (stop, silence) or by the server: either way what we learnt
                    # (logged in, the SYSTEM code that announced the close) goes to the classifier
                    return logged_in, system_code
                recv_ns = clock_ns()
                now = monotonic()
                if data[-14:] == _REAL_TAIL or data[:14] == _REAL_HEAD:
                    add_received(recv_ns, data)  # journaled now, read with the next batch
                    stats.last_frame_mono = self._last_frame = now
                    stats.frames_in += 1
                    continue
                logged_in, system_code = self._on_frame(data, session, logged_in, system_code, recv_ns, now)
                try:
                    await self._flush(ws, session)
                except ConnectionClosed:
                    return logged_in, system_code
                due = session.next_deadline()
                if due is not None and due < self._watch_until:
                    wake.set()
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

    async def _watchdog(
        self, ws: ClientConnection, session: ClientSession, stop: asyncio.Event, wake: asyncio.Event
    ) -> None:
        """The receive loop's timers: REG pacing, the silence timeout, and ``stop``. See :meth:`_receive_loop`."""
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
                        continue  # a new deadline: compute it again
                if stop.is_set():
                    self._closing = True
                    await ws.close(1000, "recorder stopping")
                    return
                now = self.monotonic()
                if now - self._last_frame >= self.silence_timeout:
                    self._silent = True
                    self._closing = True
                    await ws.close(1000, "silence")
                    return
                session.tick(now)
                await self._flush(ws, session)
        except ConnectionClosed:
            return  # the receive loop sees it too
        except Exception as exc:  # a StorageError while storing an out-frame: the receive loop raises it
            self._watchdog_error = exc
            ws.transport.abort()
        finally:
            stop_wait.cancel()

    def _on_frame(
        self, text: str | bytes, session: ClientSession, logged_in: bool, system_code: str | None,
        recv_ns: int, now: float,
    ) -> tuple[bool, str | None]:
        """Store one received frame (always exactly once, before acting on it) and handle its events."""
        self.stats.last_frame_mono = self._last_frame = now
        self.stats.frames_in += 1
        events = session.receive(text, now)
        stored = False
        for ev in events:
            if isinstance(ev, RealData):
                self.store.add_frame(recv_ns, "in", text, rows=ev.rows, trnm="REAL")
                stored = True
            elif isinstance(ev, UnexpectedMessage):
                self.store.add_frame(recv_ns, "in", text, parse_error=ev.reason or "unexpected")
                stored = True
            else:
                if not stored:  # a control frame: the store reads its trnm itself
                    self.store.add_frame(recv_ns, "in", text)
                    stored = True
                logged_in = self._on_event(ev, logged_in) or logged_in
                if isinstance(ev, SystemNotice):
                    system_code = ev.code
        return logged_in, system_code

    def _on_event(self, ev: object, logged_in: bool) -> bool:
        if isinstance(ev, LoggedIn):
            self._event("login", {"items": len(self.items), "types": self.types})
            log.info("logged in; registering %d items x %s", len(self.items), ",".join(self.types))
            self._close_gap()
            return True
        if isinstance(ev, LoginRejected):
            self._event("login_failed", {"return_msg": ev.return_msg[:200], "auth_code": ev.auth_code}, ev.return_code)
            raise LoginError(ev.return_code, ev.return_msg, ev.auth_code)
        if isinstance(ev, RegistrationDone):
            self._event(
                "reg_ack",
                {"trnm": ev.trnm, "items": list(ev.items), "types": list(ev.types), "return_msg": ev.return_msg,
                 "will_retry": ev.will_retry},
                ev.return_code,
            )
            if ev.return_code != 0:
                self.stats.reg_failures[str(ev.return_code)] = self.stats.reg_failures.get(str(ev.return_code), 0) + 1
                log.warning("%s refused for %d items: %s %s%s", ev.trnm, len(ev.items), ev.return_code,
                            ev.return_msg, " (will retry)" if ev.will_retry else "")
            return False
        if isinstance(ev, PingEchoed):
            self.stats.pings += 1
            return False
        if isinstance(ev, SystemNotice):
            self._event("system", {"code": ev.code, "message": ev.message[:200], "terminal": ev.terminal})
            (log.warning if ev.terminal else log.info)("SYSTEM %s: %s", ev.code, ev.message)
            return False
        return False

    async def _flush(self, ws: ClientConnection, session: ClientSession) -> None:
        for out in session.data_to_send():
            text = out if isinstance(out, str) else out.decode("utf-8", "replace")
            self.store.add_frame(self.clock_ns(), "out", text)
            await ws.send(out, text=True)  # a text frame, also when echoing a PING received as bytes
