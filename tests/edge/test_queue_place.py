"""A queued job's place in the queue, as easel's API, its event stream and `easel jobs show`
say it: the jobs ahead of it in the store's fair order, and about how long until its turn."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from typing import Any

from easel.domain.generation import EngineBatch
from tests.edge.conftest import KEY, Edge
from tests.fakes import FakeEngine

AUTH = {"Authorization": f"Bearer {KEY}"}


class Turnstile:
    """Holds each engine call at its first step until the test lets one through."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.passes = threading.Semaphore(0)

    def __call__(self, batch: EngineBatch, step: int) -> None:
        if step == 0:
            self.entered.release()
            assert self.passes.acquire(timeout=30), "the test never let the call through"

    def wait_inside(self) -> None:
        assert self.entered.acquire(timeout=30), "no engine call started"


def submit(edge: Edge, prompt: str) -> str:
    reply = edge.client.post("/easel/jobs", json={"model": "google/imagen4-fast",
                                                  "prompt": prompt}, headers=AUTH)
    assert reply.status_code == 202, reply.text
    return str(reply.json()["id"])


def queue_of(edge: Edge, job_id: str) -> Any:
    return edge.client.get(f"/easel/jobs/{job_id}", headers=AUTH).json()["queue"]


def test_three_queued_jobs_stand_2_1_0_and_advance(make_edge: Callable[..., Edge]) -> None:
    gate = Turnstile()
    edge = make_edge(FakeEngine(on_step=gate), batch_size=1)
    first = submit(edge, "running")
    gate.wait_inside()
    jobs = [submit(edge, f"queued {i}") for i in range(3)]
    assert queue_of(edge, first) is None  # running: no place in the queue
    assert [queue_of(edge, job)["ahead"] for job in jobs] == [0, 1, 2]
    seen: queue.Queue[Any] = queue.Queue()
    with edge.client.stream("GET", f"/easel/jobs/{jobs[2]}/events", headers=AUTH) as events:
        lines = events.iter_lines()
        read = threading.Thread(target=lambda: _queue_events(lines, seen.put))
        read.start()
        shown = _until_ahead(seen, 2)
        for place in (1, 0):  # one call through at a time: the last job moves up one place
            gate.passes.release()
            gate.wait_inside()
            shown += _until_ahead(seen, place)  # the stream said so before the next moves
        gate.passes.release()  # the one before it ends
        gate.wait_inside()
        gate.passes.release()  # and it runs
        read.join(30)
    shown += list(seen.queue)
    aheads = [place["ahead"] for place in shown if place is not None]
    moves = [ahead for i, ahead in enumerate(aheads) if i == 0 or aheads[i - 1] != ahead]
    assert moves == [2, 1, 0], shown  # (the estimate may change in between: an event each)
    assert shown[-1] is None  # then it ran (the end event has no place)


def test_the_wait_is_estimated_from_what_jobs_took_here(make_edge: Callable[..., Edge]) -> None:
    """Before any job has finished there is nothing to estimate from (None); afterwards the
    wait is the work ahead at the speed measured."""
    gate = Turnstile()
    edge = make_edge(FakeEngine(on_step=gate, step_seconds=0.01), batch_size=1)
    first = submit(edge, "running")
    gate.wait_inside()
    second = submit(edge, "queued")
    assert queue_of(edge, second) == {"ahead": 0, "wait_seconds": None}
    gate.passes.release()
    edge.wait(first)
    gate.wait_inside()  # the second runs
    third, fourth = submit(edge, "third"), submit(edge, "fourth")
    waits = [queue_of(edge, job)["wait_seconds"] for job in (third, fourth)]
    assert all(isinstance(wait, int | float) and wait >= 0 for wait in waits), waits
    assert waits[1] >= waits[0]
    for _ in range(3):
        gate.passes.release()


def _queue_events(lines: Any, put: Callable[[Any], None]) -> None:
    """Hands on the `queue` of each event, the stream's `end` the last."""
    event = ""
    for line in lines:
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            put(json.loads(line.split(":", 1)[1])["queue"])
            if event == "end":
                return


def _until_ahead(seen: queue.Queue[Any], ahead: int) -> list[Any]:
    """The places the stream shows until one with `ahead` jobs before it."""
    shown = []
    while True:
        place = seen.get(timeout=30)
        shown.append(place)
        if place is not None and place["ahead"] == ahead:
            return shown
