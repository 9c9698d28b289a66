"""API keys, checked in one place for every dialect (Bearer, Runware `authentication`,
x-goog-api-key all end up in `key_is_valid`)."""

from __future__ import annotations

from easel.api.limits import set_principal
from easel.services.container import Services


def key_is_valid(services: Services, key: str | None) -> bool:
    """No keys configured: anything goes. Otherwise a constant-time match against the
    EASEL_API_KEYS list and the hashed keys in the store. A match also names the caller for the
    per-key rate limit."""
    if not services.keys.required():
        return True
    principal = services.keys.principal(key)
    if principal is None:
        return False
    set_principal(principal)
    return True


def keys_required(services: Services) -> bool:
    return services.keys.required()


def bearer_token(authorization: str | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` header, if any."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
