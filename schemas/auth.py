"""The REST token endpoints au10001 (issue) and au10002 (revoke), both sides, sans I/O (docs/protocol.md 4.3-4.4).

Request (client -> server), ``POST /oauth2/token``, JSON body::

    {"grant_type": "client_credentials", "appkey": "...", "secretkey": "..."}

Response::

    {"expires_dt":"20241107083713","token_type":"bearer","token":"WQJC...","return_code":0,
     "return_msg":"정상적으로 처리되었습니다"}

``expires_dt`` is ``YYYYMMDDHHMMSS`` in KST. Nothing here logs or stores a secret; error messages name
the missing field, never its value.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from kiwoom_tape.schemas.errors import CredentialsError
from kiwoom_tape.schemas.market import KST

__all__ = [
    "REVOKE_PATH",
    "TOKEN_PATH",
    "IssuedToken",
    "format_expires_dt",
    "parse_expires_dt",
    "parse_token_response",
    "revoke_request_body",
    "token_error_response",
    "token_request_body",
    "token_response",
    "validate_token_request",
]

TOKEN_PATH = "/oauth2/token"
REVOKE_PATH = "/oauth2/revoke"
OK_MSG = "정상적으로 처리되었습니다"


@dataclass(frozen=True)
class IssuedToken:
    """A token and when it expires (UTC epoch seconds). ``repr`` hides the token."""

    token: str = field(repr=False)
    expires_at: float

    def seconds_left(self, now_epoch: float) -> float:
        return self.expires_at - now_epoch


def token_request_body(appkey: str, secretkey: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "appkey": appkey, "secretkey": secretkey}


def revoke_request_body(appkey: str, secretkey: str, token: str) -> dict[str, str]:
    return {"appkey": appkey, "secretkey": secretkey, "token": token}


def format_expires_dt(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, KST).strftime("%Y%m%d%H%M%S")


def parse_expires_dt(text: str) -> float:
    """``YYYYMMDDHHMMSS`` KST -> UTC epoch seconds. Raises ValueError on anything else."""
    return dt.datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=KST).timestamp()


def validate_token_request(body: Any) -> str | None:
    """Server side: None if ``body`` is a well-formed au10001 request, else what is wrong."""
    if not isinstance(body, dict):
        return "요청 본문이 JSON 객체가 아닙니다 (body must be a JSON object)"
    if body.get("grant_type") != "client_credentials":
        return "grant_type 은 client_credentials 이어야 합니다"
    for key in ("appkey", "secretkey"):
        v = body.get(key)
        if not isinstance(v, str) or not v.strip():
            return f"필수 입력 값이 없습니다: {key}"
    return None


def token_response(token: str, expires_epoch: float) -> dict[str, Any]:
    return {
        "expires_dt": format_expires_dt(expires_epoch),
        "token_type": "bearer",
        "token": token,
        "return_code": 0,
        "return_msg": OK_MSG,
    }


def token_error_response(return_code: int, message: str) -> dict[str, Any]:
    return {"return_code": return_code, "return_msg": message}


def parse_token_response(body: Any) -> IssuedToken:
    """Client side: the token and its expiry, or CredentialsError naming what went wrong."""
    if not isinstance(body, dict):
        raise CredentialsError("the token endpoint did not answer with a JSON object")
    rc = body.get("return_code", 0)
    if rc != 0:
        msg = str(body.get("return_msg", ""))[:200]
        raise CredentialsError(
            f"au10001 refused the credentials: return_code={rc} {msg}",
            hint="check KIWOOM_APPKEY / KIWOOM_SECRETKEY and that they match real vs mock trading",
        )
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise CredentialsError("au10001 answered without a token")
    try:
        expires = parse_expires_dt(str(body.get("expires_dt", "")))
    except ValueError:
        raise CredentialsError("au10001 answered with an unreadable expires_dt") from None
    return IssuedToken(token, expires)
