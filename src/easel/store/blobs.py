"""Where image bytes live: the BlobStore seam and its local store (the data dir). The other one,
S3-compatible object storage, is easel.store.s3.S3BlobStore.

Blob keys are deterministic (`<image id>.<ext>`), so a job re-run after a crash overwrites the
same files instead of leaving orphans behind. A store that cannot be reached raises OSError (a
full disk, an object store that is down): the job goes back to the queue and the API answers 503.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK_BYTES = 1024 * 1024
# What an image download reads at a time, and so holds for a reader who does not read: the
# HTTP server's write-buffer high-water mark (64 KiB), not more.
STREAM_CHUNK_BYTES = 64 * 1024


class BlobStore(Protocol):
    """LocalBlobStore (the data dir) or easel.store.s3.S3BlobStore."""

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def open(self, key: str) -> tuple[int, Iterator[bytes]] | None: ...

    def delete(self, key: str) -> None: ...


def checked_blob_key(key: str) -> str:
    """A blob key of either image store (a file name, an object name under the prefix): one
    plain name, never a path out of its folder."""
    if "/" in key or "\\" in key or key.startswith("."):
        raise ValueError(f"bad blob key {key!r}")
    return key


def blob_key(image_id: str, ext: str) -> str:
    return f"{image_id}.{ext}"


def partial_key(image_id: str, index: int, ext: str) -> str:
    """Where an image's partial image `index` (a preview streamed while it denoised) is kept:
    beside the image, removed with it."""
    return f"{image_id}.partial{index}.{ext}"


def write_problem(blobs: BlobStore, name: str) -> str | None:
    """Why the blob store cannot take a write now (disk full, read-only), or None: one block
    written and removed under `name`."""
    probe = blob_key(f"probe-{name}", "bin")
    try:
        blobs.put(probe, b"\0" * 4096)  # a block: a full disk refuses it
        blobs.delete(probe)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


class LocalBlobStore:
    """Files under one directory, written atomically (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / checked_blob_key(key)

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        del content_type  # a file has none: /images/ answers with the job's recorded type
        target = self.path(key)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def open(self, key: str) -> tuple[int, Iterator[bytes]] | None:
        try:
            f = self.path(key).open("rb")
        except (FileNotFoundError, ValueError):
            return None
        return os.fstat(f.fileno()).st_size, _file_chunks(f)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


def _file_chunks(f: BinaryIO) -> Iterator[bytes]:
    with f:
        while chunk := f.read(STREAM_CHUNK_BYTES):
            yield chunk
