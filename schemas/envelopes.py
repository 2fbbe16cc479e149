"""The Kiwoom real-time envelopes, outbound: URLs, return codes, limits and the encoders of every frame.

docs/protocol.md section 1 is the spec (1.1 URLs, 1.2 LOGIN, 1.3-1.5 REG/REMOVE, 1.6 PING, 1.7 REAL,
1.9 SYSTEM). Pure functions, no I/O: :mod:`kiwoom_tape.schemas.messages` decodes what these encode, and the two session
machines (:mod:`kiwoom_tape.schemas.client_session`, :mod:`kiwoom_tape.schemas.server_session`) build on both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from kiwoom_tape.schemas.fields import REAL_TYPE_NAMES

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


def item_cap_msg(limit: int = MAX_ITEMS_PER_CONNECTION) -> str:
    """The ``return_msg`` of a REG refused with :data:`RC_ITEM_CAP` (docs/protocol.md 1.4)."""
    return f"등록 허용 개수({limit}) 초과"


def ack(trnm: str, return_code: int = RC_OK, return_msg: str = "") -> str:
    return encode({"trnm": trnm, "return_code": return_code, "return_msg": return_msg})


PING_TEXT = '{"trnm":"PING"}'


def system(code: str, message: str) -> str:
    return encode({"trnm": "SYSTEM", "code": code, "message": message})


def reg(
    items: Sequence[str], types: Sequence[str], *, grp_no: str = "1", refresh: str = "1", trnm: str = "REG"
) -> str:
    """A REG (or REMOVE) of ``items`` x ``types``: one ``data`` entry (docs/protocol.md 1.3, 1.5)."""
    return reg_entries([(items, types)], grp_no=grp_no, refresh=refresh, trnm=trnm)


def reg_entries(
    entries: Iterable[tuple[Sequence[str], Sequence[str]]], *, grp_no: str = "1", refresh: str = "1",
    trnm: str = "REG",
) -> str:
    """A REG (or REMOVE) with one ``data`` entry ``{"item": [...], "type": [...]}`` per (items, types) of
    ``entries``, in order: each entry is the cartesian product of its items and types (docs/protocol.md 1.3), so a
    set of types that take different items (stock codes, ``""`` for 1h, industry codes) is one entry each."""
    body: dict[str, Any] = {"trnm": trnm, "grp_no": grp_no}
    if trnm == "REG":
        body["refresh"] = refresh
    body["data"] = [{"item": list(items), "type": list(types)} for items, types in entries]
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
