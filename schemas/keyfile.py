"""The keys file of ``record --keys`` and ``replay --keys``: a TOML list of app keys, each naming the environment
variables that hold its app key and secret, never the secret itself (one connection per app key, docs/protocol.md 1.9,
4.1)::

    [[key]]
    name = "main"                          # optional: shown in logs and the status line
    appkey_env = "KIWOOM_APPKEY_MAIN"
    secretkey_env = "KIWOOM_SECRETKEY_MAIN"

A file with any other field (``appkey``, ``secretkey``, ``token``...), or with a value that is not an
environment variable name where one is expected, is refused without echoing the value: secrets do not belong
in files. Pure: :func:`parse_keys` takes the text, :func:`resolve_key` the environment as a mapping.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kiwoom_tape.schemas.errors import CredentialsError, KiwoomTapeError

__all__ = ["KeyFileError", "KeySpec", "parse_keys", "resolve_key"]


class KeyFileError(KiwoomTapeError):
    """A keys file that cannot be used; the message names the fix and never a value of the file."""


_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_SECRET_LIKE = re.compile(r"[A-Z0-9]{20,}")
"""20 or more capitals and digits without an underscore: a key or token, not a variable name."""
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,24}")
_FIELDS = frozenset({"name", "appkey_env", "secretkey_env"})


@dataclass(frozen=True)
class KeySpec:
    """One app key of a keys file: its name and the environment variables holding the key and the secret."""

    name: str
    appkey_env: str
    secretkey_env: str


def parse_keys(text: str, source: str = "keys file") -> list[KeySpec]:
    """The app keys of a keys file's TOML ``text``. Raises KeyFileError; never puts a value of the file in it."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KeyFileError(f"{source} is not TOML: {exc}", hint=_KEYS_HINT) from None
    extra = sorted(set(doc) - {"key"})
    entries = doc.get("key")
    if extra or not isinstance(entries, list) or not entries:
        raise KeyFileError(f"{source} must hold a list of [[key]] tables and nothing else"
                           + (f" (found {', '.join(extra)[:80]})" if extra else ""), hint=_KEYS_HINT)
    keys: list[KeySpec] = []
    for n, entry in enumerate(entries, 1):
        where = f"{source} key {n}"
        if not isinstance(entry, dict):
            raise KeyFileError(f"{where} is not a table", hint=_KEYS_HINT)
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            raise KeyFileError(
                f"{where} has field(s) {', '.join(f[:24] for f in unknown)}: a keys file names environment "
                "variables only (appkey_env, secretkey_env), it never holds a key, secret or token",
                hint="put the secret in an environment variable and name that variable here; " + _KEYS_HINT,
            )
        for field in ("appkey_env", "secretkey_env"):
            value = entry.get(field)
            if not isinstance(value, str) or not _ENV_NAME.fullmatch(value) or _SECRET_LIKE.search(value):
                raise KeyFileError(
                    f"{where}: {field} must be the NAME of an environment variable (capitals, digits, _), and "
                    f"this value is not one{' (it looks like a secret: it is not shown)' if value else ''}",
                    hint="put the secret in an environment variable and name that variable here; " + _KEYS_HINT,
                )
        name = entry.get("name", f"key{n}")
        if not isinstance(name, str) or not _KEY_NAME.fullmatch(name):
            raise KeyFileError(f"{where}: name must be a short label (up to 24 letters, digits, . _ -)",
                               hint=_KEYS_HINT)
        keys.append(KeySpec(name, entry["appkey_env"], entry["secretkey_env"]))
    _no_repeats(keys, source)
    return keys


_KEYS_HINT = 'write [[key]] tables with appkey_env = "KIWOOM_APPKEY_1" and secretkey_env = "KIWOOM_SECRETKEY_1"'


def _no_repeats(keys: Sequence[KeySpec], source: str) -> None:
    seen: dict[str, str] = {}
    for key in keys:
        for label in (f"name {key.name}", key.appkey_env, key.secretkey_env):
            if label in seen:
                raise KeyFileError(f"{source}: {label} is used by two keys ({seen[label]} and {key.name})",
                                   hint="one connection per app key: list each app key once")
            seen[label] = key.name


def resolve_key(key: KeySpec, env: Mapping[str, str]) -> tuple[str, str]:
    """The (app key, secret) ``key`` names, from ``env``. Raises CredentialsError naming the variables only."""
    appkey, secret = env.get(key.appkey_env, "").strip(), env.get(key.secretkey_env, "").strip()
    missing = [name for name, val in ((key.appkey_env, appkey), (key.secretkey_env, secret)) if not val]
    if missing:
        raise CredentialsError(f"key {key.name}: {' and '.join(missing)} not set in the environment",
                               hint="export them before running with --keys, or remove the key from the file")
    return appkey, secret
