"""A delivery owed for a finished job: a webhook POST or an upload PUT, and how it went."""

from __future__ import annotations

from dataclasses import dataclass

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
WEBHOOK, UPLOAD = "webhook", "upload"


@dataclass(frozen=True)
class Delivery:
    id: str  # also the Standard Webhooks `webhook-id`, stable across retries
    job_id: str
    image_id: str  # "" = the whole job
    kind: str  # WEBHOOK or UPLOAD
    event: str  # the job's terminal status
    url: str
    status: str  # PENDING, DELIVERED or FAILED
    attempts: int
    first_attempt_at: float | None
    body: bytes | None
    last_status: int | None
    last_error: str | None
    created_at: float
    finished_at: float | None
