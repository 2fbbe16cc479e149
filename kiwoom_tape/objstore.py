"""Object storage addresses (``s3://bucket/prefix``) and the pyarrow S3 filesystem they are read and written with.

Any S3-compatible endpoint (AWS, MinIO, Cloudflare R2, NCP Object Storage) configured the usual way, from the
environment: ``AWS_ENDPOINT_URL`` (``http://host:port`` or ``https://host``; unset: AWS itself),
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` (or ``AWS_REGION``), and whatever else
pyarrow's S3 client reads (profiles, instance roles). A leaf beside the CLIs: both the recorder (uploads) and
the catalog (reads) use it, and it imports nothing of the project.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import pyarrow.fs as pafs

__all__ = ["SCHEME", "S3Url", "is_s3_url", "parse_s3_url", "s3_filesystem"]

SCHEME: Final = "s3://"


@dataclass(frozen=True, slots=True)
class S3Url:
    """A bucket and a key prefix (no leading or trailing ``/``; empty for the bucket's root)."""

    bucket: str
    prefix: str

    def path(self, relative: str = "") -> str:
        """``bucket/prefix/relative``: the path pyarrow's S3 filesystem takes (no scheme)."""
        parts = [self.bucket, self.prefix, relative.strip("/")]
        return "/".join(p for p in parts if p)

    def __str__(self) -> str:
        return SCHEME + self.path()


def is_s3_url(text: str | os.PathLike[str]) -> bool:
    """True if ``text`` starts with ``s3://``."""
    return isinstance(text, str) and text.startswith(SCHEME)


def parse_s3_url(text: str) -> S3Url:
    """``s3://bucket/prefix`` -> :class:`S3Url`; ValueError naming the problem for anything else."""
    if not is_s3_url(text):
        raise ValueError(f"{text!r} is not an s3:// address; write s3://BUCKET/PREFIX")
    parts = urlsplit(text)
    bucket = parts.netloc
    if not bucket or parts.query or parts.fragment or "@" in bucket or ":" in bucket:
        raise ValueError(f"{text!r} names no bucket; write s3://BUCKET/PREFIX (credentials come from the "
                         "environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL)")
    prefix = parts.path.strip("/")
    if any(seg in ("", ".", "..") for seg in prefix.split("/")) and prefix:
        raise ValueError(f"{text!r}: the prefix has an empty, '.' or '..' part; write s3://BUCKET/a/b")
    return S3Url(bucket, prefix)


def s3_filesystem(
    environ: Mapping[str, str] | None = None,
    *,
    connect_timeout: float = 5.0,
    request_timeout: float = 30.0,
    attempts: int = 3,
) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem for the endpoint and region of ``environ`` (default ``os.environ``).

    ``AWS_ENDPOINT_URL`` is split into ``endpoint_override`` (host:port) and ``scheme`` (http or https), so
    a plain-http local endpoint (MinIO, a test server) works. Credentials are left to pyarrow (it reads
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` and the other usual sources): they are never passed around
    here. The client tries a request ``attempts`` times itself; callers retry on top with their own backoff.
    """
    env = os.environ if environ is None else environ
    kwargs: dict[str, object] = {
        "connect_timeout": connect_timeout,
        "request_timeout": request_timeout,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=attempts),
    }
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else "https://" + endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"AWS_ENDPOINT_URL={endpoint!r} is not an http:// or https:// URL")
        kwargs["endpoint_override"] = parts.netloc
        kwargs["scheme"] = parts.scheme
    region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)
