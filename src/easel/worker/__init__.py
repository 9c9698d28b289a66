"""The in-process worker: claim compatible jobs -> one engine call -> encode and store -> done.

Three threads: the main loop (claims and runs the engine), an encoder (encodes and stores the
images of a finished batch while the next batch denoises) and a heartbeat (renews the leases of
every job this worker holds, so a live worker never loses a job and a dead one always does).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from easel.catalog import Catalog
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.generation import GeneratedImage, ImageSpec
from easel.domain.job import Job
from easel.services.artifacts import BlobStore, blob_key, expiry
from easel.services.generation import BackendResolver, Plan, plan
from easel.services.images import encode
from easel.services.metrics import Metrics
from easel.settings import Settings
from easel.store import JobStore, ReadyImage

if TYPE_CHECKING:
    from easel.engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Planned:
    job: Job
    plan: Plan


class Worker:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        resolver: BackendResolver,
        store: JobStore,
        blobs: BlobStore,
        metrics: Metrics,
        on_change: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.resolver = resolver
        self.store = store
        self.blobs = blobs
        self.metrics = metrics
        self.on_change = on_change
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.engine: Engine | None = None
        self.ready = threading.Event()
        self.load_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._held: set[str] = set()
        self._held_lock = threading.Lock()
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix="easel-encode")
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._main, "easel-worker"), (self._heartbeat, "easel-heartbeat")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        self._wake.set()

    def alive(self) -> bool:
        """A thread of this worker is still running (e.g. an engine call past the grace)."""
        return any(thread.is_alive() for thread in self._threads)

    def drain(self) -> None:
        """Claim nothing more; the batch in flight finishes (`stop` then hands back the rest)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running batch, store its images, hand anything unfinished back."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._encoder.shutdown(wait=True)
        with self._held_lock:
            held = list(self._held)
        if held:
            self.store.release(held, self.owner)

    # -- the main loop --------------------------------------------------------------------------

    def _main(self) -> None:
        self._load()
        while not self._stop.is_set():
            self._wake.clear()
            try:
                jobs = self.store.claim(
                    self.owner, self.settings.batch_size, self.settings.lease_seconds,
                    self.settings.max_attempts,
                )
            except Exception:  # a store hiccup (locked database) is retried, never fatal
                log.exception("claiming jobs failed")
                jobs = []
            if not jobs:
                self._wake.wait(self.settings.poll_interval)
                continue
            self._hold([job.id for job in jobs])
            for job in jobs:
                self.on_change(job.id)
            self._run(jobs)

    def _load(self) -> None:
        """Import torch and warm the preloaded models; /readyz turns 200 when this is done."""
        try:
            from easel.engine import Engine

            s = self.settings
            self.engine = Engine.from_settings(s)
            for model_id in s.preload_models:
                backend = self.resolver.resolve(self.catalog.model(model_id).backend)
                self.engine.pipeline(backend.source)
            self.ready.set()
            log.info("worker %s ready", self.owner)
        except Exception as exc:  # the API stays up and says why it is not ready
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("loading models failed")

    def _run(self, jobs: list[Job]) -> None:
        _test_crash_hook(jobs, self._encoder)
        planned = [p for p in (self._plan(job) for job in jobs) if p is not None]
        if not planned:
            return
        specs = [spec for p in planned for spec in p.plan.images]
        ids = [p.job.id for p in planned]
        started = time.perf_counter()
        try:
            generated = self._generate(planned[0].plan, specs, ids)
        except EaselError as exc:
            self._fail_all(planned, exc.kind.value, exc.message)
            return
        except Exception as exc:  # a crash inside diffusers: fail clearly, never loop on it
            log.exception("engine crashed")
            self._fail_all(planned, ErrorKind.INFERENCE.value, f"the engine failed: {exc}")
            return
        seconds = time.perf_counter() - started
        self.metrics.batch_seconds.observe(seconds)
        self.metrics.batch_images.observe(len(specs))
        batch_id = uuid.uuid4().hex
        self._encoder.submit(self._finish, planned, generated, batch_id, seconds)

    def _plan(self, job: Job) -> _Planned | None:
        try:
            seeds = [image.seed for image in job.images]  # fixed at submission
            return _Planned(job, plan(job.request, self.catalog, self.resolver, seeds))
        except EaselError as exc:
            self._fail_all([], exc.kind.value, exc.message, job_ids=[job.id])
            return None

    def _generate(self, first: Plan, specs: list[ImageSpec], ids: list[str]) -> list[Any]:
        if self.engine is None:
            raise EaselError(ErrorKind.UNAVAILABLE, f"the engine is not loaded: {self.load_error}")
        size = self.settings.batch_size
        out: list[GeneratedImage] = []
        progress = _Progress(self, ids)
        for start in range(0, len(specs), size):  # one job larger than a batch runs in chunks
            chunk = tuple(specs[start:start + size])
            out.extend(self.engine.generate(first.batch(chunk), progress=progress))
        return out

    def _fail_all(
        self, planned: list[_Planned], code: str, message: str, job_ids: list[str] | None = None
    ) -> None:
        for job_id in job_ids or [p.job.id for p in planned]:
            if self.store.fail(job_id, self.owner, code, message):
                self.metrics.failed.labels(code).inc()
            self._release(job_id)

    # -- the encoder thread ---------------------------------------------------------------------

    def _finish(
        self, planned: list[_Planned], generated: list[GeneratedImage], batch_id: str,
        engine_seconds: float,
    ) -> None:
        offset = 0
        for p in planned:
            count = len(p.job.images)
            mine = generated[offset:offset + count]
            offset += count
            try:
                ready = [self._store_image(p, i, g) for i, g in enumerate(mine)]
                if self.store.complete(p.job.id, self.owner, ready, batch_id, engine_seconds):
                    self.metrics.images.inc(len(ready))
            except Exception as exc:
                log.exception("storing images of %s failed", p.job.id)
                self._fail_all([p], ErrorKind.INFERENCE.value, f"could not store images: {exc}")
            finally:
                self._release(p.job.id)

    def _store_image(self, p: _Planned, index: int, image: GeneratedImage) -> ReadyImage:
        job, request = p.job, p.job.request
        record = job.images[index]
        metadata = {
            "model": request.model, "backend": p.plan.backend.source,
            "stand_in": p.plan.backend.is_fallback, "seed": image.seed, "prompt": request.prompt,
            "steps": p.plan.backend.steps, "width": image.width, "height": image.height,
            "task": job.id, "image": record.image_id,
        }
        if p.plan.backend.fallback_reason:
            metadata["stand_in_reason"] = p.plan.backend.fallback_reason
        data = encode(image.pixels, request.output_format, request.output_quality, metadata)
        # Deterministic key: a re-run after a crash overwrites the same file.
        self.blobs.put(blob_key(record.image_id, request.output_format.extension), data)
        expires = expiry(job.options, self.settings.image_ttl_seconds)
        return ReadyImage(record.image_id, request.output_format.mime, len(data), expires)

    # -- leases -------------------------------------------------------------------------------

    def _hold(self, job_ids: list[str]) -> None:
        with self._held_lock:
            self._held.update(job_ids)

    def _release(self, job_id: str) -> None:
        with self._held_lock:
            self._held.discard(job_id)
        self.on_change(job_id)

    def _heartbeat(self) -> None:
        interval = max(self.settings.lease_seconds / 3, 0.2)
        while not self._stop.wait(interval):
            with self._held_lock:
                held = list(self._held)
            try:
                self.store.heartbeat(self.owner, held, self.settings.lease_seconds)
            except Exception:
                log.exception("lease heartbeat failed")

    def report_progress(self, job_ids: list[str], step: int, total: int) -> None:
        try:
            self.store.progress(self.owner, job_ids, step, total)
        except Exception:  # progress is advisory; the job goes on without it
            log.debug("progress update failed", exc_info=True)
        for job_id in job_ids:
            self.on_change(job_id)


class _Progress:
    """Engine progress callback: step latency metric, and throttled progress writes."""

    def __init__(self, worker: Worker, job_ids: list[str]) -> None:
        self.worker = worker
        self.job_ids = job_ids
        self.last_step = time.perf_counter()
        self.last_write = 0.0

    def __call__(self, step: int, total: int) -> None:
        now = time.perf_counter()
        self.worker.metrics.step_seconds.observe(now - self.last_step)
        self.last_step = now
        if now - self.last_write >= 0.5 or step == total:
            self.last_write = now
            self.worker.report_progress(self.job_ids, step, total)


def _test_crash_hook(jobs: list[Job], encoder: ThreadPoolExecutor) -> None:
    """TEST ONLY (off unless EASEL_TEST_CRASH_ON_PROMPT is set): die like a segfaulting engine
    when a claimed job's prompt contains the marker, so the poison-job path can be tested. The
    previous batch's encoding is let finish first, so only the poison's own batch is hit and
    the test is deterministic."""
    marker = os.environ.get("EASEL_TEST_CRASH_ON_PROMPT")
    if marker and any(marker in job.request.prompt for job in jobs):
        encoder.submit(lambda: None).result()
        log.error("EASEL_TEST_CRASH_ON_PROMPT matched: exiting (test hook)")
        os._exit(86)
