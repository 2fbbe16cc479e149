"""Who gets a token of the live relay (``record --serve``), and what LOGIN accepts there.

A local client authenticates with a token the relay issues, never with the user's Kiwoom token, which stays in
the recorder (:class:`kiwoom_tape.recorder.auth.TokenProvider`) and is never sent to a local client. The relay's
``POST /oauth2/token`` issues a random token (held in memory only, expiring after a day like Kiwoom's
``expires_dt``) to a caller that sends

- the app key and secret ``record`` itself uses (``KIWOOM_APPKEY``/``KIWOOM_SECRETKEY``, or any key of ``--keys``;
  against a loopback mock without keys, the pair ``record`` then sends it), so that a trading bot written for
  Kiwoom fetches its token unchanged but for the URL; or
- with ``--serve-secret-env NAME``, the value of that variable as ``secretkey`` (any ``appkey``).

A ``record`` given only ``KIWOOM_TOKEN`` holds no secret to check callers against: ``record --serve`` then needs
``--serve-secret-env``, and refuses to start without it. LOGIN with any token the relay did not issue (the
Kiwoom token included) is answered as Kiwoom answers an invalid token, 8005, and closed
(:class:`kiwoom_tape.replay.rest.TokenDesk` with ``issued_only``).
"""

from __future__ import annotations

from collections.abc import Sequence

from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.replay.rest import TokenDesk
from kiwoom_tape.schemas.errors import CredentialsError

__all__ = ["SECRET_ENV_OPTION", "relay_desk"]

SECRET_ENV_OPTION = "--serve-secret-env"

HINT = (f"send the app key and secret record uses (KIWOOM_APPKEY/KIWOOM_SECRETKEY or a key of --keys), or, with "
        f"{SECRET_ENV_OPTION} NAME, the value of NAME as secretkey")


def relay_desk(recorders: Sequence[Recorder], serve_secret: str | None = None) -> TokenDesk:
    """The token desk of a relay of ``recorders`` (see the module docstring). Raises CredentialsError when there is
    nothing to check a caller against (``KIWOOM_TOKEN`` only and no ``serve_secret``)."""
    pairs = [(rec.tokens.appkey, rec.tokens.secretkey) for rec in recorders]
    credentials = [(k, s) for k, s in dict.fromkeys(pairs) if k and s]
    if serve_secret:
        credentials.append(("", serve_secret))  # any app key, this secret
    if not credentials:
        raise CredentialsError(
            "record --serve has no secret to issue local clients their tokens by: record was given KIWOOM_TOKEN "
            "and no app key, and the Kiwoom token is never handed to a local client",
            hint=f"add {SECRET_ENV_OPTION} NAME (NAME: an environment variable holding a secret local clients send "
            "as secretkey), or set KIWOOM_APPKEY and KIWOOM_SECRETKEY",
        )
    return TokenDesk(credentials=credentials, issued_only=True, hint=HINT)
