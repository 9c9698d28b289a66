"""Errors with stable codes. Dialects translate these into their own wire shapes."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum


class ErrorKind(StrEnum):
    """What went wrong, in terms every dialect can map to its own status codes."""

    INVALID = "invalid"  # a parameter is malformed or out of range -> 400
    UNKNOWN_MODEL = "unknown_model"  # no such model id -> 400/404 depending on dialect
    MISSING = "missing"  # a required parameter is absent -> 400
    UNSUPPORTED = "unsupported"  # valid elsewhere, not for this model -> 400
    CONFLICT = "conflict"  # idempotency key reused with other parameters -> 409
    AUTH = "auth"  # no or wrong credentials -> 401
    NOT_FOUND = "not_found"  # no such task/image -> 404
    RATE_LIMITED = "rate_limited"  # too many requests -> 429
    UNAVAILABLE = "unavailable"  # model or server not ready -> 503
    CANCELLED = "cancelled"
    INFERENCE = "inference"  # the engine failed (NaN, black image, crash) -> 500


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


class Throttled(EaselError):
    """Refused for now (rate limit, full queue); `retry_after` whole seconds say when to retry."""

    def __init__(self, kind: ErrorKind, message: str, retry_after: int) -> None:
        super().__init__(kind, message)
        self.retry_after = retry_after
