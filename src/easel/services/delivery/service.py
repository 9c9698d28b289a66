"""The delivery worker: sends the outbox's webhooks and uploads, retrying with growing delays.

An asyncio task in the server process. Each attempt re-checks the URL with the SSRF guard and
connects to the address it checked (`outbound.send`), never following redirects. Only 2xx counts
as delivered; 410 stops at once; anything else (3xx, 4xx, 5xx, timeout, reset) is retried on the
configured schedule until the schedule or the retry period runs out, then recorded as failed.
Polling stays the source of truth: a failed delivery never changes the job.

Payloads are rendered by the job's dialect (the renderers the app was built with, one per
dialect) on the first attempt and stored, so every retry sends the same bytes under the same
`webhook-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from easel.domain.delivery import DELIVERED, FAILED, PENDING, UPLOAD, Delivery
from easel.domain.errors import EaselError, Throttled
from easel.domain.job import Job
from easel.services.delivery.outbound import Unresolvable, check_url, send, tls_context
from easel.services.delivery.signing import signed_headers
from easel.services.images.artifacts import Artifacts
from easel.services.port import Renderer, Signer
from easel.settings import Settings
from easel.store import DeliveryStore, JobStore

log = logging.getLogger(__name__)

USER_AGENT = "easel-delivery/0.1"
POLL_SECONDS = 0.25
HOST_BUSY_SECONDS = 0.5  # a row whose host is at its bound is looked at again this much later
Request = tuple[str, bytes, dict[str, str], float]  # method, body, headers, timeout


class Permanent(Exception):
    """This delivery can never succeed (its job or image is gone, its URL is refused)."""


@dataclass(frozen=True)
class Attempt:
    outcome: str  # DELIVERED, FAILED or PENDING (retry)
    http_status: int | None
    error: str | None
    retry_after: float | None = None


class DeliveryService:
    def __init__(
        self,
        settings: Settings,
        store: DeliveryStore,
        jobs: JobStore,
        images: Artifacts,
        renderers: Mapping[str, Renderer],
        signers: Mapping[str, Signer] | None = None,
        signing_root: str = "",
    ) -> None:
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self.images = images
        self.renderers = dict(renderers)  # dialect name -> its webhook body
        # dialect name -> how its provider signs webhooks; the others: Standard Webhooks
        self.signers = dict(signers or {})
        self.signing_root = signing_root
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}-d"
        self._inflight: set[asyncio.Task[None]] = set()
        self._per_host: dict[str, int] = {}  # attempts in flight per receiving host
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.settings.delivery_concurrency)
        async with httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT}, trust_env=False, follow_redirects=False,
            limits=limits,
        ) as client:
            while not self._stopping:
                try:
                    await self._tick(client)
                except Exception:  # a store hiccup is retried on the next tick, never fatal
                    log.exception("delivery tick failed")
                await asyncio.sleep(POLL_SECONDS)

    async def stop(self, grace: float = 5.0) -> None:
        """Let attempts in flight finish briefly; anything left is sent again after a restart."""
        self._stopping = True
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=grace)
        for task in list(self._inflight):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.release, self.owner)

    async def _tick(self, client: httpx.AsyncClient) -> None:
        room = self.settings.delivery_concurrency - len(self._inflight)
        if room <= 0:
            return
        # Longer than any attempt's deadline: a live sender never loses a row mid-attempt.
        lease = max(self.settings.webhook_timeout, self.settings.upload_timeout) + 30.0
        for delivery in await asyncio.to_thread(self.store.claim, self.owner, room, lease):
            host = _host(delivery.url)
            if self._per_host.get(host, 0) >= self.settings.delivery_per_host:
                # That host's slots are taken (a slow receiver): the row waits its turn
                # without spending an attempt, and other hosts' rows go on.
                await asyncio.to_thread(self.store.postpone, delivery.id, self.owner,
                                        HOST_BUSY_SECONDS)
                continue
            self._per_host[host] = self._per_host.get(host, 0) + 1
            task = asyncio.create_task(self._deliver(client, delivery))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            task.add_done_callback(functools.partial(self._host_done, host))

    def _host_done(self, host: str, _task: asyncio.Task[None]) -> None:
        left = self._per_host.get(host, 1) - 1
        if left > 0:
            self._per_host[host] = left
        else:
            self._per_host.pop(host, None)

    # -- one attempt ----------------------------------------------------------------------------

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        try:
            attempt = await self._attempt(client, delivery)
        except Permanent as exc:
            attempt = Attempt(FAILED, None, str(exc))
        except Exception as exc:  # a bug must not lose the row: retry it on the schedule
            log.exception("delivery %s crashed", delivery.id)
            attempt = Attempt(PENDING, None, f"internal error: {type(exc).__name__}")
        outcome, next_at = self._schedule(delivery.attempts + 1, delivery.first_attempt_at,
                                          attempt)
        await asyncio.to_thread(
            self.store.finish_attempt, delivery.id, self.owner, outcome, next_at,
            attempt.http_status, attempt.error,
        )
        facts = {"delivery": delivery.id, "kind": delivery.kind, "job_id": delivery.job_id,
                 "host": _host(delivery.url), "http_status": attempt.http_status}
        if outcome == FAILED:
            log.warning("delivery %s (%s of job %s to %s) failed for good: %s", delivery.id,
                        delivery.kind, delivery.job_id, facts["host"], attempt.error,
                        extra=facts)
        elif outcome == DELIVERED:  # the host only: a URL's path or query may hold a token
            log.info("delivered %s of job %s to %s (HTTP %s)", delivery.kind,
                     delivery.job_id, facts["host"], attempt.http_status, extra=facts)
        else:
            log.info("delivery %s of job %s to %s will be retried: %s", delivery.kind,
                     delivery.job_id, facts["host"], attempt.error, extra=facts)

    async def _attempt(self, client: httpx.AsyncClient, delivery: Delivery) -> Attempt:
        try:
            request = await self._request(delivery)
        except Throttled as exc:  # the image store is down for now: retry on the schedule
            return Attempt(PENDING, None, exc.message)
        return await self._send(client, delivery.url, delivery.kind, request)

    async def _send(self, client: httpx.AsyncClient, url: str, kind: str,
                    request: Request) -> Attempt:
        """One attempt at one URL, checked against the outbound policy first."""
        method, body, headers, timeout = request
        try:
            checked = await check_url(url, kind, self.settings.allow_loopback_urls)
        except Unresolvable as exc:
            return Attempt(PENDING, None, exc.message)  # DNS may come back
        except EaselError as exc:
            raise Permanent(exc.message) from None
        try:
            # One deadline for the whole attempt, connect to status line: a receiver that
            # trickles bytes cannot hold it open past `timeout` (httpx's own are per read).
            async with asyncio.timeout(timeout):
                response = await send(client, method, checked, body, headers, timeout)
        except (TimeoutError, httpx.TimeoutException):
            return Attempt(PENDING, None, f"timed out after {timeout:g}s")
        except httpx.HTTPError as exc:
            return Attempt(PENDING, None, f"connection failed ({type(exc).__name__})")
        await response.aclose()  # the receiver's body is never read or echoed
        status = response.status_code
        if 200 <= status < 300:
            return Attempt(DELIVERED, status, None)
        if status == 410:
            return Attempt(FAILED, status, "the receiver answered 410 Gone; delivery stopped")
        return Attempt(PENDING, status, f"the receiver answered {status}",
                       _retry_after(response.headers.get("retry-after")))

    async def _request(self, delivery: Delivery) -> Request:
        job = await asyncio.to_thread(self.jobs.get, delivery.job_id)
        if job is None:
            raise Permanent(f"job {delivery.job_id} no longer exists")
        if delivery.kind == UPLOAD:
            return await self._upload(job, delivery)
        body = delivery.body
        if body is None:
            renderer = self.renderers.get(job.dialect)
            if renderer is None:
                raise Permanent(f"the {job.dialect} dialect sends no webhooks")
            payload = await renderer(job, delivery.image_id or None, self.images)
            body = json.dumps(payload, separators=(",", ":")).encode()
            await asyncio.to_thread(self.store.set_body, delivery.id, body)
        return "POST", body, self._webhook_headers(job.dialect, job.caller, delivery.id, body), \
            self.settings.webhook_timeout

    def _webhook_headers(self, dialect: str, principal: str, message_id: str,
                         body: bytes) -> dict[str, str]:
        signer = self.signers.get(dialect)
        signed = (signer(self.signing_root, principal, message_id, body) if signer is not None
                  else signed_headers(self.settings.webhook_secret, message_id, body))
        return {"Content-Type": "application/json", **signed}

    async def _upload(self, job: Job, delivery: Delivery) -> Request:
        image = next((i for i in job.images if i.image_id == delivery.image_id), None)
        if image is None:
            raise Permanent(f"image {delivery.image_id} no longer exists")
        try:
            data = await self.images.image_bytes(image)
        except Throttled:
            raise  # unreachable for now (the object store is down), not gone
        except EaselError as exc:
            raise Permanent(exc.message) from None
        # Only headers easel chooses: the caller never sets any (a presigned URL may have signed
        # Content-Type, so it is the image's real type).
        content_type = image.mime or job.request.output_format.mime
        return "PUT", data, {"Content-Type": content_type}, self.settings.upload_timeout

    # -- a webhook with no job -----------------------------------------------------------------

    def notify(self, dialect: str, principal: str, url: str, payload: dict[str, Any]) -> None:
        """Send a webhook about a request that never became a job (a refusal a provider
        reports by webhook too), signed as the dialect signs, retried in memory on the
        delivery schedule. Nothing was accepted, so nothing is stored: a restart drops it."""
        if self._stopping:
            return
        body = json.dumps(payload, separators=(",", ":")).encode()
        task = asyncio.create_task(self._notify(dialect, principal, url, body))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _notify(self, dialect: str, principal: str, url: str, body: bytes) -> None:
        headers = self._webhook_headers(dialect, principal, f"msg_{uuid.uuid4().hex}", body)
        request = ("POST", body, headers, self.settings.webhook_timeout)
        started = time.time()
        async with httpx.AsyncClient(headers={"User-Agent": USER_AGENT}, trust_env=False,
                                     verify=tls_context(trust_env=False),
                                     follow_redirects=False) as client:
            attempts = 0
            while True:
                attempts += 1
                try:
                    attempt = await self._send(client, url, "webhook", request)
                except Permanent as exc:
                    attempt = Attempt(FAILED, None, str(exc))
                outcome, next_at = self._schedule(attempts, started, attempt)
                if next_at is None:
                    break
                await asyncio.sleep(max(0.0, next_at - time.time()))
        log.info("refusal webhook to %s: %s after %d attempt(s)%s", _host(url),
                 outcome, attempts, f" ({attempt.error})" if attempt.error else "",
                 extra={"host": _host(url), "http_status": attempt.http_status})

    # -- retries ------------------------------------------------------------------------------

    def _schedule(self, done: int, started: float | None,
                  attempt: Attempt) -> tuple[str, float | None]:
        """After attempt number `done` (the first at `started`): its outcome, and when to try
        again (None: never), on the webhook schedule, durable or not."""
        if attempt.outcome != PENDING:
            return attempt.outcome, None
        delays = self.settings.webhook_retry_delays
        if done > len(delays):
            return FAILED, None
        delay = delays[done - 1] * (1 + random.uniform(0, 0.1))  # jitter: no herd of retries
        if attempt.retry_after is not None:
            delay = max(delay, attempt.retry_after)
        now = time.time()
        started = started or now
        if now + delay - started > self.settings.webhook_retry_period:
            return FAILED, None
        return PENDING, now + delay


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _retry_after(value: str | None) -> float | None:
    """A receiver's Retry-After in seconds (capped at an hour), when it is a number."""
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), 3600.0)
