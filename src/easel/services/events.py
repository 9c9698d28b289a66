"""Job events inside one process: "work was submitted" (wakes the worker) and "job X changed"
(wakes the requests waiting on X). Thread-safe: the worker's threads signal, the event loop
waits. Processes that share only the store learn of changes by polling it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Event, bool]  # loop, event, any change?


class JobEvents:
    def __init__(self) -> None:
        self._work = threading.Event()
        self._waiters: dict[str, set[Waiter]] = {}
        self._lock = threading.Lock()

    # -- the worker's side --------------------------------------------------------------------

    def work_submitted(self) -> None:
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
        with self._lock:
            waiters = list(self._waiters.get(job_id, ()))
        for loop, event, any_change in waiters:
            if settled or any_change:
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
    def watching(self, job_id: str, any_change: bool = False) -> Iterator[asyncio.Event]:
        """An event set when `job_id` settles (or, with `any_change`, at every change);
        register before reading the store so no wake-up is lost."""
        entry = (asyncio.get_running_loop(), asyncio.Event(), any_change)
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[job_id]
