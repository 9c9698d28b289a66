"""`easel keys`: API keys, stored as SHA-256 hashes in the job store."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from easel.cli.common import DataDir, err, fail, settings_from
from easel.logs import visible
from easel.services.access.keys import env_principal, key_principal
from easel.store import JobStore, KeyStore

app = typer.Typer(no_args_is_help=True, help="API keys, stored as SHA-256 hashes.")


def _stores(data_dir: DataDir) -> tuple[KeyStore, JobStore]:
    from easel.runtime.build import build_job_store

    settings = settings_from(data_dir=data_dir)
    try:
        jobs = build_job_store(settings)
    except OSError as exc:  # the SQLite file's folder is missing or not writable
        fail(f"the job store cannot be opened ({exc.strerror}: {exc.filename}): check "
             "EASEL_DATABASE and --data-dir", code=1)
    return KeyStore(jobs.engine), jobs


def _keys(data_dir: DataDir) -> KeyStore:
    return _stores(data_dir)[0]


@app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label to recognise the key by")] = "",
    adopt_jobs: Annotated[bool, typer.Option(
        "--adopt-jobs", help="Give this key the jobs made while no key was needed")] = False,
    data_dir: DataDir = None,
) -> None:
    """Create a key; it is printed once and only its hash is stored. The first key makes keys
    required: the running server refuses requests without one within a second."""
    keys, jobs = _stores(data_dir)
    first = not keys.any_created()
    info, key = keys.create(name)
    err.print(f"key {info.id} created; store it now, it cannot be shown again", markup=False)
    if first:
        err.print("this is the first key: from now on (within a second, on a running server "
                  "too) every request needs a key, in every dialect and the playground",
                  markup=False)
    if adopt_jobs:
        moved = jobs.hand_keyless_jobs_to(key_principal(info.id))
        err.print(f"{moved} job(s) made without a key now belong to key {info.id}",
                  markup=False)
    elif first and (keyless := jobs.keyless_count()):
        err.print(f"{keyless} job(s) made without a key stay with the address they came from "
                  f"and are not shown to this key; `easel keys adopt {info.id}` gives them to "
                  "it", markup=False)
    typer.echo(key)


@app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """List keys by id (never the keys themselves), each with its owner: the name its jobs
    are stored under and EASEL_CALLER_WEIGHTS gives a share to. The keys of EASEL_API_KEYS
    are listed too, by their place in it."""
    for info in _keys(data_dir).list():
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.created_at))
        state = "active" if info.revoked_at is None else "revoked"
        typer.echo(f"{info.id}\t{state}\t{created}\t{key_principal(info.id)}\t"
                   f"{visible(info.name)}")
    for place, key in enumerate(settings_from(data_dir=data_dir).api_keys, start=1):
        typer.echo(f"EASEL_API_KEYS #{place}\tactive\t-\t{env_principal(key)}\t")


@app.command("adopt")
def keys_adopt(
    key_id: Annotated[str, typer.Argument(help="The id `easel keys list` shows")],
    data_dir: DataDir = None,
) -> None:
    """Give a key the jobs made while no key was needed (they belong to the address they came
    from, which no key can see)."""
    keys, jobs = _stores(data_dir)
    if not any(k.id == key_id and k.revoked_at is None for k in keys.list()):
        fail(f"no active key {key_id!r}", code=1)
    moved = jobs.hand_keyless_jobs_to(key_principal(key_id))
    typer.echo(f"{moved} job(s) made without a key now belong to key {key_id}")


@app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The id `easel keys list` shows")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a key; requests with it are refused within a second. Keys stay required after
    the last one is revoked: the server then refuses everyone until a new key is made."""
    keys = _keys(data_dir)
    if not keys.revoke(key_id):
        fail(f"no active key {key_id!r}", code=1)
    typer.echo(f"key {key_id} revoked")
    if keys.active_count() == 0 and not settings_from(data_dir=data_dir).api_keys:
        err.print("that was the last active key: the server now refuses every request (keys "
                  "stay required once one has existed, so revoking never opens it); `easel "
                  "keys create` makes a new one", markup=False)
