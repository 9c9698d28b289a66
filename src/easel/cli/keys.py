"""`easel keys`: API keys, stored as SHA-256 hashes in the job store."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from easel.cli.common import DataDir, err, fail, settings_from
from easel.store import KeyStore

app = typer.Typer(no_args_is_help=True, help="API keys, stored as SHA-256 hashes.")


def _keys(data_dir: DataDir) -> KeyStore:
    from easel.runtime.build import build_key_store

    return build_key_store(settings_from(data_dir=data_dir))


@app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label to recognise the key by")] = "",
    data_dir: DataDir = None,
) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    info, key = _keys(data_dir).create(name)
    err.print(f"key {info.id} created; store it now, it cannot be shown again", markup=False)
    typer.echo(key)


@app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """List keys by id (never the keys themselves)."""
    for info in _keys(data_dir).list():
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.created_at))
        state = "active" if info.revoked_at is None else "revoked"
        typer.echo(f"{info.id}\t{state}\t{created}\t{info.name}")


@app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The id `easel keys list` shows")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a key; requests with it are refused within a second."""
    if not _keys(data_dir).revoke(key_id):
        fail(f"no active key {key_id!r}", code=1)
    typer.echo(f"key {key_id} revoked")
