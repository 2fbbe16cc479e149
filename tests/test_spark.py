"""Other engines read a recorded dataset as is (issue 15): Spark with its default settings reads every table
folder, while ``record`` runs and after, with DuckDB's counts; the Spark SQL statements of
:mod:`kiwoom_tape.ddl` register the tables; and the snippets of docs/scaling.md "Reading the dataset from
other engines" (Spark, polars, DuckDB) run and give the catalog's figures.

One dataset for the module: ``record --types 0B,0D,0E`` of ``replay --simulate`` from 15:40 KST (KRX 0E
and close-price 0B fills, NXT 0D: docs/protocol.md 5.3), both console scripts in subprocesses. The read while
recording uses the recorder in process (:class:`LiveRecording`), flushing row groups every 3 rows into
``_tmp/`` and rolling every 2 s, so that table folders fill while files are being written beside them.
One SparkSession for the run (tests/_spark.py). Needs schema version 2 (Spark refuses TIMESTAMP(NANOS)).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from _docs import ROOT, code_blocks, text
from kiwoom_tape.recorder.client import Recorder
from kiwoom_tape.replay.catalog import connect
from kiwoom_tape.replay.server import serve
from kiwoom_tape.replay.sim_calendar import hms
from kiwoom_tape.replay.simulator import SimulatedMarket
from kiwoom_tape.replay.sources import SimSource
from kiwoom_tape.schemas import layout
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from kiwoom_tape import ddl
from kiwoom_tape.testing import loopback_recorder, run_recorder
from tests._cli import URL, cli_argv

pytest_plugins = ["_spark"]  # the session-scoped `spark` fixture
pytestmark = pytest.mark.timeout(400)  # the JVM's start (over a minute on a loaded machine) and the recordings

ITEMS = "005930,005930_NX"
SECONDS = 12
TABLES = layout.TABLE_NAMES


def record_cli(out: Path, log: Path) -> None:
    """``record`` of ``replay --simulate``, both console scripts in subprocesses, for SECONDS."""
    with log.open("wb") as err:
        replay = subprocess.Popen(cli_argv("replay", "--simulate", "--sim-start", "15:40", "--speed", "20",
                                           "--items", ITEMS, "--port", "0"), stderr=err)
    try:
        deadline = time.monotonic() + 60
        while not (m := URL.search(log.read_text(encoding="utf-8", errors="replace"))):
            assert replay.poll() is None and time.monotonic() < deadline, log.read_text(encoding="utf-8")
            time.sleep(0.1)
        record = subprocess.run(cli_argv("record", "--items", ITEMS, "--types", "0B,0D,0E", "--url", m[1],
                                         "--out", str(out), "--duration", f"{SECONDS}s", "-q"), timeout=120)
        assert record.returncode == 0
    finally:
        replay.kill()
        replay.wait()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset with rows in every table, recorded once for the module."""
    tmp = tmp_path_factory.mktemp("spark-rec")
    record_cli(tmp / "data", tmp / "replay.log")
    return tmp / "data"


class LiveRecording:
    """The recorder on a thread, recording the simulated market into ``root`` until :meth:`stop`, flushing
    row groups every few rows into files in ``_tmp/`` and moving them into the tables every 2 s."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        async def main() -> None:
            market = SimulatedMarket(seed=3, items=ITEMS.split(","), start=hms(15, 40))
            async with serve(SimSource(market, speed=20.0), port=0) as server:
                rec = loopback_recorder(server.url, self.root, ITEMS.split(","), ["0B", "0D", "0E"])
                assert rec.store is not None
                rec.store.flush_rows, rec.store.roll_seconds = 3, 2.0

                async def until(_: Recorder) -> None:
                    while not self._stop.is_set():  # noqa: ASYNC110  # a thread's event
                        await asyncio.sleep(0.05)

                async with asyncio.timeout(280):
                    await run_recorder(rec, until)

        try:
            asyncio.run(main())
        except BaseException as exc:  # handed to the test by stop()
            self._error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()
        if self._error is not None:
            raise self._error


def view_counts(root: Path) -> dict[str, int]:
    with connect(root) as con:
        return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}


def file_count(files: list[str]) -> int:
    with duckdb.connect() as con:
        row = con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()
    assert row is not None
    return int(row[0])


def local_path(uri: str) -> str:
    return re.sub(r"^file:(//)?", "", uri)


# ==================================================================================================
# Reading the folders


def test_spark_reads_every_table_folder_while_a_recording_runs(spark: SparkSession, tmp_path: Path) -> None:
    """Files being written sit in DIR/_tmp/: a table folder holds only complete files, whatever the moment."""
    root = tmp_path / "data"
    live = LiveRecording(root)
    try:
        deadline = time.monotonic() + 120
        while True:
            staged = list((root / layout.STAGING_DIR).glob("*.tmp")) if (root / layout.STAGING_DIR).is_dir() else []
            empty = [t for t in TABLES if not any((root / t).glob("date=*/*.parquet"))]
            if staged and not empty:
                break
            assert live.running and time.monotonic() < deadline, f"tables without a file: {empty}; in _tmp/: {staged}"
            time.sleep(0.1)
        for t in TABLES:  # while the recorder goes on writing, in _tmp/ and into the tables
            df = spark.read.parquet(str(root / t))
            files = [local_path(f) for f in df.inputFiles()]
            assert files and all(f.endswith(".parquet") and f"/{layout.STAGING_DIR}/" not in f for f in files)
            assert df.count() == file_count(files), t  # Spark's rows: those of the complete files it listed
            assert isinstance(df.schema["recv_ts"].dataType, T.TimestampType)
        assert live.running
    finally:
        live.stop()
    after = view_counts(root)
    assert {t: spark.read.parquet(str(root / t)).count() for t in TABLES} == after


def test_spark_reads_every_table_with_duckdb_s_counts(spark: SparkSession, dataset: Path) -> None:
    views = view_counts(dataset)
    assert all(views.values()), views  # 0B, 0D, 0E rows, frames and events: every table has rows
    with connect(dataset) as con:
        dates = {r[0] for r in con.execute("SELECT DISTINCT date FROM frames").fetchall()}
    for t in TABLES:
        df = spark.read.parquet(str(dataset / t))
        assert df.count() == views[t], t
        fields = {f.name: f.dataType for f in df.schema.fields}
        assert isinstance(fields["recv_ts"], T.TimestampType), (t, fields["recv_ts"])
        assert isinstance(fields["date"], T.DateType), t
        assert {r[0] for r in df.select("date").distinct().collect()} == dates, t
    assert list(dataset.glob(f"{layout.STAGING_DIR}/*")) == []


def minute_figures_spark(df: DataFrame) -> set[tuple[Any, ...]]:
    """Per item and minute of the exchange's quote time: rows, total ask quantity, highest ask, lowest bid."""
    rows = (df.selectExpr("item", "unix_timestamp(date_trunc('minute', quote_time)) AS minute",
                          "total_ask_qty", "ask_price_1", "bid_price_1")
            .groupBy("item", "minute")
            .agg({"*": "count", "total_ask_qty": "sum", "ask_price_1": "max", "bid_price_1": "min"})
            .collect())
    return {(r["item"], r["minute"], r["count(1)"], r["sum(total_ask_qty)"], r["max(ask_price_1)"],
             r["min(bid_price_1)"]) for r in rows}


DUCKDB_MINUTES = """
    SELECT item, epoch(date_trunc('minute', quote_time))::BIGINT, count(*), sum(total_ask_qty)::BIGINT,
           max(ask_price_1), min(bid_price_1)
    FROM orderbook GROUP BY ALL
"""


def test_a_per_minute_aggregate_over_orderbook_is_duckdb_s(spark: SparkSession, dataset: Path) -> None:
    with connect(dataset) as con:
        expected = {tuple(r) for r in con.execute(DUCKDB_MINUTES).fetchall()}
    assert len(expected) >= 2, expected  # several minutes of market time
    assert sum(r[2] for r in expected) == view_counts(dataset)["orderbook"]
    assert minute_figures_spark(spark.read.parquet(str(dataset / "orderbook"))) == expected


# ==================================================================================================
# The DDL of kiwoom_tape.ddl, executed


def test_the_spark_sql_ddl_registers_every_table(spark: SparkSession, dataset: Path) -> None:
    views = view_counts(dataset)
    spark.sql("CREATE DATABASE IF NOT EXISTS ddl_test")
    for stmt in ddl.statements("spark", str(dataset), schema="ddl_test"):
        spark.sql(stmt)
    for t in TABLES:
        table = spark.table(f"ddl_test.{t}")
        assert table.count() == views[t], t
        read = spark.read.parquet(str(dataset / t))
        assert [(f.name, f.dataType) for f in table.schema.fields] == [(f.name, f.dataType) for f in read.schema]
    assert minute_figures_spark(spark.table("ddl_test.orderbook")) == minute_figures_spark(
        spark.read.parquet(str(dataset / "orderbook")))


# ==================================================================================================
# docs/scaling.md's snippets, run


def engine_snippets() -> dict[str, str]:
    """The python blocks of docs/scaling.md "Reading the dataset from other engines", by the engine imported."""
    section = text(ROOT / "docs" / "scaling.md").split("## Reading the dataset from other engines", 1)[1]
    section = section.split("\n## ", 1)[0]
    out = {}
    for block in code_blocks(section, "python"):
        engine = next(e for e in ("pyspark", "polars", "duckdb") if re.search(rf"^(from|import) {e}\b", block, re.M))
        assert engine not in out, f"two {engine} snippets"
        out[engine] = block
    assert set(out) == {"pyspark", "polars", "duckdb"}, sorted(out)
    return out


def run_snippet(block: str, root: Path) -> dict[str, Any]:
    """Run ``block`` on the dataset at ``root`` (the block calls it ``data``); its global names."""
    names: dict[str, Any] = {"__name__": "snippet"}
    code = re.sub(r"(?<=[\"'])data/", f"{root.as_posix()}/", block)
    assert code != block, "the snippet reads no data/ path"
    exec(compile(code, "docs/scaling.md", "exec"), names)
    return names


def test_the_docs_spark_snippet_runs(spark: SparkSession, dataset: Path) -> None:
    names = run_snippet(engine_snippets()["pyspark"], dataset)
    assert names["spark"] is spark  # getOrCreate: the running session
    assert names["orderbook"].count() == view_counts(dataset)["orderbook"]
    with connect(dataset) as con:
        expected = {(r[0], int(r[1]), int(r[2])) for r in con.execute(
            "SELECT item, epoch(minute), count(*) FROM orderbook GROUP BY ALL").fetchall()}
    got = {(r["item"], int(r["minute"].timestamp()), r["rows"]) for r in names["per_minute"].collect()}
    assert got == expected


def test_the_docs_polars_and_duckdb_snippets_run(dataset: Path) -> None:
    views = view_counts(dataset)
    snippets = engine_snippets()
    polars_names = run_snippet(snippets["polars"], dataset)
    assert polars_names["counts"] == views
    with connect(dataset) as con:
        expected = {(r[0], int(r[1]), int(r[2])) for r in con.execute(
            "SELECT item, epoch(minute), count(*) FROM orderbook GROUP BY ALL").fetchall()}
    per_minute = polars_names["per_minute"]
    assert {(i, int(m.timestamp()), n) for i, m, n in per_minute.select("item", "minute", "rows").iter_rows()} \
        == expected
    assert run_snippet(snippets["duckdb"], dataset)["counts"] == views
