"""The store's side of fair sharing, on SQLite and on a real PostgreSQL server: fair queueing
tags at insert, the per-caller caps, the claim order across several workers and API processes
(each its own JobStore, as each process has its own engine), weights and model affinity."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from easel.domain.job import JobStatus
from easel.store import InsertResult, JobStore, NewJob, QueueRules
from tests.server.test_store import (
    FakeClock,
    _job,
    _store,
    back_to_baseline,
    store_with_old_job,
)


def job(job_id: str, caller: str, work: float, backend: str = "easel/tiny-flux",
        images: int = 1) -> NewJob:
    return replace(_job(job_id, key=backend, n=images), caller=caller, work=work,
                   backend=backend)


def claim_all(store: JobStore, owner: str = "w", prefer: frozenset[str] = frozenset()) -> list[str]:
    """Claim one job at a time until none is left, completing each: the order they ran in."""
    order: list[str] = []
    while claimed := store.claim(owner, 1, 30, 3, prefer=prefer):
        for found in claimed:
            order.append(found.id)
            assert store.complete(found.id, owner, [], "b", 0.1)
    return order


def queue(store: JobStore, clock: FakeClock, name: str, caller: str, count: int,
          work: float) -> None:
    """`count` jobs of `caller`, `name`0, `name`1, ..., each a moment after the last."""
    for i in range(count):
        store.insert(job(f"{name}{i}", caller, work=work))
        clock.advance(0.01)


def test_a_backlog_queues_behind_itself_and_a_newcomer_goes_next(database_url: str) -> None:
    clock = FakeClock()
    store = _store(database_url, clock)
    queue(store, clock, "flood", "key:a", 20, work=10)
    first = store.claim("w", 1, 30, 3)
    assert [j.id for j in first] == ["flood0"]
    store.insert(job("victim", "key:b", work=1))
    assert [j.id for j in store.claim("w", 1, 30, 3)] == ["victim"]


def test_weights_share_the_gpu_by_work(database_url: str) -> None:
    """Weight 2 against 1, equal jobs: two of the heavy caller's for each of the other's."""
    clock = FakeClock()
    store = _store(database_url, clock)
    for i in range(6):
        store.insert(job(f"a{i}", "key:a", work=1), QueueRules(weight=2))
        store.insert(job(f"b{i}", "key:b", work=1), QueueRules(weight=1))
        clock.advance(0.01)
    order = claim_all(store)
    assert sum(name.startswith("a") for name in order[:9]) == 6, order  # 2:1 while both wait
    assert order[-3:] == ["b3", "b4", "b5"], order


def test_caps_count_a_callers_unfinished_jobs_and_work_only(database_url: str) -> None:
    store = _store(database_url)
    rules = QueueRules(max_caller_jobs=3, max_caller_work=100)
    assert store.insert(job("huge", "key:a", work=500), rules) is InsertResult.INSERTED
    assert store.insert(job("more", "key:a", work=1), rules) is InsertResult.CALLER_WORK
    assert store.insert(job("other", "key:b", work=1), rules) is InsertResult.INSERTED
    assert claim_all(store) == ["huge", "other"]  # finished work no longer counts
    for i in range(3):
        assert store.insert(job(f"s{i}", "key:a", work=1), rules) is InsertResult.INSERTED
    assert store.insert(job("s3", "key:a", work=1), rules) is InsertResult.CALLER_JOBS
    assert store.unfinished_work("key:a") == 3


def test_concurrent_submissions_cannot_pass_a_callers_cap(database_url: str) -> None:
    """Eight API processes (eight stores) insert for one caller at once: exactly the cap."""
    stores = [_store(database_url) for _ in range(8)]
    rules = QueueRules(max_caller_jobs=5)
    _ = stores[0].insert(job("seed", "key:a", work=1), rules)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda i: stores[i % 8].insert(job(f"j{i}", "key:a", work=1), rules), range(24)))
    assert results.count(InsertResult.INSERTED) == 4, results
    assert stores[0].counts()[JobStatus.QUEUED.value] == 5


def test_two_workers_claim_in_fair_order_without_sharing_a_job(database_url: str) -> None:
    clock = FakeClock()
    api = _store(database_url, clock)
    queue(api, clock, "a", "key:a", 10, work=5)
    queue(api, clock, "b", "key:b", 2, work=5)
    one, two = _store(database_url, clock), _store(database_url, clock)
    taken = [j.id for j in one.claim("w1", 1, 30, 3)] + [j.id for j in two.claim("w2", 1, 30, 3)]
    # b0 starts with a0 (both callers' first job), b1 with a1: four claims take a0, b0, a1, b1
    taken += [j.id for j in one.claim("w1", 1, 30, 3)] + [j.id for j in two.claim("w2", 1, 30, 3)]
    assert sorted(taken) == ["a0", "a1", "b0", "b1"], taken
    assert len(set(taken)) == 4


def test_a_preferred_backend_leads_and_the_present_stays_with_the_fair_head(
    database_url: str,
) -> None:
    """Affinity takes a loaded model's job first, but the scheduler's present moves only to the
    first job in fair order: a newcomer is not put behind the preferred caller's backlog."""
    clock = FakeClock()
    store = _store(database_url, clock)
    store.insert(job("other-model", "key:a", work=1, backend="easel/tiny-sana"))
    for i in range(5):
        store.insert(job(f"loaded{i}", "key:b", work=1))
        clock.advance(0.01)
    loaded = frozenset({"easel/tiny-flux"})
    assert [j.id for j in store.claim("w", 1, 30, 3, prefer=loaded)] == ["loaded0"]
    store.insert(job("newcomer", "key:c", work=1))
    order = claim_all(store)
    assert order.index("newcomer") <= 1, order


def test_a_database_at_the_baseline_revision_gains_the_fair_columns(tmp_path: Path) -> None:
    path = store_with_old_job(tmp_path)
    with sqlite3.connect(path) as conn:  # as easel 0001 left it
        back_to_baseline(conn)
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    again = JobStore(f"sqlite:///{path}")
    again.create()
    assert again.insert(job("new", "key:a", work=2)) is InsertResult.INSERTED
    assert claim_all(again) == ["old", "new"]
