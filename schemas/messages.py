"""The Kiwoom real-time envelopes, inbound: one frozen class per message and the two decoders.

docs/protocol.md section 1 is the spec. :func:`decode_client_message` is what a server reads (LOGIN, REG,
REMOVE, PING), :func:`decode_server_message` what a client reads (LOGIN reply, acks, PING, REAL, SYSTEM);
both raise :class:`kiwoom_tape.schemas.errors.ProtocolError` for anything that is not a well-formed envelope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
from kiwoom_tape.schemas.errors import ProtocolError

_INT_TEXT = re.compile(r"[ \t]*-?[0-9]{1,18}[ \t]*")  # what int() surely parses (no "²", no 5000 digits)


@dataclass(frozen=True, slots=True)
class Subscription:
    """One ``data`` entry of REG/REMOVE: the cartesian product of items x types."""

    items: tuple[str, ...]
    types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Login:
    trnm: ClassVar[str] = "LOGIN"
    token: str


@dataclass(frozen=True, slots=True)
class Reg:
    trnm: ClassVar[str] = "REG"
    grp_no: str
    refresh: str
    data: tuple[Subscription, ...]


@dataclass(frozen=True, slots=True)
class Remove:
    """A REMOVE (docs/protocol.md 1.5). ``data`` None: the whole group (a REMOVE with no ``data``, as real
    clients send); a :class:`Subscription` with no ``items`` (``()``): its types for every item of the group."""

    trnm: ClassVar[str] = "REMOVE"
    grp_no: str
    data: tuple[Subscription, ...] | None


@dataclass(frozen=True, slots=True)
class Ping:
    trnm: ClassVar[str] = "PING"
    text: str


@dataclass(frozen=True, slots=True)
class LoginReply:
    trnm: ClassVar[str] = "LOGIN"
    return_code: int
    return_msg: str


@dataclass(frozen=True, slots=True)
class Ack:
    trnm: str
    return_code: int
    return_msg: str


@dataclass(frozen=True, slots=True)
class RealRow:
    type: str
    name: str
    item: str
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Real:
    trnm: ClassVar[str] = "REAL"
    rows: tuple[RealRow, ...]


@dataclass(frozen=True, slots=True)
class SystemMsg:
    trnm: ClassVar[str] = "SYSTEM"
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Unknown:
    trnm: str
    body: dict[str, Any]


Message = Login | Reg | Remove | Ping | LoginReply | Ack | Real | SystemMsg | Unknown

_decoder = msgspec.json.Decoder()


def _load(text: str | bytes) -> dict[str, Any]:
    try:
        obj = _decoder.decode(text)
    except (msgspec.DecodeError, UnicodeError) as exc:  # UnicodeEncodeError: str with lone surrogates
        raise ProtocolError(f"not JSON ({exc})", text) from None
    except RecursionError:
        raise ProtocolError("JSON nested too deeply", text) from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"expected a JSON object, got {type(obj).__name__}", text)
    trnm = obj.get("trnm")
    if not isinstance(trnm, str):
        raise ProtocolError("missing or non-string 'trnm'", text)
    return obj


def _str_field(obj: dict[str, Any], key: str, text: str | bytes, default: str | None = None) -> str:
    v = obj.get(key, default)
    if not isinstance(v, str):
        raise ProtocolError(f"'{key}' must be a string", text)
    return v


def _int_field(obj: dict[str, Any], key: str, text: str | bytes) -> int:
    v = obj.get(key)
    if isinstance(v, bool):
        raise ProtocolError(f"'{key}' must be an integer", text)
    if isinstance(v, int):
        return v
    if isinstance(v, str) and _INT_TEXT.fullmatch(v):  # SYSTEM variants send "0"
        return int(v)
    raise ProtocolError(f"'{key}' must be an integer", text)


def _subscriptions(
    obj: dict[str, Any], text: str | bytes, missing_item: tuple[str, ...] = ("",)
) -> tuple[Subscription, ...]:
    """The ``data`` list; an entry with no ``item`` key gets ``missing_item`` (REG: the account-level
    item ``""``; REMOVE: ``()``, every item)."""
    data = obj.get("data")
    if not isinstance(data, list) or not data:
        raise ProtocolError("'data' must be a non-empty list of {item, type}", text)
    out = []
    for entry in data:
        if not isinstance(entry, dict):
            raise ProtocolError("each 'data' entry must be an object", text)
        if "item" not in entry and not missing_item:
            items: Any = []
        else:
            items = entry.get("item", list(missing_item))
        types = entry.get("type")
        if isinstance(items, str):  # tolerate a bare string, as some clients send
            items = [items]
        if isinstance(types, str):
            types = [types]
        items = list(items) if isinstance(items, list) else items
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ProtocolError("'item' must be a list of strings", text)
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            raise ProtocolError("'type' must be a non-empty list of strings", text)
        out.append(Subscription(tuple(items) or (("",) if "item" in entry else missing_item), tuple(types)))
    return tuple(out)


def decode_client_message(text: str | bytes) -> Message:
    """What a server reads: LOGIN, REG, REMOVE, PING (an echo) or Unknown. Raises ProtocolError."""
    obj = _load(text)
    trnm = obj["trnm"]
    if trnm == "LOGIN":
        return Login(_str_field(obj, "token", text))
    if trnm == "REG":
        grp = _str_field(obj, "grp_no", text, "1")
        refresh = _str_field(obj, "refresh", text, "1")
        if refresh not in ("0", "1"):
            raise ProtocolError("'refresh' must be \"0\" or \"1\"", text)
        return Reg(grp, refresh, _subscriptions(obj, text))
    if trnm == "REMOVE":  # data is not required (docs/protocol.md 1.3): without it, the whole group
        grp = _str_field(obj, "grp_no", text, "1")
        if obj.get("data") is None:
            return Remove(grp, None)
        return Remove(grp, _subscriptions(obj, text, missing_item=()))
    if trnm == "PING":
        return Ping(text if isinstance(text, str) else text.decode("utf-8"))
    return Unknown(trnm, obj)


def decode_server_message(text: str | bytes) -> Message:
    """What a client reads: LOGIN reply, REG/REMOVE ack, PING, REAL, SYSTEM or Unknown.

    Raises ProtocolError for anything that is not a well-formed envelope. REAL rows must carry
    ``type``, ``item`` and an object ``values``; the values themselves are not checked here.
    """
    obj = _load(text)
    trnm = obj["trnm"]
    if trnm == "REAL":
        data = obj.get("data")
        if not isinstance(data, list):
            raise ProtocolError("REAL 'data' must be a list", text)
        rows = []
        for r in data:
            if not isinstance(r, dict):
                raise ProtocolError("REAL row must be an object", text)
            t, item, values = r.get("type"), r.get("item"), r.get("values")
            if not isinstance(t, str) or not isinstance(item, str) or not isinstance(values, dict):
                raise ProtocolError("REAL row needs string 'type', string 'item' and object 'values'", text)
            name = r.get("name", "")
            rows.append(RealRow(t, name if isinstance(name, str) else "", item, values))
        return Real(tuple(rows))
    if trnm == "PING":
        return Ping(text if isinstance(text, str) else text.decode("utf-8"))
    if trnm == "LOGIN":
        return LoginReply(_int_field(obj, "return_code", text), str(obj.get("return_msg", "")))
    if trnm in ("REG", "REMOVE"):
        return Ack(trnm, _int_field(obj, "return_code", text), str(obj.get("return_msg", "")))
    if trnm == "SYSTEM":
        code = obj.get("code", obj.get("return_code", ""))
        msg = obj.get("message", obj.get("return_msg", ""))
        return SystemMsg(str(code), str(msg))
    return Unknown(trnm, obj)


def guess_trnm(text: str | bytes) -> str | None:
    """The ``trnm`` of a text that is JSON with a string ``trnm`` but not a valid envelope, else None."""
    try:
        obj = msgspec.json.decode(text)
    except Exception:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("trnm"), str):
        return str(obj["trnm"])[:20]
    return None
