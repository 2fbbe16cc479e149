"""``CREATE TABLE`` statements that register a dataset's tables in Spark SQL, Trino or Athena (docs/scaling.md).

::

    python -m kiwoom_tape.ddl --engine spark /data/kiwoom
    python -m kiwoom_tape.ddl --engine trino s3://bucket/kiwoom --schema kiwoom
    python -m kiwoom_tape.ddl --engine athena s3://bucket/kiwoom

Each table of :data:`kiwoom_tape.schemas.tables.TABLES` is its own root, ``LOCATION/TABLE``, partitioned
Hive-style by ``date=YYYY-MM-DD`` (:mod:`kiwoom_tape.schemas.layout`); files being written sit in
``LOCATION/_tmp/``, outside every table. The column lists are generated from the Arrow schemas, so they follow
the stored layout; after each statement comes the one that registers the partitions already there (run it
again after new days arrive).

Types, by Arrow type (a timestamp of any unit is one engine timestamp: Spark's ``TIMESTAMP`` is an instant,
like the stored UTC-adjusted columns; Trino's and Athena's Hive tables read timestamps at millisecond
precision by default, so the exact receive time there is the ``recv_ts`` milliseconds plus the stored
sub-millisecond columns, or raise the catalog's ``hive.timestamp-precision``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import click
import pyarrow as pa

from kiwoom_tape.schemas.layout import TABLE_NAMES
from kiwoom_tape.schemas.tables import TABLES

__all__ = ["ENGINES", "PARTITION_COLUMN", "column_type", "create_table", "main", "statements"]

ENGINES: Final = ("spark", "trino", "athena")
PARTITION_COLUMN: Final = "date"
"""The Hive-style partition column of every table (``TABLE/date=YYYY-MM-DD/``), a DATE in every engine."""

_INTEGERS: Final = {8: "TINYINT", 16: "SMALLINT", 32: "INT", 64: "BIGINT"}
_TIMESTAMP: Final = {"spark": "TIMESTAMP", "trino": "TIMESTAMP(3)", "athena": "TIMESTAMP"}
_STRING: Final = {"spark": "STRING", "trino": "VARCHAR", "athena": "STRING"}


def column_type(engine: str, typ: pa.DataType) -> str:
    """The SQL type of a column of Arrow type ``typ`` in ``engine``; ValueError for a type with none."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if pa.types.is_timestamp(typ):
        return _TIMESTAMP[engine]
    if pa.types.is_signed_integer(typ):
        name = _INTEGERS[typ.bit_width]
        return "INTEGER" if engine == "trino" and name == "INT" else name
    if pa.types.is_float64(typ):
        return "DOUBLE"
    if pa.types.is_string(typ):
        return _STRING[engine]
    if pa.types.is_boolean(typ):
        return "BOOLEAN"
    raise ValueError(f"no {engine} type for Arrow {typ}")


def _quote(engine: str) -> Callable[[str], str]:
    mark = '"' if engine == "trino" else "`"
    return lambda name: f"{mark}{name}{mark}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_table(engine: str, table: str, location: str, *, schema: str | None = None) -> str:
    """The ``CREATE TABLE`` of ``table`` over ``location/table`` in ``engine`` (no trailing semicolon).

    ``schema`` qualifies the table name (Trino needs it to register partitions). Partition column last.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLE_NAMES)}")
    q = _quote(engine)
    name = q(table) if schema is None else f"{q(schema)}.{q(table)}"
    path = f"{location.rstrip('/')}/{table}"
    columns = [f"  {q(f.name)} {column_type(engine, f.type)}" for f in TABLES[table]]
    part = f"{q(PARTITION_COLUMN)} DATE"
    if engine == "spark":
        body = ",\n".join([*columns, f"  {part}"])
        return (f"CREATE TABLE IF NOT EXISTS {name} (\n{body}\n)\nUSING parquet\n"
                f"PARTITIONED BY ({q(PARTITION_COLUMN)})\nLOCATION {_literal(path)}")
    if engine == "trino":
        body = ",\n".join([*columns, f"  {part}"])
        return (f"CREATE TABLE IF NOT EXISTS {name} (\n{body}\n)\nWITH (\n  format = 'PARQUET',\n"
                f"  partitioned_by = ARRAY['{PARTITION_COLUMN}'],\n  external_location = {_literal(path + '/')}\n)")
    body = ",\n".join(columns)
    return (f"CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n{body}\n)\nPARTITIONED BY ({part})\n"
            f"STORED AS PARQUET\nLOCATION {_literal(path + '/')}")


def _register_partitions(engine: str, table: str, schema: str | None) -> str:
    q = _quote(engine)
    name = q(table) if schema is None else f"{q(schema)}.{q(table)}"
    if engine == "trino":
        return (f"CALL system.sync_partition_metadata(schema_name => {_literal(schema or 'default')}, "
                f"table_name => {_literal(table)}, mode => 'ADD')")
    return f"MSCK REPAIR TABLE {name}"


def statements(engine: str, location: str, *, tables: Sequence[str] = TABLE_NAMES,
               schema: str | None = None) -> list[str]:
    """For each table: its ``CREATE TABLE``, then the statement that registers its partitions."""
    if engine == "trino" and schema is None:
        schema = "default"
    out: list[str] = []
    for table in tables:
        out += [create_table(engine, table, location, schema=schema), _register_partitions(engine, table, schema)]
    return out


@click.command("ddl", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("location")
@click.option("--engine", type=click.Choice(ENGINES), required=True, help="The SQL dialect.")
@click.option("--schema", default=None, help="Qualify the tables with this schema (Trino: default 'default').")
@click.option("--table", "tables", multiple=True, type=click.Choice(TABLE_NAMES),
              help="Only this table (repeatable; default: all five).")
def main(location: str, engine: str, schema: str | None, tables: tuple[str, ...]) -> None:
    """Print the statements that register the dataset at LOCATION (a path or s3://BUCKET/PREFIX) in ENGINE.

    One CREATE TABLE per table (frames, orderbook, afterhours, trades, events; columns and types from the
    stored schema, partitioned by date), then the statement that registers the partitions already there.
    Also runs as python -m kiwoom_tape.ddl.

    \b
    Examples:
        kiwoom-tape ddl --engine spark /data/kiwoom                     # spark.sql() each statement
        kiwoom-tape ddl --engine trino s3://bucket/kiwoom --schema kiwoom
        kiwoom-tape ddl --engine athena s3://bucket/kiwoom --table orderbook
    """
    for stmt in statements(engine, location, tables=tables or TABLE_NAMES, schema=schema):
        click.echo(stmt + ";\n")


if __name__ == "__main__":
    main()
