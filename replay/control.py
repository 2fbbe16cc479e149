"""The replay's HTTP control endpoint, ``/control`` on the server's own port: commands and their parsing.

``GET /control`` answers the status; ``POST /control`` runs one command, given as a JSON body or as
query parameters, and answers the status after it (both ``application/json``)::

    curl -s http://127.0.0.1:10000/control
    curl -s -X POST http://127.0.0.1:10000/control -d '{"cmd": "pause"}'
    curl -s -X POST 'http://127.0.0.1:10000/control?cmd=step&n=5'
    curl -s -X POST http://127.0.0.1:10000/control -d '{"cmd": "seek", "to": "09:30:00"}'
    curl -s -X POST http://127.0.0.1:10000/control -d '{"cmd": "speed", "value": "max"}'

=========================  ==========================================================================
command                    effect
=========================  ==========================================================================
``status``                 nothing; the answer is the status
``pause``                  the replay clock stops; no frame goes out until ``resume`` or ``step``
``resume``                 the clock runs again from where it stopped (also: start now, skipping the
                           rest of the start delay)
``step`` ``n`` (1)         pause, then send the next ``n`` frames at once; stays paused
``seek`` ``to``            the clock jumps to ``to`` (``HH:MM[:SS[.ffffff]]``, KST, on the replayed
                           date, clamped to the ``--from``/``--to`` window); pause/play is kept
``speed`` ``value``        ``value`` x recorded speed (a number > 0), or ``"max"``; from the position
                           the clock has reached
=========================  ==========================================================================

Commands take effect when the request is read: a frame already handed to a client's socket still
arrives. Errors answer 400 with ``{"error": "..."}``; a server whose source has no controls (the
simulated market) answers the status with its ``"server"`` part only, and 404 to a command.

The ``"server"`` part of the status holds the server's counters, ``types_served`` (the REAL types the
source has data of, docs/protocol.md section 3; null if it cannot tell) and ``registered_without_data``
(``[{"type": "0H", "items": ["005930"]}, ...]``: what the open connections registered of other types,
acknowledged as Kiwoom does but never fed), ``market_time`` (the source's market clock in seconds since KST
midnight, null if it has none: the simulated market's runs behind the wall clock x speed on a busy machine) and
``items_served`` (how many items rows were sent of so far), ``logged_in`` (open connections past their LOGIN) and
``backlog`` (bytes queued for the clients, in the outboxes and the transports, not yet written to their sockets: 0
once a slow client caught up). The endpoint is plain HTTP/1.1 on the WebSocket port
and binds where the server binds (loopback by default); the Kiwoom protocol on ``/api/dostk/websocket`` is untouched.

``POST`` is answered by the server's own small HTTP reader (the one that serves ``/oauth2/token``);
``GET`` (no ``Upgrade`` header) by websockets' ``process_request`` hook.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

import msgspec

__all__ = [
    "CONTROL_PATH",
    "Command",
    "ControlError",
    "Controllable",
    "Pause",
    "Resume",
    "Seek",
    "SetSpeed",
    "Status",
    "Step",
    "format_time_of_day",
    "handle_http",
    "parse_command",
    "parse_time_of_day",
]

CONTROL_PATH: Final = "/control"
COMMANDS: Final = ("status", "pause", "resume", "step", "seek", "speed")
MAX_SPEED: Final = 10_000.0

_TOD = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?")


class ControlError(ValueError):
    """A control command that cannot be run; the message says what to send instead."""


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class Pause:
    pass


@dataclass(frozen=True, slots=True)
class Resume:
    pass


@dataclass(frozen=True, slots=True)
class Step:
    n: int = 1


@dataclass(frozen=True, slots=True)
class Seek:
    seconds: float
    """KST seconds since midnight of the replayed date."""


@dataclass(frozen=True, slots=True)
class SetSpeed:
    speed: float | None
    """Recorded seconds per real second; None = as fast as the slowest client reads."""


Command = Status | Pause | Resume | Step | Seek | SetSpeed


@runtime_checkable
class Controllable(Protocol):
    """A frame source the ``/control`` endpoint can drive (``kiwoom_tape.replay.recorded.RecordedSource``)."""

    def status(self) -> dict[str, Any]: ...

    def apply(self, command: Command) -> None:
        """Run ``command`` now. Raises ControlError if it cannot be run."""
        ...


def parse_time_of_day(value: str | float | int) -> float:
    """``"09:30"``, ``"09:30:05"`` or ``"09:30:05.250"`` (or seconds) -> seconds since midnight.

    Raises ControlError for anything else, or a time outside 00:00:00-23:59:59.999999999.
    """
    if isinstance(value, bool):
        raise ControlError(f"{value!r} is not a time of day; write HH:MM[:SS[.ffffff]], e.g. 09:30:00")
    if isinstance(value, int | float):
        if not (0 <= value < 86_400 and math.isfinite(value)):  # the range first: isfinite(10**400) overflows
            raise ControlError(f"{value!r} seconds is not a time of day (0 <= seconds < 86400)")
        return float(value)
    m = _TOD.fullmatch(str(value).strip())
    if not m:
        raise ControlError(f"{str(value)[:40]!r} is not a time of day; write HH:MM[:SS[.ffffff]], e.g. 09:30:00")
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if h > 23 or mi > 59 or s > 59:
        raise ControlError(f"{value!r} is not a valid time of day; use 00:00:00 to 23:59:59")
    frac = float("0." + m.group(4)) if m.group(4) else 0.0
    return h * 3600 + mi * 60 + s + frac


def format_time_of_day(seconds: float) -> str:
    """Seconds since midnight -> ``HH:MM:SS.mmm``."""
    ms = round(seconds * 1000)
    s, ms = divmod(ms, 1000)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}.{ms:03d}"


def _speed(value: Any) -> float | None:
    if isinstance(value, str) and value.strip().lower() == "max":
        return None
    try:
        speed = float(value)
    except (TypeError, ValueError, OverflowError):
        speed = math.nan
    if isinstance(value, bool) or not (0 < speed <= MAX_SPEED):
        raise ControlError(f'speed {str(value)[:20]!r} is not a number in (0, {MAX_SPEED:g}] or "max"')
    return speed


def _count(value: Any) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        n = 0
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()) or not 1 <= n <= 1_000_000:
        raise ControlError(f"step n={str(value)[:20]!r} must be a whole number of frames from 1 to 1000000")
    return n


def parse_command(args: Mapping[str, Any]) -> Command:
    """``{"cmd": "step", "n": 5}`` -> ``Step(5)``. Raises ControlError naming the valid commands."""
    cmd = args.get("cmd", "status")
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        raise ControlError(
            f"unknown cmd {str(cmd)[:20]!r}; use one of {', '.join(COMMANDS)} "
            '(e.g. {"cmd": "seek", "to": "09:30:00"})'
        )
    if cmd == "status":
        return Status()
    if cmd == "pause":
        return Pause()
    if cmd == "resume":
        return Resume()
    if cmd == "step":
        return Step(_count(args.get("n", 1)))
    if cmd == "seek":
        if "to" not in args:
            raise ControlError('seek needs "to": a KST time of day, e.g. {"cmd": "seek", "to": "09:30:00"}')
        return Seek(parse_time_of_day(args["to"]))
    if "value" not in args:
        raise ControlError('speed needs "value": a number or "max", e.g. {"cmd": "speed", "value": 10}')
    return SetSpeed(_speed(args["value"]))


def _arguments(query: str, body: bytes) -> dict[str, Any]:
    args: dict[str, Any] = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    if body.strip():
        try:
            obj = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deeply
            raise ControlError('the body is not JSON; send e.g. {"cmd": "step", "n": 5}') from None
        if not isinstance(obj, dict):
            raise ControlError('the body must be a JSON object, e.g. {"cmd": "pause"}')
        args.update(obj)
    return args


def handle_http(
    target: object, method: str, query: str, body: bytes, extra: Mapping[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """Answer one HTTP request to :data:`CONTROL_PATH`: (status code, JSON object).

    ``target`` is the server's source: anything with ``status()`` and ``apply()`` (:class:`Controllable`);
    any other answers only the status, ``{"server": extra}``. ``extra`` (e.g. the server's client count) is
    merged into the status under ``"server"``.
    """
    try:
        args = _arguments(query, body)
        command = parse_command(args)
        if method == "GET" and not isinstance(command, Status):
            raise ControlError(f"GET only reads the status; send {args.get('cmd')!r} with POST")
        if method not in ("GET", "POST"):
            return 405, {"error": f"use GET {CONTROL_PATH} for the status, POST {CONTROL_PATH} for commands"}
        if not isinstance(target, Controllable):
            if not isinstance(command, Status):
                return 404, {"error": f"this server's source has no controls, only a status (GET {CONTROL_PATH}); "
                             "the commands drive a recorded replay (replay DIR)"}
            return 200, {"server": dict(extra or {})}
        target.apply(command)
    except ControlError as exc:
        return 400, {"error": str(exc)}
    status = target.status()
    if extra:
        status["server"] = dict(extra)
    return 200, status
