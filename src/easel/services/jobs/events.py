"""Job events: "work was submitted" (wakes the worker) and "job X changed" (wakes the requests
waiting on X). Thread-safe: the worker's threads signal, the event loop waits.

Inside one process they are direct. Across processes a `Relay` carries them when the store has
one (PostgreSQL's LISTEN/NOTIFY, easel.store.notify); without one (SQLite) other processes learn
of changes by polling the store. Either way the store stays the truth: an event only says when
to look again, so a lost one costs a poll interval, never a job."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Protocol

Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Event, bool]  # loop, event, any change?


class Relay(Protocol):
    """Carries events to the other processes on the same store and back (`start` hands it
    the events to deliver what it hears to)."""

    def start(self, events: JobEvents) -> None: ...

    def publish(self, job_id: str | None, settled: bool) -> None: ...  # None: work submitted

    def close(self) -> None: ...


class JobEvents:
    def __init__(self, relay: Relay | None = None) -> None:
        self._work = threading.Event()
        self._waiters: dict[str, set[Waiter]] = {}
        # Watchers of queued jobs: any job's event may move them (a claim, an end, a new job
        # placed ahead), so every event wakes them; their read of the store says what moved.
        self._queue_waiters: set[Waiter] = set()
        self._lock = threading.Lock()
        self.relay = relay
        self._started = False

    def start(self) -> None:
        """Start hearing other processes' events (idempotent: the server and its in-process
        worker share one JobEvents)."""
        with self._lock:
            if self._started or self.relay is None:
                return
            self._started = True
        self.relay.start(self)

    def close(self) -> None:
        with self._lock:
            started, self._started = self._started, False
        if started and self.relay is not None:
            self.relay.close()

    # -- the worker's side --------------------------------------------------------------------

    def work_submitted(self) -> None:
        self._work.set()
        if self.relay is not None:
            self.relay.publish(None, False)

    def wake_worker(self) -> None:
        """Wake this process's worker only (it is stopping)."""
        self._work.set()

    def wait_for_work(self, timeout: float) -> None:
        """Block until work is submitted or `timeout` seconds pass, then re-arm."""
        self._work.wait(timeout)
        self._work.clear()

    # -- job changes ----------------------------------------------------------------------------

    def job_changed(self, job_id: str, settled: bool = False) -> None:
        """`settled`: the worker let go of the job (it ended, or went back to the queue); else a
        step of progress. Requests waiting for the end are woken only when it settles: each
        wake-up costs a read of the store."""
        self.heard(job_id, settled)
        if self.relay is not None:
            self.relay.publish(job_id, settled)

    def heard(self, job_id: str | None, settled: bool) -> None:
        """An event from another process (the relay's): wake what waits here, tell no one."""
        with self._lock:
            waiters = list(self._queue_waiters)
            if job_id is not None:
                waiters += [w for w in self._waiters.get(job_id, ()) if settled or w[2]]
        if job_id is None:
            self._work.set()
        for loop, event, _any_change in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)

    def wake_all(self) -> None:
        """Every waiting request looks at its job again (the server is shutting down)."""
        with self._lock:
            waiters = [w for ws in self._waiters.values() for w in ws]
        for loop, event, _any in waiters:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    @contextlib.contextmanager
    def watching(self, job_id: str, any_change: bool = False,
                 queue: bool = False) -> Iterator[asyncio.Event]:
        """An event set when `job_id` settles (or, with `any_change`, at every change; with
        `queue`, also at every other job's event: its place in the queue may have moved);
        register before reading the store so no wake-up is lost."""
        entry = (asyncio.get_running_loop(), asyncio.Event(), any_change)
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(entry)
            if queue:
                self._queue_waiters.add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                self._queue_waiters.discard(entry)
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[job_id]
