"""API keys in the job store: only SHA-256 hashes are kept, looked up by a public prefix id.

A key is `easel_<id>_<secret>`: `id` (8 hex characters) is what `easel keys list` shows and what
a lookup uses; the secret is 256 random bits, so a fast hash is enough (no bcrypt: nothing to
brute-force) and the comparison of hashes is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from easel.store.schema import api_keys

PREFIX = "easel"


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    created_at: float
    revoked_at: float | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key: str) -> str | None:
    """The id inside a well-formed key, or None."""
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or len(key_id) != 8 or not secret:
        return None
    return key_id


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, name: str = "") -> tuple[KeyInfo, str]:
        """A new key: its record and the key itself, which is shown once and never stored."""
        key_id = secrets.token_hex(4)
        key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(
                id=key_id, key_hash=hash_key(key), name=name, created_at=now
            ))
        return KeyInfo(key_id, name, now, None), key

    def list(self) -> list[KeyInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(api_keys.select().order_by(api_keys.c.created_at)).mappings()
            return [KeyInfo(r["id"], r["name"], r["created_at"], r["revoked_at"]) for r in rows]

    def revoke(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                api_keys.update().where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        return result.rowcount == 1

    def active_count(self) -> int:
        with self.engine.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(api_keys)
                .where(api_keys.c.revoked_at.is_(None))
            ).scalar()
        return int(count or 0)

    def any_created(self) -> bool:
        """Once a key has existed, keys stay required: revoking the last one closes the server
        rather than opening it to everyone."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(api_keys.c.id).limit(1)).first() is not None

    def verify(self, key: str) -> str | None:
        """The key's id when it is a live key, else None."""
        key_id = key_id_of(key)
        if key_id is None:
            return None
        with self.engine.connect() as conn:
            stored = conn.execute(
                sa.select(api_keys.c.key_hash).where(api_keys.c.id == key_id,
                                                     api_keys.c.revoked_at.is_(None))
            ).scalar()
        if stored is None:
            return None
        return key_id if hmac.compare_digest(hash_key(key), str(stored)) else None
