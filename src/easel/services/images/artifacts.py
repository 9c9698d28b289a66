"""Stored images as the API hands them out (URLs with a lifetime, bytes, base64, data URIs),
and the sweeper that deletes expired ones. The bytes live in a BlobStore (easel.store.blobs)."""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from collections.abc import Callable

from easel.domain.errors import EaselError, ErrorKind, Throttled
from easel.domain.job import Job, JobImage
from easel.domain.submission import DeliverySettings
from easel.services.images.uploads import Uploads
from easel.services.port import StoredBytes
from easel.store import JobStore
from easel.store.blobs import BlobStore, blob_key, partial_key

log = logging.getLogger(__name__)

MIME_BY_EXT = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
EXT_BY_MIME = {mime: ext for ext, mime in MIME_BY_EXT.items()}
STORE_RETRY_SECONDS = 10


# An object store's presigned GET URL: (key, seconds it lives, Content-Type) -> URL.
Presigner = Callable[[str, int, str | None], str]


def store_unavailable(exc: OSError) -> Throttled:
    return Throttled(ErrorKind.UNAVAILABLE, f"the image store cannot be read now ({exc}); "
                     f"retry in {STORE_RETRY_SECONDS}s", STORE_RETRY_SECONDS)


def expiry(delivery: DeliverySettings, default_ttl: int, now: float | None = None) -> float:
    """When a stored image stops resolving: the job's own ttl, else the default."""
    ttl = delivery.ttl_seconds or default_ttl
    return (time.time() if now is None else now) + float(ttl)


class Artifacts:
    """Stored images as the API hands them out (URL, bytes, base64, data URI), and the sweeper
    that deletes expired ones."""

    def __init__(self, blobs: BlobStore, store: JobStore, base_url: str,
                 presigner: Presigner | None = None,
                 clock: Callable[[], float] = time.time, uploads: Uploads | None = None) -> None:
        self.blobs = blobs
        self.store = store
        self.uploads = uploads  # images callers uploaded, served and swept beside the jobs'
        self.base_url = base_url.rstrip("/")
        self.presigner = presigner
        self.clock = clock  # wall time, as the images' expiry is stored

    def image_url(self, job: Job, image: JobImage) -> str:
        """easel's own URL (which checks the TTL at every GET), or, with a presigner, the object
        store's presigned URL, which stops working when the image expires."""
        ext = job.request.output_format.extension
        if self.presigner is not None and image.expires_at is not None:
            seconds = math.ceil(image.expires_at.timestamp() - self.clock())
            if seconds > 0:
                return self.presigner(blob_key(image.image_id, ext), seconds,
                                      image.mime or job.request.output_format.mime)
        return f"{self.base_url}/images/{image.image_id}.{ext}"

    async def partial_bytes(self, job: Job, image: JobImage, round_: int) -> bytes | None:
        key = partial_key(image.image_id, round_, job.request.output_format.extension)
        try:
            return await asyncio.to_thread(self.blobs.get, key)
        except OSError as exc:
            raise store_unavailable(exc) from None

    async def image_bytes(self, image: JobImage) -> bytes:
        ext = EXT_BY_MIME.get(image.mime or "")
        if ext is None:
            stored = await asyncio.to_thread(self.store.image, image.image_id)
            if stored is None:
                raise EaselError(ErrorKind.NOT_FOUND, f"no image {image.image_id}", "image")
            ext = stored.ext
        try:
            data = await asyncio.to_thread(self.blobs.get, blob_key(image.image_id, ext))
        except OSError as exc:
            raise store_unavailable(exc) from None
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

    def open(self, image_id: str, ext: str) -> StoredBytes | None:
        """A live image, to be streamed; None when unknown, unfinished or expired. Throttled
        when the image store cannot be read now."""
        stored = self.store.image(image_id)
        if stored is None and self.uploads is not None:
            return self._upload(image_id, ext)
        if stored is None or stored.ext != ext or stored.deleted or not stored.image.deliverable:
            return None
        expires = stored.image.expires_at
        if expires is not None and expires.timestamp() <= self.clock():
            return None
        mime = stored.image.mime or MIME_BY_EXT.get(ext, "application/octet-stream")
        lives_for = None if expires is None else expires.timestamp() - self.clock()
        return self._streamed(image_id, ext, mime, lives_for)

    def _upload(self, image_id: str, ext: str) -> StoredBytes | None:
        assert self.uploads is not None
        upload = self.uploads.find(image_id, ext)
        if upload is None:
            return None
        return self._streamed(image_id, ext, MIME_BY_EXT.get(ext, "application/octet-stream"),
                              upload.expires_at - self.clock())

    def _streamed(self, image_id: str, ext: str, mime: str,
                  lives_for: float | None) -> StoredBytes | None:
        try:
            opened = self.blobs.open(blob_key(image_id, ext))
        except OSError as exc:
            raise store_unavailable(exc) from None
        if opened is None:
            return None
        size, chunks = opened
        return StoredBytes(size, chunks, mime, lives_for)

    def sweep(self, now: float | None = None) -> int:
        """Delete expired images (and uploads) from the blob store; returns how many went."""
        now = self.clock() if now is None else now
        total = 0 if self.uploads is None else self.uploads.sweep(now)
        while batch := self.store.expired_images(now):
            for image_id, ext, partials in batch:
                self.blobs.delete(blob_key(image_id, ext))
                for round_ in range(partials):  # kept for the stream until the image goes
                    self.blobs.delete(partial_key(image_id, round_, ext))
            self.store.mark_deleted([image_id for image_id, _, _ in batch])
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
