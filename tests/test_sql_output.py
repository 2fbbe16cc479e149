"""``kiwoom-tape sql`` in table format, as a user's terminal, pipe or log viewer shows it (a subprocess each).

The table goes to stdout and the row count to stderr. On one terminal or one pipe (``2>&1 | cat``) the count
follows the table on a line of its own because every write is flushed in order. When the two streams are
captured apart and shown together (a CI log, an IDE, a tool that trims stdout's last newline), the count
used to glue to the last cell (``3.0(3 rows)``); it now starts with a newline of its own there.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from _cli import cli_argv

from kiwoom_tape.sql import row_count_line

QUERY = "select 1.0 as x union all select 2.0 union all select 3.0"
TABLE = "  x\n---\n1.0\n2.0\n3.0\n"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A dataset with no rows yet: a table directory is what makes a directory a dataset."""
    (tmp_path / "orderbook").mkdir()
    return tmp_path


def sql_argv(dataset: Path, *args: str) -> list[str]:
    return cli_argv("kiwoom-tape", "sql", str(dataset), QUERY, *args)


def test_count_follows_the_table_on_its_own_line_when_stderr_is_merged_into_stdout(dataset: Path) -> None:
    """``kiwoom-tape sql DIR QUERY 2>&1 | cat``."""
    out = subprocess.run(sql_argv(dataset), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, check=True)
    assert out.stdout.decode() == TABLE + "(3 rows)\n"


def test_count_stays_apart_from_the_last_cell_when_the_streams_are_captured_separately(dataset: Path) -> None:
    out = subprocess.run(sql_argv(dataset), capture_output=True, timeout=60, check=True)
    stdout, stderr = out.stdout.decode(), out.stderr.decode()
    assert stdout == TABLE  # stdout stays the table alone, for `> file` and pipes
    assert stderr.strip() == "(3 rows)"
    # what a log viewer that trims stdout's last newline shows: no "3.0(3 rows)"
    assert (stdout.rstrip("\n") + stderr).splitlines()[-2:] == ["3.0", "(3 rows)"]


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="no pseudo-terminal on this platform")
def test_count_follows_the_table_on_one_terminal(dataset: Path) -> None:
    leader, follower = os.openpty()
    try:
        proc = subprocess.run(sql_argv(dataset), stdout=follower, stderr=follower, timeout=60, check=True)
        os.close(follower)
        follower = -1
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert proc.returncode == 0
    assert b"".join(chunks).decode().replace("\r\n", "\n") == TABLE + "(3 rows)\n"


def test_the_row_count_line() -> None:
    assert row_count_line(1, False, separate_streams=False) == "(1 row)"
    assert row_count_line(0, False, separate_streams=True) == "\n(0 rows)"
    more = row_count_line(100, True, separate_streams=False)
    assert more.startswith("(100 rows; more not shown") and "--max-rows 0" in more and more.endswith(")")


def test_other_formats_print_no_count(dataset: Path) -> None:
    csv = subprocess.run(sql_argv(dataset, "--format", "csv"), capture_output=True, timeout=60, check=True)
    assert csv.stdout.decode().splitlines() == ["x", "1.0", "2.0", "3.0"]
    assert b"row" not in csv.stderr
