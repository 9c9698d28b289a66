"""The port: all an HTTP dialect may ask of the core, and the typed values it speaks.

A dialect parses its wire body into a Submission and hands it over (`submit`, `run`, `settle`),
names a job the way its clients do (`JobRef`) to `find` or `cancel` it, hands images out
through `images`, lists the models it serves (`catalog`, `facts`, `model`) and signs what it
hands out (`sign`, `webhook_key`). The core alone decides: limits, the catalog's rules, the
rate budget of every read, ownership, scoping of client-chosen ids.

`Operations` is the rest of what the app's own routes and guards need (readiness, metrics, image
downloads, request timings). easel.services.core.Core implements both; the composition root
(easel.runtime.build) builds it and gives it to the app. Nothing under easel.api sees more."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from easel.catalog import Backend, Catalog, License, Model
from easel.domain.delivery import Delivery
from easel.domain.job import Job, JobImage, JobStatus
from easel.domain.lora import Adapter
from easel.domain.submission import Caller, ImageInput, Submission


class ImageSource(Protocol):
    """How dialects hand images out: what their renderers (replies, webhooks) need."""

    base_url: str

    def image_url(self, job: Job, image: JobImage) -> str: ...

    async def image_bytes(self, image: JobImage) -> bytes: ...

    async def image_base64(self, image: JobImage) -> str: ...

    async def image_data_uri(self, image: JobImage) -> str: ...

    async def partial_bytes(self, job: Job, image: JobImage, round_: int) -> bytes | None:
        """An image's partial image of `round_` (a preview drawn while it denoised); None when
        there is none (withheld by the check, or removed once the job ended)."""
        ...


# (job, image id or None for the whole job, images) -> the JSON body of one of a dialect's
# webhooks; the delivery service renders each on its first attempt and stores it.
Renderer = Callable[[Job, "str | None", ImageSource], Awaitable[dict[str, Any]]]
# (signing root, the job's caller principal, message id, body) -> the headers that sign one
# webhook POST the way the dialect's provider signs it
Signer = Callable[[str, str, str, bytes], dict[str, str]]


@dataclass(frozen=True)
class Limits:
    """The operator's bounds on what one request may carry and how long it is held."""

    max_body_bytes: int
    body_timeout: float  # seconds for a whole body to arrive
    sync_timeout: float  # seconds a synchronous request is held for its job
    max_tasks_per_request: int  # Runware tasks in one request or WebSocket frame
    max_reply_bytes: int  # base64 image data one reply may carry
    ws_max_frame_bytes: int
    ws_auth_timeout: float  # seconds a WebSocket may wait before it authenticates
    max_websockets: int  # open WebSockets one process holds


@dataclass(frozen=True)
class BackendFacts:
    """What serves a backend here: its licence, whether its real weights are present, the
    stand-in that serves it when they are not, and why the server refuses it, if it does."""

    name: str
    source: str
    family: str
    license: License
    refused: str | None  # why this server will not serve it (commercial-only), or None
    present: bool  # its real weights are on this machine
    stand_in: str | None  # the stand-in serving it while its weights are absent
    stand_in_steps: int | None = None  # the denoising steps the stand-in runs
    stand_in_trained: bool = False  # easel-mini (trained, simple scenes), not a tiny noise model

    def to_json(self) -> dict[str, Any]:
        """As /easel/info, /easel/models and `easel models --json` show it."""
        license = self.license
        return {
            "backend": self.name, "source": self.source, "family": self.family,
            "license": {"id": license.id, "name": license.name, "url": license.url,
                        "commercial": license.commercial, "terms": license.terms},
            "refused": self.refused,
            "weights": "present" if self.present else "absent",
            "stand_in": self.stand_in,
            "stand_in_steps": self.stand_in_steps,
            "stand_in_trained": self.stand_in_trained,
        }


@dataclass(frozen=True)
class JobRef:
    """A job as a client names it, and which ids that name may be: easel's own id (dashed, or
    32 hex digits as WaveSpeed shows it), the id a client of one dialect chose (Runware's
    taskUUID), or either (`dialect` None and `easel_id` True: easel's own API and CLI).
    `parameter` and `noun` word the not-found error ("no task ...", naming taskUUID)."""

    id: str
    parameter: str
    noun: str = "job"
    easel_id: bool = True
    chosen_in: str | None = None  # a dialect's name: ids its clients chose
    any_chosen: bool = False  # ids chosen by clients of any dialect
    cursor: bool = False  # a paging cursor: naming no job is an invalid parameter, not a 404

    @classmethod
    def easel(cls, some_id: str, parameter: str, noun: str = "job") -> JobRef:
        return cls(some_id, parameter, noun)

    @classmethod
    def chosen(cls, dialect: str, some_id: str, parameter: str, noun: str = "task") -> JobRef:
        return cls(some_id, parameter, noun, easel_id=False, chosen_in=dialect)

    @classmethod
    def any(cls, some_id: str, parameter: str, noun: str = "job") -> JobRef:
        return cls(some_id, parameter, noun, any_chosen=True)

    @classmethod
    def cursor_of(cls, some_id: str, parameter: str) -> JobRef:
        """The last job of the previous page, by any id (a listing's `after`)."""
        return cls(some_id, parameter, any_chosen=True, cursor=True)


@dataclass(frozen=True)
class StoredUpload:
    """An image a caller uploaded, as it is told of it: the id to name it by in later requests
    (only this caller may), its URL's path and its size."""

    image_id: str
    path: str  # /images/<id>.<ext>, below the server's base URL
    width: int
    height: int


@dataclass(frozen=True)
class StoredBytes:
    """A stored image, to be streamed to a client a chunk at a time."""

    size: int
    chunks: Iterator[bytes]
    mime: str
    lives_for: float | None = None  # seconds until it expires; None: kept until deleted


class Port(Protocol):
    @property
    def limits(self) -> Limits: ...

    @property
    def images(self) -> ImageSource: ...

    @property
    def catalog(self) -> Catalog:
        """The model ids, tiers, sizes and prices this server serves (read only)."""
        ...

    def caller(self, key: str | None, address: str) -> Caller | None:
        """Who holds `key` (or, with no keys configured, the caller at `address`); None when a
        key is required and this one is not live. Throttled when keys cannot be checked now."""
        ...

    def facts(self, backend: Backend) -> BackendFacts: ...

    def adapters(self) -> list[Adapter]:
        """The allow-listed LoRA adapters (a store read: call it off the event loop)."""
        ...

    def model(self, model_id: str, provider: str | None = None,
              parameter: str = "model") -> Model:
        """A served model by its id (of `provider` only, when given); UNKNOWN_MODEL else."""
        ...

    async def server_info(self) -> dict[str, Any]: ...

    async def submit(self, submission: Submission) -> tuple[Job, bool]:
        """The queued job, and whether it is new (False: the same task id and parameters)."""
        ...

    async def run(self, submission: Submission) -> Job:
        """Submit and hold for the completed job; JobFailed, StillRunning or Draining else."""
        ...

    async def settle(self, submission: Submission) -> Job:
        """Submit and hold until the job ends or the wait runs out: the job as it then is (for
        dialects that report a failed task as data). Draining when the server shuts down."""
        ...

    async def find(self, caller: Caller, ref: JobRef) -> Job:
        """The caller's job `ref` names (NOT_FOUND else); spends the caller's rate budget."""
        ...

    def spend_rate_budget(self, caller: Caller) -> None:
        """Spend a token of the caller's rate budget for a request that asks the core nothing
        else (a refusal a dialect answers itself, and polls of it; a WebSocket session opened);
        Throttled (rate limited) over it."""
        ...

    async def cancel(self, caller: Caller, ref: JobRef) -> Job:
        """Cancel the caller's job; spends the rate budget; a finished job comes back as it is."""
        ...

    async def jobs_of(self, caller: Caller, limit: int, statuses: Sequence[JobStatus] = (),
                      after: JobRef | None = None) -> list[Job]:
        """The caller's jobs, newest first, after the one `after` names; spends the budget."""
        ...

    def watch(self, job: Job) -> AsyncGenerator[Job, None]:
        """The job at every change until it is terminal (the last one yielded is)."""
        ...

    async def deliveries(self, job: Job) -> list[Delivery]: ...

    async def upload_image(self, caller: Caller, given: ImageInput,
                           reserved: tuple[str, str] | None = None) -> StoredUpload:
        """Keep an image the caller sends (decoded and checked as every input image) to be
        named by its id in the caller's later requests; spends the rate budget. `reserved`:
        the id and extension an upload ticket promised (another format is refused)."""
        ...

    def notify(self, caller: Caller, dialect: str, url: str, payload: dict[str, Any]) -> None:
        """Send `payload` to the caller's webhook `url` about a request that never became a
        job (a refusal its provider also reports by webhook): the outbound policy, the
        dialect's signature and the retry schedule apply; nothing is stored."""
        ...

    def sign(self, purpose: str, data: bytes) -> bytes:
        """A MAC of `data` with the server's own secret, for ids it hands out and reads back."""
        ...

    def webhook_key(self, purpose: str, data: bytes) -> bytes:
        """A key derived from the webhook signing root (a per-caller webhook secret)."""
        ...


class Operations(Protocol):
    """What the app's own routes and guards need besides the port."""

    async def not_ready_reason(self) -> str:
        """Why this process cannot take jobs now ("" when it can)."""
        ...

    async def metrics_text(self) -> bytes: ...

    async def open_image(self, image_id: str, ext: str) -> StoredBytes | None:
        """A live image to stream; None when unknown or expired; Throttled when the image
        store cannot be read now."""
        ...

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request's timing: `route` is the matched route's template, "unmatched" for
        none, never the raw path; the method is bounded by the core (a metric label)."""
        ...
