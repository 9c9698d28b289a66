"""Core: the port (services/port.py) over the services that decide, built by the composition
root. It adds no rules of its own: each call is one service's."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

from easel.catalog import Backend, Catalog, Model
from easel.domain.delivery import Delivery
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.generation import EngineStatus
from easel.domain.job import Job, JobStatus
from easel.domain.lora import Adapter
from easel.domain.submission import Caller, ImageInput, ModelChoice, Submission, WireNames
from easel.services.access.keys import KeyRing
from easel.services.images.artifacts import Artifacts
from easel.services.images.uploads import Uploads
from easel.services.jobs.planning import choose_model
from easel.services.jobs.service import JobService
from easel.services.metrics import Metrics
from easel.services.port import BackendFacts, JobRef, Limits, StoredBytes, StoredUpload
from easel.services.weights.facts import backend_facts, server_info


class Core:
    def __init__(
        self,
        jobs: JobService,
        artifacts: Artifacts,
        keys: KeyRing,
        metrics: Metrics,
        limits: Limits,
        *,
        secret: bytes,
        webhook_root: str,
        not_ready: Callable[[], str],
        engine_status: Callable[[], EngineStatus | None],
        notify: Callable[[str, str, str, dict[str, Any]], None] | None = None,
        uploads: Uploads | None = None,
    ) -> None:
        self.jobs = jobs
        self.images = artifacts  # the port's name for them
        self.artifacts = artifacts
        self.keys = keys
        self.metrics = metrics
        self.limits = limits
        self.catalog: Catalog = jobs.catalog
        self._secret = secret  # never handed out: dialects get MACs made with it
        self._webhook_root = webhook_root
        self._not_ready = not_ready  # probes storage: called off the event loop
        self._engine_status = engine_status
        self._notify = notify  # the delivery service's one-off webhook (None: not sent)
        self._uploads = uploads  # None: no uploads taken

    # -- the port ---------------------------------------------------------------------------

    def caller(self, key: str | None, address: str) -> Caller | None:
        return self.keys.caller(key, address)

    def notify(self, caller: Caller, dialect: str, url: str, payload: dict[str, Any]) -> None:
        if self._notify is not None:
            self._notify(dialect, caller.principal, url, payload)

    def facts(self, backend: Backend) -> BackendFacts:
        return backend_facts(backend, self.jobs.resolver)

    def adapters(self) -> list[Adapter]:
        rules = self.jobs.adapters
        return [] if rules is None else rules.store.list()

    def model(self, model_id: str, provider: str | None = None,
              parameter: str = "model") -> Model:
        return choose_model(ModelChoice(model_id, provider=provider), self.catalog,
                            WireNames({"model": parameter}))

    async def server_info(self) -> dict[str, Any]:
        return await asyncio.to_thread(server_info, self.catalog, self.jobs.resolver,
                                       self._engine_status())

    async def submit(self, submission: Submission) -> tuple[Job, bool]:
        return await self.jobs.submit(submission)

    async def run(self, submission: Submission) -> Job:
        return await self.jobs.run(submission, self.limits.sync_timeout)

    async def settle(self, submission: Submission) -> Job:
        return await self.jobs.settle(submission, self.limits.sync_timeout)

    async def find(self, caller: Caller, ref: JobRef) -> Job:
        return await self.jobs.find(caller, ref)

    def spend_rate_budget(self, caller: Caller) -> None:
        self.jobs.admission.check_rate(caller)

    async def cancel(self, caller: Caller, ref: JobRef) -> Job:
        return await self.jobs.cancel(caller, ref)

    async def jobs_of(self, caller: Caller, limit: int, statuses: Sequence[JobStatus] = (),
                      after: JobRef | None = None) -> list[Job]:
        return await self.jobs.list_for(caller, limit, statuses, after)

    def watch(self, job: Job) -> AsyncGenerator[Job, None]:
        return self.jobs.watch(job.id)

    async def deliveries(self, job: Job) -> list[Delivery]:
        return await self.jobs.deliveries(job.id)

    async def upload_image(self, caller: Caller, given: ImageInput,
                           reserved: tuple[str, str] | None = None) -> StoredUpload:
        self.jobs.admission.check_rate(caller)
        if self._uploads is None or self.jobs.inputs is None:
            raise EaselError(ErrorKind.UNSUPPORTED, "this server takes no uploads",
                             given.parameter)
        await asyncio.to_thread(self.jobs.health.check)  # a full disk refuses, losing nothing
        return await self._uploads.add(caller, given, self.jobs.inputs, reserved)

    def sign(self, purpose: str, data: bytes) -> bytes:
        return _mac(self._secret, purpose, data)

    def webhook_key(self, purpose: str, data: bytes) -> bytes:
        return _mac(self._webhook_root.encode(), purpose, data)

    # -- operations -------------------------------------------------------------------------

    async def not_ready_reason(self) -> str:
        return await asyncio.to_thread(self._not_ready)

    async def metrics_text(self) -> bytes:
        return await asyncio.to_thread(self.metrics.render)

    async def open_image(self, image_id: str, ext: str) -> StoredBytes | None:
        return await asyncio.to_thread(self.artifacts.open, image_id, ext)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.metrics.observe_request(method, route, status, seconds)


def _mac(key: bytes, purpose: str, data: bytes) -> bytes:
    return hmac.new(key, purpose.encode() + b"\n" + data, hashlib.sha256).digest()

