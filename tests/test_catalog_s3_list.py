"""An ``s3://`` catalog lists the bucket once (issue 14/15): :func:`kiwoom_tape.replay.catalog.connect` lists the
dataset's objects when it is made, and neither building each table and view nor querying them lists again.

ListObjects requests are counted where they arrive: in the S3 API server of the test (moto in server mode,
tests/_s3.py, which runs in this process), by wrapping its ListObjects (v1 and v2) handlers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import duckdb
import pytest
from _s3 import BUCKET, S3Server, s3
from _tape import record_tape
from kiwoom_tape.replay.catalog import connect
from moto.s3.responses import S3Response

__all__ = ["s3"]  # the fixture, imported to be used

PREFIX = "market/day"
OTHER_DATE = "date=2026-11-23"
"""Each part file is also uploaded under this date: a dataset of two days (two partitions per table)."""


def _upload(root: Path, s3: S3Server) -> dict[str, int]:
    """Every part file of ``root`` to ``PREFIX`` (its own date and :data:`OTHER_DATE`); table -> part files."""
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    files: dict[str, int] = {}
    for path in sorted(root.glob("*/date=*/*.parquet")):
        table, date, name = path.relative_to(root).parts
        for d in (date, OTHER_DATE):
            client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{table}/{d}/{name}", Body=path.read_bytes())
            files[table] = files.get(table, 0) + 1
    return files


def _count_lists(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Wrap moto's ListObjects handlers; the returned list gets one entry per ListObjects request served."""
    calls: list[str] = []
    for name in ("list_objects", "list_objects_v2"):
        real = getattr(S3Response, name)

        def counted(self: S3Response, _real: Any = real, _name: str = name) -> Any:
            calls.append(_name)
            return _real(self)

        monkeypatch.setattr(S3Response, name, counted)
    return calls


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_an_s3_catalog_lists_the_bucket_once_for_every_table_and_view(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    record_tape(root, frames=12)
    files = _upload(root, s3)
    assert {"frames", "orderbook", "events"} <= set(files), files
    local = duckdb.connect()
    expected = {t: _count(local, f"SELECT count(*) FROM read_parquet('{root}/{t}/date=*/*.parquet')") for t in files}
    local.close()
    assert expected["orderbook"] > 0
    calls = _count_lists(monkeypatch)
    con = connect(f"s3://{BUCKET}/{PREFIX}")
    try:
        assert len(calls) == 1, calls  # the catalog was made: one listing, for every table at once
        for table, n in expected.items():
            assert _count(con, f"SELECT count(*) FROM {table}") == 2 * n  # the two dates
            assert _count(con, f"SELECT count(DISTINCT date) FROM {table}") == 2
        views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]
        assert "quotes" in views, views
        for view in views:
            _count(con, f"SELECT count(*) FROM {view}")
        assert _count(con, "SELECT count(*) FROM quotes") == 2 * expected["orderbook"]
    finally:
        con.close()
    assert len(calls) == 1, calls  # no table, view or query listed again
    # a second catalog lists again (objects uploaded since show up there), once
    connect(f"s3://{BUCKET}/{PREFIX}").close()
    assert len(calls) == 2, calls
