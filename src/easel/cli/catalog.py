"""`easel models` (the catalog, and what serves each id here) and `easel pull` (weights into the
Hugging Face cache)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from easel.catalog import Backend, Catalog, Model
from easel.cli.common import fail, load_catalog, out, serve_log, settings_from
from easel.domain.errors import EaselError
from easel.domain.lora import Adapter
from easel.logs import visible
from easel.services.jobs.planning import BackendResolver
from easel.services.weights.facts import backend_facts, warn_stand_ins
from easel.services.weights.files import PullTarget
from easel.settings import Settings
from easel.store import LoraStore


def models(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model id")] = False,
) -> None:
    """List the catalog: public ids, tiers, backends, licences, weights, sizes, limits, prices."""
    settings = settings_from()
    catalog = load_catalog(settings)
    resolver = BackendResolver.from_settings(settings, catalog)
    adapters = _adapters(settings)
    if as_json:
        typer.echo(json.dumps([_model_entry(catalog.model(m), resolver, adapters)
                               for m in catalog.model_ids], indent=2))
        return
    for tier in catalog.tiers.values():
        ids = [catalog.model(i) for i in catalog.model_ids if catalog.model(i).tier is tier]
        if ids:
            _print_tier(tier.name, tier.label, ids, resolver)
            _print_adapters([a for a in adapters if a.base == tier.backend.name])
    out.print("sizes: 1K, and 2K where a model takes it (*: drawn in two passes, generated at "
              "half size, upscaled and refined; docs/catalog.md). max: images per request. $: "
              "the hosted API's price per image. Every size and prompt limit: `easel models "
              "--json`.", markup=False)
    warn_stand_ins(catalog, resolver, serve_log)


def _print_tier(name: str, label: str, models: list[Model], resolver: BackendResolver) -> None:
    """One tier: what serves it, then its public ids. Fits 80 columns: the ids (what a user
    copies) are never cut or wrapped, the facts above them wrap as text."""
    backend = models[0].backend
    out.print(Text.assemble((name, "bold"), f": {backend.source}, weights "
                            f"{_weights_cell(backend, resolver)}"))
    out.print(f"  {label}; licence {_licence_cell(backend, resolver)}", markup=False)
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False,
                  collapse_padding=True)
    for column in ("model id", "api", "sizes", "max", "$"):  # max: images per request
        table.add_column(column, no_wrap=True, justify="right" if column in "max $" else "left")
    for m in models:
        table.add_row(m.id, m.provider, _sizes_cell(m), str(m.max_images), f"{m.price_usd:.3f}")
    out.print(table)
    out.print()


def _adapters(settings: Settings) -> list[Adapter]:
    """The allow-listed LoRA adapters (`easel lora`), from the job store."""
    from easel.runtime.build import build_job_store

    return LoraStore(build_job_store(settings).engine).list()


def _print_adapters(adapters: list[Adapter]) -> None:
    for a in adapters:
        facts = [f"weight {a.scale:g}", f"licence {visible(a.license) or 'not declared'}"]
        if a.trigger:
            facts.append(f"trigger {visible(a.trigger)!r}")
        out.print(f"  LoRA {a.name}: {', '.join(facts)}", markup=False)
    if adapters:
        out.print()


def _sizes_cell(m: Model) -> str:
    cells = []
    for resolution in dict.fromkeys(s.resolution for s in m.sizes):
        two_pass = any(m.backend.size_path(s.width, s.height) != "native"
                       for s in m.sizes if s.resolution == resolution)
        cells.append(resolution.upper() + ("*" if two_pass else ""))
    return " ".join(cells)


def _model_entry(m: Model, resolver: BackendResolver,
                 adapters: list[Adapter]) -> dict[str, object]:
    backend = m.backend
    return {
        "id": m.id, "provider": m.provider, "tier": m.tier.name,
        **backend_facts(backend, resolver).to_json(),
        "sizes": [{"size": str(s), "aspect_ratio": s.aspect_ratio, "resolution": s.resolution,
                   "path": backend.size_path(s.width, s.height)} for s in m.sizes],
        "max_images": m.max_images, "prompt_chars": [m.prompt_min, m.prompt_max],
        "negative_prompt": m.negative_prompt, "price_usd": m.price_usd,
        "loras": [a.to_json() for a in adapters if a.base == backend.name],
    }


def _licence_cell(backend: Backend, resolver: BackendResolver) -> str:
    use = "commercial" if backend.license.commercial else "non-commercial"
    refused = " (refused: commercial-only)" if resolver.refusal(backend) else ""
    return f"{backend.license.id} [{use}]{refused}"


def _weights_cell(backend: Backend, resolver: BackendResolver) -> str:
    if resolver.present(backend.source):
        return "present"
    return f"absent -> {resolver.stand_in(backend)}"


def pull(
    name: Annotated[str, typer.Argument(
        help="A tier, a public model id, a backend name, or a Hugging Face repo id")],
) -> None:
    """Download weights into the Hugging Face cache: the licence first, then progress bars;
    an interrupted pull resumes when run again."""
    from easel.services.weights import files as weights

    settings = settings_from()
    catalog = load_catalog(settings)
    try:
        target = _pull_target(name, catalog)
        out.print(f"{target.repo_id}: licence {_licence_line(target)}", markup=False,
                  soft_wrap=True)
        path = weights.pull(target)
    except EaselError as exc:
        fail(exc.message)
    except weights.PullError as exc:
        fail(str(exc), code=1)
    typer.echo(f"{target.repo_id} -> {path}")


def _pull_target(name: str, catalog: Catalog) -> PullTarget:
    from easel.services.weights import files as weights

    try:
        return weights.target_for(catalog.backend_for(name))
    except EaselError:
        if "/" not in name or name.startswith("easel/"):
            raise
    known = next((b for b in catalog.backends.values() if b.source == name), None)
    return weights.pull_target(name, known.license if known else None)


def _licence_line(target: PullTarget) -> str:
    from easel.services.weights.files import card_license

    if target.license is not None:
        url = target.license.url
        return f"{target.license.describe()}, {url}" if url else target.license.describe()
    declared = card_license(target.repo_id)
    if declared is None:
        return ("unknown (not in the catalog, and no model card could be read or it states "
                "none): read its terms first")
    return f"{declared} (as its model card declares; not in the catalog)"
