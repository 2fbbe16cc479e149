"""The uploader of ``record --out s3://bucket/prefix``: finished Parquet files go from a local spool to S3.

The recorder writes its dataset, journal and open segments included, to a local spool directory as always
(``--spool DIR``; default :func:`default_spool`). A background thread (:class:`Uploader`, never the event loop:
the recorder does not wait on the network) finds every finished part file, ``TABLE/date=.../*.parquet`` (a file
there is complete: it was renamed into place atomically, :mod:`kiwoom_tape.schemas.layout`), and for each:

1. PUTs it to the same relative key under the prefix (pyarrow's S3 filesystem: a single PUT, or a multipart
   upload that becomes visible only when complete: an object is whole or absent);
   (a failure in the middle of the bytes deletes what the stream's close completed, as pyarrow cannot abort;
   pyarrow then leaves a zero-byte ``date=.../`` directory marker, which readers take for the folder it is);
2. checks it: the object's size equals the file's, then the object is read back and its MD5 equals the MD5 of
   the bytes sent (pyarrow exposes no ETag, and a multipart ETag is not an MD5 anyway);
3. only then deletes the local file.

Errors (endpoint down, refused, stalled past the request timeout) are logged and retried with a doubling wait
capped at ``backoff_cap``; the file stays in the spool. A file in the spool was never confirmed, so the next
start uploads it again to the same key: an overwrite with the same bytes, never a second object (keys are the
deterministic part names). What the recorder's recovery rewrites from a journal lands in the spool and is
uploaded the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click
from kiwoom_tape.schemas.layout import TABLE_NAMES, parse_part_filename

from kiwoom_tape.objstore import S3Url, is_s3_url, parse_s3_url, s3_filesystem

__all__ = ["UploadStats", "Uploader", "default_spool", "finished_files", "resolve_out"]

log = logging.getLogger("kiwoom_tape.recorder.upload")

CHUNK: Final = 8 * 2**20
"""Bytes read, hashed and sent at a time (a part file is up to ``roll_bytes``, 128 MiB by default)."""


def default_spool(target: S3Url, environ: dict[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/kiwoom-tape/spool/BUCKET/PREFIX`` (``~/.cache`` when unset; ``%LOCALAPPDATA%`` on
    Windows): one spool per target, so two targets never mix files."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or env.get("LOCALAPPDATA") or str(Path.home() / ".cache")
    return Path(base) / "kiwoom-tape" / "spool" / target.bucket / Path(*target.prefix.split("/"))


def resolve_out(out: str, spool: Path | None) -> tuple[Path, S3Url | None]:
    """``record``'s ``--out``/``--spool`` -> (the local dataset directory, the upload target or None).

    ``--out DIR``: DIR, no upload (``--spool`` is then a usage error). ``--out s3://B/P``: the spool
    (``--spool`` or :func:`default_spool`) and the target.
    """
    if not is_s3_url(out):
        if spool is not None:
            raise click.UsageError("--spool is for --out s3://...: a local --out is written directly")
        return Path(out), None
    try:
        target = parse_s3_url(out)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    try:
        s3_filesystem()  # a malformed AWS_ENDPOINT_URL fails here, before the recording starts
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return (spool if spool is not None else default_spool(target)), target


def finished_files(spool: Path) -> list[Path]:
    """The finished part files in ``spool`` (``TABLE/date=*/part-*.parquet``), oldest name first."""
    found: list[Path] = []
    for table in TABLE_NAMES:
        for path in (spool / table).glob("date=*/*.parquet"):
            if parse_part_filename(path.name) is not None:
                found.append(path)
    return sorted(found, key=lambda p: (p.name, p.parent.name, p.parent.parent.name))


@dataclass(slots=True)
class UploadStats:
    """Counters of an :class:`Uploader` (updated by its thread)."""

    files: int = 0
    """Files uploaded, checked and removed from the spool."""
    bytes: int = 0
    """Their bytes."""
    failures: int = 0
    """Attempts that failed (each logged and retried)."""


class Uploader:
    """Moves the finished files of ``spool`` to ``target`` in a thread (module docstring).

    ``fs``: a pyarrow filesystem (default :func:`kiwoom_tape.objstore.s3_filesystem`); ``poll``: seconds between
    looks at the spool; ``backoff_base``/``backoff_cap``: the waits after failed attempts (doubling, capped).
    :meth:`start` it, :meth:`close` it once the stores are closed (it uploads what is left, within a time).
    """

    def __init__(
        self,
        spool: Path,
        target: S3Url,
        fs: Any = None,
        *,
        poll: float = 0.5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spool = Path(spool)
        self.target = target
        self.fs = s3_filesystem() if fs is None else fs
        self.poll = poll
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stats = UploadStats()
        self._monotonic = monotonic
        self._closing = False
        self._deadline = float("inf")
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def key(self, path: Path) -> str:
        """The object path (``bucket/prefix/TABLE/date=.../NAME``) of a spool file."""
        return self.target.path(path.relative_to(self.spool).as_posix())

    def upload(self, path: Path) -> int:
        """Upload ``path``, check the object (size, MD5 read back), then delete ``path``; returns its size.

        Raises OSError when any step fails: the local file is then left for the next attempt.
        """
        key = self.key(path)
        sent = hashlib.md5(usedforsecurity=False)
        size = 0
        with open(path, "rb") as src:
            dst = self.fs.open_output_stream(key)
            try:
                while chunk := src.read(CHUNK):
                    sent.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
            except BaseException:
                # pyarrow has no abort: closing completes the upload with the bytes so far, so remove that object
                # (a reader must never see part of a file; the local file stays and is uploaded again)
                with contextlib.suppress(Exception):
                    dst.close()
                    self.fs.delete_file(key)
                raise
            dst.close()
        info = self.fs.get_file_info(key)
        if info.size != size:
            raise OSError(f"{self.target.path()}: object {key} has {info.size} bytes after the upload, not {size}")
        back = hashlib.md5(usedforsecurity=False)
        with self.fs.open_input_stream(key) as obj:
            while chunk := obj.read(CHUNK):
                back.update(chunk)
        if back.digest() != sent.digest():
            raise OSError(f"object {key} differs from {path} after the upload (MD5 mismatch)")
        os.unlink(path)
        return size

    def run_once(self) -> int:
        """Upload every finished file once, in order; stops at the first failure (raised). Returns the count."""
        n = 0
        for path in finished_files(self.spool):
            size = self.upload(path)
            self.stats.files += 1
            self.stats.bytes += size
            n += 1
        return n

    def start(self) -> Uploader:
        """Start the thread (it uploads what an earlier run left in the spool first)."""
        self._thread = threading.Thread(target=self._run, name="kiwoom-tape-upload", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 60.0) -> list[Path]:
        """Upload what is left (retrying for up to ``timeout`` seconds), stop the thread; returns the files still
        in the spool (uploaded at the next start). An attempt in flight at the deadline is waited for: it ends
        within the filesystem's request timeout times its attempts."""
        self._deadline = self._monotonic() + timeout
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        left = finished_files(self.spool)
        st = self.stats
        log.info("uploaded %d file(s), %d bytes, to %s (%d failed attempts)",
                 st.files, st.bytes, self.target, st.failures)
        if left:
            log.warning("%d file(s) not uploaded to %s stay in the spool %s; the next `record` with this --out and "
                        "--spool uploads them", len(left), self.target, self.spool)
        return left

    def _run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            closing = self._closing
            try:
                self.run_once()
                failures = 0
                if closing:
                    return
                delay = self.poll
            except OSError as exc:
                self.stats.failures += 1
                failures += 1
                delay = min(self.backoff_cap, self.backoff_base * 2 ** min(failures - 1, 30))
                log.warning("upload to %s failed (attempt %d, again in %.1f s): %s",
                            self.target, failures, delay, exc)
                if closing:
                    left = self._deadline - self._monotonic()
                    if left <= 0:
                        return
                    time.sleep(min(delay, left))
                    continue
            self._wake.wait(delay)
