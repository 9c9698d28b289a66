from __future__ import annotations

from pathlib import Path

import pytest

from easel.mini.pipeline import EaselMiniPipeline, build_random_pipeline


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight pipeline saved once for the whole session."""
    path = tmp_path_factory.mktemp("mini-tiny")
    build_random_pipeline(seed=0, preset="tiny").save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_pipe(tiny_dir: Path) -> EaselMiniPipeline:
    pipe = EaselMiniPipeline.from_pretrained(tiny_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe
