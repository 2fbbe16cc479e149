"""Schema version 1 datasets: read as they are by sql/verify/replay (alone and mixed with v2 files in one day),
and ``kiwoom-tape migrate`` rewriting them as version 2 (round trip, idempotence, refusal, kill -9)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.replay.catalog import connect
from kiwoom_tape.schemas.errors import DatasetError
from kiwoom_tape.schemas.tables import TABLES as SCHEMAS
from kiwoom_tape.schemas.tables import TABLES_V1, schema_version_of
from kiwoom_tape.schemas.versions import recv_ns_of
from test_compact import DAY, TABLES, files, make_day, replayed

from kiwoom_tape import migrate as migrate_mod
from kiwoom_tape.cli import cli
from kiwoom_tape.compact import compact
from kiwoom_tape.compact_plan import META_COMPACTION
from kiwoom_tape.migrate import migrate
from kiwoom_tape.verify import verify


def to_v1(path: Path, table: str) -> None:
    """Rewrite a v2 file as schema version 1 wrote it: recv_ts in ns, no recv_sub_us, times in s at KST."""
    t = pq.read_table(path)
    v1 = TABLES_V1[table]
    cols: list[pa.Array | pa.ChunkedArray] = []
    for f in v1:
        if f.name == "recv_ts":
            cols.append(recv_ns_of(t).cast(f.type))
        else:
            cols.append(t.column(f.name).cast(f.type))  # a time: ms at UTC -> s at KST, the same instants
    pq.write_table(pa.Table.from_arrays(cols, schema=v1), path)


@pytest.fixture(scope="module")
def v2_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("migrate") / "data"
    make_day(root, rows=600)
    return root


def copy_as(v2_day: Path, dest: Path, every: int = 1) -> Path:
    """A copy of the day with every ``every``-th file of each table in schema version 1."""
    shutil.copytree(v2_day, dest)
    for t in (*TABLES, "trades"):
        for k, f in enumerate(files(dest, t)):
            if k % every == 0:
                to_v1(f, t)
    return dest


def contents(root: Path, table: str) -> list[tuple[Any, ...]]:
    """Every row of the day's files as the current schema holds it, sorted, receive times as exact ns."""
    out: list[tuple[Any, ...]] = []
    for f in files(root, table):
        t = pq.read_table(f)
        ns = recv_ns_of(t)
        t = t.drop_columns([c for c in ("recv_ts", "recv_sub_us") if c in t.column_names])
        cols = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in t.columns]
        out.extend(zip(ns.to_pylist(), *(c.to_pylist() for c in cols), strict=True))
    return sorted(out, key=repr)


def view_rows(root: Path) -> dict[str, Any]:
    con = connect(root)
    try:
        return {
            "counts": {t: con.execute(f"select count(*) from {t}").fetchone() for t in (*TABLES, "trades")},
            "order": con.execute("select recv_ns, run_id, frame_seq, row_idx, quote_time::VARCHAR, bid, ask "
                                 "from quotes order by recv_ns, run_id, frame_seq, row_idx").fetchall(),
            "frames": con.execute("select recv_ns, recv_ts, seq from frames order by recv_ns, run_id, seq").fetchall(),
            "types": con.execute("select typeof(recv_ts), typeof(recv_ns), typeof(quote_time) from orderbook "
                                 "limit 1").fetchall(),
        }
    finally:
        con.close()


def test_v1_and_mixed_days_read_the_same_as_v2_in_views_verify_and_replay(v2_day: Path, tmp_path: Path) -> None:
    want = view_rows(v2_day)
    assert want["types"] == [("TIMESTAMP WITH TIME ZONE", "BIGINT", "TIMESTAMP WITH TIME ZONE")]
    assert want["order"] and len({r[0] for r in want["order"]}) > 1
    tape = replayed(v2_day)
    for name, every in (("v1", 1), ("mixed", 2)):
        day = copy_as(v2_day, tmp_path / name, every)
        versions = {schema_version_of(pq.read_schema(f)) for t in TABLES for f in files(day, t)}
        assert versions == ({1} if every == 1 else {1, 2})
        assert view_rows(day) == want, name
        assert replayed(day) == tape, name
        report = verify(day)
        assert report.ok(strict=False), report
        assert any("schema version 1" in w.message and "migrate" in w.hint for w in report.warnings)
        res = CliRunner().invoke(cli, ["sql", str(day), "select count(*) from orderbook"])
        assert res.exit_code == 0 and str(want["counts"]["orderbook"][0]) in res.output, res.output


def test_migrate_round_trip_is_exact_idempotent_and_spark_readable(v2_day: Path, tmp_path: Path) -> None:
    day = copy_as(v2_day, tmp_path / "data", every=2)
    n_old = sum(1 for t in (*TABLES, "trades") for f in files(day, t) if schema_version_of(pq.read_schema(f)) == 1)
    tape = replayed(v2_day)
    dry = CliRunner().invoke(cli, ["migrate", str(day), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would migrate {n_old} file(s)" in dry.stdout
    assert sum(1 for f in files(day, "orderbook") if schema_version_of(pq.read_schema(f)) == 1) > 0
    res = CliRunner().invoke(cli, ["migrate", str(day), "--date", str(DAY)])
    assert res.exit_code == 0, res.output
    assert f"migrated {n_old} file(s)" in res.stdout and "1/" in res.stderr
    for t in (*TABLES, "trades"):
        assert contents(day, t) == contents(v2_day, t), t
        for f in files(day, t):
            assert pq.read_schema(f).remove_metadata() == SCHEMAS[t].remove_metadata()
            assert schema_version_of(pq.read_schema(f)) == 2
            pschema = pq.ParquetFile(f).schema
            assert not any("NANOS" in str(pschema.column(i).logical_type) for i in range(len(pschema)))
    assert replayed(day) == tape
    assert view_rows(day) == view_rows(v2_day)
    assert verify(day).ok(strict=True)
    assert not [p for p in (day / "_tmp").iterdir() if p.name.startswith("migrate-")]
    mtimes = {f: f.stat().st_mtime_ns for t in TABLES for f in files(day, t)}
    again = CliRunner().invoke(cli, ["migrate", str(day)])
    assert again.exit_code == 0 and "migrated 0 file(s)" in again.stdout, again.output
    assert {f: f.stat().st_mtime_ns for t in TABLES for f in files(day, t)} == mtimes


def test_migrate_refuses_a_dataset_being_recorded(v2_day: Path, tmp_path: Path) -> None:
    day = copy_as(v2_day, tmp_path / "data")
    store = Store(day, "20261123T000009Z-cccccc")
    store.open()
    try:
        with pytest.raises(DatasetError, match="being recorded"):
            migrate(day)
        res = CliRunner().invoke(cli, ["migrate", str(day)])
        assert res.exit_code != 0 and "running recorder" in res.output
    finally:
        store.close()
    assert all(schema_version_of(pq.read_schema(f)) == 1 for f in files(day, "orderbook"))


@pytest.mark.parametrize("point", ["_fsync", "fsync_dir"])
def test_kill_9_leaves_each_file_old_or_new_and_a_rerun_finishes(v2_day: Path, tmp_path: Path, point: str) -> None:
    day = copy_as(v2_day, tmp_path / "data")
    want = {t: contents(v2_day, t) for t in TABLES}
    k = 3  # killed at the 3rd call: two files done, the third staged (_fsync) or renamed but not synced
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            real = getattr(migrate_mod, point)
            calls = [0]

            def dying(path: Path) -> None:
                calls[0] += 1
                if calls[0] == k:
                    os.kill(os.getpid(), signal.SIGKILL)
                real(path)

            setattr(migrate_mod, point, dying)
            migrate(day)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    versions = [schema_version_of(pq.read_schema(f)) for t in TABLES for f in files(day, t)]
    assert 1 in versions and 2 in versions
    for t in TABLES:
        assert contents(day, t) == want[t], t  # every file whole, old or new
    assert view_rows(day) == view_rows(v2_day)
    msgs: list[str] = []
    migrate(day, progress=msgs.append)
    assert all(schema_version_of(pq.read_schema(f)) == 2 for t in TABLES for f in files(day, t))
    for t in TABLES:
        assert contents(day, t) == want[t], t
    if point == "_fsync":
        assert any("interrupted migrate" in m for m in msgs), msgs
    assert not [p for p in (day / "_tmp").iterdir() if p.name.startswith("migrate-")]


def test_a_compacted_v1_day_stays_v1_when_compacted_and_stays_compacted_when_migrated(v2_day: Path,
                                                                                       tmp_path: Path) -> None:
    day = copy_as(v2_day, tmp_path / "data")
    want = {t: contents(v2_day, t) for t in TABLES}
    (first,) = compact(day, DAY)
    assert first.status == "compacted"
    assert all(schema_version_of(pq.read_schema(f)) == 1 for t in TABLES for f in files(day, t))
    migrate(day)
    for t in TABLES:
        assert contents(day, t) == want[t], t
        for f in files(day, t):
            meta = pq.read_schema(f).metadata
            assert schema_version_of(pq.read_schema(f)) == 2 and meta[META_COMPACTION] == first.compaction_id.encode()
    (again,) = compact(day, DAY)
    assert again.status == "already" and again.compaction_id == first.compaction_id
    assert verify(day).ok(strict=True)
