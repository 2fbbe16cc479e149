"""The mock server's plain-HTTP side: the token endpoints au10001/au10002 and the tokens they issue
(docs/protocol.md 4.3-4.4), and the request sniffing that serves them, and ``/control``, on the WebSocket port.

Credentials: a :class:`TokenDesk` given an app key and secret checks every ``POST /oauth2/token``
against them (compared in constant time) and answers a wrong pair with return_code 8001 (docs/protocol.md
1.11: "invalid app key / secret"; Kiwoom's exact message text is not documented); only a caller that
authenticated gets a token, the fixed ``token`` included. Without credentials, any well-formed request
gets a token. Neither the credentials nor a token ever reach a log line or an error message.

One connection per app key (docs/protocol.md 1.9, 4.1): every token the desk issues at random remembers a
digest of the app key it was issued to (:meth:`TokenDesk.app_key_of`), so that the server can kick the
older connection of a key when a second one logs in. The fixed ``token`` (``--token``) and tokens the desk
did not issue carry no key and are not limited.

``issued_only`` (the live relay of ``record --serve``, :mod:`kiwoom_tape.relay`): LOGIN accepts only a token this
desk issued, not revoked and not past its ``expires_dt`` (``lifetime`` seconds, like Kiwoom's), and answers any
other with 8005 as Kiwoom does for an invalid token (docs/protocol.md 1.3). Such a desk needs credentials (it
issues only to a caller that authenticated), and its tokens carry no app key: its clients share one upstream key
and never kick each other.
"""

from __future__ import annotations

import hashlib
import http
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from kiwoom_tape.replay import control
from kiwoom_tape.replay.outbox import BatchConnection
from kiwoom_tape.schemas import auth
from websockets.asyncio.server import ServerConnection

__all__ = ["MAX_HTTP_BODY", "RC_BAD_CREDENTIALS", "TOKEN_LIFETIME", "TokenDesk", "make_connection_class"]

MAX_HTTP_BODY = 64 * 1024
TOKEN_LIFETIME = 24 * 3600.0
RC_BAD_CREDENTIALS = 8001
"""au10001's answer to a wrong app key / secret pair (docs/protocol.md 1.11)."""

_REPLAY_HINT = ("this mock was started with credentials: send a pair it was given, by KIWOOM_REPLAY_APPKEY/"
                "KIWOOM_REPLAY_SECRETKEY or replay --keys")

RestHandler = Callable[[str, str, bytes], tuple[int, dict[str, Any]]]


class TokenDesk:
    """Issues, checks, revokes and expires the tokens of one mock server.

    ``token``: the one token LOGIN accepts (else any non-empty one, or any issued one once one has
    expired; with ``issued_only``, only an issued one). ``appkey``/``secretkey`` (both or neither) and
    ``credentials``: the pairs ``POST /oauth2/token`` accepts (``replay --keys``: one per app key; an empty app
    key in ``credentials`` takes any app key with that secret); none, any well-formed pair. ``hint``: what the
    8001 answer to a wrong pair tells the caller to send. ``clock``: epoch seconds, for the expiry.
    """

    def __init__(
        self, token: str | None = None, appkey: str | None = None, secretkey: str | None = None,
        credentials: Sequence[tuple[str, str]] = (), *, issued_only: bool = False,
        lifetime: float = TOKEN_LIFETIME, hint: str = _REPLAY_HINT, clock: Callable[[], float] = time.time,
    ) -> None:
        if (appkey is None) != (secretkey is None):
            raise ValueError("give both an app key and a secret key, or neither")
        self.issued_only = issued_only
        self.lifetime = lifetime
        self.hint = hint
        self.clock = clock
        self.required_token = token
        self._pairs = [(k.encode(), s.encode()) for k, s in ([(appkey, secretkey)] if appkey and secretkey else [])]
        self._pairs += [(k.encode(), s.encode()) for k, s in credentials]
        """Every (app key, secret) pair ``POST /oauth2/token`` accepts; none: any pair."""
        self.issued: set[str] = set()
        """Tokens handed out that LOGIN accepts."""
        self.expired: set[str] = set()
        """Tokens that LOGIN refuses with 8005 (:meth:`expire_all`)."""
        self._key_of: dict[str, str] = {}
        """Issued token -> a digest of the app key it was issued to (never the key itself)."""
        self._expires: dict[str, float] = {}
        """Issued token -> when it expires (epoch seconds): the ``expires_dt`` it was issued with."""
        if issued_only and (token is not None or not self._pairs):
            raise ValueError("a desk that accepts only its own tokens needs credentials and no fixed token")

    def __repr__(self) -> str:
        return f"TokenDesk(fixed_token={self.required_token is not None}, credentials={self.checks_credentials})"

    @property
    def checks_credentials(self) -> bool:
        return bool(self._pairs)

    def authenticated(self, body: dict[str, Any]) -> bool:
        """Whether a well-formed au10001 request carries a configured pair (always, with none configured).
        Every pair is compared, in constant time: the answer's timing says nothing of which part was wrong."""
        if not self._pairs:
            return True
        key, secret = str(body["appkey"]).encode(), str(body["secretkey"]).encode()
        ok = False
        for good_key, good_secret in self._pairs:
            key_ok = secrets.compare_digest(key, good_key) | (not good_key)
            ok |= key_ok & secrets.compare_digest(secret, good_secret)
        return ok

    def issue(self, appkey: str | None = None) -> str:
        """A token LOGIN accepts: the fixed token if there is one (it carries no app key), else a fresh
        random one that remembers ``appkey`` (:meth:`app_key_of`; not with ``issued_only``) and expires
        :attr:`lifetime` seconds from now (:meth:`expires_at`)."""
        if self.required_token is not None:
            return self.required_token
        now = self.clock()
        for old in [t for t, at in self._expires.items() if at <= now]:  # held in memory: forget the dead
            self.revoke(old)
        tok = secrets.token_urlsafe(32)
        self.issued.add(tok)
        self._expires[tok] = now + self.lifetime
        if appkey and not self.issued_only:
            self._key_of[tok] = _digest(appkey)
        return tok

    def expires_at(self, token: str) -> float:
        """When ``token`` (issued by :meth:`issue`) expires, epoch seconds; the fixed token: a lifetime from now."""
        return self._expires.get(token, self.clock() + self.lifetime)

    def app_key_of(self, token: str) -> str | None:
        """A digest of the app key ``token`` was issued to (equal digests, equal keys), or None for a token
        issued without one, the fixed token, or a token this desk did not issue."""
        return self._key_of.get(token)

    def known(self) -> set[str]:
        """Every token issued, expired or fixed so far (for secret audits in tests)."""
        return {*self.issued, *self.expired, *([self.required_token] if self.required_token else [])}

    def revoke(self, token: str) -> None:
        self.issued.discard(token)
        self._key_of.pop(token, None)
        self._expires.pop(token, None)

    def expire_all(self) -> None:
        """Every token issued so far (and the fixed one) stops working; a new fixed token is drawn."""
        self.expired |= self.issued
        self.issued.clear()
        if self.required_token is not None:
            self.expired.add(self.required_token)
            self.required_token = secrets.token_urlsafe(32)

    def check(self, token: str) -> int | None:
        """For :class:`kiwoom_tape.schemas.protocol.ServerConfig`: None to accept ``token`` at LOGIN, else 8005."""
        if token in self.expired:
            return 8005
        if self.issued_only:
            return None if token in self.issued and self._expires[token] > self.clock() else 8005
        if self.required_token is not None:
            return None if secrets.compare_digest(token.encode(), self.required_token.encode()) else 8005
        return None if token.strip() else 8005

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer ``METHOD path`` (``/oauth2/token`` or ``/oauth2/revoke``) with ``body``: (HTTP status, JSON)."""
        if method != "POST":
            return 405, auth.token_error_response(405, f"use POST {path}")
        try:
            obj = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deeply
            return 400, auth.token_error_response(1501, "요청 본문이 JSON 이 아닙니다 (body is not JSON)")
        if path == auth.TOKEN_PATH:
            problem = auth.validate_token_request(obj)
            if problem is not None:
                return 200, auth.token_error_response(1501, problem)
            if not self.authenticated(obj):
                return 200, auth.token_error_response(
                    RC_BAD_CREDENTIALS,
                    f"[CODE={RC_BAD_CREDENTIALS}, MESSAGE=App Key와 Secret Key 검증에 실패했습니다] ({self.hint})",
                )
            token = self.issue(str(obj["appkey"]))
            return 200, auth.token_response(token, self.expires_at(token))
        if self.issued_only and not (
            isinstance(obj, dict) and isinstance(obj.get("appkey"), str) and isinstance(obj.get("secretkey"), str)
            and self.authenticated(obj)
        ):  # au10002 with the pair that got the token, as Kiwoom asks (docs/protocol.md 4.4)
            return 200, auth.token_error_response(
                RC_BAD_CREDENTIALS, f"[CODE={RC_BAD_CREDENTIALS}, MESSAGE=App Key와 Secret Key 검증에 실패했습니다]")
        if isinstance(obj, dict) and isinstance(obj.get("token"), str):
            self.revoke(obj["token"])
        return 200, {"return_code": 0, "return_msg": auth.OK_MSG}


def _digest(appkey: str) -> str:
    return hashlib.sha256(appkey.encode()).hexdigest()


def route(
    path: str, method: str, body: bytes, desk: TokenDesk, control_handler: Callable[[str, str, bytes], Any]
) -> tuple[int, dict[str, Any]]:
    """Route one plain-HTTP request: ``/control`` to ``control_handler(method, query, body)``, the token
    endpoints to ``desk``, anything else 404."""
    path, _, query = path.partition("?")
    if path == control.CONTROL_PATH:
        result: tuple[int, dict[str, Any]] = control_handler(method, query, body)
        return result
    if path not in (auth.TOKEN_PATH, auth.REVOKE_PATH):
        return 404, auth.token_error_response(404, f"no such endpoint {path[:60]}; try POST {auth.TOKEN_PATH}")
    return desk.handle(method, path, body)


def make_connection_class(handle_rest: RestHandler) -> type[ServerConnection]:
    """A websockets connection that answers plain HTTP POSTs (token endpoints, /control) on the same port.

    websockets' HTTP parser only takes bodiless GETs, so the first bytes decide: ``GET`` goes to
    websockets untouched; anything else is read as one small HTTP/1.1 request and answered with
    ``handle_rest(method, path, body)``.
    """

    class _RestConnection(BatchConnection):
        _mode: str | None = None
        _buf: bytes = b""

        def data_received(self, data: bytes) -> None:
            if self._mode == "ws":
                super().data_received(data)
                return
            self._buf += data
            if self._mode is None:
                if len(self._buf) < 4:
                    return
                self._mode = "ws" if self._buf.startswith(b"GET ") else "http"
                if self._mode == "ws":
                    buf, self._buf = self._buf, b""
                    super().data_received(buf)
                    return
            self._http()

        def _http(self) -> None:
            head_end = self._buf.find(b"\r\n\r\n")
            if head_end < 0:
                if len(self._buf) > 16 * 1024:
                    self._reply(431, {"return_code": 431, "return_msg": "request header too large"})
                return
            head = self._buf[:head_end].decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self._reply(400, {"return_code": 400, "return_msg": "bad request line"})
                return
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        length = -1
            if length < 0 or length > MAX_HTTP_BODY:
                self._reply(413, {"return_code": 413, "return_msg": "body too large or bad Content-Length"})
                return
            body = self._buf[head_end + 4 : head_end + 4 + length]
            if len(body) < length:
                return
            status, payload = handle_rest(parts[0], parts[1], body)
            self._reply(status, payload)

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            body = msgspec.json.encode(payload)
            reason = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ else "Error"
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json;charset=UTF-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            self._mode = "done"
            self._buf = b""
            self.transport.write(head.encode("latin-1") + body)
            self.transport.close()

    return _RestConnection
