"""Scripted faults for the mock server: the failures that kill Kiwoom clients, on cue (docs/protocol.md 1.2-1.9, 4.1).

A fault script is a small TOML file of ``[[fault]]`` tables. Each fault fires once, on one trigger: ``at``
a time after the first LOGIN the server accepted, ``after_frames`` REAL frames queued (to all clients
together), or ``market_time = "HH:MM:SS"``: when the source's market clock (``Source.market_time()``: the
simulated market's clock, or a recorded day's replay clock, KST) reaches that time of day, so that a
script spans a whole simulated day at any ``--speed``::

    [[fault]]
    kind = "kick"              # SYSTEM R10001, then close(1000, "Bye"): a second session took over
    at = "5s"

    [[fault]]
    kind = "reject_reg"        # the next 2 REGs get return_code 105110
    after_frames = 500
    return_code = 105110
    count = 2

Load it with :meth:`FaultScript.load` (or build one in Python) and give it to the server:
``serve(source, faults=FaultScript.load("faults.toml"))``, or ``replay ... --faults faults.toml``.
The server's :attr:`kiwoom_tape.replay.server.Server.faults` (a :class:`FaultRunner`) then fires them and logs each,
with its time, on the ``kiwoom_tape.replay`` logger; :attr:`FaultRunner.fired` lists what fired.

The kinds (:data:`KINDS`; every key but ``kind`` and the trigger has a default unless marked required):

==================  =========================================================================================
``drop``            close every connection: ``code`` (1011) and ``reason`` (""), or ``abort = true``: cut the
                    TCP connection with no close frame
``kick``            what a second session with the same app key does: SYSTEM R10001, close(1000, "Bye")
``stall``           ``seconds`` (required) of silence on every connection: no frames, no PINGs; what was
                    queued meanwhile goes out afterwards (a network stall)
``no_pings``        ``seconds`` (required) without server PINGs (data still flows)
``ignore_echoes``   the connections open now stop being credited for PING echoes: after 5 PINGs they get
                    SYSTEM R10002 and are closed
``expire_token``    every token issued so far (and ``--token``) stops working: the next LOGIN with one is
                    refused with ``[CODE=8005, ...]``; ``drop = true`` also closes every connection (1011)
``refuse_login``    the next ``count`` (1) LOGINs are refused with ``[CODE=code]`` (8005), whatever the token
``reject_reg``      the next ``count`` (1) REGs are refused with ``return_code`` (1; or 105110, 105115,
                    105118) and ``message`` (Kiwoom's text for the code)
``malformed``       send every logged-in connection ``count`` (1) bad frames of kind ``frame``:
                    ``not_json``, ``truncated`` (a REAL frame cut short), ``unknown_trnm``, ``bad_row`` (a
                    REAL frame whose row has no ``values`` object)
``duplicate``       each connection open now sends its next ``count`` (1) REAL frames twice
``reorder``         each connection open now sends its next ``count`` (2) REAL frames in reverse order
``slow``            for ``seconds`` (required), every connection sends at most ``bytes_per_second``
                    (required) bytes per second
``burst``           for ``seconds`` (required), REAL frames are held back (PINGs and replies still go);
                    then all of them are sent at once
==================  =========================================================================================

``close_after_handshake``: the next ``count`` (1) connections are closed right after the WebSocket
handshake, before their LOGIN, with ``code`` (1013 "try again later"; or e.g. 1011 after a restart) and
``reason``, or with ``abort = true`` cut with no close frame (what a restarting server does to a client).

Parsing is pure (:meth:`FaultScript.parse`); a bad script raises :class:`FaultScriptError` naming the file,
the line, the key and the fix. The runner only touches a server through the hooks
:meth:`FaultRunner.at_handshake` (new connection), :meth:`FaultRunner.intercept` (reader),
:meth:`FaultRunner.hold_pings` (PING timer) and :meth:`FaultRunner.send` (writer), and otherwise only
through the server's :class:`kiwoom_tape.replay.contracts.FaultHost` interface (``drop_all``, ``kick_all``,
``expire_tokens``, ``connections``, ``market_time``, counters and clock).
"""


from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kiwoom_tape.replay.faultscript import (
    KINDS,
    MALFORMED,
    REG_MESSAGES,
    Fault,
    FaultScript,
    FaultScriptError,
    parse_duration,
    script_of,
    summary,
)
from kiwoom_tape.schemas.protocol import ServerState, ack, guess_trnm, is_real_text, login_failed

if TYPE_CHECKING:
    from kiwoom_tape.replay.contracts import FaultHost
    from kiwoom_tape.replay.outbox import Client

__all__ = [
    "KINDS", "MALFORMED", "REG_MESSAGES", "Fault", "FaultRunner", "FaultScript", "FaultScriptError", "FiredFault",
    "parse_duration", "script_of", "summary",
]

log = logging.getLogger("kiwoom_tape.replay")
_POLL = 0.01  # how often a trigger waiting on the server's counters or clock looks again (s)

# --------------------------------------------------------------------------------------------------
# Running a script against a server


@dataclass(frozen=True)
class FiredFault:
    """A fault as it fired: when (``clock``, seconds after the first LOGIN, wall time), and on how many
    connections."""

    index: int
    fault: Fault
    clock: float
    since_login: float
    wall: float
    connections: int


@dataclass
class _PerClient:
    duplicate: int = 0
    reorder: int = 0
    reordered: list[str] = field(default_factory=list)
    burst: list[str] = field(default_factory=list)
    deaf: bool = False
    next_free: float = 0.0


class FaultRunner:
    """Fires a :class:`FaultScript`'s faults on a :class:`kiwoom_tape.replay.server.Server`; made by the server.

    The server calls the hooks (:meth:`intercept`, :meth:`hold_pings`, :meth:`send`) only when it has a
    runner, and runs :meth:`run` as a task while it serves. :meth:`fire` fires a fault now (for tests).
    """

    def __init__(self, script: FaultScript, server: FaultHost) -> None:
        self.script = script
        self.server = server
        self.fired: list[FiredFault] = []
        """Every fault that fired, in order."""
        self.first_login: float | None = None
        self._clients: dict[Client, _PerClient] = {}
        self._reject_reg: list[Fault] = []  # each with its own count left, in order
        self._reject_left: list[int] = []
        self._refuse: list[tuple[int, int]] = []  # [auth code, count left]
        self._close_next: list[list[int]] = []  # [close code (0: abort), count left], in order
        self._close_reasons: list[str] = []
        self._stall_until = 0.0
        self._no_pings_until = 0.0
        self._slow_until = 0.0
        self._slow_rate = 0
        self._burst_until = 0.0
        self._bursting = False

    # -- the task

    async def run(self) -> None:
        """Wait for each fault's trigger and fire it; returns when all have fired (and ended)."""
        if not self.script.faults:
            return
        async with asyncio.TaskGroup() as tg:
            for i, f in enumerate(self.script.faults):
                tg.create_task(self._one(i, f))

    async def _one(self, index: int, fault: Fault) -> None:
        server = self.server
        if fault.at is not None:
            while server.stats.logins < 1:  # noqa: ASYNC110  # a server counter; no event to wait on
                await asyncio.sleep(_POLL)
            if self.first_login is None:
                self.first_login = server.clock()
            delay = self.first_login + fault.at - server.clock()
            if delay > 0:
                await asyncio.sleep(delay)
        elif fault.market_time is not None:
            while (t := server.market_time()) is None or t < fault.market_time:  # noqa: ASYNC110  # as above
                await asyncio.sleep(_POLL)
        else:
            assert fault.after_frames is not None
            while server.stats.frames_sent < fault.after_frames:  # noqa: ASYNC110  # as above
                await asyncio.sleep(_POLL)
        await self.fire(fault, index=index)

    async def fire(self, fault: Fault, *, index: int | None = None) -> FiredFault:
        """Fire ``fault`` now, whatever its trigger; returns once it has ended (windows: after ``seconds``)."""
        server = self.server
        now = server.clock()
        if self.first_login is None and server.stats.logins:
            self.first_login = now
        clients = [c for c in server.connections() if c.session.state is not ServerState.CLOSED]
        record = FiredFault(
            len(self.fired) if index is None else index, fault, now,
            now - self.first_login if self.first_login is not None else 0.0, time.time(), len(clients),
        )
        self.fired.append(record)
        log.warning(
            "fault #%d %s fired %s: +%.3f s after the first LOGIN, %d frames sent, %d connections",
            record.index + 1, fault.describe(), time.strftime("%H:%M:%S", time.localtime(record.wall)),
            record.since_login, server.stats.frames_sent, len(clients),
        )
        await self._apply(fault, clients)
        return record

    async def _apply(self, f: Fault, clients: list[Client]) -> None:
        server = self.server
        kind = f.kind
        if kind == "drop":
            await server.drop_all(None if f.abort else f.code, f.reason)
        elif kind == "kick":
            server.kick_all()
        elif kind == "expire_token":
            server.expire_tokens()
            if f.drop:
                await server.drop_all(1011, "token expired")
        elif kind == "refuse_login":
            self._refuse.append((f.code, f.count))
        elif kind == "close_after_handshake":
            self._close_next.append([0 if f.abort else f.code, f.count])
            self._close_reasons.append(f.reason)
        elif kind == "reject_reg":
            self._reject_reg.append(f)
            self._reject_left.append(f.count)
        elif kind == "ignore_echoes":
            for c in clients:
                self._state(c).deaf = True
        elif kind == "duplicate":
            for c in clients:
                self._state(c).duplicate += f.count
        elif kind == "reorder":
            for c in clients:
                self._state(c).reorder = f.count
        elif kind == "malformed":
            for c in clients:
                if c.session.state is ServerState.OPEN:
                    for _ in range(f.count):
                        c.push(self._malformed(f.frame, c))
        elif kind in ("stall", "no_pings", "slow", "burst"):
            await self._window(f)

    async def _window(self, f: Fault) -> None:
        clock = self.server.clock
        until = clock() + f.seconds
        if f.kind == "stall":
            self._stall_until = max(self._stall_until, until)
        elif f.kind == "no_pings":
            self._no_pings_until = max(self._no_pings_until, until)
        elif f.kind == "slow":
            self._slow_until, self._slow_rate = until, f.bytes_per_second
        else:
            self._burst_until = max(self._burst_until, until)
            self._bursting = True
        try:
            await asyncio.sleep(f.seconds)
        finally:
            if f.kind == "burst" and clock() >= self._burst_until:
                self._bursting = False
                for c, st in self._clients.items():
                    if st.burst:
                        c.requeue(st.burst)
                        st.burst.clear()
            log.info("fault %s ended (+%.3f s after the first LOGIN)", f.kind,
                     clock() - self.first_login if self.first_login is not None else 0.0)

    def _state(self, client: Client) -> _PerClient:
        st = self._clients.get(client)
        if st is None:
            # forget connections that are gone (their state is of no use any more)
            open_now = set(self.server.connections())
            for gone in [c for c in self._clients if c not in open_now]:
                del self._clients[gone]
            st = self._clients[client] = _PerClient()
        return st

    def _malformed(self, what: str, client: Client) -> str:
        items = sorted(i for i in client.session.items if i) or ["005930"]
        if what == "not_json":
            return "502 Bad Gateway"
        if what == "unknown_trnm":
            return '{"trnm":"XYZZY","return_code":0,"return_msg":""}'
        if what == "bad_row":
            row = '{"values":"oops","type":"0D","name":"주식호가잔량","item":"' + items[0] + '"}'
            return '{"data":[' + row + '],"trnm":"REAL"}'
        row = '{"type":"0D","name":"주식호가잔량","item":"' + items[0] + '","values":{"21":"090000","41":"-208'
        return '{"data":[' + row  # truncated


    # -- hooks the server calls

    def at_handshake(self, client: Client) -> tuple[int, str] | None:
        """Connection hook, right after the WebSocket handshake: (code, reason) to close the connection
        with at once, (0, "") to abort it, or None to serve it (``close_after_handshake``)."""
        if not self._close_next:
            return None
        pending = self._close_next[0]
        code, reason = pending[0], self._close_reasons[0]
        pending[1] -= 1
        if pending[1] <= 0:
            self._close_next.pop(0)
            self._close_reasons.pop(0)
        how = "aborted" if code == 0 else f"closed with {code}"
        log.warning("fault: connection from %s %s right after the handshake", client.peer, how)
        return (code, reason)

    def intercept(self, client: Client, message: str | bytes) -> bool:
        """Reader hook, before the session sees ``message``: True if a fault answered (or swallowed) it."""
        st = self._clients.get(client)
        if st is not None and st.deaf and client.session.state is ServerState.OPEN and _is_ping(message):
            return True  # the echo is not credited: R10002 after max_missed_pings
        if not self._refuse and not self._reject_reg:
            return False
        trnm = guess_trnm(message)
        if trnm == "LOGIN" and self._refuse:
            code, left = self._refuse[0]
            self._refuse[0] = (code, left - 1)
            if left <= 1:
                self._refuse.pop(0)
            client.push(login_failed(code))
            client.session.state = ServerState.CLOSED
            client.push((1000, ""))
            log.warning("fault: LOGIN from %s refused with CODE=%d", client.peer, code)
            return True
        if trnm == "REG" and self._reject_reg and client.session.state is ServerState.OPEN:
            f = self._reject_reg[0]
            self._reject_left[0] -= 1
            if self._reject_left[0] <= 0:
                self._reject_reg.pop(0)
                self._reject_left.pop(0)
            msg = f.message if f.message is not None else REG_MESSAGES[f.return_code]
            client.push(ack("REG", f.return_code, msg))
            log.warning("fault: REG from %s refused with return_code %d", client.peer, f.return_code)
            return True
        return False

    async def hold_pings(self, client: Client) -> None:
        """PING timer hook: wait while a ``stall`` or ``no_pings`` window is open."""
        clock = self.server.clock
        while True:
            until = max(self._stall_until, self._no_pings_until)
            if clock() >= until:
                return
            await asyncio.sleep(until - clock())

    async def send(self, client: Client, text: str) -> None:
        """Writer hook: send ``text`` to ``client`` as the open faults say (maybe later, twice, or not yet)."""
        clock = self.server.clock
        while clock() < self._stall_until:  # noqa: ASYNC110  # a deadline that a later stall may extend
            await asyncio.sleep(self._stall_until - clock())
        st = self._clients.get(client)
        if st is None and not self._bursting:
            await self._out(client, text)
            return
        real = is_real_text(text)
        if real and self._bursting:
            self._state(client).burst.append(text)
            return
        if st is not None and real and st.reorder > 0:
            st.reordered.append(text)
            st.reorder -= 1
            if st.reorder == 0:
                client.requeue(st.reordered[::-1])  # the last one goes first
                st.reordered.clear()
            return
        times = 1
        if st is not None and real and st.duplicate > 0:
            st.duplicate -= 1
            times = 2
        for _ in range(times):
            await self._out(client, text)

    async def _out(self, client: Client, text: str) -> None:
        server = self.server
        clock = server.clock
        if clock() < self._slow_until and self._slow_rate > 0:
            st = self._state(client)
            start = max(clock(), st.next_free)
            if start > clock():
                await asyncio.sleep(start - clock())
            st.next_free = start + len(text.encode("utf-8")) / self._slow_rate
        await client.conn.send(text)
        client_sent = server.sent
        if client_sent is not None and is_real_text(text):
            client_sent.append((client.number, clock(), text))


def _is_ping(message: str | bytes) -> bool:
    return guess_trnm(message) == "PING"
