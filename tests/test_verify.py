"""``kiwoom-tape verify``: exit 0 on a good dataset, 1 with a clear report on a damaged one.

The good dataset is a recording of the simulator by the real recorder; the bad ones are made from it
(a truncated file, a file moved to the wrong partition, a footer of another version) or written by the
real Store from hand-made frames (a crossed book, a price off the tick grid, gaps, garbage frames).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from test_catalog import book_values, kst_ns, record, write_frames

from kiwoom_tape.cli import cli
from kiwoom_tape.demo import Recording
from kiwoom_tape.verify import verify

DAY = dt.date(2026, 3, 10)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recording]:
    root = tmp_path_factory.mktemp("verify") / "data"
    return root, record(root, 4.0, seed=21)


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["verify", *args], catch_exceptions=False)


def copy(good: tuple[Path, Recording], tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(good[0], root)
    return root


def test_a_good_recording_passes_with_its_counts(good: tuple[Path, Recording]) -> None:
    root, rec = good
    result = run(str(root))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "all readable" in out and "schema version 2" in out
    assert "OK: no problems found" in out
    for table in ("frames", "orderbook", "afterhours", "events"):
        assert table in out
    assert f"{rec.rows['orderbook']:,}" in out and f"{rec.frames:,}" in out
    assert "crossed 0" in out and "off the tick grid 0" in out and "Gaps: none" in out
    report = verify(root)
    assert report.ok(strict=True) and report.book_rows == rec.rows["orderbook"]
    assert sum(f.rows for f in report.files if f.table == "afterhours") == rec.rows["afterhours"]


def test_a_truncated_file_is_an_error_naming_it(good: tuple[Path, Recording], tmp_path: Path) -> None:
    root = copy(good, tmp_path)
    (victim,) = (root / "orderbook").rglob("*.parquet")
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    result = run(str(root))
    assert result.exit_code == 1
    assert "ERROR" in result.output and "unreadable" in result.output
    assert victim.relative_to(root).as_posix() in result.output
    assert "FAILED: 1 error" in result.output
    # the other tables are still checked and reported
    assert "frames" in result.output and "afterhours" in result.output


def test_damaged_pages_behind_a_good_footer_are_found(good: tuple[Path, Recording], tmp_path: Path) -> None:
    root = copy(good, tmp_path)
    (victim,) = (root / "frames").rglob("*.parquet")
    data = bytearray(victim.read_bytes())
    meta = pq.read_metadata(victim)
    start = meta.row_group(0).column(4).data_page_offset  # the text column's pages
    for i in range(start + 10, start + 400):
        data[i] ^= 0x5A
    victim.write_bytes(bytes(data))
    result = run(str(root))
    assert result.exit_code == 1, result.output
    assert "unreadable" in result.output and victim.name in result.output


def test_a_file_in_the_wrong_partition_is_an_error(good: tuple[Path, Recording], tmp_path: Path) -> None:
    root = copy(good, tmp_path)
    (victim,) = (root / "events").rglob("*.parquet")
    wrong = root / "events" / "date=2001-01-01"
    wrong.mkdir()
    victim.rename(wrong / victim.name)
    result = run(str(root))
    assert result.exit_code == 1
    assert "partition date=2001-01-01" in result.output


def test_a_newer_schema_version_is_an_error(good: tuple[Path, Recording], tmp_path: Path) -> None:
    root = copy(good, tmp_path)
    (victim,) = (root / "afterhours").rglob("*.parquet")
    t = pq.read_table(victim)
    meta = dict(t.schema.metadata or {})
    meta[b"kiwoom_tape.schema_version"] = b"99"
    pq.write_table(t.replace_schema_metadata(meta), victim)
    result = run(str(root))
    assert result.exit_code == 1
    assert "schema version 99 is newer" in result.output and "upgrade" in result.output


def test_a_crossed_book_is_an_error_outside_the_auctions(tmp_path: Path) -> None:
    write_frames(tmp_path, [
        (kst_ns(DAY, "10:00:00"), "0D", "005930", book_values(71_400, 71_500, 10, 10, time="100000")),
        # best bid 71,600 >= best ask 71,500
        (kst_ns(DAY, "10:00:01"), "0D", "005930", book_values(71_400, 71_500, 10, 10, time="100001")
         | {"51": "+71600"}),
    ])
    result = run(str(tmp_path))
    assert result.exit_code == 1
    assert "crossed 1" in result.output
    assert "1 crossed books" in result.output and "005930" in result.output
    assert "bid 71600 >= ask 71500" in result.output


def test_a_crossed_book_in_the_closing_auction_is_a_warning(tmp_path: Path) -> None:
    crossed = book_values(71_400, 71_500, 10, 10, time="152500") | {"51": "+71500"}
    write_frames(tmp_path, [(kst_ns(DAY, "15:25:00"), "0D", "005930", crossed)])
    result = run(str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "in call auctions" in result.output and "warning" in result.output
    assert run(str(tmp_path), "--strict").exit_code == 1


def test_prices_off_the_tick_grid(tmp_path: Path) -> None:
    write_frames(tmp_path, [
        # 71,450 is not a multiple of 100 (the tick from 50,000 to 200,000), but is of 5: an ETF could quote it
        (kst_ns(DAY, "10:00:00"), "0D", "069500", book_values(71_400, 71_500, 10, 10) | {"42": "+71505"}),
        # 71,503 is on no grid at all
        (kst_ns(DAY, "10:00:01"), "0D", "005930", book_values(71_400, 71_500, 10, 10) | {"52": "+71303"}),
    ])
    result = run(str(tmp_path))
    assert result.exit_code == 1
    assert "1 rows with a price off the KRX tick grid" in result.output and "005930 (1)" in result.output
    assert "on the 5-won grid" in result.output and "069500" in result.output and "ETF" in result.output


def test_gaps_parse_errors_and_journals_are_warnings(tmp_path: Path) -> None:
    t0 = kst_ns(DAY, "10:00:00")
    write_frames(
        tmp_path,
        [(t0 + 5 * 10**9, "0D", "005930", book_values(71_400, 71_500, 10, 10))],
        events=[
            (t0, "gap_start", {"cause": "server_close"}),
            (t0 + 2_500_000_000, "gap_end", {"cause": "server_close", "seconds": 2.5}),
            (t0 + 3 * 10**9, "gap_start", {"cause": "connect_failed"}),
        ],
        garbage=[(t0 + 6 * 10**9, "{not json"), (t0 + 7 * 10**9, '{"trnm": "REAL", "data": 5}')],
    )
    (tmp_path / "_journal").mkdir(exist_ok=True)
    (tmp_path / "_journal" / "someone-000000.journal").write_bytes(b"x")
    result = run(str(tmp_path))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Gaps: 2" in out and "server_close" in out and "connect_failed" in out and "(open)" in out
    assert "2.5" in out
    assert "Frames that failed to parse: 2" in out
    assert "journal segment(s)" in out and "record recover" in out
    assert "OK (3 warnings)" in out
    strict = run(str(tmp_path), "--strict")
    assert strict.exit_code == 1 and "FAILED: 0 errors, 3 warnings (--strict)" in strict.output


def test_not_a_dataset(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope"))
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output
    result = run(str(tmp_path))
    assert result.exit_code == 1 and "not a kiwoom-tape dataset" in result.output


def test_duplicated_rows_are_an_error(good: tuple[Path, Recording], tmp_path: Path) -> None:
    root = copy(good, tmp_path)
    (victim,) = (root / "orderbook").rglob("*.parquet")
    shutil.copy(victim, victim.with_name(victim.name.replace("-000000", "-000007")))
    result = run(str(root))
    assert result.exit_code == 1
    assert "duplicated rows" in result.output
    report = json.dumps([p.message for p in verify(root).errors])
    assert "orderbook" in report


def test_no_flipped_bit_in_a_column_chunk_changes_values_silently(tmp_path: Path) -> None:
    """Parquet pages carry CRC-32s (write_page_checksum) and verify checks them: a flip is an error naming the
    file, unless it hit bytes no reader uses (the statistics in a page header), where the values stay right."""
    t0 = kst_ns(DAY, "10:00:00")
    write_frames(tmp_path / "clean", [
        (t0 + i * 10**6, "0D", "005930", book_values(71_400 + 100 * (i % 7), 71_600 + 100 * (i % 7), 10 + i, 20))
        for i in range(200)
    ])
    (victim,) = (tmp_path / "clean" / "frames").rglob("*.parquet")
    want = pq.read_table(victim)
    meta = pq.read_metadata(victim)
    rng = random.Random(7)
    found = 0
    for case in range(24):
        chunk = meta.row_group(0).column(case % meta.num_columns)
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        root = tmp_path / f"flip{case}"
        shutil.copytree(tmp_path / "clean", root)
        target = root / victim.relative_to(tmp_path / "clean")
        data = bytearray(target.read_bytes())
        data[rng.randrange(start, start + chunk.total_compressed_size)] ^= 1 << rng.randrange(8)
        target.write_bytes(bytes(data))
        errors = [p.message for p in verify(root).errors]
        if any(target.name in m for m in errors):
            found += 1
        else:
            assert not errors, (case, errors)
            assert pq.read_table(target).equals(want), f"case {case}: values changed and verify said nothing"
    assert found >= 12


def _damaged_recording(root: Path) -> tuple[int, int]:
    """A run killed after its last sync, with one record inside its journal damaged; recovered.

    Returns (recv_ns of the last frame before the damage, of the first after it)."""
    from kiwoom_tape.recorder.journal import JournalWriter
    from kiwoom_tape.recorder.recovery import recover
    from kiwoom_tape.recorder.store import Store

    t0 = kst_ns(DAY, "10:00:00")
    store = Store(root, "20260310T010000Z-00abcd").open()
    for i in range(40):
        store.add_frame(t0 + i * 10**7, "in", '{"trnm":"PING"}')
    store.sync()
    journal = store._journal
    assert isinstance(journal, JournalWriter)
    path = journal.path
    store._abandon()  # a kill -9 after the last fsync
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # a bit flip in the middle of the journal: one record lost
    path.write_bytes(bytes(data))
    report = recover(root)
    assert report.dropped and report.frames == 39 and report.frames_lost == 1
    assert path.with_name(path.name + ".torn").exists()
    return t0, t0 + 39 * 10**7


def test_journal_damage_is_an_error_and_a_gap_and_the_crash_a_gap(tmp_path: Path) -> None:
    _damaged_recording(tmp_path)
    result = run(str(tmp_path))
    assert result.exit_code == 1, result.output
    out = result.output
    assert "damaged journal" in out and "1 frame(s) lost" in out and ".journal.torn" in out
    assert "journal_damage" in out and "crash" in out and "Gaps: 2" in out
    report = verify(tmp_path)
    assert [g[4] for g in report.gaps] == ["journal_damage", "crash"]
    assert report.gaps[0][3] is not None and 0 < report.gaps[0][3] <= 0.03  # from the frame before to the one after
