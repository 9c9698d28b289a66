"""The engine: the only package that imports torch and diffusers.

It turns an EngineBatch (compatible images: same weights, size, steps) into pixels, keeps
pipelines warm, and unloads the least recently used one when a new model does not fit.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from easel.catalog import Catalog, is_single_file
from easel.domain.errors import CancelledError, InferenceError
from easel.domain.generation import EngineBatch, EngineStatus, GeneratedImage, Preview
from easel.engine.families import call_kwargs, family_of
from easel.engine.fit import share_components
from easel.engine.libraries import quiet_libraries
from easel.engine.optimize import EngineOptions, TextEmbeddingCache, apply_options, prepare_vae
from easel.engine.pipelines import (
    MINI_MODEL,
    Placement,
    default_placement,
    gpu_bytes_needed,
    load_pipeline,
    resolve_local_path,
    scheduled,
)
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
        self._refiners: dict[str, Any] = {}  # img2img views of loaded pipelines (two-pass)
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
        return EngineStatus(self.device, tuple(self.loaded()), memory)

    def loaded(self) -> list[str]:
        return list(self._pipelines)

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
            fitted = [] if source in (MINI_MODEL, "easel/tiny-mini") else self.options.fit.labels()
            return self.adopt(source, pipe, fitted)

    def _load(self, source: str) -> Any:
        return load_pipeline(source, self.cache_dir, self.placement, self.options.fit,
                             self.configs.get(source))

    def adopt(self, source: str, pipe: Any, loaded_with: list[str] | None = None) -> Any:
        """Serve an already-built pipeline under `source` (benchmarks build theirs in memory).
        `loaded_with`: what its loading applied (offload, quantized weights), for `applied`."""
        with self._lock:
            self._refiners.pop(source, None)  # a view of the pipeline this one replaces
            self.applied[source] = [*(loaded_with or []),
                                    *apply_options(pipe, self.options, self.device)]
            if self.applied[source]:
                log.info("%s: %s", source, ", ".join(self.applied[source]))
            self._pipelines[source] = pipe
            return pipe

    def warm(self, source: str) -> None:
        """Load `source` now (the models preloaded at start), so the first job does not wait."""
        self.pipeline(source)

    def _make_room(self, source: str) -> None:
        while len(self._pipelines) >= self.max_loaded:
            self._evict_oldest()
        if not self.device.startswith("cuda"):
            return
        local = resolve_local_path(source, self.cache_dir)
        if local is None and is_single_file(source):
            local = Path(source).expanduser()
        need = gpu_bytes_needed(local, self.options.fit) if local and local.exists() else 0
        while self._pipelines and need > torch.cuda.mem_get_info()[0]:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        oldest, _ = self._pipelines.popitem(last=False)
        self._refiners.pop(oldest, None)
        self.text_cache.clear()
        log.info("unloading least recently used pipeline %s", oldest)
        self._free_memory()

    def _evict_all(self) -> None:
        self._pipelines.clear()
        self._refiners.clear()
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
        depends on its own spec alone, so their pixels would be identical anyway."""
        unique = tuple(dict.fromkeys(batch.images))
        drawn = replace(batch, images=unique)
        steps = _Progress(progress, drawn.total_steps)
        with self._lock:
            pipe = self.pipeline(drawn.source)
            kwargs = call_kwargs(drawn, _generators(drawn))
            if drawn.two_pass is None:
                images = self._run(pipe, drawn, kwargs, steps, cancel)
            else:
                images = self._two_pass(pipe, drawn, kwargs, steps, cancel)
        by_spec = dict(zip(unique, _to_images(images, drawn), strict=True))
        return [by_spec[spec] for spec in batch.images]

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

    def _refiner(self, batch: EngineBatch, pipe: Any) -> Any:
        if batch.source not in self._refiners:
            class_name = family_of(batch.family).refiner
            if class_name is None:
                raise InferenceError(f"the {batch.family} family has no img2img pipeline for "
                                     f"the two-pass path; {batch.width}x{batch.height} is "
                                     "beyond what its catalog entry draws natively")
            import diffusers

            refiner_class = getattr(diffusers, class_name)
            if self.options.weight_quant is None:
                refiner = refiner_class.from_pipe(pipe)
            else:  # from_pipe casts to a dtype, which diffusers refuses for a quantized model
                refiner = share_components(refiner_class, pipe)
            refiner.set_progress_bar_config(disable=True)
            self._refiners[batch.source] = refiner
        return self._refiners[batch.source]

    def _run(
        self,
        pipe: Any,
        batch: EngineBatch,
        kwargs: dict[str, Any],
        steps: _Progress,
        cancel: threading.Event | None,
    ) -> np.ndarray:
        """One pipeline call, with progress, cancel between steps, and the embedding cache."""
        prepare_vae(pipe, kwargs["width"], kwargs["height"], self.options)
        if _accepts(pipe, "callback_on_step_end"):
            kwargs["callback_on_step_end"] = steps.callback(cancel)
        try:
            with torch.inference_mode(), scheduled(pipe, batch.scheduler):
                kwargs = self.text_cache.kwargs(pipe, batch.family, batch.source, kwargs)
                result = pipe(**kwargs)
        except _Cancelled:
            raise CancelledError() from None
        except torch.OutOfMemoryError as exc:
            self._free_memory()
            raise InferenceError(f"out of memory on {self.device}: {exc}") from exc
        return np.asarray(result.images)


class _Progress:
    """Steps done across a batch's passes, reported as (done, total)."""

    def __init__(self, report: ProgressFn | None, total: int) -> None:
        self.report = report
        self.total = total
        self.offset = 0

    def next_pass(self, steps_before: int) -> None:
        self.offset = steps_before

    def callback(self, cancel: threading.Event | None) -> Callable[..., dict[str, Any]]:
        def on_step_end(pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            # The pipeline knows how many steps this pass runs (an img2img pass runs a share).
            steps_this_pass = int(getattr(pipe, "_num_timesteps", 0) or 0)
            if self.offset and steps_this_pass:
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
            return tensors

        return on_step_end


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


def _to_images(images: np.ndarray, batch: EngineBatch) -> list[GeneratedImage]:
    """Check every image, then quantise to uint8. A bad image fails the batch, never passes."""
    if images.shape[0] != len(batch.images):
        raise InferenceError(f"pipeline returned {images.shape[0]} images for {len(batch.images)}")
    bad = [i for i in range(len(images)) if not np.isfinite(images[i]).all()]
    if bad:
        raise InferenceError(f"images {bad} contain NaN or infinite values")
    quantised = (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    black = [i for i in range(len(quantised)) if int(quantised[i].max()) == 0]
    if black:
        raise InferenceError(f"images {black} are entirely black")
    return [
        GeneratedImage(pixels=quantised[i], seed=spec.seed, width=batch.width, height=batch.height)
        for i, spec in enumerate(batch.images)
    ]
