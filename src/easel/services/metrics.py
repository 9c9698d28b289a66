"""Prometheus metrics, one registry per server so tests can run several in one process."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import prometheus_client
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from easel import __version__
from easel.domain.generation import EngineStatus
from easel.domain.job import JobStatus
from easel.store import JobStore

# Counters and histograms would each add a `_created` series (a timestamp per label set):
# twice the series for nothing a dashboard reads. prometheus_client's switch is process-wide.
prometheus_client.disable_created_metrics()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

# Every label set of a histogram is 17 series, kept for the life of the process: no label may
# take a value a caller chooses. The methods easel answers (HEAD and OPTIONS included: Starlette
# and the CORS preflight answer them); any other token a client sends is "other".
SERVED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


def request_labels(method: str, route: str, status: int) -> tuple[str, str, str]:
    """The labels of one request's timing: a served method or "other", the route template the
    app matched (the app passes "unmatched" for none), and the status code."""
    bounded_method = method if method in SERVED_METHODS else OTHER
    bounded_status = str(status) if 100 <= status <= 599 else OTHER
    return bounded_method, route, bounded_status


class _JobStates(Collector):
    """Jobs by state, read from the store at scrape time: the store is the source of truth."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("easel_job_store_up", "Whether the job store answered this "
                               "scrape (0: the series read from it are left out)")
        try:
            counts = self.store.counts()
        except SQLAlchemyError:  # the store is down: the scrape still answers, saying so
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        by_state = GaugeMetricFamily("easel_jobs", "Jobs by state", labels=["state"])
        for status in JobStatus:
            by_state.add_metric([status.value], counts.get(status.value, 0))
        yield by_state
        depth = GaugeMetricFamily("easel_queue_depth", "Jobs waiting for a worker")
        depth.add_metric([], counts.get(JobStatus.QUEUED.value, 0))
        yield depth


class _DeliveryStates(Collector):
    """Webhook and upload deliveries by state, read from the durable outbox at scrape time."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterable[Metric]:
        try:
            counts = self.counts()
        except SQLAlchemyError:  # the store is down (easel_job_store_up says so)
            return
        family = GaugeMetricFamily("easel_deliveries", "Outbound deliveries by state",
                                   labels=["state"])
        for state, count in sorted(counts.items()):
            family.add_metric([state], count)
        yield family


@dataclass(frozen=True)
class TierState:
    """What serves a tier now: its backend and, when its weights are absent, the stand-in."""

    tier: str
    backend: str
    stand_in: str | None  # None: its real weights (or refused, see `refused`)
    refused: bool = False


class _EngineState(Collector):
    """The engine's device, loaded pipelines and accelerator memory, at scrape time."""

    def __init__(self, status: Callable[[], EngineStatus | None]) -> None:
        self.status = status

    def collect(self) -> Iterable[Metric]:
        status = self.status()
        loaded = GaugeMetricFamily("easel_model_loaded", "Pipelines in the engine's memory",
                                   labels=["source", "device"])
        memory = GaugeMetricFamily("easel_accelerator_memory_bytes",
                                   "Accelerator memory of the engine's device, by kind",
                                   labels=["device", "kind"])
        if status is not None:
            for source in status.loaded:
                loaded.add_metric([source, status.device], 1)
            for kind, value in status.memory:
                memory.add_metric([status.device, kind], value)
        yield loaded
        yield memory


class _TierStates(Collector):
    """Each tier's backend and whether a stand-in serves it (weights absent)."""

    def __init__(self, states: Callable[[], list[TierState]]) -> None:
        self.states = states

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "easel_tier_stand_in", "1 when a tier is served by an offline stand-in",
            labels=["tier", "backend", "stand_in"])
        refused = GaugeMetricFamily(
            "easel_tier_refused", "1 when a tier is refused (commercial-only, strict)",
            labels=["tier", "backend"])
        for state in self.states():
            family.add_metric([state.tier, state.backend, state.stand_in or ""],
                              1 if state.stand_in else 0)
            refused.add_metric([state.tier, state.backend], 1 if state.refused else 0)
        yield family
        yield refused


class _Build(Collector):
    def collect(self) -> Iterable[Metric]:
        info = InfoMetricFamily("easel_build", "The easel version serving")
        info.add_metric([], {"version": __version__})
        yield info


class Metrics:
    def __init__(self, store: JobStore) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_JobStates(store))
        self.registry.register(_Build())
        # The process's CPU, memory, open files and GC, as Prometheus' own clients export them.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        r = self.registry
        self.submitted = Counter("easel_jobs_submitted", "Jobs accepted", ["dialect"], registry=r)
        self.images = Counter("easel_images_generated", "Images generated and stored", registry=r)
        self.failed = Counter("easel_jobs_failed", "Jobs failed", ["code"], registry=r)
        self.step_seconds = Histogram(
            "easel_denoising_step_seconds", "Time of one denoising step of a batch",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.batch_seconds = Histogram(
            "easel_engine_batch_seconds", "Time of one engine call", buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_images = Histogram(
            "easel_engine_batch_images", "Images per engine call",
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=r,
        )
        self.prompts_blocked = Counter(
            "easel_prompts_blocked", "Prompts refused by the block list", ["dialect"], registry=r)
        self.images_flagged = Counter(
            "easel_images_flagged", "Images the content check flagged or withheld",
            ["reason", "action"], registry=r)
        self.prompt_enhancements = Counter(
            "easel_prompt_enhancements", "Prompt rewrites asked for, by result", ["result"],
            registry=r)
        self.finishing_seconds = Histogram(
            "easel_finishing_seconds",
            "Time to finish one image: content check, watermark, encode, sign and store",
            buckets=LATENCY_BUCKETS, registry=r)
        self.waited_for_finishing = Counter(
            "easel_worker_waited_for_finishing_seconds",
            "Time the worker claimed nothing because earlier batches were still being finished",
            registry=r)
        self.safety_seconds = Histogram(
            "easel_content_check_seconds", "Time of the content check of one image",
            buckets=LATENCY_BUCKETS, registry=r)
        self.request_seconds = Histogram(
            "easel_request_seconds", "HTTP request latency", ["method", "route", "status"],
            buckets=LATENCY_BUCKETS, registry=r,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.request_seconds.labels(*request_labels(method, route, status)).observe(seconds)

    def watch_deliveries(self, counts: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_DeliveryStates(counts))

    def watch_engine(self, status: Callable[[], EngineStatus | None]) -> None:
        self.registry.register(_EngineState(status))

    def watch_tiers(self, states: Callable[[], list[TierState]]) -> None:
        self.registry.register(_TierStates(states))

    def render(self) -> bytes:
        return generate_latest(self.registry)
