"""Where the recorder's token comes from: ``KIWOOM_TOKEN``, or au10001 with an app key and secret.

Secrets are read from the environment only, held in memory, and never logged, stored or put in an
exception message. An app key and secret go only over HTTPS to Kiwoom's REST hosts, or to a loopback
host (a local mock): :func:`check_token_url` refuses any other token URL before anything is sent.
The REST base follows the WebSocket URL (docs/protocol.md 0, 4.3):
production -> https://api.kiwoom.com, mock trading -> https://mockapi.kiwoom.com, a local mock
``ws://HOST:PORT/...`` -> ``http://HOST:PORT``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kiwoom_tape.schemas import auth
from kiwoom_tape.schemas.errors import CredentialsError, TokenEndpointUnreachable
from kiwoom_tape.schemas.protocol import MOCK_REST_URL, PROD_REST_URL

__all__ = ["TokenProvider", "check_token_url", "is_loopback", "rest_base_for", "token_provider_from_env"]

log = logging.getLogger("kiwoom_tape.recorder")

REFRESH_BEFORE = 600.0
"""Renew this many seconds before ``expires_dt``, as Kiwoom's own client does (docs/protocol.md 4.3)."""

KIWOOM_REST_HOSTS = frozenset({urlsplit(PROD_REST_URL).hostname, urlsplit(MOCK_REST_URL).hostname})


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): traffic that never leaves this machine."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def check_token_url(url: str) -> None:
    """Raise CredentialsError unless an app key and secret may be sent to ``url``: HTTPS to Kiwoom's
    REST host (docs/protocol.md 4.3), or any scheme to a loopback host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if (parts.scheme == "https" and host in KIWOOM_REST_HOSTS) or is_loopback(host):
        return
    raise CredentialsError(
        f"refusing to send KIWOOM_APPKEY and KIWOOM_SECRETKEY to {parts.scheme}://{parts.netloc}: they go only "
        "over HTTPS to api.kiwoom.com or mockapi.kiwoom.com, or to a mock on this machine",
        hint="to record a mock elsewhere, reach it on a loopback address (ssh -L 10000:127.0.0.1:10000 HOST, then "
        "--url ws://127.0.0.1:10000/api/dostk/websocket), or unset KIWOOM_APPKEY and KIWOOM_SECRETKEY",
    )


def rest_base_for(ws_url: str) -> str:
    """The REST base URL that issues tokens for this WebSocket URL."""
    parts = urlsplit(ws_url)
    host = parts.hostname or ""
    if host == "api.kiwoom.com":
        return PROD_REST_URL
    if host == "mockapi.kiwoom.com":
        return MOCK_REST_URL
    scheme = "https" if parts.scheme == "wss" else "http"
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}:{parts.port}" if parts.port else f"{scheme}://{netloc}"


def _post_json(url: str, body: Mapping[str, str], timeout: float) -> object:
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method="POST",
        headers={"Content-Type": "application/json;charset=UTF-8", "api-id": "au10001"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return json.loads(exc.read())
        except ValueError:
            raise TokenEndpointUnreachable(f"the token endpoint {url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TokenEndpointUnreachable(
            f"cannot reach the token endpoint {url}: {reason}", hint="check the network and --url"
        ) from None
    except ValueError:
        raise TokenEndpointUnreachable(f"the token endpoint {url} did not answer JSON") from None


@dataclass
class TokenProvider:
    """Hands out a current token; renews it (at most once per failed LOGIN) when it can.

    A fixed token (``KIWOOM_TOKEN``) cannot be renewed: a LOGIN refused with 8005 then stops the
    recorder with a message saying so, instead of looping on a dead token.
    """

    rest_base: str
    appkey: str | None = field(default=None, repr=False)
    secretkey: str | None = field(default=None, repr=False)
    fixed_token: str | None = field(default=None, repr=False)
    timeout: float = 10.0
    now: Callable[[], float] = time.time
    _current: auth.IssuedToken | None = field(default=None, repr=False)

    @property
    def renewable(self) -> bool:
        return self.appkey is not None and self.secretkey is not None

    async def token(self) -> str:
        """A token valid for at least REFRESH_BEFORE seconds (issuing one if needed)."""
        if self.fixed_token is not None:
            return self.fixed_token
        cur = self._current
        if cur is None or cur.seconds_left(self.now()) < REFRESH_BEFORE:
            await self.renew()
            cur = self._current
        assert cur is not None
        return cur.token

    def discard(self) -> None:
        """Forget the current token (the server refused it): the next :meth:`token` issues a new one."""
        self._current = None

    async def renew(self) -> None:
        """Issue a new token through au10001. Raises CredentialsError (without secrets) on failure."""
        if not self.renewable:
            raise CredentialsError(
                "the server refused the token and it cannot be renewed",
                hint="set a fresh KIWOOM_TOKEN, or set KIWOOM_APPKEY and KIWOOM_SECRETKEY so tokens renew",
            )
        assert self.appkey is not None and self.secretkey is not None
        url = self.rest_base + auth.TOKEN_PATH
        check_token_url(url)
        body = auth.token_request_body(self.appkey, self.secretkey)
        reply = await asyncio.to_thread(_post_json, url, body, self.timeout)
        self._current = auth.parse_token_response(reply)
        log.info("new token issued by %s, valid until %s KST", url, auth.format_expires_dt(self._current.expires_at))

    def secrets(self) -> list[str]:
        """Every secret string this provider holds, for redaction checks."""
        vals = [self.appkey, self.secretkey, self.fixed_token, self._current.token if self._current else None]
        return [v for v in vals if v]


def token_provider_from_env(ws_url: str, env: Mapping[str, str]) -> TokenProvider:
    """``KIWOOM_TOKEN``, else ``KIWOOM_APPKEY`` + ``KIWOOM_SECRETKEY``; a loopback mock needs neither."""
    base = rest_base_for(ws_url)
    token = env.get("KIWOOM_TOKEN", "").strip()
    appkey = env.get("KIWOOM_APPKEY", "").strip()
    secret = env.get("KIWOOM_SECRETKEY", "").strip()
    if appkey and secret:
        check_token_url(base + auth.TOKEN_PATH)  # fail at start, not at the first renewal
        return TokenProvider(base, appkey=appkey, secretkey=secret)
    if token:
        return TokenProvider(base, fixed_token=token)
    if is_loopback(urlsplit(ws_url).hostname or ""):
        # a local mock (replay) issues tokens to anyone: no real credentials needed
        return TokenProvider(base, appkey="kiwoom-tape-local", secretkey="kiwoom-tape-local")
    if appkey or secret:
        raise CredentialsError(
            "only one of KIWOOM_APPKEY and KIWOOM_SECRETKEY is set", hint="set both, or set KIWOOM_TOKEN"
        )
    raise CredentialsError(
        "no credentials", hint="set KIWOOM_TOKEN, or KIWOOM_APPKEY and KIWOOM_SECRETKEY, in the environment"
    )
