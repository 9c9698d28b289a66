from __future__ import annotations

from pathlib import Path

import pytest

from easel.mini.pipeline import EaselMiniPipeline, build_random_pipeline

# "tiny" has the GPU recipe's structure (UNet base + SR UNet), "tiny-cpu-pooled" the shipped
# one's (a 32x32 UNet with the pooled text, no SR stage), "tiny-dit" the patch transformers'
# (32x32, no SR stage).
TINY_PRESETS = ("tiny", "tiny-cpu-pooled", "tiny-dit")


@pytest.fixture(scope="session", params=TINY_PRESETS)
def tiny_preset(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tiny_preset: str) -> Path:
    """A tiny random-weight pipeline of each structure, saved once for the whole session."""
    path = tmp_path_factory.mktemp(f"mini-{tiny_preset}")
    build_random_pipeline(seed=0, preset=tiny_preset).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_pipe(tiny_dir: Path) -> EaselMiniPipeline:
    pipe = EaselMiniPipeline.from_pretrained(tiny_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe
