"""The job service: what every dialect calls to submit, read and wait for generation jobs.

Dialects never touch the store or the engine; they translate their wire format into a
GenerationRequest, call `submit`, and render the Job they get back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from easel.catalog import Catalog
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.job import Job, JobImage, JobStatus
from easel.domain.request import GenerationRequest
from easel.services.artifacts import MIME_BY_EXT, BlobStore, blob_key
from easel.services.generation import BackendResolver, Plan, plan
from easel.services.outbound import check_at_submission
from easel.settings import Settings
from easel.store import JobStore, NewJob
from easel.store.jobs import request_to_json
from easel.store.outbox import Delivery

if TYPE_CHECKING:
    from easel.services.delivery import DeliveryService

EXT_BY_MIME = {mime: ext for ext, mime in MIME_BY_EXT.items()}


def params_hash(dialect: str, request: GenerationRequest, options: dict[str, Any]) -> str:
    """What "the same parameters" means for an idempotency key: the request and its options."""
    body = json.dumps(
        {"dialect": dialect, "request": request_to_json(request), "options": options},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def batch_key(the_plan: Plan) -> str:
    """Jobs with equal keys can share one engine call (same weights, size, steps, guidance)."""
    b = the_plan.backend
    r = the_plan.request
    parts = (b.source, b.family, f"{r.width}x{r.height}", b.steps, b.guidance,
             b.max_sequence_length)
    return "|".join(str(part) for part in parts)


class JobService:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        resolver: BackendResolver,
        store: JobStore,
        blobs: BlobStore,
        wake_worker: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.resolver = resolver
        self.store = store
        self.blobs = blobs
        self.wake_worker = wake_worker or (lambda: None)
        self.on_submit: Callable[[str], None] = lambda _dialect: None  # metrics hook
        # Limits (api/limits.py Admission): per-caller rate, then queue depth. No-ops by default.
        self.check_rate: Callable[[], None] = lambda: None
        self.check_queue: Callable[[int], None] | None = None
        self.deliveries: DeliveryService | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._lock = threading.Lock()

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # -- the dialects' API --------------------------------------------------------------------

    async def submit(
        self,
        request: GenerationRequest,
        *,
        dialect: str,
        job_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Job, bool]:
        """Validate and store a queued job. Same id + same parameters: (existing, False)."""
        options = dict(options or {})
        self.check_rate()
        the_plan = plan(request, self.catalog, self.resolver)
        job_id = job_id or str(uuid.uuid4())
        digest = params_hash(dialect, request, options)
        existing = await self._existing(job_id, digest)
        if existing is not None:
            return existing, False
        if self.check_queue is not None:  # a resubmission of a queued job is never refused
            self.check_queue(await asyncio.to_thread(self.store.queued_count))
        new = NewJob(
            id=job_id, dialect=dialect, request=request, params_hash=digest, options=options,
            batch_key=batch_key(the_plan), backend=the_plan.backend.source,
            stand_in_reason=the_plan.backend.fallback_reason, cost=the_plan.cost_usd,
            image_ids=[str(uuid.uuid4()) for _ in the_plan.images], seeds=the_plan.seeds,
        )
        if not await asyncio.to_thread(self.store.insert, new):
            # Another request with the same id won the race between our read and our insert.
            raced = await self._existing(job_id, digest)
            if raced is not None:
                return raced, False
        self.on_submit(dialect)
        self.wake_worker()
        return _new_job(new, the_plan), True

    async def _existing(self, job_id: str, digest: str) -> Job | None:
        found = await asyncio.to_thread(self.store.get_with_hash, job_id)
        if found is None:
            return None
        job, stored_digest = found
        if stored_digest != digest:
            raise EaselError(
                ErrorKind.CONFLICT,
                f"task {job_id} already exists with different parameters; use a new taskUUID",
                "taskUUID",
            )
        return job

    async def check_outbound(self, url: str | None, parameter: str) -> None:
        """A webhook/upload URL, refused now when it is known to be refused (SSRF policy)."""
        if url is not None:
            await check_at_submission(url, parameter, self.settings.allow_loopback_urls)

    async def delivery_failures(self, job_id: str) -> list[Delivery]:
        """Webhooks and uploads of this job that finally failed (polling stays the truth)."""
        if self.deliveries is None:
            return []
        return [d for d in await self.deliveries.for_job(job_id) if d.status == "failed"]

    async def get(self, job_id: str) -> Job | None:
        return await asyncio.to_thread(self.store.get, job_id)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """The job once terminal, or its current state when `timeout` seconds have passed."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            event = asyncio.Event()
            self._waiters.setdefault(job_id, set()).add(event)  # before reading: no lost wake-up
            try:
                job = await self.get(job_id)
                if job is None:
                    raise EaselError(ErrorKind.NOT_FOUND, f"no task {job_id}", "taskUUID")
                if job.status.terminal:
                    return job
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return job
                # Polling covers workers in other processes, whose changes we are not told about.
                pause = self.settings.poll_interval * 4
                if remaining is not None:
                    pause = min(pause, remaining)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), pause)
            finally:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        self._waiters.pop(job_id, None)

    def notify(self, job_id: str) -> None:
        """Thread-safe: the worker calls this when a job changed state."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, job_id)

    def _wake(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    # -- images ---------------------------------------------------------------------------------

    def image_url(self, job: Job, image: JobImage) -> str:
        ext = job.request.output_format.extension
        return f"{self.settings.base_url}/images/{image.image_id}.{ext}"

    async def image_bytes(self, image: JobImage) -> bytes:
        ext = EXT_BY_MIME.get(image.mime or "")
        if ext is None:
            stored = await asyncio.to_thread(self.store.image, image.image_id)
            if stored is None:
                raise EaselError(ErrorKind.NOT_FOUND, f"no image {image.image_id}", "imageUUID")
            ext = stored.ext
        data = await asyncio.to_thread(self.blobs.get, blob_key(image.image_id, ext))
        if data is None:
            raise EaselError(
                ErrorKind.NOT_FOUND, f"image {image.image_id} is not stored (expired?)", "imageUUID"
            )
        return data

    async def image_base64(self, image: JobImage) -> str:
        return base64.b64encode(await self.image_bytes(image)).decode("ascii")

    async def image_data_uri(self, image: JobImage) -> str:
        mime = image.mime or "image/jpeg"
        return f"data:{mime};base64,{await self.image_base64(image)}"


def _new_job(new: NewJob, the_plan: Plan) -> Job:
    return Job(
        id=new.id, dialect=new.dialect, request=new.request, status=JobStatus.QUEUED,
        images=tuple(
            JobImage(image_id=image_id, index=i, seed=seed)
            for i, (image_id, seed) in enumerate(zip(new.image_ids, new.seeds, strict=True))
        ),
        created_at=datetime.now(UTC), backend=new.backend, stand_in_reason=new.stand_in_reason,
        cost_usd=new.cost, options=new.options, progress_total=the_plan.backend.steps,
    )
