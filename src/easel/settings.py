"""One typed settings object; the only reader of the environment (EASEL_* variables) and of
the settings file (TOML).

Precedence, highest first: a command-line flag, the environment (`EASEL_PORT=8001`), the
settings file (`port = 8001`), the default. The file is `--config PATH`, else `EASEL_CONFIG`,
else `$XDG_CONFIG_HOME/easel/easel.toml` (`~/.config/easel/easel.toml`) when it exists;
`EASEL_CONFIG=` (empty) reads none.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    Field,
    FilePath,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as SourceError

CONFIG_ENV = "EASEL_CONFIG"
ENV_PREFIX = "EASEL_"


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "easel"


class Settings(BaseSettings):
    """Every setting of easel. A field's docstring is its documentation: docs/operations.md's
    table is generated from them (`easel config reference`)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore",
                                      use_attribute_docstrings=True)

    # -- paths and models
    data_dir: Path = Field(default_factory=_default_data_dir)
    """The job database (SQLite), images, keys and the server's secret."""
    catalog_file: FilePath | None = None
    """A TOML file overlaid on the packaged model catalog (docs/catalog.md)."""
    device: str | None = None
    """Where models run: `cuda`, `cuda:1`, `cpu`; default: CUDA when present."""
    strict: bool = False
    """Refuse a tier whose real weights are absent instead of serving it on a stand-in."""
    commercial_only: bool = False
    """Refuse every backend whose licence (the catalog's `[licenses]`) forbids commercial use."""
    stand_in: Literal["mini", "tiny"] = "mini"
    """What serves a tier whose weights are absent: `mini`, easel-mini (the project's small
    model, trained on a CPU and shipped in the package: simple scenes in the prompt's colours), or
    `tiny` (each family's random tiny pipeline, which draws noise; for plumbing, load tests and
    step-timed tests: each tier keeps its schedule)."""
    stand_in_max_steps: int = Field(default=4, ge=1)
    """Most denoising steps a tiny stand-in runs (it is untrained: more steps buy nothing)."""
    max_loaded_models: int = Field(default=2, ge=1)
    """Pipelines kept loaded at once; the least recently used one is unloaded past it."""
    num_threads: int | None = None
    """torch's CPU threads (default: torch's own choice, one per core)."""
    preload_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["google:2@3"]
    )
    """Public model ids whose weights load at start (comma separated); /readyz waits for them.
    An id the catalog lacks refuses the start; one this server does not serve (commercial-only,
    or strict with its weights absent) is skipped, said in the log."""

    # -- engine speed (docs/performance.md): the lossy options are off unless asked for
    compile: bool = False
    """torch.compile the denoiser (regional); compiled graphs are cached in the data dir."""
    compile_mode: str = "default"
    """torch.compile's mode: `default`, or `reduce-overhead` to add CUDA graphs."""
    attention_backend: str | None = None
    """diffusers' attention backend, e.g. `_native_cudnn` or `flash`; default: PyTorch SDPA."""
    fuse_qkv: bool = False
    """Fuse the attention's query, key and value projections into one matmul."""
    quantize: str | None = None
    """`fp8`: torchao float8 weights and activations on the denoiser (Hopper, Ada). Lossy."""
    step_cache_threshold: float | None = None
    """First-Block-Cache threshold, e.g. 0.12: skip a step's blocks when little changed. Lossy."""
    vae_tiling_pixels: int | None = None
    """Decode in tiles images of at least this many pixels (saves memory at 2K). Lossy."""
    text_cache_size: int = 256
    """Prompt embeddings kept in memory, so a repeated prompt skips the text encoder (0: off)."""
    # Fit the GPU you have (docs/performance.md): less GPU memory for some speed or quality.
    offload: Literal["model", "sequential"] | None = None
    """`model`: each component (text encoder, denoiser, VAE) is on the GPU only while it runs;
    `sequential`: layer by layer, the least memory and many times slower. Needs CUDA."""
    weight_quant: Literal["int8", "nf4"] | None = None
    """The denoiser's weights in `int8` (torchao, weight-only) or `nf4` (bitsandbytes 4-bit,
    CUDA), quantized as they load; the `gpu-fit` extra installs both. Lossy."""
    weight_quant_text_encoders: bool = False
    """Quantize the text encoders too, with `weight_quant` (Qwen-Image's is 8B parameters)."""
    # LoRA adapters (the engine keeps those it loaded, per pipeline, for the next requests).
    lora_cache_bytes: int = Field(default=4 * 1024**3, ge=0)
    """Bytes of LoRA tensors each loaded model keeps on its device; the least recently used
    adapter is unloaded past it (never one the running batch uses)."""
    lora_max_rank: int = Field(default=128, ge=1)
    """With `compile`, adapters are hot-swapped into slots padded to this rank, so a switch does
    not recompile; an adapter of a higher rank is refused then."""
    batch_size: int = Field(default=4, ge=1)
    """Most images the worker puts in one engine call."""
    finishing_threads: int | None = Field(default=None, ge=1)
    """Threads that finish images (content check, watermark, encode, sign, store) while the
    engine runs the next batch; unset: one per CPU core, at most 8."""
    png_compress_level: int = Field(default=4, ge=0, le=9)
    """zlib level of PNG images, 0-9. Photographs get zlib's run-length strategy (chosen from a
    sample of rows), which the level barely changes; flat art and patterns get the filtered
    strategy, whose match search the level sets (docs/benchmarks.md, "Finishing")."""

    # -- the server
    host: str = "127.0.0.1"
    """The interface `easel serve` listens on; beyond loopback it needs API keys."""
    port: int = Field(default=8000, ge=1, le=65535)
    """The TCP port `easel serve` listens on."""
    public_url: str | None = None
    """The base of image URLs, as clients reach this server; default `http://host:port`."""
    run_worker: bool = True
    """Run the in-process worker; false: an API-only process (`easel worker` runs the jobs)."""
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """`easel worker`: serve its own /metrics (engine, GPU memory, batches) on this port, on
    the `host` interface; unset: none (an API process's /metrics shows only its own worker)."""
    image_ttl_seconds: int = Field(default=3600, ge=1)
    """How long an image URL resolves, when neither the job nor its dialect says (at most
    `max_ttl_seconds`)."""
    dialect_image_ttl: dict[str, int] = Field(default_factory=lambda: {"openai": 3600})
    """Image URL lifetime per dialect where the provider documents one (OpenAI: 60 minutes), a
    JSON object of dialect to seconds; a client's own `ttl` (Runware) wins over it."""
    max_ttl_seconds: int = Field(default=30 * 86400, ge=60)
    """The longest image URL lifetime a client may ask for (seconds)."""
    sync_timeout: float = Field(default=540.0, gt=0)
    """The longest a synchronous request waits for its images (seconds). Below the official
    clients' own read timeouts (openai: 600 s), so easel answers first and the client does not
    time out and send the request again."""
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    """On SIGTERM, how long in-flight work may finish before it is handed back to the queue."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """`debug`, `info`, `warning` or `error`: easel's and uvicorn's loggers (libraries log
    warnings only)."""
    log_json: bool = False
    """Log one JSON object a line (time, level, logger, message and the record's fields)."""

    # -- jobs and storage. A lease shorter than the slowest batch would let a second worker
    # steal a healthy job, so the heartbeat renews it every lease_seconds / 3.
    database: str | None = None
    """The job store, any SQLAlchemy URL; default: SQLite (WAL) in the data dir."""
    max_attempts: int = Field(default=3, ge=1)
    """Runs of one job, crash re-runs included, before it is failed."""
    lease_seconds: float = Field(default=30.0, gt=0)
    """A worker's claim on a job; renewed every third of it, taken over when it lapses."""
    poll_interval: float = Field(default=0.5, gt=0)
    """How often a process polls the job store for work it was not told of (seconds)."""
    sweep_interval: float = Field(default=30.0, gt=0)
    """How often expired images are deleted (seconds)."""
    image_store: str | None = None
    """Where images are stored: `s3://bucket` or `s3://bucket/prefix` (S3 or any S3-compatible
    server; credentials and region the AWS way: AWS_ACCESS_KEY_ID, AWS_PROFILE, a role, ...);
    default: the data dir's `images/`. Every API process and worker must name the same place."""
    s3_endpoint_url: str | None = None
    """The S3-compatible server (MinIO, Ceph, R2, ...), e.g. `http://minio:9000`; default:
    AWS (or boto3's AWS_ENDPOINT_URL)."""
    s3_region: str | None = None
    """The bucket's region; default: boto3's (AWS_REGION, the profile)."""
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    """`path` (`endpoint/bucket/key`, what most S3-compatible servers want) or `virtual`
    (`bucket.endpoint/key`); `auto`: boto3's choice."""
    s3_timeout: float = Field(default=10.0, gt=0)
    """Connect and read timeout of one object-store request (seconds)."""
    presign_image_urls: bool = False
    """With `image_store = s3://...`: hand out the object store's presigned URLs, valid for the
    image's TTL, so downloads bypass easel; off: easel serves `/images/...` and checks the TTL."""
    storage_retry_seconds: float = Field(default=5.0, gt=0)
    """After a storage failure (a full disk), how often the worker retries (seconds)."""

    # -- who gets in (docs/operations.md)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Plain API keys, comma separated, besides those of `easel keys`; none: no key needed."""
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Host headers served (DNS rebinding), comma separated; default: the loopback names when
    bound to loopback (plus the public URL's host), any host otherwise."""
    protect_meta_routes: bool = False
    """With keys: /metrics, /docs, /redoc and /openapi.json need a key too."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins (`https://app.example.com`, scheme, host and port) whose pages may call the API
    from a browser, comma separated; `*` for any page. Keys are still required; none: only
    this server's own pages."""
    secret_key: str | None = None
    """Signs the ids the server hands out (WaveSpeed refusal ids); default: the data dir's
    `secret.key`, made on first start. Required, the same on every process, with a job store
    other than SQLite (processes on other machines do not share the data dir)."""

    # -- abuse limits; prompt length and images per request are per model, in the catalog
    rate_limit_per_second: float = 10.0
    """Submissions per second per API key (per client address when keys are off); 0: off."""
    rate_limit_burst: int = 100
    """The rate limit's bucket: submissions allowed at once."""
    max_queue_depth: int = 1000
    """Queued jobs; past it submissions get 503 with Retry-After (0: off)."""
    max_jobs_per_caller: int = Field(default=250, ge=0)
    """A caller's (API key's; without keys, address's) queued and running jobs; past it that
    caller's submissions get 429 with Retry-After, nobody else's (0: off)."""
    max_work_per_caller: float = Field(default=1800.0, ge=0)
    """A caller's queued and running work in work units (seconds of the reference GPU: the
    catalog's step_seconds x steps x megapixels x images); past it 429 with Retry-After (0:
    off). A caller with nothing unfinished may always submit one job, however large."""
    caller_weights: dict[str, float] = Field(default_factory=dict)
    """GPU shares per caller, by owner (`{"key:<id>": 2}`: twice a default caller's work when
    both have jobs waiting); every other caller has 1."""
    model_affinity_seconds: float = Field(default=60.0, ge=0)
    """A worker takes jobs for the models it has loaded ahead of the fair order for at most
    this long after it loads one (seconds): a model load costs more than a batch. 0: strict
    fair order."""
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    """The largest REST body or WebSocket frame accepted (bytes). Bodies carry input images
    (base64 in JSON, or multipart files): a 25 MB photo is 33 MB of base64."""
    body_timeout: float = 30.0
    """A request body must arrive within this long, else 408 (seconds)."""
    header_timeout: float = 10.0
    """A new connection's request headers must arrive within this long (seconds)."""
    keep_alive_timeout: float = Field(default=75.0, gt=0)
    """How long an idle kept-alive connection stays open (seconds): longer than the idle
    timeout of a load balancer in front (AWS ALB: 60 s), so that the balancer closes it first."""
    max_tasks_per_request: int = 100
    """Runware: tasks in one REST body or WebSocket frame."""
    max_reply_bytes: int = 64 * 1024 * 1024
    """Base64 images in one reply (bytes); past it, tasks are told to ask for URLs."""
    ws_max_frame_bytes: int = 1_000_000
    """The largest WebSocket frame sent to a client with a frame limit (runware-sdk keeps the
    websockets library's 1 MiB); Runware's legacy SDK, which has none, gets whole images."""
    ws_auth_timeout: float = 10.0
    """A WebSocket must authenticate within this long when keys are required (seconds)."""
    max_websockets: int = 1000
    """Open WebSocket connections per process."""
    ws_ping_interval: float = 20.0
    """WebSocket pings, which find half-open connections (seconds)."""

    # -- replies nobody reads (docs/operations.md, "Replies in flight"): base64 images wait in
    # memory until their client reads them; these bound them well inside the API pod's 2 GiB
    # (building a reply takes up to three times its size for a moment)
    reply_bytes_per_caller: int = Field(default=64 * 1024 * 1024, gt=0)
    """Bytes of base64 replies one caller (API key; client address without keys) may have
    unread at once; past it, 429 with Retry-After. One reply at a time is always allowed."""
    reply_bytes_total: int = Field(default=256 * 1024 * 1024, gt=0)
    """Bytes of base64 replies the process holds unread, all callers together; past it, 429."""
    reply_stall_seconds: float = Field(default=30.0, gt=0)
    """A client that reads nothing of a reply for this long has its connection closed and the
    reply's memory freed (seconds)."""

    # -- outbound delivery: webhooks and uploadEndpoint. The delays between attempts follow
    # Standard Webhooks; the tests compress them.
    webhook_secret: str | None = None
    """`whsec_<base64>`: signs deliveries (Standard Webhooks); also the root of WaveSpeed's
    per-key secrets (else the server's secret is)."""
    webhook_retry_delays: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0,
                                 86400.0]
    )
    """Seconds between a delivery's attempts, comma separated."""
    webhook_retry_period: float = 3 * 86400.0
    """No attempt starts later than this after the first (seconds)."""
    webhook_timeout: float = 15.0
    """One webhook POST, connect to last byte (seconds)."""
    upload_timeout: float = 60.0
    """One uploadEndpoint PUT (seconds)."""
    delivery_concurrency: int = Field(default=16, ge=1)
    """Deliveries in flight per process."""
    delivery_per_host: int = 4
    """Deliveries in flight to one host, so that a slow receiver cannot take every slot."""
    allow_loopback_urls: bool = False
    """Allow webhook and upload targets on loopback (the test suite's receivers need it)."""

    # -- safety and provenance (docs/safety.md); the content check's thresholds are in the
    # catalog ([safety.thresholds]); these say what runs at all
    content_checks: bool = True
    """Run the content check (NudeNet) where a request asks for one; false: every image is
    delivered unchecked."""
    content_check_floor: Literal["off", "flag", "withhold"] = "off"
    """The least content check every job gets, whatever its caller asks (docs/safety.md):
    `off`, what the caller asks; `flag`, every image checked, at least at
    `block_medium_and_above`, and flagged (where the dialect withholds, withheld); `withhold`,
    every flagged image withheld, in every dialect. Needs `content_checks`."""
    blocked_prompt_terms: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Words and phrases refused in prompts (whole words, any case), comma separated."""
    blocked_prompt_patterns: list[str] = Field(default_factory=list)
    """Regular expressions refused in prompts, a JSON list."""
    blocked_prompts_file: FilePath | None = None
    """A file of both, one a line: `re:` before a regular expression, `#` comments."""
    c2pa_certificate: FilePath | None = None
    """A PEM certificate chain, leaf first: with its key, every image carries C2PA content
    credentials (`easel c2pa test-certificate DIR` makes a test pair)."""
    c2pa_private_key: FilePath | None = None
    """The C2PA certificate's private key (PEM)."""
    c2pa_algorithm: str = "es256"
    """The C2PA signing algorithm."""
    c2pa_timestamp_url: str | None = None
    """An RFC 3161 time-stamp authority for the C2PA signatures."""
    prompt_enhancer_url: str | None = None
    """An OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp), e.g.
    `http://127.0.0.1:11434/v1`, for `enhance_prompt`; unset: prompts are used as written."""
    prompt_enhancer_model: str = "default"
    """The prompt enhancer's model name."""
    prompt_enhancer_api_key: str | None = None
    """The prompt enhancer's API key, if it needs one."""
    prompt_enhancer_timeout: float = 10.0
    """How long a rewrite may take before the original prompt is used (seconds)."""

    # -- LoRA adapters (docs/lora.md): the allow-list is `easel lora add|list|remove`
    max_loras_per_request: int = Field(default=4, ge=0, le=16)
    """Adapters one request may name (0: none; each adds to every step's cost)."""
    lora_max_bytes: int = Field(default=2 * 1024**3, ge=1)
    """The largest adapter file `easel lora add` takes (bytes)."""
    lora_download_timeout: float = 600.0
    """How long `easel lora add` may take to download a file from a URL (seconds)."""

    @field_validator("content_check_floor")
    @classmethod
    def _floor_needs_checks(cls, value: str, info: ValidationInfo) -> str:
        if value != "off" and info.data.get("content_checks") is False:
            raise ValueError(f"{value} needs content_checks on (EASEL_CONTENT_CHECKS): a floor "
                             "of checks that never run would promise what is not done")
        return value

    @field_validator("webhook_retry_delays", mode="before")
    @classmethod
    def _float_list(cls, value: Any) -> Any:
        """EASEL_WEBHOOK_RETRY_DELAYS=5,300,1800 (seconds, comma separated)."""
        if isinstance(value, str):
            return [float(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        """A URL SQLAlchemy can open: its scheme names an installed dialect and driver."""
        if value is None:
            return value
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(value).get_dialect()
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise ValueError(f"not a database URL easel can open: {exc}") from None
        return value

    @field_validator("image_store")
    @classmethod
    def _known_images(cls, value: str | None) -> str | None:
        if value is not None:
            from easel.store.s3 import BucketLocation

            BucketLocation.parse(value)
        return value

    @field_validator("caller_weights")
    @classmethod
    def _positive_weights(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not v > 0}
        if bad:
            raise ValueError(f"caller weights must be positive, got {bad}")
        return value

    @field_validator("dialect_image_ttl")
    @classmethod
    def _positive_ttls(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if v < 1}
        if bad:
            raise ValueError(f"image lifetimes must be at least 1 second, got {bad}")
        return value

    @model_validator(mode="after")
    def _lifetimes_within_the_longest(self) -> Settings:
        """A default lifetime past the longest one a client may ask for would outlive it."""
        longer = {name: ttl for name, ttl in (("image_ttl_seconds", self.image_ttl_seconds),
                                              *self.dialect_image_ttl.items())
                  if ttl > self.max_ttl_seconds}
        if longer:
            raise ValueError(f"image lifetimes {longer} are longer than max_ttl_seconds "
                             f"({self.max_ttl_seconds}): raise EASEL_MAX_TTL_SECONDS too")
        return self

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        """Each an origin as a browser sends it: scheme://host[:port], nothing after."""
        origins = []
        for origin in value:
            if origin == "*":
                origins.append(origin)
                continue
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.hostname or \
                    parts.path not in ("", "/") or parts.query or parts.fragment:
                raise ValueError(f"cors_origins: {origin!r} is not an origin (give "
                                 "scheme://host[:port], e.g. https://app.example.com)")
            origins.append(f"{parts.scheme}://{parts.netloc}".lower())
        return origins

    @field_validator("api_keys", "preload_models", "allowed_hosts", "blocked_prompt_terms",
                     "cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """EASEL_API_KEYS=a,b (comma separated), as people write it in a shell."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def image_ttl_for(self, dialect: str) -> int:
        """How long images of a job from `dialect` resolve, when the job asked for no ttl."""
        return self.dialect_image_ttl.get(dialect, self.image_ttl_seconds)

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def loras_dir(self) -> Path:
        """A worker's local copies of the allow-listed adapters (by digest)."""
        return self.data_dir / "models" / "loras"

    @property
    def compile_cache_dir(self) -> Path:
        return self.data_dir / "compile-cache"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.data_dir / 'easel.db'}"

    @property
    def local_url(self) -> str:
        """Where a client on this machine reaches this server: the CLI's client commands call
        it unless told another URL (an address bound to every interface: loopback)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Where clients reach this server: the prefix of every image URL."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


# -- the settings file ----------------------------------------------------------------------


class SettingsError(ValueError):
    """Settings that cannot be used: a missing or malformed file, an unknown key, a bad value.
    The message names the setting and where it came from, in one line per problem."""


def default_config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "easel" / "easel.toml"


def config_file_path(explicit: Path | None = None) -> Path | None:
    """The settings file to read: the flag's, the environment's, or the default if present."""
    named = explicit if explicit is not None else os.environ.get(CONFIG_ENV)
    if named == "":
        return None
    if named is not None:
        path = Path(named).expanduser()
        if not path.is_file():
            raise SettingsError(f"settings file {path} does not exist")
        return path
    default = default_config_file()
    return default if default.is_file() else None


def read_settings_file(path: Path) -> dict[str, Any]:
    """The file's settings by field name. Relative paths in it are relative to the file, as a
    reader of the file would expect; an unknown key is an error (a typo must not pass)."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"settings file {path}: {exc}") from exc
    fields = Settings.model_fields
    renamed = [f"{key} was renamed {RENAMED[key]}" for key in data if key in RENAMED]
    if renamed:
        raise SettingsError(f"settings file {path}: {'; '.join(renamed)}")
    unknown = [key for key in data if key not in fields]
    if unknown:
        hints = [f"{key} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(
            key, fields, n=1)) else key for key in unknown]
        raise SettingsError(f"settings file {path}: unknown setting(s): {', '.join(hints)}")
    for key, value in data.items():
        if isinstance(value, str) and _is_path(fields[key]):
            data[key] = str((path.parent / Path(value).expanduser()).resolve())
    return data


def _is_path(field: FieldInfo) -> bool:
    def names_a_path(annotation: Any) -> bool:  # Path, Path | None, FilePath | None, ...
        return annotation is Path or any(names_a_path(arg) for arg in get_args(annotation))

    return names_a_path(field.annotation)


class _FileSource(PydanticBaseSettingsSource):
    """The settings file's values, a layer below the environment."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


def load_settings(config_file: Path | None = None, **flags: Any) -> Settings:
    """Settings from the flags given, the environment, the settings file and the defaults,
    in that order of precedence. Flags left at None are not given."""
    given = {name: value for name, value in flags.items() if value is not None}
    path = config_file_path(config_file)
    _refuse_renamed()
    file_values = read_settings_file(path) if path else {}

    class FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, _FileSource(settings_cls, file_values)

    try:
        return FromFile(**given)
    except ValidationError as exc:
        raise SettingsError(_explain(exc, given, file_values, path)) from exc
    except SourceError as exc:  # a variable that must be JSON (a table, a list) is not
        name = next((n for n in Settings.model_fields if f'"{n}"' in str(exc)), "?")
        raise SettingsError(f"invalid settings: {name} ({env_name(name)}): not valid JSON "
                            f"({exc.__cause__ or exc})") from exc


# Settings that were renamed: the old name is refused with the new one, never ignored quietly.
RENAMED = {"fallback_max_steps": "stand_in_max_steps"}


def _refuse_renamed() -> None:
    for old, new in RENAMED.items():
        if env_name(old) in os.environ:
            raise SettingsError(f"{env_name(old)} was renamed {env_name(new)}")


def _explain(exc: ValidationError, flags: dict[str, Any], file_values: dict[str, Any],
             path: Path | None) -> str:
    problems = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a rule across settings: its message names them
            problems.append(message)
            continue
        name = str(error["loc"][0])
        origin = setting_source(name, flags, file_values, path)
        problems.append(f"{name} ({origin}): {message}")
    return "invalid settings: " + "; ".join(problems)


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def setting_source(name: str, flags: dict[str, Any], file_values: dict[str, Any],
                   path: Path | None) -> str:
    """Where a setting's value comes from: `flag`, `EASEL_...`, the file, or `default`."""
    if name in flags:
        return "flag"
    wanted = env_name(name)
    if any(key.upper() == wanted for key in os.environ):
        return wanted
    if name in file_values:
        return str(path)
    return "default"


# -- the reference in docs/operations.md ------------------------------------------------------

SECRET_SETTINGS = frozenset({"api_keys", "secret_key", "webhook_secret",
                             "prompt_enhancer_api_key"})


def secret_values(settings: Settings) -> list[str]:
    """The configured secrets, which logs must never show."""
    values = list(settings.api_keys)
    values += [v for v in (settings.secret_key, settings.webhook_secret,
                           settings.prompt_enhancer_api_key) if v]
    return values
# The table's sections, by the first setting of each (the class's order).
SECTIONS = {
    "data_dir": "Paths and models", "compile": "Engine speed", "host": "The server",
    "database": "Jobs and storage", "api_keys": "Who gets in", "rate_limit_per_second":
    "Abuse limits", "webhook_secret": "Webhooks and uploads", "content_checks":
    "Safety and provenance",
}


def shown_default(name: str, field: FieldInfo) -> str:
    if name == "data_dir":
        return "~/.local/share/easel"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(f"{item:g}" if isinstance(item, float) else str(item)
                        for item in value) or "empty"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def reference_markdown() -> str:
    """docs/operations.md's table of every setting, from the class, so the two cannot drift."""
    lines: list[str] = []
    for name, field in Settings.model_fields.items():
        if name in SECTIONS:
            lines += ["", f"**{SECTIONS[name]}**", "",
                      "| environment | file key | default | meaning |", "|---|---|---|---|"]
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        lines.append(f"| `{env_name(name)}` | `{name}` | {shown_default(name, field)} | "
                     f"{description} |")
    return "\n".join(lines[1:]) + "\n"
