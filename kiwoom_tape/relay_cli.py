"""The ``record`` console script: :mod:`kiwoom_tape.recorder.cli`'s command with ``--serve [HOST:]PORT`` (the relay).

The recorder does not import the replay server (tests/test_architecture.py): this module, one layer up, copies
the ``record`` command, adds the option, and when it is given registers :func:`kiwoom_tape.relay.relay_extension`
in :data:`kiwoom_tape.recorder.cli.EXTENSIONS` for the run.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from typing import Any

import click

from kiwoom_tape.recorder import cli as recorder_cli
from kiwoom_tape.relay import relay_extension
from kiwoom_tape.relay_tokens import SECRET_ENV_OPTION

__all__ = ["main", "record_command"]


class _Serve(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic only in click >= 8.2
    """``PORT`` (on 127.0.0.1) or ``HOST:PORT``; port 0 takes a free one."""

    name = "[HOST:]PORT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        m = re.fullmatch(r"(?:(\[[0-9a-fA-F:.]+\]|[^:\s]+):)?(\d{1,5})", str(value).strip())
        if not m or int(m.group(2)) > 65535:
            self.fail(f"{value!r} is not [HOST:]PORT; write e.g. 10001 or 127.0.0.1:10001 (0: any free port)",
                      param, ctx)
        return (m.group(1) or "127.0.0.1").strip("[]"), int(m.group(2))


SERVE = click.Option(
    ["--serve"], type=_Serve(), default=None,
    help="While recording, serve the live stream to local clients on ws://HOST:PORT/api/dostk/websocket (loopback "
    "unless HOST says otherwise), with the LOGIN/REG/REMOVE/PING/REAL behaviour of replay and its own "
    "/oauth2/token: trading bots and notebooks share the one connection Kiwoom allows per app key. A local "
    "client's REG for items or types not recorded (any type: 0B beside 0D, 0J industry codes, the empty item of "
    "1h/00/04) is registered upstream first and answered with upstream's reply (a refusal keeps its return_code, "
    "e.g. 105115 past 200 items); what it adds is recorded too, and removed upstream once no client wants it "
    "(--items x --types stay). Account types 00 (주문체결) and 04 (잔고) are your private data: relayed to the "
    "local clients that register them (on this machine only), never stored unless --types names them (a frame "
    "that mixes them with other types is stored whole). Local clients LOGIN "
    "with a token of the relay, never your Kiwoom token (LOGIN with any other is refused, 8005): POST "
    "/oauth2/token on the same port with the app key and secret record uses (KIWOOM_APPKEY/KIWOOM_SECRETKEY or a "
    "key of --keys) or the secret of --serve-secret-env; the token lives in memory and expires after 24 h.",
)
SERVE_SECRET_ENV = click.Option(
    [SECRET_ENV_OPTION], "serve_secret_env", metavar="NAME", default=None,
    help="With --serve: local clients may also get a relay token by sending the value of the environment variable "
    "NAME as secretkey (any appkey). Needed when record has only KIWOOM_TOKEN and no app key: --serve then refuses "
    "to start without it.",
)


def _with_serve(command: click.Group) -> click.Group:
    """A copy of ``command`` with :data:`SERVE`; its callback registers the relay extension for the run."""
    out = copy.copy(command)
    out.params = [*command.params, SERVE, SERVE_SECRET_ENV]
    inner = command.callback
    assert inner is not None

    @functools.wraps(inner)
    def callback(
        *args: Any, serve: tuple[str, int] | None = None, serve_secret_env: str | None = None, **kwargs: Any
    ) -> Any:
        if serve is None:
            if serve_secret_env is not None:
                raise click.UsageError(f"{SECRET_ENV_OPTION} goes with --serve")
            return inner(*args, **kwargs)
        ext = relay_extension(*serve, _serve_secret(serve_secret_env))
        recorder_cli.EXTENSIONS.append(ext)
        try:
            return inner(*args, **kwargs)
        finally:
            recorder_cli.EXTENSIONS.remove(ext)

    out.callback = callback
    return out


def _serve_secret(name: str | None) -> str | None:
    """The value of ``--serve-secret-env NAME`` (never echoed), or None without the option."""
    if name is None:
        return None
    value = os.environ.get(name, "").strip()
    if not value:
        raise click.BadParameter(f"the environment variable {name[:64]} is not set (or empty)",
                                 param_hint=f"'{SECRET_ENV_OPTION}'")
    return value


record_command = _with_serve(recorder_cli.record_command)


def main() -> None:
    record_command()
