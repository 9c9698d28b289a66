"""Planning: a GenerationRequest checked against the catalog and turned into engine work."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from easel.catalog import (
    STAND_IN_LICENSE,
    UPSCALER_FAMILIES,
    Backend,
    Catalog,
    License,
    Model,
    Size,
    did_you_mean,
)
from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.generation import (
    AdapterSpec,
    EngineBatch,
    ImageSpec,
    Operation,
    SchedulerSpec,
    TwoPass,
)
from easel.domain.request import SEED_CEILING, GenerationRequest
from easel.domain.submission import (
    MAX_UPSCALED_SIDE,
    UPSCALE_FACTORS,
    AspectRatioSize,
    ExactSize,
    GenerationInput,
    InputShapeSize,
    ModelChoice,
    NearestSize,
    SizeChoice,
    WireNames,
)
from easel.services.weights.files import absence, weights_present
from easel.settings import Settings

log = logging.getLogger(__name__)

NO_RENAMES = WireNames()
WORK_PIXELS = 1024 * 1024  # a work unit's megapixel: step_seconds is for a 1024x1024 image


@dataclass(frozen=True)
class ResolvedBackend:
    """The weights that will actually run, and why, when they are a stand-in."""

    source: str
    family: str
    steps: int
    guidance: float
    max_sequence_length: int | None
    stand_in_reason: str | None = None
    scheduler: SchedulerSpec | None = None
    license: License = STAND_IN_LICENSE  # of the weights that actually run

    @property
    def is_stand_in(self) -> bool:
        return self.stand_in_reason is not None

    def with_controls(
        self, request: GenerationRequest, scheduler: SchedulerSpec | None, max_steps: int,
        min_steps: int = 1,
    ) -> ResolvedBackend:
        """The backend with the client's steps, guidance and scheduler applied (a stand-in
        keeps its step cap: it draws noise either way; never below the model's minimum)."""
        steps = self.steps if request.steps is None else min(request.steps, max_steps)
        steps = max(steps, min_steps)
        guidance = self.guidance if request.guidance_scale is None else request.guidance_scale
        return replace(self, steps=steps, guidance=float(guidance), scheduler=scheduler)


class BackendResolver:
    """Decides which weights serve a backend: the real ones, or a labelled offline stand-in."""

    def __init__(
        self, strict: bool = False, stand_in_max_steps: int = 4, mini: Backend | None = None,
        commercial_only: bool = False, configs: Mapping[str, str] | None = None,
    ) -> None:
        self.strict = strict
        self.commercial_only = commercial_only
        self.stand_in_max_steps = stand_in_max_steps
        self.mini = mini  # the trained easel-mini, preferred stand-in once its weights exist
        self.configs = dict(configs or {})  # single-file source -> its diffusers config
        self._present: dict[str, bool] = {}
        self._absence: dict[tuple[str, str], str | None] = {}

    def present(self, source: str) -> bool:
        if source not in self._present:
            self._present[source] = weights_present(source, self.configs.get(source))
        return self._present[source]

    def absence(self, backend: Backend) -> str | None:
        """Why `backend`'s weights are absent and what to do, naming the path (None: present).
        Checked once, as presence is: planning asks for every stand-in job."""
        key = (backend.source, backend.name)
        if key not in self._absence:
            self._absence[key] = None if self.present(backend.source) else absence(
                backend.source, backend.config, backend.name)
        return self._absence[key]

    @classmethod
    def from_settings(cls, settings: Settings, catalog: Catalog, strict: bool = False
                      ) -> BackendResolver:
        configs = {b.source: b.config for b in catalog.backends.values() if b.config is not None}
        mini = catalog.mini if settings.stand_in == "mini" else None
        return cls(strict or settings.strict, settings.stand_in_max_steps, mini,
                   settings.commercial_only, configs)

    def refusal(self, backend: Backend) -> str | None:
        """Why this server will not serve `backend` at all (commercial-only mode), if it won't."""
        if self.commercial_only and not backend.license.commercial:
            return (f"{backend.source} is not served here: its licence, "
                    f"{backend.license.describe()}, does not allow commercial use, and this "
                    "server runs with commercial_only (EASEL_COMMERCIAL_ONLY)")
        return None

    def resolve(self, backend: Backend, parameter: str = "model") -> ResolvedBackend:
        refusal = self.refusal(backend)
        if refusal is not None:
            raise EaselError(ErrorKind.UNSUPPORTED, refusal, parameter)
        if self.present(backend.source):
            return ResolvedBackend(
                backend.source,
                backend.family,
                backend.steps,
                backend.guidance,
                backend.max_sequence_length,
                license=backend.license,
            )
        if self.strict:
            raise EaselError(
                ErrorKind.UNAVAILABLE,
                f"the weights of {backend.source} are not present and strict mode forbids a "
                f"stand-in: {self.absence(backend) or 'they were absent when first checked'}",
                parameter,
            )
        stand_in = self.stand_in(backend)
        # Why they are absent names this machine's paths: the operator's start log and `easel
        # models` say it; the reason each job, reply and image carries does not.
        missing = f"weights of {backend.source} are not present on this server"
        if self.mini is not None and stand_in == self.mini.source:
            reason = (
                f"{missing}; served by the offline stand-in {stand_in} (easel-mini, the "
                "project's small model for simple scenes), not the real model"
            )
            return ResolvedBackend(stand_in, "mini", self.mini.steps, self.mini.guidance, None,
                                   reason, license=self.mini.license)
        reason = (
            f"{missing}; served by the offline stand-in "
            f"{stand_in} (untrained, not the real model)"
        )
        return ResolvedBackend(
            stand_in,
            backend.family,
            min(backend.steps, self.stand_in_max_steps),
            backend.guidance,
            None,
            reason,
        )

    def stand_in(self, backend: Backend) -> str:
        # easel-mini draws; it stands in for no upscaler.
        drawing = backend.family not in ("mini", *UPSCALER_FAMILIES)
        if self.mini is not None and drawing and self.present(self.mini.source):
            return self.mini.source
        return f"easel/tiny-{backend.family}"


@dataclass(frozen=True)
class Plan:
    request: GenerationRequest
    model: Model
    backend: ResolvedBackend
    images: tuple[ImageSpec, ...]

    @property
    def seeds(self) -> list[int]:
        return [image.seed for image in self.images]

    @property
    def true_cfg(self) -> float | None:
        """The true-CFG scale when a negative prompt needs it (a distilled model, or its
        stand-in of the same family); None otherwise."""
        if not self.request.negative_prompt or self.backend.family != self.model.backend.family:
            return None
        return self.model.backend.true_cfg_scale

    @property
    def cost_usd(self) -> float:
        # True CFG runs the transformer twice a step: the image costs twice as much.
        factor = 2 if self.true_cfg is not None else 1
        return round(self.model.price_usd * len(self.images) * factor, 6)

    @property
    def work(self) -> float:
        """What the job costs the GPU, in work units: seconds on the reference GPU (the model's
        `step_seconds` per step and megapixel), for every image, pass and refine. The
        scheduler charges callers by it, not by requests."""
        megapixels = self.request.width * self.request.height / WORK_PIXELS
        if self.request.upscale_factor:  # the x4 model's output, whatever the factor asked
            factor = self.request.upscale_factor
            megapixels *= 16 / (factor * factor)
        steps = float(self.backend.steps)
        two_pass = self.two_pass
        if two_pass is not None:  # the base at a quarter of the pixels, then a partial refine
            base = two_pass.base_width * two_pass.base_height / WORK_PIXELS
            per_image = steps * (base + two_pass.strength * megapixels)
        else:
            per_image = steps * megapixels
        passes = 2 if self.true_cfg is not None else 1
        if self.request.operation.partial_schedule:  # about steps * strength of them run
            per_image *= self.request.strength or 1.0
        work = len(self.images) * per_image * passes * self.model.backend.step_seconds
        return round(work, 6)

    @property
    def two_pass(self) -> TwoPass | None:
        """The two-pass path, when the size is above what the model card supports (a stand-in
        of the same family takes the same path; easel-mini draws every size itself)."""
        if self.backend.family != self.model.backend.family:
            return None
        return self.model.backend.two_pass(self.request.width, self.request.height)

    def image_metadata(self, seed: int, **extra: object) -> dict[str, object]:
        """What each image file records of how it was made (services/images.encode)."""
        metadata: dict[str, object] = {
            "model": self.request.model, "backend": self.backend.source,
            "stand_in": self.backend.is_stand_in, "seed": seed, "prompt": self.request.prompt,
            "steps": self.backend.steps, "width": self.request.width,
            "height": self.request.height, "size_path": "two-pass" if self.two_pass else "native",
            "license": self.backend.license.id, "license_name": self.backend.license.name,
            **extra,
        }
        if self.backend.stand_in_reason:
            metadata["stand_in_reason"] = self.backend.stand_in_reason
        if self.request.loras:
            metadata["loras"] = [lora.to_json() for lora in self.request.loras]
        return metadata

    def with_inputs(self, keys: tuple[str, str], references: tuple[str, ...] = ()) -> Plan:
        """The plan with each image naming its job's stored input and mask (by their keys in
        the image store), when it draws from an input; editing by instruction shows it the
        input and `references` (the keys of the images after the first)."""
        if self.request.operation is Operation.TEXT:
            return self
        image_key, mask_key = keys
        if self.request.operation is Operation.REFERENCE:
            shown = (image_key, *references)
            return replace(self, images=tuple(replace(spec, references=shown)
                                              for spec in self.images))
        mask = mask_key if self.request.operation is Operation.INPAINT else None
        return replace(self, images=tuple(replace(spec, init=image_key, mask=mask)
                                          for spec in self.images))

    def batch(self, images: tuple[ImageSpec, ...] | None = None,
              adapters: tuple[AdapterSpec, ...] = (),
              inputs: Mapping[str, Any] | None = None) -> EngineBatch:
        """The engine's batch; `adapters`: the request's LoRA adapters as local files (the
        worker makes them ready); `inputs`: the decoded input images and masks its specs
        name."""
        return EngineBatch(
            source=self.backend.source,
            family=self.backend.family,
            width=self.request.width,
            height=self.request.height,
            steps=self.backend.steps,
            guidance=self.backend.guidance,
            images=self.images if images is None else images,
            max_sequence_length=self.backend.max_sequence_length,
            scheduler=self.backend.scheduler,
            two_pass=self.two_pass,
            true_cfg=self.true_cfg,
            previews=self.request.partial_images,
            adapters=adapters,
            operation=self.request.operation,
            strength=self.request.strength or 1.0,
            inputs=dict(inputs or {}),
            upscale_factor=self.request.upscale_factor or 1,
        )


def choose_model(choice: ModelChoice, catalog: Catalog, names: WireNames) -> Model:
    """The catalog model a client's choice names; a tier given with an id must match it."""
    if choice.id is None:
        provider, tier = choice.provider or "google", choice.tier or "standard"
        # The provider's default of the tier first, else its first id of the tier.
        for model in sorted(catalog.models_for(provider), key=lambda m: (not m.tier_default,
                                                                          m.id)):
            if model.tier.name == tier:
                return model
        raise EaselError(ErrorKind.UNAVAILABLE,
                         f"no {provider} model of tier {tier!r} in the catalog", names("model"))
    if choice.provider is not None and choice.id not in {
        m.id for m in catalog.models_for(choice.provider)
    }:
        known = sorted(m.id for m in catalog.models_for(choice.provider))
        raise EaselError(ErrorKind.UNKNOWN_MODEL, f"model {choice.id[:200]!r} not found"
                         f"{did_you_mean(choice.id, known)}; models served here: "
                         f"{', '.join(known)}", names("model"), known)
    model = catalog.model(choice.id, names("model"))
    if choice.tier is not None and choice.tier != model.tier.name:
        raise invalid(
            names("tier"),
            f"{names('tier')} selects the {choice.tier} tier but {model.id} is the "
            f"{model.tier.name} tier; pick a model of that tier, or leave {names('tier')} out",
        )
    return model


def choose_size(size: SizeChoice | None, model: Model, names: WireNames) -> Size:
    if isinstance(size, ExactSize):
        return model.check_size(size.width, size.height, *names.size_names())
    if isinstance(size, NearestSize):
        return model.nearest_size(size.width, size.height, names("size"))
    if isinstance(size, AspectRatioSize):
        return model.size_for(size.aspect_ratio, size.resolution, names("aspect_ratio"),
                              names("resolution"))
    if isinstance(size, InputShapeSize):  # the input's shape picks among these once read
        return model.largest_at(size.resolution, names("resolution"))
    return model.size_for("1:1", model.resolutions[0])


def resolve(
    generation: GenerationInput, catalog: Catalog, names: WireNames = NO_RENAMES
) -> tuple[Model, GenerationRequest]:
    """What the client asked for, as the catalog resolves it: the model and a request in
    diffusers' terms, every rule checked, each error naming the client's parameter."""
    model = choose_model(generation.model, catalog, names)
    check_upscaling(generation, model, catalog, names)
    size = choose_size(generation.size, model, names)
    request = GenerationRequest(
        model=model.id, prompt=generation.prompt, width=size.width, height=size.height,
        num_images=generation.num_images, negative_prompt=generation.negative_prompt or None,
        seed=generation.seed, output_format=generation.output_format,
        output_quality=generation.output_quality, steps=generation.steps,
        guidance_scale=generation.guidance_scale, scheduler=generation.scheduler,
        max_seed=generation.max_seed, safety=generation.safety, watermark=generation.watermark,
        enhance_prompt=generation.enhance_prompt, tier=model.tier.name,
        partial_images=generation.partial_images,
    )
    validate(request, catalog, names)
    return model, request


def check_upscaling(generation: GenerationInput, model: Model, catalog: Catalog,
                    names: WireNames) -> None:
    """An upscaler's id is sent an image and a factor, and nothing else is: each refusal names
    the parameter and the ids that would do."""
    upscale = generation.images_in.upscale if generation.images_in is not None else None
    if model.upscales and upscale is None:
        name = names("image")
        if generation.images_in is None:
            raise EaselError(ErrorKind.MISSING, f"{name}: {model.id} upscales an image and "
                             "draws nothing from text; send the image to enlarge", name)
        raise EaselError(ErrorKind.UNSUPPORTED, f"{name}: {model.id} only upscales; ask for an "
                         "upscale (a factor: easel's `upscale`, Runware's upscale task, "
                         "Google's upscaleConfig) or name a model that draws", name)
    if upscale is not None and not model.upscales:
        ids = sorted(m.id for m in catalog.models_for(model.provider) if m.upscales)
        raise EaselError(ErrorKind.UNSUPPORTED, f"{upscale.parameter}: {model.id} draws images "
                         "and does not upscale; name an upscaler"
                         f"{': ' + ', '.join(ids) if ids else ''}", upscale.parameter)
    if upscale is not None and upscale.factor not in UPSCALE_FACTORS:
        factors = ", ".join(str(f) for f in UPSCALE_FACTORS)
        raise invalid(upscale.parameter, f"{upscale.parameter} must be one of {factors}, "
                                         f"got {upscale.factor!r}")


def validate(
    request: GenerationRequest, catalog: Catalog, names: WireNames = NO_RENAMES
) -> Model:
    """Every rule the catalog owns, checked up front, one clear error per problem."""
    model = catalog.model(request.model, names("model"))
    if model.upscales:  # no prompt; its size is the input's times the factor, once read
        if request.operation is not Operation.TEXT:
            check_upscaled_size(request, model)
    else:
        model.check_prompt(request.prompt, names("prompt"))
        model.check_size(request.width, request.height, *names.size_names())
    model.check_negative_prompt(request.negative_prompt, names("negative_prompt"))
    model.check_count(request.num_images, names("num_images"))
    check_seed(request.seed, request.max_seed, names("seed"))
    if not 1 <= request.output_quality <= 100:
        quality = names("output_quality")
        raise invalid(quality, f"{quality} must be 1..100")
    backend = model.backend
    backend.check_steps(request.steps, names("steps"))
    backend.check_guidance(request.guidance_scale, names("guidance_scale"))
    backend.scheduler(request.scheduler, names("scheduler"))
    return model


def upscaled_size(width: int, height: int, factor: int) -> tuple[int, int]:
    """The input size an upscale by `factor` of a width x height image works from: the image's
    own, or shrunk (aspect kept) until the output's longer side is at most MAX_UPSCALED_SIDE."""
    longest = max(width, height) * factor
    if longest <= MAX_UPSCALED_SIDE:
        return width, height
    scale = (MAX_UPSCALED_SIDE // factor) / max(width, height)
    return max(1, int(width * scale)), max(1, int(height * scale))


def check_upscaled_size(request: GenerationRequest, model: Model) -> None:
    """A stored upscale's size: its factor's multiple, within the largest side (a request an
    older or other catalog planned is refused clearly, not run)."""
    factor = request.upscale_factor
    if request.operation is not Operation.UPSCALE or factor is None or \
            factor not in UPSCALE_FACTORS:
        raise invalid("model", f"{model.id} upscales: the request needs an upscale factor "
                               f"({', '.join(str(f) for f in UPSCALE_FACTORS)})")
    if request.width % factor or request.height % factor or \
            max(request.width, request.height) > MAX_UPSCALED_SIDE:
        raise invalid("size", f"{request.width}x{request.height} is not an x{factor} upscale "
                              f"of at most {MAX_UPSCALED_SIDE} a side")


def check_seed(seed: int | None, max_seed: int, parameter: str) -> None:
    if not 0 < max_seed <= SEED_CEILING:
        raise ValueError(f"max_seed must be 1..{SEED_CEILING}, got {max_seed}")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= max_seed
    ):
        raise invalid(parameter, f"{parameter} must be an integer 0..{max_seed}, got {seed!r}")


def assign_seeds(seed: int | None, count: int, max_seed: int) -> list[int]:
    """An explicit seed s gives s, s+1, ... wrapping past max_seed to 0 (so every reported seed
    is itself a valid input); none gives independent random seeds in 0..max_seed."""
    if seed is None:
        return [secrets.randbelow(max_seed + 1) for _ in range(count)]
    return [(seed + i) % (max_seed + 1) for i in range(count)]


def plan(
    request: GenerationRequest,
    catalog: Catalog,
    resolver: BackendResolver,
    seeds: list[int] | None = None,
    names: WireNames = NO_RENAMES,
) -> Plan:
    """Validate a stored or hand-made request and decide (a worker re-plans the stored request
    against its own catalog). `seeds` pins the per-image seeds (a job re-run after a crash)."""
    return plan_resolved(request, validate(request, catalog, names), resolver, seeds, names)


def plan_resolved(
    request: GenerationRequest,
    model: Model,
    resolver: BackendResolver,
    seeds: list[int] | None = None,
    names: WireNames = NO_RENAMES,
) -> Plan:
    """Decide for a request `resolve` has validated against `model`: which weights run, the
    sampling controls, the seeds."""
    backend = resolver.resolve(model.backend, names("model"))
    if request.loras and backend.is_stand_in:
        raise EaselError(ErrorKind.UNSUPPORTED, f"{names('loras')}: adapters need the real "
                         f"weights of {model.backend.name}, and this server serves a stand-in "
                         f"for them: {backend.stand_in_reason}", names("loras"))
    max_steps = resolver.stand_in_max_steps if backend.is_stand_in else model.backend.max_steps
    # A stand-in of the same family takes the same schedulers; easel-mini standing in for
    # another family keeps its own.
    same_family = backend.family == model.backend.family
    scheduler = model.backend.scheduler(request.scheduler) if same_family else None
    backend = backend.with_controls(request, scheduler, max_steps,
                                    model.backend.min_steps if same_family else 1)
    if seeds is None:
        seeds = assign_seeds(request.seed, request.num_images, request.max_seed)
    images = tuple(ImageSpec(request.prompt, s, request.negative_prompt) for s in seeds)
    return Plan(request, model, backend, images)
