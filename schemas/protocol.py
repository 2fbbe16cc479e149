"""The Kiwoom real-time WebSocket protocol, sans I/O: envelopes and both session state machines.

docs/protocol.md section 1 is the spec. Nothing here touches a socket, a file or an event loop: a driver
feeds received text in with the current monotonic time, asks what to send, and asks for the next
deadline (when to call :meth:`tick`). ``recorder/`` drives :class:`ClientSession`; ``replay/``
drives :class:`ServerSession`; tests drive both against each other with no socket at all.

Envelopes (both directions are JSON text frames, key order never matters)::

    client -> server  {"trnm":"LOGIN","token":"..."}
    server -> client  {"trnm":"LOGIN","return_code":0,"return_msg":"","sor_yn":"Y"}
    client -> server  {"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":["005930"],"type":["0D"]}]}
    server -> client  {"trnm":"REG","return_code":0,"return_msg":""}          (no data echo)
    client -> server  {"trnm":"REMOVE","grp_no":"1","data":[{"item":["005930"],"type":["0D"]}]}
    server -> client  {"trnm":"PING"}      client echoes it verbatim
    server -> client  {"data":[{"values":{...},"type":"0D","name":"주식호가잔량","item":"005930"}],"trnm":"REAL"}
    server -> client  {"trnm":"SYSTEM","code":"R10002","message":"..."}
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import msgspec
from kiwoom_tape.schemas.errors import ProtocolError, TooManyItems
from kiwoom_tape.schemas.fields import REAL_TYPE_NAMES

__all__ = [
    "AUTH_RETRY_CODES",
    "MAX_ITEMS_PER_CONNECTION",
    "MOCK_REST_URL",
    "MOCK_WS_URL",
    "PROD_REST_URL",
    "PROD_WS_URL",
    "RC_ERROR",
    "RC_ITEM_CAP",
    "RC_LOGIN_FAILED",
    "RC_OK",
    "RC_REG_RATE",
    "WS_PATH",
    "Ack",
    "ClientSession",
    "ClientState",
    "Event",
    "LoggedIn",
    "Login",
    "LoginRejected",
    "LoginReply",
    "Message",
    "Ping",
    "PingEchoed",
    "Real",
    "RealData",
    "RealRow",
    "RegistrationDone",
    "ServerConfig",
    "ServerSession",
    "ServerState",
    "Subscription",
    "SystemMsg",
    "SystemNotice",
    "UnexpectedMessage",
    "Unknown",
    "auth_code_of",
    "decode_client_message",
    "decode_server_message",
    "encode",
    "encode_real_frame",
    "encode_real_row",
    "guess_trnm",
    "is_real_text",
    "renews_token",
]

WS_PATH = "/api/dostk/websocket"
PROD_WS_URL = "wss://api.kiwoom.com:10000" + WS_PATH
MOCK_WS_URL = "wss://mockapi.kiwoom.com:10000" + WS_PATH
PROD_REST_URL = "https://api.kiwoom.com"
MOCK_REST_URL = "https://mockapi.kiwoom.com"

RC_OK = 0
RC_ERROR = 1
RC_REG_RATE = 105110
"""REG/REMOVE sent faster than ~5/s (docs/protocol.md 1.4)."""
RC_ITEM_CAP = 105115
"""More than 200 items on one connection (docs/protocol.md 1.4, 4.1)."""
RC_LOGIN_FAILED = 805004
"""LOGIN refused; the REST auth code is in the message as ``[CODE=8005, ...]`` (docs/protocol.md 1.2)."""

MAX_ITEMS_PER_CONNECTION = 200
AUTH_RETRY_CODES = frozenset({8005, 8031, 8103})
"""Auth codes after which a client should get a new token and LOGIN again, once (docs/protocol.md 1.2)."""

SYSTEM_KICKED = ("R10001", "동일한 App key로 접속이 되었습니다. 기존 세션은 종료가 됩니다")
SYSTEM_NO_HEARTBEAT = ("R10002", "사용자 프로그램으로부터 Heartbeat(연결유지) 메시지가 오지않아서 접속을 종료합니다")
SYSTEM_NO_LOGIN = ("R10004", "접속허용요청(토큰)이 들어오지 않았습니다")
TERMINAL_SYSTEM_CODES = frozenset({SYSTEM_KICKED[0], SYSTEM_NO_HEARTBEAT[0], SYSTEM_NO_LOGIN[0]})

_AUTH_CODE = re.compile(r"CODE=([0-9]{1,18})(?![0-9])")  # longer is no auth code (int() refuses 4300+ digits)
_INT_TEXT = re.compile(r"[ \t]*-?[0-9]{1,18}[ \t]*")  # what int() surely parses (no "²", no 5000 digits)


# --------------------------------------------------------------------------------------------------
# Encoding


_encoder = msgspec.json.Encoder()


def encode(message: dict[str, Any]) -> str:
    """Compact JSON text, Korean unescaped, keys in the given order (as Kiwoom sends)."""
    return _encoder.encode(message).decode("utf-8")


def encode_real_row(real_type: str, item: str, values_json: str, name: str | None = None) -> str:
    """One REAL row in the measured wire key order ``values, type, name, item`` (docs/protocol.md 1.7).

    ``values_json`` is the already-encoded ``values`` object, so a caller can build it once.
    """
    nm = REAL_TYPE_NAMES.get(real_type, "") if name is None else name
    return (
        '{"values":' + values_json + ',"type":' + encode_str(real_type) + ',"name":' + encode_str(nm)
        + ',"item":' + encode_str(item) + "}"
    )


def encode_str(s: str) -> str:
    return _encoder.encode(s).decode("utf-8")


def encode_real_frame(rows: Sequence[str]) -> str:
    """A REAL frame from encoded rows: ``{"data":[row,...],"trnm":"REAL"}`` (data first, as measured)."""
    return '{"data":[' + ",".join(rows) + '],"trnm":"REAL"}'


def is_real_text(text: str | bytes) -> bool:
    """A cheap pre-check: does this frame look like REAL? (True does not mean it is valid.)"""
    head, tail = text[:20], text[-16:]  # measured frames end with "trnm":"REAL"; official ones start with it
    if isinstance(text, str):
        return '"REAL"' in tail or '"REAL"' in head
    return b'"REAL"' in tail or b'"REAL"' in head


def login(token: str) -> str:
    return encode({"trnm": "LOGIN", "token": token})


def login_ok() -> str:
    return encode({"trnm": "LOGIN", "return_code": RC_OK, "return_msg": "", "sor_yn": "Y"})


def login_failed(auth_code: int = 8005, message: str = "Token이 유효하지 않습니다") -> str:
    return encode(
        {
            "trnm": "LOGIN",
            "return_code": RC_LOGIN_FAILED,
            "return_msg": f"토큰 인증에 실패했습니다. 접속을 종료합니다 [CODE={auth_code}, MESSAGE={message}]",
        }
    )


def ack(trnm: str, return_code: int = RC_OK, return_msg: str = "") -> str:
    return encode({"trnm": trnm, "return_code": return_code, "return_msg": return_msg})


PING_TEXT = '{"trnm":"PING"}'


def system(code: str, message: str) -> str:
    return encode({"trnm": "SYSTEM", "code": code, "message": message})


def reg(
    items: Sequence[str], types: Sequence[str], *, grp_no: str = "1", refresh: str = "1", trnm: str = "REG"
) -> str:
    body: dict[str, Any] = {"trnm": trnm, "grp_no": grp_no}
    if trnm == "REG":
        body["refresh"] = refresh
    body["data"] = [{"item": list(items), "type": list(types)}]
    return encode(body)


def renews_token(return_code: int, return_msg: str) -> bool:
    """Whether a LOGIN refused with ``return_code`` / ``return_msg`` may succeed with a new token
    (docs/protocol.md 1.2).

    The one place this is decided: an auth code of :data:`AUTH_RETRY_CODES` as the ``return_code`` or
    embedded as ``[CODE=n]`` in the message. Any other refusal (8001 a bad app key, 8030 real/mock
    mismatch, ...) is a credentials problem a new token cannot fix.
    """
    return return_code in AUTH_RETRY_CODES or auth_code_of(return_msg) in AUTH_RETRY_CODES


def auth_code_of(return_msg: str) -> int | None:
    """The REST auth code embedded in a LOGIN failure text (``[CODE=8005, ...]``), if any."""
    m = _AUTH_CODE.search(return_msg)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------------------------------
# Decoding: one class per message, for each direction


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


# --------------------------------------------------------------------------------------------------
# Server session


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
        """Whether this client registered (item, type) in any group."""
        return (item, real_type) in self._wanted

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
            self._outbox.append(ack("REG", RC_ITEM_CAP, f"등록 허용 개수({self.config.max_items}) 초과"))
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


def guess_trnm(text: str | bytes) -> str | None:
    """The ``trnm`` of a text that is JSON with a string ``trnm`` but not a valid envelope, else None."""
    try:
        obj = msgspec.json.decode(text)
    except Exception:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("trnm"), str):
        return str(obj["trnm"])[:20]
    return None


# --------------------------------------------------------------------------------------------------
# Client session


class ClientState(Enum):
    NEW = "new"
    LOGIN_SENT = "login_sent"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """The server accepted LOGIN."""


@dataclass(frozen=True, slots=True)
class LoginRejected:
    """The server refused LOGIN; ``renew_token`` says whether a fresh token may fix it (8005/8031/8103)."""

    return_code: int
    return_msg: str
    auth_code: int | None
    renew_token: bool


@dataclass(frozen=True, slots=True)
class RegistrationDone:
    """A REG or REMOVE was answered. ``return_code`` 0 means applied; ``will_retry``: the session sends
    the batch again later (105110 after ``rate_backoff``; other refusals of a REG with a doubling delay)."""

    trnm: str
    items: tuple[str, ...]
    types: tuple[str, ...]
    return_code: int
    return_msg: str
    will_retry: bool


@dataclass(frozen=True, slots=True)
class PingEchoed:
    """A server PING arrived and its echo is queued."""

    text: str


@dataclass(frozen=True, slots=True)
class RealData:
    """A REAL frame: its verbatim text and its decoded rows."""

    text: str | bytes
    rows: tuple[RealRow, ...]


@dataclass(frozen=True, slots=True)
class SystemNotice:
    """A SYSTEM frame. ``terminal`` ones (R10001/R10002/R10004) precede a server close."""

    code: str
    message: str
    terminal: bool


@dataclass(frozen=True, slots=True)
class UnexpectedMessage:
    """A frame that is not a valid envelope, or one that makes no sense now. Kept, never raised."""

    text: str | bytes
    reason: str


Event = LoggedIn | LoginRejected | RegistrationDone | PingEchoed | RealData | SystemNotice | UnexpectedMessage


@dataclass
class _Pending:
    trnm: str
    items: tuple[str, ...]
    types: tuple[str, ...]
    not_before: float = 0.0
    refusals: int = 0


@dataclass
class ClientSession:
    """The client side (docs/protocol.md 1.2-1.8): LOGIN, paced REG batches, PING echo, REAL events.

    Contract for the driver: call :meth:`connect` once the socket is open; feed every received text
    frame to :meth:`receive` and handle the returned events; after each call (and at
    :meth:`next_deadline`, via :meth:`tick`) send what :meth:`data_to_send` returns. The session
    holds at most one REG/REMOVE in flight (acks carry no id), spaces them ``reg_interval`` apart,
    retries a batch refused with 105110 after ``rate_backoff``, and a batch refused otherwise (1,
    105115, ...) after ``refused_backoff``, doubling, forgetting it after ``reg_retries`` refusals.
    """

    token: str = field(repr=False)
    grp_no: str = "1"
    reg_batch: int = 50
    reg_interval: float = 0.35
    rate_backoff: float = 1.0
    refused_backoff: float = 1.0
    reg_retries: int = 5
    max_items: int = MAX_ITEMS_PER_CONNECTION
    state: ClientState = ClientState.NEW
    subscribed: dict[tuple[str, str], None] = field(default_factory=dict)
    _outbox: list[str | bytes] = field(default_factory=list)
    _queue: deque[_Pending] = field(default_factory=deque)
    _in_flight: _Pending | None = None
    _last_sent: float = float("-inf")

    def connect(self, now: float) -> None:
        """Queue LOGIN. After a reconnect, call it on a fresh session (or reuse: state resets here)."""
        self.state = ClientState.LOGIN_SENT
        self._in_flight = None
        self._queue.clear()
        self._outbox.append(login(self.token))

    def subscribe(self, items: Sequence[str], types: Sequence[str], now: float = 0.0) -> None:
        """Add items x types to the wanted set; REGs go out in batches once logged in.

        Raises TooManyItems if the connection would carry more than ``max_items`` distinct items.
        """
        new = {(i, t): None for i in items for t in types}
        all_items = {i for i, _ in self.subscribed} | set(items)
        if len(all_items) > self.max_items:
            raise TooManyItems(len(all_items), self.max_items)
        fresh = [p for p in new if p not in self.subscribed]
        self.subscribed.update(new)
        if self.state is ClientState.OPEN and fresh:
            self._enqueue("REG", [i for i in dict.fromkeys(i for i, _ in fresh)], list(types), now)

    def unsubscribe(self, items: Sequence[str], types: Sequence[str], now: float = 0.0) -> None:
        for i in items:
            for t in types:
                self.subscribed.pop((i, t), None)
        if self.state is ClientState.OPEN:
            self._enqueue("REMOVE", list(items), list(types), now)

    def _enqueue(self, trnm: str, items: list[str], types: list[str], now: float) -> None:
        for k in range(0, len(items), self.reg_batch):
            self._queue.append(_Pending(trnm, tuple(items[k : k + self.reg_batch]), tuple(types)))
        self.tick(now)

    def _register_all(self, now: float) -> None:
        by_types: dict[tuple[str, ...], list[str]] = {}
        items_types: dict[str, list[str]] = {}
        for i, t in self.subscribed:
            items_types.setdefault(i, []).append(t)
        for i, ts in items_types.items():
            by_types.setdefault(tuple(ts), []).append(i)
        for type_key, item_list in by_types.items():
            self._enqueue("REG", item_list, list(type_key), now)

    def next_deadline(self) -> float | None:
        if self.state is ClientState.OPEN and self._in_flight is None and self._queue:
            return max(self._last_sent + self.reg_interval, self._queue[0].not_before)
        return None

    def tick(self, now: float) -> None:
        if self.state is not ClientState.OPEN or self._in_flight is not None or not self._queue:
            return
        head = self._queue[0]
        if now < self._last_sent + self.reg_interval or now < head.not_before:
            return
        self._queue.popleft()
        self._in_flight = head
        self._last_sent = now
        self._outbox.append(reg(head.items, head.types, grp_no=self.grp_no, trnm=head.trnm))

    def data_to_send(self) -> list[str | bytes]:
        out, self._outbox = self._outbox, []
        return out

    @property
    def registration_pending(self) -> bool:
        return self._in_flight is not None or bool(self._queue)

    def receive(self, text: str | bytes, now: float) -> list[Event]:
        """Feed one server frame; returns what happened. Never raises for bad input."""
        try:
            msg = decode_server_message(text)
        except ProtocolError as exc:
            return [UnexpectedMessage(text, exc.reason)]
        if isinstance(msg, Real):
            return [RealData(text, msg.rows)]
        if isinstance(msg, Ping):
            self._outbox.append(text)  # echo verbatim (docs/protocol.md 1.6)
            return [PingEchoed(msg.text)]
        if isinstance(msg, LoginReply):
            return self._on_login(msg, text, now)
        if isinstance(msg, Ack):
            return self._on_ack(msg, text, now)
        if isinstance(msg, SystemMsg):
            terminal = msg.code in TERMINAL_SYSTEM_CODES
            if terminal:
                self.state = ClientState.CLOSED
            return [SystemNotice(msg.code, msg.message, terminal)]
        return [UnexpectedMessage(text, f"unexpected trnm {msg.trnm!r}" if isinstance(msg, Unknown) else "")]

    def _on_login(self, msg: LoginReply, text: str | bytes, now: float) -> list[Event]:
        if self.state is not ClientState.LOGIN_SENT:
            return [UnexpectedMessage(text, "LOGIN reply without a LOGIN in flight")]
        if msg.return_code != RC_OK:
            self.state = ClientState.CLOSED
            code = auth_code_of(msg.return_msg)
            return [LoginRejected(msg.return_code, msg.return_msg, code, renews_token(msg.return_code, msg.return_msg))]
        self.state = ClientState.OPEN
        self._register_all(now)
        return [LoggedIn()]

    def _on_ack(self, msg: Ack, text: str | bytes, now: float) -> list[Event]:
        head = self._in_flight
        if head is None or head.trnm != msg.trnm:
            return [UnexpectedMessage(text, f"{msg.trnm} ack with no request in flight")]
        self._in_flight = None
        retry = False
        if msg.return_code == RC_REG_RATE:
            retry = True
            head.not_before = now + self.rate_backoff
            self._queue.appendleft(head)
        elif msg.return_code != RC_OK and head.trnm == "REG":
            # A refusal may be passing (a server-side hiccup, a stale registration count): try again,
            # later each time, and forget the batch only after reg_retries refusals.
            if head.refusals < self.reg_retries:
                retry = True
                head.not_before = now + self.refused_backoff * 2**head.refusals
                head.refusals += 1
                self._queue.append(head)
            else:
                for i in head.items:
                    for t in head.types:
                        self.subscribed.pop((i, t), None)
        self.tick(now)
        return [RegistrationDone(msg.trnm, head.items, head.types, msg.return_code, msg.return_msg, retry)]

    def closed(self) -> None:
        """The socket closed: pending requests are void; :meth:`connect` starts over and re-REGs all."""
        self.state = ClientState.CLOSED
        self._in_flight = None
        self._queue.clear()
