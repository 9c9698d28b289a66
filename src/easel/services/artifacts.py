"""Stored images: a BlobStore seam (local disk by default), URL lifetimes and the sweeper.

Blob keys are deterministic (`<image id>.<ext>`), so a job re-run after a crash overwrites the
same files instead of leaving orphans behind.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Protocol

from easel.domain.errors import EaselError, ErrorKind
from easel.domain.job import Job, JobImage
from easel.domain.submission import DeliverySettings
from easel.store import JobStore

log = logging.getLogger(__name__)

MIME_BY_EXT = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
EXT_BY_MIME = {mime: ext for ext, mime in MIME_BY_EXT.items()}


class ImageSource(Protocol):
    """How dialects hand images out: what their renderers (replies, webhooks) need."""

    base_url: str

    def image_url(self, job: Job, image: JobImage) -> str: ...

    async def image_bytes(self, image: JobImage) -> bytes: ...

    async def image_base64(self, image: JobImage) -> str: ...

    async def image_data_uri(self, image: JobImage) -> str: ...


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


def expiry(delivery: DeliverySettings, default_ttl: int, now: float | None = None) -> float:
    """When a stored image stops resolving: the job's own ttl, else the default."""
    ttl = delivery.ttl_seconds or default_ttl
    return (time.time() if now is None else now) + float(ttl)


class Artifacts:
    """Stored images as the API hands them out (URL, bytes, base64, data URI), and the sweeper
    that deletes expired ones."""

    def __init__(self, blobs: BlobStore, store: JobStore, base_url: str) -> None:
        self.blobs = blobs
        self.store = store
        self.base_url = base_url.rstrip("/")

    def image_url(self, job: Job, image: JobImage) -> str:
        ext = job.request.output_format.extension
        return f"{self.base_url}/images/{image.image_id}.{ext}"

    async def image_bytes(self, image: JobImage) -> bytes:
        ext = EXT_BY_MIME.get(image.mime or "")
        if ext is None:
            stored = await asyncio.to_thread(self.store.image, image.image_id)
            if stored is None:
                raise EaselError(ErrorKind.NOT_FOUND, f"no image {image.image_id}", "image")
            ext = stored.ext
        data = await asyncio.to_thread(self.blobs.get, blob_key(image.image_id, ext))
        if data is None:
            raise EaselError(
                ErrorKind.NOT_FOUND, f"image {image.image_id} is not stored (expired?)", "image"
            )
        return data

    async def image_base64(self, image: JobImage) -> str:
        return base64.b64encode(await self.image_bytes(image)).decode("ascii")

    async def image_data_uri(self, image: JobImage) -> str:
        mime = image.mime or "image/jpeg"
        return f"data:{mime};base64,{await self.image_base64(image)}"

    def read(self, image_id: str, ext: str) -> tuple[bytes, str] | None:
        """The bytes and Content-Type of a live image; None when unknown, unfinished or expired."""
        stored = self.store.image(image_id)
        if stored is None or stored.ext != ext or stored.deleted or not stored.image.deliverable:
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
