"""What the engine is asked to do and what it gives back (framework-free types)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


@dataclass(frozen=True)
class ImageSpec:
    """One image to draw: its prompt, its negative prompt and its seed; for an image drawn from
    an input (EngineBatch.operation), the keys of its input image and mask in
    EngineBatch.inputs."""

    prompt: str
    seed: int
    negative_prompt: str | None = None
    init: str | None = None  # the image to start from (image-to-image, inpainting, upscaling)
    mask: str | None = None  # inpainting: white (255) is repainted, black (0) kept
    references: tuple[str, ...] = ()  # editing by instruction: the images the model is shown


class Operation(StrEnum):
    """What a batch draws: from text alone, from an input image at `strength` (the share of
    the schedule re-run: low stays close to the input), inpainting an input's masked area, or
    editing by instruction: the prompt says what to change in the reference images the model
    is shown (FLUX.2's reference editing; the whole schedule runs, no strength), or upscaling:
    an input enlarged by a super-resolution model (no prompt, no schedule; the batch's size is
    the output's)."""

    TEXT = "text"
    IMAGE = "image"
    INPAINT = "inpaint"
    REFERENCE = "reference"
    UPSCALE = "upscale"

    @property
    def partial_schedule(self) -> bool:
        """Whether it runs only `strength` of the schedule (image-to-image, inpainting)."""
        return self in (Operation.IMAGE, Operation.INPAINT)


# A mask level (0..255) at or above this is repainted. The diffusers inpaint pipelines binarise
# the mask at half scale; the paste-back of kept pixels uses the same line.
REPAINT_FROM = 128


@dataclass(frozen=True)
class SchedulerSpec:
    """A sampler a client named (Runware `scheduler`), as the catalog resolves it: a diffusers
    scheduler class, built from the pipeline's own scheduler config plus `options`."""

    name: str
    class_name: str
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class TwoPass:
    """A size above what the model card supports, reached in two passes: draw at the base size,
    upscale to the batch's size, and refine with the family's img2img pipeline at `strength`
    (the share of the schedule re-run: low keeps the composition, adds detail)."""

    base_width: int
    base_height: int
    strength: float


@dataclass(frozen=True)
class AdapterSpec:
    """One LoRA adapter a batch runs with: its allow-list name, the local `.safetensors` file the
    worker made ready, the file's sha256 (its identity: a name re-added with another file is
    another adapter) and the weight it is applied at."""

    name: str
    path: str
    digest: str
    weight: float


@dataclass(frozen=True)
class EngineBatch:
    """Compatible images that run in one pipeline call (same weights, size, steps, guidance,
    scheduler)."""

    source: str  # hub id, local directory, or a built-in easel/* model
    family: str
    width: int
    height: int
    steps: int
    guidance: float
    images: tuple[ImageSpec, ...]
    max_sequence_length: int | None = None
    scheduler: SchedulerSpec | None = None  # None: the pipeline's own
    two_pass: TwoPass | None = None  # None: drawn at its size in one pass
    # A distilled model given negative prompts: true CFG at this scale (two passes a step).
    true_cfg: float | None = None
    # Partial images wanted (OpenAI's `partial_images`, 0-3): the model's current prediction of
    # the clean image, decoded this many times at evenly spaced steps (Preview, below).
    previews: int = 0
    # LoRA adapters applied for this call, with their weights (none: the base model alone).
    # Jobs with another set never share the call (the batch key holds the set).
    adapters: tuple[AdapterSpec, ...] = ()
    # Drawing from input images (the images-in work): the operation, its strength, and the
    # decoded inputs the specs name by key: an image as H x W x 3 uint8, a mask as H x W uint8,
    # both already at the batch's width and height.
    operation: Operation = Operation.TEXT
    strength: float = 1.0
    inputs: Mapping[str, Any] = field(default_factory=dict)
    # Upscaling: each input is width / factor x height / factor and comes out at the batch's
    # size (the engine reaches factors its model does not do by resampling its output).
    upscale_factor: int = 1

    @property
    def preview_steps(self) -> tuple[int, ...]:
        """The steps (1-based, of `total_steps`) after which a preview is decoded: evenly
        spaced, never the last (the final image is not a preview)."""
        total = self.total_steps
        count = min(self.previews, max(total - 1, 0))
        return tuple(sorted({max(1, round(total * (i + 1) / (count + 1)))
                             for i in range(count)} - {total}))

    @property
    def refine_schedule(self) -> int:
        """num_inference_steps to ask of the refiner: an img2img pipeline runs about
        n * strength of them (each family rounds its own way), so n is raised until at least
        one step runs."""
        strength = self.two_pass.strength if self.two_pass else 1.0
        return max(self.steps, math.ceil(1.0 / strength))

    @property
    def input_schedule(self) -> int:
        """num_inference_steps for a pipeline drawing from an input, which runs about
        steps * strength of them: raised, as for the two-pass refiner, until at least one step
        runs (SDXL's pipelines round the share down and refuse zero steps; the others would run
        one step at too high a noise level)."""
        return max(self.steps, math.ceil(1.0 / self.strength))

    @property
    def total_steps(self) -> int:
        """Denoising steps across both passes, or of a pipeline drawing from an input (the
        flow-matching ones run ceil(n * strength) of n), as first estimated (progress learns the
        refiner's exact count when it starts)."""
        if self.operation.partial_schedule:
            return max(1, math.ceil(self.input_schedule * self.strength - 1e-9))
        if self.two_pass is None:
            return self.steps
        return self.steps + max(1, int(self.refine_schedule * self.two_pass.strength))


@dataclass(frozen=True)
class EngineStatus:
    """What an engine holds now, for /metrics and /easel/info."""

    device: str  # "cuda:0", "cpu"
    loaded: tuple[str, ...]  # the sources of the pipelines in memory
    # Accelerator memory in bytes: "allocated", "reserved", "peak", "total"; empty on the CPU.
    memory: tuple[tuple[str, int], ...] = ()
    # The LoRA adapters each loaded pipeline holds, least recently used first.
    adapters: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class GeneratedImage:
    """Pixels as an HxWx3 uint8 array (numpy), with the seed that produced them."""

    pixels: Any
    seed: int
    width: int
    height: int


# Preview(index among the batch's previews (0-based), one image per ImageSpec in order)
Preview = Callable[[int, list["GeneratedImage"]], None]


class Engine(Protocol):
    """What the worker needs of an engine. The diffusers engine (easel.engine.Engine) is the real
    one; tests use a fake that draws pixels from the seed without torch."""

    def warm(self, source: str) -> None:
        """Load the weights of `source` now (the models preloaded at start)."""

    def status(self) -> EngineStatus:
        """Its device, the pipelines it holds and the accelerator's memory."""
        ...

    def generate(
        self,
        batch: EngineBatch,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        preview: Preview | None = None,
    ) -> list[GeneratedImage]:
        """One image per ImageSpec, in order; stops between steps once `cancel` is set
        (CancelledError). Raises InferenceError when no usable image came out. With
        `batch.previews` and `preview`, calls `preview` after each of `batch.preview_steps`
        with the batch's partial images (at the batch's size)."""
        ...
