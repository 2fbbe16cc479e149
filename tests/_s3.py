"""A real S3 API server on loopback for the tests (moto in server mode). Shared test helper.

:func:`s3_server` starts ``moto.server.ThreadedMotoServer`` on 127.0.0.1, port 0, creates the bucket
:data:`BUCKET`, points the ``AWS_*`` variables of the test at it (so pyarrow's S3 filesystem, subprocesses
given ``os.environ`` and the code under test all use it) and stops the server when the test ends::

    def test_x(s3: S3Server) -> None:
        fs = s3_filesystem()          # kiwoom_tape.objstore: talks to s3.endpoint
        s3.stop(); s3.start()         # an endpoint that goes away and comes back (same port, same objects)
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto.server import ThreadedMotoServer

BUCKET = "tape"
"""The bucket every test server has."""


@dataclass
class S3Server:
    server: ThreadedMotoServer
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop answering (connections to the port are refused); the objects stay in moto's memory."""
        self.server.stop()

    def start(self) -> None:
        """Answer again on the same port, with the same buckets and objects."""
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key of :data:`BUCKET` under ``prefix`` (one entry per object), sorted."""
        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        out: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """The test's own S3 server with :data:`BUCKET`, and the ``AWS_*`` variables pointing at it."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    server = S3Server(moto, moto.get_host_and_port()[1])  # the port it got: start() after stop() takes it again
    for name, value in {"AWS_ENDPOINT_URL": server.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    # moto keeps its buckets in process-wide memory, across servers: start each test from nothing
    urllib.request.urlopen(urllib.request.Request(server.endpoint + "/moto-api/reset", method="POST"), timeout=10)
    boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        yield server
    finally:
        server.stop()


__all__ = ["BUCKET", "S3Server", "s3"]
