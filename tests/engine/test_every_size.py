"""Every (model id, size) pair of the packaged catalog generates on its offline stand-in,
through the real core: submitted as jobs, batched by the worker, drawn by the diffusers engine
on the stand-in of each tier's family (2K through the two-pass path where the catalog says so),
stored at exactly the size asked for."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from easel.catalog import Catalog, Size
from easel.domain.job import JobStatus
from easel.domain.request import ImageFormat
from easel.domain.submission import (
    Caller,
    DeliverySettings,
    ExactSize,
    GenerationInput,
    ModelChoice,
    Submission,
    WireNames,
)
from easel.engine import Engine
from easel.runtime.build import build_runtime, dialects
from easel.services.images.encoding import read_metadata
from easel.settings import Settings
from easel.worker import Worker

CATALOG = Catalog.load()
PAIRS = [(model.id, size) for model in CATALOG.models.values() for size in model.sizes
         if not model.upscales]  # an upscale's size is its input's (tests/edge/test_upscale.py)


IMAGEN_RATIOS = {"1:1", "3:4", "4:3", "9:16", "16:9"}


def _extremes() -> set[tuple[str, int, int]]:
    """Each backend's widest and tallest one-pass sizes (of the table most of its ids use:
    Imagen's; the Gemini tables' other ratios step by 16 the same way)."""
    found: set[tuple[str, int, int]] = set()
    for model in CATALOG.models.values():
        backend = model.backend
        if {s.aspect_ratio for s in model.sizes} - IMAGEN_RATIOS:
            continue
        native = [s for s in model.sizes if backend.size_path(s.width, s.height) == "native"]
        # The widest and the tallest: the square is what every other test draws.
        for pick in (max(native, key=lambda s: s.width / s.height),
                     min(native, key=lambda s: s.width / s.height)):
            found.add((backend.source, pick.width, pick.height))
    return found


EXTREMES = _extremes()


def drawn_here(model_id: str, size: Size) -> bool:
    """In the suite: each backend's widest and tallest 1K sizes of the Imagen table (every model
    id of a backend shares its batch; the square is what every other test draws), and 2K (two
    passes at 4 MP) once, square, on Z-Image. The 52 distinct 1K (backend, size) pairs cost two
    and a half minutes on two CPU cores and a 2K stand-in image 9 s (Z-Image) to 45 s
    (Qwen-Image, whose causal 3D VAE encodes and decodes 4 MP), so the other pairs are planned
    and checked here (below: every size is a multiple of 16, the step of every family's latent
    grid) and drawn with EASEL_TEST_ALL_SIZES=1 (every pair; docs/catalog.md)."""
    if os.environ.get("EASEL_TEST_ALL_SIZES") == "1":
        return True
    backend = CATALOG.model(model_id).backend
    if backend.size_path(size.width, size.height) == "native":
        return (backend.source, size.width, size.height) in EXTREMES
    return backend.family == "zimage" and size.aspect_ratio == "1:1"


def pair_submission(model_id: str, width: int, height: int) -> Submission:
    # One prompt and seed for all: ids that share a backend and size batch together, and the
    # engine draws identical images once (so the test costs one image per backend and size).
    # Guidance 1 where a backend takes one (Qwen-Image: true CFG off), to halve the denoiser's
    # work, and JPEG, which encodes a 1K image ten times faster than PNG: what this test checks
    # is the size, not the guidance or the format.
    takes_guidance = CATALOG.model(model_id).backend.guidance_range is not None
    generation = GenerationInput(ModelChoice(model_id), "a lighthouse on a cliff at dusk",
                                 ExactSize(width, height), seed=11,
                                 output_format=ImageFormat.JPEG,
                                 guidance_scale=1.0 if takes_guidance else None)
    return Submission("test", Caller("sizes"), generation, DeliverySettings(), names=WireNames())


async def test_every_model_id_generates_every_size_it_allows(
    tmp_path: Path, model_cache: Path
) -> None:
    # Each family's own tiny stand-in, so every family's pipeline (and the two-pass path of the
    # 2K sizes) runs at each size; easel-mini, the default stand-in, resizes one 32x32 picture.
    settings = Settings(data_dir=tmp_path / "data", preload_models=[], stand_in_max_steps=1,
                        batch_size=64, rate_limit_burst=len(PAIRS) + 1, stand_in="tiny")
    engine = Engine(model_cache, device="cpu", max_loaded=1)
    services = build_runtime(settings, dialects(), lambda: engine)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    services.store.create()
    worker = services.worker
    assert isinstance(worker, Worker)
    catalog = services.catalog
    jobs = {}
    for model_id, size in [(m, s) for m, s in PAIRS if drawn_here(m, s)]:
        job, _ = await services.jobs.submit(pair_submission(model_id, size.width, size.height))
        jobs[(model_id, str(size))] = job.id
    assert worker.run_until_empty() == len(jobs)

    for (model_id, size_text), job_id in jobs.items():
        done = await services.jobs.get(job_id)
        assert done is not None and done.status is JobStatus.COMPLETED, (model_id, size_text)
        data = await services.artifacts.image_bytes(done.images[0])
        with Image.open(io.BytesIO(data)) as image:
            assert f"{image.width}x{image.height}" == size_text, model_id
        metadata = read_metadata(data)
        backend = catalog.model(model_id).backend
        width, height = map(int, size_text.split("x"))
        own = backend.source == "easel/mini"  # easel-mini's own weights ship: no stand-in
        assert metadata["model"] == model_id and metadata["stand_in"] is not own
        assert metadata["backend"] == ("easel/mini" if own else f"easel/tiny-{backend.family}")
        assert metadata["size_path"] == backend.size_path(width, height)
    assert any(catalog.model(m).backend.size_path(*map(int, s.split("x"))) == "two-pass"
               for m, s in jobs), "the catalog's 2K sizes take the two-pass path"
    services.store.close()


def test_the_pairs_cover_every_tier_and_both_resolutions() -> None:
    catalog = Catalog.load()
    drawing = [m for m in catalog.models.values() if not m.upscales]
    assert {catalog.model(m).tier.name for m, _ in PAIRS} == {m.tier.name for m in drawing}
    assert {s.resolution for _, s in PAIRS} == {"1k", "2k"}
    assert len(PAIRS) == sum(len(m.sizes) for m in drawing)
    skipped = [(m, s) for m, s in PAIRS if not drawn_here(m, s)]
    assert any(s.resolution == "2k" for m, s in PAIRS if drawn_here(m, s))
    drawn_backends = {catalog.model(m).backend.source for m, s in PAIRS if drawn_here(m, s)}
    assert drawn_backends == {m.backend.source for m in drawing}
    for model_id, size in skipped:
        # The latent grid of every family steps by 16 pixels (VAE x8, 2x2 patches).
        assert size.width % 16 == 0 and size.height % 16 == 0, (model_id, size)
        plan = catalog.model(model_id).backend.two_pass(size.width, size.height)
        if plan is not None:  # its first pass is a one-pass size on the grid
            assert plan.base_width % 16 == 0 and plan.base_height % 16 == 0


@pytest.mark.parametrize("tier", ["standard", "ultra"])
def test_2k_takes_the_two_pass_path_where_the_model_card_stops_short(tier: str) -> None:
    backend = Catalog.load().tiers[tier].backend
    assert backend.size_path(2048, 2048) == "two-pass"
    assert backend.size_path(1024, 1024) == "native"
    plan = backend.two_pass(2816, 1536)
    assert plan is not None and (plan.base_width, plan.base_height) == (1408, 768)
