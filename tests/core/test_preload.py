"""What the worker preloads at start: a model this server will not serve (strict with its weights
absent) is skipped with a warning and the engine still serves the others (it was left unbuilt,
and every job failed); a model id the catalog lacks refuses the start."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from easel.domain.job import JobStatus
from easel.runtime.serve import unknown_preloads
from tests.core.conftest import Core, make_settings, submission


async def test_strict_skips_a_preload_without_weights_and_serves_the_rest(
    core: Callable[..., Core], caplog: pytest.LogCaptureFixture
) -> None:
    c = core(strict=True, preload_models=["google:2@3", "easel/mini"])
    with caplog.at_level(logging.WARNING, "easel.worker"):
        c.worker.load()
    assert c.worker.engine is not None and c.worker.load_error is None
    assert c.worker.wait_ready(0)
    assert c.engine.warmed == ["easel/mini"]  # Fast's weights are absent: not a stand-in
    assert any("not preloading google:2@3" in r.getMessage() and "strict" in r.getMessage()
               for r in caplog.records)
    job, _ = await c.runtime.jobs.submit(submission(model="easel/mini"))
    assert c.worker.run_until_empty() == 1
    done = await c.runtime.jobs.get(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED


def test_an_unknown_model_to_preload_refuses_the_start(tmp_path: Path) -> None:
    assert unknown_preloads(make_settings(tmp_path / "a", preload_models=["google:2@3"])) is None
    refused = unknown_preloads(make_settings(tmp_path / "b", preload_models=["google:2@33"]))
    assert refused is not None and "EASEL_PRELOAD_MODELS" in refused
    assert "'google:2@33'" in refused and "google:2@3" in refused  # did you mean
