"""``kiwoom-tape demo``: the README's first command runs green, on loopback, within 60 s."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from _cli import cli_argv
from click.testing import CliRunner
from kiwoom_tape.replay.catalog import connect

from kiwoom_tape.cli import cli
from kiwoom_tape.verify import verify

DEMO = cli_argv("kiwoom-tape", "demo")


@pytest.mark.slow
def test_demo_runs_green_within_a_minute(tmp_path: Path) -> None:
    out = tmp_path / "demo-data"
    # no credentials in the environment: the demo needs none
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIWOOM_")}
    t0 = time.monotonic()
    proc = subprocess.run([*DEMO, "--out", str(out)], capture_output=True, text=True, timeout=90, env=env,
                          cwd=tmp_path, check=False)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert elapsed < 60, f"the demo took {elapsed:.0f} s"
    text = proc.stdout
    for step in ("1/3 Recording", "2/3 Querying", "3/3 Replaying", "Try next:"):
        assert step in text, text
    assert "recording" in proc.stderr  # progress was visible
    assert "Traceback" not in proc.stderr
    # the summary: rows per table and a spread per item, from the data on disk
    con = connect(out)
    rows = dict(con.execute("select item, count(*) from orderbook group by all").fetchall())
    assert set(rows) == {"005930", "000660", "005930_NX"}
    (n_0e,) = con.execute("select count(*) from afterhours").fetchone() or (0,)
    assert n_0e > 20  # the clock reached the after-hours window
    for item, n in rows.items():
        assert item in text and str(n) in text
    assert "avg_spread_ticks" in text
    # the replay reached a client: every recorded row when replay.recorded exists
    assert "the client logged in" in text
    if "replaying" in text:
        assert "recorded rows replayed: all of them" in text
    else:
        assert "note: this installation has no recorded replay" in text
    assert f"kiwoom-tape sql {out}" in text and f"kiwoom-tape verify {out}" in text
    assert verify(out).ok(strict=True)


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "not made by `kiwoom-tape demo`" in result.output and "--out" in result.output
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "file")])
    assert result.exit_code == 2 and "is a file" in result.output


def test_demo_replaces_its_own_earlier_run(tmp_path: Path) -> None:
    out = tmp_path / "d"
    first = CliRunner().invoke(cli, ["demo", "--out", str(out), "--seconds", "1"])
    assert first.exit_code == 0, first.output
    files = {p.name for p in out.rglob("*.parquet")}
    second = CliRunner().invoke(cli, ["demo", "--out", str(out), "--seconds", "1"])
    assert second.exit_code == 0, second.output
    assert "replacing the previous demo" in second.output
    assert not files & {p.name for p in out.rglob("*.parquet")}  # a new run id: the old files are gone
