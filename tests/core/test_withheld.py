"""A withheld image is never stored, uploaded nor sent in a webhook; its batch-mates are (the
real detector on a real picture, through the worker's encoder path)."""

from __future__ import annotations

from collections.abc import Callable

from easel.domain.job import JobStatus
from easel.domain.request import ImageFormat
from easel.domain.safety import OnFlagged, SafetyInput, SafetyLevel, Withheld
from easel.domain.submission import (
    DeliverySettings,
    ExactSize,
    GenerationInput,
    ModelChoice,
    Submission,
)
from easel.store.blobs import blob_key
from tests.core.conftest import CALLER, Core
from tests.serve import PictureEngine


def withheld_submission(prompt: str, on_flagged: OnFlagged) -> Submission:
    generation = GenerationInput(
        ModelChoice("google:2@3"), prompt, ExactSize(64, 64), num_images=1,
        output_format=ImageFormat.PNG,
        safety=SafetyInput(SafetyLevel.BLOCK_MEDIUM_AND_ABOVE, on_flagged))
    delivery = DeliverySettings(webhook="http://127.0.0.1:9/hook", webhook_per_image=True,
                                upload="http://127.0.0.1:9/upload")
    return Submission("test", CALLER, generation, delivery)


async def test_withheld_images_are_not_stored_uploaded_or_posted(
    core: Callable[..., Core],
) -> None:
    c = core(PictureEngine(), allow_loopback_urls=True)
    jobs = c.runtime.jobs
    held, _ = await jobs.submit(withheld_submission("[picture:torso] a figure",
                                                    OnFlagged.WITHHOLD))
    flagged, _ = await jobs.submit(withheld_submission("[picture:torso] a figure",
                                                       OnFlagged.FLAG))
    clean, _ = await jobs.submit(withheld_submission("[picture:chelsea] a cat",
                                                     OnFlagged.WITHHOLD))
    assert c.worker.run_until_empty() == 3
    kinds = {}
    for job in (held, flagged, clean):
        done = await jobs.get(job.id)
        assert done is not None and done.status is JobStatus.COMPLETED
        image = done.images[0]
        stored = c.runtime.artifacts.blobs.get(blob_key(image.image_id, "png")) is not None
        kinds[job.id] = (image.withheld, image.nsfw, stored,
                         sorted(d.kind for d in c.runtime.delivery.store.for_job(job.id)))
    assert kinds[held.id] == (Withheld.NSFW, True, False, ["webhook"])  # the job's own webhook
    billed = {job.id: (await jobs.get(job.id)).cost_usd for job in (held, flagged)}  # type: ignore[union-attr]
    assert billed == {held.id: 0.0, flagged.id: flagged.cost_usd}  # withheld: not billed
    assert kinds[flagged.id] == (None, True, True, ["upload", "webhook"])
    assert kinds[clean.id] == (None, False, True, ["upload", "webhook"])
