"""The one exception tree of kiwoom-tape.

::

    KiwoomTapeError                 everything we raise on purpose; has .hint (how to fix it)
     ├── ProtocolError              a message that is not a valid Kiwoom envelope (.reason, .excerpt)
     ├── SessionError               a protocol step out of order, or a request we refuse to send
     │    └── TooManyItems          more than 200 items on one connection (.count, .limit)
     ├── LoginError                 the server refused LOGIN (.return_code, .return_msg, .auth_code, .renew_token)
     ├── SessionTakenOver           R10001 under ``record --on-kick exit``: another session took over
     ├── CredentialsError           no usable token / app key + secret, or au10001 refused them
     │    └── TokenEndpointUnreachable  au10001 could not be asked (network, HTTP 5xx): transient
     ├── StorageError               the dataset cannot be written or read (.path)
     └── DatasetError               a directory that is not a dataset, a date with no data, ...

``recorder/`` and ``replay/`` raise these (or subclasses); the CLIs turn them into one line naming the
problem and the fix. Messages never contain tokens, app keys or secrets.
"""

from __future__ import annotations

__all__ = [
    "CredentialsError",
    "DatasetError",
    "KiwoomTapeError",
    "LoginError",
    "ProtocolError",
    "SessionError",
    "SessionTakenOver",
    "StorageError",
    "TokenEndpointUnreachable",
    "TooManyItems",
]


class KiwoomTapeError(Exception):
    """Base of every error kiwoom-tape raises on purpose. ``hint`` says how to fix it."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} ({self.hint})" if self.hint else base


class ProtocolError(KiwoomTapeError):
    """A message that is not a valid Kiwoom envelope (docs/protocol.md section 1)."""

    def __init__(self, reason: str, text: str | bytes = "") -> None:
        self.reason = reason
        raw = text if isinstance(text, str) else text.decode("utf-8", "replace")
        self.excerpt = raw[:80] + ("..." if len(raw) > 80 else "")
        super().__init__(f"invalid message: {reason}")


class SessionError(KiwoomTapeError):
    """A protocol step out of order, or a request the session refuses to send."""


class TooManyItems(SessionError):
    """More items than one connection may register (docs/protocol.md 4.1: 200, whatever the types)."""

    def __init__(self, count: int, limit: int) -> None:
        self.count = count
        self.limit = limit
        super().__init__(
            f"{count} items requested but one connection carries at most {limit}",
            hint="split the items over several app keys (one connection each) or record fewer items",
        )


class LoginError(KiwoomTapeError):
    """The server answered LOGIN with a non-zero return_code (docs/protocol.md 1.2).

    ``renew_token``: whether a new token may fix it, as :func:`kiwoom_tape.schemas.protocol.renews_token` decided.
    """

    def __init__(self, return_code: int, return_msg: str, auth_code: int | None, *, renew_token: bool = False) -> None:
        self.return_code = return_code
        self.return_msg = return_msg
        self.auth_code = auth_code
        self.renew_token = renew_token
        super().__init__(
            f"LOGIN refused: return_code={return_code} {return_msg}",
            hint="check that the token is current (au10001) and matches the server (real vs mock trading)",
        )


class SessionTakenOver(KiwoomTapeError):
    """Another session with the same app key took over (SYSTEM R10001, docs/protocol.md 1.9) and the user asked
    the recorder to end rather than wait (``record --on-kick exit``)."""

    def __init__(self) -> None:
        super().__init__(
            "another session with the same app key took over (R10001); stopping as --on-kick exit asks",
            hint="one app key carries one WebSocket session: stop the other program, or record with another app key",
        )


class CredentialsError(KiwoomTapeError):
    """No usable credentials, or the token endpoint refused them."""


class TokenEndpointUnreachable(CredentialsError):
    """The token endpoint could not be asked (no network, a timeout, an answer that is not JSON).

    Transient: the recorder treats it as a failed connection and tries again with backoff.
    """


class StorageError(KiwoomTapeError):
    """The dataset cannot be written or read."""

    def __init__(self, message: str, *, path: str = "", hint: str = "") -> None:
        self.path = path
        super().__init__(message, hint=hint)


class DatasetError(KiwoomTapeError):
    """A directory that is not a dataset, a date with no data, a bad time range."""
