"""Other engines read a recorded dataset as is (issue 15): Spark with its default settings reads every table
folder, while ``record`` runs and after, with DuckDB's counts; the Spark SQL statements of
:mod:`kiwoom_tape.ddl` register the tables; and the snippets of docs/scaling.md "Reading the dataset from
other engines" (Spark, polars, DuckDB) run and give the catalog's figures.

One recording for the module: ``record --types 0B,0D,0E`` of ``replay --simulate`` from 15:40 KST (KRX 0E
and close-price 0B fills, NXT 0D: docs/protocol.md 5.3) rolling its files every 6 s, so that table folders
fill while files are being written in ``_tmp/``. One SparkSession for the run (tests/_spark.py).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from _docs import ROOT, code_blocks, text
from kiwoom_tape.replay.catalog import connect
from kiwoom_tape.schemas import layout
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from kiwoom_tape import ddl
from tests._cli import URL, cli_argv

pytest_plugins = ["_spark"]  # the session-scoped `spark` fixture
pytestmark = pytest.mark.timeout(300)  # the JVM's start and a 20 s recording on a shared machine

ITEMS = "005930,005930_NX"
SECONDS = 20
TABLES = layout.TABLE_NAMES


class Recording:
    """``replay --simulate`` and ``record`` running in subprocesses, writing into ``out``."""

    def __init__(self, tmp: Path) -> None:
        self.out = tmp / "data"
        self.log = tmp / "replay.log"
        with self.log.open("wb") as log:
            self.replay = subprocess.Popen(
                cli_argv("replay", "--simulate", "--sim-start", "15:40", "--speed", "20", "--items", ITEMS,
                         "--port", "0"), stderr=log)
        url = self._url(deadline=time.monotonic() + 60)
        self.record = subprocess.Popen(
            cli_argv("record", "--items", ITEMS, "--types", "0B,0D,0E", "--url", url, "--out", str(self.out),
                     "--duration", f"{SECONDS}s", "--roll-minutes", "0.1", "-q"))

    def _url(self, deadline: float) -> str:
        while time.monotonic() < deadline:
            m = URL.search(self.log.read_text(encoding="utf-8", errors="replace"))
            if m:
                return m[1]
            assert self.replay.poll() is None, self.log.read_text(encoding="utf-8", errors="replace")
            time.sleep(0.1)
        raise AssertionError("replay printed no URL")

    def running(self) -> bool:
        return self.record.poll() is None

    def finish(self) -> Path:
        """Wait for ``record`` (its --duration), stop the mock; the dataset's root."""
        assert self.record.wait(timeout=120) == 0
        self.replay.terminate()
        self.replay.wait(timeout=30)
        return self.out

    def kill(self) -> None:
        for proc in (self.record, self.replay):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def recording(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    """A recording started once the JVM is up (so a test sees it running)."""
    rec = Recording(tmp_path_factory.mktemp("spark-rec"))
    try:
        yield rec
    finally:
        rec.kill()


@pytest.fixture(scope="module")
def dataset(recording: Recording) -> Path:
    return recording.finish()


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


def test_spark_reads_every_table_folder_while_record_writes(spark: SparkSession, recording: Recording) -> None:
    """Files being written sit in DIR/_tmp/: a table folder holds only complete files, whatever the moment."""
    root = recording.out
    deadline = time.monotonic() + 90
    while not all(any((root / t).glob("date=*/*.parquet")) for t in TABLES):  # first roll: 6 s
        assert recording.running() and time.monotonic() < deadline, "no file in some table while recording"
        time.sleep(0.2)
    reads = 0
    while recording.running():
        staged = [p.name for p in (root / layout.STAGING_DIR).iterdir()]
        for t in TABLES:
            df = spark.read.parquet(str(root / t))
            files = [local_path(f) for f in df.inputFiles()]
            assert files and all(f.endswith(".parquet") and f"/{layout.STAGING_DIR}/" not in f for f in files)
            assert df.count() == file_count(files), t  # Spark's rows are the rows of the files it listed
        reads += 1 if staged else 0
        if reads >= 2:
            break
    assert reads, "the recording ended before Spark read it with files in _tmp/"


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
    rows = (df.selectExpr("item", "unix_timestamp(date_trunc('minute', recv_ts)) AS minute",
                          "total_ask_qty", "ask_price_1", "bid_price_1")
            .groupBy("item", "minute")
            .agg({"*": "count", "total_ask_qty": "sum", "ask_price_1": "max", "bid_price_1": "min"})
            .collect())
    return {(r["item"], r["minute"], r["count(1)"], r["sum(total_ask_qty)"], r["max(ask_price_1)"],
             r["min(bid_price_1)"]) for r in rows}


DUCKDB_MINUTES = """
    SELECT item, epoch(minute)::BIGINT, count(*), sum(total_ask_qty)::BIGINT, max(ask_price_1), min(bid_price_1)
    FROM orderbook GROUP BY ALL
"""


def test_a_per_minute_aggregate_over_orderbook_is_duckdb_s(spark: SparkSession, dataset: Path) -> None:
    with connect(dataset) as con:
        expected = {tuple(r) for r in con.execute(DUCKDB_MINUTES).fetchall()}
    assert len(expected) >= 2  # two items, and several minutes of market time
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


def run_snippet(block: str, where: Path) -> dict[str, Any]:
    """Run ``block`` in ``where`` (it names the dataset ``data``); its global names."""
    names: dict[str, Any] = {"__name__": "snippet"}
    old = Path.cwd()
    os.chdir(where)
    try:
        exec(compile(block, "docs/scaling.md", "exec"), names)
    finally:
        os.chdir(old)
    return names


def test_the_docs_spark_snippet_runs(spark: SparkSession, dataset: Path) -> None:
    names = run_snippet(engine_snippets()["pyspark"], dataset.parent)
    assert names["spark"] is spark  # getOrCreate: the running session
    assert names["orderbook"].count() == view_counts(dataset)["orderbook"]
    with connect(dataset) as con:
        expected = {(r[0], r[1], int(r[2])) for r in con.execute(
            "SELECT item, minute, count(*) FROM orderbook GROUP BY ALL").fetchall()}
    got = {(r["item"], r["minute"].astimezone(dt.UTC), r["rows"]) for r in names["per_minute"].collect()}
    assert {(i, m.astimezone(dt.UTC), n) for i, m, n in expected} == got


def test_the_docs_polars_and_duckdb_snippets_run(dataset: Path) -> None:
    views = view_counts(dataset)
    snippets = engine_snippets()
    pl_names = run_snippet(snippets["polars"], dataset.parent)
    assert pl_names["counts"] == views
    db_names = run_snippet(snippets["duckdb"], dataset.parent)
    assert db_names["counts"] == views
