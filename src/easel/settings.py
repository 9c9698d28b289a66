"""One typed settings object; the only reader of the environment (EASEL_* variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "easel"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EASEL_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    catalog_file: Path | None = None  # a user TOML overlaid on the packaged catalog
    device: str | None = None  # "cuda", "cuda:1", "cpu"; default: cuda when present
    strict: bool = False  # refuse a tier whose real weights are absent instead of falling back
    # Refuse every backend whose licence (catalog [licenses]) does not allow commercial use.
    commercial_only: bool = False
    fallback_max_steps: int = 4  # stand-in models are untrained: more steps buy nothing
    max_loaded_models: int = 2
    num_threads: int | None = None

    # Engine speed options (docs/performance.md). Lossy ones are off unless asked for.
    compile: bool = False  # torch.compile the denoiser (regional); graphs cached on disk
    compile_mode: str = "default"  # "reduce-overhead" adds CUDA graphs
    attention_backend: str | None = None  # e.g. "_native_cudnn", "flash"
    fuse_qkv: bool = False
    quantize: str | None = None  # "fp8" (Hopper, torchao): lossy
    step_cache_threshold: float | None = None  # First-Block-Cache, e.g. 0.12: lossy
    vae_tiling_pixels: int | None = None  # tile the VAE at/above this many pixels: lossy
    text_cache_size: int = 256  # prompt embeddings kept in memory (0: off)

    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None  # base of image URLs; default http://host:port
    image_ttl_seconds: int = 3600
    # Per dialect, where the provider documents how long its image URLs live (OpenAI: 60
    # minutes); the others use image_ttl_seconds. A client's own ttl (Runware) wins over both.
    dialect_image_ttl: dict[str, int] = Field(default_factory=lambda: {"openai": 3600})
    batch_size: int = 4  # most images the worker puts in one engine call

    # Server: jobs, leases, limits. A lease shorter than the slowest batch would let a second
    # worker steal a healthy job, so the heartbeat renews it every lease_seconds / 3.
    database: str | None = None  # SQLAlchemy URL; default: SQLite (WAL) in data_dir
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)  # empty: no key needed
    max_attempts: int = 3  # runs of one job (crash re-runs included) before it is failed
    lease_seconds: float = 30.0
    poll_interval: float = 0.5  # store polling when no in-process notification arrives
    sweep_interval: float = 30.0  # how often expired images are deleted from disk
    max_body_bytes: int = 1_000_000  # largest REST body / WebSocket frame accepted (bytes)
    body_timeout: float = 30.0  # a request body must arrive within this long (else 408)
    header_timeout: float = 10.0  # a new connection's request headers must arrive within this
    storage_retry_seconds: float = 5.0  # after a storage failure, how often the worker retries
    max_tasks_per_request: int = 100  # Runware: tasks in one REST body or WebSocket frame
    max_reply_bytes: int = 64 * 1024 * 1024  # base64 images in one reply; beyond: use URLs
    # Largest WebSocket frame sent (Runware): the SDKs keep websockets' 1 MiB receive limit.
    ws_max_frame_bytes: int = 1_000_000
    max_ttl_seconds: int = 30 * 86400  # the longest image URL lifetime a client may ask for
    # Host headers served (DNS rebinding); empty: loopback names when bound to loopback (plus
    # the public URL's host), any host otherwise. Browsers from other origins are refused.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    protect_meta_routes: bool = False  # with keys: /metrics, /docs, /redoc, /openapi.json too
    ws_auth_timeout: float = 10.0  # a WebSocket must authenticate within this (keys required)
    max_websockets: int = 1000  # open WebSocket connections per process
    ws_ping_interval: float = 20.0  # WebSocket pings find half-open connections
    secret_key: str | None = None  # signs WaveSpeed refusal ids; default: <data_dir>/secret.key
    sync_timeout: float = 600.0  # longest a sync request waits for its images
    preload_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["google:2@3"]
    )  # public model ids whose weights load at start; /readyz waits for them
    run_worker: bool = True  # an API-only process leaves the jobs to other workers
    shutdown_grace_seconds: float = 30.0  # SIGTERM: finish in-flight work this long, then hand back

    # Abuse limits (docs/operations.md). Prompt length and images per request are per model, in
    # the catalog. 0 turns a limit off.
    rate_limit_per_second: float = 10.0  # per API key (or per client address when keys are off)
    rate_limit_burst: int = 100
    max_queue_depth: int = 1000  # queued jobs; above it submissions get 503 + Retry-After

    # Outbound delivery (webhooks, uploadEndpoint). Delays between attempts follow Standard
    # Webhooks; the tests compress them. Give up when the schedule or the period runs out.
    webhook_secret: str | None = None  # whsec_<base64>: sign deliveries (Standard Webhooks)
    webhook_retry_delays: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0,
                                 86400.0]
    )
    webhook_retry_period: float = 3 * 86400.0  # no attempt starts later than this after the first
    webhook_timeout: float = 15.0  # one webhook POST, connect to last byte
    upload_timeout: float = 60.0  # one uploadEndpoint PUT
    delivery_concurrency: int = 16
    delivery_per_host: int = 4  # attempts in flight to one host: a slow one cannot hold all
    # Loopback targets are refused unless this is set (the test suite's receivers need it).
    allow_loopback_urls: bool = False

    # Safety and provenance (docs/safety.md). The thresholds of the content check are in the
    # catalog ([safety.thresholds]); these say what runs at all.
    content_checks: bool = True  # False: no detector runs; every image is delivered unchecked
    # Prompts refused before any GPU time is spent: words or phrases (whole words, any case),
    # regular expressions (a JSON list in the environment), and a file of both (one a line,
    # `re:` before a regular expression, `#` comments).
    blocked_prompt_terms: Annotated[list[str], NoDecode] = Field(default_factory=list)
    blocked_prompt_patterns: list[str] = Field(default_factory=list)
    blocked_prompts_file: Path | None = None
    # C2PA content credentials on every image when a certificate chain (PEM, leaf first) and
    # its private key are configured; `easel c2pa test-certificate` makes a test pair.
    c2pa_certificate: Path | None = None
    c2pa_private_key: Path | None = None
    c2pa_algorithm: str = "es256"
    c2pa_timestamp_url: str | None = None  # an RFC 3161 time-stamp authority, if any
    # Prompt enhancement (`enhance_prompt`): an OpenAI-compatible chat endpoint (vLLM, Ollama,
    # llama.cpp), e.g. http://127.0.0.1:11434/v1. None: prompts are used as written.
    prompt_enhancer_url: str | None = None
    prompt_enhancer_model: str = "default"
    prompt_enhancer_api_key: str | None = None
    prompt_enhancer_timeout: float = 10.0  # then the original prompt is used

    @field_validator("webhook_retry_delays", mode="before")
    @classmethod
    def _float_list(cls, value: Any) -> Any:
        """EASEL_WEBHOOK_RETRY_DELAYS=5,300,1800 (seconds, comma separated)."""
        if isinstance(value, str):
            return [float(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("dialect_image_ttl")
    @classmethod
    def _positive_ttls(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if v < 1}
        if bad:
            raise ValueError(f"image lifetimes must be at least 1 second, got {bad}")
        return value

    @field_validator("api_keys", "preload_models", "allowed_hosts", "blocked_prompt_terms",
                     mode="before")
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
    def compile_cache_dir(self) -> Path:
        return self.data_dir / "compile-cache"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.data_dir / 'easel.db'}"

    @property
    def base_url(self) -> str:
        """Where clients reach this server: the prefix of every image URL."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"
