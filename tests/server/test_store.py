"""The job store on real SQLite: leases, bounded attempts, one terminal transition."""

from __future__ import annotations

import time
from pathlib import Path

from easel.domain.job import JobStatus
from easel.domain.request import GenerationRequest
from easel.store import JobStore, NewJob, ReadyImage


def _store(tmp_path: Path) -> JobStore:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.create()
    return store


def _job(job_id: str, key: str = "k", n: int = 1) -> NewJob:
    request = GenerationRequest(model="google:2@3", prompt="a fox", width=64, height=64,
                                num_images=n)
    return NewJob(id=job_id, dialect="test", request=request, params_hash="h", options={},
                  batch_key=key, backend="easel/tiny-flux", stand_in_reason=None, cost=0.02,
                  image_ids=[f"{job_id}-img{i}" for i in range(n)], seeds=list(range(n)))


def test_insert_is_idempotent_by_id(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.insert(_job("a"))
    assert not store.insert(_job("a"))
    job = store.get("a")
    assert job is not None and job.status is JobStatus.QUEUED
    assert [i.image_id for i in job.images] == ["a-img0"]


def test_claim_groups_compatible_jobs_up_to_batch_size(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for job_id, key, n in [("a", "x", 2), ("b", "y", 1), ("c", "x", 2), ("d", "x", 1)]:
        store.insert(_job(job_id, key, n))
        time.sleep(0.01)
    claimed = store.claim("w1", max_images=4, lease_seconds=30, max_attempts=3)
    assert [j.id for j in claimed] == ["a", "c"]  # b is incompatible, d would exceed 4 images
    assert all(j.status is JobStatus.PROCESSING and j.attempts == 1 for j in claimed)
    assert [j.id for j in store.claim("w2", 4, 30, 3)] == ["b"]


def test_expired_lease_is_reclaimed_and_only_the_new_owner_completes(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert(_job("a"))
    assert [j.id for j in store.claim("dead", 4, lease_seconds=0.05, max_attempts=3)] == ["a"]
    assert store.claim("live", 4, 30, 3) == []  # lease still valid
    time.sleep(0.1)
    again = store.claim("live", 4, 30, 3)
    assert [j.id for j in again] == ["a"] and again[0].attempts == 2
    ready = [ReadyImage("a-img0", "image/jpeg", 10, time.time() + 60)]
    assert not store.complete("a", "dead", ready, "b1", 0.1)  # the old worker lost the job
    assert store.complete("a", "live", ready, "b2", 0.1)
    assert not store.complete("a", "live", ready, "b3", 0.1)  # one terminal transition only
    job = store.get("a")
    assert job is not None and job.status is JobStatus.COMPLETED and job.batch_id == "b2"
    assert job.images[0].ready


def test_heartbeat_keeps_the_lease(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert(_job("a"))
    store.claim("w", 4, lease_seconds=0.2, max_attempts=3)
    for _ in range(4):
        time.sleep(0.1)
        assert store.heartbeat("w", ["a"], 0.2) == 1
    assert store.claim("other", 4, 30, 3) == []


def test_attempts_are_bounded(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert(_job("a"))
    for _ in range(3):
        assert store.claim("w", 4, lease_seconds=0.01, max_attempts=3)
        time.sleep(0.03)
    assert store.claim("w", 4, 30, 3) == []
    job = store.get("a")
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error_code == "worker_lost" and "3 times" in (job.error_message or "")


def test_release_returns_jobs_to_the_queue_without_spending_an_attempt(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert(_job("a"))
    store.claim("w", 4, 30, 3)
    store.release(["a"], "w")
    job = store.get("a")
    assert job is not None and job.status is JobStatus.QUEUED and job.attempts == 0
