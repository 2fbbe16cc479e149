"""A disk that fills while recording: a clear error, a non-zero exit, and nothing already written damaged.

The recorder rolls once (finalizing Parquet files), then another program fills the disk: the files
finalized before stay readable, and the journal of the rest is recovered once there is room again.

Uses a real 3 MiB tmpfs (needs root and mount; skipped with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _cli import cli_argv
from kiwoom_tape.recorder.store import recover
from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource

from .conftest import Report, SecretAudit


@pytest.fixture
def small_disk(tmp_path: Path, report: Report) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        report.disk_full = "skipped: needs root and mount(8) to make a small tmpfs"
        pytest.skip("needs root and mount(8) to make a small tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        report.disk_full = f"skipped: cannot mount a tmpfs here: {r.stderr.strip()}"
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _finals(out: Path) -> list[Path]:
    """The finalized Parquet files under ``out`` (not the hidden ``.tmp`` ones being written)."""
    return [p for p in out.rglob("*.parquet") if not p.name.startswith(".")]


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the disk is full."""
    chunk = bytes(1 << 16)
    with path.open("wb", buffering=0) as f:
        try:
            while f.write(chunk):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def test_full_disk_stops_with_a_clear_error_and_keeps_what_was_written(
    small_disk: Path, tmp_path: Path, report: Report, audit: SecretAudit
) -> None:
    out = small_disk / "data"
    report.disk_full = "failed"
    secret = audit.secret("secretkey")

    async def main() -> tuple[int, str]:
        market = SimulatedMarket(seed=11, items=["005930", "000660", "005930_NX", "035420", "005380"],
                                 start=15 * 3600 + 30 * 60 + 10)
        async with serve(SimSource(market, speed=40.0), port=0) as server:
            env = {**os.environ, "KIWOOM_APPKEY": audit.secret("appkey"), "KIWOOM_SECRETKEY": secret}
            proc = await asyncio.create_subprocess_exec(
                *cli_argv("record", "--items", "005930_NX", "--url", server.url, "--out", str(out),
                          "--fsync-interval", "0.05", "--roll-minutes", "0.1", "-q"),
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            try:
                # the first roll (6 s) finalizes files; then another program fills the disk
                async with asyncio.timeout(60):
                    while not _finals(out):  # noqa: ASYNC110  # files: no event to wait on
                        await asyncio.sleep(0.05)
                _fill(small_disk / "filler")
                async with asyncio.timeout(90):
                    stdout, stderr = await proc.communicate()
            finally:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            for tok in server._issued:
                audit.add(tok)
            return proc.returncode or 0, (stdout + stderr).decode("utf-8", "replace")

    code, output = asyncio.run(main())
    print(output)  # shown when the test fails
    audit.text("record stderr", output)
    assert code != 0, output
    assert "Traceback" not in output, output
    assert "space" in output.lower() and "--out" in output, output
    assert secret not in output
    # every finalized Parquet file is complete and readable (and there are some: the check checks something)
    finals = _finals(out)
    assert finals, "no Parquet file was finalized before the disk filled"
    for p in finals:
        pq.read_table(p)
    # the journal left behind is recoverable once there is room again
    roomy = tmp_path / "roomy"
    shutil.copytree(out, roomy)
    recovery = recover(roomy)
    assert not recovery.unreadable
    for p in roomy.rglob("*.parquet"):
        pq.read_table(p)
    blob = b"".join(p.read_bytes() for p in roomy.rglob("*") if p.is_file())
    assert secret.encode() not in blob
    why = re.search(r"[^:]*space[^:(]*", output, re.I)
    report.disk_full = (
        f"stopped with a clear error (exit {code}: {why.group(0).strip() if why else '?'}); {len(finals)} files "
        f"finalized and readable, the journal recovered ({recovery.frames} frames)"
    )
