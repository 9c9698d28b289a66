"""Who may call: the EASEL_API_KEYS list plus the keys in the job store (`easel keys`)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable

from easel.domain.errors import ErrorKind, Throttled
from easel.domain.submission import Caller
from easel.store import KeyStore

log = logging.getLogger(__name__)

CACHE_SECONDS = 1.0  # a revoked key stops working within this long
RETRY_SECONDS = 5


class KeysUnavailable(Throttled):
    """The key store cannot be read (the database is down): no key can be checked, so the
    request is refused (fail closed) as a 503 to retry, not as a wrong key."""

    def __init__(self) -> None:
        super().__init__(ErrorKind.UNAVAILABLE, "API keys cannot be checked now: the job "
                         f"store cannot be reached; retry in {RETRY_SECONDS}s", RETRY_SECONDS)


def key_principal(key_id: str) -> str:
    """Who a key of `easel keys` is: the owner its jobs are stored under."""
    return f"key:{key_id}"


def env_principal(key: str) -> str:
    """Who a key of EASEL_API_KEYS is: a digest of the key itself, never its place in the
    list (removing or reordering keys must not hand one key's jobs, or its webhook secret,
    to another)."""
    return "env:" + hashlib.sha256(b"easel-principal\n" + key.encode()).hexdigest()[:24]


class KeyRing:
    def __init__(self, env_keys: list[str], store: KeyStore,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.env_keys = [k.encode() for k in env_keys]
        self.store = store
        self.clock = clock
        self._required: tuple[float, bool] = (0.0, False)
        self._verified: dict[str, tuple[float, str | None]] = {}

    def required(self) -> bool:
        """Keys are needed once any was created; with none (the loopback default) anyone may
        call. KeysUnavailable when the store cannot say (never guessed open)."""
        if self.env_keys:
            return True
        at, value = self._required
        now = self.clock()
        if now - at > CACHE_SECONDS:
            try:
                value = self.store.any_created()
            except Exception:  # the key store cannot be read: fail closed, never open
                log.warning("the key store cannot be read; refusing every request until it "
                            "can", exc_info=True)
                raise KeysUnavailable() from None
            self._required = (now, value)
        return value

    def caller(self, key: str | None, client_address: str) -> Caller | None:
        """Who is calling, or None when a key is required and this one is not live. With no
        keys configured (the loopback default) the caller is its address."""
        if not self.required():
            return Caller(f"ip:{client_address}")
        principal = self.principal(key)
        return None if principal is None else Caller(principal)

    def principal(self, key: str | None) -> str | None:
        """Who this key is ("env:<digest>" or "key:<id>"), or None when it is not a live key.
        An environment key is named by a digest of the key itself, never by its place in
        EASEL_API_KEYS: removing or reordering keys must not hand one key's jobs (or its
        webhook secret) to another."""
        if not key:
            return None
        candidate = key.encode()
        # Compare with every configured key (no early exit): timing says nothing about which.
        matches = [hmac.compare_digest(candidate, k) for k in self.env_keys]
        if any(matches):
            return env_principal(key)
        return self._from_store(key)

    def _from_store(self, key: str) -> str | None:
        now = self.clock()
        cached = self._verified.get(key)
        if cached is not None and now - cached[0] <= CACHE_SECONDS:
            return cached[1]
        try:
            key_id = self.store.verify(key)
        except Exception:  # an outage refuses the key as a 503 (and is not cached)
            log.warning("the key store cannot be read", exc_info=True)
            raise KeysUnavailable() from None
        if len(self._verified) > 10_000:  # bounded: random wrong keys cannot grow it for ever
            self._verified.clear()
        principal = None if key_id is None else key_principal(key_id)
        self._verified[key] = (now, principal)
        return principal
