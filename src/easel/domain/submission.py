"""The one value a dialect hands the core: a Submission.

A dialect turns its wire body into a Submission (the generation in diffusers' names, typed
delivery settings, the client's spelling of each parameter, and an opaque echo of its own data)
and the core decides everything else: limits, the catalog's rules, the SSRF check of every
outbound URL, idempotency, insert. The core never reads `echo`; dialects never see the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

from easel.domain.lora import LoraChoice
from easel.domain.request import DEFAULT_MAX_SEED, ImageFormat
from easel.domain.safety import SafetyInput


@dataclass(frozen=True)
class Caller:
    """Who is calling: an API key's principal ("env:<digest>", "key:<id>"), or the client
    address when no keys are configured. It names the caller's rate-limit bucket."""

    principal: str


INTERNAL_CALLER = Caller("internal")


@dataclass(frozen=True)
class ModelChoice:
    """Which model the client asked for. `id` None means "the `tier` model of `provider`" (a
    generic id such as OpenAI's `imagen-4`); a `tier` given with an id must match that id's tier.
    `provider` set with an id restricts it to that provider's ids (a WaveSpeed model path)."""

    id: str | None
    tier: str | None = None
    provider: str | None = None


@dataclass(frozen=True)
class ExactSize:
    """Width and height that must be one of the model's sizes (Runware, the CLI)."""

    width: int
    height: int


@dataclass(frozen=True)
class AspectRatioSize:
    """An Imagen aspect ratio and resolution (WaveSpeed, Google, AIML)."""

    aspect_ratio: str
    resolution: str = "1k"


@dataclass(frozen=True)
class NearestSize:
    """Any WxH the client wrote (OpenAI `size`): the model's nearest size is produced."""

    width: int
    height: int


@dataclass(frozen=True)
class InputShapeSize:
    """The input image's shape at a resolution (an edit that names a resolution and no aspect
    ratio): the model's aspect ratio nearest the image's, at that resolution."""

    resolution: str


SizeChoice = ExactSize | AspectRatioSize | NearestSize | InputShapeSize


def size_asked(aspect_ratio: str, resolution: str, *, from_image: bool, ratio_sent: bool,
               resolution_sent: bool) -> SizeChoice | None:
    """The size an aspect ratio and a resolution ask for (each dialect's defaults filled in).
    Drawn from an image with no aspect ratio sent, the image's shape: at the resolution sent,
    else (None) at the model's size nearest the image's own."""
    if not from_image or ratio_sent:
        return AspectRatioSize(aspect_ratio, resolution)
    return InputShapeSize(resolution) if resolution_sent else None


@dataclass(frozen=True)
class ImageInput:
    """An image as the client sent it: wire text (a data URI, base64, a URL, the id of an image
    easel stored) or a file's bytes (a multipart upload), and the parameter it came in."""

    parameter: str
    text: str | None = None
    data: bytes | None = None


class MaskRule(Enum):
    """Which pixels of a mask are repainted, as each API defines it."""

    # White is repainted, and so is a transparent pixel (Runware, Google, easel's own API).
    WHITE = "white"
    # OpenAI: the transparent pixels are repainted, the opaque ones kept whatever their colour
    # (its masks are the image with a hole erased); a mask with no alpha channel: white.
    TRANSPARENT = "transparent"


@dataclass(frozen=True)
class Outpaint:
    """Outpainting (Runware's and easel's `outpaint`): the image is extended by these many
    pixels on each side and the new area drawn; `blur` pixels of the image along each new edge
    are redrawn too, so the model draws the join. The core makes the canvas and its mask."""

    top: int = 0
    right: int = 0
    bottom: int = 0
    left: int = 0
    blur: int = 0
    parameter: str = "outpaint"  # the client's name for it

    def canvas(self, width: int, height: int) -> tuple[int, int]:
        """The size of an image of width x height, extended."""
        return width + self.left + self.right, height + self.top + self.bottom


# The factors an upscale may ask for: what Google (x2, x3, x4) and Runware (2, 4; once 3)
# document.
UPSCALE_FACTORS = (2, 3, 4)
# The largest side an upscale produces: Runware's cap (a larger result shrinks the input
# first), and about Google's 17 MP at 4096 x 4096.
MAX_UPSCALED_SIDE = 4096


@dataclass(frozen=True)
class Upscale:
    """Upscaling (Runware's `imageUpscale`/`upscale` tasks, Vertex's upscale model, easel's
    `upscale`): the image enlarged `factor` times each side by a super-resolution model. An
    output past the server's largest side shrinks the input first, as Runware documents."""

    factor: int
    parameter: str = "upscale"  # the client's name for the factor


@dataclass(frozen=True)
class ImagesIn:
    """Drawing from an image: image-to-image at `strength` (None: the default), or, with a
    mask, inpainting. With no size asked for, the image is drawn at the model's size nearest
    the input's."""

    image: ImageInput
    mask: ImageInput | None = None
    strength: float | None = None  # the client's own
    mask_rule: MaskRule = MaskRule.WHITE
    # Grow the mask by this share of the image's longer side before drawing (Vertex's
    # `dilation`, 0..1): an edge the client drew tight gets room to blend.
    mask_dilation: float = 0.0
    # The client asks for an edit by instruction (the prompt says what to change: OpenAI's
    # edits, Gemini): a tier that edits from reference images does so, showing it `image` and
    # `references`; another redraws `image` at `strength` (image-to-image).
    instruction: bool = False
    references: tuple[ImageInput, ...] = ()  # more images to combine, after `image`
    # The dialect's own strength when the client sent none (an API's rule: a hole is drawn
    # afresh, high fidelity stays close); an edit by instruction has none. None: the core's.
    default_strength: float | None = None
    # Whether the content check reads the input images (a flagged one is refused, naming it).
    # None: as the outputs are checked, when the dialect withholds flagged images; Runware
    # says it itself (safety.checkInputs).
    check_inputs: bool | None = None
    # Extend `image` and draw the new area (no mask: the core makes it).
    outpaint: Outpaint | None = None
    # Enlarge `image` (a model of the catalog's upscale tier; no prompt).
    upscale: Upscale | None = None


@dataclass(frozen=True)
class GenerationInput:
    """The generation as the client asked for it, before the catalog resolves model and size."""

    model: ModelChoice
    prompt: str
    # None: the model's 1:1 at its first resolution; drawn from an image, the image's shape
    size: SizeChoice | None = None
    num_images: int = 1
    negative_prompt: str | None = None
    seed: int | None = None  # None: a random seed per image, reported back
    output_format: ImageFormat = ImageFormat.JPEG
    output_quality: int = 95
    # Sampling controls; None: the backend's defaults. The catalog bounds each per backend.
    steps: int | None = None
    guidance_scale: float | None = None
    scheduler: str | None = None
    # The largest seed the dialect accepts: every seed reported back (random ones, and s+i
    # for image i) stays within 0..max_seed, so it can be sent again as an input.
    max_seed: int = DEFAULT_MAX_SEED
    # The checks of the outputs, the invisible watermark and the prompt rewrite the client asked
    # for (docs/safety.md); each dialect sets its provider's defaults.
    safety: SafetyInput = field(default_factory=SafetyInput)
    watermark: bool = False
    enhance_prompt: bool = False
    partial_images: int = 0  # previews streamed while it denoises (OpenAI's, 0-3)
    loras: tuple[LoraChoice, ...] = ()  # allow-listed adapters, each with its weight
    images_in: ImagesIn | None = None  # draw from an input image (None: from text alone)


@dataclass(frozen=True)
class DeliverySettings:
    """Where finished work goes besides polling. The core checks every URL (SSRF policy)."""

    webhook: str | None = None
    webhook_per_image: bool = False  # Runware posts each finished image on its own
    upload: str | None = None  # PUT each image here (Runware uploadEndpoint)
    ttl_seconds: int | None = None  # image URL lifetime; None: the server's default

    def to_json(self) -> dict[str, Any]:
        return {"webhook": self.webhook, "webhook_per_image": self.webhook_per_image,
                "upload": self.upload, "ttl_seconds": self.ttl_seconds}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DeliverySettings:
        return cls(webhook=raw.get("webhook"), webhook_per_image=bool(raw.get("webhook_per_image")),
                   upload=raw.get("upload"), ttl_seconds=raw.get("ttl_seconds"))


# The core's parameter names. A dialect maps the ones it spells differently.
CORE_PARAMETERS = (
    "model", "tier", "prompt", "negative_prompt", "size", "width", "height", "aspect_ratio",
    "resolution", "num_images", "seed", "output_format", "output_quality", "webhook", "upload",
    "ttl", "task_id", "steps", "guidance_scale", "scheduler", "safety", "person_generation",
    "watermark", "enhance_prompt", "loras", "image", "mask", "strength",
)


@dataclass(frozen=True)
class WireNames:
    """The client's spelling of core parameters, so that the core's errors name the parameter
    the client sent (`negative_prompt` -> `negativePrompt`, `num_images` -> `n`, ...)."""

    names: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.names) - set(CORE_PARAMETERS)
        if unknown:
            raise ValueError(f"not core parameters: {sorted(unknown)}")
        object.__setattr__(self, "names", MappingProxyType(dict(self.names)))

    def __call__(self, core_name: str) -> str:
        return self.names.get(core_name, core_name)

    def size_names(self) -> tuple[str, str]:
        """How to name a width and a height that make no allowed size: the dialect's names for
        them when it has separate ones (Runware), else its name for the size."""
        size = self("size")
        return self.names.get("width", size), self.names.get("height", size)

    def with_(self, **names: str) -> WireNames:
        return WireNames({**self.names, **names})


@dataclass(frozen=True)
class Submission:
    dialect: str  # "runware", "wavespeed", "openai", "google", "cli"
    caller: Caller
    generation: GenerationInput
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    task_id: str | None = None  # the client's id for this job (idempotency); None: a fresh one
    names: WireNames = field(default_factory=WireNames)
    # Dialect-private. The core only compares it for idempotency, leaving out keys that start
    # with "_" (a record of the call as sent, not a parameter).
    echo: Mapping[str, Any] = field(default_factory=dict)
    # The client says this request repeats one it sent before (an SDK's automatic retry, which
    # carries no id of its own): the caller's recent job with the same parameters is its job.
    repeats_earlier: bool = False
    # The client's id as it sent it, where the dialect made task_id of it (OpenAI's
    # Idempotency-Key, hashed to a fixed length that keeps its case): messages name this one.
    task_id_sent: str | None = None
