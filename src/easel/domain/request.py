"""A generation request in the core's own terms (diffusers names), whatever dialect sent it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from easel.domain.generation import Operation
from easel.domain.lora import AppliedLora
from easel.domain.safety import EnhancementState, SafetyInput


class ImageFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"

    @property
    def mime(self) -> str:
        return f"image/{self.value}"

    @property
    def extension(self) -> str:
        return "jpg" if self is ImageFormat.JPEG else self.value


DEFAULT_MAX_SEED = 2**32 - 1  # uint32, as Google, AIML and Runware document seeds
SEED_CEILING = 2**63 - 1  # torch generators take any seed below this


@dataclass(frozen=True)
class GenerationRequest:
    model: str  # a public model id from the catalog
    prompt: str
    width: int
    height: int
    num_images: int = 1
    negative_prompt: str | None = None
    seed: int | None = None  # None: a random seed per image, reported back
    output_format: ImageFormat = ImageFormat.JPEG
    output_quality: int = 95
    steps: int | None = None  # None: the backend's default
    guidance_scale: float | None = None
    scheduler: str | None = None  # a catalog scheduler name; None: the pipeline's own
    max_seed: int = DEFAULT_MAX_SEED  # seeds of this job stay in 0..max_seed
    safety: SafetyInput = field(default_factory=SafetyInput)
    watermark: bool = False  # embed easel's invisible watermark in every image
    enhance_prompt: bool = False
    # When the prompt was rewritten, `prompt` is the rewrite and this the client's own.
    original_prompt: str | None = None
    enhancement: EnhancementState = EnhancementState.OFF
    enhancement_detail: str | None = None  # why a rewrite fell back, briefly
    tier: str = ""  # the catalog tier of `model`, fixed when the request was resolved
    partial_images: int = 0  # previews of each image while it denoises (a stream shows them)
    # LoRA adapters, pinned to the bytes allow-listed when the job was accepted.
    loras: tuple[AppliedLora, ...] = ()
    # Drawing from an input image: the operation, its strength, and the sha256 of the files the
    # client sent (the inputs themselves are in the image store, under input_keys(job id)).
    operation: Operation = Operation.TEXT
    strength: float | None = None
    input_digest: str | None = None
    mask_digest: str | None = None
    # Editing by instruction from several images: the sha256 of each after the first
    # (input_digest), kept under reference_keys(job id, ...).
    reference_digests: tuple[str, ...] = ()
    # Upscaling: the output (width x height) is the stored input this many times over.
    upscale_factor: int | None = None

    @property
    def client_prompt(self) -> str:
        return self.original_prompt if self.original_prompt is not None else self.prompt
