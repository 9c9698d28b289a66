"""What the engine is asked to do and what it gives back (framework-free types)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ImageSpec:
    """One image to draw: its prompt, its negative prompt and its seed."""

    prompt: str
    seed: int
    negative_prompt: str | None = None


@dataclass(frozen=True)
class SchedulerSpec:
    """A sampler a client named (Runware `scheduler`), as the catalog resolves it: a diffusers
    scheduler class, built from the pipeline's own scheduler config plus `options`."""

    name: str
    class_name: str
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class EngineBatch:
    """Compatible images that run in one pipeline call (same weights, size, steps, guidance,
    scheduler)."""

    source: str  # hub id, local directory, or a built-in easel/* model
    family: str
    width: int
    height: int
    steps: int
    guidance: float
    images: tuple[ImageSpec, ...]
    max_sequence_length: int | None = None
    scheduler: SchedulerSpec | None = None  # None: the pipeline's own


@dataclass(frozen=True)
class GeneratedImage:
    """Pixels as an HxWx3 uint8 array (numpy), with the seed that produced them."""

    pixels: Any
    seed: int
    width: int
    height: int


class Engine(Protocol):
    """What the worker needs of an engine. The diffusers engine (easel.engine.Engine) is the real
    one; tests use a fake that draws pixels from the seed without torch."""

    def warm(self, source: str) -> None:
        """Load the weights of `source` now (the models preloaded at start)."""

    def generate(
        self,
        batch: EngineBatch,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        """One image per ImageSpec, in order; stops between steps once `cancel` is set
        (CancelledError). Raises InferenceError when no usable image came out."""
        ...
