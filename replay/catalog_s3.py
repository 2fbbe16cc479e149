"""The tables of a dataset on object storage (``s3://bucket/prefix``) as Arrow datasets registered on a DuckDB
connection, for the catalog's views (:func:`kiwoom_tape.replay.catalog.connect`).

Chosen over DuckDB's own S3 support (the ``httpfs`` extension): DuckDB downloads its extensions from its own
server at run time, not from the package registry, so it cannot be installed offline; pyarrow's S3 filesystem
comes with the pyarrow wheel the project already needs (:mod:`kiwoom_tape.objstore`: endpoint and credentials
from the usual ``AWS_*`` variables). DuckDB scans a registered dataset with the filters and columns of the
query pushed down (a filter on ``date`` skips whole partitions).

The files are listed once, when the catalog is made (``TABLE/date=*/part-*.parquet``, as the local glob, names
of :func:`kiwoom_tape.schemas.layout.parse_part_filename` only): objects uploaded later show up at the next
:func:`~kiwoom_tape.replay.catalog.connect`, not in the next query as on a local dataset.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from kiwoom_tape.schemas.errors import DatasetError
from kiwoom_tape.schemas.layout import JOURNAL_DIR, TABLE_NAMES, parse_part_filename
from kiwoom_tape.schemas.versions import read_schema
from kiwoom_tape.schemas.views import Relation

from kiwoom_tape.objstore import S3Url, s3_filesystem

__all__ = ["register_s3_tables", "s3_part_files"]

_PARTITIONING = ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")


def s3_part_files(fs: Any, url: S3Url) -> dict[str, list[str]]:
    """Table -> its part files under ``url`` (object paths, sorted); DatasetError if ``url`` holds no dataset."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(url.path(), recursive=True, allow_not_found=True))
    except OSError as exc:
        raise DatasetError(f"cannot list {url}: {str(exc).splitlines()[0]}",
                           hint="check AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket name",
                           ) from None
    base = url.path() + "/"
    found: dict[str, list[str]] = {}
    tops: set[str] = set()
    for info in infos:
        rel = info.path[len(base):] if info.path.startswith(base) else ""
        parts = rel.split("/")
        tops.add(parts[0])
        if (info.type == pafs.FileType.File and len(parts) == 3 and parts[0] in TABLE_NAMES
                and parts[1].startswith("date=") and parse_part_filename(parts[2]) is not None):
            found.setdefault(parts[0], []).append(info.path)
    if not tops.intersection((*TABLE_NAMES, JOURNAL_DIR)):
        raise DatasetError(f"{url} holds no kiwoom-tape dataset",
                           hint="pass the s3://BUCKET/PREFIX a `record --out s3://...` uploaded to")
    return {t: sorted(files) for t, files in found.items()}


def register_s3_tables(con: duckdb.DuckDBPyConnection, url: S3Url, fs: Any = None) -> dict[str, Relation]:
    """Register each table of ``url`` with files as an Arrow dataset on ``con``; returns the views' sources."""
    fs = s3_filesystem() if fs is None else fs
    sources: dict[str, Relation] = {}
    for table, files in s3_part_files(fs, url).items():
        # files of both schema versions as one dataset (schemas.tables.read_schema), the partition's date last
        schema = read_schema(table).append(pa.field("date", pa.date32()))
        dataset = ds.dataset(files, filesystem=fs, format="parquet", partitioning=_PARTITIONING,
                             partition_base_dir=url.path(table), schema=schema)
        name = f"_kt_s3_{table}"
        con.register(name, dataset)
        sources[table] = Relation(name)
    return sources
