"""Images in S3-compatible object storage (AWS S3, MinIO, Ceph, R2, ...) through boto3, for
deployments where API processes and workers run on different machines.

Credentials and the region come the way every AWS tool finds them (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance or pod role, AWS_REGION); easel's own settings
name only the bucket, an optional key prefix and, for a non-AWS server, its endpoint.

Every failure to reach the server is raised as ObjectStoreUnavailable, an OSError: the worker
treats it as it treats a full disk (the job goes back to the queue, no attempt spent, and the
worker waits until a write succeeds again), and the API answers 503 with Retry-After.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from easel.store.blobs import CHUNK_BYTES, STREAM_CHUNK_BYTES, checked_blob_key

# A part is read and sent at a time: memory stays flat whatever the image's size, and a large
# image (a 4K PNG) goes up as a multipart upload.
MULTIPART_THRESHOLD = 8 * 1024 * 1024
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's longest presigned URL
MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class ObjectStoreUnavailable(OSError):
    """The object store could not be reached or refused the request."""


@dataclass(frozen=True)
class BucketLocation:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> BucketLocation:
        """`s3://bucket` or `s3://bucket/some/prefix`."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"not an s3://bucket[/prefix] URL: {url!r}")
        prefix = parts.path.strip("/")
        return cls(parts.netloc, f"{prefix}/" if prefix else "")


def s3_client(endpoint_url: str | None, region: str | None, addressing_style: str,
              timeout: float) -> Any:
    """boto3's S3 client; credentials from boto3's own chain (environment, profile, role)."""
    config = Config(
        connect_timeout=timeout, read_timeout=timeout,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": addressing_style},
        signature_version="s3v4",
        # A worker's finishing threads and an API process's image reads share the client; the
        # default pool of 10 would drop connections (and warn) beyond ten at once.
        max_pool_connections=32,
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


class S3BlobStore:
    """The BlobStore seam over one bucket (and key prefix)."""

    def __init__(self, client: Any, location: BucketLocation) -> None:
        self.client = client
        self.location = location
        self._transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                        multipart_chunksize=MULTIPART_THRESHOLD,
                                        io_chunksize=CHUNK_BYTES, use_threads=False)

    def object_key(self, key: str) -> str:
        return self.location.prefix + checked_blob_key(key)

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else None
        with _unavailable("write", key):
            self.client.upload_fileobj(io.BytesIO(data), self.location.bucket,
                                       self.object_key(key), ExtraArgs=extra,
                                       Config=self._transfer)

    def get(self, key: str) -> bytes | None:
        opened = self.open(key)
        if opened is None:
            return None
        _size, chunks = opened
        return b"".join(chunks)

    def open(self, key: str) -> tuple[int, Iterator[bytes]] | None:
        """The object's size and its bytes as chunks read from the server as they are sent on
        (None when it does not exist)."""
        try:
            with _unavailable("read", key):
                reply = self.client.get_object(Bucket=self.location.bucket,
                                               Key=self.object_key(key))
        except _Missing:
            return None
        body = reply["Body"]
        return int(reply["ContentLength"]), _chunks(body, key)

    def delete(self, key: str) -> None:
        with _unavailable("delete", key):
            self.client.delete_object(Bucket=self.location.bucket, Key=self.object_key(key))

    def presigned_url(self, key: str, seconds: int, content_type: str | None = None) -> str:
        """A GET URL that works for `seconds` (1 s to 7 days), without asking the server."""
        params: dict[str, str] = {"Bucket": self.location.bucket, "Key": self.object_key(key)}
        if content_type:
            params["ResponseContentType"] = content_type
        expires = max(1, min(int(seconds), MAX_PRESIGN_SECONDS))
        url: str = self.client.generate_presigned_url("get_object", Params=params,
                                                      ExpiresIn=expires)
        return url


class _Missing(Exception):
    pass


@contextmanager
def _unavailable(action: str, key: str) -> Iterator[None]:
    """boto3's errors as ObjectStoreUnavailable; a missing key as _Missing."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in MISSING_CODES:
            raise _Missing() from None
        raise ObjectStoreUnavailable(
            f"the object store refused to {action} {key}: {code or exc}") from exc
    except BotoCoreError as exc:
        raise ObjectStoreUnavailable(
            f"the object store is unreachable ({action} {key}): {exc}") from exc


def _chunks(body: Any, key: str) -> Iterator[bytes]:
    try:
        with _unavailable("read", key):
            yield from body.iter_chunks(STREAM_CHUNK_BYTES)
    finally:
        body.close()
