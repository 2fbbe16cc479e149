"""``python -m kiwoom_tape.ddl``: the CREATE TABLE of every table, for Spark SQL, Trino and Athena, declares the
columns of the stored Parquet files with the types those engines read them as, in the files' order, the
``date`` partition last; docs/scaling.md shows what it prints. (Spark executes its statements in
tests/test_spark.py; Trino and Athena do not run here, so their statements are parsed.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _docs import ROOT, code_blocks, text
from click.testing import CliRunner
from kiwoom_tape.recorder.store import Store
from kiwoom_tape.schemas import layout
from test_staging import RUN, T0, frame

from kiwoom_tape import ddl

LOCATION = "s3://bucket/kiwoom"


def logical(column: pq.ColumnSchema) -> tuple[str, str, int]:
    """(physical type, logical type, bit width) of a Parquet column."""
    info = json.loads(column.logical_type.to_json()) if column.logical_type.type != "NONE" else {}
    return column.physical_type, str(info.get("Type", "None")), int(info.get("bitWidth", 0))


# What each engine reads a Parquet (physical, logical, bit width) as, with its default settings.
READS_AS = {
    ("INT32", "Int", 8): {"spark": "TINYINT", "trino": "TINYINT", "athena": "TINYINT"},
    ("INT32", "Int", 16): {"spark": "SMALLINT", "trino": "SMALLINT", "athena": "SMALLINT"},
    ("INT32", "None", 0): {"spark": "INT", "trino": "INTEGER", "athena": "INT"},
    ("INT32", "Int", 32): {"spark": "INT", "trino": "INTEGER", "athena": "INT"},
    ("INT64", "None", 0): {"spark": "BIGINT", "trino": "BIGINT", "athena": "BIGINT"},
    ("INT64", "Int", 64): {"spark": "BIGINT", "trino": "BIGINT", "athena": "BIGINT"},
    ("INT64", "Timestamp", 0): {"spark": "TIMESTAMP", "trino": "TIMESTAMP(3)", "athena": "TIMESTAMP"},
    ("DOUBLE", "None", 0): {"spark": "DOUBLE", "trino": "DOUBLE", "athena": "DOUBLE"},
    ("BYTE_ARRAY", "String", 0): {"spark": "STRING", "trino": "VARCHAR", "athena": "STRING"},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One Parquet file per table, written by the recorder's Store."""
    root = tmp_path_factory.mktemp("ddl") / "data"
    with Store(root, RUN) as store:
        store.add_event(T0, "login", {"items": 1})
        for i in range(3):
            store.add_frame(T0 + (i + 1) * 10**6, "in", frame(i))
    return {t: next((root / t).glob("date=*/*.parquet")) for t in layout.TABLE_NAMES}


COLUMN = re.compile(r'^  [`"](\w+)[`"] ([A-Z]+(?:\(\d+\))?),?$', re.M)


def parse(statement: str) -> tuple[str, list[tuple[str, str]], str]:
    """(the statement's head up to its column list, [(column, type)], what follows the list)."""
    head, rest = statement.split(" (\n", 1)
    body, tail = rest.split("\n)", 1)
    columns = COLUMN.findall(body)
    assert len(columns) == len(body.splitlines()), body
    return head, columns, tail


@pytest.mark.parametrize("engine", ddl.ENGINES)
@pytest.mark.parametrize("table", layout.TABLE_NAMES)
def test_the_ddl_declares_the_parquet_columns_as_the_engine_reads_them(files: dict[str, Path], engine: str,
                                                                       table: str) -> None:
    schema = pq.ParquetFile(files[table]).schema
    stored = [(c.name, READS_AS[logical(c)][engine]) for c in (schema.column(i) for i in range(len(schema)))]
    create, register = ddl.statements(engine, LOCATION, tables=[table], schema="kiwoom")
    head, columns, tail = parse(create)
    q = '"' if engine == "trino" else "`"
    assert head.endswith(f"TABLE IF NOT EXISTS {q}kiwoom{q}.{q}{table}{q}")
    if engine == "athena":
        assert head.startswith("CREATE EXTERNAL TABLE")
        assert columns == stored
        assert tail == (f"\nPARTITIONED BY (`date` DATE)\nSTORED AS PARQUET\nLOCATION '{LOCATION}/{table}/'")
        assert register == f"MSCK REPAIR TABLE `kiwoom`.`{table}`"
    else:
        assert columns == [*stored, ("date", "DATE")]
    if engine == "spark":
        assert tail == f"\nUSING parquet\nPARTITIONED BY (`date`)\nLOCATION '{LOCATION}/{table}'"
        assert register == f"MSCK REPAIR TABLE `kiwoom`.`{table}`"
    if engine == "trino":
        assert tail == (f"\nWITH (\n  format = 'PARQUET',\n  partitioned_by = ARRAY['date'],\n"
                        f"  external_location = '{LOCATION}/{table}/'\n)")
        assert register == (f"CALL system.sync_partition_metadata(schema_name => 'kiwoom', table_name => '{table}', "
                            "mode => 'ADD')")


def test_every_table_in_the_dataset_s_order_and_quotes_doubled_in_locations() -> None:
    stmts = ddl.statements("trino", "s3://it's/x/")
    assert len(stmts) == 2 * len(layout.TABLE_NAMES)
    names = [re.search(r'"default"\."(\w+)"', s)[1] for s in stmts[::2]]  # type: ignore[index]
    assert names == list(layout.TABLE_NAMES)
    assert "external_location = 's3://it''s/x/orderbook/'" in stmts[2]
    with pytest.raises(ValueError, match="unknown table"):
        ddl.create_table("spark", "quotes", "/x")
    with pytest.raises(ValueError, match="unknown engine"):
        ddl.column_type("hive", ddl.pa.int8())


def test_the_command_prints_the_statements() -> None:
    result = CliRunner().invoke(ddl.main, ["--engine", "athena", LOCATION, "--table", "events", "--table", "trades"])
    assert result.exit_code == 0, result.output
    expected = ddl.statements("athena", LOCATION, tables=["events", "trades"])
    assert result.output == "".join(s + ";\n\n" for s in expected)
    bad = CliRunner().invoke(ddl.main, ["--engine", "hive", LOCATION])
    assert bad.exit_code == 2 and "'hive' is not one of" in bad.output


def test_the_docs_show_what_it_prints() -> None:
    page = text(ROOT / "docs" / "scaling.md")
    blocks = code_blocks(page, "sql")
    for engine in ("trino", "athena"):
        expected = "\n".join(s + ";\n" for s in ddl.statements(engine, LOCATION, tables=["events"], schema="kiwoom"))
        assert expected in blocks, f"docs/scaling.md does not show `python -m kiwoom_tape.ddl --engine {engine}`"
