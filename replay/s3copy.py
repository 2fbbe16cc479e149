"""A local copy of a dataset's part files on S3, for the commands that read a dataset file by file (``verify``,
``replay``).

``kiwoom-tape verify`` reads every file in full and checks what pyarrow reports about each (pages, footer,
statistics), so it needs the bytes anyway: it runs on a temporary copy, deleted afterwards. The copy needs as much
free disk as the dataset (a day of the whole market is some GB; the temporary folder is ``TMPDIR``'s). The
journal and open files of a running recorder stay in its local spool and are not on S3: verify the spool for them.
``replay s3://...`` copies only the ``frames`` of the one day it serves.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from kiwoom_tape.replay.catalog_s3 import s3_part_files
from kiwoom_tape.schemas.errors import DatasetError
from kiwoom_tape.schemas.layout import TABLE_NAMES

from kiwoom_tape.objstore import S3Url, is_s3_url, parse_s3_url, s3_filesystem

__all__ = ["copy_s3_dataset", "local_dataset"]

_CHUNK: Final = 8 * 2**20


def copy_s3_dataset(
    url: S3Url, dest: Path, fs: Any = None, *, tables: Collection[str] = TABLE_NAMES, last_day: bool = False
) -> int:
    """Download the part files of ``tables`` under ``url`` to the same relative paths under ``dest``; returns the
    count. ``last_day``: only the last ``date=`` partition of each table. Raises DatasetError when ``url`` holds
    no dataset or cannot be listed."""
    fs = s3_filesystem() if fs is None else fs
    base = len(url.path()) + 1
    n = 0
    for table, files in s3_part_files(fs, url).items():
        if table not in tables:
            continue
        if last_day:
            day = max(obj[base:].split("/")[1] for obj in files)
            files = [obj for obj in files if obj[base:].split("/")[1] == day]
        for obj in files:
            target = dest / obj[base:]
            target.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(obj) as src, open(target, "wb") as out:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
            n += 1
    return n


@contextmanager
def local_dataset(address: str, **copy: Any) -> Iterator[tuple[Path, str | None]]:
    """(a local directory, the address to show in its place): the directory itself and None, or a temporary copy
    of ``s3://...`` (:func:`copy_s3_dataset` with the ``copy`` options) and that address."""
    if not is_s3_url(address):
        yield Path(address), None
        return
    try:
        url = parse_s3_url(address)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="kiwoom-tape-s3-") as tmp:
        copy_s3_dataset(url, Path(tmp), **copy)
        yield Path(tmp), str(url)
