"""``record --out s3://...`` and ``kiwoom-tape sql s3://...`` against a real S3 API server on loopback (tests/_s3.py).

The uploader (recorder/upload.py) moves each finished part file of the spool to the same key under the prefix,
checks it, then deletes it; errors are retried; a file left in the spool is uploaded again at the next start,
to the same key (one object). The catalog reads the objects through pyarrow datasets registered in DuckDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _cli import cli_argv, started_replay
from _s3 import BUCKET, S3Server, s3
from kiwoom_tape.recorder.upload import Uploader, default_spool, finished_files, resolve_out
from kiwoom_tape.replay.catalog import connect
from kiwoom_tape.schemas.errors import DatasetError

from kiwoom_tape.objstore import S3Url, parse_s3_url, s3_filesystem

__all__ = ["s3"]  # the fixture, imported to be used

PREFIX = "rec/day1"


def _part(spool: Path, table: str, date: str, name: str, n: int) -> Path:
    """A small real Parquet file at ``spool/TABLE/date=DATE/NAME`` with ``n`` rows."""
    path = spool / table / f"date={date}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": list(range(n)), "s": [f"row {i}" for i in range(n)]}), path)
    return path


def _spool_with_files(spool: Path) -> dict[str, bytes]:
    """Two finished part files, plus what must never be uploaded (journal, staging, a stray name); returns
    the expected object key -> bytes."""
    a = _part(spool, "orderbook", "2026-11-23", "part-20261123T000000Z-abcdef-000000.parquet", 500)
    b = _part(spool, "frames", "2026-11-23", "part-20261123T000000Z-abcdef-000000.parquet", 70)
    (spool / "_journal").mkdir()
    (spool / "_journal" / "20261123T000000Z-abcdef-000001.journal").write_bytes(b"journal")
    (spool / "_tmp").mkdir()
    (spool / "_tmp" / "orderbook.2026-11-23.part-20261123T000000Z-abcdef-000001.parquet.tmp").write_bytes(b"x")
    (spool / "orderbook" / "date=2026-11-23" / "notes.parquet").write_bytes(b"not a part")
    return {f"{PREFIX}/{p.relative_to(spool).as_posix()}": p.read_bytes() for p in (a, b)}


def _objects(s3: S3Server) -> dict[str, bytes]:
    """Object key -> bytes under PREFIX (zero-byte ``.../`` directory markers left out: folders, not files)."""
    fs = s3_filesystem()
    out = {}
    for key in s3.keys(PREFIX):
        if key.endswith("/"):
            continue
        with fs.open_input_stream(f"{BUCKET}/{key}") as f:
            out[key] = f.read()
    return out


def test_s3_urls_parse_and_bad_ones_say_how_to_write_them() -> None:
    assert parse_s3_url("s3://b/a/b/") == S3Url("b", "a/b")
    assert parse_s3_url("s3://b").path("orderbook") == "b/orderbook"
    assert str(parse_s3_url("s3://b/p")) == "s3://b/p"
    for bad in ("s3:///p", "s3://b/a//c", "s3://b/../c", "/tmp/x"):
        with pytest.raises(ValueError, match="s3://"):
            parse_s3_url(bad)


def test_out_and_spool_options(tmp_path: Path) -> None:
    assert resolve_out("data", None) == (Path("data"), None)
    assert resolve_out("s3://b/p/q", tmp_path) == (tmp_path, S3Url("b", "p/q"))
    spool = default_spool(S3Url("b", "p/q"), {"XDG_CACHE_HOME": str(tmp_path)})
    assert spool == tmp_path / "kiwoom-tape" / "spool" / "b" / "p" / "q"
    with pytest.raises(click.UsageError, match="--spool is for --out s3://"):
        resolve_out("data", tmp_path)


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--out", "s3:///prefix"], {}, "names no bucket"),
    (["--out", "s3://b/p", "--spool", "SPOOL"], {"AWS_ENDPOINT_URL": "ftp://x"}, "not an http:// or https:// URL"),
    (["--out", "data", "--spool", "SPOOL"], {}, "--spool is for --out s3://"),
])
def test_record_rejects_bad_s3_options_before_it_connects(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    argv = cli_argv("record", "--items", "005930", "--url", "ws://127.0.0.1:9/x", "--duration", "1s",
                    *[str(tmp_path / "spool") if a == "SPOOL" else a for a in args])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
                          env={**os.environ, **env})
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr
    assert not (tmp_path / "spool").exists()


def test_uploader_moves_finished_files_and_leaves_the_rest(s3: S3Server, tmp_path: Path) -> None:
    expected = _spool_with_files(tmp_path)
    up = Uploader(tmp_path, S3Url(BUCKET, PREFIX))
    assert up.run_once() == 2
    assert _objects(s3) == expected  # same keys, same bytes
    assert finished_files(tmp_path) == []
    assert (tmp_path / "_journal" / "20261123T000000Z-abcdef-000001.journal").exists()  # the journal stays local
    assert len(list((tmp_path / "_tmp").iterdir())) == 1
    assert (tmp_path / "orderbook" / "date=2026-11-23" / "notes.parquet").exists()
    assert up.stats.files == 2 and up.stats.bytes == sum(map(len, expected.values()))


def test_an_endpoint_that_goes_away_is_retried_and_nothing_is_lost_or_doubled(s3: S3Server, tmp_path: Path) -> None:
    expected = _spool_with_files(tmp_path)
    s3.stop()  # connections refused
    up = Uploader(tmp_path, S3Url(BUCKET, PREFIX), s3_filesystem(connect_timeout=1, request_timeout=2),
                  poll=0.05, backoff_base=0.05, backoff_cap=0.2).start()
    try:
        deadline = time.monotonic() + 30
        while up.stats.failures < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert up.stats.failures >= 2 and up.stats.files == 0
        assert len(finished_files(tmp_path)) == 2  # nothing removed while unconfirmed
    finally:
        s3.start()
    assert up.close(timeout=30) == []
    assert _objects(s3) == expected
    assert up.stats.files == 2


def test_close_gives_up_after_its_timeout_and_keeps_the_files(s3: S3Server, tmp_path: Path) -> None:
    _spool_with_files(tmp_path)
    s3.stop()
    try:
        up = Uploader(tmp_path, S3Url(BUCKET, PREFIX), s3_filesystem(connect_timeout=1, request_timeout=1),
                      backoff_base=0.05, backoff_cap=0.1).start()
        left = up.close(timeout=1)
        assert sorted(left) == finished_files(tmp_path) and len(left) == 2
    finally:
        s3.start()


def test_a_file_uploaded_but_never_confirmed_is_uploaded_once_more_as_the_same_object(
    s3: S3Server, tmp_path: Path
) -> None:
    """A run killed after the PUT but before the local delete: the next start uploads it again, one object."""
    expected = _spool_with_files(tmp_path)
    fs = s3_filesystem()
    key, data = next(iter(expected.items()))
    with fs.open_output_stream(f"{BUCKET}/{key}") as f:  # the earlier run's PUT
        f.write(data)
    assert s3.keys(PREFIX) == [key]
    Uploader(tmp_path, S3Url(BUCKET, PREFIX), fs).run_once()
    assert _objects(s3) == expected and s3.keys(PREFIX) == sorted(expected)
    assert finished_files(tmp_path) == []


class _FailingAfterPut:
    """A filesystem whose reads fail: the PUT happens, the check cannot, so the file must stay."""

    def __init__(self, fs: object) -> None:
        self.fs = fs
        self.open_output_stream = fs.open_output_stream  # type: ignore[attr-defined]
        self.get_file_info = fs.get_file_info  # type: ignore[attr-defined]

    def open_input_stream(self, path: str) -> object:
        raise OSError("read back refused")


class _BreaksMidFile:
    """A filesystem whose output streams take half of the first write, then fail (a read or network error)."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self.get_file_info = fs.get_file_info
        self.delete_file = fs.delete_file

    def open_output_stream(self, path: str) -> Any:
        real = self.fs.open_output_stream(path)

        class Half:
            def write(self, data: bytes) -> None:
                real.write(data[: len(data) // 2])
                raise OSError("broken in the middle")

            def close(self) -> None:
                real.close()  # as pyarrow's: completes the upload with what was written

        return Half()


def test_an_upload_broken_mid_file_leaves_no_partial_object(s3: S3Server, tmp_path: Path) -> None:
    expected = _spool_with_files(tmp_path)
    up = Uploader(tmp_path, S3Url(BUCKET, PREFIX), _BreaksMidFile(s3_filesystem()))
    with pytest.raises(OSError, match="broken in the middle"):
        up.run_once()
    # pyarrow's delete leaves a zero-byte "date=.../" directory marker: a folder to every reader, not a file
    assert [k for k in s3.keys(PREFIX) if not k.endswith("/")] == []
    assert len(finished_files(tmp_path)) == 2
    Uploader(tmp_path, S3Url(BUCKET, PREFIX)).run_once()
    assert _objects(s3) == expected


def test_a_file_is_deleted_only_after_the_object_is_checked(s3: S3Server, tmp_path: Path) -> None:
    _spool_with_files(tmp_path)
    up = Uploader(tmp_path, S3Url(BUCKET, PREFIX), _FailingAfterPut(s3_filesystem()))
    with pytest.raises(OSError, match="read back refused"):
        up.run_once()
    assert len(finished_files(tmp_path)) == 2


def test_an_s3_address_without_a_dataset_is_a_clear_error(s3: S3Server) -> None:
    with pytest.raises(DatasetError, match="holds no kiwoom-tape dataset"):
        connect(f"s3://{BUCKET}/nothing-here")


def _record_to_s3(spool: Path, seconds: str) -> tuple[int, str]:
    async def main() -> tuple[int, str]:
        env = dict(os.environ)
        async with started_replay("--simulate", "--port", "0", "--speed", "20", env=env, limit=90) as replay:
            rec = await asyncio.create_subprocess_exec(
                *cli_argv("record", "--items", "005930,000660", "--types", "0B,0D", "--url", replay.url,
                          "--out", f"s3://{BUCKET}/{PREFIX}", "--spool", str(spool), "--duration", seconds,
                          "--roll-minutes", "0.1"),
                env=env, stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(rec.communicate(), 60)
            assert await replay.interrupt() == 0
        assert rec.returncode is not None
        return rec.returncode, err.decode()

    return asyncio.run(main())


@pytest.mark.slow
def test_record_out_s3_then_sql_counts_what_was_recorded(s3: S3Server, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    code, err = _record_to_s3(spool, "9s")
    assert code == 0, err
    m = re.search(r"recorded (\d+) frames, (\d+) orderbook rows", err)
    assert m is not None, err
    frames, rows = int(m.group(1)), int(m.group(2))
    assert rows > 0
    assert finished_files(spool) == []  # everything uploaded, checked, removed
    keys = s3.keys(PREFIX)
    assert len([k for k in keys if k.startswith(f"{PREFIX}/orderbook/")]) >= 2  # rolled: several files
    con = connect(f"s3://{BUCKET}/{PREFIX}")
    try:
        assert con.execute("select count(*) from orderbook").fetchone() == (rows,)
        assert con.execute("select count(*) from frames").fetchone() == (frames,)
        # no row twice: each (run, frame, row) once
        assert con.execute("select count(distinct (run_id, frame_seq, row_idx)) from orderbook").fetchone() == (rows,)
        assert con.execute("select count(*) from quotes where date is not null").fetchone() == (rows,)
    finally:
        con.close()
    # the command line, as a user types it
    argv = cli_argv("kiwoom-tape", "sql", f"s3://{BUCKET}/{PREFIX}", "select count(*) as n from orderbook", "-f", "csv")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["n", str(rows)]
    done = subprocess.run(cli_argv("kiwoom-tape", "verify", f"s3://{BUCKET}/{PREFIX}"), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Dataset s3://{BUCKET}/{PREFIX}" in done.stdout and "kiwoom-tape-s3-" not in done.stdout, done.stdout
    frames_files = len([k for k in keys if k.startswith(f"{PREFIX}/frames/")])
    assert f"({frames_files} files)" in _replay_banner(f"s3://{BUCKET}/{PREFIX}")


def _replay_banner(address: str) -> str:
    """What ``replay ADDRESS`` prints before it is interrupted."""

    async def main() -> str:
        async with started_replay(address, "--port", "0", "--speed", "max", env=dict(os.environ), limit=60) as replay:
            assert replay.url.startswith("ws://127.0.0.1:")
            await replay.interrupt()
            return replay.output

    return asyncio.run(main())


def test_threads_are_not_left_behind() -> None:
    assert not [t for t in threading.enumerate() if t.name == "kiwoom-tape-upload"]


_DIE_MID_FILE = """
import os, signal, sys
from pathlib import Path
from kiwoom_tape.objstore import S3Url, s3_filesystem
from kiwoom_tape.recorder.upload import Uploader

class DiesMidFile:
    '''The S3 filesystem, but the process is killed (SIGKILL) after half of the first file's bytes were sent.'''
    def __init__(self, fs):
        self.fs = fs
    def __getattr__(self, name):
        return getattr(self.fs, name)
    def open_output_stream(self, path):
        real = self.fs.open_output_stream(path)
        class Half:
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                real.close()
            def write(self, data):
                real.write(data[: len(data) // 2])
                real.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        return Half()

Uploader(Path(sys.argv[1]), S3Url(sys.argv[2], sys.argv[3]), DiesMidFile(s3_filesystem())).run_once()
"""


def test_an_uploader_killed_mid_file_loses_nothing_and_doubles_nothing(s3: S3Server, tmp_path: Path) -> None:
    expected = _spool_with_files(tmp_path)
    done = subprocess.run([sys.executable, "-c", _DIE_MID_FILE, str(tmp_path), BUCKET, PREFIX],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert s3.keys(PREFIX) == []  # the unfinished upload is not an object
    assert len(finished_files(tmp_path)) == 2
    Uploader(tmp_path, S3Url(BUCKET, PREFIX)).run_once()  # the next start
    assert _objects(s3) == expected
    assert finished_files(tmp_path) == []


def test_an_endpoint_that_stalls_keeps_the_files_for_the_next_attempt(s3: S3Server, tmp_path: Path) -> None:
    """A server that accepts connections and never answers: each request times out, nothing is removed."""
    expected = _spool_with_files(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as staller:
        accepted: list[socket.socket] = []

        def accept() -> None:
            with contextlib.suppress(OSError):
                while True:
                    accepted.append(staller.accept()[0])

        threading.Thread(target=accept, daemon=True).start()
        env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{staller.getsockname()[1]}"}
        fs = s3_filesystem(env, connect_timeout=1, request_timeout=1, attempts=1)
        up = Uploader(tmp_path, S3Url(BUCKET, PREFIX), fs, backoff_base=0.05, backoff_cap=0.1).start()
        left = up.close(timeout=2)
        for conn in accepted:
            conn.close()
    assert accepted and up.stats.failures >= 1 and up.stats.files == 0
    assert len(left) == 2
    Uploader(tmp_path, S3Url(BUCKET, PREFIX)).run_once()
    assert _objects(s3) == expected
