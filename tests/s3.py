"""A local S3-compatible server for tests and benchmarks: moto's, on a free loopback port.

`s3_server()` starts moto's server (`moto.server.ThreadedMotoServer`, the same app as the
`moto_server` command) in this process and creates a bucket on it; the product reaches it
with the real boto3 client through django-storages, exactly as it reaches AWS S3, R2 or
MinIO (`S3_ENDPOINT_URL`, path-style addressing). `.env()` gives a child process (web
server, worker, a management command) the variables that select it; `.settings()` the
settings to override in this process. The `s3` fixture (tests/conftest.py) does the latter
for one test, on a fresh bucket.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from callcenter import media

# moto accepts any credentials (docs.getmoto.org/en/latest/docs/server_mode.html); these
# are not secrets.
ACCESS_KEY = "moto-access-key"
SECRET_KEY = "moto-secret-key"
REGION = "us-east-1"


@dataclass
class S3Server:
    """A running moto server and one bucket on it."""

    endpoint_url: str
    bucket: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    prefix: str = ""
    _client: Any = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        """The MEDIA_STORAGE and S3_* variables of a process that stores its media here."""
        return {
            "MEDIA_STORAGE": media.S3,
            "S3_BUCKET": self.bucket,
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_REGION": self.region,
            "S3_ACCESS_KEY_ID": self.access_key,
            "S3_SECRET_ACCESS_KEY": self.secret_key,
            "S3_ADDRESSING_STYLE": "path",
            "S3_PREFIX": self.prefix,
        }

    def settings(self) -> dict[str, Any]:
        """The settings of this process to override (STORAGES and the S3_* ones), as
        callcenter/settings.py builds them from `env()`."""
        default = media.s3_storage(
            bucket=self.bucket,
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key=self.access_key,
            secret_key=self.secret_key,
            addressing_style="path",
            prefix=self.prefix,
        )
        return {
            "MEDIA_STORAGE": media.S3,
            "S3_BUCKET": self.bucket,
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_REGION": self.region,
            "S3_ACCESS_KEY_ID": self.access_key,
            "S3_SECRET_ACCESS_KEY": self.secret_key,
            "S3_ADDRESSING_STYLE": "path",
            "S3_PREFIX": self.prefix,
            "STORAGES": {
                "default": default,
                "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
            },
        }

    def client(self) -> Any:
        """A boto3 S3 client of this server, to look at the bucket from outside."""
        if self._client is None:
            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
            )
        return self._client

    def keys(self) -> list[str]:
        """Every key in the bucket, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))

    def read(self, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def new_bucket(self) -> S3Server:
        """Another, empty bucket on the same server."""
        other = S3Server(endpoint_url=self.endpoint_url, bucket=f"media-{uuid.uuid4().hex[:12]}")
        other.client().create_bucket(Bucket=other.bucket)
        return other


@contextmanager
def s3_server(bucket: str = "") -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, with an empty private bucket."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = S3Server(
            endpoint_url=f"http://{host}:{port}", bucket=bucket or f"media-{uuid.uuid4().hex[:12]}"
        )
        s3.client().create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        server.stop()
