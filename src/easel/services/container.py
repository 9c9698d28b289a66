"""The services one server process runs, built from Settings and started/stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from easel.api.limits import Admission
from easel.catalog import Catalog
from easel.services.artifacts import Artifacts, LocalBlobStore
from easel.services.delivery import DeliveryService
from easel.services.generation import BackendResolver
from easel.services.jobs import JobService
from easel.services.keys import KeyRing
from easel.services.metrics import Metrics
from easel.settings import Settings
from easel.store import DeliveryStore, JobStore, KeyStore
from easel.worker import Worker

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    catalog: Catalog
    resolver: BackendResolver
    store: JobStore
    artifacts: Artifacts
    jobs: JobService
    metrics: Metrics
    worker: Worker | None
    keys: KeyRing
    delivery: DeliveryService
    extras: dict[str, Any] = field(default_factory=dict)  # per-dialect runtime registries
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.worker is None or self.worker.ready.is_set()

    @property
    def not_ready_reason(self) -> str:
        if self.worker is None or self.worker.ready.is_set():
            return ""
        return self.worker.load_error or "loading models"

    async def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.store.create)
        self.jobs.bind_loop(asyncio.get_running_loop())
        if self.worker is not None:
            self.worker.start()
        sweeper = self.artifacts.run_sweeper(self.settings.sweep_interval)
        self._tasks.append(asyncio.create_task(sweeper))
        self._tasks.append(asyncio.create_task(self.delivery.run()))

    def begin_shutdown(self) -> None:
        """SIGTERM: take no new jobs now; the batch in flight finishes during the grace period."""
        if self.worker is not None:
            self.worker.drain()

    async def stop(self) -> None:
        await self.delivery.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.worker is not None:
            await asyncio.to_thread(self.worker.stop, self.settings.shutdown_grace_seconds)
        self.store.close()


def build_services(settings: Settings) -> Services:
    overlays = [settings.catalog_file] if settings.catalog_file else []
    catalog = Catalog.load(*overlays)
    resolver = BackendResolver(settings.strict, settings.fallback_max_steps, catalog.mini)
    store = JobStore(settings.database_url)
    blobs = LocalBlobStore(settings.images_dir)
    metrics = Metrics(store)
    jobs = JobService(settings, catalog, resolver, store, blobs)
    jobs.on_submit = lambda dialect: metrics.submitted.labels(dialect).inc()
    admission = Admission(settings)
    jobs.check_rate = admission.check_rate
    jobs.check_queue = admission.check_queue if admission.queue_capped else None
    outbox = DeliveryStore(store.engine)
    metrics.watch_deliveries(outbox.counts)
    delivery = DeliveryService(settings, outbox, jobs)
    jobs.deliveries = delivery
    worker = None
    if settings.run_worker:
        worker = Worker(settings, catalog, resolver, store, blobs, metrics, jobs.notify)
        jobs.wake_worker = worker.wake
    keys = KeyRing(settings.api_keys, KeyStore(store.engine))
    return Services(settings, catalog, resolver, store, Artifacts(blobs, store), jobs, metrics,
                    worker, keys, delivery)
