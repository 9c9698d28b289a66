"""The delivery outbox: webhooks and uploads owed for finished jobs, durable in the job store.

Rows are written in the same transaction as the job's terminal transition (see
`JobStore._terminal`), so a finished job always has its deliveries and a crash can never leave
one half-recorded. Each row's id is derived from (job, image, kind): a re-run cannot duplicate it
and it doubles as the Standard Webhooks `webhook-id`, stable across retries.

Sending rows is leased like jobs (compare-and-set on `lease_owner`), so several server processes
can share one outbox and a crashed sender's rows are picked up once their lease expires.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from easel.domain.delivery import DELIVERED, FAILED, PENDING, UPLOAD, WEBHOOK, Delivery
from easel.domain.submission import DeliverySettings
from easel.store.schema import deliveries, images, jobs

__all__ = ["DELIVERED", "FAILED", "PENDING", "UPLOAD", "WEBHOOK", "Delivery", "DeliveryStore"]


def delivery_id(job_id: str, image_id: str, kind: str) -> str:
    digest = hashlib.sha256(f"{job_id}|{image_id}|{kind}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def enqueue_for(conn: Connection, job_id: str, now: float) -> None:
    """Inside the terminal transaction: the deliveries this job's settings ask for."""
    row = conn.execute(
        sa.select(jobs.c.options, jobs.c.status).where(jobs.c.id == job_id)
    ).first()
    if row is None:
        return
    settings, status = delivery_settings(row[0]), str(row[1])
    # A withheld image is never delivered: no per-image webhook, no upload.
    image_ids = [r[0] for r in conn.execute(
        sa.select(images.c.image_id).where(images.c.job_id == job_id,
                                           images.c.withheld.is_(None)).order_by(images.c.idx)
    )]
    wanted = _wanted(settings, status, image_ids)
    if not wanted:
        return
    ids = {delivery_id(job_id, image_id, kind): (image_id, kind, url)
           for image_id, kind, url in wanted}
    existing = set(conn.execute(
        sa.select(deliveries.c.id).where(deliveries.c.id.in_(list(ids)))
    ).scalars())
    rows = [
        {"id": did, "job_id": job_id, "image_id": image_id, "kind": kind, "event": status,
         "url": url, "status": PENDING, "attempts": 0, "next_attempt_at": now,
         "created_at": now, "updated_at": now}
        for did, (image_id, kind, url) in ids.items() if did not in existing
    ]
    if rows:
        conn.execute(deliveries.insert(), rows)


def delivery_settings(options: Any) -> DeliverySettings:
    """The typed settings of a stored job (rows written before they were typed included)."""
    raw = dict(options or {})
    if "delivery" in raw:
        return DeliverySettings.from_json(raw["delivery"] or {})
    return DeliverySettings(webhook=raw.get("webhook"),
                            webhook_per_image=bool(raw.get("webhook_per_image")),
                            upload=raw.get("upload"), ttl_seconds=raw.get("ttl"))


def _wanted(
    settings: DeliverySettings, status: str, image_ids: list[str]
) -> list[tuple[str, str, str]]:
    """(image_id, kind, url) per delivery: one webhook per image when the dialect posts images
    one by one, else one per job (also for failed and cancelled jobs); uploads only of images
    that were made."""
    out: list[tuple[str, str, str]] = []
    completed = status == "completed"
    if settings.webhook:
        # Every image withheld: one webhook for the job still says it ended.
        if completed and settings.webhook_per_image and image_ids:
            out += [(image_id, WEBHOOK, settings.webhook) for image_id in image_ids]
        else:
            out.append(("", WEBHOOK, settings.webhook))
    if settings.upload and completed:
        out += [(image_id, UPLOAD, settings.upload) for image_id in image_ids]
    return out


class DeliveryStore:
    """The sender's side of the outbox. Synchronous: async callers use asyncio.to_thread."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def claim(self, owner: str, limit: int, lease_seconds: float) -> list[Delivery]:
        now = self.clock()
        with self.engine.connect() as conn:
            candidates = conn.execute(
                sa.select(deliveries.c.id).where(_due(now))
                .order_by(deliveries.c.next_attempt_at).limit(limit)
            ).scalars().all()
        claimed: list[str] = []
        with self.engine.begin() as conn:
            for did in candidates:
                result = conn.execute(
                    deliveries.update().where(deliveries.c.id == did, _due(now)).values(
                        lease_owner=owner, lease_expires_at=now + lease_seconds,
                        first_attempt_at=sa.func.coalesce(deliveries.c.first_attempt_at, now),
                        updated_at=now,
                    )
                )
                if result.rowcount == 1:
                    claimed.append(did)
        return self._load(claimed)

    def set_body(self, did: str, body: bytes) -> None:
        with self.engine.begin() as conn:
            conn.execute(deliveries.update().where(deliveries.c.id == did).values(body=body))

    def finish_attempt(
        self, did: str, owner: str, outcome: str, next_at: float | None,
        http_status: int | None, error: str | None,
    ) -> bool:
        """Record one attempt: delivered, failed for good, or pending again at `next_at`."""
        now = self.clock()
        values: dict[str, Any] = {
            "status": outcome, "attempts": deliveries.c.attempts + 1, "last_status": http_status,
            "last_error": error, "lease_owner": None, "lease_expires_at": None, "updated_at": now,
        }
        if outcome == PENDING:
            values["next_attempt_at"] = next_at if next_at is not None else now
        else:
            values["finished_at"] = now
        with self.engine.begin() as conn:
            result = conn.execute(
                deliveries.update().where(deliveries.c.id == did,
                                          deliveries.c.lease_owner == owner,
                                          deliveries.c.status == PENDING).values(**values)
            )
        return result.rowcount == 1

    def postpone(self, did: str, owner: str, seconds: float) -> None:
        """Hand a claimed row back, due again in `seconds`, without counting an attempt."""
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(
                deliveries.update().where(deliveries.c.id == did,
                                          deliveries.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None,
                        next_attempt_at=now + seconds, updated_at=now)
            )

    def release(self, owner: str) -> None:
        """Graceful stop: rows this sender holds become due again at once."""
        with self.engine.begin() as conn:
            conn.execute(
                deliveries.update().where(deliveries.c.lease_owner == owner,
                                          deliveries.c.status == PENDING)
                .values(lease_owner=None, lease_expires_at=None)
            )

    def for_job(self, job_id: str) -> list[Delivery]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                deliveries.select().where(deliveries.c.job_id == job_id)
                .order_by(deliveries.c.kind, deliveries.c.image_id)
            ).mappings().all()
        return [_delivery(row) for row in rows]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)
            ).all()
        return {status: int(count) for status, count in rows}

    def _load(self, ids: list[str]) -> list[Delivery]:
        if not ids:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(
                deliveries.select().where(deliveries.c.id.in_(ids))
            ).mappings().all()
        return [_delivery(row) for row in rows]


def _due(now: float) -> sa.ColumnElement[bool]:
    return sa.and_(
        deliveries.c.status == PENDING,
        deliveries.c.next_attempt_at <= now,
        sa.or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at < now),
    )


def _delivery(row: RowMapping) -> Delivery:
    return Delivery(
        id=row["id"], job_id=row["job_id"], image_id=row["image_id"], kind=row["kind"],
        event=row["event"], url=row["url"], status=row["status"], attempts=int(row["attempts"]),
        first_attempt_at=row["first_attempt_at"], body=row["body"],
        last_status=row["last_status"], last_error=row["last_error"],
        created_at=float(row["created_at"]), finished_at=row["finished_at"],
    )
