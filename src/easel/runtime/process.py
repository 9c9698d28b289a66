"""The services one process runs, started and stopped together. Built by easel.runtime.build (the
composition root), which is the only module that knows every layer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Protocol

from easel import __version__
from easel.catalog import Catalog
from easel.domain.generation import EngineStatus
from easel.services.access.keys import KeyRing
from easel.services.access.secrets import signing_root
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
class Services:
    settings: Settings
    catalog: Catalog
    store: JobStore
    artifacts: Artifacts
    jobs: JobService
    metrics: Metrics
    keys: KeyRing
    delivery: DeliveryService
    worker: WorkerHandle | None  # None: API only, the jobs go to `easel worker` processes
    secret: bytes  # signs ids the server hands out and reads back (services/access/secrets.py)
    health: StorageHealth
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def webhook_signing_root(self) -> str:
        """What dialect-specific webhook secrets derive from (services/access/secrets.py)."""
        return signing_root(self.settings, self.secret)

    def engine_status(self) -> EngineStatus | None:
        """The in-process engine's state; None in an API-only process or before it loads."""
        return None if self.worker is None else self.worker.engine_status()

    def not_ready_reason(self) -> str:
        """Why this process cannot take jobs now ("" when it can). Probes storage: call it off
        the event loop."""
        if self.worker is not None and not self.worker.is_ready:
            return self.worker.load_error or "loading models"
        return self.health.problem() or ""

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
