"""Admission: the per-caller rate limit and the queue cap, checked first by JobService.submit.

- Per-caller rate limit: a token bucket per caller (API key principal, or the client address
  when no keys are configured); over it, submissions get RATE_LIMITED with `retry_after`, and
  other callers are unaffected.
- Queue depth: above `max_queue_depth` queued jobs, submissions get UNAVAILABLE with
  `retry_after` at once.

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

QUEUE_FULL_RETRY_SECONDS = 5


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
