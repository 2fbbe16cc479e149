"""Recovery (recorder/recovery.py): damage anywhere loses only the damaged records, every crash is a gap,
``record recover`` says what it dropped, and Ctrl-C stops a start-up recovery at once."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import pytest
from _cli import cli_argv
from click.testing import CliRunner
from kiwoom_tape.recorder.cli import record_command
from kiwoom_tape.recorder.journal import JournalWriter, read_journal
from kiwoom_tape.recorder.recovery import recover
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.schemas.layout import JOURNAL_DIR, new_run_id
from kiwoom_tape.schemas.versions import recv_ns_of

RUN = new_run_id(1_795_300_000_000_000_000, 0x123456)
T0 = 1_795_359_000_000_000_000  # 2026-11-22 23:50 KST
N_BIG = 6_000
"""Frames of the journal Ctrl-C interrupts the recovery of: several seconds to recover, so 2 s tells."""


def _table(root: Path, name: str) -> list[dict[str, Any]]:
    if not (root / name).is_dir():
        return []
    t = pads.dataset(root / name, format="parquet", partitioning="hive").to_table()
    t = t.set_column(t.schema.get_field_index("recv_ts"), "recv_ts", recv_ns_of(t))
    return sorted(t.to_pylist(), key=lambda r: r["recv_ts"])


def _crashed(root: Path, n: int, *, run: str = RUN) -> Path:
    """A run killed after its last fsync with ``n`` frames (REAL and PING) in its journal; the journal's path."""
    store = Store(root, run).open()
    for i in range(n):
        row = '{"type":"0D","name":"","item":"005930","values":{"21":"' + f"{i:06d}" + '"}}'
        text = '{"trnm":"PING"}' if i % 5 == 4 else '{"trnm":"REAL","data":[' + row + "]}"
        store.add_frame(T0 + i * 1000, "in", text)
    store.sync()
    path = store._journal.path  # type: ignore[union-attr]
    store._abandon()
    return path


def test_record_recover_exits_non_zero_naming_what_it_dropped(tmp_path: Path) -> None:
    path = _crashed(tmp_path, 20)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    result = CliRunner().invoke(record_command, ["recover", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "dropped" in result.output and f"{path.name}.torn" in result.output
    assert "1 frames known lost" in result.output
    again = CliRunner().invoke(record_command, ["recover", str(tmp_path)], catch_exceptions=False)
    assert again.exit_code == 0, again.output  # nothing left to recover, nothing dropped now


def test_a_clean_recovery_exits_zero(tmp_path: Path) -> None:
    _crashed(tmp_path, 20)
    result = CliRunner().invoke(record_command, ["recover", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 crash gap(s)" in result.output


def test_a_kill_right_after_a_roll_is_a_gap_from_the_new_segment(tmp_path: Path) -> None:
    store = Store(tmp_path, RUN).open()
    for i in range(10):
        store.add_frame(T0 + i, "in", '{"trnm":"PING"}')
    store._roll()  # segment 0 finished (files in place, journal deleted), segment 1 empty
    journal = store._journal
    assert journal is not None
    created = read_journal(journal.path).header.created_ns  # type: ignore[union-attr]
    store._abandon()  # killed before anything reached segment 1
    assert [p.name for p in (tmp_path / JOURNAL_DIR).iterdir()] == [journal.path.name]
    report = recover(tmp_path)
    assert report.crashes == [(RUN, created)]
    events = _table(tmp_path, "events")
    assert [(e["kind"], e["recv_ts"]) for e in events if e["kind"] == "gap_start"] == [("gap_start", created)]


def test_a_run_always_has_a_journal_while_it_rolls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next segment's journal exists before the finished one is deleted: no instant without a journal."""
    store = Store(tmp_path, RUN).open()
    store.add_frame(T0, "in", '{"trnm":"PING"}')
    seen: list[list[str]] = []
    real_remove = JournalWriter.remove

    def remove(self: JournalWriter) -> None:
        seen.append(sorted(p.name for p in (tmp_path / JOURNAL_DIR).glob("*.journal")))
        real_remove(self)

    monkeypatch.setattr(JournalWriter, "remove", remove)
    store._roll()
    store.close()
    assert seen[0] == [f"{RUN}-000000.journal", f"{RUN}-000001.journal"]


def test_two_dead_runs_get_one_crash_gap_each_and_the_view_closes_them(tmp_path: Path) -> None:
    from kiwoom_tape.replay.catalog import connect

    other = new_run_id(1_795_300_100_000_000_000, 0x654321)
    _crashed(tmp_path, 10)
    recover(tmp_path)
    store = Store(tmp_path, other).open()
    store.add_event(T0 + 10**9, "connect", {})
    store.sync()
    store._abandon()  # the second run dies before any frame
    report = recover(tmp_path)
    assert [r for r, _ in report.crashes] == [other]
    sql = "SELECT run_id, cause, epoch_ns(gap_start), epoch_ns(gap_end) FROM gaps"
    gaps = connect(tmp_path).execute(sql).fetchall()
    assert gaps == [(RUN, "crash", T0 + 9 * 1000, T0 + 10**9), (other, "crash", T0 + 10**9, None)]


def test_a_torn_tail_after_a_kill_is_covered_by_the_crash_gap_alone(tmp_path: Path) -> None:
    """A kill in the middle of a write leaves half a record at the journal's end: recovery records the
    damage (``until_ns`` null: no record after it), and ``gaps`` shows the one crash gap, not a second,
    open-ended ``journal_damage`` gap (a JSON null once passed the view's filter: the flake of
    test_record's kill -9 test)."""
    from kiwoom_tape.replay.catalog import connect

    path = _crashed(tmp_path, 10)
    with path.open("ab") as f:
        f.write(path.read_bytes()[-40:-15])  # a torn record: part of a frame record's bytes
    recover(tmp_path)
    damage = [json.loads(e["detail"]) for e in _table(tmp_path, "events") if e["kind"] == "journal_damage"]
    assert damage and all(d["until_ns"] is None for d in damage)
    gaps = connect(tmp_path).execute("SELECT run_id, cause FROM gaps").fetchall()
    assert gaps == [(RUN, "crash")]


def test_ctrl_c_stops_start_up_recovery_at_once_and_loses_nothing(tmp_path: Path) -> None:
    """SIGINT while ``record`` recovers a large journal: it exits within 2 s, the journal stays whole."""
    out = tmp_path / "data"
    path = _crashed(out, 1)
    book = "{" + ",".join(f'"{f}":"{f}00"' for f in range(41, 101)) + "}"
    rows = ",".join('{"type":"0D","name":"","item":"' + f"{k:06d}" + '","values":' + book + "}" for k in range(8))
    frame = ('{"trnm":"REAL","data":[' + rows + "]}").encode()
    w, _scan = JournalWriter.resume(path)
    for i in range(1, N_BIG):
        w.append_frame(T0 + i * 1000, i, "in", frame)
    w.close()
    size = path.stat().st_size
    proc = subprocess.Popen(
        cli_argv("record", "--items", "005930", "--url", "ws://127.0.0.1:9/api/dostk/websocket",
                 "--out", str(out), "-q"),
        stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while path.exists() and path.stat().st_size == size:  # the recovery appends its events first
            assert time.monotonic() < deadline and proc.poll() is None, "recovery did not start"
            time.sleep(0.01)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _out, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - sent
        code = proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
    assert took < 2.0, f"took {took:.1f} s to stop"
    assert code != 0 and "SIGINT during the recovery" in stderr and "nothing is lost" in stderr, stderr
    assert "Traceback" not in stderr
    assert path.exists(), "the journal is kept for the next start"
    report = recover(out)  # what the next start does
    assert report.frames == N_BIG and not report.dropped
    kinds = [e["kind"] for e in _table(out, "events")]
    assert kinds.count("recovery") == 1 and kinds.count("gap_start") == 1  # the same events, not a second set


def test_recovery_is_rerun_with_the_same_events_after_an_interruption(tmp_path: Path) -> None:
    path = _crashed(tmp_path, 30)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x04
    path.write_bytes(bytes(data))
    w, scan = JournalWriter.resume(path)  # what an interrupted recovery leaves: its events in the journal
    for ns, kind in ((T0, "journal_damage"), (T0 + 1, "gap_start"), (T0 + 2, "recovery")):
        w.append_event(ns, kind, "{}")
    w.close()
    report = recover(tmp_path)
    kinds = [e["kind"] for e in _table(tmp_path, "events")]
    assert sorted(kinds) == ["gap_start", "journal_damage", "recovery"]
    assert report.torn_bytes == scan.torn_bytes and report.dropped
    assert len(list(itertools.chain((tmp_path / JOURNAL_DIR).glob("*.torn")))) == 1
    assert os.path.getsize(next((tmp_path / JOURNAL_DIR).glob("*.torn"))) == scan.torn_bytes


def test_a_record_the_store_cannot_take_is_named_stored_as_an_error_and_fails_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crashed(tmp_path, 10)
    real = Store._ingest_frame

    def ingest(self: Store, recv_ns: int, seq: int, *args: Any) -> None:
        if seq == 3:
            raise ValueError("a value the builders refuse")
        real(self, recv_ns, seq, *args)

    monkeypatch.setattr(Store, "_ingest_frame", ingest)
    result = CliRunner().invoke(record_command, ["recover", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "frame seq 3" in result.output and "a value the builders refuse" in result.output
    errors = [json.loads(e["detail"]) for e in _table(tmp_path, "events") if e["kind"] == "error"]
    assert [(e["what"], e["reason"]) for e in errors] == [("frame seq 3", "a value the builders refuse")]
    assert [r["seq"] for r in _table(tmp_path, "frames")] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
