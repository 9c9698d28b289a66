"""What every dialect shares: the Dialect it exports, the error table over one default table,
reading a JSON body, validating wire models with one clear message that names the parameter,
and the header that lists ignored fields.

Nothing here holds state or knows a size, a limit or a price (those live in the catalog)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from easel.api.caller import port_of
from easel.api.limits import BodyTooLarge, HTTPRefusal, read_body
from easel.api.replies import hold_of
from easel.catalog import did_you_mean
from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.job import Job, JobImage
from easel.domain.safety import EnhancementState, Withheld
from easel.domain.submission import Caller
from easel.services.port import ImageSource as ImageSource  # re-exported for the dialects
from easel.services.port import Renderer as WebhookRenderer
from easel.services.port import Signer as WebhookSigner

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

# Names the fields easel accepted but cannot honour (e.g. a watermark it never draws), so a
# client is told instead of the field being dropped quietly. Also written into docs per dialect.
IGNORED_HEADER = "x-easel-ignored-fields"

# The one default table: the HTTP status of each kind of failure. A dialect overrides only
# where its provider documents another status.
DEFAULT_STATUS: Mapping[ErrorKind, int] = {
    ErrorKind.INVALID: 400,
    ErrorKind.MISSING: 400,
    ErrorKind.UNSUPPORTED: 400,
    ErrorKind.UNKNOWN_MODEL: 404,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TIMEOUT: 504,
    ErrorKind.CANCELLED: 409,
    ErrorKind.WORKER_LOST: 500,
    ErrorKind.CONTENT_BLOCKED: 400,
    ErrorKind.INFERENCE: 500,
    ErrorKind.INTERNAL: 500,
    ErrorKind.UNAUTHENTICATED: 401,
}
MAX_DEPTH = 32  # JSON nesting a request may have: deeper breaks recursion downstream


@dataclass(frozen=True)
class ErrorTable:
    """A dialect's error codes, one per ErrorKind (the model is closed: every kind has one),
    and the statuses where it differs from DEFAULT_STATUS."""

    codes: Mapping[ErrorKind, str]
    statuses: Mapping[ErrorKind, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [kind.value for kind in ErrorKind if kind not in self.codes]
        if missing:
            raise ValueError(f"error table has no code for {', '.join(missing)}")

    def status(self, err: EaselError) -> int:
        if isinstance(err, HTTPRefusal):
            return err.status
        return self.status_of(err.kind)

    def status_of(self, kind: ErrorKind) -> int:
        return self.statuses.get(kind, DEFAULT_STATUS[kind])

    def code(self, kind: ErrorKind) -> str:
        return self.codes[kind]


# WebhookRenderer and WebhookSigner are the delivery service's: a dialect's webhook body, and how
# its provider signs one (None in a Dialect: Standard Webhooks).

# (error, the request it ends) -> the whole reply, in the dialect's shape and status. Every
# failure of a whole request comes here: a route's, a refusal made before any route runs (a
# foreign Origin, an unknown path: an HTTPRefusal), a missing key (Unauthenticated).
ErrorRenderer = Callable[[EaselError, Request], Response]


# (path, headers lower-cased, query string) -> whether a request is this dialect's although its
# path alone does not say so (Google's `/v1/models/...` with an x-goog-api-key).
Claim = Callable[[str, Mapping[str, str], str], bool]


@dataclass(frozen=True)
class Dialect:
    """What a dialect exports: its routes, the paths they live under (`prefixes`: the path and
    everything below it; `exact`: that path only), its error table, its one error renderer,
    its webhook bodies (None: it sends none), how it signs them, and whether its clients choose
    job ids (idempotency keys, scoped to the caller). easel/runtime/build.py lists the
    dialects the app serves, explicitly."""

    name: str
    router: APIRouter
    errors: ErrorTable
    prefixes: tuple[str, ...]
    render_error: ErrorRenderer
    render_webhook: WebhookRenderer | None = None
    exact: tuple[str, ...] = ()
    claims: Claim | None = None
    sign_webhook: WebhookSigner | None = None  # None: Standard Webhooks
    chooses_ids: bool = False


def scope_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """An ASGI scope's headers, names lower-cased (the last of a repeated one wins)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def scope_owner(dialects: Sequence[Dialect], scope: Mapping[str, Any]) -> Dialect | None:
    """owner_of for an ASGI scope (a request no route has taken, or one a route tests)."""
    query = scope.get("query_string", b"").decode("latin-1")
    return owner_of(dialects, scope["path"], scope_headers(scope), query)


def owner_of(
    dialects: Sequence[Dialect], path: str, headers: Mapping[str, str], query: str
) -> Dialect | None:
    """The dialect a request belongs to, for answering it in that dialect's error shape: a
    dialect that claims it, else the one with the exact path, else the longest prefix."""
    for dialect in dialects:
        if dialect.claims is not None and dialect.claims(path, headers, query):
            return dialect
    for dialect in dialects:
        if path in dialect.exact:
            return dialect
    best: tuple[int, Dialect | None] = (0, None)
    for dialect in dialects:
        for prefix in dialect.prefixes:
            root = prefix.rstrip("/")
            if (path == root or path.startswith(root + "/")) and len(root) > best[0]:
                best = (len(root), dialect)
    return best[1]


def nested_at_most(data: Any, depth: int) -> bool:
    """Whether `data` nests arrays and objects at most `depth` levels (no recursion)."""
    level: list[Any] = [data]
    for _ in range(depth + 1):
        children: list[Any] = []
        for node in level:
            if isinstance(node, dict):
                children.extend(node.values())
            elif isinstance(node, list):
                children.extend(node)
        if not children:
            return True
        level = children
    return False


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object."""
    if not raw.strip():
        raise EaselError(ErrorKind.MISSING, "the request body must be a JSON object", "body")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise invalid("body", "the request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # integers over 4300 digits included
        raise invalid("body", f"the request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise invalid("body", "the request body must be a JSON object")
    if not nested_at_most(data, MAX_DEPTH):
        raise invalid("body", f"the request body is nested deeper than {MAX_DEPTH} levels")
    return data


class PayloadTooLarge(HTTPRefusal):
    """A body over the server's limit; dialects answer it with HTTP 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "payloadTooLarge", f"the request body is larger than {limit} "
                         "bytes", "body")


async def json_object(request: Request) -> dict[str, Any]:
    """The body as one JSON object, refused as soon as it passes the server's limit (413), when
    it is not JSON (415) or when it trickles in (408). Also a FastAPI dependency (JsonBody)."""
    limits = port_of(request).limits
    try:
        raw = await read_body(request, limits.max_body_bytes, limits.body_timeout)
    except BodyTooLarge:
        raise PayloadTooLarge(limits.max_body_bytes) from None
    body = parse_json_object(raw)
    # Kept for the dialect's renderer: a refusal that echoes what was sent (WaveSpeed's input).
    request.state.json_body = body
    return body


JsonBody = Annotated[dict[str, Any], Depends(json_object)]


def validate_wire(model: type[M], data: dict[str, Any], prefix: str = "") -> M:
    """Validate a wire body against its pydantic model; the first problem becomes one
    EaselError naming the parameter as the client spelled it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise wire_error(exc, prefix, field_names(model)) from None


@functools.cache
def field_names(model: type[BaseModel]) -> tuple[str, ...]:
    """Every field name a wire model and the models inside it take, as clients spell them."""
    names: set[str] = set()

    def collect(schema: Any) -> None:
        if isinstance(schema, dict):
            names.update(schema.get("properties", {}))
            for value in schema.values():
                collect(value)
        elif isinstance(schema, list):
            for value in schema:
                collect(value)

    collect(model.model_json_schema())
    return tuple(sorted(names))


def wire_error(exc: ValidationError, prefix: str = "", known: Sequence[str] = ()) -> EaselError:
    """The one problem a client is told of. A field easel does not know goes first when it
    looks like a misspelt one (`promt`): "prompt is required" would hide the typo."""
    errors = exc.errors()
    typos = [e for e in errors if e["type"] == "extra_forbidden" and e["loc"]
             and did_you_mean(str(e["loc"][-1]), known)]
    err = typos[0] if typos else errors[0]
    parts = [prefix] if prefix else []
    for item in err["loc"]:
        if isinstance(item, int) and parts:
            parts[-1] = f"{parts[-1]}[{item}]"
        else:
            parts.append(str(item))
    parameter = ".".join(parts) or "body"
    etype = err["type"]
    if etype == "missing":
        return EaselError(ErrorKind.MISSING, f"{parameter} is required", parameter)
    if etype == "extra_forbidden":
        hint = did_you_mean(str(err["loc"][-1]), known) if err["loc"] else ""
        return EaselError(ErrorKind.UNSUPPORTED,
                          f"{parameter} is not a parameter easel accepts here{hint}", parameter)
    got = err.get("input")
    shown = json.dumps(got)[:80] if _jsonable(got) else repr(got)[:80]
    return invalid(parameter, f"{parameter}: {err['msg']}, got {shown}")


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def iso_ms(moment: datetime) -> str:
    """2026-08-25T00:49:21.479Z"""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def base64_bytes(images: Iterable[JobImage]) -> int:
    """What the stored files of `images` take as base64 in a reply."""
    return sum(((image.size_bytes or 0) + 2) // 3 * 4 for image in images)


def reserve_reply(request: Request, caller: Caller, size: int, parameter: str,
                  advice: str) -> None:
    """Reserve a large reply's bytes for `caller` before building it; they are released once
    the reply has been handed to the client (api/replies.py). RepliesOverBudget (429 with
    Retry-After, naming the bound) when the caller or the server has too much in flight.
    `parameter`: the field that made the reply large; `advice`: how to ask for less."""
    if size > 0:
        hold_of(request).reserve(caller.principal, size, parameter, advice)


def ignored_header(ignored: list[str]) -> dict[str, str]:
    return {IGNORED_HEADER: ", ".join(ignored)} if ignored else {}


def ordered_images(job: Job) -> list[JobImage]:
    return sorted(job.images, key=lambda image: image.index)


def delivered_images(job: Job) -> list[JobImage]:
    """The images a reply shows, in order: those the content check did not withhold."""
    return [image for image in ordered_images(job) if image.withheld is None]


def withheld_message(job: Job) -> str:
    """Why images are missing from a reply, in words a caller can act on."""
    withheld = [image for image in job.images if image.withheld is not None]
    people = sum(1 for image in withheld if image.withheld is Withheld.PERSON)
    nsfw = len(withheld) - people
    reasons = []
    if nsfw:
        reasons.append(f"{nsfw} by the content check (safety setting)")
    if people:
        reasons.append(f"{people} because they show people (person generation dont_allow)")
    return (f"{len(withheld)} of {len(job.images)} generated images were withheld: "
            f"{'; '.join(reasons)}; try rephrasing the prompt")


def all_withheld(job: Job) -> EaselError | None:
    """The content error of a completed job whose every image was withheld (a provider that
    withholds answers that way); None when any image can be shown."""
    if not job.images or any(image.withheld is None for image in job.images):
        return None
    return EaselError(ErrorKind.CONTENT_BLOCKED, withheld_message(job), "prompt")


PROMPT_HEADER = "x-easel-prompt-enhancement"


def easel_error_body(code: str, message: str, parameter: str | None) -> dict[str, Any]:
    """easel's own error shape: its API's, and every refusal outside a dialect (the guard's,
    an unknown route or image)."""
    return {"error": {"code": code, "message": message, "parameter": parameter}}


STAND_IN_HEADER = "x-easel-stand-in"


def stand_in_header(job: Job) -> dict[str, str]:
    """Which stand-in drew the images when the model's own weights are absent (the reply has
    no field for it; easel's own API has `stand_in_reason`)."""
    return {STAND_IN_HEADER: job.backend} if job.stand_in_reason else {}


def prompt_header(job: Job) -> dict[str, str]:
    """What became of `enhance_prompt` (rewritten, fallback, not_configured), where the reply
    has no field for it."""
    state = job.request.enhancement
    return {} if state is EnhancementState.OFF else {PROMPT_HEADER: state.value}


KEEP_ALIVE_SECONDS = 15.0  # a stream's comment line this often keeps proxies from closing it
KEEP_ALIVE = ": keep-alive\n\n"  # a server-sent-events comment: every client skips it


async def with_keep_alives(
    updates: AsyncIterator[T], seconds: float = KEEP_ALIVE_SECONDS
) -> AsyncGenerator[T | None, None]:
    """`updates` as they come, and None after every `seconds` without one: where a stream
    writes its keep-alive. Closing this closes `updates` (the job's watcher goes at once)."""
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(anext(updates))
            done, _ = await asyncio.wait({pending}, timeout=seconds)
            if not done:
                yield None
                continue
            pending = None
            try:
                current = done.pop().result()
            except StopAsyncIteration:
                return
            yield current
    finally:  # the client went away, or the updates ended
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(updates, "aclose", None)
        if aclose is not None:
            await aclose()
