"""API keys, checked in one place for every dialect (Bearer, Runware `authentication`,
x-goog-api-key all end up in `authenticate`). The Caller it returns is passed on explicitly, in
the Submission: nothing about the caller hides in request-global state."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from easel.domain.submission import Caller
from easel.runtime.process import Services


def authenticate(services: Services, conn: HTTPConnection, key: str | None) -> Caller | None:
    """The caller, or None when keys are required and `key` is not a live one. No keys
    configured: anyone on the (loopback) socket may call, as its address."""
    client = conn.client.host if conn.client else "unknown"
    return services.keys.caller(key, client)


def bearer_token(authorization: str | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` header, if any."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
