"""Fair sharing, attacked over HTTP (in-process, the real worker thread on the fake engine).

Each test holds the engine inside its first call (the fake engine's `on_step` waits on an event)
while it queues the attack, then lets the worker go and reads the order of the engine's calls:
which job ran when is what a victim's latency is made of, without timing anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from easel.domain.generation import EngineBatch
from easel.domain.job import JobStatus
from easel.runtime.serve import unknown_weight_owners
from easel.services.access.keys import env_principal
from tests.edge.conftest import KEY, Edge
from tests.fakes import FakeEngine
from tests.wire import WIRES, Runware, Wire

OTHER = "other-key"
TIERS = ("google/imagen4-fast", "google/imagen4", "google/imagen4-ultra")


class Gate:
    """Holds the engine inside its first call until the test has set the scene."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.go = threading.Event()

    def __call__(self, batch: EngineBatch, step: int) -> None:
        self.inside.set()
        assert self.go.wait(30), "the test never let the engine go"

    def hold(self) -> None:
        assert self.inside.wait(30), "the engine never started"


def submit(edge: Edge, key: str, prompt: str, model: str = "google/imagen4-fast",
           **fields: Any) -> str:
    reply = edge.client.post("/easel/jobs", json={"model": model, "prompt": prompt, **fields},
                             headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["id"])


def prompts_of(engine: FakeEngine) -> list[list[str]]:
    return [[image.prompt for image in call.images] for call in engine.calls]


def test_one_key_flooding_maximal_jobs_does_not_hold_back_another_keys_job(
    make_edge: Callable[..., Edge],
) -> None:
    """The queue-monopoly attack: one key queues 40 jobs of the most images; another key's
    one-image job, sent after all of them, runs in the very next engine call."""
    gate = Gate()
    engine = FakeEngine(on_step=gate)
    edge = make_edge(engine, api_keys=[KEY, OTHER], batch_size=4)
    flood = [submit(edge, KEY, f"flood {i}", num_images=4) for i in range(40)]
    gate.hold()  # the first flood job is in the engine, 39 are queued
    victim = submit(edge, OTHER, "victim")
    gate.go.set()
    assert edge.wait(victim).status is JobStatus.COMPLETED
    calls = prompts_of(engine)
    assert calls[1] == ["victim"], calls[:3]  # one batch (the running one), then its own
    assert all(edge.wait(job).status is JobStatus.COMPLETED for job in flood)


def test_callers_take_turns_by_work_not_by_requests(make_edge: Callable[..., Edge]) -> None:
    """Two keys with backlogs take turns by work: a four-image job costs four one-image jobs,
    so the key sending those runs four of them (one call) for each four-image job. In arrival
    order (one FIFO) every four-image job would run first."""
    gate = Gate()
    engine = FakeEngine(on_step=gate)
    edge = make_edge(engine, api_keys=[KEY, OTHER], batch_size=4)
    submit(edge, KEY, "opener")
    gate.hold()
    jobs = [submit(edge, KEY, f"big {i}", num_images=4) for i in range(3)]
    jobs += [submit(edge, OTHER, f"small {i}") for i in range(12)]
    gate.go.set()
    for job in jobs:
        assert edge.wait(job).status is JobStatus.COMPLETED
    calls = prompts_of(engine)[1:]
    assert [call[0].split()[0] for call in calls] == ["small", "big"] * 3, calls
    assert all(len(call) == 4 for call in calls), calls


def test_a_callers_backlog_is_capped_by_jobs_in_every_dialect(
    make_edge: Callable[..., Edge],
) -> None:
    """Past `max_jobs_per_caller` a caller gets 429 with Retry-After naming the cap, in every
    dialect's own shape; another key submits as before."""
    gate = Gate()
    engine = FakeEngine(on_step=gate)
    edge = make_edge(engine, api_keys=[KEY, OTHER], max_jobs_per_caller=2)
    try:
        submit(edge, KEY, "first")
        gate.hold()
        submit(edge, KEY, "second")
        for wire in WIRES:
            reply = wire.generate(KEY).send(edge.client)
            error = wire.error(reply)
            assert error.status == 429, (wire.name, reply.text)
            assert "EASEL_MAX_JOBS_PER_CALLER" in error.message, (wire.name, error)
            assert int(reply.headers["retry-after"]) >= 1, wire.name
        submit(edge, OTHER, "someone else")
    finally:
        gate.go.set()


def test_a_callers_backlog_is_capped_by_work(make_edge: Callable[..., Edge]) -> None:
    """Past `max_work_per_caller` work units: 429 naming it; one job alone always passes."""
    gate = Gate()
    engine = FakeEngine(on_step=gate)
    edge = make_edge(engine, api_keys=[KEY, OTHER], max_work_per_caller=0.0005)
    try:
        submit(edge, KEY, "larger than the cap alone", num_images=4)  # nothing else: accepted
        gate.hold()
        reply = edge.client.post("/easel/jobs", json={"model": "google/imagen4-fast",
                                                      "prompt": "one more"},
                                 headers={"Authorization": f"Bearer {KEY}"})
        assert reply.status_code == 429, reply.text
        assert "EASEL_MAX_WORK_PER_CALLER" in reply.json()["error"]["message"]
        assert int(reply.headers["retry-after"]) >= 1
        submit(edge, OTHER, "someone else")
    finally:
        gate.go.set()


def test_cancelling_ones_own_job_never_restarts_a_batch_mate(
    make_edge: Callable[..., Edge],
) -> None:
    """The cancel-loop attack: the attacker's job shares an engine call with the victim's and
    is cancelled mid-denoise. The call runs on (one call, every step), the victim completes
    from it, and the attacker's job ends cancelled with no image stored."""
    blocker, mid = Gate(), Gate()

    def on_step(batch: EngineBatch, step: int) -> None:
        prompts = [image.prompt for image in batch.images]
        if prompts == ["blocker"]:
            blocker(batch, step)
        elif "attacker" in prompts and step == 2:
            mid(batch, step)

    engine = FakeEngine(on_step=on_step)
    edge = make_edge(engine, api_keys=[KEY, OTHER], batch_size=4)
    submit(edge, OTHER, "blocker")
    blocker.hold()
    attacker = submit(edge, KEY, "attacker")
    victim = submit(edge, OTHER, "victim")
    blocker.go.set()
    mid.hold()  # both are in one engine call, at step 2
    reply = edge.client.post(f"/easel/jobs/{attacker}/cancel",
                             headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200, reply.text
    mid.go.set()
    assert edge.wait(victim).status is JobStatus.COMPLETED
    assert edge.wait(attacker).status is JobStatus.CANCELLED
    shared = [i for i, call in enumerate(prompts_of(engine)) if "victim" in call]
    assert len(shared) == 1, prompts_of(engine)  # never started again
    assert engine.steps_run[shared[0]] == engine.calls[shared[0]].steps
    assert edge.db("SELECT ready FROM images JOIN jobs ON jobs.id = images.job_id "
                   "WHERE jobs.id = ?", attacker) == [(0,)]


def test_cancelling_every_job_of_a_call_stops_the_engine(make_edge: Callable[..., Edge]) -> None:
    mid = Gate()

    def on_step(batch: EngineBatch, step: int) -> None:
        if step == 1:
            mid(batch, step)

    engine = FakeEngine(on_step=on_step)
    edge = make_edge(engine)
    job = submit(edge, KEY, "soon cancelled")
    mid.hold()
    edge.client.post(f"/easel/jobs/{job}/cancel", headers={"Authorization": f"Bearer {KEY}"})
    mid.go.set()
    assert edge.wait(job).status is JobStatus.CANCELLED
    assert engine.steps_run == [2]  # stopped at the next step


@pytest.mark.parametrize("affinity", [60.0, 0.0])
def test_interleaved_tiers_load_each_model_once(
    make_edge: Callable[..., Edge], affinity: float,
) -> None:
    """12 jobs round-robin over three tiers, on an engine that holds one model at a time: with
    model affinity each model is loaded once; in strict fair order, once per job."""
    gate = Gate()
    engine = FakeEngine(on_step=gate, capacity=1)
    edge = make_edge(engine, batch_size=1, model_affinity_seconds=affinity, stand_in="tiny")
    submit(edge, KEY, "opener", model=TIERS[0])
    gate.hold()
    jobs = [submit(edge, KEY, f"job {i}", model=TIERS[i % 3]) for i in range(12)]
    gate.go.set()
    for job in jobs:
        assert edge.wait(job).status is JobStatus.COMPLETED
    sources = {call.source for call in engine.calls}
    assert len(sources) == 3, sources  # three models behind the three tiers
    if affinity:
        assert len(engine.loads) == 3, engine.loads
    else:
        assert len(engine.loads) == 12, engine.loads  # the opener's model serves job 0


def test_model_affinity_ends_at_its_age_bound(make_edge: Callable[..., Edge]) -> None:
    """A job for another model waits for the loaded model's jobs only until the bound: once
    the worker has held its model that long, the fair order decides again."""
    gate = Gate()
    engine = FakeEngine(on_step=gate, capacity=1)
    edge = make_edge(engine, batch_size=1, model_affinity_seconds=30, stand_in="tiny")
    submit(edge, KEY, "opener", model=TIERS[0])
    gate.hold()
    other = submit(edge, KEY, "other model", model=TIERS[1])
    for i in range(3):
        submit(edge, KEY, f"same model {i}", model=TIERS[0])
    edge.clock.advance(31)  # the opener's model was loaded longer ago than the bound
    gate.go.set()
    assert edge.wait(other).status is JobStatus.COMPLETED
    assert prompts_of(engine)[1] == ["other model"], prompts_of(engine)


def test_every_wire_is_listed() -> None:
    assert {wire.name for wire in WIRES} >= {"runware", "wavespeed", "openai", "google",
                                               "easel"}
    assert all(isinstance(wire, Wire) for wire in WIRES)


def test_runware_tasks_queue_in_the_order_they_were_listed(
    make_edge: Callable[..., Edge],
) -> None:
    """Ten async tasks in one Runware body take places 0..9 behind the running job, in the
    body's order (they used to be inserted concurrently, in any order)."""
    gate = Gate()
    edge = make_edge(FakeEngine(on_step=gate), batch_size=1)
    try:
        submit(edge, KEY, "opener")
        gate.hold()
        tasks = [Runware().task(deliveryMethod="async", positivePrompt=f"task {i}")
                 for i in range(10)]
        assert edge.runware(tasks).status_code == 200
        places = [edge.client.get(f"/easel/jobs/{task['taskUUID']}",
                                  headers={"Authorization": f"Bearer {KEY}"}).json()["queue"]
                  for task in tasks]
        assert [place["ahead"] for place in places] == list(range(10)), places
    finally:
        gate.go.set()


def test_weights_naming_no_keys_owner_are_reported(make_edge: Callable[..., Edge]) -> None:
    edge = make_edge(api_keys=[KEY], caller_weights={env_principal(KEY): 2, "key:typo": 3})
    assert unknown_weight_owners(edge.settings) == ["key:typo"]
