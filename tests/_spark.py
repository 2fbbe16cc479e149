"""One local SparkSession for the whole test run. Shared test helper.

The JVM starts once (10-20 s) on the first use of the ``spark`` fixture and stops at the end of the run. It
runs ``local[1]`` (one core: the machine is shared), with a small driver, no UI, bound to loopback, and its
scratch folders in the run's temporary directory; every SQL setting is Spark's default, which is what the
tests prove the dataset is readable with. A test module loads it with ``pytest_plugins = ["_spark"]``
and takes ``spark: SparkSession``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    scratch = tmp_path_factory.mktemp("spark")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no look-up of the host's name or address
    session = (
        SparkSession.builder.master("local[1]")
        .appName("kiwoom-tape-tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.memory", "512m")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1")  # not a read setting: one core, one reducer
        .config("spark.local.dir", str(scratch / "local"))
        .config("spark.sql.warehouse.dir", str(scratch / "warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={scratch}")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
