"""The job service: the one place that decides about submissions, and what every dialect calls
to submit, run, read, wait for and cancel generation jobs.

Dialects translate their wire format into a Submission and render the Job they get back; they
never touch the store or the engine. `submit` runs, in this order and nowhere else: the caller's
rate limit and the queue cap, the catalog's rules, the SSRF check of every outbound URL, the
operator's content check floor, idempotency, insert.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from easel.catalog import INPUT_OPERATIONS, Backend, Catalog
from easel.domain.delivery import Delivery
from easel.domain.errors import EaselError, ErrorKind, Throttled, invalid
from easel.domain.generation import Operation
from easel.domain.job import Job, JobImage, JobStatus, QueueWait, job_id_from
from easel.domain.lora import AppliedLora
from easel.domain.outcomes import Draining, JobFailed, StillRunning
from easel.domain.request import GenerationRequest
from easel.domain.safety import (
    CheckFloor,
    EnhancementState,
    OnFlagged,
    SafetyInput,
    SafetyLevel,
    Withheld,
)
from easel.domain.submission import Caller, ImagesIn, InputShapeSize, Submission, WireNames
from easel.services.delivery.outbound import check_at_submission
from easel.services.images.inputs import (
    DEFAULT_STRENGTH,
    InputImages,
    PreparedInputs,
    ReadInputs,
)
from easel.services.images.safety import ContentChecker
from easel.services.jobs.admission import Admission
from easel.services.jobs.events import JobEvents
from easel.services.jobs.health import RETRY_SECONDS, StorageHealth
from easel.services.jobs.planning import (
    BackendResolver,
    Plan,
    plan_resolved,
    resolve,
    upscaled_size,
)
from easel.services.jobs.prompts import PromptBlockList, PromptEnhancer, not_configured
from easel.services.loras import AdapterRules
from easel.services.port import JobRef
from easel.store import DeliveryStore, InsertResult, JobStore, NewJob
from easel.store.jobs import request_to_json

log = logging.getLogger(__name__)


T = TypeVar("T")


class StoreUnavailable(Throttled):
    """The job store could not be reached; nothing was changed, so the caller may retry."""

    def __init__(self, exc: SQLAlchemyError) -> None:
        super().__init__(ErrorKind.UNAVAILABLE, "the job store cannot be reached or written now "
                         f"({type(exc).__name__}); retry in {RETRY_SECONDS}s", RETRY_SECONDS)


DRAIN_MARGIN_SECONDS = 2.0  # held requests are answered this long before the grace ends


def params_hash(submission: Submission, request_json: dict[str, object]) -> str:
    """What "the same parameters" means for a task id: the request, its delivery and echo (but
    echo keys starting with "_": a dialect's record of the call as sent, not a parameter)."""
    echo = {k: v for k, v in submission.echo.items() if not k.startswith("_")}
    # The tier follows from the model id; rows stored before the request carried it must
    # still match a retry of theirs.
    request_json = {k: v for k, v in request_json.items() if k != "tier"}
    body = json.dumps(
        {"dialect": submission.dialect, "request": request_json,
         "delivery": submission.delivery.to_json(), "echo": echo},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


# How far back a client's automatic retry may repeat its request: the openai SDK's three
# attempts at its 600 s read timeout, with backoff, fit in half an hour.
RETRY_WINDOW_SECONDS = 1800.0

SCOPE_NAMESPACE = uuid.UUID("0c0e6a52-5d8b-4d42-8f0e-5a1c3f7b9e21")


def scoped_id(caller: Caller, dialect: str, task_id: str) -> str:
    """easel's id for a client-chosen id: one per caller and dialect, so two API keys (or two
    dialects) using the same id never meet, and the case of a UUID does not matter."""
    return str(uuid.uuid5(SCOPE_NAMESPACE, f"{caller.principal}\n{dialect}\n{task_id.lower()}"))


def batch_key(the_plan: Plan) -> str:
    """Jobs with equal keys can share one engine call (same weights, size, steps, guidance)."""
    b = the_plan.backend
    r = the_plan.request
    two_pass = the_plan.two_pass
    parts: tuple[object, ...] = (
        b.source, b.family, f"{r.width}x{r.height}", b.steps, b.guidance, b.max_sequence_length,
        b.scheduler.name if b.scheduler else "",
        f"{two_pass.base_width}x{two_pass.base_height}@{two_pass.strength}" if two_pass else "",
        f"cfg{the_plan.true_cfg}" if the_plan.true_cfg else "",
        f"previews{r.partial_images}" if r.partial_images else "")
    if r.operation is not Operation.TEXT:  # one call draws one way, at one strength
        parts += (f"{r.operation.value}@{r.strength!r}",)
    if r.operation is Operation.REFERENCE:  # one call shows its images to every image it draws
        parts += (r.input_digest, *r.reference_digests)
    if r.upscale_factor:  # with the output's size, it fixes the inputs' size
        parts += (f"x{r.upscale_factor}",)
    if r.loras:  # one engine call runs one adapter set: jobs with another never share it
        parts += (",".join(f"lora:{a.name}@{a.digest[:16]}*{a.weight!r}" for a in r.loras),)
    return "|".join(str(part) for part in parts)


@dataclass(frozen=True)
class PromptRules:
    """What happens to a prompt before a job exists: the operator's block list, and the rewrite
    through a chat endpoint when the client asks for one (None: no endpoint configured)."""

    block_list: PromptBlockList = field(default_factory=PromptBlockList.empty)
    enhancer: PromptEnhancer | None = None
    on_blocked: Callable[[str], None] = lambda dialect: None  # metrics
    on_enhanced: Callable[[str], None] = lambda result: None

    def check(self, prompt: str, parameter: str) -> None:
        entry = self.block_list.match(prompt)
        if entry is not None:
            raise EaselError(ErrorKind.CONTENT_BLOCKED,
                             "the prompt was blocked by this server's content policy",
                             parameter)


class JobService:
    def __init__(
        self,
        catalog: Catalog,
        resolver: BackendResolver,
        store: JobStore,
        outbox: DeliveryStore,
        admission: Admission,
        events: JobEvents,
        health: StorageHealth,
        *,
        poll_interval: float,
        allow_loopback_urls: bool,
        max_ttl_seconds: int,
        on_submit: Callable[[str], None],
        prompts: PromptRules | None = None,
        adapters: AdapterRules | None = None,
        inputs: InputImages | None = None,
        chosen_id_scopes: Sequence[str] = (),
        check_floor: CheckFloor = CheckFloor.OFF,
        input_checker: ContentChecker | None = None,
    ) -> None:
        self.catalog = catalog
        self.resolver = resolver
        self.store = store
        self.outbox = outbox
        self.admission = admission
        self.events = events
        self.health = health
        self.poll_interval = poll_interval
        self.allow_loopback_urls = allow_loopback_urls
        self.max_ttl_seconds = max_ttl_seconds
        self.on_submit = on_submit  # metrics: jobs accepted per dialect
        self.prompts = prompts or PromptRules()
        # The dialects whose clients choose job ids (the composition root lists them): easel's
        # own API finds a job by any of them.
        self.chosen_id_scopes = tuple(chosen_id_scopes)
        self.check_floor = check_floor  # the operator's least content check, for every job
        self.adapters = adapters  # None: no LoRA allow-list (a request naming one is refused)
        self.inputs = inputs  # None: no input images taken (a request sending one is refused)
        self.input_checker = input_checker  # the content check of input images (None: none)
        self._drain_at: float | None = None  # monotonic time by which held requests answer

    # -- submit -------------------------------------------------------------------------------

    async def submit(self, submission: Submission) -> tuple[Job, bool]:
        """Decide and store a queued job. Same task id + same parameters: (existing, False)."""
        new, the_plan, inputs = await self._decide(submission)
        if submission.task_id is not None:  # a fresh random id cannot exist yet
            existing = await self._existing(new, submission)
            if existing is not None:
                return existing, False
        elif submission.repeats_earlier:
            since = self.store.clock() - RETRY_WINDOW_SECONDS
            twin = await self._stored(self.store.latest_twin, new.caller, new.params_hash,
                                      since)
            if twin is not None:
                log.info("job %s: a client's retry of the request that made it", twin.id,
                         extra={"job_id": twin.id, "dialect": submission.dialect})
                return twin, False
        new = await self._enhanced(new, submission.names)
        if inputs is not None and self.inputs is not None:
            # Stored before the job exists, so its worker always finds them. (Only two requests
            # racing with one task id and different images could overwrite the other's: the
            # loser gets CONFLICT below.)
            await self.inputs.keep(inputs, new.id)
        if not await self._insert(new):
            # Another request with the same id won the race between our read and our insert.
            raced = await self._existing(new, submission)
            if raced is not None:
                return raced, False
        self.on_submit(submission.dialect)
        self.events.work_submitted()
        log.info("job %s accepted: %s %s, %d image(s), %dx%d", new.id, new.dialect,
                 new.request.model, new.request.num_images, new.request.width,
                 new.request.height, extra={"job_id": new.id, "dialect": new.dialect,
                                            "model": new.request.model,
                                            "images": new.request.num_images})
        return await self.placed(_new_job(new, the_plan), reread=False), True

    async def _decide(self, submission: Submission
                      ) -> tuple[NewJob, Plan, PreparedInputs | None]:
        """Everything the core checks before a job may exist, in its one order."""
        names = submission.names
        self.admission.check_rate(submission.caller)
        if self.admission.queue_capped:  # early, cheap; the insert checks again, atomically
            self.admission.check_queue(await self._stored(self.store.queued_count))
        await asyncio.to_thread(self.health.check)  # a full disk refuses now, losing nothing
        model, request = resolve(submission.generation, self.catalog, names)
        if submission.generation.loras:
            request = replace(request, loras=await self._adapters(submission, model.backend))
        try:
            self.prompts.check(request.prompt, names("prompt"))
        except EaselError:
            self.prompts.on_blocked(submission.dialect)
            raise
        the_plan = plan_resolved(request, model, self.resolver, names=names)
        inputs = None
        if submission.generation.images_in is not None:
            the_plan, inputs = await self._drawn_from(submission, the_plan)
            request = the_plan.request
        self._check_ttl(submission)
        await self._check_urls(submission)
        task_id = submission.task_id
        job_id = str(uuid.uuid4()) if task_id is None else scoped_id(
            submission.caller, submission.dialect, task_id)
        # The operator's floor is applied here, after the hash: a retry with the same task id
        # matches the client's own parameters, whatever the floor.
        checked = replace(request, safety=request.safety.raised_to(self.check_floor))
        new = NewJob(
            id=job_id, dialect=submission.dialect, request=checked,
            params_hash=params_hash(submission, request_to_json(request)),
            caller=submission.caller.principal, delivery=submission.delivery,
            echo=dict(submission.echo), task_id=task_id, batch_key=batch_key(the_plan),
            backend=the_plan.backend.source, stand_in_reason=the_plan.backend.stand_in_reason,
            cost=the_plan.cost_usd, image_ids=[str(uuid.uuid4()) for _ in the_plan.images],
            seeds=the_plan.seeds, created_at=self.store.clock(), work=the_plan.work,
        )
        return new, the_plan, inputs

    async def _drawn_from(self, submission: Submission, the_plan: Plan
                          ) -> tuple[Plan, PreparedInputs]:
        """The plan of a request that draws from an input image: what its backend can do, its
        strength, and the inputs decoded and fitted to its size (not stored yet)."""
        images_in = submission.generation.images_in
        assert images_in is not None
        names = submission.names
        backend, real = the_plan.backend, the_plan.model.backend
        # What the tier's own model does decides, so that pulling its weights changes nothing
        # a client may send; a stand-in must also do it.
        operation = _operation(images_in, real)
        parameter = names("mask") if operation is Operation.INPAINT else names("image")
        if images_in.outpaint is not None:
            parameter = images_in.outpaint.parameter
        real_can = operation.value in INPUT_OPERATIONS.get(real.family, ())
        if operation is Operation.REFERENCE and backend.family == "mini":
            # easel-mini, standing in, redraws the first image (it is shown no references).
            operation, images_in = Operation.IMAGE, replace(images_in, references=())
        if self.inputs is None or not real_can or \
                operation.value not in INPUT_OPERATIONS.get(backend.family, ()):
            served = real if not real_can else backend
            why = _other_ways(operation) if not real_can else (
                f"the weights of {real.source} are absent here (`easel pull "
                f"{the_plan.model.tier.name}`)")
            raise EaselError(ErrorKind.UNSUPPORTED, f"{parameter}: {served.source} cannot "
                             f"{WHAT[operation]}; {why}", parameter)
        if operation is Operation.REFERENCE:
            return await self._edited(submission, images_in, the_plan)
        if operation is Operation.UPSCALE:
            return await self._upscaled(submission, images_in, the_plan)
        strength = next(s for s in (images_in.strength, images_in.default_strength,
                                    DEFAULT_STRENGTH) if s is not None)
        if isinstance(strength, bool) or not isinstance(strength, int | float) or \
                not 0 < strength <= 1:
            name = names("strength")
            raise invalid(name, f"{name} must be a number above 0 and at most 1, got "
                                f"{strength!r}")
        read, request = await self._read_sized(submission, images_in, the_plan)
        prepared = await self.inputs.fit(read, request.width, request.height)
        request = replace(request, operation=operation, strength=float(strength),
                          input_digest=prepared.input_digest, mask_digest=prepared.mask_digest)
        return self._replanned(request, the_plan, names), prepared

    def _replanned(self, request: GenerationRequest, the_plan: Plan, names: WireNames) -> Plan:
        """The plan of `request`, which drawing from images changed (operation, size, inputs),
        with the seeds the first plan gave its images."""
        seeds = [spec.seed for spec in the_plan.images]
        return plan_resolved(request, the_plan.model, self.resolver, seeds, names)

    async def _edited(self, submission: Submission, images_in: ImagesIn, the_plan: Plan
                      ) -> tuple[Plan, PreparedInputs]:
        """An edit by instruction: the images are read and fitted to the job's size (the
        input's shape when none was asked for) and shown to the model; no strength."""
        assert self.inputs is not None
        names = submission.names
        if images_in.strength is not None:
            name = names("strength")
            raise EaselError(ErrorKind.UNSUPPORTED, f"{name}: {the_plan.model.backend.source} "
                             "edits by instruction from the images it is shown, and takes no "
                             "strength", name)
        read, request = await self._read_sized(submission, images_in, the_plan)
        prepared = await self.inputs.as_shown(read)
        request = replace(request, operation=Operation.REFERENCE, strength=None,
                          input_digest=prepared.input_digest,
                          reference_digests=prepared.reference_digests)
        return self._replanned(request, the_plan, names), prepared

    async def _upscaled(self, submission: Submission, images_in: ImagesIn, the_plan: Plan
                        ) -> tuple[Plan, PreparedInputs]:
        """An upscale: the image read (and shrunk first when the output would pass the largest
        side), the output its size times the factor; no prompt, no strength."""
        assert self.inputs is not None and images_in.upscale is not None
        factor = images_in.upscale.factor
        read = await self.inputs.read(images_in, submission.caller)
        await self._check_inputs(read, images_in, the_plan.request.safety)
        width, height = upscaled_size(*read.size, factor)
        prepared = await self.inputs.fit(read, width, height)
        request = replace(the_plan.request, width=width * factor, height=height * factor,
                          operation=Operation.UPSCALE, strength=None, upscale_factor=factor,
                          input_digest=prepared.input_digest)
        return self._replanned(request, the_plan, submission.names), prepared

    async def _read_sized(self, submission: Submission, images_in: ImagesIn, the_plan: Plan
                          ) -> tuple[ReadInputs, GenerationRequest]:
        """The inputs read and checked, and the request at the size drawn: the one asked for
        (drawn in one pass), else the model's one-pass size nearest the input's shape."""
        assert self.inputs is not None
        if the_plan.two_pass is not None:
            name = submission.names("size")
            raise invalid(name, f"{name}: drawing from images is served at sizes the model "
                                "draws in one pass here (1K)")
        read = await self.inputs.read(images_in, submission.caller)
        await self._check_inputs(read, images_in, the_plan.request.safety)
        request = the_plan.request
        asked = submission.generation.size
        if asked is None or isinstance(asked, InputShapeSize):
            resolution = asked.resolution if asked is not None else None
            size = the_plan.model.nearest_size(*read.size, one_pass=True, resolution=resolution)
            request = replace(request, width=size.width, height=size.height)
        return read, request

    async def _check_inputs(self, read: ReadInputs, images_in: ImagesIn,
                            safety: SafetyInput) -> None:
        """The content check on the images sent (the mask is no picture): one it would withhold
        as an output is refused, naming it, before any job exists."""
        checker = self.input_checker
        if checker is None:
            return
        safety = safety.raised_to(self.check_floor)
        wanted = images_in.check_inputs
        if wanted is None:
            wanted = safety.on_flagged is OnFlagged.WITHHOLD and checker.needed(safety)
        if not wanted:
            return
        if not safety.checks_content:  # asked for explicitly (Runware): Runware's default mode
            safety = replace(safety, level=SafetyLevel.BLOCK_MEDIUM_AND_ABOVE)
        safety = replace(safety, on_flagged=OnFlagged.WITHHOLD)
        sent = (images_in.image, *images_in.references)
        for given, image in zip(sent, (read.image, *read.references), strict=True):
            verdict = await asyncio.to_thread(checker.check, image.pixels, safety)
            if verdict.withheld is not None:
                raise EaselError(ErrorKind.CONTENT_BLOCKED, f"{given.parameter}: the input image "
                                 f"was refused by the content check "
                                 f"({INPUT_REFUSALS[verdict.withheld]})", given.parameter)

    async def _adapters(self, submission: Submission, backend: Backend) -> tuple[AppliedLora, ...]:
        name = submission.names("loras")
        if self.adapters is None:
            raise EaselError(ErrorKind.UNSUPPORTED, f"{name}: this server takes no adapters",
                             name)
        return await self._stored(self.adapters.applied, submission.generation.loras, backend,
                                  name)

    async def _enhanced(self, new: NewJob, names: WireNames) -> NewJob:
        """The job with its prompt rewritten, when the client asked and an endpoint is set.
        The idempotency hash stays that of the client's own parameters: a retry with the same
        task id matches however the model rewrote it."""
        request = new.request
        if not request.enhance_prompt:
            return new
        enhancer = self.prompts.enhancer
        result = not_configured(request.prompt) if enhancer is None \
            else await enhancer.enhance(request.prompt)
        state, prompt, detail = result.status, result.prompt, result.detail
        if state is EnhancementState.REWRITTEN:
            problem = self._rewrite_problem(request, prompt, names)
            if problem is not None:
                state, prompt, detail = EnhancementState.FALLBACK, request.prompt, problem
        self.prompts.on_enhanced(state.value)
        rewritten = state is EnhancementState.REWRITTEN
        return replace(new, request=replace(
            request, prompt=prompt, original_prompt=request.prompt if rewritten else None,
            enhancement=state, enhancement_detail=detail))

    def _rewrite_problem(self, request: GenerationRequest, prompt: str,
                         names: WireNames) -> str | None:
        """Why a rewrite cannot be used (the original prompt is, then)."""
        if self.prompts.block_list.match(prompt) is not None:
            return "the rewrite was blocked by this server's content policy"
        try:
            self.catalog.model(request.model).check_prompt(prompt, names("prompt"))
        except EaselError as exc:
            return f"the rewrite broke the model's prompt rules: {exc.message}"
        return None

    async def _insert(self, new: NewJob) -> bool:
        """True when inserted, False when a job with its id exists; Throttled when the queue or
        the caller's backlog is full or the store cannot be written (nothing acknowledged)."""
        rules = self.admission.rules_for(new.caller)
        result = await self._stored(self.store.insert, new, rules)
        if result is InsertResult.QUEUE_FULL:
            raise self.admission.queue_full(rules.max_queued)
        if result is InsertResult.CALLER_JOBS:
            raise self.admission.too_many_jobs()
        if result is InsertResult.CALLER_WORK:
            pending = await self._stored(self.store.unfinished_work, new.caller)
            raise self.admission.too_much_work(pending, new.work)
        return result is InsertResult.INSERTED

    def _check_ttl(self, submission: Submission) -> None:
        """The server's bounds of a URL's lifetime. Each is named alone: a dialect may have a
        floor of its own (Runware's 60 s, refused before here), which a range stated here
        would misstate."""
        ttl = submission.delivery.ttl_seconds
        if ttl is None:
            return
        name = submission.names("ttl")
        if ttl > self.max_ttl_seconds:
            raise invalid(name, f"{name} must be at most {self.max_ttl_seconds} seconds, "
                                f"got {ttl}")
        if ttl < 1:
            raise invalid(name, f"{name} must be at least 1 second, got {ttl}")

    async def _check_urls(self, submission: Submission) -> None:
        """Every URL easel will call for this job, refused now when it is known to be refused."""
        delivery, names = submission.delivery, submission.names
        for url, parameter in ((delivery.webhook, "webhook"), (delivery.upload, "upload")):
            if url is not None:
                await check_at_submission(url, names(parameter), self.allow_loopback_urls)

    async def _existing(self, new: NewJob, submission: Submission) -> Job | None:
        found = await self._stored(self.store.get_with_hash, new.id)
        if found is None:
            return None
        job, stored_digest = found
        if stored_digest != new.params_hash:
            name = submission.names("task_id")
            # The id the client sent, not easel's scoped id of it (which the client never saw).
            sent = (submission.task_id_sent or new.task_id or new.id)[:100]
            raise EaselError(
                ErrorKind.CONFLICT,
                f"{name} {sent} was already used with different parameters; use a new {name}",
                name,
            )
        return job

    async def run(self, submission: Submission, timeout: float) -> Job:
        """Submit and hold until the job completes. Raises JobFailed (failed or cancelled) or
        StillRunning (the wait ran out; the job goes on)."""
        job = await self.settle(submission, timeout)
        if job.status is JobStatus.COMPLETED:
            return job
        if job.status.terminal:
            raise JobFailed(job)
        raise StillRunning(job, timeout)

    async def settle(self, submission: Submission, timeout: float) -> Job:
        """Submit and hold until the job ends or `timeout` passes: the job as it then is.
        Draining when the server shuts down first."""
        job, _ = await self.submit(submission)
        job = await self.wait(job.id, timeout, submission.names)
        if not job.status.terminal and self._drain_at is not None:
            raise Draining(job)
        return job

    def drain(self, grace: float) -> None:
        """SIGTERM: requests held for a job answer before the grace period ends (503 naming
        the job) instead of being cut off."""
        self._drain_at = time.monotonic() + max(0.0, grace - DRAIN_MARGIN_SECONDS)
        self.events.wake_all()

    # -- reads ----------------------------------------------------------------------------------

    async def _stored(self, call: Callable[..., T], *args: Any) -> T:
        """A job-store call off the event loop; a database that cannot be reached or written
        (down, restarting, failing over, a full disk) is a 503 with Retry-After, never a 500."""
        try:
            return await asyncio.to_thread(call, *args)
        except SQLAlchemyError as exc:
            log.warning("the job store cannot be reached: %s", type(exc).__name__)
            raise StoreUnavailable(exc) from None

    async def get(self, job_id: str, caller: Caller | None = None) -> Job | None:
        """The job, or None when there is none or it is another caller's (`caller` None: the
        core itself, which may read any)."""
        job = await self._stored(self.store.get, job_id)
        if job is None or (caller is not None and job.caller != caller.principal):
            return None
        return job

    async def find(self, caller: Caller, ref: JobRef) -> Job:
        """The caller's job by the id `ref` names it by; NOT_FOUND (naming the client's
        parameter) when there is none or it is another caller's. A read spends the caller's
        rate budget, as a submission does, in every dialect."""
        self.admission.check_rate(caller)
        return await self.placed(await self._owned(caller, ref))

    async def placed(self, job: Job, reread: bool = True) -> Job:
        """The job with its place in the queue when it is queued (the store's fair order,
        the same in every API process); as it is otherwise. A job claimed (or cancelled)
        between the two reads is read again; without `reread` (the reply to its submission,
        which says `queued`) it is next, being claimed."""
        if job.status is not JobStatus.QUEUED:
            return job
        place = await self._stored(self.store.queue_place, job.id)
        if place is None:
            if not reread:
                return replace(job, queue=QueueWait(0, None))
            return await self.get(job.id) or job
        per_unit = await self._stored(self.store.seconds_per_work)
        seconds = None if per_unit is None else place.work_ahead * per_unit / place.workers
        return replace(job, queue=QueueWait(place.ahead, seconds))

    async def _owned(self, caller: Caller, ref: JobRef) -> Job:
        for job_id in self._candidates(caller, ref):
            job = await self.get(job_id, caller)
            if job is not None:
                return job
        if ref.cursor:
            raise invalid(ref.parameter,
                          f"{ref.parameter} names no {ref.noun} of yours: {ref.id[:100]!r}")
        raise EaselError(ErrorKind.NOT_FOUND, f"no {ref.noun} {ref.id[:100]}", ref.parameter)

    def _candidates(self, caller: Caller, ref: JobRef) -> list[str]:
        """The stored ids `ref` may name, in the order they are tried."""
        ids = [job_id_from(ref.id)] if ref.easel_id else []
        scopes = self.chosen_id_scopes if ref.any_chosen else (
            (ref.chosen_in,) if ref.chosen_in is not None else ())
        return ids + [scoped_id(caller, scope, ref.id) for scope in scopes]

    async def list_for(
        self, caller: Caller, limit: int, statuses: Sequence[JobStatus] = (),
        after: JobRef | None = None,
    ) -> list[Job]:
        """The caller's own jobs, newest first (no other caller's job is ever listed), after
        the job `after` names (the last of the previous page). Spends the rate budget."""
        self.admission.check_rate(caller)
        after_id = None if after is None else (await self._owned(caller, after)).id
        return await self._stored(self.store.list_for, caller.principal, limit, statuses,
                                  after_id)

    async def watch(self, job_id: str) -> AsyncGenerator[Job, None]:
        """The job now, then again at every change (a step of progress, an image stored, the
        end), until it is terminal: the last one yielded is terminal. Changes made by workers
        in other processes are found by polling the store."""
        last: Job | None = None
        queued = True  # until it is seen running: other jobs' events may move its place
        while True:
            with self.events.watching(job_id, any_change=True, queue=queued) as changed:
                job = await self.get(job_id)
                if job is None:
                    return
                job = await self.placed(job)
                queued = job.status is JobStatus.QUEUED
                if job != last:
                    last = job
                    yield job
                if job.status.terminal or self._drain_at is not None:
                    return  # shutting down: the stream ends, the client reconnects later
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), self.poll_interval * 4)
                if queued:  # every job's event wakes it: one look a poll interval at most, so
                    await asyncio.sleep(self.poll_interval)  # a busy queue costs reads bounded

    async def wait(
        self, job_id: str, timeout: float | None = None, names: WireNames | None = None
    ) -> Job:
        """The job once terminal, or its current state when `timeout` seconds have passed."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._drain_at is not None:  # shutting down: answer by the drain deadline
                drain = loop.time() + (self._drain_at - time.monotonic())
                deadline = drain if deadline is None else min(deadline, drain)
            with self.events.watching(job_id) as changed:
                try:
                    job = await self.get(job_id)
                except StoreUnavailable:
                    # The database is down (a restart, a failover): the job is safe in it, so
                    # keep waiting for it until the deadline instead of failing the caller.
                    if deadline is not None and deadline - loop.time() <= self.poll_interval:
                        raise
                    await asyncio.sleep(self.poll_interval)
                    continue
                if job is None:
                    name = (names or WireNames())("task_id")
                    raise EaselError(ErrorKind.NOT_FOUND, f"no job {job_id}", name)
                if job.status.terminal:
                    return job
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return job
                # Polling covers workers in other processes, whose changes we are not told about.
                pause = self.poll_interval * 4
                if remaining is not None:
                    pause = min(pause, remaining)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), pause)

    async def deliveries(self, job_id: str) -> list[Delivery]:
        return await self._stored(self.outbox.for_job, job_id)

    # -- cancel ---------------------------------------------------------------------------------

    async def cancel(self, caller: Caller, ref: JobRef) -> Job:
        """Cancel a queued job at once, or ask a running one to stop at its next denoising step
        (its worker ends it `cancelled`). A finished job is returned as it is. Another caller's
        job is not found; a cancel spends the rate budget, as a read does."""
        job = await self.find(caller, ref)
        status = await self._stored(self.store.cancel, job.id, "cancelled by the caller")
        if status is None:  # gone between the read and the cancel
            raise EaselError(ErrorKind.NOT_FOUND, f"no {ref.noun} {ref.id[:100]}", ref.parameter)
        if status is JobStatus.CANCELLED and self.inputs is not None and \
                job.request.operation is not Operation.TEXT:
            await asyncio.to_thread(self.inputs.discard, job.id)  # ended here, not by a worker
        self.events.job_changed(job.id, settled=True)
        cancelled = await self.get(job.id)
        assert cancelled is not None
        return cancelled


INPUT_REFUSALS = {Withheld.NSFW: "sexual content",
                  Withheld.PERSON: "a person, and people are not allowed in this request"}
WHAT = {Operation.INPAINT: "inpaint",
        Operation.IMAGE: "draw from an image without a mask (image-to-image)",
        Operation.REFERENCE: "edit by instruction from reference images",
        Operation.UPSCALE: "upscale"}


def _operation(images_in: ImagesIn, real: Backend) -> Operation:
    """What a request drawing from images asks of the tier's own model: inpainting with a
    mask (or outpainting, whose mask the core makes); an edit by instruction where the model
    edits from reference images (else image-to-image); several images only where they can be
    combined."""
    can = INPUT_OPERATIONS.get(real.family, ())
    extra = images_in.references[0].parameter if images_in.references else None
    if images_in.upscale is not None:  # planning checked the model is an upscaler
        return Operation.UPSCALE
    if images_in.mask is not None or images_in.outpaint is not None:
        if extra is not None:
            raise EaselError(ErrorKind.UNSUPPORTED, f"{extra}: a mask edits one image; send "
                             "one image with a mask, or several without one", extra)
        return Operation.INPAINT
    # A strength asks for image-to-image where the model does it, on one image; an edit by
    # instruction refuses it by name (JobService._edited).
    if images_in.instruction and "reference" in can and (
            images_in.strength is None or extra is not None or "image" not in can):
        return Operation.REFERENCE
    if extra is not None:
        raise EaselError(ErrorKind.UNSUPPORTED, f"{extra}: {real.source} cannot combine "
                         "several images; choose a tier whose model edits from reference "
                         "images (Fast: FLUX.2 [klein]; docs/catalog.md)", extra)
    return Operation.IMAGE


def _other_ways(operation: Operation) -> str:
    if operation is Operation.UPSCALE:
        return "name an upscaler model (the upscale tier, docs/catalog.md)"
    if operation is Operation.INPAINT:
        return "choose a tier whose model inpaints (docs/catalog.md)"
    return "send a mask to inpaint, or choose a tier whose model does image-to-image"


def _new_job(new: NewJob, the_plan: Plan) -> Job:
    return Job(
        id=new.id, dialect=new.dialect, request=new.request, status=JobStatus.QUEUED,
        images=tuple(
            JobImage(image_id=image_id, index=i, seed=seed)
            for i, (image_id, seed) in enumerate(zip(new.image_ids, new.seeds, strict=True))
        ),
        created_at=datetime.fromtimestamp(new.created_at, UTC) if new.created_at is not None
        else datetime.now(UTC),
        backend=new.backend, stand_in_reason=new.stand_in_reason,
        cost_usd=new.cost, delivery=new.delivery, echo=new.echo,
        progress_total=the_plan.backend.steps, caller=new.caller, task_id=new.task_id,
    )
