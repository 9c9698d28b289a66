"""The durable job: one acknowledged generation request and its images."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from easel.domain.errors import ErrorKind
from easel.domain.request import GenerationRequest
from easel.domain.safety import Withheld
from easel.domain.submission import DeliverySettings


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


def job_id_from(text: str) -> str:
    """easel's id of a job from the form a client shows it in: a UUID's 32 hex digits (as
    WaveSpeed writes ids) become the dashed form easel stores; anything else is kept."""
    if len(text) == 32:
        with contextlib.suppress(ValueError):
            return str(uuid.UUID(hex=text))
    return text


@dataclass(frozen=True)
class JobImage:
    """One requested result. Its id and seed are fixed at submission, so polls and re-runs after
    a crash always name the same images."""

    image_id: str
    index: int
    seed: int
    ready: bool = False  # encoded and stored
    mime: str | None = None
    size_bytes: int | None = None
    expires_at: datetime | None = None  # when its URL stops resolving
    nsfw: bool = False  # the content check flagged it
    withheld: Withheld | None = None  # flagged and withheld: it has no file and no URL
    scores: dict[str, float] | None = None  # the detector's scores; None: not checked

    @property
    def deliverable(self) -> bool:
        """Stored and not withheld: it has a file, a URL, an upload, a webhook item."""
        return self.ready and self.withheld is None


@dataclass(frozen=True)
class QueueWait:
    """Where a queued job stands: the jobs that run before it, and about how long until its
    turn (None until this server has timed a job: nothing to estimate from)."""

    ahead: int
    seconds: float | None


@dataclass(frozen=True)
class Job:
    id: str  # easel's id; equal to the client's task id when the dialect has one
    dialect: str  # "runware", "wavespeed", "openai", "google", "cli"
    request: GenerationRequest
    status: JobStatus
    images: tuple[JobImage, ...]
    created_at: datetime
    backend: str = ""  # the weights that ran (or will run)
    stand_in_reason: str | None = None
    cost_usd: float = 0.0
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    echo: Mapping[str, Any] = field(default_factory=dict)  # the dialect's own data, opaque
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: ErrorKind | None = None  # set when FAILED or CANCELLED
    error_message: str | None = None
    attempts: int = 0
    progress_step: int = 0
    progress_total: int = 0
    batch_id: str | None = None  # the engine call that drew it (jobs batched together share it)
    engine_seconds: float = 0.0  # time inside the engine, to tell it from time the server adds
    cancel_requested: bool = False  # a running job stops at its next denoising step
    caller: str = ""  # the principal that submitted it: only it may read or cancel the job
    task_id: str | None = None  # the client's id for it (Runware taskUUID), when it chose one
    queue: QueueWait | None = None  # a queued job's place, where the core was asked for it
    partials: int = 0  # rounds of partial images stored (request.partial_images at most)

    @property
    def client_id(self) -> str:
        """The id the client knows the job by."""
        return self.task_id or self.id
