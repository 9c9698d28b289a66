"""What the engine is asked to do and what it gives back (framework-free types)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ImageSpec:
    """One image to draw: its prompt, its negative prompt and its seed."""

    prompt: str
    seed: int
    negative_prompt: str | None = None


@dataclass(frozen=True)
class EngineBatch:
    """Compatible images that run in one pipeline call (same weights, size, steps, guidance)."""

    source: str  # hub id, local directory, or a built-in easel/* model
    family: str
    width: int
    height: int
    steps: int
    guidance: float
    images: tuple[ImageSpec, ...]
    max_sequence_length: int | None = None

    @property
    def compat_key(self) -> tuple[Any, ...]:
        return (self.source, self.width, self.height, self.steps, self.guidance)


@dataclass(frozen=True)
class GeneratedImage:
    """Pixels as an HxWx3 uint8 array (numpy), with the seed that produced them."""

    pixels: Any
    seed: int
    width: int
    height: int


class ProgressCallback(Protocol):
    def __call__(self, step: int, total: int) -> None: ...
