"""The job service and the worker in-process, on real SQLite, with the fake engine."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from easel.domain.errors import EaselError, ErrorKind, Throttled
from easel.domain.job import JobStatus
from easel.domain.outcomes import JobFailed, StillRunning
from easel.domain.submission import Caller, DeliverySettings, WireNames
from easel.services.port import JobRef
from tests.core.conftest import CALLER, Core, submission
from tests.fakes import FakeEngine


async def test_submit_then_run_until_empty_completes_with_reproducible_seeds(
    core: Callable[..., Core],
) -> None:
    c = core()
    job, created = await c.runtime.jobs.submit(submission(n=2, seed=7))
    assert created and job.status is JobStatus.QUEUED
    assert c.worker.run_until_empty() == 1
    done = await c.runtime.jobs.get(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert [image.seed for image in done.images] == [7, 8]
    assert all(image.ready for image in done.images)
    data = await c.runtime.artifacts.image_bytes(done.images[0])
    assert data.startswith(b"\x89PNG")
    assert len(c.engine.calls) == 1 and len(c.engine.calls[0].images) == 2


async def test_a_task_id_is_idempotent_and_a_conflict_names_the_clients_parameter(
    core: Callable[..., Core],
) -> None:
    c = core()
    names = WireNames({"task_id": "taskUUID"})
    first, created = await c.runtime.jobs.submit(submission(task_id="t-1", names=names))
    again, created_again = await c.runtime.jobs.submit(submission(task_id="t-1", names=names))
    assert created and not created_again and again.id == first.id
    with pytest.raises(EaselError) as info:
        await c.runtime.jobs.submit(submission("another prompt", task_id="t-1", names=names))
    assert info.value.kind is ErrorKind.CONFLICT and info.value.parameter == "taskUUID"
    assert "taskUUID" in info.value.message


async def test_a_clients_retry_without_an_id_is_its_first_attempts_job(
    core: Callable[..., Core],
) -> None:
    """An SDK's automatic retry (no id of its own) is matched to the caller's recent job with
    the same parameters, never a failed one, another caller's, or one past the window."""
    c = core()
    now = [1_000_000.0]
    c.runtime.store.clock = lambda: now[0]
    first, _ = await c.runtime.jobs.submit(submission())
    retry = dataclasses.replace(submission(), repeats_earlier=True)
    again, created = await c.runtime.jobs.submit(retry)
    assert again.id == first.id and not created
    other = dataclasses.replace(retry, caller=Caller("someone-else"))
    assert (await c.runtime.jobs.submit(other))[0].id != first.id
    changed = dataclasses.replace(submission("another prompt"), repeats_earlier=True)
    assert (await c.runtime.jobs.submit(changed))[0].id != first.id
    await c.runtime.jobs.cancel(CALLER, JobRef.easel(first.id, "id"))
    replaced, created = await c.runtime.jobs.submit(retry)  # the first was cancelled
    assert created and replaced.id != first.id
    now[0] += 3600  # past the window: a new job
    late, created = await c.runtime.jobs.submit(retry)
    assert created and late.id != replaced.id


async def test_the_cores_errors_use_the_clients_spelling(core: Callable[..., Core]) -> None:
    c = core()
    names = WireNames({"negative_prompt": "negativePrompt", "num_images": "numberResults",
                       "prompt": "positivePrompt"})
    cases = [
        (submission(negative="blur", model="google:2@1", names=names), "negativePrompt",
         ErrorKind.UNSUPPORTED),
        (submission(n=99, names=names), "numberResults", ErrorKind.INVALID),
        (submission("", names=names), "positivePrompt", ErrorKind.MISSING),
        (submission(model="nope", names=names), "model", ErrorKind.UNKNOWN_MODEL),
    ]
    for sub, parameter, kind in cases:
        with pytest.raises(EaselError) as info:
            await c.runtime.jobs.submit(sub)
        assert (info.value.parameter, info.value.kind) == (parameter, kind)
        assert parameter in info.value.message or kind is ErrorKind.UNKNOWN_MODEL
    assert await asyncio.to_thread(c.runtime.store.queued_count) == 0


async def test_rate_limit_per_caller_with_retry_after(core: Callable[..., Core]) -> None:
    c = core(rate_limit_per_second=0.001, rate_limit_burst=1)
    await c.runtime.jobs.submit(submission(caller=Caller("a")))
    with pytest.raises(Throttled) as info:
        await c.runtime.jobs.submit(submission(caller=Caller("a")))
    assert info.value.kind is ErrorKind.RATE_LIMITED and info.value.retry_after >= 1
    await c.runtime.jobs.submit(submission(caller=Caller("b")))  # another caller is unaffected


async def test_queue_cap(core: Callable[..., Core]) -> None:
    c = core(max_queue_depth=2)
    for _ in range(2):
        await c.runtime.jobs.submit(submission())
    with pytest.raises(Throttled) as info:
        await c.runtime.jobs.submit(submission())
    assert info.value.kind is ErrorKind.UNAVAILABLE and info.value.retry_after > 0


async def test_every_outbound_url_is_checked_by_the_core(core: Callable[..., Core]) -> None:
    c = core()
    names = WireNames({"webhook": "webhookURL", "upload": "uploadEndpoint"})
    for delivery, parameter in (
        (DeliverySettings(webhook="http://10.0.0.7/hook"), "webhookURL"),
        (DeliverySettings(upload="http://169.254.169.254/latest"), "uploadEndpoint"),
        (DeliverySettings(webhook="ftp://example.com/x"), "webhookURL"),
    ):
        with pytest.raises(EaselError) as info:
            await c.runtime.jobs.submit(submission(delivery=delivery, names=names))
        assert info.value.parameter == parameter and info.value.kind is ErrorKind.INVALID
    assert await asyncio.to_thread(c.runtime.store.queued_count) == 0


async def test_an_engine_failure_fails_its_job_with_a_closed_kind(
    core: Callable[..., Core],
) -> None:
    c = core(FakeEngine(fail_on_prompt="POISON"))
    bad, _ = await c.runtime.jobs.submit(submission("POISON pill"))
    c.worker.run_until_empty()
    job = await c.runtime.jobs.get(bad.id)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error is ErrorKind.INFERENCE and "told to fail" in (job.error_message or "")


async def test_run_returns_raises_failed_or_still_running(core: Callable[..., Core]) -> None:
    c = core(FakeEngine(fail_on_prompt="POISON"))
    with pytest.raises(StillRunning) as waiting:  # no worker runs: the wait runs out
        await c.runtime.jobs.run(submission(), timeout=0)
    assert waiting.value.kind is ErrorKind.TIMEOUT
    runner = asyncio.create_task(c.runtime.jobs.run(submission(seed=3), timeout=60))
    failing = asyncio.create_task(c.runtime.jobs.run(submission("POISON"), timeout=60))
    await asyncio.sleep(0)
    while await asyncio.to_thread(c.runtime.store.queued_count) < 3:
        await asyncio.sleep(0.01)
    await asyncio.to_thread(c.worker.run_until_empty)
    job = await runner
    assert job.status is JobStatus.COMPLETED and job.images[0].seed == 3
    with pytest.raises(JobFailed) as failed:
        await failing
    assert failed.value.kind is ErrorKind.INFERENCE
    # The shared batch of three failed; then each of the three jobs ran on its own.
    assert [len(call.images) for call in c.engine.calls] == [3, 1, 1, 1]


async def test_cancel_a_queued_job(core: Callable[..., Core]) -> None:
    c = core()
    job, _ = await c.runtime.jobs.submit(submission())
    cancelled = await c.runtime.jobs.cancel(CALLER, JobRef.easel(job.id, "job_id"))
    assert cancelled.status is JobStatus.CANCELLED and cancelled.error is ErrorKind.CANCELLED
    assert c.worker.run_until_empty() == 0 and c.engine.calls == []
    with pytest.raises(EaselError) as info:
        await c.runtime.jobs.cancel(CALLER, JobRef.easel("no-such-job", "job_id"))
    assert info.value.kind is ErrorKind.NOT_FOUND


async def test_a_running_job_ends_within_one_step_and_its_batch_mate_keeps_its_progress(
    core: Callable[..., Core],
) -> None:
    loop = asyncio.get_running_loop()
    target: dict[str, str] = {}
    cancelled_at: list[int] = []
    seen: dict[int, JobStatus] = {}

    def on_step(_batch: object, step: int) -> None:
        if step == 2 and not cancelled_at:  # mid-denoise: the caller cancels now
            cancelled_at.append(step)
            cancel = c.runtime.jobs.cancel(CALLER, JobRef.easel(target["id"], "job_id"))
            asyncio.run_coroutine_threadsafe(cancel, loop).result()
        if step == 4:  # two steps later, the engine call still running for the batch-mate
            found = c.runtime.store.get(target["id"])
            assert found is not None
            seen[step] = found.status

    c = core(FakeEngine(on_step=on_step), stand_in_max_steps=50)
    victim, _ = await c.runtime.jobs.submit(submission("victim"))
    mate, _ = await c.runtime.jobs.submit(submission("batch mate"))
    target["id"] = victim.id
    await asyncio.to_thread(c.worker.run_until_empty)
    first_call = c.engine.calls[0]
    assert {s.prompt for s in first_call.images} == {"victim", "batch mate"}  # one batch
    assert len(c.engine.calls) == 1  # never started again: the batch-mate lost nothing
    assert c.engine.steps_run[0] == first_call.steps > cancelled_at[0] + 1
    assert seen == {4: JobStatus.CANCELLED}  # ended within one step, while the call ran on
    ended = await c.runtime.jobs.get(victim.id)
    assert ended is not None and ended.status is JobStatus.CANCELLED
    assert not any(image.ready for image in ended.images)  # its images were discarded
    other = await c.runtime.jobs.get(mate.id)
    assert other is not None and other.status is JobStatus.COMPLETED
    assert other.attempts == 1


async def test_cancel_after_completion_leaves_the_job_completed(
    core: Callable[..., Core],
) -> None:
    c = core()
    job, _ = await c.runtime.jobs.submit(submission())
    c.worker.run_until_empty()
    after = await c.runtime.jobs.cancel(CALLER, JobRef.easel(job.id, "job_id"))
    assert after.status is JobStatus.COMPLETED


async def test_a_job_whose_worker_died_is_run_again_by_another_once(
    core: Callable[..., Core],
) -> None:
    """The first worker claims and dies (it never finishes); once its lease has expired on the
    store's clock, a second worker runs the job to completion exactly once."""
    from easel.runtime.build import build_worker
    from easel.store import JobStore
    from tests.server.test_store import FakeClock

    c = core()
    job, _ = await c.runtime.jobs.submit(submission(n=2, seed=11))
    clock = FakeClock(now=c.runtime.store.clock())
    store = JobStore(c.settings.database_url, clock)
    assert [j.id for j in store.claim("dead-worker", 4, 30, 3)] == [job.id]
    second = build_worker(c.settings, lambda: c.engine, store=store)
    assert second.run_until_empty() == 0  # the lease is still held
    clock.advance(31)
    assert second.run_until_empty() == 1
    done = store.get(job.id)
    assert done is not None and done.status is JobStatus.COMPLETED and done.attempts == 2
    assert [image.seed for image in done.images] == [11, 12]
    assert not store.complete(job.id, "dead-worker", [], "late", 0.0)  # one terminal transition
    store.close()


async def test_a_caller_sees_and_cancels_only_its_own_jobs(core: Callable[..., Core]) -> None:
    c = core()
    mine, _ = await c.runtime.jobs.submit(submission(task_id="T-1", caller=Caller("a"),
                                                      dialect="runware"))
    theirs, _ = await c.runtime.jobs.submit(submission("other", task_id="t-1",
                                                        caller=Caller("b"), dialect="runware"))
    assert mine.id != theirs.id  # the same client id under two keys: two jobs
    assert await c.runtime.jobs.get(mine.id, Caller("b")) is None
    by_task = JobRef.chosen("runware", "t-1", "taskUUID")
    assert (await c.runtime.jobs.find(Caller("a"), by_task)).id == mine.id  # any case
    with pytest.raises(EaselError) as other:
        await c.runtime.jobs.find(Caller("b"), JobRef.any(mine.id, "job_id"))
    assert other.value.kind is ErrorKind.NOT_FOUND and other.value.parameter == "job_id"
    with pytest.raises(EaselError):
        await c.runtime.jobs.cancel(Caller("b"), JobRef.easel(mine.id, "job_id"))
    assert (await c.runtime.jobs.get(mine.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]


async def test_a_huge_ttl_is_refused_by_the_core(core: Callable[..., Core]) -> None:
    c = core()
    names = WireNames({"ttl": "ttl"})
    with pytest.raises(EaselError) as info:
        await c.runtime.jobs.submit(submission(delivery=DeliverySettings(ttl_seconds=10**12),
                                                names=names))
    assert info.value.parameter == "ttl" and info.value.kind is ErrorKind.INVALID


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # a read-only SQLite file
async def test_a_job_store_that_cannot_be_written_refuses_with_retry_after(
    core: Callable[..., Core], tmp_path: Path
) -> None:
    """A real SQLite database opened read-only (what a full or read-only disk gives): nothing is
    acknowledged, the refusal says when to retry, readiness says why."""
    c = core()
    path = Path(c.settings.database_url.removeprefix("sqlite:///"))
    read_only = core(database=f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(Throttled) as info:
        await read_only.runtime.jobs.submit(submission())
    assert info.value.kind is ErrorKind.UNAVAILABLE and info.value.retry_after > 0
    assert "job store cannot be written" in info.value.message
    read_only.worker.load()
    assert "job store cannot be written" in await read_only.runtime.core.not_ready_reason()
    c.worker.load()
    assert await c.runtime.core.not_ready_reason() == ""
