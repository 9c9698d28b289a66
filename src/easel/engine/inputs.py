"""Images drawn from input images (image-to-image, inpainting): the checks a batch's inputs pass
before any weights load, the inputs as the diffusers pipelines take them, and the paste-back
that keeps an inpainted image's pixels outside its mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from easel.domain.errors import InferenceError
from easel.domain.generation import REPAINT_FROM, EngineBatch, ImageSpec, Operation
from easel.engine.families import input_pipeline


def check_inputs(batch: EngineBatch) -> None:
    """Raise InferenceError, naming the problem, when `batch` cannot be drawn from its inputs:
    an operation its family cannot do, two passes, a missing input, a size other than the
    batch's. A text-to-image batch passes."""
    if batch.operation is Operation.TEXT:
        return
    if batch.operation is Operation.UPSCALE:
        _check_upscale(batch)
        return
    input_pipeline(batch.family, batch.operation)
    if batch.two_pass is not None:
        raise InferenceError(f"{batch.operation.value} draws at the input's own size; "
                             f"{batch.width}x{batch.height} would need two passes")
    if batch.operation is Operation.REFERENCE:
        _check_references(batch)
        return
    for index, spec in enumerate(batch.images):
        _input(batch, index, "init", spec.init, (batch.height, batch.width, 3))
        if batch.operation is Operation.INPAINT:
            _input(batch, index, "mask", spec.mask, (batch.height, batch.width))


def _check_upscale(batch: EngineBatch) -> None:
    """Every input is the batch's size divided by its factor, exactly."""
    factor = batch.upscale_factor
    if factor < 1 or batch.width % factor or batch.height % factor:
        raise InferenceError(f"an upscale to {batch.width}x{batch.height} needs a factor that "
                             f"divides both sides, got x{factor}")
    shape = (batch.height // factor, batch.width // factor, 3)
    for index, spec in enumerate(batch.images):
        _input(batch, index, "init", spec.init, shape)


def _check_references(batch: EngineBatch) -> None:
    """Every image is shown the same reference images (one call shows them to all)."""
    shown = {spec.references for spec in batch.images}
    if len(shown) != 1 or not next(iter(shown)):
        raise InferenceError("editing by instruction needs the same, non-empty reference "
                             "images for every image of a batch")
    for key in next(iter(shown)):
        _input(batch, 0, "reference", key, None)


def _input(batch: EngineBatch, index: int, role: str, key: str | None,
           shape: tuple[int, ...] | None) -> None:
    """`shape` None: any H x W x 3 (a reference image keeps its own size)."""
    if key is None:
        raise InferenceError(f"image {index} has no {role} input for {batch.operation.value}")
    if key not in batch.inputs:
        raise InferenceError(f"image {index}: the {role} input {key!r} is not among the inputs")
    pixels = np.asarray(batch.inputs[key])
    if shape is None:
        shape = (*pixels.shape[:2], 3) if pixels.ndim == 3 else (0, 0, 3)
    if pixels.shape != shape or pixels.dtype != np.uint8:
        raise InferenceError(f"image {index}: the {role} input {key!r} is {pixels.dtype} "
                             f"{pixels.shape}, not uint8 {shape} (as the batch takes it)")


def reference_inputs(batch: EngineBatch) -> dict[str, Any]:
    """The text-to-image pipeline's `image`: the reference images, shown to every image."""
    from PIL import Image

    keys = batch.images[0].references
    return {"image": [Image.fromarray(np.asarray(batch.inputs[key])) for key in keys]}


def pipeline_inputs(batch: EngineBatch) -> dict[str, Any]:
    """The img2img or inpaint pipeline's own arguments: one input (and mask) per image, in the
    order of the batch's specs, as PIL images (every one of these pipelines reads those the
    same way), the strength, and the schedule (EngineBatch.input_schedule)."""
    from PIL import Image

    kwargs: dict[str, Any] = {
        "image": [Image.fromarray(_init(batch, spec)) for spec in batch.images],
        "strength": batch.strength,
        "num_inference_steps": batch.input_schedule,
    }
    if batch.operation is Operation.INPAINT:
        kwargs["mask_image"] = [Image.fromarray(_mask(batch, spec)) for spec in batch.images]
    return kwargs


def keep_outside_mask(drawn: np.ndarray, batch: EngineBatch) -> np.ndarray:
    """Inpainted images (n, h, w, 3 in [0, 1]) with the inputs' own pixels outside their masks.
    The pipelines keep the latents there, but the VAE's round trip still shifts those pixels.
    The mask is used hard, as given: a feathered edge would blend pixels the caller asked to
    keep."""
    kept = drawn.copy()
    for i, spec in enumerate(batch.images):
        keep = _mask(batch, spec) < REPAINT_FROM
        kept[i][keep] = _init(batch, spec)[keep].astype(drawn.dtype) / 255.0
    return kept


def _init(batch: EngineBatch, spec: ImageSpec) -> np.ndarray:
    assert spec.init is not None
    return np.asarray(batch.inputs[spec.init])


def _mask(batch: EngineBatch, spec: ImageSpec) -> np.ndarray:
    assert spec.mask is not None
    return np.asarray(batch.inputs[spec.mask])
