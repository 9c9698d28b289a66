"""Loading diffusers pipelines: built-in stand-ins, local directories, the Hugging Face cache."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from easel.catalog import is_single_file
from easel.domain.errors import EaselError, ErrorKind
from easel.domain.generation import SchedulerSpec
from easel.engine.families import TINY_MODELS, stand_in_dir
from easel.engine.fit import GpuFit, check_fit, pipeline_quantization, place
from easel.engine.libraries import quiet_libraries
from easel.engine.single_file import load_single_file
from easel.engine.tiny import ensure_tiny, swin2sr
from easel.engine.upscaler import Upscaler, is_upscaler_folder
from easel.services.weights.files import cached_snapshot, is_local

log = logging.getLogger(__name__)


MINI_MODEL = "easel/mini"
TINY_UPSCALER = "easel/tiny-swin2sr"  # the upscale tier's stand-in (a transformers model)


@dataclass(frozen=True)
class Placement:
    device: str
    dtype: torch.dtype


def default_placement(device: str | None = None) -> Placement:
    """CUDA in bf16 when present, else CPU in float32 (bf16 on CPU is slow and lossy)."""
    chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if chosen.startswith("cuda"):
        _check_cuda(chosen)
    dtype = torch.bfloat16 if chosen.startswith("cuda") else torch.float32
    return Placement(chosen, dtype)


def _check_cuda(device: str) -> None:
    """A device this torch cannot use is said plainly, at start, not by a CUDA assertion."""
    if not torch.cuda.is_available():
        build = "a CPU build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise EaselError(ErrorKind.UNAVAILABLE, (
            f"EASEL_DEVICE={device}, but torch {torch.__version__} ({build}) sees no CUDA "
            "device: install the CUDA build of torch (scripts/bootstrap with EASEL_TORCH=cuda) "
            "or set EASEL_DEVICE=cpu"), "device")
    index = torch.device(device).index
    if index is not None and index >= torch.cuda.device_count():
        raise EaselError(ErrorKind.UNAVAILABLE, (
            f"EASEL_DEVICE={device}, but this machine has {torch.cuda.device_count()} CUDA "
            "device(s)"), "device")


def resolve_local_path(source: str, cache_dir: Path) -> Path | None:
    """A directory to load from, building the built-in models on first use; for a hub id, its
    snapshot in the Hugging Face cache (the folder weights_present checked)."""
    if source in TINY_MODELS:
        return stand_in_dir(source, cache_dir / "tiny")
    if source == TINY_UPSCALER:
        return ensure_tiny(source, swin2sr, cache_dir / "tiny")
    if source == MINI_MODEL:
        from easel.mini.weights import mini_weights_dir  # the trained weights ship in the package

        return mini_weights_dir()
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    return None if is_local(source) else cached_snapshot(source)


def load_pipeline(
    source: str, cache_dir: Path, placement: Placement, fit: GpuFit | None = None,
    config: str | None = None,
) -> Any:
    """Load by local directory or hub id through diffusers' real `from_pretrained` path, or a
    single .safetensors file through `from_single_file` with its diffusers `config`; quantize
    and place it as `fit` says (docs/performance.md, "Fit the GPU you have").

    Hub ids load from the local Hugging Face cache only (`easel pull` downloads): a server must
    never start a multi-GB download in the middle of a request.
    """
    from diffusers import DiffusionPipeline

    started = time.perf_counter()
    quiet_libraries()
    local = None if is_single_file(source) else resolve_local_path(source, cache_dir)
    if local is not None and is_upscaler_folder(local):
        # A super-resolution model (transformers), small: placed whole, nothing to fit.
        pipe: Any = Upscaler.from_pretrained(local, placement.dtype, placement.device)
    elif source in (MINI_MODEL, "easel/tiny-mini"):
        from easel.mini.pipeline import EaselMiniPipeline

        pipe = EaselMiniPipeline.from_pretrained(str(local), dtype=placement.dtype)
        pipe.to(placement.device)  # easel-mini is small: nothing to fit
    else:
        fit = fit or GpuFit()
        check_fit(fit, placement.device)
        if is_single_file(source):
            pipe = load_single_file(source, config, placement.dtype, fit)
        else:
            pipe = DiffusionPipeline.from_pretrained(
                str(local) if local is not None else source, dtype=placement.dtype,
                local_files_only=True, quantization_config=pipeline_quantization(fit))
        place(pipe, placement.device, fit)
    pipe.set_progress_bar_config(disable=True)
    seconds = time.perf_counter() - started
    log.info("loaded %s (%s) on %s in %.1f s", source, type(pipe).__name__, placement.device,
             seconds, extra={"model_source": source, "device": placement.device,
                             "seconds": round(seconds, 2)})
    return pipe


@contextmanager
def scheduled(pipe: Any, spec: SchedulerSpec | None) -> Iterator[None]:
    """Run one call with the scheduler a client named, built from the pipeline's own scheduler
    config (so its shift and sigma settings carry over); the pipeline's own comes back after.
    The engine's lock makes the swap safe: one pipeline call at a time."""
    if spec is None:
        yield
        return
    import diffusers

    original = pipe.scheduler
    scheduler_class = getattr(diffusers, spec.class_name)
    pipe.scheduler = scheduler_class.from_config(original.config, **dict(spec.options))
    try:
        yield
    finally:
        pipe.scheduler = original


def weights_bytes(path: Path) -> int:
    """On-disk size of a pipeline's weights: a fair estimate of the memory it will need."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.suffix in {".safetensors", ".bin"})


def gpu_bytes_needed(path: Path, fit: GpuFit) -> int:
    """What loading `path` takes of the GPU: all of it, the largest component with model
    offload, next to nothing with sequential offload (quantization is not counted, so the
    estimate errs on the side of making room)."""
    if fit.offload == "sequential":
        return 0
    if fit.offload == "model" and path.is_dir():
        return max((weights_bytes(part) for part in path.iterdir() if part.is_dir()), default=0)
    return weights_bytes(path)
