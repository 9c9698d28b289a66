"""The server's own secret (it signs ids the server hands out and reads back): EASEL_SECRET_KEY,
or a random key kept in <data_dir>/secret.key, so every process on one data dir shares it.

A job store other than SQLite is how processes on several machines share jobs (SQLite is one
machine's file). Their data dirs, and so their secret.key files, differ, so a secret made by one
process would not be known to the next: a WaveSpeed webhook secret would depend on which
process answered, and an id one process signed would be unknown to another. Such a process
needs EASEL_SECRET_KEY, and refuses to start without it rather than make one of its own."""

from __future__ import annotations

import contextlib
import os
import secrets

from sqlalchemy.engine import make_url

from easel.settings import Settings


def shares_store_across_machines(settings: Settings) -> bool:
    return make_url(settings.database_url).get_backend_name() != "sqlite"


def missing_shared_secret(settings: Settings) -> str | None:
    """Why this process may not make its own secret, or None when it may."""
    if settings.secret_key or not shares_store_across_machines(settings):
        return None
    backend = make_url(settings.database_url).get_backend_name()
    return ("EASEL_SECRET_KEY is not set: every process sharing this job store "
            f"({backend}) must sign with one secret (WaveSpeed webhook secrets, the ids it hands "
            "out), and a secret made here would be this process's alone; give every process "
            "the same EASEL_SECRET_KEY (a new one: openssl rand -hex 32)")


def server_secret(settings: Settings) -> bytes:
    if settings.secret_key:
        return settings.secret_key.encode()
    refused = missing_shared_secret(settings)
    if refused is not None:
        raise ValueError(refused)
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
