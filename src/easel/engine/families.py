"""Each pipeline family's rules in one row: how to call it, how to encode its prompts for the
embedding cache, how to load it, its offline stand-in, its img2img and inpaint pipelines (for
images drawn from an input, and the img2img one for the two-pass path to sizes above what the
model card supports), and how its partial images are decoded.

The catalog names a backend's family; nothing outside this table branches on a family's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from easel.domain.errors import InferenceError
from easel.domain.generation import EngineBatch, Operation
from easel.engine import previews, tiny

MINI_PIPELINE = "EaselMiniPipeline"  # its own class draws from inputs too

CallArguments = Callable[[EngineBatch, list[str]], dict[str, Any]]
Encoder = Callable[[Any, str, str, int | None, bool], tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class TextEncoding:
    """Prompt embeddings the pipeline accepts in place of prompt strings (for the cache).
    `names` are the pipeline's keyword names, in the order `encode` returns them; names that
    start with "negative" are only passed when `guided` says classifier-free guidance is on."""

    names: tuple[str, ...]
    encode: Encoder
    guided: Callable[[dict[str, Any]], bool] = lambda kwargs: False
    # Whether the cache may stand in for the prompt strings on this pipeline and call.
    applies: Callable[[Any, dict[str, Any]], bool] = lambda pipe, kwargs: True


@dataclass(frozen=True)
class Family:
    name: str
    build_stand_in: Callable[[], Any]
    arguments: CallArguments  # the family's own keyword arguments for one batched call
    # Latents (as its denoising loop holds them) to pixels, as its pipeline's final decode does:
    # partial images decode the model's current prediction of the clean latents with it.
    decode_preview: previews.PreviewDecoder
    # The diffusers classes built from the same components for drawing from an input image:
    # img2img (image-to-image, and the two-pass refiner) and inpaint; None: it cannot.
    refiner: str | None = None
    inpainter: str | None = None
    # Its text-to-image pipeline takes reference images (`image=[...]`) to edit by instruction.
    references: bool = False
    text_encoding: TextEncoding | None = None
    # The diffusers pipeline class (its LoRA loader reads adapter files without a model);
    # None: easel's own.
    pipeline: str | None = None


def _guidance(batch: EngineBatch, negatives: list[str]) -> dict[str, Any]:
    return {"guidance_scale": batch.guidance}


def _guidance_negative(batch: EngineBatch, negatives: list[str]) -> dict[str, Any]:
    return {"guidance_scale": batch.guidance, "negative_prompt": negatives}


def _sequence(length: int | None) -> dict[str, Any]:
    """The text window, for the families that take one; absent: the pipeline's default."""
    return {"max_sequence_length": length} if length else {}


def _with_sequence(arguments: CallArguments) -> CallArguments:
    def call(batch: EngineBatch, negatives: list[str]) -> dict[str, Any]:
        return {**arguments(batch, negatives), **_sequence(batch.max_sequence_length)}

    return call


def _flux(batch: EngineBatch, negatives: list[str]) -> dict[str, Any]:
    # FLUX.1 is guidance-distilled: a negative prompt runs its true CFG (two passes a step).
    if batch.true_cfg is None:
        return _guidance(batch, negatives)
    return {**_guidance(batch, negatives), "true_cfg_scale": batch.true_cfg,
            "negative_prompt": negatives}


def _zimage(batch: EngineBatch, negatives: list[str]) -> dict[str, Any]:
    # Z-Image-Turbo runs without CFG (guidance 0); a negative prompt turns it on at true_cfg.
    guidance = batch.guidance if batch.true_cfg is None else batch.true_cfg
    return {"guidance_scale": guidance, "negative_prompt": negatives}


def _sana(batch: EngineBatch, negatives: list[str]) -> dict[str, Any]:
    # Resolution binning snaps to the 1024-class bins and resizes back; our sizes are exact.
    kwargs = {**_guidance_negative(batch, negatives), "use_resolution_binning": False}
    if batch.source in TINY_MODELS:
        # The default instruction preamble is ~1k tokens, far past a tiny encoder's window.
        kwargs["complex_human_instruction"] = None
    return kwargs


def _qwen_image(batch: EngineBatch, negatives: list[str]) -> dict[str, Any]:
    # Qwen-Image runs true CFG (`true_cfg_scale`) only when a negative prompt is given; its card
    # recommends " " when the caller has none. `guidance_scale` is for guidance-distilled
    # variants, which this family's catalog entries are not.
    return {"true_cfg_scale": batch.guidance, "negative_prompt": [n or " " for n in negatives]}


def _encode_flux(pipe: Any, prompt: str, negative: str, seq: int | None,
                 guided: bool) -> tuple[torch.Tensor, ...]:
    embeds, pooled, _text_ids = pipe.encode_prompt(prompt=[prompt], prompt_2=None,
                                                   **_sequence(seq))
    return (embeds, pooled)


def _encode_sd3(pipe: Any, prompt: str, negative: str, seq: int | None,
                guided: bool) -> tuple[torch.Tensor, ...]:
    embeds, neg, pooled, neg_pooled = pipe.encode_prompt(
        prompt=[prompt], prompt_2=None, prompt_3=None, do_classifier_free_guidance=guided,
        negative_prompt=[negative] if guided else None, **_sequence(seq),
    )
    return (embeds, neg, pooled, neg_pooled)


def _encode_flux2(pipe: Any, prompt: str, negative: str, seq: int | None,
                  guided: bool) -> tuple[torch.Tensor, ...]:
    embeds, _text_ids = pipe.encode_prompt(prompt=[prompt], **_sequence(seq))
    return (embeds,)


_FAMILIES = (
    Family("flux", tiny.flux, _with_sequence(_flux), previews.decode_flux,
           refiner="FluxImg2ImgPipeline", inpainter="FluxInpaintPipeline", pipeline="FluxPipeline",
           # With true CFG the pipeline encodes prompt and negative itself.
           text_encoding=TextEncoding(("prompt_embeds", "pooled_prompt_embeds"), _encode_flux,
                                      applies=lambda pipe, kwargs: "true_cfg_scale" not in kwargs)),
    # No img2img: diffusers has no klein img2img class, and its inpaint pipeline with an
    # all-white mask is not one either: it also feeds the input to the transformer as reference
    # tokens (klein's editing mode), so even at strength 1 the output follows the input, and
    # `strength` would not mean what it means on the other tiers.
    Family("flux2", tiny.flux2, _with_sequence(_guidance), previews.decode_flux2,
           inpainter="Flux2KleinInpaintPipeline", pipeline="Flux2KleinPipeline",
           references=True,  # Flux2KleinPipeline(image=[...]): FLUX.2's reference editing
           # A non-distilled klein runs CFG and would encode its own "" negative for one row:
           # leave its prompts to the pipeline.
           text_encoding=TextEncoding(
               ("prompt_embeds",), _encode_flux2,
               applies=lambda pipe, kwargs: bool(pipe.config.is_distilled)
               or kwargs["guidance_scale"] <= 1.0)),
    Family("zimage", tiny.zimage, _with_sequence(_zimage), previews.decode_scaled_shifted,
           refiner="ZImageImg2ImgPipeline", inpainter="ZImageInpaintPipeline",
           pipeline="ZImagePipeline"),
    Family("qwenimage", tiny.qwenimage, _with_sequence(_qwen_image), previews.decode_qwenimage,
           refiner="QwenImageImg2ImgPipeline", inpainter="QwenImageInpaintPipeline",
           pipeline="QwenImagePipeline"),
    Family("sd3", tiny.sd3, _with_sequence(_guidance_negative), previews.decode_scaled_shifted,
           refiner="StableDiffusion3Img2ImgPipeline", inpainter="StableDiffusion3InpaintPipeline",
           pipeline="StableDiffusion3Pipeline",
           text_encoding=TextEncoding(
               ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                "negative_pooled_prompt_embeds"),
               _encode_sd3, guided=lambda kwargs: kwargs["guidance_scale"] > 1.0)),
    Family("sdxl", tiny.sdxl, _guidance_negative, previews.decode_sdxl,
           refiner="StableDiffusionXLImg2ImgPipeline", inpainter="StableDiffusionXLInpaintPipeline",
           pipeline="StableDiffusionXLPipeline"),
    # diffusers has no Sana img2img or inpaint pipeline. easel-mini's own pipeline draws from an
    # input in its pixel space (easel/mini/pipeline.py).
    Family("sana", tiny.sana, _sana, previews.decode_sana, pipeline="SanaPipeline"),
    Family("mini", tiny.mini, _guidance_negative, previews.decode_mini,
           refiner=MINI_PIPELINE, inpainter=MINI_PIPELINE),
)
FAMILIES: dict[str, Family] = {family.name: family for family in _FAMILIES}
TINY_MODELS: dict[str, str] = {f"easel/tiny-{name}": name for name in FAMILIES}


def family_of(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        known = ", ".join(FAMILIES)
        raise ValueError(f"unknown pipeline family {name!r}; known: {known}") from None


def input_pipeline(name: str, operation: Operation) -> str:
    """The diffusers class that draws `operation` from an input image in family `name`."""
    assert operation is not Operation.TEXT
    if operation is Operation.UPSCALE:
        raise InferenceError(f"the {name} family draws; upscaling is an upscaler's (the catalog's "
                             "upscale tier), not a diffusers pipeline's")
    family = family_of(name)
    if operation is Operation.REFERENCE:
        if not family.references or family.pipeline is None:
            raise InferenceError(f"the {name} family cannot do reference (editing by "
                                 "instruction): its pipeline takes no reference images")
        return family.pipeline
    inpaint = operation is Operation.INPAINT
    class_name = family.inpainter if inpaint else family.refiner
    if class_name is None:
        kind = "inpaint" if inpaint else "img2img"
        raise InferenceError(f"the {name} family cannot do {operation.value} (drawing from an "
                             f"input image): it has no {kind} pipeline")
    return class_name


def stand_in_dir(name: str, cache_dir: Path) -> Path:
    """The built-in stand-in `name` (easel/tiny-<family>), built into cache_dir on first use."""
    return tiny.ensure_tiny(name, FAMILIES[TINY_MODELS[name]].build_stand_in, cache_dir)


def call_kwargs(batch: EngineBatch, generators: list[torch.Generator]) -> dict[str, Any]:
    """Arguments for one batched pipeline call, in the conventions of the batch's family."""
    negatives = [image.negative_prompt or "" for image in batch.images]
    return {
        "prompt": [image.prompt for image in batch.images],
        "num_inference_steps": batch.steps,
        "width": batch.width,
        "height": batch.height,
        "generator": generators,
        "output_type": "np",
        **family_of(batch.family).arguments(batch, negatives),
    }
