"""``kiwoom-tape compact`` killed with SIGKILL between any two durable steps: readers see the old or the new set.

The compaction runs in a child process that SIGKILLs itself at its k-th checkpoint (``KIWOOM_TAPE_COMPACT_KILL_AT``),
for every k until a run completes: a forked child for the sweep (no interpreter start per step), and the
real command line once. After each kill, every table's partition must hold exactly its old
files or exactly new ones (never both, and with the atomic exchange never neither) with the same rows;
the next ``compact`` must then finish (or undo) the job, leaving the compacted day with every row.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from test_compact import DAY, TABLES, files, make_day, rows_of

from kiwoom_tape import compact_commit
from kiwoom_tape.compact import compact
from kiwoom_tape.compact_commit import KILL_ENV, NO_EXCHANGE_ENV, exchange_dirs, recover
from kiwoom_tape.compact_plan import run_of

_CLI = "from kiwoom_tape.cli import main; main()"


@pytest.fixture(scope="module")
def small_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crash") / "data"
    make_day(root, rows=600)
    return root


def counts(root: Path, tables: tuple[str, ...] = TABLES) -> dict[str, int]:
    """Rows per table as a reader globbing the partitions sees them."""
    con = duckdb.connect()
    try:
        out = {}
        for t in tables:
            row = con.execute(f"select count(*) from read_parquet('{root}/{t}/date=*/*.parquet')").fetchone()
            assert row is not None
            out[t] = int(row[0])
        return out
    finally:
        con.close()


def compact_killed_at(root: Path, k: int, env: dict[str, str]) -> bool:
    """Compact ``root`` in a forked child that SIGKILLs itself at checkpoint ``k``; False if it completed."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            os.environ.update(env)
            os.environ[KILL_ENV] = str(k)
            compact_commit._steps = 0
            compact(root, DAY)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return False
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    return True


def is_compacted_name(name: str) -> bool:
    parsed = run_of(name)
    return parsed is not None and (parsed[1] == -1 or parsed[0].startswith("c2"))


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_kill_9_at_every_step_leaves_old_or_new_and_the_next_run_finishes(
    small_day: Path, tmp_path: Path, exchange: bool
) -> None:
    if exchange and not exchange_dirs(tmp_path, tmp_path):
        pytest.skip("no renameat2(RENAME_EXCHANGE) here")
    old_names = {t: {p.name for p in files(small_day, t)} for t in TABLES}
    old_rows = {t: rows_of(small_day, t) for t in TABLES}
    want = counts(small_day)
    env: dict[str, str] = {}
    if not exchange:
        env[NO_EXCHANGE_ENV] = "1"
    k = 0 if exchange else len(TABLES)  # the steps before the commit are the same in both modes
    while True:
        k += 1
        assert k < 40, "the compaction never completed"
        root = tmp_path / f"k{k}"
        shutil.copytree(small_day, root)
        if not compact_killed_at(root, k, env):
            break
        gone = []
        for t in TABLES:
            names = {p.name for p in files(root, t)}
            if not names and not exchange:
                gone.append(t)  # the fallback was cut between its two renames: the next run completes it
                continue
            assert names == old_names[t] or (names and all(map(is_compacted_name, names))), (k, t, names)
        seen = tuple(t for t in TABLES if t not in gone)
        assert counts(root, seen) == {t: want[t] for t in seen}, k
        assert len(gone) <= 1, (k, gone)
        (done,) = recover(root)  # what the next `compact` does first
        committed = is_compacted_name(files(root, "frames")[0].name)
        assert ("completed" in done) or ("removed the stage" in done)
        for t in TABLES:  # all new after a commit, else all old (the next run then starts over)
            names = [p.name for p in files(root, t)]
            assert all(is_compacted_name(n) == committed for n in names), (k, t)
            assert rows_of(root, t) == old_rows[t], (k, t)
        assert not any((root / "_tmp").glob("compact-*")), k
        shutil.rmtree(root)
    assert k > 13  # every durable step was cut once: tables written, intent, swaps, deletions


def test_the_command_killed_mid_commit_then_run_again(small_day: Path, tmp_path: Path) -> None:
    """The real command line, SIGKILLed after its intent and first swap: the next run completes it."""
    root = tmp_path / "data"
    shutil.copytree(small_day, root)
    old_rows = {t: rows_of(small_day, t) for t in TABLES}
    argv = [sys.executable, "-c", _CLI, "compact", str(root)]
    proc = subprocess.run(argv, env={**os.environ, KILL_ENV: "6"}, capture_output=True, text=True, timeout=100)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert all(map(is_compacted_name, (p.name for p in files(root, "frames"))))  # swapped
    assert not any(map(is_compacted_name, (p.name for p in files(root, "events"))))  # not yet
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr
    assert "completed the interrupted compaction" in proc.stderr
    assert "already compacted" in proc.stdout
    for t in TABLES:
        assert all(map(is_compacted_name, (p.name for p in files(root, t)))), t
        assert rows_of(root, t) == old_rows[t], t
