"""The closed error model: every failure easel reports is one ErrorKind.

The core raises EaselError with a kind and the parameter it concerns (already in the client's
spelling: see domain/submission.py WireNames); each dialect maps kinds to its own status codes
and error codes through one table (api/dialects/common.py ErrorTable). Failed jobs store their
kind, so a failure reads the same at submission and when polled later.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum


class ErrorKind(StrEnum):
    """What went wrong, in terms every dialect can map to its own status codes."""

    INVALID = "invalid"  # a parameter is malformed or out of range -> 400
    MISSING = "missing"  # a required parameter is absent -> 400
    UNSUPPORTED = "unsupported"  # valid elsewhere, not for this model -> 400
    UNKNOWN_MODEL = "unknown_model"  # no such model id -> 404 (dialects may differ)
    NOT_FOUND = "not_found"  # no such task/image -> 404
    CONFLICT = "conflict"  # idempotency key reused with other parameters -> 409
    RATE_LIMITED = "rate_limited"  # too many requests -> 429
    UNAVAILABLE = "unavailable"  # model or server not ready, queue full -> 503
    TIMEOUT = "timeout"  # a held (sync) request outlived its wait; the job goes on -> 504
    CANCELLED = "cancelled"  # the caller cancelled the job
    WORKER_LOST = "worker_lost"  # the job's worker died too often (poison job) -> 500
    CONTENT_BLOCKED = "content_blocked"  # a safety check refused the prompt or an image
    INFERENCE = "inference"  # the engine failed (NaN, black image, crash) -> 500
    INTERNAL = "internal"  # a bug or an unexpected failure of easel itself -> 500
    UNAUTHENTICATED = "unauthenticated"  # no live API key -> 401 (Google: 400 for a bad key)

    @classmethod
    def of(cls, code: str | None) -> ErrorKind:
        """A stored code as a kind; codes written by older versions read as INTERNAL."""
        try:
            return cls(code or "internal")
        except ValueError:
            return cls.INTERNAL


class EaselError(Exception):
    """A failure that is the caller's business, with the parameter it concerns."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        parameter: str | None = None,
        allowed: Sequence[object] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.parameter = parameter
        self.allowed = list(allowed) if allowed is not None else None

    def __str__(self) -> str:
        return self.message


def invalid(parameter: str, message: str, allowed: Sequence[object] | None = None) -> EaselError:
    return EaselError(ErrorKind.INVALID, message, parameter, allowed)


class InferenceError(EaselError):
    """The engine produced no usable image (non-finite values, an all-black frame, a crash)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorKind.INFERENCE, message)


class CancelledError(EaselError):
    def __init__(self, message: str = "generation was cancelled") -> None:
        super().__init__(ErrorKind.CANCELLED, message)


class UrlRefused(EaselError):
    """A well-formed URL the outbound policy refuses (a private, loopback or metadata address):
    the request is refused, whatever the dialect does with other invalid parameters."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(ErrorKind.INVALID, message, parameter)


class Throttled(EaselError):
    """Refused for now (rate limit, full queue); `retry_after` whole seconds say when to retry.
    Every dialect sends it as a Retry-After header."""

    def __init__(self, kind: ErrorKind, message: str, retry_after: int) -> None:
        super().__init__(kind, message)
        self.retry_after = retry_after


class Unauthenticated(EaselError):
    """No live API key came with the request. `credential` says how one came, if any: "bearer"
    (Authorization), "api_key" (Google's x-goog-api-key or ?key=), "body" (Runware's apiKey);
    None when none came. Each dialect answers in its provider's words."""

    def __init__(self, credential: str | None) -> None:
        message = "an API key is required" if credential is None else "invalid API key"
        super().__init__(ErrorKind.UNAUTHENTICATED, message, "apiKey")
        self.credential = credential
