"""How a compaction replaces a day's partition directories crash-safely: staging, an intent file, an atomic swap.

A compaction of date D stages its new files under ``DIR/_tmp/compact-<id>/<table>/`` (the dataset's
filesystem, so renames are atomic; ``_tmp`` starts with ``_``, so readers and Hive globs skip it), each
file fsynced, the directories fsynced. Then, in this order::

    1. write DIR/_tmp/compact-<id>/intent.json       (the commit point: names the old and new file sets)
    2. per table: swap DIR/<table>/date=D  <->  the staged directory
    3. delete the staged directories (now holding the old files), then the intent, then the stage

The swap is Linux ``renameat2(RENAME_EXCHANGE)`` (via ctypes): one atomic step, so at every instant a
reader of ``DIR/<table>/date=D/*.parquet`` sees exactly the old set or exactly the new set. Where the
exchange is not available (another OS, a filesystem without it) the fallback is two renames (the old
directory to ``<table>.old`` in the stage, the new one into place): between them the partition is
briefly absent, and :func:`recover` completes the step. We chose a directory swap over a per-file
scheme because a partition of many files cannot be switched file by file without a moment in which
readers see both sets (or neither).

:func:`recover` runs at the start of every ``kiwoom-tape compact``: a stage without an intent is rolled
back (deleted: the old files were never touched), a stage with one is rolled forward (each table whose
partition still holds the old set is swapped, then the old files are deleted). New file names always
carry the compaction id, so the old and new sets never share a name and the state is read from names.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kiwoom_tape.portable import fsync_dir
from kiwoom_tape.schemas import layout
from kiwoom_tape.schemas.errors import DatasetError

__all__ = [
    "INTENT",
    "KILL_ENV",
    "STAGE_PREFIX",
    "TMP_DIR",
    "Intent",
    "checkpoint",
    "commit",
    "exchange_dirs",
    "parquet_names",
    "recover",
    "remove_tree",
    "stage_dir",
    "write_durable",
]

TMP_DIR: Final = layout.STAGING_DIR
"""The dataset's scratch directory (``DIR/_tmp``); compactions use ``_tmp/compact-<id>/`` inside it."""
STAGE_PREFIX: Final = "compact-"
INTENT: Final = "intent.json"
KILL_ENV: Final = "KIWOOM_TAPE_COMPACT_KILL_AT"
"""Testing hook: with ``KIWOOM_TAPE_COMPACT_KILL_AT=k`` the process SIGKILLs itself at the k-th
:func:`checkpoint` (from 1), so that tests can cut a compaction between any two durable steps."""
NO_EXCHANGE_ENV: Final = "KIWOOM_TAPE_COMPACT_NO_EXCHANGE"
"""Testing hook: with ``KIWOOM_TAPE_COMPACT_NO_EXCHANGE=1`` the portable two-rename fallback is used."""

_AT_FDCWD: Final = -100
_RENAME_EXCHANGE: Final = 2
_steps = 0


def checkpoint() -> int:
    """Count one durable step; SIGKILL this process if :data:`KILL_ENV` names it. Returns the step number."""
    global _steps
    _steps += 1
    if os.environ.get(KILL_ENV) == str(_steps):
        os.kill(os.getpid(), signal.SIGKILL)
    return _steps


def stage_dir(root: Path, compaction_id: str) -> Path:
    """``DIR/_tmp/compact-<id>``."""
    return root / TMP_DIR / (STAGE_PREFIX + compaction_id)


def parquet_names(d: Path) -> frozenset[str] | None:
    """The ``*.parquet`` names readers see in ``d`` (hidden names excluded), or None if ``d`` is absent."""
    try:
        return frozenset(n for n in os.listdir(d) if n.endswith(".parquet") and not n.startswith((".", "_")))
    except FileNotFoundError:
        return None


def write_durable(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a hidden temporary file, fsync, rename, fsync the directory."""
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def remove_tree(d: Path) -> None:
    """Delete ``d`` and everything in it (if present), then fsync its parent."""
    if d.exists():
        shutil.rmtree(d)
        fsync_dir(d.parent)


def _renameat2() -> Callable[..., int] | None:
    if os.environ.get(NO_EXCHANGE_ENV) == "1":
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):  # no renameat2 (old glibc, macOS), no CDLL(None) (Windows)
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def exchange_dirs(a: Path, b: Path) -> bool:
    """Atomically swap two existing directories (``renameat2(RENAME_EXCHANGE)``); False if unsupported here."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(a), None, os.fspath(b))


@dataclass(frozen=True)
class Intent:
    """What a committed compaction replaces: per table, the old and the new file names of ``date``'s partition."""

    compaction_id: str
    date: str
    tables: dict[str, tuple[frozenset[str], frozenset[str]]]

    def to_json(self) -> bytes:
        tables = {t: {"old": sorted(o), "new": sorted(n)} for t, (o, n) in self.tables.items()}
        return json.dumps({"id": self.compaction_id, "date": self.date, "tables": tables}, indent=1).encode()

    @classmethod
    def read(cls, path: Path) -> Intent:
        obj = json.loads(path.read_bytes())
        tables = {t: (frozenset(v["old"]), frozenset(v["new"])) for t, v in obj["tables"].items()}
        return cls(obj["id"], obj["date"], tables)


def _partition(root: Path, table: str, date: str) -> Path:
    return root / table / f"date={date}"


def _swap_one(root: Path, stage: Path, table: str, date: str, old: frozenset[str], new: frozenset[str]) -> None:
    """Bring ``table``'s partition from the old set to the new one (whatever step a crash cut), old files
    ending up in ``stage/table`` (or ``stage/table.old``). Raises DatasetError if neither set is found."""
    part, staged, aside = _partition(root, table, date), stage / table, stage / (table + ".old")
    now = parquet_names(part)
    if now == new:
        return
    if now is None and parquet_names(aside) == old and parquet_names(staged) == new:
        os.rename(staged, part)  # the fallback was cut between its two renames
        fsync_dir(part.parent)
        fsync_dir(stage)
        return
    if now != old or parquet_names(staged) != new:
        raise DatasetError(
            f"compaction {stage.name} of {date}: {part} holds neither the old nor the new files "
            f"({len(now or ())} files; expected {len(old)} old or {len(new)} new)",
            hint=f"something else changed the partition; look at {stage} and restore the files by hand",
        )
    if not exchange_dirs(staged, part):
        os.rename(part, aside)
        fsync_dir(part.parent)
        fsync_dir(stage)
        checkpoint()
        os.rename(staged, part)
    fsync_dir(part.parent)
    fsync_dir(stage)


def commit(root: Path, stage: Path, intent: Intent, progress: Callable[[str], None] = lambda _: None) -> None:
    """Steps 1-3 of the module docstring, for a stage whose new files are complete and fsynced."""
    write_durable(stage / INTENT, intent.to_json())
    checkpoint()
    _roll_forward(root, stage, intent, progress)


def _roll_forward(root: Path, stage: Path, intent: Intent, progress: Callable[[str], None]) -> None:
    for table, (old, new) in intent.tables.items():
        _swap_one(root, stage, table, intent.date, old, new)
        progress(f"{table}: {len(new)} new file(s) in place of {len(old)}")
        checkpoint()
    for table in intent.tables:
        for d in (stage / table, stage / (table + ".old")):
            if d.exists():
                remove_tree(d)
                checkpoint()
    (stage / INTENT).unlink()
    fsync_dir(stage)
    checkpoint()
    remove_tree(stage)


def recover(root: Path, progress: Callable[[str], None] = lambda _: None) -> list[str]:
    """Finish or undo every interrupted compaction under ``DIR/_tmp``; the messages saying what was done."""
    tmp = root / TMP_DIR
    done: list[str] = []
    if not tmp.is_dir():
        return done
    for stage in sorted(tmp.iterdir()):
        if not stage.name.startswith(STAGE_PREFIX) or not stage.is_dir():
            continue
        intent_path = stage / INTENT
        if not intent_path.exists():
            remove_tree(stage)
            done.append(f"removed the stage of the interrupted compaction {stage.name}: it had not committed "
                        "(the old files stay) or had finished (only its leftovers went)")
            continue
        try:
            intent = Intent.read(intent_path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"cannot read {intent_path}: {exc}",
                               hint="look at the stage: the old files are in the partitions or in it") from None
        _roll_forward(root, stage, intent, progress)
        done.append(f"completed the interrupted compaction {stage.name} of {intent.date}")
    return done  # DIR/_tmp itself stays: the recorder stages its in-progress files there too
