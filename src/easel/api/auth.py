"""API keys, checked in one place for every dialect."""

from __future__ import annotations

import hmac

from easel.services.container import Services


def key_is_valid(services: Services, key: str | None) -> bool:
    """No keys configured: anything goes. Otherwise a constant-time match against each key."""
    keys = services.settings.api_keys
    if not keys:
        return True
    if not key:
        return False
    candidate = key.encode()
    # Compare with every key (no early exit) so timing says nothing about which one matched.
    matches = [hmac.compare_digest(candidate, k.encode()) for k in keys]
    return any(matches)


def keys_required(services: Services) -> bool:
    return bool(services.settings.api_keys)


def bearer_token(authorization: str | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` header, if any."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
