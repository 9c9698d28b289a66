"""The server's own secret (it signs ids the server hands out and reads back): EASEL_SECRET_KEY,
or a random key kept in <data_dir>/secret.key, so every process on one data dir shares it."""

from __future__ import annotations

import contextlib
import os
import secrets

from easel.settings import Settings


def server_secret(settings: Settings) -> bytes:
    if settings.secret_key:
        return settings.secret_key.encode()
    path = settings.data_dir / "secret.key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def signing_root(settings: Settings, secret: bytes) -> str:
    """The root of per-caller webhook secrets (WaveSpeed's): the configured webhook secret, so
    an operator who rotates it rotates them all, else the server's own secret."""
    return settings.webhook_secret or secret.hex()
