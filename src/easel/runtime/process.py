"""The services one process runs, started and stopped together. Built by easel.runtime.build
(the composition root), the only module that knows every layer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from fastapi import FastAPI

from easel import __version__
from easel.catalog import Catalog
from easel.domain.generation import EngineStatus
from easel.services.access.keys import KeyRing
from easel.services.core import Core
from easel.services.delivery.service import DeliveryService
from easel.services.images.artifacts import Artifacts
from easel.services.jobs.health import StorageHealth
from easel.services.jobs.service import JobService
from easel.services.metrics import Metrics
from easel.settings import Settings
from easel.store import JobStore
from easel.store.jobs import STARTUP_WAIT_SECONDS

log = logging.getLogger(__name__)


class WorkerHandle(Protocol):
    """The in-process worker as the API process sees it (easel.worker.Worker)."""

    @property
    def is_ready(self) -> bool: ...

    @property
    def load_error(self) -> str | None: ...

    def start(self) -> None: ...

    def drain(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> None: ...

    def alive(self) -> bool: ...

    def engine_status(self) -> EngineStatus | None: ...


@dataclass
class Runtime:
    settings: Settings
    catalog: Catalog
    store: JobStore
    artifacts: Artifacts
    jobs: JobService
    metrics: Metrics
    keys: KeyRing
    delivery: DeliveryService
    worker: WorkerHandle | None  # None: API only, the jobs go to `easel worker` processes
    health: StorageHealth
    core: Core  # what the app sees: the port (services/port.py) over these services
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        """The app's lifespan: these services start before it serves and stop after."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.store.create, STARTUP_WAIT_SECONDS)
        self.jobs.events.start()
        if self.worker is not None:
            self.worker.start()
        sweeper = self.artifacts.run_sweeper(self.settings.sweep_interval)
        self._tasks.append(asyncio.create_task(sweeper))
        self._tasks.append(asyncio.create_task(self.delivery.run()))
        log.info("easel %s serving at %s (playground /, API reference /docs); %s", __version__,
                 self.settings.base_url, self._worker_state(),
                 extra={"url": self.settings.base_url, "version": __version__})

    def _worker_state(self) -> str:
        if self.worker is None:
            return "API only: `easel worker` processes run the jobs"
        if self.settings.preload_models:
            return "the worker loads " + ", ".join(self.settings.preload_models)
        return "the worker loads each model at its first job (none preloaded)"

    def begin_shutdown(self) -> None:
        """SIGTERM: take no new jobs now; the batch in flight finishes during the grace period,
        and requests held for unfinished jobs are answered 503 before it ends."""
        self.jobs.drain(self.settings.shutdown_grace_seconds)
        if self.worker is not None:
            self.worker.drain()

    async def stop(self) -> None:
        await self.delivery.stop()
        if self.jobs.prompts.enhancer is not None:  # its connections to the chat endpoint
            await self.jobs.prompts.enhancer.aclose()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.worker is not None:
            await asyncio.to_thread(self.worker.stop, self.settings.shutdown_grace_seconds)
        await asyncio.to_thread(self.jobs.events.close)
        self.store.close()


def not_ready_reason(worker: WorkerHandle | None, health: StorageHealth) -> str:
    """Why this process cannot take jobs now ("" when it can): its worker is still loading the
    models, or storage cannot be written. Probes storage: call it off the event loop."""
    if worker is not None and not worker.is_ready:
        return worker.load_error or "loading models"
    return health.problem() or ""
