"""The composition root: the one module that knows every layer and builds a process from
Settings. `easel serve` runs `build_server` (the app over the port, delivery, and by default an
in-process worker); `easel worker` runs `build_worker` (the engine alone, claiming from the
same store)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from fastapi import FastAPI

from easel.api.app import create_app
from easel.api.dialects.common import Dialect
from easel.api.dialects.easel import routes as easel
from easel.api.dialects.google import routes as google
from easel.api.dialects.openai import routes as openai
from easel.api.dialects.runware import routes as runware
from easel.api.dialects.wavespeed import routes as wavespeed
from easel.api.guard import GuardSettings, allowed_hosts, canonical_origin
from easel.api.replies import RepliesInFlight, ReplyLimits
from easel.catalog import Catalog, did_you_mean
from easel.domain.generation import Engine
from easel.domain.safety import CheckFloor
from easel.runtime.process import Runtime, not_ready_reason
from easel.services.access.keys import KeyRing
from easel.services.access.secrets import server_secret, signing_root
from easel.services.core import Core
from easel.services.delivery.outbound import is_loopback_host
from easel.services.delivery.service import DeliveryService
from easel.services.images.artifacts import Artifacts
from easel.services.images.finishing import ImageFinisher
from easel.services.images.inputs import InputImages
from easel.services.images.provenance import ContentCredentials
from easel.services.images.safety import ContentChecker, NudeNetDetector
from easel.services.images.uploads import Uploads
from easel.services.jobs.admission import Admission
from easel.services.jobs.events import JobEvents, Relay
from easel.services.jobs.health import StorageHealth
from easel.services.jobs.planning import BackendResolver
from easel.services.jobs.prompts import PromptBlockList, PromptEnhancer
from easel.services.jobs.service import JobService, PromptRules
from easel.services.loras import AdapterFiles, AdapterRules
from easel.services.metrics import Metrics
from easel.services.port import Limits
from easel.services.weights.facts import tier_states
from easel.settings import Settings
from easel.store import DeliveryStore, JobStore, KeyStore, LoraStore
from easel.store.blobs import BlobStore, LocalBlobStore
from easel.store.jobs import with_driver
from easel.store.uploads import UploadStore
from easel.worker import Worker

if TYPE_CHECKING:
    from easel.store.s3 import S3BlobStore

EngineFactory = Callable[[], Engine]


def dialects() -> list[Dialect]:
    """Every dialect easel serves. A broken one fails here, loudly, at start."""
    # Google before OpenAI: its Google-only routes on /v1/models are tried first.
    return [runware.dialect(), wavespeed.dialect(), google.dialect(), openai.dialect(),
            easel.dialect()]


def diffusers_engine(settings: Settings) -> EngineFactory:
    """The real engine, imported only when a worker starts (the API alone never loads torch)."""

    def build() -> Engine:
        from easel.engine import Engine as DiffusersEngine

        return DiffusersEngine.from_settings(settings)

    return build


def load_catalog(settings: Settings) -> Catalog:
    return Catalog.load(*([settings.catalog_file] if settings.catalog_file else []))


def unknown_preloads(settings: Settings) -> str | None:
    """A model id to preload that the catalog does not have (a typo would leave the server
    never ready), said with the ids it has."""
    catalog = load_catalog(settings)
    for model_id in settings.preload_models:
        if model_id not in catalog.models:
            return (f"EASEL_PRELOAD_MODELS names an unknown model {model_id[:200]!r}"
                    f"{did_you_mean(model_id, catalog.model_ids)}; `easel models` lists them")
    return None


def make_resolver(settings: Settings, catalog: Catalog) -> BackendResolver:
    return BackendResolver.from_settings(settings, catalog)


def content_checker(settings: Settings, catalog: Catalog) -> ContentChecker:
    return ContentChecker(NudeNetDetector() if settings.content_checks else None, catalog.safety)


def content_credentials(settings: Settings) -> ContentCredentials | None:
    """The C2PA signer, when a certificate is configured; a bad one stops the start."""
    cert, key = settings.c2pa_certificate, settings.c2pa_private_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ValueError("C2PA signing needs both EASEL_C2PA_CERTIFICATE and "
                         "EASEL_C2PA_PRIVATE_KEY")
    return ContentCredentials.from_files(cert, key, settings.c2pa_algorithm,
                                         settings.c2pa_timestamp_url)


def start_problem(settings: Settings) -> str | None:
    """What in the settings would stop an API or worker process once started (a traceback,
    or a server never ready), said in one line before it starts: an unknown model to preload,
    a C2PA certificate without its key, or a pair that does not sign."""
    refused = unknown_preloads(settings)
    if refused is not None:
        return refused
    try:
        content_credentials(settings)
    except ValueError as exc:
        return f"content credentials: {exc}"
    return None


def prompt_rules(settings: Settings, metrics: Metrics) -> PromptRules:
    block_list = PromptBlockList.from_sources(
        settings.blocked_prompt_terms, settings.blocked_prompt_patterns,
        settings.blocked_prompts_file)
    enhancer = None
    if settings.prompt_enhancer_url:
        enhancer = PromptEnhancer(settings.prompt_enhancer_url, settings.prompt_enhancer_model,
                                  api_key=settings.prompt_enhancer_api_key,
                                  timeout=settings.prompt_enhancer_timeout)
    return PromptRules(block_list, enhancer,
                       on_blocked=lambda dialect: metrics.prompts_blocked.labels(dialect).inc(),
                       on_enhanced=lambda result: metrics.prompt_enhancements.labels(result).inc())


def build_blobs(settings: Settings) -> BlobStore:
    """The image store: the data dir, or the bucket `image_store` names."""
    return build_bucket(settings) or LocalBlobStore(settings.images_dir)


def build_bucket(settings: Settings) -> S3BlobStore | None:
    """The bucket `image_store` names, if it names one. boto3 is imported only then: it adds
    some 0.1 s of CPU to the start of every process that keeps its images on disk."""
    if settings.image_store is None:
        return None
    from easel.store.s3 import BucketLocation, S3BlobStore, s3_client

    client = s3_client(settings.s3_endpoint_url, settings.s3_region,
                       settings.s3_addressing_style, settings.s3_timeout)
    return S3BlobStore(client, BucketLocation.parse(settings.image_store))


def relay_for(url: str) -> Relay | None:
    """The relay of job events between processes: PostgreSQL has one (psycopg is imported
    only then, for the same reason as boto3 above); SQLite's processes poll."""
    if with_driver(url).get_backend_name() != "postgresql":
        return None
    from easel.store.notify import PgRelay

    return PgRelay(url)


def build_worker(
    settings: Settings,
    engine_factory: EngineFactory | None = None,
    *,
    catalog: Catalog | None = None,
    store: JobStore | None = None,
    metrics: Metrics | None = None,
    events: JobEvents | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> Worker:
    catalog = catalog or load_catalog(settings)
    store = store or JobStore(settings.database_url)
    metrics = metrics or Metrics(store)
    finisher = ImageFinisher(content_checker(settings, catalog), metrics,
                             credentials=content_credentials(settings),
                             png_level=settings.png_compress_level)
    blobs = build_blobs(settings)
    worker = Worker(
        settings, catalog, make_resolver(settings, catalog), store, blobs, metrics,
        events or JobEvents(relay_for(settings.database_url)),
        engine_factory or diffusers_engine(settings), finisher, clock, wall_clock,
        AdapterFiles(blobs, settings.loras_dir, LoraStore(store.engine).digest_in_use),
        InputImages(blobs),
    )
    metrics.watch_engine(worker.engine_status)
    return worker


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_body_bytes=settings.max_body_bytes, body_timeout=settings.body_timeout,
        sync_timeout=settings.sync_timeout, max_tasks_per_request=settings.max_tasks_per_request,
        max_reply_bytes=settings.max_reply_bytes, ws_max_frame_bytes=settings.ws_max_frame_bytes,
        ws_auth_timeout=settings.ws_auth_timeout, max_websockets=settings.max_websockets,
    )


def guard_settings(settings: Settings) -> GuardSettings:
    hosts = allowed_hosts(settings.allowed_hosts, settings.host, is_loopback_host(settings.host),
                          settings.public_url)
    return GuardSettings(hosts, settings.protect_meta_routes,
                         frozenset(canonical_origin(o) for o in settings.cors_origins),
                         frozenset(canonical_origin(url) for url in (settings.base_url,
                                                                     settings.local_url)))


def replies_in_flight(settings: Settings) -> RepliesInFlight:
    return RepliesInFlight(ReplyLimits(settings.reply_bytes_per_caller,
                                       settings.reply_bytes_total))


def build_key_store(settings: Settings) -> KeyStore:
    """The API keys' table, for `easel keys` and the checks before serving."""
    return KeyStore(build_job_store(settings).engine)


def build_job_store(settings: Settings) -> JobStore:
    """The job store, made if absent (for `easel keys`, which also hands jobs over)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(settings.database_url)
    store.create()
    return store


def build_runtime(
    settings: Settings,
    served: Sequence[Dialect],
    engine_factory: EngineFactory | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> Runtime:
    """Every service one `easel serve` process runs, and the port over them. `clock` times
    the caches (keys, storage health, rate buckets) and the worker's model affinity,
    `wall_clock` the images' lifetimes: tests
    move them instead of sleeping."""
    catalog = load_catalog(settings)
    resolver = make_resolver(settings, catalog)
    store = JobStore(settings.database_url)
    outbox = DeliveryStore(store.engine)
    metrics = Metrics(store)
    metrics.watch_deliveries(outbox.counts)
    metrics.watch_tiers(lambda: tier_states(catalog, resolver))
    events = JobEvents(relay_for(settings.database_url))
    bucket = build_bucket(settings)
    blobs = bucket or LocalBlobStore(settings.images_dir)
    presigner = bucket.presigned_url if bucket is not None and settings.presign_image_urls \
        else None
    uploads = Uploads(blobs, UploadStore(store.engine), store, wall_clock)
    artifacts = Artifacts(blobs, store, settings.base_url, presigner, wall_clock, uploads)
    health = StorageHealth(store, blobs, clock)
    jobs = JobService(
        catalog, resolver, store, outbox, Admission(settings, clock), events, health,
        poll_interval=settings.poll_interval, allow_loopback_urls=settings.allow_loopback_urls,
        max_ttl_seconds=settings.max_ttl_seconds,
        on_submit=lambda dialect: metrics.submitted.labels(dialect).inc(),
        prompts=prompt_rules(settings, metrics),
        adapters=AdapterRules(LoraStore(store.engine), settings.max_loras_per_request),
        inputs=InputImages(blobs, allow_loopback=settings.allow_loopback_urls,
                           stored=uploads.bytes_of, base_url=settings.base_url),
        chosen_id_scopes=[d.name for d in served if d.chooses_ids],
        check_floor=CheckFloor(settings.content_check_floor),
        input_checker=content_checker(settings, catalog),
    )
    renderers = {d.name: d.render_webhook for d in served if d.render_webhook is not None}
    signers = {d.name: d.sign_webhook for d in served if d.sign_webhook is not None}
    secret = server_secret(settings)
    root = signing_root(settings, secret)
    delivery = DeliveryService(settings, outbox, store, artifacts, renderers, signers, root)
    worker = None
    if settings.run_worker:
        worker = build_worker(settings, engine_factory, catalog=catalog, store=store,
                              metrics=metrics, events=events, clock=clock,
                              wall_clock=wall_clock)
    keys = KeyRing(settings.api_keys, KeyStore(store.engine), clock)
    core = Core(jobs, artifacts, keys, metrics, limits_of(settings), secret=secret,
                webhook_root=root, not_ready=partial(not_ready_reason, worker, health),
                engine_status=worker.engine_status if worker is not None else lambda: None,
                notify=delivery.notify, uploads=uploads)
    return Runtime(settings, catalog, store, artifacts, jobs, metrics, keys, delivery, worker,
                   health, core)


@dataclass(frozen=True)
class Server:
    """One `easel serve` process: the app, and the runtime it serves (its lifespan starts and
    stops it; a signal begins its shutdown)."""

    app: FastAPI
    runtime: Runtime


def build_server(
    settings: Settings,
    engine_factory: EngineFactory | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> Server:
    served = dialects()
    runtime = build_runtime(settings, served, engine_factory, clock, wall_clock)
    app = create_app(runtime.core, runtime.core, served, guard_settings(settings),
                     replies_in_flight(settings), runtime.lifespan)
    return Server(app, runtime)


def build_app(settings: Settings, engine_factory: EngineFactory | None = None) -> FastAPI:
    return build_server(settings, engine_factory).app
