"""The seeded, structure-aware fuzz generator of the reliability suite, and the loop that runs its cases.

Cases start from valid messages (the simulator's 0D/0E frames, the official examples of
``/work/shared/spec/realtime-types.json`` when present, every envelope of docs/protocol.md section 1 both
ways) and apply one to three mutations, on the bytes (flip a bit, set a byte to a JSON metacharacter,
truncate, delete, duplicate or insert a range, splice two messages) or on the JSON tree (a value of
the wrong type, a huge number, a wrong sign, unicode digits, lone surrogates, deep nesting, a key
dropped, duplicated or renamed), re-encoded compact or spaced. A few cases stay valid, so that the
properties of the accepting paths are exercised too.

Every run is reproducible: the cases of target ``T`` come from ``random.Random(f"{seed}/{T}/{i}")``,
with ``seed`` = ``$KIWOOM_TAPE_FUZZ_SEED`` (default :data:`CI_SEED`, the one CI runs).
``$KIWOOM_TAPE_FUZZ_CASES`` scales the total (default :data:`DEFAULT_CASES`). :func:`run_cases` fails a
test on any exception a target does not document, naming the seed, the case and the input.
"""

from __future__ import annotations

import json
import os
import random
import re
import traceback
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.schemas.protocol import (
    RC_ITEM_CAP,
    RC_REG_RATE,
    SYSTEM_KICKED,
    SYSTEM_NO_HEARTBEAT,
    SYSTEM_NO_LOGIN,
    ack,
    encode_real_frame,
    encode_real_row,
    login,
    login_failed,
    login_ok,
    reg,
    system,
)

CI_SEED = 20261202
DEFAULT_CASES = 100_000
"""Generated cases per run over all targets (the issue's floor); each target gets a fixed share."""
SPEC = Path("/work/shared/spec/realtime-types.json")


def seed() -> int:
    """The run's seed: ``$KIWOOM_TAPE_FUZZ_SEED``, else :data:`CI_SEED`."""
    return int(os.environ.get("KIWOOM_TAPE_FUZZ_SEED", CI_SEED))


def cases(share: float, minimum: int = 50) -> int:
    """This target's number of cases: ``share`` of ``$KIWOOM_TAPE_FUZZ_CASES`` (default 100,000)."""
    total = int(os.environ.get("KIWOOM_TAPE_FUZZ_CASES", DEFAULT_CASES))
    return max(minimum, round(total * share))


T = TypeVar("T")
FAILURES: list[str] = []
"""``target: seed, case`` of every case that failed this session (the reliability summary prints them)."""


def run_cases(
    target: str,
    n: int,
    make: Callable[[random.Random], T],
    check: Callable[[T], None],
    documented: tuple[type[BaseException], ...] = (),
) -> int:
    """Run ``n`` cases of ``target``: ``check(make(rng))``; returns how many cases raised a documented error.

    ``documented`` are the exceptions the target's contract allows. Any other exception, a failed
    property assertion included, fails the test with the seed, the case number and the input (whole up
    to 20,000 characters); ``make(random.Random(f"{seed}/{target}/{case}"))`` makes that input again.
    """
    s = seed()
    allowed = 0
    for i in range(n):
        case = make(random.Random(f"{s}/{target}/{i}"))
        try:
            check(case)
        except documented:
            allowed += 1
        except Exception as exc:
            failure = exc
            break
    else:
        return allowed
    shown = repr(case)
    FAILURES.append(f"{target}: KIWOOM_TAPE_FUZZ_SEED={s}, case {i}, {type(failure).__name__}")
    pytest.fail(
        f"fuzz target {target!r}, seed {s} (KIWOOM_TAPE_FUZZ_SEED), case {i}: "
        f"{type(failure).__name__}: {failure}\ninput ({len(shown)} chars): {shown[:20_000]}\n"
        + "".join(traceback.format_exception(failure)[-6:]),
        pytrace=False,
    )


# --------------------------------------------------------------------------------------------------
# Seeds: valid messages


@cache
def sim_rows() -> tuple[tuple[str, str, str], ...]:
    """(type, item, row text) of simulated rows: >= 40 0D rows from 09:00:10, >= 20 0E rows from 16:00:10 KST."""
    items = ["005930", "005930_NX", "069500"]
    out: list[tuple[str, str, str]] = []
    for start, tag, want in ((9 * 3600 + 10, "0D", 40), (16 * 3600 + 10, "0E", 20)):
        market = SimulatedMarket(seed=7, items=items, start=start)
        rows: list[tuple[str, str, str]] = []
        for step in range(1, 61):  # however often the simulator updates, up to 5 minutes of it
            rows += [(r.type, r.item, r.text) for t in market.advance(start + 5.0 * step) for r in t.rows]
            if sum(r[0] == tag for r in rows) >= want:
                break
        out += rows
    return tuple(out)


@cache
def official_rows() -> tuple[tuple[str, str, str], ...]:
    """The 0D and 0E examples of the official spec, as wire rows (empty if the spec is absent)."""
    if not SPEC.exists():
        return ()
    types = json.loads(SPEC.read_text(encoding="utf-8"))["types"]
    out = []
    for tag in ("0D", "0E"):
        ex, meta = types[tag].get("example"), types[tag].get("example_meta") or {}
        if isinstance(ex, dict):
            values = json.dumps(ex, ensure_ascii=False, separators=(",", ":"))
            out.append((tag, str(meta.get("item", "005930")), encode_real_row(tag, str(meta.get("item", "005930")),
                                                                              values)))
    return tuple(out)


@cache
def server_seeds() -> tuple[bytes, ...]:
    """Valid server -> client messages: REAL frames of 1-3 rows, LOGIN replies, acks, PING, SYSTEM."""
    rows = [r[2] for r in sim_rows() + official_rows()]
    book = [r[2] for r in sim_rows() if r[0] == "0D"]
    after = [r[2] for r in sim_rows() if r[0] == "0E"]
    frames = [encode_real_frame(book[i : i + k]) for k in (1, 2, 3) for i in range(0, min(len(book), 40), k)]
    frames += [encode_real_frame(after[i : i + k]) for k in (1, 2) for i in range(0, min(len(after), 20), k)]
    frames += [encode_real_frame([r]) for r in rows[-4:]]
    frames += [encode_real_frame([book[0], after[0]])]
    control = [
        login_ok(), login_failed(), login_failed(8031, "[CODE=8031, 토큰이 만료되었습니다]"),
        ack("REG"), ack("REMOVE"), ack("REG", RC_REG_RATE, "해당 TRNM 허용 요청 건수 초과"),
        ack("REG", RC_ITEM_CAP, "등록 허용 개수(200) 초과"), ack("REG", 1, "x"), '{"trnm":"PING"}',
        system(*SYSTEM_KICKED), system(*SYSTEM_NO_HEARTBEAT), system(*SYSTEM_NO_LOGIN),
        '{"trnm":"SYSTEM","return_code":"0","return_msg":"ok"}', '{"trnm":"CNSRLST","data":[]}',
    ]
    control *= max(1, len(frames) // len(control))  # as many control messages as REAL frames
    return tuple(f.encode("utf-8") for f in frames + control)


@cache
def client_seeds() -> tuple[bytes, ...]:
    """Valid client -> server messages: LOGIN, REG (refresh 0/1, groups), REMOVE, PING, an unknown trnm."""
    msgs = [
        login("tok"), reg(["005930"], ["0D"]), reg(["005930", "000660_NX"], ["0D", "0E"], grp_no="2"),
        reg(["069500"], ["0E"], refresh="0"), reg(["005930"], ["0D"], trnm="REMOVE"), '{"trnm":"PING"}',
        '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":"005930","type":"0D"}]}',
        '{"trnm":"REG","data":[{"item":[""],"type":["0B"]}]}', '{"trnm":"CNSRLST"}',
    ]
    return tuple(m.encode("utf-8") for m in msgs)


# --------------------------------------------------------------------------------------------------
# Scalars that break parsers

NASTY_STRINGS = [
    "", "0", "-0", "+0", "+", "-", "+-5", "-+5", "++5", " 67300", "67300 ", "5.0", "1e3", "1E3", ".5", "5.",
    "05", "+05", "0x10", "5_0", "inf", "-inf", "nan", "NaN", "Infinity", "١٢٣", "１２３", "²", "가나다",
    "\u0000", "\x7f", "\ud800", "\udfff", "\U0001f600", "9" * 19, "9" * 40, "9" * 5000, "-" + "9" * 20,
    "2147483648", "-2147483648", "2147483647", "9223372036854775808", "-9223372036854775809", "128", "-129",
    "235959", "240000", "246060", "16520", "1652077", "+165207", "REAL", "PING", "0D", "0E", "005930_NX",
    "[CODE=8005]", "CODE=99999999999999999999", "[CODE=" + "9" * 5000 + "]", '"', "\\", "{", "]",
]
NASTY_NUMBERS: list[Any] = [
    0, -1, 1, 127, 128, -129, 2**31 - 1, 2**31, -(2**31), 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30),
    0.0, -0.0, 0.5, 1e300, -1e300, 5.0, 123456.0, 1e16, True, False, None,
]


def nasty_scalar(rng: random.Random) -> Any:
    """A JSON scalar that is wrong in some way for some reader."""
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(NASTY_STRINGS)
    if roll < 0.75:
        return rng.choice(NASTY_NUMBERS)
    if roll < 0.85:
        return rng.randint(-(2**70), 2**70)
    if roll < 0.92:
        return "".join(rng.choice("+-0123456789. eE_") for _ in range(rng.randint(1, 12)))
    return "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0x80, 0x2FFF), rng.randint(0xAC00, 0xD7A3),
                                   rng.randint(0xD800, 0xDFFF), rng.randint(0x10000, 0x10FFFF)]))
                   for _ in range(rng.randint(1, 6)))


def nasty_value(rng: random.Random) -> Any:
    """A scalar, or a list or object around one (the wrong type where a string is expected)."""
    roll = rng.random()
    if roll < 0.85:
        return nasty_scalar(rng)
    if roll < 0.92:
        return [nasty_scalar(rng) for _ in range(rng.randint(0, 3))]
    return Obj([(str(rng.choice(NASTY_STRINGS)), nasty_scalar(rng)) for _ in range(rng.randint(0, 3))])


# --------------------------------------------------------------------------------------------------
# The JSON tree, with duplicate keys allowed


class Obj(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs, so that a key can appear twice."""


class Raw(str):
    """Text the encoder emits verbatim (deep nesting, bad escapes)."""


def _load(data: bytes) -> Any:
    return json.loads(data, object_pairs_hook=Obj)


def _dump(node: Any, spaced: bool) -> str:
    colon, comma = (": ", ", ") if spaced else (":", ",")
    if isinstance(node, Raw):
        return str(node)
    if isinstance(node, Obj):
        return "{" + comma.join(_dump_str(k) + colon + _dump(v, spaced) for k, v in node) + "}"
    if isinstance(node, list):
        return "[" + comma.join(_dump(v, spaced) for v in node) + "]"
    if isinstance(node, str):
        return _dump_str(node)
    if isinstance(node, float) and node != node:
        return "NaN"
    return json.dumps(node)


def _dump_str(s: str) -> str:
    if s.isascii() or not _SURROGATE.search(s):
        return _encode_str(s)
    return json.dumps(s)  # a lone surrogate: as JSON's \u escape (raw, it would not be UTF-8)


_SURROGATE = re.compile("[\ud800-\udfff]")
_encode_str: Callable[[str], str] = json.encoder.encode_basestring


def _containers(node: Any, out: list[Any]) -> list[Any]:
    if isinstance(node, list):  # Obj is a list too
        out.append(node)
        for child in (v for _, v in node) if isinstance(node, Obj) else node:
            _containers(child, out)
    return out


def _mutate_tree(rng: random.Random, root: Any) -> Any:
    """Change one place of the tree (in place where possible); returns the root."""
    holders = _containers(root, [])
    if not holders:
        return nasty_value(rng)
    node = rng.choice(holders)
    if not node:
        node.append(("k", nasty_value(rng)) if isinstance(node, Obj) else nasty_value(rng))
        return root
    i = rng.randrange(len(node))
    how = rng.choice(("value", "value", "value", "sign", "drop", "dup", "rename", "deep", "swap", "huge"))
    if isinstance(node, Obj):
        key, old = node[i]
        if how == "drop":
            del node[i]
        elif how == "dup":
            node.insert(rng.randrange(len(node) + 1), (key, rng.choice([old, nasty_value(rng)])))
        elif how == "rename":
            node[i] = (rng.choice([key.upper(), " " + key, key + "\u0000", "+" + key, str(nasty_scalar(rng))]), old)
        else:
            node[i] = (key, _new_value(rng, how, old))
    elif how == "drop":
        del node[i]
    elif how == "dup":
        node.insert(i, node[i])
    else:
        node[i] = _new_value(rng, how, node[i])
    return root


def _new_value(rng: random.Random, how: str, old: Any) -> Any:
    if how == "sign" and isinstance(old, str):
        return rng.choice(["-", "+", "+-", "--"]) + old.lstrip("+-")
    if how == "deep":
        d = rng.choice([2, 30, 200, 1000, 5000, 20_000])
        open_, close = rng.choice([("[", "]"), ('{"a":', "}")])
        return Raw(open_ * d + _dump(old if not isinstance(old, Raw) else 1, False) + close * rng.choice([d, d - 1]))
    if how == "swap":
        if isinstance(old, str):
            return rng.choice([[old], Obj([("v", old)]), None, len(old), old.encode("utf-8", "surrogatepass").hex()])
        return str(old) if not isinstance(old, list) else rng.choice(["", 0, None])
    if how == "huge":
        return rng.choice(["9" * rng.choice([20, 400, 5000]), 10 ** rng.choice([19, 40, 400]), 1e308,
                           "가" * rng.choice([100, 10_000])])
    return nasty_value(rng)


# --------------------------------------------------------------------------------------------------
# Byte mutations

_DIGITS = re.compile(rb"[0-9]+")
_META = b'{}[]",:\\+-.0 9eE\x00\x80\xff\t\n'


def _mutate_bytes(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    b = bytearray(data)
    n = len(b)
    how = rng.choice(("flip", "meta", "truncate", "delete", "dup", "insert", "splice", "unicode", "digits", "digits"))
    if n == 0:
        return bytes(rng.randbytes(rng.randint(0, 8)))
    i = rng.randrange(n)
    if how == "flip":
        b[i] ^= 1 << rng.randrange(8)
    elif how == "meta":
        b[i] = rng.choice(_META)
    elif how == "truncate":
        del b[i:]
    elif how == "delete":
        del b[i : i + rng.randint(1, 16)]
    elif how == "dup":
        j = min(n, i + rng.randint(1, 64))
        b[j:j] = b[i:j]
    elif how == "insert":
        b[i:i] = rng.randbytes(rng.randint(1, 8))
    elif how == "digits":  # a number grown huge, or given a sign, wherever it is (values, codes in texts)
        m = _DIGITS.search(data, i) or _DIGITS.search(data)
        if m is not None:
            d = m.group()
            new = rng.choice([d * rng.choice((3, 300, 5000)), b"-" + d, b"+" + d, b"9" * 19, b"0" + d, d + b".5"])
            b[m.start() : m.end()] = new[:6000]
    elif how == "splice":
        other = rng.choice(others)
        b = b[:i] + other[rng.randrange(len(other) + 1) :]
    else:
        s = rng.choice(["가", "\u00a0", "\ufeff", "\U0001f600", "١", "\\ud800", "\\u0000", "\\u0035", "\\"])
        b[i:i] = s.encode("utf-8")
    return bytes(b)


_PAIR = re.compile(rb'"((?:[^"\\]|\\.)*)"[ \t\r\n]*:[ \t\r\n]*("(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false|null)')
"""A key and its scalar value in JSON text: where a large frame is mutated without decoding it."""


def _mutate_pair(rng: random.Random, data: bytes) -> bytes:
    """Change one ``"key": value`` of the text (value, sign, type, nesting, or drop/duplicate/rename it)."""
    m = _PAIR.search(data, rng.randrange(len(data) + 1)) or _PAIR.search(data)
    if m is None:
        return data
    key, value = m.group(1), m.group(2)
    how = rng.choice(("value", "value", "value", "sign", "drop", "dup", "rename", "deep", "swap", "huge"))
    if how == "drop":
        a, b = m.span()
        if data[b : b + 1] == b",":
            b += 1
        elif data[a - 1 : a] == b",":
            a -= 1
        return data[:a] + data[b:]
    if how == "dup":
        new = _dump(nasty_value(rng), False).encode("utf-8", "surrogatepass") if rng.random() < 0.7 else value
        return data[: m.end()] + b',"' + key + b'":' + new + data[m.end() :]
    if how == "rename":
        k2 = _dump_str(rng.choice([key.decode("utf-8", "replace").upper(), " " + key.decode("utf-8", "replace"),
                                   "+" + key.decode("utf-8", "replace"), str(nasty_scalar(rng))]))
        return data[: m.start(1) - 1] + k2.encode("utf-8", "surrogatepass") + data[m.end(1) + 1 :]
    try:
        old: Any = json.loads(value)
    except ValueError:
        old = value.decode("utf-8", "replace")
    new = _dump(_new_value(rng, how, old), False).encode("utf-8", "surrogatepass")
    return data[: m.start(2)] + new + data[m.end(2) :]


def mutate(rng: random.Random, seeds: Sequence[bytes], valid_share: float = 0.08) -> bytes:
    """A seed message with 1-3 mutations (tree, key/value pair or bytes); unchanged with probability ``valid_share``."""
    data = rng.choice(seeds)
    if rng.random() < valid_share:
        return data
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        roll = rng.random()
        if roll < 0.15 and len(data) < 1500:
            try:
                tree = _load(data)
            except (ValueError, RecursionError):
                data = _mutate_bytes(rng, data, seeds)
                continue
            text = _dump(_mutate_tree(rng, tree), spaced=rng.random() < 0.2)
            data = text.encode("utf-8", "surrogatepass")
        elif roll < 0.55:
            data = _mutate_pair(rng, data)
        else:
            data = _mutate_bytes(rng, data, seeds)
    return data


def as_received(rng: random.Random, data: bytes) -> str | bytes:
    """What a driver may hand a session: mostly bytes; sometimes the text (lone surrogates kept)."""
    if rng.random() < 0.3:
        return data.decode("utf-8", "surrogateescape")
    return data
