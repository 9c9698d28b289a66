"""How a request held for its job ended when the job did not complete: failed or cancelled,
still running when the wait ran out, or kept while the server shuts down. Each carries the job,
so a dialect can name it in its reply."""

from __future__ import annotations

from easel.domain.errors import EaselError, ErrorKind, Throttled
from easel.domain.job import Job

DRAIN_RETRY_SECONDS = 5


class JobFailed(EaselError):
    """A job the caller waited for ended failed or cancelled; its kind says why."""

    def __init__(self, job: Job) -> None:
        kind = job.error or ErrorKind.INTERNAL
        super().__init__(kind, job.error_message or f"the job {kind.value}")
        self.job = job


class StillRunning(EaselError):
    """A held request's wait ran out; the job goes on and can be polled."""

    def __init__(self, job: Job, waited: float) -> None:
        super().__init__(ErrorKind.TIMEOUT,
                         f"the images were not ready within {waited:g}s (job {job.id})")
        self.job = job
        self.waited = waited


class Draining(Throttled):
    """The server is shutting down before a held request's job finished: the job is kept (it
    runs after the restart, or on another worker); the client polls it or retries with the same
    id."""

    def __init__(self, job: Job) -> None:
        super().__init__(ErrorKind.UNAVAILABLE, f"the server is restarting; job "
                         f"{job.client_id} is kept and will finish: poll it, or retry with the "
                         "same id", DRAIN_RETRY_SECONDS)
        self.job = job
