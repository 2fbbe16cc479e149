"""The store (recorder/store.py): journal first, rolling Parquet, redaction, crash recovery, full disk."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from _clock import FakeClock
from kiwoom_tape.recorder.journal import JournalWriter, read_journal
from kiwoom_tape.recorder.recovery import RecoveryReport, recover
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.schemas.errors import StorageError
from kiwoom_tape.schemas.fields import FIELDS_BY_TYPE, Kind
from kiwoom_tape.schemas.layout import (
    JOURNAL_DIR,
    STAGING_DIR,
    TMP_SUFFIX,
    new_run_id,
    parse_staging_filename,
    part_filename,
    partition_dir,
    staging_filename,
)
from kiwoom_tape.schemas.protocol import encode, encode_real_frame, encode_real_row
from kiwoom_tape.schemas.tables import META_SCHEMA_VERSION, META_TABLE, SCHEMA_VERSION
from kiwoom_tape.schemas.versions import recv_ns_of

REPO = Path(__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT = 60.0

# 2026-11-22 23:59:58 KST (= 14:59:58 UTC): two seconds before a KST midnight.
BEFORE_MIDNIGHT_NS = 1_795_359_598_000_000_000
MIDNIGHT_NS = BEFORE_MIDNIGHT_NS + 2_000_000_000
RUN = new_run_id(1_795_300_000_000_000_000, 0xABCDEF)
DAY = dt.date(2026, 11, 22)  # the KST date of BEFORE_MIDNIGHT_NS

_SAMPLE = {
    Kind.TIME: "235958",
    Kind.PRICE: "-70100",
    Kind.QTY: "1200",
    Kind.SIGNED: "+35",
    Kind.PCT: "-0.24",
    Kind.CODE: "5",
    Kind.TEXT: "",
}


_K_FID = {"0D": "61", "0E": "131", "0B": "13"}
"""The FID that carries k: ask_qty_1, ah_total_ask_qty, cum_volume (a type without a table: 20)."""


def values(real_type: str, k: int) -> dict[str, str]:
    out = {f.fid: _SAMPLE[f.kind] for f in FIELDS_BY_TYPE.get(real_type, ())}
    out[_K_FID.get(real_type, "20")] = str(k)
    return out


def real_frame(*rows: tuple[str, str, int]) -> str:
    """A REAL frame with one row per (type, item, k)."""
    return encode_real_frame(
        [encode_real_row(t, item, json.dumps(values(t, k), separators=(",", ":"))) for t, item, k in rows]
    )



def table(root: Path, name: str) -> pa.Table:
    return pads.dataset(root / name, format="parquet", partitioning="hive").to_table()


def frames_by_seq(root: Path) -> list[dict[str, Any]]:
    t = table(root, "frames")
    t = t.set_column(0, "recv_ts", recv_ns_of(t))
    return sorted(t.to_pylist(), key=lambda r: r["seq"])


def all_files(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            yield Path(dirpath) / f


def assert_clean(root: Path) -> None:
    """No temporary file anywhere, no journal left, every Parquet file readable with its metadata."""
    names = [p.name for p in all_files(root)]
    assert not [n for n in names if n.endswith(TMP_SUFFIX) or n.endswith(".journal") or n.endswith(".new")]
    assert [p for p in (root / JOURNAL_DIR).iterdir() if p.suffix != ".torn"] == []  # .torn: damage kept aside
    for p in all_files(root):
        if p.suffix == ".parquet":
            meta = pq.read_schema(p).metadata
            assert meta[META_SCHEMA_VERSION] == str(SCHEMA_VERSION).encode()
            assert meta[META_TABLE] == p.parent.parent.name.encode()


def feed(store: Store, n: int, start_ns: int, step_ns: int = 1_000_000) -> list[str]:
    texts = []
    for i in range(n):
        text = real_frame(("0D", "005930", i))
        store.add_frame(start_ns + i * step_ns, "in", text)
        texts.append(text)
    return texts


# --------------------------------------------------------------------------------------------------


def test_round_trip_across_kst_midnight(tmp_path: Path) -> None:
    root = tmp_path / "data"
    sent: list[tuple[str, str]] = []
    with Store(root, RUN, flush_rows=4) as s:
        t = BEFORE_MIDNIGHT_NS

        def add(direction: str, text: str, **kw: Any) -> None:
            nonlocal t
            s.add_frame(t, direction, text, **kw)
            sent.append((direction, text))
            t += 100_000_000

        add("out", encode({"trnm": "LOGIN", "token": "tok"}))
        add("in", '{"trnm":"LOGIN","return_code":0,"return_msg":"","sor_yn":"Y"}')
        s.add_event(t, "login", {"items": 2})
        reg = {"trnm": "REG", "grp_no": "1", "refresh": "1", "data": [{"item": ["005930"], "type": ["0D"]}]}
        add("out", encode(reg))
        add("in", '{"trnm":"REG","return_code":0,"return_msg":""}')
        for k in range(6):
            add("in", real_frame(("0D", "005930", k), ("0D", "000660_NX", 100 + k)))
        add("in", real_frame(("0E", "005930", 7), ("0B", "005930", 0), ("0H", "005930", 1)))  # 0H: in frames only
        add("in", "not json {")
        add("in", '{"trnm":"PING"}')
        assert s.segment == 0
        t = MIDNIGHT_NS  # the next KST day: the store rolls before adding
        for k in range(3):
            add("in", real_frame(("0D", "005930", 1000 + k)))
        s.add_event(t, "disconnect", {"cause": "test", "token": "leak?"}, 1)
        assert s.segment == 1
    st = s.stats
    assert st.frames == len(sent) == 16
    assert st.rows == {"orderbook": 15, "afterhours": 1, "trades": 1, "events": 2}
    assert st.parse_errors == 1 and st.other_rows == 1 and st.files_written == 8

    rows = frames_by_seq(root)
    assert [r["seq"] for r in rows] == list(range(16))
    assert [(r["direction"], r["text"]) for r in rows[1:]] == sent[1:]
    assert rows[0]["text"] == '{"trnm":"LOGIN","token":"***"}'
    assert [r["trnm"] for r in rows[:5]] == ["LOGIN", "LOGIN", "REG", "REG", "REAL"]
    assert rows[11]["parse_error"] and rows[11]["trnm"] is None
    assert rows[12]["trnm"] == "PING" and rows[12]["parse_error"] is None
    assert {r["date"] for r in rows[:13]} == {"2026-11-22"} and {r["date"] for r in rows[13:]} == {"2026-11-23"}
    assert all(r["run_id"] == RUN for r in rows)

    ob = table(root, "orderbook")
    assert ob.num_rows == 15
    assert sorted(zip(ob.column("frame_seq").to_pylist(), ob.column("row_idx").to_pylist(), strict=True))[:2] == [
        (4, 0),
        (4, 1),
    ]
    expected = [*range(6), *range(100, 106), *range(1000, 1003)]
    assert sorted(ob.column("ask_qty_1").to_pylist()) == expected
    ah = table(root, "afterhours")
    assert ah.column("ah_total_ask_qty").to_pylist() == [7]
    tr = table(root, "trades")
    assert tr.column("cum_volume").to_pylist() == [0] and tr.column("row_idx").to_pylist() == [1]
    assert tr.column("frame_seq").to_pylist() == ah.column("frame_seq").to_pylist()
    ev = table(root, "events").sort_by("kind")
    assert ev.column("kind").to_pylist() == ["disconnect", "login"]
    assert json.loads(ev.column("detail")[0].as_py()) == {"cause": "test", "token": "***"}
    assert ev.column("return_code").to_pylist() == [1, None]

    for name in ("frames", "orderbook", "events"):
        dates = sorted(p.parent.name for p in (root / name).glob("*/*.parquet"))
        assert dates == ["date=2026-11-22", "date=2026-11-23"]
    assert (root / "frames/date=2026-11-22" / part_filename(RUN, 0, "frames")).exists()
    assert (root / "frames/date=2026-11-23" / part_filename(RUN, 1, "frames")).exists()
    assert [p.parent.name for p in (root / "afterhours").glob("*/*.parquet")] == ["date=2026-11-22"]
    # several row groups (flush_rows=4), each file readable
    assert pq.ParquetFile(root / "frames/date=2026-11-22" / part_filename(RUN, 0, "frames")).num_row_groups > 1
    assert_clean(root)


def test_tokens_never_reach_disk(tmp_path: Path) -> None:
    root = tmp_path / "data"
    s = Store(root, RUN).open()
    s.add_frame(BEFORE_MIDNIGHT_NS, "out", '{"trnm":"LOGIN","token":"SECRET123"}')
    s.add_frame(BEFORE_MIDNIGHT_NS + 1, "out", b'{"trnm": "LOGIN", "token" : "SECRET123", "x": 1}')
    s.add_event(BEFORE_MIDNIGHT_NS + 2, "login", {"nested": {"token": "SECRET123"}})
    s.sync()
    s.tick()

    def leaks() -> list[Path]:
        return [p for p in all_files(root) if b"SECRET123" in p.read_bytes()]

    assert list((root / JOURNAL_DIR).iterdir())  # the journal holds the frames ...
    assert leaks() == []  # ... redacted
    s.close()
    assert leaks() == []
    texts = [r["text"] for r in frames_by_seq(root)]
    assert texts == ['{"trnm":"LOGIN","token":"***"}', '{"trnm": "LOGIN", "token" : "***", "x": 1}']


def test_roll_on_age_and_on_size(tmp_path: Path) -> None:
    clock = FakeClock()
    root = tmp_path / "data"
    s = Store(root, RUN, roll_seconds=60, flush_rows=2, monotonic=clock).open()
    feed(s, 3, BEFORE_MIDNIGHT_NS - 10**12)
    s.tick()
    assert s.segment == 0
    clock.now += 60
    s.tick()
    assert s.segment == 1
    # segment 0 is final and readable while the store goes on; its journal is gone
    assert len(list(root.glob("*/*/" + part_filename(RUN, 0, "frames")))) == 2  # frames + orderbook
    assert [p.name for p in (root / JOURNAL_DIR).iterdir()] == [f"{RUN}-000001.journal"]
    clock.now += 600
    s.tick()  # an empty segment does not roll
    assert s.segment == 1
    feed(s, 3, BEFORE_MIDNIGHT_NS - 10**12 + 10**9)  # segment 1 has files in _tmp/ now ...
    assert list(root.glob(f"{STAGING_DIR}/frames.*{TMP_SUFFIX}"))
    assert table(root, "frames").num_rows == 3  # ... which a reader of the live dataset skips
    s.close()
    assert table(root, "frames").num_rows == 6

    root2 = tmp_path / "data2"
    s = Store(root2, RUN, flush_rows=5, roll_bytes=1, monotonic=clock).open()
    feed(s, 12, BEFORE_MIDNIGHT_NS - 10**12)  # a flush every 5 frames, and every flush rolls
    assert s.segment == 2
    s.close()
    assert table(root2, "frames").num_rows == 12
    assert len(list((root2 / "frames").glob("*/*.parquet"))) == 3
    assert_clean(root2)


def test_flush_on_age(tmp_path: Path) -> None:
    clock = FakeClock()
    root = tmp_path / "data"
    s = Store(root, RUN, flush_seconds=5, monotonic=clock).open()
    feed(s, 2, BEFORE_MIDNIGHT_NS - 10**12)
    s.tick()
    tmp = root / STAGING_DIR / staging_filename("frames", DAY, part_filename(RUN, 0, "frames"))
    assert tmp.name == "frames.2026-11-22." + part_filename(RUN, 0, "frames") + TMP_SUFFIX
    assert not tmp.exists()
    clock.now += 5
    s.tick()
    assert tmp.exists()  # written as a row group of the still-open file
    s.close()
    assert not tmp.exists()


def test_caller_supplied_fields_survive_recovery(tmp_path: Path) -> None:
    """What the session told the store (rows, parse_error, trnm) is journaled and replayed the same."""
    inputs: list[tuple[str, str, dict[str, Any]]] = [
        ("in", real_frame(("0D", "005930", 1)), {"rows": None, "trnm": "REAL"}),
        ("in", '{"trnm":"LOGIN","return_code":0}', {"parse_error": "LOGIN reply without a LOGIN in flight"}),
        ("in", '{"trnm":"PING"}', {"rows": (), "trnm": "PING"}),
        ("in", '{"trnm":"REG","return_code":0,"return_msg":""}', {"rows": ()}),
        ("in", '{"trnm":"WHAT"}', {}),
        ("in", '{"trnm":"REAL","data":3}', {}),
        ("out", '{"trnm":"REG"}', {}),
    ]

    def run(root: Path, crash: bool) -> None:
        s = Store(root, RUN).open()
        for i, (direction, text, kw) in enumerate(inputs):
            if kw.get("rows", ()) is None:
                from kiwoom_tape.schemas.protocol import Real, decode_server_message

                msg = decode_server_message(text)
                assert isinstance(msg, Real)
                kw = {**kw, "rows": msg.rows}
            s.add_frame(BEFORE_MIDNIGHT_NS + i, direction, text, **kw)
        if crash:
            s.sync()
            s._abandon()  # what a kill -9 leaves: the journal, no finished files
        else:
            s.close()

    run(tmp_path / "live", crash=False)
    run(tmp_path / "crashed", crash=True)
    assert not list((tmp_path / "crashed").glob("frames/*/*.parquet"))
    report = recover(tmp_path / "crashed")
    assert (report.segments, report.frames, report.events) == (1, 7, 2)
    for name in ("frames", "orderbook"):
        assert table(tmp_path / "live", name).equals(table(tmp_path / "crashed", name)), name
    got = [(r["trnm"], r["parse_error"]) for r in frames_by_seq(tmp_path / "live")]
    assert got == [
        ("REAL", None),
        ("LOGIN", "LOGIN reply without a LOGIN in flight"),
        ("PING", None),
        (None, None),
        ("WHAT", None),
        ("REAL", "REAL 'data' must be a list"),
        ("REG", "'data' must be a non-empty list of {item, type}"),
    ]
    ev = table(tmp_path / "crashed", "events")
    assert ev.column("kind").to_pylist() == ["gap_start", "recovery"]
    assert json.loads(ev.column("detail")[0].as_py())["cause"] == "crash"
    assert recv_ns_of(ev)[0].as_py() == BEFORE_MIDNIGHT_NS + len(inputs) - 1
    assert json.loads(ev.column("detail")[1].as_py())["frames"] == 7


def test_recovery_is_idempotent_after_a_crash_between_rename_and_journal_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    s = Store(root, RUN, flush_rows=3).open()
    texts = feed(s, 10, BEFORE_MIDNIGHT_NS - 10**12)

    class Crash(Exception):
        pass

    def crash(self: JournalWriter) -> None:
        raise Crash

    monkeypatch.setattr(JournalWriter, "remove", crash)
    with pytest.raises(Crash):
        s.close()
    monkeypatch.undo()
    assert len(list(root.glob("*/*/*.parquet"))) == 2  # the files are final ...
    assert len(list((root / JOURNAL_DIR).iterdir())) == 1  # ... and the journal is still there
    assert table(root, "frames").num_rows == 10

    report = recover(root)
    assert report.segments == 1 and report.frames == 10
    assert sorted(report.files) == sorted(str(p) for p in root.glob("*/*/*.parquet"))
    assert [r["text"] for r in frames_by_seq(root)] == texts  # once each
    assert table(root, "orderbook").num_rows == 10
    assert_clean(root)
    again = recover(root)
    assert again.segments == 0 and again.files == []
    assert table(root, "frames").num_rows == 10


def test_recover_leaves_live_journals_and_foreign_files_alone(tmp_path: Path) -> None:
    root = tmp_path / "data"
    live = Store(root, RUN, flush_rows=2).open()
    feed(live, 3, BEFORE_MIDNIGHT_NS - 10**12)  # a flush: the live run has files in _tmp/ now
    staging = root / STAGING_DIR
    live_tmp = sorted(staging.iterdir())
    assert live_tmp
    assert not list(root.glob("*/*/*" + TMP_SUFFIX))  # none in the table folders
    part_dir = root / "frames/date=2026-11-22"
    dead_run = new_run_id(1_795_000_000_000_000_000, 1)
    stray = staging / staging_filename("orderbook", DAY, part_filename(dead_run, 4, "orderbook"))
    stray.write_bytes(b"half a parquet file")
    # the layout before _tmp/: in the partition, hidden (".{final}.tmp") or not ("{final}.tmp")
    stray_hidden = part_dir / ("." + part_filename(dead_run, 5, "frames") + TMP_SUFFIX)
    stray_hidden.write_bytes(b"half a parquet file")
    stray_old = part_dir / (part_filename(dead_run, 6, "frames") + TMP_SUFFIX)
    stray_old.write_bytes(b"half a parquet file")
    foreign = part_dir / (".notes.txt" + TMP_SUFFIX)
    foreign.write_bytes(b"mine")
    foreign_staged = staging / ("notes" + TMP_SUFFIX)
    foreign_staged.write_bytes(b"mine")
    (staging / "compact-1").mkdir()  # another writer's subfolder, with a name recovery would otherwise take
    other_writer = staging / "compact-1" / staging_filename("frames", DAY, part_filename(dead_run, 7, "frames"))
    other_writer.write_bytes(b"another writer's file")
    broken = part_dir / part_filename(dead_run, 3, "frames")
    broken.write_bytes(b"PAR1 not really")
    not_a_journal = root / JOURNAL_DIR / f"{new_run_id(1_795_000_000_000_000_000, 7)}-000000.journal"
    not_a_journal.write_bytes(b"hello, world, this is not a journal")

    # a dead run's crashed segment in the same partition, so the partition gets checked
    dead = Store(root, new_run_id(1_795_100_000_000_000_000, 2)).open()
    feed(dead, 2, BEFORE_MIDNIGHT_NS - 10**12)
    dead.sync()
    dead._abandon()

    report = recover(root)
    assert report.segments == 1 and report.frames == 2
    assert report.skipped == [str(root / JOURNAL_DIR / f"{RUN}-000000.journal")]
    assert sorted(report.removed) == sorted([str(stray), str(stray_hidden), str(stray_old)])
    assert str(broken) in report.unreadable and str(not_a_journal) in report.unreadable
    assert all(p.exists() for p in [*live_tmp, foreign, foreign_staged, other_writer, broken, not_a_journal])
    live.add_frame(BEFORE_MIDNIGHT_NS - 10**12 + 5, "in", '{"trnm":"PING"}')
    live.close()
    assert not [p for p in live_tmp if p.exists()]
    assert (part_dir / part_filename(RUN, 0, "frames")).exists()
    assert pq.read_table(part_dir / part_filename(RUN, 0, "frames")).num_rows == 4


def test_full_disk_stops_with_a_clear_error_and_damages_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    root = tmp_path / "data"
    s = Store(root, RUN, roll_seconds=1, monotonic=clock).open()
    feed(s, 5, BEFORE_MIDNIGHT_NS - 10**12)
    clock.now += 1
    s.tick()  # segment 0 finalized
    finished = sorted(root.glob("*/*/*.parquet"))
    before = {p: p.read_bytes() for p in finished}
    feed(s, 3, BEFORE_MIDNIGHT_NS - 10**12 + 10**9)
    s.sync()  # these 3 are safe in the journal

    def no_space(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", no_space)
    s.add_frame(BEFORE_MIDNIGHT_NS - 10**12 + 2 * 10**9, "in", '{"trnm":"PING"}')
    with pytest.raises(StorageError) as info:
        s.sync()
    msg = str(info.value)
    assert "No space left on device" in msg and "free disk space or choose another --out" in msg
    assert info.value.path.endswith(".journal")
    with pytest.raises(StorageError, match="No space left"):
        s.add_frame(BEFORE_MIDNIGHT_NS - 10**12 + 3 * 10**9, "in", '{"trnm":"PING"}')
    with pytest.raises(StorageError):
        s.tick()
    s.close()  # keeps the journal, raises nothing new
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in finished} == before
    for p in finished:
        pq.read_table(p)
    report = recover(root)
    assert report.frames == 3
    assert len(frames_by_seq(root)) == 8


def test_parquet_write_failure_keeps_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    s = Store(root, RUN, flush_rows=4).open()

    def no_space(self: object, batch: object, row_group_size: object = None) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", no_space)
    feed(s, 3, BEFORE_MIDNIGHT_NS - 10**12)
    with pytest.raises(StorageError, match="No space left on device") as info:
        feed(s, 1, BEFORE_MIDNIGHT_NS - 10**12 + 10**9)
    assert info.value.path.endswith(".parquet" + TMP_SUFFIX)
    s.close()
    monkeypatch.undo()
    assert not list(root.glob(f"{STAGING_DIR}/*"))  # its own garbage removed to free space
    assert recover(root).frames == 4


def test_unwritable_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(StorageError, match="cannot create the directory") as info:
        Store(afile / "data", RUN).open()
    assert "--out" in str(info.value)

    def denied(path: object, mode: int = 0o777) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(os, "mkdir", denied)
    with pytest.raises(StorageError, match="Permission denied") as info:
        Store(tmp_path / "data", RUN).open()
    assert "writable" in info.value.hint


def test_bad_calls_write_nothing(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with Store(root, RUN) as s:
        with pytest.raises(ValueError, match="unknown event kind"):
            s.add_event(BEFORE_MIDNIGHT_NS, "nonsense", {})
        with pytest.raises(ValueError, match="direction"):
            s.add_frame(BEFORE_MIDNIGHT_NS, "sideways", "{}")
        s.sync()
        journal = next((root / JOURNAL_DIR).iterdir())
        assert read_journal(journal).records == []
    with pytest.raises(StorageError, match="not open"):
        s.add_frame(BEFORE_MIDNIGHT_NS, "in", "{}")
    with pytest.raises(ValueError, match="run id"):
        Store(root, "../escape")
    assert not list(root.glob("*/*/*.parquet"))


# --------------------------------------------------------------------------------------------------
# kill -9 in a real process


_CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    sys.path.insert(0, {repo!r})
    from kiwoom_tape.recorder.store import Store
    from kiwoom_tape.recorder.journal import JournalWriter
    root, run, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    base = {base}
    s = Store(root, run, fsync_interval=3600, flush_rows=50, roll_bytes={roll_bytes}).open()
    if mode == "in_remove":
        def die(self):
            os.kill(os.getpid(), signal.SIGKILL)
        JournalWriter.remove = die
    frame = '{{"trnm":"REAL","data":[{{"type":"0B","item":"005930","values":{{"10":"%d"}}}}]}}'
    for i in range(300):
        s.add_frame(base + i * 1000, "in", frame % i)
        if i % 40 == 39:
            s.tick()
            s.sync()
            print(i, flush=True)  # every frame up to i is durable now
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _to_old_layout(root: Path) -> list[Path]:
    """Move the files in ``_tmp/`` where a recorder before ``_tmp/`` kept them: ``.{final}.tmp`` in the partition."""
    moved = []
    for staged in sorted((root / STAGING_DIR).iterdir()):
        parsed = parse_staging_filename(staged.name)
        assert parsed is not None
        table_name, day, final = parsed
        old = Path(partition_dir(str(root), table_name, day)) / ("." + final + TMP_SUFFIX)
        staged.rename(old)
        moved.append(old)
    return moved


@pytest.mark.parametrize(
    ("mode", "roll_bytes"), [("mid_segment", 1 << 30), ("mid_segment_old_layout", 1 << 30), ("in_remove", 1)]
)
def test_kill_9_then_recover(tmp_path: Path, mode: str, roll_bytes: int) -> None:
    root = tmp_path / "data"
    code = _CHILD.format(repo=str(REPO), base=BEFORE_MIDNIGHT_NS - 10**12, roll_bytes=roll_bytes)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(root), RUN, mode],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    synced = [int(line) for line in proc.stdout.split()]
    last_synced = synced[-1] if synced else -1
    journals = list((root / JOURNAL_DIR).iterdir())
    assert journals
    staged = sorted((root / STAGING_DIR).iterdir())
    if mode.startswith("mid_segment"):  # killed with row groups written to files in _tmp/, none in the tables
        assert {p.name.split(".")[0] for p in staged} == {"frames", "trades"}
        assert not list(root.glob("*/*/*" + TMP_SUFFIX))
    if mode == "mid_segment_old_layout":  # a dataset a recorder before _tmp/ left behind recovers the same
        staged = _to_old_layout(root)
    # a torn tail, as a crash in the middle of a write leaves it
    with journals[-1].open("ab") as f:
        f.write(b"\x00\x01\x00\x00\xde\xad")
    report = recover(root)
    assert report.segments == len(journals) and report.torn_bytes == 6
    assert sorted(report.removed) == sorted(map(str, staged))
    rows = frames_by_seq(root)
    seqs = [r["seq"] for r in rows]
    assert seqs == list(range(len(seqs)))  # a prefix, each frame exactly once
    assert len(seqs) > last_synced
    assert [json.loads(r["text"])["data"][0]["values"]["10"] for r in rows] == [str(i) for i in seqs]
    assert_clean(root)
    again = recover(root)
    assert again.segments == 0
    assert [r["seq"] for r in frames_by_seq(root)] == seqs
    kinds = table(root, "events").column("kind").to_pylist()
    assert kinds.count("gap_start") == 1 and kinds.count("journal_damage") == 1  # one crash, one torn tail
    assert set(kinds) == {"recovery", "gap_start", "journal_damage"}
    assert report.crashes and report.dropped
    if mode == "in_remove":
        assert synced  # the child died in its first roll, after renaming the files
        assert len(list((root / "frames").glob("*/*.parquet"))) == 1


def test_recover_on_a_missing_or_empty_directory(tmp_path: Path) -> None:
    assert recover(tmp_path / "nothing-here").segments == 0
    assert recover(tmp_path) == RecoveryReport()
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="not a directory"):
        recover(tmp_path / "file")
    root = tmp_path / "data"
    s = Store(root, RUN).open()
    created = read_journal(root / JOURNAL_DIR / f"{RUN}-000000.journal").header.created_ns  # type: ignore[union-attr]
    s._abandon()  # killed before the first frame: an empty journal segment, and still a crash to record
    report = recover(root)
    assert report.segments == 1 and report.crashes == [(RUN, created)] and not report.dropped
    assert not list((root / JOURNAL_DIR).iterdir())
    ev = table(root, "events")
    assert ev.column("kind").to_pylist() == ["gap_start", "recovery"]
    assert recv_ns_of(ev)[0].as_py() == created
    assert not list(root.glob("frames/*/*.parquet"))
