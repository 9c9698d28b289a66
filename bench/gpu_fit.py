"""Fit the GPU you have: peak GPU memory and seconds per image of each tier under each setting.

For every default tier (fast, standard, ultra: the catalog's backends) and every setting below
(docs/performance.md, "Fit the GPU you have"), it loads the tier through easel's engine with that
setting, draws one image (after a warm-up), and records torch.cuda.max_memory_allocated and
max_memory_reserved from before the load to after the image, the seconds per image, and the
denoiser's parameter bytes. Each setting gets a fresh engine; an out-of-memory is a row, not a
crash.

    # a CUDA machine with the weights in the Hugging Face cache (easel pull fast standard ultra)
    python bench/gpu_fit.py --out fit.json
    # without downloaded weights: the full-size architectures with random weights (memory does
    # not depend on the values; the nf4 settings need real files and are skipped)
    python bench/gpu_fit.py --random-weights --steps 2 --out fit.json
    # the harness itself, on the CPU with the tiny families (the test suite runs this)
    python bench/gpu_fit.py --tiny --size 64 --steps 2
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from easel.catalog import Catalog
from easel.domain.generation import EngineBatch, ImageSpec
from easel.engine import Engine
from easel.engine.fit import GpuFit, check_fit, parameter_bytes, place, quantize_loaded
from easel.engine.optimize import EngineOptions, denoiser
from easel.services.weights.files import absence

SETTINGS: dict[str, EngineOptions] = {
    "default": EngineOptions(),  # bf16 on CUDA (float32 on the CPU), everything on the GPU
    "model-offload": EngineOptions(offload="model"),
    "sequential-offload": EngineOptions(offload="sequential"),
    "int8": EngineOptions(weight_quant="int8"),
    "int8+model-offload": EngineOptions(weight_quant="int8", offload="model"),
    "int8-all": EngineOptions(weight_quant="int8", weight_quant_text_encoders=True),
    "int8-all+model-offload": EngineOptions(weight_quant="int8", weight_quant_text_encoders=True,
                                            offload="model"),
    "nf4+model-offload": EngineOptions(weight_quant="nf4", offload="model"),
    "nf4-all": EngineOptions(weight_quant="nf4", weight_quant_text_encoders=True),
    "nf4-all+model-offload": EngineOptions(weight_quant="nf4", weight_quant_text_encoders=True,
                                           offload="model"),
}
TIERS = ("fast", "standard", "ultra")
CARDS_GIB = {"24GB": 24.0, "16GB": 16.0}
CONTEXT_GIB = 0.5  # the CUDA context and cuBLAS workspaces, outside the allocator's count


@dataclass
class Row:
    tier: str
    backend: str
    source: str
    setting: str
    applied: list[str] = field(default_factory=list)
    size: int = 0
    steps: int = 0
    seconds_per_image: float | None = None
    load_seconds: float | None = None
    peak_allocated_gib: float | None = None
    peak_reserved_gib: float | None = None
    denoiser_gib: float | None = None
    fits: dict[str, bool] = field(default_factory=dict)
    skipped: str | None = None  # why this row was not measured
    oom: bool = False


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse(argv)
    device = "cpu" if args.tiny else "cuda"
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("bench/gpu_fit.py measures GPU memory: run it on a CUDA machine, or --tiny")
    catalog = Catalog.load()
    cache = Path(args.cache or tempfile.mkdtemp(prefix="easel-fit-"))
    rows = [measure(tier, name, SETTINGS[name], catalog, device, cache, args)
            for tier in args.tiers for name in args.settings]
    for row in rows:
        print_row(row)
    result = [asdict(row) for row in rows]
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true",
                        help="the tiny families on the CPU (checks the harness, measures no GPU)")
    parser.add_argument("--random-weights", action="store_true",
                        help="the full-size architectures with random weights (bench/full_size)")
    parser.add_argument("--tiers", type=lambda s: s.split(","), default=list(TIERS))
    parser.add_argument("--settings", type=lambda s: s.split(","), default=list(SETTINGS))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=None, help="default: the tier's own")
    parser.add_argument("--vae-tiling-pixels", type=int, default=None)
    parser.add_argument("--cache", help="where the tiny families are built (default: a temp dir)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    unknown = [s for s in args.settings if s not in SETTINGS] + [
        t for t in args.tiers if t not in TIERS]
    if unknown:
        parser.error(f"unknown tiers or settings: {', '.join(unknown)}")
    return args


def measure(tier: str, setting: str, options: EngineOptions, catalog: Catalog, device: str,
            cache: Path, args: argparse.Namespace) -> Row:
    backend = catalog.tiers[tier].backend
    source = f"easel/tiny-{backend.family}" if args.tiny else backend.source
    steps = args.steps or backend.steps
    row = Row(tier, backend.name, source, setting, size=args.size, steps=steps)
    options = EngineOptions(**{**asdict(options), "vae_tiling_pixels": args.vae_tiling_pixels})
    row.skipped = _unsupported(options.fit, device, source, args)
    if row.skipped:
        return row
    _reset(device)
    engine = Engine(cache, device=device, max_loaded=1, options=options)
    work = EngineBatch(source, backend.family, args.size, args.size, steps, backend.guidance,
                       (ImageSpec("a lighthouse on a cliff at dusk, photograph", 7),),
                       max_sequence_length=backend.max_sequence_length)
    try:
        started = time.perf_counter()
        if args.random_weights and not args.tiny:
            _adopt_random(engine, backend.name, source, options.fit, device)
        else:
            engine.warm(source)
        row.load_seconds = time.perf_counter() - started
        engine.generate(work)  # warm-up: kernels chosen, caches filled
        started = time.perf_counter()
        engine.generate(work)
        row.seconds_per_image = time.perf_counter() - started
        row.applied = engine.applied[source]
        row.denoiser_gib = parameter_bytes(denoiser(engine.pipeline(source))) / 2**30
        _peaks(row, device)
    except torch.OutOfMemoryError:
        row.oom = True
        _peaks(row, device)
        row.fits = dict.fromkeys(CARDS_GIB, False)
    finally:
        del engine
        _reset(device)
    return row


def _unsupported(fit: GpuFit, device: str, source: str, args: argparse.Namespace) -> str | None:
    try:
        check_fit(fit, device)
    except ValueError as exc:
        return str(exc)
    if args.random_weights and fit.weight_quant == "nf4":
        return "nf4 quantizes as the weights load: it needs real weight files"
    if args.random_weights or args.tiny:
        return None
    return absence(source)


def _adopt_random(engine: Engine, arch: str, source: str, fit: GpuFit, device: str) -> None:
    """The full-size architecture with random weights, built in bf16 on the CPU, quantized there
    (int8) and placed as the setting says, as a load from files would leave it."""
    sys.path.insert(0, str(Path(__file__).parent))
    from full_size import NEW_DEFAULTS

    pipe = NEW_DEFAULTS[arch]("cpu", torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    quantize_loaded(denoiser(pipe), fit)
    if fit.quantize_text_encoders:
        quantize_loaded(pipe.text_encoder, fit)
    place(pipe, device, fit)
    engine.adopt(source, pipe, fit.labels())


def _reset(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peaks(row: Row, device: str) -> None:
    if not device.startswith("cuda"):
        return  # the CPU has no allocator statistics: the harness check only
    row.peak_allocated_gib = torch.cuda.max_memory_allocated() / 2**30
    row.peak_reserved_gib = torch.cuda.max_memory_reserved() / 2**30
    row.fits = {card: row.peak_reserved_gib + CONTEXT_GIB <= gib
                for card, gib in CARDS_GIB.items()}


def print_row(row: Row) -> None:
    if row.skipped:
        print(f"{row.tier:9} {row.setting:24} skipped: {row.skipped}")
        return
    peak = "oom" if row.oom else (f"{row.peak_allocated_gib:6.2f} GiB"
                                  if row.peak_allocated_gib is not None else "  (cpu)")
    seconds = f"{row.seconds_per_image:7.2f} s" if row.seconds_per_image is not None else ""
    fits = " ".join(card for card, ok in row.fits.items() if ok)
    print(f"{row.tier:9} {row.setting:24} peak {peak} {seconds} fits: {fits or '-'}")


if __name__ == "__main__":
    main()
