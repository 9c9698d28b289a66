"""A worker's health, told truly: a model this server will not serve (strict with its weights
absent) is skipped at preload with a warning and the engine still serves the others (it was left
unbuilt, and every job failed); a model id the catalog lacks refuses the start; a worker whose
engine did not load claims nothing (`easel worker` exits 1); a job a claim gives up for its
attempts is counted and logged."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from easel.domain.job import JobStatus
from easel.runtime.build import start_problem, unknown_preloads
from easel.runtime.work import work
from tests.core.conftest import Core, make_settings, submission
from tests.fakes import FakeEngine


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


def broken_engine() -> FakeEngine:
    raise RuntimeError("no CUDA device here")


async def test_a_worker_whose_engine_did_not_load_claims_nothing(
    core: Callable[..., Core],
) -> None:
    """Each job it took would fail, though a healthy worker on the store could run it."""
    c = core()
    c.worker.engine_factory = broken_engine
    job, _ = await c.runtime.jobs.submit(submission())
    c.worker.start()
    try:
        assert c.worker.wait_loaded(30)
        assert c.worker.load_error == "RuntimeError: no CUDA device here"
        assert not c.worker.wait_ready(0)
    finally:
        c.worker.stop(timeout=30)
    queued = await c.runtime.jobs.get(job.id)
    assert queued is not None and queued.status is JobStatus.QUEUED and queued.attempts == 0


def test_easel_worker_exits_when_its_engine_did_not_load(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.data_dir.mkdir(parents=True)
    with pytest.raises(SystemExit) as stopped:
        work(settings, broken_engine)
    assert "its engine did not load (RuntimeError: no CUDA device here)" in str(stopped.value)


async def test_a_job_given_up_for_its_attempts_is_counted_and_logged(
    core: Callable[..., Core], caplog: pytest.LogCaptureFixture
) -> None:
    """Failed by a claim (its workers kept dying), not by a worker's own decision: it was in
    easel_jobs{state="failed"} but in no failure counter and no log line."""
    c = core(max_attempts=1, lease_seconds=10)
    now = [1_000_000.0]
    c.runtime.store.clock = lambda: now[0]
    job, _ = await c.runtime.jobs.submit(submission())
    assert c.runtime.store.claim("a-worker-that-dies", 4, 10, 1)
    now[0] += 11  # its lease ran out: the one attempt is spent
    with caplog.at_level(logging.WARNING, "easel.store"):
        assert c.worker.run_until_empty() == 0
    done = await c.runtime.jobs.get(job.id)
    assert done is not None and done.status is JobStatus.FAILED
    registry = c.worker.metrics.registry
    assert registry.get_sample_value("easel_jobs_failed_total", {"code": "worker_lost"}) == 1
    assert any(f"job {job.id} failed: worker_lost" in r.getMessage() for r in caplog.records)


def test_a_certificate_without_its_key_refuses_the_start_in_one_line(tmp_path: Path) -> None:
    """It stopped `easel serve` and `easel worker` with a traceback, once started."""
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    problem = start_problem(make_settings(tmp_path / "s", c2pa_certificate=cert))
    assert problem == ("content credentials: C2PA signing needs both EASEL_C2PA_CERTIFICATE "
                       "and EASEL_C2PA_PRIVATE_KEY")
    assert start_problem(make_settings(tmp_path / "t")) is None
