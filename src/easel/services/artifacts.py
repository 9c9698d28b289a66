"""Stored images: a BlobStore seam (local disk by default), URL lifetimes and the sweeper.

Blob keys are deterministic (`<imageUUID>.<ext>`), so a job re-run after a crash overwrites the
same files instead of leaving orphans behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from easel.store import JobStore

log = logging.getLogger(__name__)

MIME_BY_EXT = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def delete(self, key: str) -> None: ...


class LocalBlobStore:
    """Files under one directory, written atomically (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        if "/" in key or "\\" in key or key.startswith("."):
            raise ValueError(f"bad blob key {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
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

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


def blob_key(image_id: str, ext: str) -> str:
    return f"{image_id}.{ext}"


def expiry(options: dict[str, Any], default_ttl: int, now: float | None = None) -> float:
    """When a stored image stops resolving: the job's own `ttl` option, else the default."""
    ttl = options.get("ttl") or default_ttl
    return (time.time() if now is None else now) + float(ttl)


class Artifacts:
    """Reads images for the API and sweeps expired ones off the disk."""

    def __init__(self, blobs: BlobStore, store: JobStore) -> None:
        self.blobs = blobs
        self.store = store

    def read(self, image_id: str, ext: str) -> tuple[bytes, str] | None:
        """The bytes and Content-Type of a live image; None when unknown, unfinished or expired."""
        stored = self.store.image(image_id)
        if stored is None or stored.ext != ext or stored.deleted or not stored.image.ready:
            return None
        expires = stored.image.expires_at
        if expires is not None and expires.timestamp() <= time.time():
            return None
        data = self.blobs.get(blob_key(image_id, ext))
        if data is None:
            return None
        return data, stored.image.mime or MIME_BY_EXT.get(ext, "application/octet-stream")

    def sweep(self, now: float | None = None) -> int:
        """Delete expired images from the blob store; returns how many went."""
        now = time.time() if now is None else now
        total = 0
        while batch := self.store.expired_images(now):
            for image_id, ext in batch:
                self.blobs.delete(blob_key(image_id, ext))
            self.store.mark_deleted([image_id for image_id, _ in batch])
            total += len(batch)
        return total

    async def run_sweeper(self, interval: float) -> None:
        while True:
            try:
                removed = await asyncio.to_thread(self.sweep)
                if removed:
                    log.info("sweeper deleted %d expired image(s)", removed)
            except Exception:  # a failed sweep must not stop the next one
                log.exception("image sweep failed")
            await asyncio.sleep(interval)
