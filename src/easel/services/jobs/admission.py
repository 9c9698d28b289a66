"""Admission: the per-caller rate limit and the queue cap, checked first by JobService.submit.

- Per-caller rate limit: a token bucket per caller (API key principal, or the client address
  when no keys are configured); over it, submissions get RATE_LIMITED with `retry_after`, and
  other callers are unaffected.
- Queue depth: above `max_queue_depth` queued jobs, submissions get UNAVAILABLE with
  `retry_after` at once.
- Per-caller backlog: a caller's unfinished jobs and work units are capped
  (`max_jobs_per_caller`, `max_work_per_caller`); past a cap that caller gets RATE_LIMITED,
  naming the cap, and nobody else is affected. The store checks both at insert, atomically, and
  gives each job its fair queueing tags with the caller's weight (`caller_weights`).

Both raise Throttled; every dialect answers it in its own shape with a Retry-After header.
Prompt length and images per request are per model, in the catalog.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from easel.domain.errors import ErrorKind, Throttled
from easel.domain.submission import Caller
from easel.settings import Settings
from easel.store import QueueRules

QUEUE_FULL_RETRY_SECONDS = 5
CALLER_FULL_RETRY_SECONDS = (1, 300)  # the bounds of the Retry-After a capped caller is told


class TokenBuckets:
    """One bucket per caller: `burst` tokens, refilled at `rate` per second."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # principal -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, principal: str) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(principal, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[principal] = (tokens - 1.0, now)
                return 0.0
            self._buckets[principal] = (tokens, now)
            if len(self._buckets) > 100_000:  # forget full buckets: memory stays bounded
                self._buckets = {p: v for p, v in self._buckets.items() if v[0] < self.burst}
            return (1.0 - tokens) / self.rate


class Admission:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = settings.rate_limit_per_second
        self.burst = settings.rate_limit_burst
        self.max_queue_depth = settings.max_queue_depth
        self.max_jobs_per_caller = settings.max_jobs_per_caller
        self.max_work_per_caller = settings.max_work_per_caller
        self.weights = dict(settings.caller_weights)
        self.buckets = TokenBuckets(self.rate, self.burst, clock) if self.rate > 0 else None

    def check_rate(self, caller: Caller) -> None:
        if self.buckets is None:
            return
        wait = self.buckets.take(caller.principal)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise Throttled(
                ErrorKind.RATE_LIMITED,
                f"rate limit exceeded ({self.rate:g} requests/s, burst {self.burst}); "
                f"retry in {seconds}s", seconds,
            )

    @property
    def queue_capped(self) -> bool:
        return self.max_queue_depth > 0

    def check_queue(self, depth: int) -> None:
        if self.queue_capped and depth >= self.max_queue_depth:
            raise self.queue_full(depth)

    @staticmethod
    def queue_full(depth: int) -> Throttled:
        seconds = QUEUE_FULL_RETRY_SECONDS
        return Throttled(ErrorKind.UNAVAILABLE,
                         f"the queue is full ({depth} jobs waiting); retry in {seconds}s", seconds)

    def rules_for(self, principal: str) -> QueueRules:
        """What the store checks when it inserts this caller's job, and the caller's share."""
        return QueueRules(max_queued=self.max_queue_depth,
                          max_caller_jobs=self.max_jobs_per_caller,
                          max_caller_work=self.max_work_per_caller,
                          weight=self.weights.get(principal, 1.0))

    def too_many_jobs(self) -> Throttled:
        seconds = QUEUE_FULL_RETRY_SECONDS
        return Throttled(ErrorKind.RATE_LIMITED,
                         f"you have {self.max_jobs_per_caller} jobs queued or running, this "
                         "server's cap per caller (EASEL_MAX_JOBS_PER_CALLER); retry in "
                         f"{seconds}s, when some have finished", seconds)

    def too_much_work(self, pending: float, work: float) -> Throttled:
        """Retry-After: the work units past the cap, as seconds (a unit is a second of the
        reference GPU; the caller's own jobs drain at least that fast once they run)."""
        low, high = CALLER_FULL_RETRY_SECONDS
        cap = self.max_work_per_caller
        seconds = min(high, max(low, math.ceil(pending + work - cap)))
        when = ("once none of your jobs is queued or running (it is larger than the cap on its "
                "own)" if work > cap else "when some of your jobs have finished")
        return Throttled(ErrorKind.RATE_LIMITED,
                         f"this job ({work:.3g} work units) and your unfinished jobs "
                         f"({pending:.3g}) pass this server's cap per caller of {cap:g} work "
                         "units (EASEL_MAX_WORK_PER_CALLER; a unit is about a second of GPU "
                         f"time); it is accepted {when}: retry in {seconds}s, or ask for fewer "
                         "images, steps or pixels", seconds)
