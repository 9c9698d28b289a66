"""The engine: the only package that imports torch and diffusers.

It turns an EngineBatch (compatible images: same weights, size, steps) into pixels, keeps
pipelines warm, and unloads the least recently used one when a new model does not fit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

# A seed reproduces its pixels bit for bit on one machine (docs/architecture.md). On the CPU,
# Intel MKL's defaults break that: it picks its thread count by how busy the machine is
# (MKL_DYNAMIC) and its code path by memory alignment (CNR off), so a loaded machine rounds
# differently. Set before torch loads MKL; an operator's own values win.
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import numpy as np
import torch

from easel.catalog import Catalog, is_single_file
from easel.domain.errors import CancelledError, InferenceError
from easel.domain.generation import (
    EngineBatch,
    EngineStatus,
    GeneratedImage,
    ImageSpec,
    Operation,
    Preview,
)
from easel.engine.adapters import PipelineAdapters
from easel.engine.families import call_kwargs, family_of, input_pipeline
from easel.engine.fit import share_components
from easel.engine.inputs import (
    check_inputs,
    keep_outside_mask,
    pipeline_inputs,
    reference_inputs,
)
from easel.engine.libraries import quiet_libraries
from easel.engine.optimize import (
    EngineOptions,
    TextEmbeddingCache,
    apply_options,
    denoiser,
    prepare_vae,
)
from easel.engine.pipelines import (
    MINI_MODEL,
    Placement,
    default_placement,
    gpu_bytes_needed,
    load_pipeline,
    resolve_local_path,
    scheduled,
)
from easel.engine.previews import CleanImageTap
from easel.engine.upscaler import Upscaler, is_upscaler_folder, upscale_batch
from easel.settings import Settings

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


class _Cancelled(Exception):
    """Raised inside the denoising loop to stop between steps."""


class Engine:
    def __init__(
        self,
        cache_dir: Path,
        device: str | None = None,
        max_loaded: int = 2,
        num_threads: int | None = None,
        options: EngineOptions | None = None,
        configs: Mapping[str, str] | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.options = options or EngineOptions()
        # The diffusers config (hub id or folder) of each single-file source, from the catalog.
        self.configs = dict(configs or {})
        self.text_cache = TextEmbeddingCache(self.options.text_cache_size)
        self.applied: dict[str, list[str]] = {}  # source -> the speed options in force
        self.placement: Placement = default_placement(device)
        self.max_loaded = max_loaded
        self._pipelines: OrderedDict[str, Any] = OrderedDict()
        # Views of loaded pipelines that share their components: img2img (image-to-image and
        # the two-pass refiner) and inpaint.
        self._refiners: dict[str, Any] = {}
        self._inpainters: dict[str, Any] = {}
        self._adapters: dict[str, PipelineAdapters] = {}  # LoRA adapters of loaded pipelines
        # One pipeline call at a time: a GPU runs one batch best, and diffusers pipelines keep
        # per-call state (scheduler timesteps) that concurrent calls would corrupt.
        self._lock = threading.RLock()
        if num_threads:
            torch.set_num_threads(num_threads)
        quiet_libraries()  # before any load: the libraries' notices go through easel's handlers

    @classmethod
    def from_settings(cls, settings: Settings, catalog: Catalog | None = None) -> Engine:
        catalog = catalog or Catalog.load(*filter(None, [settings.catalog_file]))
        options = EngineOptions(
            compile=settings.compile,
            compile_mode=settings.compile_mode,
            compile_cache_dir=settings.compile_cache_dir,
            attention_backend=settings.attention_backend,
            fuse_qkv=settings.fuse_qkv,
            quantize=settings.quantize,
            step_cache_threshold=settings.step_cache_threshold,
            vae_tiling_pixels=settings.vae_tiling_pixels,
            text_cache_size=settings.text_cache_size,
            lora_cache_bytes=settings.lora_cache_bytes,
            lora_max_rank=settings.lora_max_rank,
            offload=settings.offload,
            weight_quant=settings.weight_quant,
            weight_quant_text_encoders=settings.weight_quant_text_encoders,
        )
        return cls(
            settings.models_dir,
            settings.device,
            settings.max_loaded_models,
            settings.num_threads,
            options,
            {b.source: b.config for b in catalog.backends.values() if b.config is not None},
        )

    @property
    def device(self) -> str:
        return self.placement.device

    def status(self) -> EngineStatus:
        memory: tuple[tuple[str, int], ...] = ()
        if self.device.startswith("cuda") and torch.cuda.is_available():
            device = torch.device(self.device)
            memory = (("allocated", torch.cuda.memory_allocated(device)),
                      ("reserved", torch.cuda.memory_reserved(device)),
                      ("peak", torch.cuda.max_memory_allocated(device)),
                      ("total", torch.cuda.get_device_properties(device).total_memory))
        adapters = tuple((source, tuple(self.loaded_adapters(source)))
                         for source in self.loaded() if self.loaded_adapters(source))
        return EngineStatus(self.device, tuple(self.loaded()), memory, adapters)

    def loaded(self) -> list[str]:
        return list(self._pipelines)

    def loaded_adapters(self, source: str) -> list[str]:
        """The names of the LoRA adapters `source`'s pipeline holds, least recently used first."""
        adapters = self._adapters.get(source)
        return adapters.loaded() if adapters else []

    def pipeline(self, source: str) -> Any:
        """The warm pipeline for `source`, loading it (and evicting others) if needed."""
        with self._lock:
            if source in self._pipelines:
                self._pipelines.move_to_end(source)
                return self._pipelines[source]
            self._make_room(source)
            try:
                pipe = self._load(source)
            except torch.OutOfMemoryError:
                self._evict_all()
                pipe = self._load(source)
            small = source in (MINI_MODEL, "easel/tiny-mini") or isinstance(pipe, Upscaler)
            return self.adopt(source, pipe, [] if small else self.options.fit.labels())

    def _load(self, source: str) -> Any:
        return load_pipeline(source, self.cache_dir, self.placement, self.options.fit,
                             self.configs.get(source))

    def adopt(self, source: str, pipe: Any, loaded_with: list[str] | None = None) -> Any:
        """Serve an already-built pipeline under `source` (benchmarks build theirs in memory).
        `loaded_with`: what its loading applied (offload, quantized weights), for `applied`."""
        with self._lock:
            self._refiners.pop(source, None)  # views of the pipeline this one replaces
            self._inpainters.pop(source, None)
            self._adapters.pop(source, None)  # and the adapters loaded into it
            # The speed options are the diffusers pipelines' (an upscaler takes none of them).
            options = [] if isinstance(pipe, Upscaler) else apply_options(
                pipe, self.options, self.device)
            self.applied[source] = [*(loaded_with or []), *options]
            if self.applied[source]:
                log.info("%s: %s", source, ", ".join(self.applied[source]))
            self._pipelines[source] = pipe
            return pipe

    def warm(self, source: str) -> None:
        """Load `source` now (the models preloaded at start), so the first job does not wait."""
        self.pipeline(source)

    def _make_room(self, source: str) -> None:
        single = is_single_file(source)
        local = Path(source).expanduser() if single else resolve_local_path(source,
                                                                            self.cache_dir)
        # max_loaded counts the diffusion pipelines: an upscaler (tens of MB) takes no slot, so
        # an upscale between two drawings does not unload a model of several GB.
        if single or local is None or not is_upscaler_folder(local):
            while sum(not isinstance(p, Upscaler) for p in self._pipelines.values()) \
                    >= self.max_loaded:
                self._evict_oldest(drawing_only=True)
        if not self.device.startswith("cuda"):
            return
        need = gpu_bytes_needed(local, self.options.fit) if local and local.exists() else 0
        while self._pipelines and need > torch.cuda.mem_get_info()[0]:
            self._evict_oldest()

    def _evict_oldest(self, drawing_only: bool = False) -> None:
        oldest = next(s for s, p in self._pipelines.items()
                      if not drawing_only or not isinstance(p, Upscaler))
        self._pipelines.pop(oldest)
        self._refiners.pop(oldest, None)
        self._inpainters.pop(oldest, None)
        self._adapters.pop(oldest, None)  # their layers live in the pipeline's modules
        self.text_cache.clear()
        log.info("unloading least recently used pipeline %s", oldest)
        self._free_memory()

    def _evict_all(self) -> None:
        self._pipelines.clear()
        self._refiners.clear()
        self._inpainters.clear()
        self._adapters.clear()
        self.text_cache.clear()
        self._free_memory()

    def _free_memory(self) -> None:
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def generate(
        self,
        batch: EngineBatch,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        preview: Preview | None = None,
    ) -> list[GeneratedImage]:
        """One image per ImageSpec, in order. Raises InferenceError or CancelledError.
        Identical specs (same prompt, negative prompt and seed) are drawn once: each image
        depends on its own spec alone, so their pixels would be identical anyway.
        With `batch.previews` and `preview`, partial images go to `preview` between steps."""
        unique = tuple(dict.fromkeys(batch.images))
        drawn = replace(batch, images=unique)
        check_inputs(drawn)  # before any weights load
        partials = None
        # Drawn from an input, a pipeline runs about steps * strength of them (total_steps
        # estimates it): if it runs fewer, the last previews are not sent (OpenAI's clients
        # expect that: "the final image may be sent before the full number of partial images").
        if preview is not None and drawn.preview_steps:
            partials = _Previews(drawn, batch.images, preview)
        steps = _Progress(progress, drawn.total_steps, partials)
        with self._lock:
            pipe = self.pipeline(drawn.source)
            if drawn.operation is Operation.UPSCALE:
                upscaled = self._upscaled(pipe, drawn, progress, cancel)
                return _in_batch_order(unique, upscaled, batch.images)
            self._use_adapters(drawn, pipe)
            kwargs = call_kwargs(drawn, _generators(drawn))
            if drawn.operation is Operation.REFERENCE:  # the pipeline itself, shown the images
                images = self._run(pipe, drawn, {**kwargs, **reference_inputs(drawn)}, steps,
                                   cancel)
            elif drawn.operation is not Operation.TEXT:
                images = self._from_inputs(pipe, drawn, kwargs, steps, cancel)
            elif drawn.two_pass is None:
                images = self._run(pipe, drawn, kwargs, steps, cancel)
            else:
                images = self._two_pass(pipe, drawn, kwargs, steps, cancel)
        return _in_batch_order(unique, _to_images(images, drawn), batch.images)

    def _upscaled(self, pipe: Any, batch: EngineBatch, progress: ProgressFn | None,
                  cancel: threading.Event | None) -> list[GeneratedImage]:
        """The batch's inputs enlarged by its upscaler, tile by tile: progress counts tiles,
        and a cancel stops between them. A black input comes out black, which is right."""
        if not isinstance(pipe, Upscaler):
            raise InferenceError(f"{batch.source} is not an upscaler (a transformers "
                                 "super-resolution model); it cannot upscale")
        try:
            enlarged = upscale_batch(pipe, batch, progress, cancel)
        except torch.OutOfMemoryError as exc:
            self._free_memory()
            raise InferenceError(f"out of memory on {self.device}: {exc}") from exc
        return _to_images(enlarged, batch, allow_black=True)

    def _use_adapters(self, batch: EngineBatch, pipe: Any) -> None:
        """Make `pipe` run with exactly the batch's LoRA adapters. The img2img and inpaint views
        share the pipeline's denoiser and text encoders, so they run with them too."""
        adapters = self._adapters.get(batch.source)
        if adapters is None:
            if not batch.adapters:
                return  # nothing ever loaded: the pipeline is the base model
            self._unfuse_for_adapters(batch.source, pipe)
            adapters = PipelineAdapters(
                pipe, batch.family, self.options.lora_cache_bytes, self.options.lora_cache_count,
                self.options.hotswap_rank)
            self._adapters[batch.source] = adapters
        adapters.apply(batch.adapters)

    def _unfuse_for_adapters(self, source: str, pipe: Any) -> None:
        """Adapters adapt the separate query, key and value projections, which a fused
        denoiser no longer calls (its one QKV matmul would run without them): the first
        adapters a pipeline takes unfuse it, for as long as it stays loaded."""
        if "fused-qkv" not in self.applied.get(source, []):
            return
        denoiser(pipe).unfuse_qkv_projections()
        self.applied[source] = [o for o in self.applied[source] if o != "fused-qkv"]
        log.info("%s: QKV projections unfused for LoRA adapters", source)

    def _two_pass(
        self,
        pipe: Any,
        batch: EngineBatch,
        kwargs: dict[str, Any],
        steps: _Progress,
        cancel: threading.Event | None,
    ) -> np.ndarray:
        """Draw at the base size, upscale (Lanczos) to the batch's size, and refine with the
        family's img2img pipeline, which shares the loaded components (no second copy)."""
        plan = batch.two_pass
        assert plan is not None
        refiner = self._refiner(batch, pipe)  # before any work: a family without one fails now
        drafts = self._run(pipe, batch, {**kwargs, "width": plan.base_width,
                                         "height": plan.base_height}, steps, cancel)
        if cancel is not None and cancel.is_set():  # before the upscale and the 2K encode
            raise CancelledError()
        refine = {
            **kwargs,
            "generator": _generators(batch),  # the base pass consumed the first ones
            "image": [_upscale(draft, batch.width, batch.height) for draft in drafts],
            "strength": plan.strength,
            "num_inference_steps": batch.refine_schedule,
        }
        steps.next_pass(batch.steps)
        return self._run(refiner, batch, refine, steps, cancel)

    def _from_inputs(
        self,
        pipe: Any,
        batch: EngineBatch,
        kwargs: dict[str, Any],
        steps: _Progress,
        cancel: threading.Event | None,
    ) -> np.ndarray:
        """Image-to-image or inpainting with the family's pipeline for it, a view that shares
        the loaded components. Inpainting then keeps the inputs' own pixels outside the mask."""
        inpaint = batch.operation is Operation.INPAINT
        cache = self._inpainters if inpaint else self._refiners
        view = self._view(cache, input_pipeline(batch.family, batch.operation), batch, pipe)
        steps.next_pass(0)  # the pipeline runs about steps * strength of its schedule
        drawn = self._run(view, batch, {**kwargs, **pipeline_inputs(batch)}, steps, cancel)
        return keep_outside_mask(drawn, batch) if inpaint else drawn

    def _refiner(self, batch: EngineBatch, pipe: Any) -> Any:
        class_name = family_of(batch.family).refiner
        if class_name is None:
            raise InferenceError(f"the {batch.family} family has no img2img pipeline for "
                                 f"the two-pass path; {batch.width}x{batch.height} is "
                                 "beyond what its catalog entry draws natively")
        return self._view(self._refiners, class_name, batch, pipe)

    def _view(self, cache: dict[str, Any], class_name: str, batch: EngineBatch,
              pipe: Any) -> Any:
        """The diffusers pipeline `class_name` built once from `pipe`'s components (no second
        copy of the weights), kept in `cache` while `pipe` stays loaded."""
        if batch.source not in cache:
            import diffusers

            if type(pipe).__name__ == class_name:  # it draws from inputs itself (easel-mini)
                cache[batch.source] = pipe
                return pipe
            view_class = getattr(diffusers, class_name)
            if self.options.weight_quant is None:
                # from_pipe casts every shared component to its dtype, float32 unless told:
                # a bf16 pipeline on a GPU would become float32 in place.
                view = view_class.from_pipe(pipe, torch_dtype=pipe.dtype)
            else:  # from_pipe casts to a dtype, which diffusers refuses for a quantized model
                view = share_components(view_class, pipe)
            view.set_progress_bar_config(disable=True)
            cache[batch.source] = view
        return cache[batch.source]

    def _run(
        self,
        pipe: Any,
        batch: EngineBatch,
        kwargs: dict[str, Any],
        steps: _Progress,
        cancel: threading.Event | None,
    ) -> np.ndarray:
        """One pipeline call, with progress, cancel between steps, and the embedding cache."""
        width, height = kwargs["width"], kwargs["height"]
        if not _accepts(pipe, "width"):
            # SDXL's img2img draws at its input image's size, which is the batch's.
            kwargs = {k: v for k, v in kwargs.items() if k not in ("width", "height")}
        prepare_vae(pipe, width, height, self.options)
        if _accepts(pipe, "callback_on_step_end"):
            kwargs["callback_on_step_end"] = steps.callback(cancel, width, height)
        try:
            # The tap goes on the scheduler this call samples with (after any swap).
            with torch.inference_mode(), scheduled(pipe, batch.scheduler), steps.tapping(pipe):
                adapters = self._adapters.get(batch.source)
                kwargs = self.text_cache.kwargs(pipe, batch.family, batch.source, kwargs,
                                                adapters.text_variant() if adapters else ())
                result = pipe(**kwargs)
        except _Cancelled:
            raise CancelledError() from None
        except torch.OutOfMemoryError as exc:
            self._free_memory()
            raise InferenceError(f"out of memory on {self.device}: {exc}") from exc
        return np.asarray(result.images)


class _Progress:
    """What happens between steps, across a batch's passes: steps done reported as
    (done, total), cancel, the check of the final latents, and the partial images."""

    def __init__(self, report: ProgressFn | None, total: int,
                 previews: _Previews | None = None) -> None:
        self.report = report
        self.total = total
        self.offset = 0
        self.learns_total = False
        self.previews = previews

    def next_pass(self, steps_before: int) -> None:
        """A pass that runs a share of its schedule (img2img) starts after `steps_before`
        steps: the total is learned from the pipeline once it knows that share."""
        self.offset = steps_before
        self.learns_total = True

    def tapping(self, pipe: Any) -> contextlib.AbstractContextManager[None]:
        if self.previews is None:
            return contextlib.nullcontext()
        return self.previews.tap.on(pipe.scheduler)

    def callback(self, cancel: threading.Event | None, width: int,
                 height: int) -> Callable[..., dict[str, Any]]:
        """The pipeline's callback_on_step_end for one pass drawn at width x height."""

        def on_step_end(pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            # The pipeline knows how many steps this pass runs (an img2img pass runs a share).
            steps_this_pass = int(getattr(pipe, "_num_timesteps", 0) or 0)
            if self.learns_total and steps_this_pass:
                self.total = self.offset + steps_this_pass
            if self.report is not None:
                self.report(min(self.offset + step + 1, self.total), self.total)
            if cancel is not None and cancel.is_set():
                raise _Cancelled()
            # The VAE clamps its output, which turns infinities into plausible white pixels:
            # check the final latents (once, to avoid a GPU sync on every step).
            latents = tensors.get("latents")
            last = step + 1 == (steps_this_pass or self.total - self.offset)
            if last and latents is not None and not torch.isfinite(latents).all():
                raise InferenceError("the denoised latents contain NaN or infinite values")
            if self.previews is not None:
                self.previews.after_step(pipe, self.offset + step + 1, latents, width, height)
            return tensors

        return on_step_end


class _Previews:
    """The partial images of one batch: after each of its preview steps, the model's current
    prediction of the clean latents (the tap's x0), decoded as the family decodes its final
    latents, at the batch's size, one per ImageSpec of the caller's batch."""

    def __init__(self, drawn: EngineBatch, specs: Sequence[ImageSpec], send: Preview) -> None:
        self.drawn = drawn  # the deduplicated batch the pipeline draws
        self.specs = specs  # the caller's, duplicates included
        self.send = send
        self.due = frozenset(drawn.preview_steps)
        self.decode = family_of(drawn.family).decode_preview
        self.tap = CleanImageTap()
        self.sent = 0  # k of the next preview: contiguous, even if one could not be drawn

    def after_step(self, pipe: Any, done: int, latents: torch.Tensor | None, width: int,
                   height: int) -> None:
        if done not in self.due:
            return
        clean = self.tap.latest()
        if clean is None:
            # A sampler that exposes no x0 (none the catalog offers): its noisy latents are
            # the best there is, and still show the composition forming.
            log.debug("%s gives no clean-image prediction; previewing its latents",
                      type(pipe.scheduler).__name__)
            clean = latents
        if clean is None:
            return
        try:
            pixels = self.decode(pipe, clean, width, height)
        except torch.OutOfMemoryError:
            # A partial image is worth less than the job: skip it and let the job finish.
            log.warning("out of memory decoding a partial image; skipped")
            with contextlib.suppress(RuntimeError):
                torch.cuda.empty_cache()
            return
        images = _preview_images(pixels, self.drawn)
        self.send(self.sent, _in_batch_order(self.drawn.images, images, self.specs))
        self.sent += 1


def _preview_images(pixels: torch.Tensor, batch: EngineBatch) -> list[GeneratedImage]:
    """Decoded pixels ((n, 3, h, w) in [0, 1]) as uint8 images at the batch's size. A two-pass
    batch's base pass draws smaller: its previews are stretched (bilinear, on the device)."""
    pixels = pixels.float()
    if tuple(pixels.shape[-2:]) != (batch.height, batch.width):
        pixels = torch.nn.functional.interpolate(pixels, size=(batch.height, batch.width),
                                                 mode="bilinear", align_corners=False)
    quantised = (pixels.nan_to_num(0.0).clamp(0, 1) * 255).round().to(torch.uint8)
    array = quantised.permute(0, 2, 3, 1).cpu().numpy()
    return [GeneratedImage(pixels=array[i], seed=spec.seed, width=batch.width,
                           height=batch.height) for i, spec in enumerate(batch.images)]


def _in_batch_order(unique: Sequence[ImageSpec], images: list[GeneratedImage],
                    specs: Sequence[ImageSpec]) -> list[GeneratedImage]:
    """Images drawn once per distinct spec, one per spec of the caller's batch."""
    by_spec = dict(zip(unique, images, strict=True))
    return [by_spec[spec] for spec in specs]


def _generators(batch: EngineBatch) -> list[torch.Generator]:
    # Each image has its own generator, so image i depends on its seed alone.
    return [torch.Generator(device="cpu").manual_seed(spec.seed) for spec in batch.images]


def _upscale(draft: np.ndarray, width: int, height: int) -> Any:
    from PIL import Image

    pixels = (np.clip(draft, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return Image.fromarray(pixels).resize((width, height), Image.Resampling.LANCZOS)


def _accepts(pipe: Any, name: str) -> bool:
    import inspect

    return name in inspect.signature(pipe.__call__).parameters


def _to_images(images: np.ndarray, batch: EngineBatch,
               allow_black: bool = False) -> list[GeneratedImage]:
    """Check every image, then quantise to uint8. A bad image fails the batch, never passes
    (an all-black image is one, unless `allow_black`: an upscaled black input)."""
    if images.shape[0] != len(batch.images):
        raise InferenceError(f"pipeline returned {images.shape[0]} images for {len(batch.images)}")
    bad = [i for i in range(len(images)) if not np.isfinite(images[i]).all()]
    if bad:
        raise InferenceError(f"images {bad} contain NaN or infinite values")
    quantised = (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    black = [i for i in range(len(quantised)) if int(quantised[i].max()) == 0]
    if black and not allow_black:
        raise InferenceError(f"images {black} are entirely black")
    return [
        GeneratedImage(pixels=quantised[i], seed=spec.seed, width=batch.width, height=batch.height)
        for i, spec in enumerate(batch.images)
    ]
