"""easel-mini: a small text-to-image model (an Imagen-style cascade) trained by the project.

The pipeline is imported lazily: the data generator and the checker are useful without pulling
in diffusers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EaselMiniPipeline", "build_random_pipeline"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from easel.mini import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
