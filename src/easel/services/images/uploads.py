"""Images a caller names by id: ones it uploaded (Runware's imageUpload: an imageUUID to send
as seedImage, maskImage, ... later) and the images of its own jobs. Only the caller that sent
an upload or submitted a job may name its images; any other id reads as unknown.

An upload is decoded (the same hostile-input checks as every input image) and kept as sent in
the image store beside the jobs' images, served at /images/<id>.<ext> like them, and deleted
30 days after its last use, as Runware does."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from easel.domain.errors import invalid
from easel.domain.submission import Caller, ImageInput
from easel.services.images.inputs import InputImages, decode
from easel.services.port import StoredUpload
from easel.store import JobStore
from easel.store.blobs import BlobStore, blob_key
from easel.store.uploads import Upload, UploadStore

UPLOAD_TTL_SECONDS = 30 * 24 * 3600  # from the last use (Runware's rule)
EXT_BY_FORMAT = {"png": "png", "jpeg": "jpg", "webp": "webp"}
MIME_BY_FORMAT = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class Uploads:
    def __init__(self, blobs: BlobStore, store: UploadStore, jobs: JobStore,
                 wall_clock: Callable[[], float], ttl_seconds: int = UPLOAD_TTL_SECONDS) -> None:
        self.blobs = blobs
        self.store = store
        self.jobs = jobs
        self.clock = wall_clock
        self.ttl_seconds = ttl_seconds

    async def add(self, caller: Caller, given: ImageInput, inputs: InputImages,
                  reserved: tuple[str, str] | None = None) -> StoredUpload:
        """Fetch (a URL) or read the image as `inputs` reads input images, decode it (an
        EaselError naming the parameter when it is refused) and keep it for `caller`.
        `reserved`: the id and extension promised before the bytes came (an upload ticket);
        an image of another format than promised is refused."""
        data = await inputs.fetched(given, caller)
        image = await asyncio.to_thread(decode, data, given.parameter, inputs.limits)
        image_id, ext = str(uuid.uuid4()), EXT_BY_FORMAT[image.format]
        if reserved is not None:
            if reserved[1] != ext:
                raise invalid(given.parameter, f"{given.parameter} is a {image.format.upper()} "
                                               f"image, not the .{reserved[1]} the upload was "
                                               "made for")
            image_id = reserved[0]
            # A ticket's URL PUT again: the first upload stands.
            if self.store.get(image_id, self.clock() - self.ttl_seconds * 2) is not None:
                raise invalid(given.parameter, f"upload {image_id} was made already")
        now = self.clock()
        upload = Upload(image_id, caller.principal, ext, image.digest, image.width,
                        image.height, len(data), now, now + self.ttl_seconds)
        # The bytes first: a row never names a blob that is not there.
        await asyncio.to_thread(self.blobs.put, blob_key(image_id, ext), data,
                                MIME_BY_FORMAT[image.format])
        await asyncio.to_thread(self.store.add, upload)
        return StoredUpload(image_id, f"/images/{image_id}.{ext}", image.width, image.height)

    def bytes_of(self, principal: str, image_id: str) -> bytes | None:
        """The bytes of the caller's upload or of an image of one of its jobs; None when it has
        none of that id (another caller's is none of its)."""
        now = self.clock()
        upload = self.store.get(image_id, now)
        if upload is not None:
            if upload.caller != principal:
                return None
            self.store.used(image_id, now + self.ttl_seconds)
            return self.blobs.get(blob_key(image_id, upload.ext))
        stored = self.jobs.image(image_id)
        if stored is None or stored.deleted or not stored.image.deliverable:
            return None
        job = self.jobs.get(stored.job_id)
        if job is None or job.caller != principal:
            return None
        expires = stored.image.expires_at
        if expires is not None and expires.timestamp() <= now:
            return None
        return self.blobs.get(blob_key(image_id, stored.ext))

    def find(self, image_id: str, ext: str) -> Upload | None:
        """A live upload to serve at its URL."""
        upload = self.store.get(image_id, self.clock())
        return upload if upload is not None and upload.ext == ext else None

    def sweep(self, now: float) -> int:
        """Delete uploads past their lifetime; how many went."""
        total = 0
        while batch := self.store.expired(now):
            for image_id, ext in batch:
                self.blobs.delete(blob_key(image_id, ext))
            self.store.mark_deleted([image_id for image_id, _ in batch])
            total += len(batch)
        return total
