"""Loading diffusers pipelines: built-in stand-ins, local directories, the Hugging Face cache."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from easel.domain.generation import SchedulerSpec
from easel.engine.families import TINY_MODELS, stand_in_dir
from easel.engine.libraries import quiet_libraries

log = logging.getLogger(__name__)


MINI_MODEL = "easel/mini"


@dataclass(frozen=True)
class Placement:
    device: str
    dtype: torch.dtype


def default_placement(device: str | None = None) -> Placement:
    """CUDA in bf16 when present, else CPU in float32 (bf16 on CPU is slow and lossy)."""
    chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if chosen.startswith("cuda") else torch.float32
    return Placement(chosen, dtype)


def resolve_local_path(source: str, cache_dir: Path) -> Path | None:
    """A directory to load from, building the built-in models on first use."""
    if source in TINY_MODELS:
        return stand_in_dir(source, cache_dir / "tiny")
    if source == MINI_MODEL:
        from easel.mini.weights import mini_weights_dir  # the trained weights ship in the package

        return mini_weights_dir()
    path = Path(source).expanduser()
    return path if path.is_dir() else None


def load_pipeline(source: str, cache_dir: Path, placement: Placement) -> Any:
    """Load by local directory or hub id through diffusers' real `from_pretrained` path.

    Hub ids load from the local Hugging Face cache only (`easel pull` downloads): a server must
    never start a multi-GB download in the middle of a request.
    """
    from diffusers import DiffusionPipeline

    quiet_libraries()
    local = resolve_local_path(source, cache_dir)
    if source in (MINI_MODEL, "easel/tiny-mini"):
        from easel.mini.pipeline import EaselMiniPipeline

        pipe = EaselMiniPipeline.from_pretrained(str(local), dtype=placement.dtype)
    elif local is not None:
        pipe = DiffusionPipeline.from_pretrained(str(local), dtype=placement.dtype)
    else:
        pipe = DiffusionPipeline.from_pretrained(
            source, dtype=placement.dtype, local_files_only=True
        )
    pipe.to(placement.device)
    pipe.set_progress_bar_config(disable=True)
    log.info("loaded %s (%s) on %s", source, type(pipe).__name__, placement.device)
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
    return sum(f.stat().st_size for f in path.rglob("*") if f.suffix in {".safetensors", ".bin"})
