"""The worker: claim compatible jobs -> one engine call -> encode and store -> done.

It runs in the API process (the embedded default) or on its own (`easel worker`, one per GPU);
either way it shares nothing with the API but the store. Its threads: the main loop (claims
and runs the engine), the finishing threads (check, watermark, encode, sign and store the
images of finished batches while the next batch denoises, several images at once), a
completer (completes each job once its images are stored, in the order the jobs ran) and a
heartbeat (renews the leases of every job this worker holds, so a live worker never loses a
job and a dead one always does). Tests drive it without threads through `run_until_empty`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from easel.catalog import Catalog
from easel.domain.errors import CancelledError, EaselError, ErrorKind
from easel.domain.generation import (
    AdapterSpec,
    Engine,
    EngineStatus,
    GeneratedImage,
    ImageSpec,
    Operation,
    Preview,
)
from easel.domain.job import Job
from easel.services.images.artifacts import expiry
from easel.services.images.finishing import ImageFinisher, Provenance
from easel.services.images.inputs import InputImages, input_keys, reference_keys
from easel.services.images.provenance import Ingredient
from easel.services.jobs.events import JobEvents
from easel.services.jobs.planning import BackendResolver, Plan, plan
from easel.services.loras import AdapterFiles
from easel.services.metrics import Metrics
from easel.settings import Settings
from easel.store import JobStore, ReadyImage
from easel.store.blobs import BlobStore, blob_key, partial_key, write_problem
from easel.worker.backlog import Backlog

log = logging.getLogger(__name__)

CANCELLED_MESSAGE = "cancelled by the caller"
MAX_FINISHING_THREADS = 8  # the default's cap: beyond it the store and the disk are the limit
# The engine runs at most this many batches ahead of finishing: one being finished and one
# waiting keeps the finishing threads busy while the next batch denoises; past it the worker
# claims nothing, so a slow finish leaves jobs in the queue (for other workers) instead of
# piling decoded images up in memory.
BACKLOG_BATCHES = 2
# Finish(planned jobs, their images in order, batch id, engine seconds)
Finish = Callable[[list["_Planned"], list[GeneratedImage], str, float], None]


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
        events: JobEvents,
        engine_factory: Callable[[], Engine],
        finisher: ImageFinisher,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        adapter_files: AdapterFiles | None = None,
        input_images: InputImages | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.resolver = resolver
        self.store = store
        self.blobs = blobs
        self.metrics = metrics
        self.events = events
        self.engine_factory = engine_factory  # called in the worker's thread: torch loads there
        self.finisher = finisher  # check, watermark, encode, sign (on the finishing threads)
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.engine: Engine | None = None
        self._ready = threading.Event()
        self._load_error: str | None = None
        self._stop = threading.Event()
        # The heartbeat outlives the main loop: it renews the leases of the jobs whose images
        # are still being finished while the worker stops.
        self._leases_end = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None
        self._held: set[str] = set()
        self._storage_trouble: str | None = None  # set by a storage failure: no claims then
        self._held_lock = threading.Lock()
        self.finishing_threads = settings.finishing_threads or min(MAX_FINISHING_THREADS,
                                                                   _usable_cpus())
        self._finishers = ThreadPoolExecutor(self.finishing_threads,
                                             thread_name_prefix="easel-finish")
        self._completer = ThreadPoolExecutor(1, thread_name_prefix="easel-complete")
        self._backlog = Backlog()
        self._loaded = threading.Event()  # the started worker's load ended, well or not
        self._threads: list[threading.Thread] = []
        self.clock = clock  # model affinity's age bound; tests move it
        self.wall_clock = wall_clock  # stored images' expiry, read by the API's clock
        # The LoRA adapters' local files (None: jobs naming adapters fail clearly).
        self.adapter_files = adapter_files
        # The input images of jobs that draw from one (None: such jobs fail clearly).
        self.input_images = input_images
        self._partials: dict[str, list[str]] = {}  # job id -> its partial images' blob keys
        self._loaded_at: float | None = None  # when this worker last loaded a model

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    @property
    def load_error(self) -> str | None:
        return self._load_error

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Whether loading ended (ready, or load_error says why not) within `timeout`."""
        return self._loaded.wait(timeout)

    def start(self) -> None:
        self.events.start()
        for target, name in ((self._main, "easel-worker"), (self._heartbeat, "easel-heartbeat")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._heartbeat_thread = self._threads[-1]

    def engine_status(self) -> EngineStatus | None:
        """The engine's device, pipelines and memory; None until it is built."""
        return None if self.engine is None else self.engine.status()

    def alive(self) -> bool:
        """A thread of this worker is still running (e.g. an engine call past the grace)."""
        return any(thread.is_alive() for thread in self._threads)

    def drain(self) -> None:
        """Claim nothing more; the batch in flight finishes (`stop` then hands back the rest)."""
        if not self._stop.is_set():
            with self._held_lock:
                held = sorted(self._held)
            if held:  # an operator watching a restart sees which jobs it waits for
                log.info("shutting down: finishing job(s) %s, or handing them back to the "
                         "queue when the grace period ends", ", ".join(held),
                         extra={"job_ids": held})
            else:
                log.info("shutting down: no job in flight")
        self._stop.set()
        self.events.wake_worker()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running batch, store its images, hand anything unfinished back."""
        self.drain()
        for thread in self._threads:
            if thread is not self._heartbeat_thread:
                thread.join(timeout)
        self._completer.shutdown(wait=True)
        self._finishers.shutdown(wait=True)
        self._leases_end.set()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(timeout)
        with self._held_lock:
            held = list(self._held)
        if held:
            self.store.release(held, self.owner)
            log.warning("job(s) %s did not finish within the grace period: handed back to the "
                        "queue, to run again after the restart or on another worker",
                        ", ".join(sorted(held)), extra={"job_ids": sorted(held)})
        self.events.close()

    # -- the loops ------------------------------------------------------------------------------

    def _main(self) -> None:
        self.load()
        self._loaded.set()
        if self.engine is None:
            # A worker that cannot draw claims nothing: each job it took would fail, though a
            # healthy worker on the same store could run it. /readyz and the log say why.
            log.error("this worker takes no jobs: its engine did not load (%s)",
                      self._load_error)
            return
        while not self._stop.is_set():
            if self._storage_trouble is not None and not self._storage_back():
                self._stop.wait(self.settings.storage_retry_seconds)
                continue
            if not self._finishing_keeps_up():
                continue
            jobs = self._claim()
            if not jobs:
                self.events.wait_for_work(self.settings.poll_interval)
                continue
            self._run(jobs, self._finish_later)

    def _finishing_keeps_up(self) -> bool:
        """Whether the worker may claim: fewer than BACKLOG_BATCHES batches are in finishing,
        now or within a poll interval (the time it waited is a metric: finishing, not the
        engine, bounds this worker then)."""
        if self._backlog.wait_below(BACKLOG_BATCHES, 0):
            return True
        started = time.perf_counter()
        room = self._backlog.wait_below(BACKLOG_BATCHES, self.settings.poll_interval)
        self.metrics.waited_for_finishing.inc(time.perf_counter() - started)
        return room

    def _wait_for_finishing_room(self) -> None:
        """Until finishing has room for one more batch (or the worker stops): the jobs of a
        failed batch, run again one by one, keep the bound a claim keeps."""
        while not self._finishing_keeps_up() and not self._stop.is_set():
            pass

    def run_until_empty(self) -> int:
        """Claim and run until nothing is claimable, encoding inline; the number of jobs run.
        For tests and tools: deterministic, no threads, no timing."""
        if self.engine is None:
            self.load()
        done = 0
        while self._storage_trouble is None and (jobs := self._claim()):
            self._run(jobs, self._finish)
            done += len(jobs)
        return done

    def _storage_back(self) -> bool:
        """Whether images can be stored again (after a full or read-only disk)."""
        if write_problem(self.blobs, self.owner) is not None:
            return False
        log.info("storage is writable again; taking jobs")
        self._storage_trouble = None
        return True

    def _claim(self) -> list[Job]:
        try:
            jobs = self.store.claim(
                self.owner, self.settings.batch_size, self.settings.lease_seconds,
                self.settings.max_attempts, prefer=self._preferred(),
            )
        except Exception:  # a store hiccup (locked database) is retried, never fatal
            log.exception("claiming jobs failed")
            return []
        given_up = self.store.take_given_up()  # failed by the claim: counted as the worker's
        if given_up:
            self.metrics.failed.labels(ErrorKind.WORKER_LOST.value).inc(given_up)
        self._hold([job.id for job in jobs])
        for job in jobs:
            self.events.job_changed(job.id)
        return jobs

    def _preferred(self) -> frozenset[str]:
        """The backends whose jobs may go ahead of the fair order (model affinity): the ones
        loaded, until `model_affinity_seconds` after the last load; then none, so a job for
        another model waits at most that long for its turn."""
        bound = self.settings.model_affinity_seconds
        if self.engine is None or bound <= 0 or self._loaded_at is None or \
                self.clock() - self._loaded_at > bound:
            return frozenset()
        return frozenset(self.engine.status().loaded)

    def _note_load(self, source: str) -> None:
        """Before an engine call: a backend not in memory is about to be loaded."""
        if self.engine is not None and source not in self.engine.status().loaded:
            self._loaded_at = self.clock()

    def load(self) -> None:
        """Build the engine and warm the preloaded models; /readyz turns 200 when this is done."""
        started = time.perf_counter()
        try:
            engine = self.engine_factory()
            warmed: list[str] = []
            for model_id in self.settings.preload_models:
                source = self._preload_source(model_id)
                if source is not None:
                    engine.warm(source)
                    warmed.append(source)
            self.engine = engine
            if warmed:
                self._loaded_at = self.clock()
            self._ready.set()
            seconds = time.perf_counter() - started
            log.info("ready: worker %s, %s loaded in %.1f s", self.owner,
                     ", ".join(warmed) or "no model", seconds,
                     extra={"worker": self.owner, "models": warmed,
                            "seconds": round(seconds, 2)})
        except EaselError as exc:  # a known cause (a device torch cannot use): its message
            self._load_error = exc.message
            log.error("loading models failed: %s", exc.message)
        except Exception as exc:  # the API stays up and says why it is not ready
            self._load_error = f"{type(exc).__name__}: {exc}"
            log.exception("loading models failed")

    def _preload_source(self, model_id: str) -> str | None:
        """The weights a preloaded model warms; None, said in the log, for one this server
        does not serve (commercial-only, or strict with its weights absent): its requests are
        refused anyway, and the engine still serves every other model."""
        try:
            return self.resolver.resolve(self.catalog.model(model_id).backend).source
        except EaselError as exc:
            log.warning("not preloading %s: %s", model_id, exc.message)
            return None

    def _run(self, jobs: list[Job], finish: Finish) -> None:
        if any(job.attempts > 1 for job in jobs):
            # An interrupted job may be poison (it may kill the process): it runs alone
            # (store.claim) and only once the images of earlier batches are stored, so its
            # crash cannot take finished work down with it.
            self._completer.submit(lambda: None).result()
        planned = [p for p in (self._plan(job) for job in jobs) if p is not None]
        if planned:
            self._run_planned(planned, finish)

    def _run_planned(self, planned: list[_Planned], finish: Finish) -> None:
        specs = [spec for p in planned for spec in p.plan.images]
        ids = [p.job.id for p in planned]
        first = planned[0].plan
        log.info("running %d job(s), %d image(s) on %s: %s", len(ids), len(specs),
                 first.backend.source, ", ".join(ids),
                 extra={"jobs": ids, "images": len(specs), "backend": first.backend.source})
        started = time.perf_counter()
        progress = _Progress(self, ids, chunks=-(-len(specs) // self.settings.batch_size))
        try:
            generated = self._generate(planned, specs, progress)
        except CancelledError:
            self._end_cancelled(ids)
            return
        except Exception as exc:
            if len(planned) > 1:
                # One job's input may have broken the whole call: each job runs again on its
                # own, so a bad job fails alone and its batch-mates complete.
                log.warning("a batch of %d jobs failed (%s); running them one by one",
                            len(planned), exc)
                for one in planned:
                    if one.job.id not in progress.dropped:  # cancelled: already ended
                        self._wait_for_finishing_room()
                        self._run_planned([one], finish)
                return
            if isinstance(exc, EaselError):
                self._fail_all(ids, exc.kind, exc.message)
            else:  # a crash inside diffusers: fail clearly, never loop on it
                log.exception("engine crashed")
                self._fail_all(ids, ErrorKind.INFERENCE, f"the engine failed: {exc}")
            return
        seconds = time.perf_counter() - started
        self.metrics.batch_seconds.observe(seconds)
        self.metrics.batch_images.observe(len(specs))
        kept, images = _without(progress.dropped, planned, generated)
        if kept:
            finish(kept, images, uuid.uuid4().hex, seconds)

    def _plan(self, job: Job) -> _Planned | None:
        try:
            seeds = [image.seed for image in job.images]  # fixed at submission
            the_plan = plan(job.request, self.catalog, self.resolver, seeds)
            shown = reference_keys(job.id, len(job.request.reference_digests))
            return _Planned(job, the_plan.with_inputs(input_keys(job.id), shown))
        except EaselError as exc:
            self._fail_all([job.id], exc.kind, exc.message)
            return None

    def _generate(
        self, planned: list[_Planned], specs: list[ImageSpec], progress: _Progress
    ) -> list[GeneratedImage]:
        if self.engine is None:
            raise EaselError(ErrorKind.UNAVAILABLE, f"the engine is not loaded: {self.load_error}")
        first = planned[0].plan
        self._note_load(first.backend.source)
        size = self.settings.batch_size
        adapters = self._adapters(first)
        inputs = self._inputs(planned)
        out: list[GeneratedImage] = []
        for start in range(0, len(specs), size):  # one job larger than a batch runs in chunks
            chunk = tuple(specs[start:start + size])
            progress.chunk = start // size
            out.extend(self.engine.generate(
                first.batch(chunk, adapters, inputs), progress=progress, cancel=progress.cancel,
                preview=self._previewer(planned, start, len(chunk), progress)))
        return out

    def _adapters(self, first: Plan) -> tuple[AdapterSpec, ...]:
        """The batch's LoRA adapters as local files (the batch key gives every job of the
        batch the same set)."""
        if not first.request.loras:
            return ()
        if self.adapter_files is None:
            raise EaselError(ErrorKind.UNSUPPORTED, "this worker runs no adapters", "loras")
        return self.adapter_files.ready(first.request.loras)

    def _inputs(self, planned: list[_Planned]) -> dict[str, Any]:
        """The decoded input images and masks of the batch's jobs, by key (none for jobs that
        draw from text: the batch key keeps the two apart)."""
        inputs: dict[str, Any] = {}
        for p in planned:
            if p.job.request.operation is Operation.TEXT:
                continue
            if self.input_images is None:
                raise EaselError(ErrorKind.UNSUPPORTED, "this worker takes no input images",
                                 "image")
            found = self.input_images.load(p.job.id, len(p.job.request.reference_digests))
            if input_keys(p.job.id)[0] not in found:
                raise EaselError(ErrorKind.INTERNAL, f"the input image of job {p.job.id} is "
                                 "gone from the image store", "image")
            inputs.update(found)
        return inputs

    def _ended(self, job_id: str) -> None:
        """A job's terminal transition: its input images, kept only for its run, go."""
        if self.input_images is not None:
            self.input_images.discard(job_id)

    def _previewer(
        self, planned: list[_Planned], start: int, count: int, progress: _Progress
    ) -> Preview | None:
        """The engine's preview callback for the chunk of specs [start, start + count): each
        wanting job's partial images go to the blob store, then its row says how many rounds
        are there (a round counts once the job's last image has it) and its watchers wake."""
        if not any(p.job.request.partial_images for p in planned):
            return None

        def preview(round_: int, images: list[GeneratedImage]) -> None:
            for p, first, end in _spans(planned):
                if not p.job.request.partial_images or p.job.id in progress.dropped:
                    continue
                try:
                    for index in range(max(first, start), min(end, start + count)):
                        self._store_partial(p, index - first, round_, images[index - start])
                    if start < end <= start + count:  # its last image is in this chunk
                        self.store.partials_stored(p.job.id, self.owner, round_ + 1)
                        self.events.job_changed(p.job.id)
                except Exception:  # a preview is a courtesy: the job goes on without it
                    log.warning("storing a partial image of %s failed", p.job.id,
                                exc_info=True)

        return preview

    def _store_partial(self, p: _Planned, index: int, round_: int,
                       image: GeneratedImage) -> None:
        request = p.job.request
        data = self.finisher.preview(image.pixels, request)
        if data is None:  # the content check would withhold it: no preview of it either
            return
        key = partial_key(p.job.images[index].image_id, round_, request.output_format.extension)
        self.blobs.put(key, data, request.output_format.mime)
        self._partials.setdefault(p.job.id, []).append(key)

    def _end_cancelled(self, ids: list[str]) -> None:
        """The batch stopped because every job in it was cancelled: they end cancelled (one
        asked for just now, after the engine stopped, goes back to the queue unharmed)."""
        cancelled = self.store.cancel_requested(ids)
        self.drop_cancelled(cancelled)
        others = [job_id for job_id in ids if job_id not in cancelled]
        if others:
            self.store.release(others, self.owner)
        for job_id in others:
            self._release(job_id)

    def drop_cancelled(self, job_ids: set[str]) -> None:
        """Cancelled jobs of a running batch end cancelled now. Their batch-mates run on: a
        cancel never costs another caller's job its progress (the engine call goes on and the
        cancelled jobs' images are discarded)."""
        for job_id in sorted(job_ids):
            if self.store.finish_cancelled(job_id, self.owner, CANCELLED_MESSAGE):
                self.metrics.failed.labels(ErrorKind.CANCELLED.value).inc()
                log.info("job %s cancelled", job_id, extra={"job_id": job_id})
                self._ended(job_id)
            self._release(job_id)

    def _fail_all(self, job_ids: list[str], kind: ErrorKind, message: str) -> None:
        for job_id in job_ids:
            if self.store.fail(job_id, self.owner, kind, message):
                self._ended(job_id)
                self.metrics.failed.labels(kind.value).inc()
                log.info("job %s failed: %s: %s", job_id, kind.value, message,
                         extra={"job_id": job_id, "error_kind": kind.value})
            self._release(job_id)

    # -- encoding and storing -----------------------------------------------------------------

    def _finish_later(
        self, planned: list[_Planned], generated: list[GeneratedImage], batch_id: str,
        engine_seconds: float,
    ) -> None:
        """Every image of the batch goes to the finishing threads at once; the completer
        completes its jobs in order as their images are stored."""
        self._backlog.add()
        jobs: list[tuple[_Planned, list[Future[ReadyImage]]]] = []
        try:
            for p, first, end in _spans(planned):
                jobs.append((p, [self._finishers.submit(self._store_image, p, i, image)
                                 for i, image in enumerate(generated[first:end])]))
            self._completer.submit(self._complete_in_order, jobs, batch_id, engine_seconds)
        except BaseException:  # stopped past the grace period: no image of it is written
            for _p, images in jobs:
                for image in images:
                    image.cancel()
            self._backlog.done()
            raise

    def _complete_in_order(
        self, jobs: list[tuple[_Planned, list[Future[ReadyImage]]]], batch_id: str,
        engine_seconds: float,
    ) -> None:
        try:
            for p, images in jobs:
                try:
                    self._complete(p, functools.partial(_results, images), batch_id,
                                   engine_seconds)
                except Exception:  # the store failed even to fail it: its lease runs out,
                    # and the batch's other jobs still complete
                    log.exception("completing %s failed", p.job.id)
                    with contextlib.suppress(Exception):
                        self._release(p.job.id)
        finally:
            self._backlog.done()

    def _finish(
        self, planned: list[_Planned], generated: list[GeneratedImage], batch_id: str,
        engine_seconds: float,
    ) -> None:
        """Inline, in the calling thread (run_until_empty): one image after the other."""
        for p, first, end in _spans(planned):
            self._complete(p, functools.partial(self._store_images, p, generated[first:end]),
                           batch_id, engine_seconds)

    def _store_images(self, p: _Planned, images: list[GeneratedImage]) -> list[ReadyImage]:
        return [self._store_image(p, i, image) for i, image in enumerate(images)]

    def _complete(
        self, p: _Planned, stored: Callable[[], list[ReadyImage]], batch_id: str,
        engine_seconds: float,
    ) -> None:
        """The job completes with its `stored` images, or goes back to the queue (storage
        trouble), or fails (anything else)."""
        completed = False
        try:
            ready = stored()
            if self.store.complete(p.job.id, self.owner, ready, batch_id, engine_seconds):
                completed = True
                self._ended(p.job.id)
                self.metrics.images.inc(sum(1 for r in ready if r.withheld is None))
                _log_completed(p.job, ready, engine_seconds)
        except (OSError, SQLAlchemyError) as exc:
            # A full or read-only disk is not the job's fault: it goes back to the queue
            # (no attempt spent) and the worker waits for space before claiming again.
            log.warning("storing the images of %s failed (%s); the job goes back to the "
                        "queue", p.job.id, exc)
            self._storage_trouble = str(exc)
            with contextlib.suppress(Exception):  # if the store cannot even do that, the
                self.store.release([p.job.id], self.owner)  # lease expires instead
        except Exception as exc:
            log.exception("storing images of %s failed", p.job.id)
            self._fail_all([p.job.id], ErrorKind.INTERNAL, f"could not store images: {exc}")
        finally:
            self._release(p.job.id, keep_partials=completed)

    def _store_image(self, p: _Planned, index: int, image: GeneratedImage) -> ReadyImage:
        started = time.perf_counter()
        try:
            return self._finished_and_stored(p, index, image)
        finally:
            self.metrics.finishing_seconds.observe(time.perf_counter() - started)

    def _finished_and_stored(self, p: _Planned, index: int, image: GeneratedImage
                             ) -> ReadyImage:
        job, request = p.job, p.job.request
        record = job.images[index]
        metadata = p.plan.image_metadata(image.seed, task=job.id, image=record.image_id)
        provenance = Provenance(p.plan.model.tier.name, p.plan.backend.source,
                                self._ingredients(job))
        done = self.finisher.finish(image.pixels, image.seed, request, metadata, provenance)
        verdict = done.verdict
        scores = verdict.scores.to_json() if verdict.scores else None
        mime = request.output_format.mime
        if done.data is None:  # withheld: nothing is stored
            return ReadyImage(record.image_id, mime, 0, None, verdict.nsfw, verdict.withheld,
                              scores)
        # Deterministic key: a re-run after a crash overwrites the same file.
        self.blobs.put(blob_key(record.image_id, request.output_format.extension), done.data,
                       mime)
        expires = expiry(job.delivery, self.settings.image_ttl_for(job.dialect),
                         self.wall_clock())
        return ReadyImage(record.image_id, mime, len(done.data), expires, verdict.nsfw, None,
                          scores)

    def _ingredients(self, job: Job) -> tuple[Ingredient, ...]:
        """An edit's input images as its content credentials record them: the files the model
        was given, with the sha256 of what the client sent (read only when credentials are
        signed)."""
        request = job.request
        if request.operation is Operation.TEXT or not self.finisher.wants_ingredients:
            return ()
        image_key, mask_key = input_keys(job.id)
        listed = [("image", "parentOf", image_key, request.input_digest)]
        if request.mask_digest is not None:
            listed.append(("mask", "inputTo", mask_key, request.mask_digest))
        shown = reference_keys(job.id, len(request.reference_digests))
        listed += [(f"reference {i + 1}", "componentOf", key, digest) for i, (key, digest)
                   in enumerate(zip(shown, request.reference_digests, strict=True))]
        found = []
        for title, relationship, key, digest in listed:
            data = self.blobs.get(key)
            if data is not None and digest is not None:
                found.append(Ingredient(title, relationship, digest, data))
        return tuple(found)

    # -- leases -------------------------------------------------------------------------------

    def _hold(self, job_ids: list[str]) -> None:
        with self._held_lock:
            self._held.update(job_ids)

    def _release(self, job_id: str, keep_partials: bool = False) -> None:
        """The worker lets go of the job. A completed job's partial images stay until its
        images expire (a stream that reads slowly still gets every one; the sweeper removes
        them with the images); any other end removes them now."""
        with self._held_lock:
            self._held.discard(job_id)
        for key in self._partials.pop(job_id, ()):
            if not keep_partials:
                with contextlib.suppress(Exception):
                    self.blobs.delete(key)
        self.events.job_changed(job_id, settled=True)

    def _heartbeat(self) -> None:
        interval = max(self.settings.lease_seconds / 3, 0.2)
        while not self._leases_end.wait(interval):
            self.heartbeat()

    def heartbeat(self) -> None:
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
            self.events.job_changed(job_id)


class _Progress:
    """Engine progress callback: step latency metric, throttled progress writes, and the
    cancel check (every step, so a cancelled job stops within one step)."""

    def __init__(self, worker: Worker, job_ids: list[str], chunks: int = 1) -> None:
        self.worker = worker
        self.job_ids = job_ids
        # A job larger than a batch runs in chunks, one engine call each: its progress counts
        # the steps of all of them, so it only ever moves forward.
        self.chunks = chunks
        self.chunk = 0
        self.cancel = threading.Event()  # set when every job of the call was cancelled
        self.dropped: set[str] = set()  # cancelled while batch-mates run on: images discarded
        self.last_step = time.perf_counter()
        self.last_write = 0.0

    def __call__(self, step: int, total: int) -> None:
        now = time.perf_counter()
        self.worker.metrics.step_seconds.observe(now - self.last_step)
        self.last_step = now
        done, of = self.chunk * total + step, self.chunks * total
        if now - self.last_write >= 0.5 or step == total:
            self.last_write = now
            self.worker.report_progress(self.live, done, of)
        try:
            requested = self.worker.store.cancel_requested(self.live)
        except Exception:  # the store is busy: look again at the next step
            log.debug("cancel check failed", exc_info=True)
            return
        if not requested:
            return
        if requested.issuperset(self.live):  # nobody left to draw for: stop the engine
            self.cancel.set()
            self.worker.report_progress(self.live, done, of)  # where it stopped
            return
        self.dropped |= requested
        self.worker.drop_cancelled(requested)

    @property
    def live(self) -> list[str]:
        """The jobs of the call still wanted."""
        return [job_id for job_id in self.job_ids if job_id not in self.dropped]


def _without(
    dropped: set[str], planned: list[_Planned], generated: list[GeneratedImage]
) -> tuple[list[_Planned], list[GeneratedImage]]:
    """The planned jobs and their images, less the cancelled jobs' (in order, as finish
    expects them)."""
    kept: list[_Planned] = []
    images: list[GeneratedImage] = []
    for p, first, end in _spans(planned):
        if p.job.id not in dropped:
            kept.append(p)
            images.extend(generated[first:end])
    return kept, images


def _spans(planned: list[_Planned]) -> Iterator[tuple[_Planned, int, int]]:
    """Each planned job with where its images lie in the call's specs: [first, end)."""
    end = 0
    for p in planned:
        first, end = end, end + len(p.job.images)
        yield p, first, end


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, as a container's cpuset limits it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _results(images: list[Future[ReadyImage]]) -> list[ReadyImage]:
    """The stored images, once every one of them is done (the first failure raised, and no
    image still being written when the job is released or failed)."""
    wait(images)
    return [image.result() for image in images]


def _log_completed(job: Job, ready: list[ReadyImage], engine_seconds: float) -> None:
    """A job's one completion line: what an operator greps for."""
    withheld = sum(1 for r in ready if r.withheld is not None)
    seconds = (datetime.now(UTC) - job.created_at).total_seconds()  # queue wait included
    log.info("job %s completed: %s %s, %d image(s)%s, %.2f s (engine %.2f s)", job.id,
             job.dialect, job.request.model, len(ready),
             f", {withheld} withheld" if withheld else "", seconds, engine_seconds,
             extra={"job_id": job.id, "dialect": job.dialect, "model": job.request.model,
                    "images": len(ready), "withheld": withheld, "seconds": round(seconds, 3),
                    "engine_seconds": round(engine_seconds, 3)})
