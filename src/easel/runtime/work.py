"""`easel worker`: the engine alone, claiming jobs from the same store as the API processes (one
worker per GPU). SIGTERM or Ctrl-C: the batch in flight finishes, the rest is handed back, and
the process exits 0."""

from __future__ import annotations

import logging
import os
import signal
import threading

from sqlalchemy.engine import make_url

from easel.runtime.build import EngineFactory, build_worker
from easel.settings import Settings
from easel.store.jobs import STARTUP_WAIT_SECONDS

log = logging.getLogger("easel.cli")


def work(settings: Settings, engine_factory: EngineFactory | None = None) -> None:
    """Claim and run jobs until SIGTERM or Ctrl-C (the diffusers engine unless another is
    given)."""
    worker = build_worker(settings, engine_factory)
    worker.store.create(wait_seconds=STARTUP_WAIT_SECONDS)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    log.info("worker %s started on the job store %s", worker.owner,
             make_url(settings.database_url).render_as_string(hide_password=True))
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port, settings.host,
                          registry=worker.metrics.registry)
        log.info("worker metrics at http://%s:%d/metrics", settings.host,
                 settings.worker_metrics_port)
    while not stop.wait(0.2) and not worker.wait_loaded(0):  # SIGTERM may come while loading
        pass
    if worker.load_error is not None:  # it claims nothing: exit for a supervisor to see
        worker.stop(settings.shutdown_grace_seconds)
        raise SystemExit(f"worker {worker.owner} stopped: its engine did not load "
                         f"({worker.load_error})")
    stop.wait()
    worker.stop(settings.shutdown_grace_seconds)
    if worker.alive():
        logging.shutdown()
        os._exit(0)  # an engine call outlived the grace; its jobs are already handed back
