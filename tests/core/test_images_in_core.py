"""Images in, in the core: the inputs' lifetime (kept from before the job exists until it
ends, however it ends), on the worker driven by run_until_empty (fake engine)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from easel.domain.job import JobStatus
from easel.domain.submission import ImageInput, ImagesIn, Submission, WireNames
from easel.runtime.build import build_blobs
from easel.services.images.inputs import input_keys
from easel.services.port import JobRef
from tests.core.conftest import CALLER, submission
from tests.core.test_loras import PRESENT
from tests.edge.test_images_in import picture, png
from tests.fakes import FakeEngine


def images_in_submission(prompt: str = "a red fox") -> Submission:
    base = submission(prompt, model="google:2@1", names=WireNames())
    images_in = ImagesIn(ImageInput("image", data=png(picture())), strength=0.5)
    return dataclasses.replace(base, generation=dataclasses.replace(
        base.generation, images_in=images_in))


@pytest.fixture
def present_core(core: Callable[..., Any], tmp_path: Path) -> Any:
    catalog = tmp_path / "present.toml"
    catalog.write_text(PRESENT)
    return core(FakeEngine(fail_on_prompt="boom"), catalog_file=catalog)


async def test_the_inputs_go_when_a_queued_job_is_cancelled_or_a_job_fails(
    present_core: Any,
) -> None:
    c = present_core
    blobs = build_blobs(c.settings)
    queued, _ = await c.runtime.jobs.submit(images_in_submission())
    image_key, _ = input_keys(queued.id)
    assert blobs.get(image_key) is not None  # kept before the job existed
    cancelled = await c.runtime.jobs.cancel(CALLER, JobRef(queued.id, "id"))
    assert cancelled.status is JobStatus.CANCELLED and blobs.get(image_key) is None
    failing, _ = await c.runtime.jobs.submit(images_in_submission("boom"))
    assert blobs.get(input_keys(failing.id)[0]) is not None
    c.worker.run_until_empty()
    failed = await c.runtime.jobs.get(failing.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert blobs.get(input_keys(failing.id)[0]) is None


async def test_a_job_recovered_after_a_crash_still_finds_its_inputs(present_core: Any) -> None:
    """The inputs are the store's, not the process's: a second worker (the first one died with
    the job claimed) runs it with them."""
    c = present_core
    job, _ = await c.runtime.jobs.submit(images_in_submission())
    assert c.runtime.store.claim("dead-worker", 1, 60.0, 3)  # claimed; then that worker died
    later = c.runtime.store.clock() + 3600
    c.runtime.store.clock = lambda: later  # past the lease
    assert c.worker.run_until_empty() == 1
    done = await c.runtime.jobs.get(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED
    (call,) = c.engine.calls
    assert input_keys(job.id)[0] in call.inputs
