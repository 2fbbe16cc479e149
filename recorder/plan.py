"""What ``record`` records over which connections: the ``--items-file`` and ``--keys`` files, and the items spread
over the app keys, at most 200 per connection (PROTOCOL.md 4.1: one connection per app key, 200 items each).

An items file holds one code per line; ``#`` starts a comment, blank lines are skipped, a code given twice is
kept once (with a warning naming both lines). Every code must be an item of every recorded type
(:func:`schemas.items.item_problem`); a bad one is refused naming its line.

A keys file is TOML, a list of app keys, each naming the environment variables that hold its app key and
secret, never the secret itself::

    [[key]]
    name = "main"                          # optional: shown in logs and the status line
    appkey_env = "KIWOOM_APPKEY_MAIN"
    secretkey_env = "KIWOOM_SECRETKEY_MAIN"

A file with any other field (``appkey``, ``secretkey``, ``token``...), or with a value that is not an
environment variable name where one is expected, is refused without echoing the value: secrets do not
belong in files. Parsing is pure (text in, values out); :func:`read_items_file` and :func:`read_keys_file`
read the file and name it in their errors.
"""

from __future__ import annotations

import logging
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import CredentialsError, KiwoomTapeError
from schemas.items import item_problem
from schemas.protocol import MAX_ITEMS_PER_CONNECTION

__all__ = [
    "KeySpec",
    "PlanError",
    "parse_items",
    "parse_keys",
    "read_items_file",
    "read_keys_file",
    "resolve_key",
    "spread",
]

log = logging.getLogger("kiwoom_tape.recorder")

_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_SECRET_LIKE = re.compile(r"[A-Z0-9]{20,}")
"""20 or more capitals and digits without an underscore: a key or token, not a variable name."""
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,24}")
_FIELDS = frozenset({"name", "appkey_env", "secretkey_env"})


class PlanError(KiwoomTapeError):
    """An items or keys file that cannot be used, or items that do not fit the keys; the message names the fix."""


@dataclass(frozen=True)
class KeySpec:
    """One app key of a keys file: its name and the environment variables holding the key and the secret."""

    name: str
    appkey_env: str
    secretkey_env: str


def parse_items(text: str, types: Sequence[str], source: str = "items file") -> tuple[str, ...]:
    """The codes of an items file's ``text``, in order, each once. Raises PlanError naming the first bad line."""
    items: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0].strip()
        if not code:
            continue
        for real_type in types:
            problem = item_problem(real_type, code)
            if problem is not None:
                raise PlanError(f"{source} line {lineno}: {problem}", hint="one code per line; # starts a comment")
        first = items.setdefault(code, lineno)
        if first != lineno:
            log.warning("%s line %d: %s is already on line %d: recorded once", source, lineno, code, first)
    if not items:
        raise PlanError(f"{source} holds no item codes", hint="write one code per line, e.g. 005930")
    return tuple(items)


def parse_keys(text: str, source: str = "keys file") -> list[KeySpec]:
    """The app keys of a keys file's TOML ``text``. Raises PlanError; never puts a value of the file in it."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{source} is not TOML: {exc}", hint=_KEYS_HINT) from None
    extra = sorted(set(doc) - {"key"})
    entries = doc.get("key")
    if extra or not isinstance(entries, list) or not entries:
        raise PlanError(f"{source} must hold a list of [[key]] tables and nothing else"
                        + (f" (found {', '.join(extra)[:80]})" if extra else ""), hint=_KEYS_HINT)
    keys: list[KeySpec] = []
    for n, entry in enumerate(entries, 1):
        where = f"{source} key {n}"
        if not isinstance(entry, dict):
            raise PlanError(f"{where} is not a table", hint=_KEYS_HINT)
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            raise PlanError(
                f"{where} has field(s) {', '.join(f[:24] for f in unknown)}: a keys file names environment "
                "variables only (appkey_env, secretkey_env), it never holds a key, secret or token",
                hint="put the secret in an environment variable and name that variable here; " + _KEYS_HINT,
            )
        for field in ("appkey_env", "secretkey_env"):
            value = entry.get(field)
            if not isinstance(value, str) or not _ENV_NAME.fullmatch(value) or _SECRET_LIKE.search(value):
                raise PlanError(
                    f"{where}: {field} must be the NAME of an environment variable (capitals, digits, _), and "
                    f"this value is not one{' (it looks like a secret: it is not shown)' if value else ''}",
                    hint="put the secret in an environment variable and name that variable here; " + _KEYS_HINT,
                )
        name = entry.get("name", f"key{n}")
        if not isinstance(name, str) or not _KEY_NAME.fullmatch(name):
            raise PlanError(f"{where}: name must be a short label (up to 24 letters, digits, . _ -)",
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
                raise PlanError(f"{source}: {label} is used by two keys ({seen[label]} and {key.name})",
                                hint="one connection per app key: list each app key once")
            seen[label] = key.name


def resolve_key(key: KeySpec, env: Mapping[str, str]) -> tuple[str, str]:
    """The (app key, secret) ``key`` names, from ``env``. Raises CredentialsError naming the variables only."""
    appkey, secret = env.get(key.appkey_env, "").strip(), env.get(key.secretkey_env, "").strip()
    missing = [name for name, val in ((key.appkey_env, appkey), (key.secretkey_env, secret)) if not val]
    if missing:
        raise CredentialsError(f"key {key.name}: {' and '.join(missing)} not set in the environment",
                               hint="export them before `record --keys`, or remove the key from the file")
    return appkey, secret


def spread(items: Sequence[str], connections: int, source: str = "--keys") -> list[tuple[str, ...]]:
    """``items`` spread evenly, in order, over at most ``connections`` connections of at most 200 items
    (PROTOCOL.md 4.1): as many connections as there are keys, fewer when there are fewer items.
    Raises PlanError naming the numbers when they do not fit."""
    cap = MAX_ITEMS_PER_CONNECTION
    if len(items) > connections * cap:
        need = math.ceil(len(items) / cap)
        raise PlanError(
            f"{len(items)} items need {need} connections of at most {cap} items (one per app key, PROTOCOL.md 4.1), "
            f"and {source} gives {connections}",
            hint=f"add {need - connections} app key(s) with --keys, or record fewer items",
        )
    n = min(connections, len(items))
    size, rest = divmod(len(items), n)
    out: list[tuple[str, ...]] = []
    start = 0
    for i in range(n):
        end = start + size + (1 if i < rest else 0)
        out.append(tuple(items[start:end]))
        start = end
    return out


def read_items_file(path: Path, types: Sequence[str]) -> tuple[str, ...]:
    """:func:`parse_items` of the file at ``path``."""
    return parse_items(_read(path, "--items-file"), types, source=f"--items-file {path}")


def read_keys_file(path: Path) -> list[KeySpec]:
    """:func:`parse_keys` of the file at ``path``."""
    return parse_keys(_read(path, "--keys"), source=f"--keys {path}")


def _read(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read {option} {path}: {getattr(exc, 'strerror', None) or exc}",
                        hint=f"give {option} a readable UTF-8 text file") from None
