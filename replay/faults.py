"""Scripted faults for the mock server: the failures that kill Kiwoom clients, on cue (PROTOCOL.md 1.2-1.9, 4.1).

A fault script is a small TOML file of ``[[fault]]`` tables. Each fault fires once, either ``at`` a time
after the first LOGIN the server accepted, or ``after_frames`` REAL frames have been queued (to all
clients together)::

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
The server's :attr:`replay.server.Server.faults` (a :class:`FaultRunner`) then fires them and logs each,
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

Parsing is pure (:meth:`FaultScript.parse`); a bad script raises :class:`FaultScriptError` naming the file,
the line, the key and the fix. The runner only touches a server through the hooks
:meth:`FaultRunner.intercept` (reader), :meth:`FaultRunner.hold_pings` (PING timer) and
:meth:`FaultRunner.send` (writer), and through :meth:`Server.drop_all`, :meth:`Server.kick_all` and
:meth:`Server.expire_tokens`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from schemas.errors import KiwoomTapeError
from schemas.protocol import (
    RC_ERROR,
    RC_ITEM_CAP,
    RC_REG_RATE,
    ServerState,
    ack,
    guess_trnm,
    is_real_text,
    login_failed,
)

if TYPE_CHECKING:
    from replay.server import Server, _Client

__all__ = [
    "KINDS", "Fault", "FaultRunner", "FaultScript", "FaultScriptError", "FiredFault", "parse_duration", "script_of",
    "summary",
]

log = logging.getLogger("kiwoom_tape.replay")

RC_ITEM_CAP_2: Final = 105118
REG_MESSAGES: Final = {
    RC_ERROR: "등록 종목수 초과",
    RC_REG_RATE: "해당 TRNM 허용 요청 건수 초과",
    RC_ITEM_CAP: "등록 허용 개수(200) 초과",
    RC_ITEM_CAP_2: "등록 허용 개수(200) 초과",
}
"""The ``return_msg`` Kiwoom sends with each REG error code (PROTOCOL.md 1.4)."""

MALFORMED: Final = ("not_json", "truncated", "unknown_trnm", "bad_row")
_POLL = 0.01  # how often a trigger waiting on the server's counters looks again (s)
_TRIGGERS: Final = ("at", "after_frames")


class FaultScriptError(KiwoomTapeError):
    """A fault script that cannot be used: ``.source`` (file), ``.line`` (1-based or None), ``.key``."""

    def __init__(self, source: str, problem: str, *, line: int | None = None, key: str = "", hint: str = "") -> None:
        self.source = source
        self.line = line
        self.key = key
        self.problem = problem
        where = f"{source}, line {line}" if line is not None else source
        super().__init__(f"{where}: {problem}", hint=hint)


# --------------------------------------------------------------------------------------------------
# What a script says


@dataclass(frozen=True)
class Fault:
    """One fault: its ``kind``, its trigger (``at`` seconds after the first LOGIN, or ``after_frames``) and
    the kind's parameters (see the module docstring; unused ones keep their defaults)."""

    kind: str
    at: float | None = None
    after_frames: int | None = None
    code: int = 0
    """0: the kind's default (1011 for ``drop``, 8005 for ``refuse_login``)."""
    reason: str = ""
    abort: bool = False
    seconds: float = 0.0
    count: int = 0
    """0: the kind's default (2 for ``reorder``, else 1)."""
    return_code: int = RC_ERROR
    message: str | None = None
    frame: str = "not_json"
    bytes_per_second: int = 0
    drop: bool = False

    def __post_init__(self) -> None:
        """Fill in the kind's defaults and check every value as the TOML parser does (ValueError)."""
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if (self.at is None) == (self.after_frames is None):
            raise ValueError("a fault needs exactly one trigger: at (seconds) or after_frames")
        if self.at is not None and not (math.isfinite(self.at) and self.at >= 0):
            raise ValueError(f"at must be seconds >= 0, not {self.at!r}")
        if self.after_frames is not None and self.after_frames < 0:
            raise ValueError(f"after_frames must be >= 0, not {self.after_frames!r}")
        if self.code == 0:
            object.__setattr__(self, "code", {"drop": 1011, "refuse_login": 8005}.get(self.kind, 0))
        if self.count == 0:
            object.__setattr__(self, "count", 2 if self.kind == "reorder" else 1)
        for key, (check, hint) in KINDS[self.kind].items():
            value = getattr(self, key)
            if value is None:
                continue
            try:
                check(value)
            except ValueError:
                raise ValueError(f"{self.kind}: bad {key}={value!r}; {key} must be {hint}") from None

    def describe(self) -> str:
        """A short text for the log: the kind and the parameters that matter for it."""
        parts = [f"{k}={getattr(self, k)!r}" for k in KINDS[self.kind]]
        return f"{self.kind}({', '.join(parts)})" if parts else self.kind

    @property
    def trigger(self) -> str:
        return f"at {self.at:g} s" if self.at is not None else f"after {self.after_frames} frames"


def parse_duration(value: object) -> float:
    """``"5s"``, ``"250ms"``, ``"1.5m"``, ``"1h"`` or a number of seconds -> seconds (>= 0). ValueError else."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", value)
        if m is None:
            raise ValueError("not a duration")
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[m.group(2)]
    else:
        raise ValueError("not a duration")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("not a duration")
    return seconds


# Each kind's keys (beyond ``kind`` and the trigger): name -> (checker, hint). A checker returns the
# converted value or raises ValueError.


def _int_in(lo: int, hi: int) -> Any:
    def check(v: object) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError
        return v

    return check


def _one_of(*choices: Any) -> Any:
    def check(v: object) -> Any:
        if isinstance(v, bool) or v not in choices:
            raise ValueError
        return v

    return check


def _text(limit: int) -> Any:
    def check(v: object) -> str:
        if not isinstance(v, str) or len(v.encode("utf-8")) > limit:
            raise ValueError
        return v

    return check


def _flag(v: object) -> bool:
    if not isinstance(v, bool):
        raise ValueError
    return v


def _positive_seconds(v: object) -> float:
    s = parse_duration(v)
    if s <= 0:
        raise ValueError
    return s


_CLOSE_CODE = (_int_in(1000, 4999), "an integer close code from 1000 to 4999, e.g. code = 1011")
_SECONDS = (_positive_seconds, 'a duration > 0, e.g. seconds = "3s" or seconds = 0.5')
_COUNT = (_int_in(1, 1_000_000), "a whole number >= 1, e.g. count = 3")

KINDS: Final[dict[str, dict[str, tuple[Any, str]]]] = {
    "drop": {
        "code": _CLOSE_CODE,
        "reason": (_text(123), 'a string of at most 123 bytes, e.g. reason = "server restart"'),
        "abort": (_flag, "true (cut the TCP connection, no close frame) or false"),
    },
    "kick": {},
    "stall": {"seconds": _SECONDS},
    "no_pings": {"seconds": _SECONDS},
    "ignore_echoes": {},
    "expire_token": {"drop": (_flag, "true (also close every connection) or false")},
    "refuse_login": {
        "count": _COUNT,
        "code": (_int_in(1, 99_999), "the REST auth code put in the refusal, e.g. code = 8005"),
    },
    "reject_reg": {
        "count": _COUNT,
        "return_code": (_one_of(*REG_MESSAGES), "one of 1, 105110, 105115, 105118"),
        "message": (_text(200), 'a string, e.g. message = "등록 종목수 초과"'),
    },
    "malformed": {
        "count": _COUNT,
        "frame": (_one_of(*MALFORMED), "one of " + ", ".join(f'"{m}"' for m in MALFORMED)),
    },
    "duplicate": {"count": _COUNT},
    "reorder": {"count": (_int_in(2, 1_000_000), "a whole number >= 2, e.g. count = 5")},
    "slow": {
        "seconds": _SECONDS,
        "bytes_per_second": (_int_in(1, 10**12), "a whole number of bytes per second >= 1, e.g. 20000"),
    },
    "burst": {"seconds": _SECONDS},
}
"""Every fault kind and its keys: key -> (checker, what a good value looks like)."""

_REQUIRED_KEYS: Final = {"stall": {"seconds"}, "no_pings": {"seconds"}, "slow": {"seconds", "bytes_per_second"},
                         "burst": {"seconds"}}


@dataclass(frozen=True)
class FaultScript:
    """A list of faults (pure data). Build one in Python, or with :meth:`load` / :meth:`parse`."""

    faults: tuple[Fault, ...] = ()
    source: str = "<faults>"

    def __len__(self) -> int:
        return len(self.faults)

    @classmethod
    def load(cls, path: str | Path) -> FaultScript:
        """Read a TOML fault script. Raises FaultScriptError (unreadable file, bad TOML, bad fault)."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise FaultScriptError(str(p), f"cannot read the fault script: {reason}",
                                   hint="give a UTF-8 TOML file of [[fault]] tables") from None
        return cls.parse(text, source=str(p))

    @classmethod
    def parse(cls, text: str, *, source: str = "<faults>") -> FaultScript:
        """Parse TOML text of ``[[fault]]`` tables. Raises FaultScriptError naming the line, key and fix."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            raise FaultScriptError(source, f"not valid TOML: {exc}", line=int(m.group(1)) if m else None,
                                   hint="see the README's Faults section for the syntax") from None
        extra = sorted(set(doc) - {"fault"})
        if extra:
            raise FaultScriptError(
                source, f"unknown top-level key {extra[0]!r}", line=_line_of_key(text, extra[0], None), key=extra[0],
                hint="a fault script holds only [[fault]] tables",
            )
        tables = doc.get("fault", [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise FaultScriptError(source, "'fault' must be an array of tables", line=_line_of_key(text, "fault", None),
                                   key="fault", hint="write each fault as a [[fault]] table")
        headers = _fault_header_lines(text)
        faults = [
            _parse_fault(table, source, text, headers[i] if i < len(headers) else None, i)
            for i, table in enumerate(tables)
        ]
        return cls(tuple(faults), source)


def _fault_header_lines(text: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), start=1) if re.match(r"\s*\[\[\s*fault\s*\]\]", line)]


def _line_of_key(text: str, key: str, after: int | None) -> int | None:
    """The line of ``key = ...`` (or of a ``[key]`` / ``[[key]]`` header) in the table starting at line
    ``after`` (None: the top level); ``after`` itself if not found."""
    start = after or 0
    k = re.escape(key)
    pattern = re.compile(rf"\s*(?:[\"']?{k}[\"']?\s*=|\[\[?\s*{k}\s*\]\]?)")
    for n, line in enumerate(text.splitlines(), start=1):
        if n > start and pattern.match(line):
            return n
        if n > start and after is not None and re.match(r"\s*\[", line):
            break  # the next table: the key is not in this one
    return after


def _parse_fault(table: dict[str, Any], source: str, text: str, header: int | None, index: int) -> Fault:
    def err(problem: str, key: str = "", hint: str = "") -> FaultScriptError:
        line = _line_of_key(text, key, header) if key else header
        return FaultScriptError(source, f"fault #{index + 1}: {problem}", line=line, key=key, hint=hint)

    kind = table.get("kind")
    if kind is None:
        raise err("no kind", hint=f'add a line kind = "..." with one of: {", ".join(KINDS)}')
    if not isinstance(kind, str) or kind not in KINDS:
        raise err(f"unknown kind {kind!r}", "kind", f"use one of: {', '.join(KINDS)}")
    spec = KINDS[kind]
    unknown = [k for k in table if k not in spec and k != "kind" and k not in _TRIGGERS]
    if unknown:
        allowed = ", ".join([*_TRIGGERS, *spec]) or "none"
        raise err(f"{kind} has no key {unknown[0]!r}", unknown[0], f"the keys of {kind} are: {allowed}")
    given = [t for t in _TRIGGERS if t in table]
    if len(given) != 1:
        raise err(
            "needs exactly one trigger" + (f", not both {' and '.join(given)}" if given else ""),
            given[-1] if given else "",
            'write at = "5s" (seconds after the first LOGIN) or after_frames = 100 (REAL frames sent)',
        )
    args: dict[str, Any] = {"kind": kind}
    if "at" in table:
        try:
            args["at"] = parse_duration(table["at"])
        except ValueError:
            raise err(f"bad at = {table['at']!r}", "at",
                      'give the time after the first LOGIN, e.g. at = "5s", "250ms", "2m" or 1.5') from None
    else:
        v = table["after_frames"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise err(f"bad after_frames = {v!r}", "after_frames", "give a whole number >= 0, e.g. after_frames = 100")
        args["after_frames"] = v
    missing = sorted(_REQUIRED_KEYS.get(kind, set()) - set(table))
    if missing:
        raise err(f"{kind} needs {missing[0]}", hint=f"add {missing[0]} = ...: {spec[missing[0]][1]}")
    for key, (check, hint) in spec.items():
        if key not in table:
            continue
        try:
            args[key] = check(table[key])
        except ValueError:
            raise err(f"bad {key} = {table[key]!r}", key, f"{key} must be {hint}") from None
    if kind == "drop" and args.get("abort") and "code" in args:
        raise err("abort = true sends no close frame, so it takes no code", "code",
                  "remove code, or remove abort to close with that code")
    return Fault(**args)


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
    """Fires a :class:`FaultScript`'s faults on a :class:`replay.server.Server`; made by the server.

    The server calls the hooks (:meth:`intercept`, :meth:`hold_pings`, :meth:`send`) only when it has a
    runner, and runs :meth:`run` as a task while it serves. :meth:`fire` fires a fault now (for tests).
    """

    def __init__(self, script: FaultScript, server: Server) -> None:
        self.script = script
        self.server = server
        self.fired: list[FiredFault] = []
        """Every fault that fired, in order."""
        self.first_login: float | None = None
        self._clients: dict[_Client, _PerClient] = {}
        self._reject_reg: list[Fault] = []  # each with its own count left, in order
        self._reject_left: list[int] = []
        self._refuse: list[tuple[int, int]] = []  # [auth code, count left]
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
        clients = [c for c in server._clients if c.session.state is not ServerState.CLOSED]
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

    async def _apply(self, f: Fault, clients: list[_Client]) -> None:
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
                        c.outbox.extendleft(reversed(st.burst))
                        st.burst.clear()
                        c.wake.set()
            log.info("fault %s ended (+%.3f s after the first LOGIN)", f.kind,
                     clock() - self.first_login if self.first_login is not None else 0.0)

    def _state(self, client: _Client) -> _PerClient:
        st = self._clients.get(client)
        if st is None:
            # forget connections that are gone (their state is of no use any more)
            for gone in [c for c in self._clients if c not in self.server._clients]:
                del self._clients[gone]
            st = self._clients[client] = _PerClient()
        return st

    def _malformed(self, what: str, client: _Client) -> str:
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

    def intercept(self, client: _Client, message: str | bytes) -> bool:
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

    async def hold_pings(self, client: _Client) -> None:
        """PING timer hook: wait while a ``stall`` or ``no_pings`` window is open."""
        clock = self.server.clock
        while True:
            until = max(self._stall_until, self._no_pings_until)
            if clock() >= until:
                return
            await asyncio.sleep(until - clock())

    async def send(self, client: _Client, text: str) -> None:
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
                client.outbox.extendleft(st.reordered)  # extendleft reverses: the last one goes first
                st.reordered.clear()
                client.wake.set()
            return
        times = 1
        if st is not None and real and st.duplicate > 0:
            st.duplicate -= 1
            times = 2
        for _ in range(times):
            await self._out(client, text)

    async def _out(self, client: _Client, text: str) -> None:
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


def script_of(faults: Iterable[Fault] | FaultScript | None) -> FaultScript | None:
    """``faults`` as a FaultScript (a list of :class:`Fault` is wrapped), or None."""
    if faults is None or isinstance(faults, FaultScript):
        return faults
    return FaultScript(tuple(faults))


def summary(script: FaultScript) -> Sequence[str]:
    """One line per fault, for a banner: ``#1 at 5 s: kick``."""
    return [f"#{i + 1} {f.trigger}: {f.describe()}" for i, f in enumerate(script.faults)]
