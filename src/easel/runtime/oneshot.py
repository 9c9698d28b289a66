"""`easel generate`: one generation in this process, without a server or a job store: planned by
the core's rules, drawn by the engine, written as files with their metadata."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from easel.catalog import Catalog
from easel.domain.submission import GenerationInput, WireNames
from easel.services.jobs.planning import BackendResolver, Plan, plan_resolved, resolve
from easel.services.loras import AdapterFiles, AdapterRules
from easel.settings import Settings
from easel.store import LoraStore

# (what is happening, steps done, steps in all)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Written:
    path: Path
    seed: int


def plan_generation(settings: Settings, catalog: Catalog, generation: GenerationInput,
                    strict: bool, names: WireNames) -> Plan:
    """The plan, every rule checked (an EaselError naming the client's parameter otherwise)."""
    model, request = resolve(generation, catalog, names)
    if generation.loras:  # the allow-list is the job store's, as the server reads it
        from easel.runtime.build import build_job_store

        rules = AdapterRules(LoraStore(build_job_store(settings).engine),
                             settings.max_loras_per_request)
        request = replace(request, loras=rules.applied(generation.loras, model.backend,
                                                       names("loras")))
    resolver = BackendResolver.from_settings(settings, catalog, strict)
    return plan_resolved(request, model, resolver, names=names)


def _adapter_files(settings: Settings) -> AdapterFiles:
    from easel.runtime.build import build_blobs, build_job_store

    listed = LoraStore(build_job_store(settings).engine).digest_in_use
    return AdapterFiles(build_blobs(settings), settings.loras_dir, listed)


def generate_files(the_plan: Plan, settings: Settings, output: Path,
                   progress: Progress) -> tuple[list[Written], float]:
    """Load the model, draw the plan's images and write them to `output`; the files and the
    seconds spent denoising. An EaselError when the engine fails."""
    from easel.engine import Engine
    from easel.services.images.encoding import encode

    engine = Engine.from_settings(settings)
    request = the_plan.request
    total = the_plan.backend.steps
    progress("loading model", 0, total)
    engine.warm(the_plan.backend.source)
    progress("denoising", 0, total)
    started = time.perf_counter()
    adapters = _adapter_files(settings).ready(request.loras) if request.loras else ()
    images = engine.generate(the_plan.batch(adapters=adapters),
                             progress=lambda step, steps: progress("denoising", step, steps))
    elapsed = time.perf_counter() - started
    stamp = time.strftime("%Y%m%d-%H%M%S")
    written = []
    for index, image in enumerate(images):
        metadata = the_plan.image_metadata(image.seed)
        data = encode(image.pixels, request.output_format, request.output_quality, metadata,
                      settings.png_compress_level)
        path = output / f"easel-{stamp}-{index}-{image.seed}.{request.output_format.extension}"
        path.write_bytes(data)
        written.append(Written(path, image.seed))
    return written, elapsed
