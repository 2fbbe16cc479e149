"""The fault script: its faults as data, and the pure parser of its TOML (the format is in
:mod:`kiwoom_tape.replay.faults`).

:meth:`FaultScript.parse` / :meth:`FaultScript.load` read a script; a bad one raises
:class:`FaultScriptError` naming the file, the line, the key and the fix. No I/O but reading the file.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kiwoom_tape.replay.control import format_time_of_day, parse_time_of_day
from kiwoom_tape.schemas.errors import KiwoomTapeError
from kiwoom_tape.schemas.protocol import RC_ERROR, RC_ITEM_CAP, RC_REG_RATE

__all__ = [
    "KINDS", "MALFORMED", "REG_MESSAGES", "Fault", "FaultScript", "FaultScriptError", "parse_duration", "script_of",
    "summary",
]


RC_ITEM_CAP_2: Final = 105118
REG_MESSAGES: Final = {
    RC_ERROR: "등록 종목수 초과",
    RC_REG_RATE: "해당 TRNM 허용 요청 건수 초과",
    RC_ITEM_CAP: "등록 허용 개수(200) 초과",
    RC_ITEM_CAP_2: "등록 허용 개수(200) 초과",
}
"""The ``return_msg`` Kiwoom sends with each REG error code (docs/protocol.md 1.4)."""

MALFORMED: Final = ("not_json", "truncated", "unknown_trnm", "bad_row")
_TRIGGERS: Final = ("at", "after_frames", "market_time")


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
    """One fault: its ``kind``, its trigger (``at`` seconds after the first LOGIN, ``after_frames``, or
    ``market_time``: seconds since KST midnight on the source's market clock) and the kind's parameters
    (see :mod:`kiwoom_tape.replay.faults`; unused ones keep their defaults)."""

    kind: str
    at: float | None = None
    after_frames: int | None = None
    market_time: float | None = None
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
        if sum(t is not None for t in (self.at, self.after_frames, self.market_time)) != 1:
            raise ValueError("a fault needs exactly one trigger: at (seconds), after_frames or market_time")
        if self.market_time is not None and not (math.isfinite(self.market_time) and 0 <= self.market_time < 86_400):
            raise ValueError(f"market_time must be seconds since KST midnight, not {self.market_time!r}")
        if self.at is not None and not (math.isfinite(self.at) and self.at >= 0):
            raise ValueError(f"at must be seconds >= 0, not {self.at!r}")
        if self.after_frames is not None and self.after_frames < 0:
            raise ValueError(f"after_frames must be >= 0, not {self.after_frames!r}")
        if self.code == 0:
            code = {"drop": 1011, "refuse_login": 8005, "close_after_handshake": 1013}.get(self.kind, 0)
            object.__setattr__(self, "code", code)
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
        if self.at is not None:
            return f"at {self.at:g} s"
        if self.market_time is not None:
            return f"at market time {format_time_of_day(self.market_time)}"
        return f"after {self.after_frames} frames"


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
    "close_after_handshake": {
        "count": _COUNT,
        "code": _CLOSE_CODE,
        "reason": (_text(123), 'a string of at most 123 bytes, e.g. reason = "try again later"'),
        "abort": (_flag, "true (cut the TCP connection, no close frame) or false"),
    },
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


def _frame_count(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError("not a frame count")
    return v


_TRIGGER_VALUES: Final[dict[str, tuple[Any, str]]] = {
    "at": (parse_duration, 'the time after the first LOGIN, e.g. at = "5s", "250ms", "2m" or 1.5'),
    "after_frames": (_frame_count, "a whole number >= 0, e.g. after_frames = 100"),
    "market_time": (parse_time_of_day, 'a KST time of day on the market clock, e.g. market_time = "09:00:30"'),
}
"""Each trigger key: (its reader, raising ValueError; what a good value looks like)."""


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
            'write at = "5s" (seconds after the first LOGIN), after_frames = 100 (REAL frames sent) or '
            'market_time = "09:00:30" (the source\'s market clock, KST)',
        )
    args: dict[str, Any] = {"kind": kind}
    (trigger,) = given
    read, example = _TRIGGER_VALUES[trigger]
    try:
        args[trigger] = read(table[trigger])
    except ValueError:
        raise err(f"bad {trigger} = {table[trigger]!r}", trigger, f"give {example}") from None
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
    if kind in ("drop", "close_after_handshake") and args.get("abort") and "code" in args:
        raise err("abort = true sends no close frame, so it takes no code", "code",
                  "remove code, or remove abort to close with that code")
    return Fault(**args)



def script_of(faults: Iterable[Fault] | FaultScript | None) -> FaultScript | None:
    """``faults`` as a FaultScript (a list of :class:`Fault` is wrapped), or None."""
    if faults is None or isinstance(faults, FaultScript):
        return faults
    return FaultScript(tuple(faults))


def summary(script: FaultScript) -> Sequence[str]:
    """One line per fault, for a banner: ``#1 at 5 s: kick``."""
    return [f"#{i + 1} {f.trigger}: {f.describe()}" for i, f in enumerate(script.faults)]
