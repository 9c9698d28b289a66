"""Job events between processes on one PostgreSQL store, by LISTEN/NOTIFY.

An API process waiting on a job hears that it settled the moment a worker elsewhere says so,
and an idle worker hears of new work, instead of each polling the store. Each process holds
one listening connection and one sending connection, each on its own thread, so neither a
slow database nor one that is down ever blocks a request or a denoising step.

Notifications are a hint, not the truth: one lost while the database restarts costs at most a
poll interval. After a reconnect every waiter is woken once to read the store again.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import uuid
from typing import TYPE_CHECKING, Any

import psycopg

from easel.store.jobs import with_driver

if TYPE_CHECKING:
    from easel.services.jobs.events import JobEvents

log = logging.getLogger("easel.store")

CHANNEL = "easel_jobs"
RETRY_SECONDS = 1.0
MAX_PAYLOAD = 7000  # PostgreSQL's limit is 8000 bytes


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as psycopg's own connection string (no `+psycopg` driver part)."""
    return with_driver(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgRelay:
    """The `Relay` of easel.services.jobs.events for a PostgreSQL store."""

    def __init__(self, url: str) -> None:
        self.conninfo = libpq_url(url)
        self.source = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # to skip our own notifications
        self._outbox: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.listening = threading.Event()  # set while LISTEN is in force (tests wait on it)

    def start(self, events: JobEvents) -> None:
        for target, name in ((lambda: self._listen(events), "easel-listen"),
                             (self._send, "easel-notify")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def publish(self, job_id: str | None, settled: bool) -> None:
        self._outbox.put({"job": job_id, "settled": settled, "from": self.source})

    def close(self) -> None:
        self._stop.set()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(5)

    # -- the threads ----------------------------------------------------------------------

    def _listen(self, events: JobEvents) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    events.wake_all()  # whatever changed while we were not listening
                    events.heard(None, False)
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._deliver(events, note.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("job events: listening on the store failed (%s); retrying", exc)
                self._stop.wait(RETRY_SECONDS)
        self.listening.clear()

    def _deliver(self, events: JobEvents, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if message.get("from") == self.source:
            return
        job = message.get("job")
        events.heard(job if isinstance(job, str) else None, bool(message.get("settled")))

    def _send(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            message = self._outbox.get()
            if message is None:
                break
            payload = json.dumps(message)
            if len(payload) > MAX_PAYLOAD:
                continue
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except psycopg.Error as exc:  # dropped: the others still poll the store
                log.warning("job events: notifying the store failed (%s)", exc)
                if conn is not None:
                    conn.close()
                conn = None
                self._drop_backlog()  # stale by the time the store is back
        if conn is not None:
            conn.close()

    def _drop_backlog(self) -> None:
        try:
            while True:
                if self._outbox.get_nowait() is None:
                    self._outbox.put(None)  # keep the stop request
                    return
        except queue.Empty:
            return
