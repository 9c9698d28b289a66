"""Can this process write what accepting a job needs (the job store, the image store)? Asked by
every submission and by /readyz, answered at most once a second: a full or read-only disk turns
submissions into 503 with Retry-After, and readiness off, until space returns."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from easel.domain.errors import ErrorKind, Throttled
from easel.store import JobStore
from easel.store.blobs import BlobStore, write_problem

RETRY_SECONDS = 10
CACHE_SECONDS = 1.0


class StorageHealth:
    def __init__(
        self, store: JobStore, blobs: BlobStore, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.clock = clock
        self._checked: tuple[float, str | None] = (-CACHE_SECONDS * 2, None)
        self._lock = threading.Lock()

    def problem(self) -> str | None:
        """Why storage cannot be written now, or None."""
        with self._lock:
            at, problem = self._checked
            if self.clock() - at < CACHE_SECONDS:
                return problem
            problem = self._probe()
            self._checked = (self.clock(), problem)
            return problem

    def _probe(self) -> str | None:
        problem = write_problem(self.blobs, f"api-{os.getpid()}")
        if problem is not None:
            return f"the image store cannot be written: {problem}"
        try:
            self.store.touch()
        except Exception as exc:
            return f"the job store cannot be written: {type(exc).__name__}"
        return None

    def check(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise Throttled(ErrorKind.UNAVAILABLE,
                            f"{problem}; retry in {RETRY_SECONDS}s", RETRY_SECONDS)
