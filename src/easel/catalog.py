"""The model catalog: public model ids -> tiers -> open-weight backends, sizes, limits, prices.

Everything a dialect needs to validate a request is read from here; no other module holds a
size list, a prompt limit or a price.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from easel.domain.errors import EaselError, ErrorKind, invalid
from easel.domain.generation import SchedulerSpec, TwoPass
from easel.domain.safety import SafetyLevel

# Pipeline families: each has its call conventions and offline stand-in in easel.engine.families.
FAMILIES = ("flux", "flux2", "zimage", "qwenimage", "sd3", "sdxl", "sana", "mini", "swin2sr")
# Families that enlarge an input image rather than draw: a super-resolution model (transformers'
# Swin2SR), served by the catalog's upscale tier; no prompt, no schedule.
UPSCALER_FAMILIES = ("swin2sr",)
# Families with an img2img pipeline in diffusers, so sizes past native_max_pixels can be drawn in
# two passes (the engine's family table names the class; a test keeps the two in step).
REFINABLE_FAMILIES = ("flux", "zimage", "qwenimage", "sd3", "sdxl")
# What each family draws from an input image (images in): its diffusers img2img ("image") and
# inpaint classes, as the engine's family table names them (a test keeps the two in step).
# FLUX.2 klein has no img2img; its text-to-image pipeline edits by instruction from reference
# images ("reference").
INPUT_OPERATIONS: dict[str, tuple[str, ...]] = {
    "flux": ("image", "inpaint"), "flux2": ("inpaint", "reference"),
    "zimage": ("image", "inpaint"),
    "qwenimage": ("image", "inpaint"), "sd3": ("image", "inpaint"), "sdxl": ("image", "inpaint"),
    "sana": (), "mini": ("image", "inpaint"), "swin2sr": ("upscale",),
}
DEFAULT_SCHEDULER = "Default"
RESOLUTION_SCALE = {"1k": 1, "2k": 2}
DEFAULT_REFINE_STRENGTH = 0.35
# A backend whose entry gives no step_seconds: a 12B DiT's step, the costly side of the catalog.
DEFAULT_STEP_SECONDS = 0.13


def did_you_mean(given: object, known: Sequence[str]) -> str:
    """"; did you mean 'x'?" for the known name closest to a misspelt one, else ""."""
    if not isinstance(given, str):
        return ""
    # A name known elsewhere (a body field sent inside a list's item) is no misspelling of
    # itself: naming it back would send the client in a circle.
    known = [k for k in known if k != given]
    close = difflib.get_close_matches(given, known, n=1, cutoff=0.75) or \
        difflib.get_close_matches(given.lower(), [k.lower() for k in known], n=1, cutoff=0.75)
    if not close:
        return ""
    match = next((k for k in known if k.lower() == close[0].lower()), close[0])
    return f" (did you mean {match!r}?)"


@dataclass(frozen=True)
class License:
    """The terms a backend's weights come under, as the catalog's [licenses] table states them.
    `commercial` is False for non-commercial terms and for conditional ones (revenue caps): an
    operator who meets the condition says so in their catalog overlay."""

    id: str
    name: str
    url: str
    commercial: bool
    terms: str = ""

    def describe(self) -> str:
        use = "commercial use allowed" if self.commercial else "not for commercial use"
        return f"{self.name} ({use}{'; ' + self.terms if self.terms else ''})"


# easel's built-in stand-ins and easel-mini are the project's own weights.
STAND_IN_LICENSE = License("apache-2.0", "Apache License 2.0",
                           "https://www.apache.org/licenses/LICENSE-2.0", True,
                           "easel's own offline weights")
UNKNOWN_LICENSE = License("unknown", "unknown licence", "", False,
                          "the catalog names no licence for these weights")


@dataclass(frozen=True)
class SafetyThresholds:
    """The detector scores (0..1) at which each safety level flags an image, and at which an
    image counts as showing a person ([safety.thresholds])."""

    levels: dict[str, float]
    person: float

    def nsfw_threshold(self, level: SafetyLevel) -> float | None:
        """None: the level checks nothing (block_none)."""
        return None if level is SafetyLevel.BLOCK_NONE else self.levels[level.value]


def _safety_thresholds(raw: dict[str, Any]) -> SafetyThresholds:
    levels = {level.value: float(raw[level.value]) for level in SafetyLevel
              if level is not SafetyLevel.BLOCK_NONE}
    person = float(raw["person"])
    for name, value in (*levels.items(), ("person", person)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"[safety.thresholds] {name} must be in (0, 1], got {value}")
    return SafetyThresholds(levels, person)


@dataclass(frozen=True)
class Backend:
    """A diffusers pipeline and the way to run it."""

    name: str
    source: str  # hub id or local directory
    family: str
    steps: int
    guidance: float
    negative_prompt: bool = True
    # A guidance-distilled model has no negative branch of its own; with this set, a negative
    # prompt runs true classifier-free guidance at this scale instead: two transformer passes a
    # step, so such an image costs twice the price and takes twice the time.
    true_cfg_scale: float | None = None
    max_sequence_length: int | None = None
    # What a client may change per request (Runware steps/CFGScale/scheduler, WaveSpeed
    # num_inference_steps/guidance_scale, Google guidanceScale), within these bounds.
    max_steps: int = 100
    min_steps: int = 1
    guidance_range: tuple[float, float] | None = None  # None: the model ignores guidance
    schedulers: tuple[SchedulerSpec, ...] = ()  # besides its own ("Default")
    license: License = UNKNOWN_LICENSE
    # Largest image (in pixels) the model card says the model draws natively; larger sizes go
    # through the two-pass path (None: every catalog size is native).
    native_max_pixels: int | None = None
    refine_strength: float = DEFAULT_REFINE_STRENGTH
    # For a single-file `source` (a .safetensors checkpoint, as ComfyUI and A1111 keep them):
    # the diffusers configs of its pipeline, a hub id (read from the Hugging Face cache) or a
    # local diffusers folder, which also holds the weights of the components the file lacks.
    config: str | None = None
    # What one denoising step of one 1024x1024 image costs, in seconds on the reference GPU
    # (one H100, bf16, stock diffusers, the model's own guidance passes included): the
    # scheduler charges a job this per step and megapixel (docs/operations.md, fair sharing).
    step_seconds: float = DEFAULT_STEP_SECONDS

    @property
    def is_builtin(self) -> bool:
        return self.source.startswith("easel/")

    def two_pass(self, width: int, height: int) -> TwoPass | None:
        """None when width x height is native; else the two-pass plan, based at half size (the
        catalog's 2K sizes are exact doubles of its 1K sizes)."""
        if self.native_max_pixels is None or width * height <= self.native_max_pixels:
            return None
        return TwoPass(_multiple_of_16(width / 2), _multiple_of_16(height / 2),
                       self.refine_strength)

    def size_path(self, width: int, height: int) -> str:
        """How this backend serves a size, in words (catalog listings and docs)."""
        return "native" if self.two_pass(width, height) is None else "two-pass"

    def check_steps(self, steps: int | None, parameter: str = "steps") -> None:
        if steps is None:
            return
        if isinstance(steps, bool) or not isinstance(steps, int) or not (
            self.min_steps <= steps <= self.max_steps
        ):
            raise invalid(parameter, f"{parameter} must be an integer {self.min_steps}.."
                                     f"{self.max_steps} for the {self.name} backend, got {steps!r}")

    def check_guidance(self, guidance: float | None, parameter: str = "guidance_scale") -> None:
        if guidance is None:
            return
        if self.guidance_range is None:
            raise EaselError(
                ErrorKind.UNSUPPORTED,
                f"the {self.name} backend takes no {parameter} (it is guidance-distilled, or "
                "its catalog entry sets no guidance_range); leave it out", parameter)
        low, high = self.guidance_range
        if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not (
            low <= guidance <= high
        ):
            raise invalid(parameter, f"{parameter} must be {low:g}..{high:g} for the "
                                     f"{self.name} backend, got {guidance!r}")

    def scheduler(self, name: str | None, parameter: str = "scheduler") -> SchedulerSpec | None:
        """The scheduler a client named; None for the pipeline's own ("Default" or absent)."""
        if name is None or name == DEFAULT_SCHEDULER:
            return None
        for spec in self.schedulers:
            if spec.name == name:
                return spec
        allowed = [DEFAULT_SCHEDULER, *(s.name for s in self.schedulers)]
        raise invalid(parameter, f"{parameter} {str(name)[:80]!r} is not available for the "
                                 f"{self.name} backend; allowed: {', '.join(allowed)}", allowed)


@dataclass(frozen=True)
class Size:
    width: int
    height: int
    aspect_ratio: str
    resolution: str

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class Tier:
    name: str
    label: str
    backend: Backend
    resolutions: tuple[str, ...]
    price_usd: float


@dataclass(frozen=True)
class Model:
    """One public model id, as a provider spells it."""

    id: str
    provider: str
    tier: Tier
    resolutions: tuple[str, ...]
    max_images: int
    prompt_min: int
    prompt_max: int
    negative_prompt: bool
    price_usd: float
    sizes: tuple[Size, ...] = field(repr=False)
    # What the provider counts for one output image, in tokens (Gemini's usage metadata).
    image_tokens: int | None = None
    # The id a request that names only a tier runs as, for its provider (OpenAI's generic
    # `imagen-4` runs as Google's Imagen 4 id of the tier, not an older model of the tier).
    tier_default: bool = False

    @property
    def backend(self) -> Backend:
        return self.tier.backend

    @property
    def upscales(self) -> bool:
        """An upscaler's id: it enlarges an input image and draws nothing from text."""
        return self.backend.family in UPSCALER_FAMILIES

    def size_for(
        self, aspect_ratio: str, resolution: str = "1k", ratio_name: str = "aspect_ratio",
        resolution_name: str = "resolution",
    ) -> Size:
        """The pixel size for an aspect ratio and resolution, or a clear error."""
        ratios = sorted({s.aspect_ratio for s in self.sizes}, key=_ratio_order)
        if aspect_ratio not in ratios:
            raise invalid(
                ratio_name,
                f"{ratio_name} {aspect_ratio!r} is not supported by {self.id}; "
                f"allowed: {', '.join(ratios)}",
                ratios,
            )
        self._check_resolution(resolution, resolution_name)
        return next(
            s for s in self.sizes if s.aspect_ratio == aspect_ratio and s.resolution == resolution
        )

    def nearest_size(self, width: int, height: int, parameter: str = "size",
                     one_pass: bool = False, resolution: str | None = None) -> Size:
        """The size this model produces closest to width x height (for size strings such as
        OpenAI's that name no Imagen size): first the aspect ratio nearest in log scale, then the
        resolution nearest in pixel count; ties go to the squarer ratio and the smaller size.
        `one_pass`: among the sizes its backend draws in one pass (drawing from an image);
        `resolution` (one of the model's): among the sizes of that resolution."""
        if width <= 0 or height <= 0:
            raise invalid(parameter, f"{parameter} must be positive, got {width}x{height}")
        sizes = [s for s in self.sizes if resolution is None or s.resolution == resolution]
        sizes = [s for s in sizes if not one_pass
                 or self.backend.size_path(s.width, s.height) == "native"] or sizes
        target = math.log(width / height)
        ratio = min(
            sizes,
            key=lambda s: (
                round(abs(math.log(s.width / s.height) - target), 9),
                abs(math.log(s.width / s.height)),
            ),
        ).aspect_ratio
        area = math.log(width * height)
        return min(
            (s for s in sizes if s.aspect_ratio == ratio),
            key=lambda s: (round(abs(math.log(s.width * s.height) - area), 9), s.width * s.height),
        )

    def largest_at(self, resolution: str, resolution_name: str = "resolution") -> Size:
        """The largest size of a resolution (before the input image's shape picks one of them),
        or a clear error when the model has no such resolution."""
        self._check_resolution(resolution, resolution_name)
        return max((s for s in self.sizes if s.resolution == resolution),
                   key=lambda s: s.width * s.height)

    def _check_resolution(self, resolution: str, resolution_name: str) -> None:
        if resolution not in self.resolutions:
            raise invalid(
                resolution_name,
                f"{resolution_name} {resolution!r} is not supported by {self.id}; "
                f"allowed: {', '.join(self.resolutions)}",
                list(self.resolutions),
            )

    def check_size(
        self, width: int, height: int, width_name: str = "size", height_name: str = "size"
    ) -> Size:
        """One of this model's sizes, or an error naming the dimension that is off (the width
        when no size has it, else the height)."""
        for size in self.sizes:
            if (size.width, size.height) == (width, height):
                return size
        allowed = [str(s) for s in self.sizes]
        name = width_name if width not in {s.width for s in self.sizes} else height_name
        raise invalid(
            name,
            f"{width}x{height} is not a size {self.id} produces; allowed: {', '.join(allowed)}",
            allowed,
        )

    def check_prompt(self, prompt: str, parameter: str = "prompt") -> None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise EaselError(
                ErrorKind.MISSING, f"{parameter} must be a non-empty string", parameter
            )
        check_text(prompt, parameter)
        if not self.prompt_min <= len(prompt) <= self.prompt_max:
            raise invalid(
                parameter,
                f"{parameter} must be {self.prompt_min}..{self.prompt_max} characters for "
                f"{self.id}, got {len(prompt)}",
            )

    def check_negative_prompt(
        self, negative: str | None, parameter: str = "negative_prompt"
    ) -> None:
        if negative is None or negative == "":
            return
        if not self.negative_prompt:
            raise EaselError(
                ErrorKind.UNSUPPORTED, f"{self.id} does not accept a {parameter}", parameter
            )
        check_text(negative, parameter)
        if len(negative) > self.prompt_max:
            raise invalid(parameter, f"{parameter} must be at most {self.prompt_max} characters")

    def check_count(self, count: int, parameter: str = "num_images") -> None:
        if (
            isinstance(count, bool)
            or not isinstance(count, int)
            or not 1 <= count <= self.max_images
        ):
            raise invalid(
                parameter,
                f"{parameter} must be an integer 1..{self.max_images} for {self.id}, got {count!r}",
            )


# C0 and C1 controls but tab, newline and carriage return. The text encoders disagree on them
# (T5's normaliser reads a form feed as a space, CLIP's tokenizer drops it), so no check can
# know which words the model reads around one; NUL also breaks tokenizers and PostgreSQL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_text(text: str, parameter: str) -> None:
    """Text a tokenizer can read: valid Unicode (JSON lets a lone surrogate such as \\ud800
    through, and it crashes tokenizers), no control characters but tab, newline and CR."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise invalid(parameter, f"{parameter} is not valid Unicode text (a lone surrogate at "
                                 f"character {exc.start})") from None
    control = _CONTROL.search(text)
    if control is not None:
        raise invalid(parameter, f"{parameter} contains a control character (U+"
                                 f"{ord(control.group()):04X} at character {control.start()}); "
                                 "only tab, newline and carriage return are allowed")


def _size_table(raw: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {ratio: (int(wh[0]), int(wh[1])) for ratio, wh in raw.items()}


def _multiple_of_16(value: float) -> int:
    return max(16, round(value / 16) * 16)


def _ratio_order(ratio: str) -> float:
    w, h = ratio.split(":")
    return -int(w) / int(h) if ratio != "1:1" else -99.0


class Catalog:
    """Loaded from the packaged catalog.toml, optionally overlaid by a user file."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self.base_sizes: dict[str, tuple[int, int]] = _size_table(data["sizes"])
        # Other providers' tables of 1K sizes (Gemini's ten and fourteen ratios), by name.
        self.size_tables = {name: _size_table(table)
                            for name, table in data.get("size_tables", {}).items()}
        self.schedulers = {
            name: SchedulerSpec(name, str(raw["class"]),
                                tuple(sorted((k, v) for k, v in raw.items() if k != "class")))
            for name, raw in data.get("schedulers", {}).items()
        }
        self.licenses = {lid: _license(lid, raw) for lid, raw in data.get("licenses", {}).items()}
        self.backends = {name: _backend(name, raw, self.schedulers, self.licenses)
                         for name, raw in data["backends"].items()}
        self.tiers = {name: self._tier(name, raw) for name, raw in data["tiers"].items()}
        self.models = {mid: self._model(mid, raw) for mid, raw in data["models"].items()}
        self.safety = _safety_thresholds(data.get("safety", {}).get("thresholds", {}))

    @classmethod
    def load(cls, *overlays: Path) -> Catalog:
        text = resources.files("easel").joinpath("catalog.toml").read_text("utf-8")
        data = tomllib.loads(text)
        for path in overlays:
            overlay = tomllib.loads(Path(path).read_text("utf-8"))
            overlay = _configs_of_replaced_sources(data, overlay)
            data = _merge(data, _forget_licences_of_new_sources(data, overlay))
        return cls(data)

    def _tier(self, name: str, raw: dict[str, Any]) -> Tier:
        backend_name = raw["backend"]
        if backend_name not in self.backends:
            raise ValueError(f"tier {name!r} names unknown backend {backend_name!r}")
        backend = self.backends[backend_name]
        resolutions = tuple(raw.get("resolutions", ["1k"]))
        beyond = [f"{s}" for s in self._sizes(resolutions) if backend.two_pass(s.width, s.height)]
        if beyond and backend.family not in REFINABLE_FAMILIES:
            raise ValueError(
                f"tier {name!r}: {', '.join(beyond)} exceed what backend {backend_name!r} draws "
                f"natively (native_max_pixels) and the {backend.family} family has no img2img "
                "pipeline for the two-pass path; drop those resolutions or pick another backend")
        return Tier(
            name=name,
            label=raw.get("label", name),
            backend=self.backends[backend_name],
            resolutions=tuple(raw.get("resolutions", ["1k"])),
            price_usd=float(raw["price_usd"]),
        )

    def _model(self, model_id: str, raw: dict[str, Any]) -> Model:
        tier_name = raw["tier"]
        if tier_name not in self.tiers:
            raise ValueError(f"model {model_id!r} names unknown tier {tier_name!r}")
        tier = self.tiers[tier_name]
        resolutions = tuple(raw.get("resolutions", tier.resolutions))
        table = self.base_sizes
        if "size_table" in raw:
            if raw["size_table"] not in self.size_tables:
                raise ValueError(f"model {model_id!r} names unknown size_table "
                                 f"{raw['size_table']!r}")
            table = self.size_tables[raw["size_table"]]
        return Model(
            id=model_id,
            provider=raw.get("provider", "easel"),
            tier=tier,
            resolutions=resolutions,
            max_images=int(raw.get("max_images", 4)),
            prompt_min=int(raw.get("prompt_min", 1)),
            prompt_max=int(raw.get("prompt_max", 3000)),
            # A model id takes a negative prompt only where its provider and its backend do.
            negative_prompt=bool(raw.get("negative_prompt", True)) and tier.backend.negative_prompt,
            price_usd=float(raw.get("price_usd", tier.price_usd)),
            sizes=tuple(self._sizes(resolutions, table)),
            image_tokens=int(raw["image_tokens"]) if "image_tokens" in raw else None,
            tier_default=bool(raw.get("tier_default", False)),
        )

    def _sizes(self, resolutions: Iterable[str],
               table: dict[str, tuple[int, int]] | None = None) -> Iterable[Size]:
        for resolution in resolutions:
            scale = RESOLUTION_SCALE[resolution]
            for ratio, (w, h) in (table or self.base_sizes).items():
                yield Size(w * scale, h * scale, ratio, resolution)

    @cached_property
    def model_ids(self) -> list[str]:
        return sorted(self.models)

    def model(self, model_id: str, parameter: str = "model") -> Model:
        try:
            return self.models[model_id]
        except (KeyError, TypeError):
            raise EaselError(
                ErrorKind.UNKNOWN_MODEL,
                f"unknown model {str(model_id)[:200]!r}{did_you_mean(model_id, self.model_ids)}"
                f"; known models: {', '.join(self.model_ids)}",
                parameter,
                self.model_ids,
            ) from None

    @property
    def mini(self) -> Backend | None:
        """easel-mini, the project's own offline model, when the catalog lists it."""
        return self.backends.get("mini")

    def models_for(self, provider: str) -> list[Model]:
        return [m for m in self.models.values() if m.provider == provider]

    def backend_for(self, name: str) -> Backend:
        """A tier name, a public model id or a backend name -> its backend."""
        if name in self.tiers:
            return self.tiers[name].backend
        if name in self.models:
            return self.models[name].backend
        if name in self.backends:
            return self.backends[name]
        known = sorted({*self.tiers, *self.backends})
        raise EaselError(
            ErrorKind.UNKNOWN_MODEL,
            f"unknown model or tier {name!r}; known tiers and backends: {', '.join(known)}",
            "model",
        )


def is_single_file(source: str) -> bool:
    """A backend whose weights are one checkpoint file rather than a diffusers folder."""
    return source.endswith(SINGLE_FILE_SUFFIX)


SINGLE_FILE_SUFFIX = ".safetensors"
# Pickled checkpoints run code when they are loaded: easel reads safetensors files only.
PICKLED_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def _single_file_config(name: str, source: str, config: Any) -> str | None:
    if source.endswith(PICKLED_SUFFIXES):
        raise ValueError(f"backend {name!r}: {source} is a pickled checkpoint, which can run code "
                         "when loaded; convert it to .safetensors")
    if not is_single_file(source):
        if config is not None:
            raise ValueError(f"backend {name!r}: `config` is for a single-file source (a "
                             ".safetensors file); {source} is a hub id or a diffusers folder")
        return None
    if not isinstance(config, str) or not config:
        raise ValueError(f"backend {name!r}: {source} is a single file; set `config` to the hub "
                         "id or local diffusers folder of its pipeline's configs")
    return config


def _license(license_id: str, raw: dict[str, Any]) -> License:
    return License(license_id, str(raw.get("name", license_id)), str(raw.get("url", "")),
                   bool(raw.get("commercial", False)), str(raw.get("terms", "")))


def _backend(
    name: str, raw: dict[str, Any], schedulers: dict[str, SchedulerSpec],
    licenses: dict[str, License],
) -> Backend:
    family = raw["family"]
    license_id = raw.get("license")
    if license_id is not None and license_id not in licenses:
        raise ValueError(f"backend {name!r} names unknown license {license_id!r}; "
                         f"known: {', '.join(sorted(licenses))}")
    if family not in FAMILIES:
        raise ValueError(f"backend {name!r}: family must be one of {FAMILIES}, got {family!r}")
    unknown = [s for s in raw.get("schedulers", []) if s not in schedulers]
    if unknown:
        raise ValueError(f"backend {name!r} names unknown schedulers {unknown}")
    guidance_range = raw.get("guidance_range")
    return Backend(
        name=name,
        source=str(raw["source"]),
        family=family,
        steps=int(raw["steps"]),
        guidance=float(raw["guidance"]),
        negative_prompt=bool(raw.get("negative_prompt", True)) or "true_cfg_scale" in raw,
        true_cfg_scale=float(raw["true_cfg_scale"]) if "true_cfg_scale" in raw else None,
        max_sequence_length=raw.get("max_sequence_length"),
        max_steps=int(raw.get("max_steps", 100)),
        min_steps=int(raw.get("min_steps", 1)),
        guidance_range=None if guidance_range is None else (
            float(guidance_range[0]), float(guidance_range[1])),
        schedulers=tuple(schedulers[s] for s in raw.get("schedulers", [])),
        license=UNKNOWN_LICENSE if license_id is None else licenses[license_id],
        native_max_pixels=raw.get("native_max_pixels"),
        refine_strength=_strength(name, raw.get("refine_strength", DEFAULT_REFINE_STRENGTH)),
        config=_single_file_config(name, str(raw["source"]), raw.get("config")),
        step_seconds=_step_seconds(name, raw.get("step_seconds", DEFAULT_STEP_SECONDS)),
    )


def _step_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"backend {name!r}: step_seconds must be a positive number of "
                         f"seconds, got {value!r}")
    return float(value)


def _strength(name: str, value: Any) -> float:
    if not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ValueError(f"backend {name!r}: refine_strength must be between 0 and 1, "
                         f"got {value!r}")
    return float(value)


def _forget_licences_of_new_sources(base: dict[str, Any], overlay: dict[str, Any]
                                    ) -> dict[str, Any]:
    """A licence belongs to weights, not to a backend's name: an overlay that points a packaged
    backend at other weights without naming their licence gets the unknown licence (refused in
    commercial-only mode), never the old weights' licence."""
    backends = dict(overlay.get("backends", {}))
    for name, raw in backends.items():
        old = base.get("backends", {}).get(name)
        if old is not None and "source" in raw and raw["source"] != old.get("source") and (
            "license" not in raw
        ):
            backends[name] = {**raw, "license": None}
    return {**overlay, "backends": backends} if backends else overlay


def _configs_of_replaced_sources(base: dict[str, Any], overlay: dict[str, Any]
                                 ) -> dict[str, Any]:
    """An overlay that points a packaged backend at a single file (`source =
    "/models/sd_xl_base_1.0.safetensors"`) and names no `config` keeps the hub id it replaces
    as its config: the file is that model's checkpoint in another layout."""
    backends = dict(overlay.get("backends", {}))
    for name, raw in backends.items():
        old = str(base.get("backends", {}).get(name, {}).get("source", ""))
        replaced_by_file = is_single_file(str(raw.get("source", ""))) and "config" not in raw
        if replaced_by_file and old and not is_single_file(old) and not old.startswith("easel/"):
            backends[name] = {**raw, "config": old}
    return {**overlay, "backends": backends} if backends else overlay


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge tables so a user file can change one field of one entry."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
