"""`easel lora`: the LoRA adapters requests may name (docs/lora.md). An adapter is checked
against its base when it is added and copied into easel's own image store, so every worker
finds the same bytes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from easel.catalog import Backend
from easel.cli.common import DataDir, err, fail, load_catalog, settings_from
from easel.domain.errors import EaselError
from easel.logs import visible
from easel.services.loras import AdapterFacts, NewAdapter, admit, check_new, forget
from easel.settings import Settings
from easel.store import LoraStore
from easel.store.blobs import BlobStore

app = typer.Typer(no_args_is_help=True, help="LoRA adapters requests may name.")


def _stores(settings: Settings) -> tuple[LoraStore, BlobStore]:
    from easel.runtime.build import build_blobs, build_job_store

    return LoraStore(build_job_store(settings).engine), build_blobs(settings)


@app.command("add")
def lora_add(
    name: Annotated[str, typer.Argument(help="What requests call it (a-z, 0-9, . _ -)")],
    source: Annotated[str, typer.Argument(
        help="A local .safetensors file, an https URL, or a Hugging Face repo id with --file")],
    base: Annotated[str, typer.Option(help="The catalog backend it was made for "
                                           "(`easel models` shows them), e.g. flux2-klein-4b")],
    file: Annotated[str | None, typer.Option(help="The file in the Hugging Face repo")] = None,
    revision: Annotated[str | None, typer.Option(help="The repo's revision")] = None,
    scale: Annotated[float, typer.Option(help="Its weight when a request gives none")] = 1.0,
    trigger: Annotated[str, typer.Option(help="Words its prompts should carry")] = "",
    license: Annotated[str, typer.Option(help="Its licence, as you know it")] = "",
    air: Annotated[list[str] | None, typer.Option(
        help="A Runware AIR id that names it too (civitai:ID@VERSION); repeatable")] = None,
    data_dir: DataDir = None,
) -> None:
    """Check an adapter against its base and allow-list it."""
    settings = settings_from(data_dir=data_dir)
    catalog = load_catalog(settings)
    store, blobs = _stores(settings)
    new = NewAdapter(name, source, base, scale, trigger, license, tuple(air or ()))
    try:
        backend = check_new(new, catalog, store)
        data = _read(source, file, revision, settings)
        adapter = admit(new, data, backend, _engine_check, store, blobs, _config_of(backend))
    except (ValueError, EaselError) as exc:
        fail(str(exc.message if isinstance(exc, EaselError) else exc))
    rank = f", rank {adapter.rank}" if adapter.rank else ""
    typer.echo(f"{adapter.name}: {adapter.layout} LoRA for {adapter.base}{rank}, "
               f"{adapter.size_bytes:,} bytes, sha256 {adapter.digest}")


def _read(source: str, file: str | None, revision: str | None, settings: Settings) -> bytes:
    """The file's bytes, from wherever the operator said, within the size limit."""
    limit = settings.lora_max_bytes
    if source.startswith(("http://", "https://")):
        from easel.services.delivery.outbound import fetch

        return asyncio.run(fetch(source, "SOURCE", limit, settings.lora_download_timeout,
                                 settings.allow_loopback_urls))
    path = Path(source).expanduser()
    if file is None and not path.is_file():  # a folder too: there is no file to read there
        raise ValueError(f"{source}: no such file (a Hugging Face repo needs --file)")
    if file is not None:
        path = _from_hub(source, file, revision)
    if not path.name.endswith(".safetensors"):
        raise ValueError(f"{path.name} is not a .safetensors file (only safetensors are taken: "
                         "a pickled checkpoint can run code when loaded)")
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"{path.name} is {size:,} bytes, over EASEL_LORA_MAX_BYTES ({limit:,})")
    return path.read_bytes()


def _from_hub(repo: str, file: str, revision: str | None) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo, file, revision=revision))
    except (HfHubHTTPError, LocalEntryNotFoundError, ValueError) as exc:
        raise ValueError(f"{repo}/{file}: {exc}") from None


def _config_of(backend: Backend) -> str | None:
    """Where the base's own configs are (its modules' names and shapes are checked against
    them), when its weights are here; None: the family's layout is checked, names only."""
    from easel.services.weights.files import weights_present

    if backend.is_builtin or not weights_present(backend.source, backend.config):
        return None
    return backend.config or backend.source


def _engine_check(path: Path, family: str, config: str | None) -> AdapterFacts:
    from easel.engine.adapters import check_adapter_file

    facts = check_adapter_file(path, family, config)
    return AdapterFacts(facts.format, facts.rank, facts.modules)


@app.command("list")
def lora_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per adapter")] = False,
    data_dir: DataDir = None,
) -> None:
    """The allow-listed adapters, each with its base, default weight and licence."""
    store, _ = _stores(settings_from(data_dir=data_dir))
    adapters = store.list()
    if as_json:
        typer.echo(json.dumps([a.to_json() for a in adapters], indent=2))
        return
    if not adapters:
        err.print("no adapters; `easel lora add NAME SOURCE --base BACKEND` adds one",
                  markup=False)
        return
    # One line an adapter, tab-separated and never cut (ids are what an operator copies).
    typer.echo("name\tbase\tweight\ttrigger\tlicence\talso named\tsha256")
    for a in adapters:
        typer.echo("\t".join((a.name, a.base, f"{a.scale:g}", visible(a.trigger) or "-",
                              visible(a.license) or "-", visible(", ".join(a.aliases)) or "-",
                              a.digest[:12])))


@app.command("remove")
def lora_remove(
    name: Annotated[str, typer.Argument(help="The adapter's name")],
    data_dir: DataDir = None,
) -> None:
    """Take an adapter off the allow-list. Jobs accepted with it that have not run fail with
    a clear reason; new requests naming it are refused."""
    store, blobs = _stores(settings_from(data_dir=data_dir))
    removed = forget(name, store, blobs)
    if removed is None:
        fail(f"no adapter {name!r}", code=1)
    typer.echo(f"{removed.name} removed")
