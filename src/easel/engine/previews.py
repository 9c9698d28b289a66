"""Partial images: the model's current prediction of the clean image, decoded between steps.

Every sampler easel offers computes, inside its `step`, the model's estimate of the clean
latents (x0) on its way to the next noisy sample; `CleanImageTap` keeps the latest one for the
length of one pipeline call. Each family's decoder (the family table, families.py) turns those
latents into pixels the way that family's pipeline decodes its final latents. A preview is thus
one VAE decode of a tensor the sampler had already computed: no extra model evaluation.

The decode runs inside the pipeline call (under the engine's inference mode), once for the whole
batch, with the VAE as the engine prepared it for this pass: slicing, and tiling only where
EASEL_VAE_TILING_PIXELS asks for it. A preview's peak memory is thus the final decode's.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

# (pipeline, latents in the layout its denoising loop holds them, the call's width and height)
# -> pixels, (batch, 3, height, width) in [0, 1].
PreviewDecoder = Callable[[Any, torch.Tensor, int, int], torch.Tensor]
# Computes x0 when a preview asks for it (most steps are not previewed).
_Lazy = Callable[[], torch.Tensor]

# Samplers whose multistep history (`model_outputs`) holds data predictions, i.e. x0.
_DATA_PREDICTION_ALGORITHMS = frozenset({"dpmsolver++", "sde-dpmsolver++"})


class CleanImageTap:
    """Wraps a scheduler's `step` for one pipeline call and keeps the model's latest prediction
    of the clean latents. The wrapped step computes and returns what the original does (as a
    tuple when asked), so the denoising trajectory, and the final image, are unchanged."""

    def __init__(self) -> None:
        self._latest: _Lazy | None = None

    def latest(self) -> torch.Tensor | None:
        """x0 after the most recent step; None when this sampler does not expose one."""
        return None if self._latest is None else self._latest()

    @contextmanager
    def on(self, scheduler: Any) -> Iterator[None]:
        """Tap `scheduler` until the block ends (error and cancel included)."""
        own = vars(scheduler).get("step")  # an instance-level step someone else installed
        original = scheduler.step
        signature = inspect.signature(original)

        # functools.wraps keeps the original signature visible: SDXL and Sana inspect it to
        # decide whether to pass `generator` and `eta`, which ancestral samplers draw noise from.
        @functools.wraps(original)
        def step(*args: Any, **kwargs: Any) -> Any:
            wanted_dict = kwargs.pop("return_dict", True)
            output = original(*args, return_dict=True, **kwargs)
            named = signature.bind_partial(*args, **kwargs).arguments
            self._latest = _clean_latents(scheduler, output, named)
            return output if wanted_dict else output.to_tuple()

        self._latest = None
        scheduler.step = step
        try:
            yield
        finally:
            if own is None:
                del scheduler.step
            else:
                scheduler.step = own
            self._latest = None


def _clean_latents(scheduler: Any, output: Any, named: dict[str, Any]) -> _Lazy | None:
    """How this sampler's x0 is read, right after its step (`named`: the step's arguments)."""
    predicted = getattr(output, "pred_original_sample", None)
    if predicted is not None:  # Euler, Euler ancestral, DDIM: the step returns it
        return lambda: predicted
    config = scheduler.config
    history = getattr(scheduler, "model_outputs", None)
    data_prediction = (getattr(config, "algorithm_type", None) in _DATA_PREDICTION_ALGORITHMS
                       or bool(getattr(config, "predict_x0", False)))  # UniPC's switch
    if history and history[-1] is not None and data_prediction:
        # DPM-Solver++ and UniPC convert the model output to x0 before solving (flow
        # prediction included: x0 = sample - sigma_t * v) and keep it as the newest history.
        converted = history[-1]
        return lambda: converted
    from diffusers import FlowMatchEulerDiscreteScheduler

    sigmas = getattr(scheduler, "sigmas", None)
    model_output, sample = named.get("model_output"), named.get("sample")
    if (isinstance(scheduler, FlowMatchEulerDiscreteScheduler) and sigmas is not None
            and model_output is not None and sample is not None
            and named.get("per_token_timesteps") is None  # one sigma for the whole sample
            and getattr(scheduler, "step_index", None)):
        # A flow-matching Euler step is x_next = x + (sigma_next - sigma) * v, from
        # x = (1 - sigma) * x0 + sigma * noise; its straight line reaches sigma = 0 at
        # x0 = x - sigma * v. The step has advanced step_index: sigma is the previous entry.
        sigma = sigmas[scheduler.step_index - 1]
        return lambda: sample.to(torch.float32) - sigma * model_output.to(torch.float32)
    return None


def _prepare(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Latents on the device the VAE runs on (its offload hook's, when offloaded), in its dtype.
    (x0 is float32 where the sampler upcasts; the final latents are in the model's dtype.)"""
    from diffusers.utils.torch_utils import get_module_execution_device

    return latents.to(device=get_module_execution_device(vae), dtype=vae.dtype)


def _postprocess(pipe: Any, image: torch.Tensor) -> torch.Tensor:
    return pipe.image_processor.postprocess(image, output_type="pt")  # [-1, 1] -> [0, 1]


# Each decoder mirrors its pipeline's final decode (diffusers 0.42, `output_type != "latent"`).


def decode_flux(pipe: Any, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """FLUX.1: 2x2 patches packed as tokens; scaling and shift factors."""
    vae = pipe.vae
    latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    latents = _prepare(vae, latents / vae.config.scaling_factor + vae.config.shift_factor)
    return _postprocess(pipe, vae.decode(latents, return_dict=False)[0])


def decode_flux2(pipe: Any, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """FLUX.2 [klein]: tokens scattered back by their position ids (row-major, as
    `prepare_latents` made them), the VAE's batch-norm statistics undone, 2x2 patches
    unfolded."""
    vae = pipe.vae
    latent_height = 2 * (int(height) // (pipe.vae_scale_factor * 2))
    latent_width = 2 * (int(width) // (pipe.vae_scale_factor * 2))
    grid = torch.empty(latents.shape[0], 0, latent_height // 2, latent_width // 2)
    ids = pipe._prepare_latent_ids(grid).to(latents.device)
    latents = pipe._unpack_latents_with_ids(latents, ids, latent_height // 2, latent_width // 2)
    mean = vae.bn.running_mean.view(1, -1, 1, 1).to(latents.device, latents.dtype)
    std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(
        latents.device, latents.dtype)
    latents = pipe._unpatchify_latents(latents * std + mean)
    return _postprocess(pipe, vae.decode(_prepare(vae, latents), return_dict=False)[0])


def decode_scaled_shifted(pipe: Any, latents: torch.Tensor, width: int,
                          height: int) -> torch.Tensor:
    """SD3 and Z-Image: plain (batch, channels, h, w) latents; scaling and shift factors."""
    vae = pipe.vae
    latents = _prepare(vae, latents / vae.config.scaling_factor + vae.config.shift_factor)
    return _postprocess(pipe, vae.decode(latents, return_dict=False)[0])


def decode_qwenimage(pipe: Any, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Qwen-Image: 2x2 patches packed as tokens, a one-frame 5-D latent for its causal 3-D VAE,
    per-channel mean and std."""
    vae = pipe.vae
    latents = _prepare(vae, pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor))
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
    std = torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
    image = vae.decode(latents * std + mean, return_dict=False)[0][:, :, 0]
    return _postprocess(pipe, image)


def decode_sdxl(pipe: Any, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """SDXL: the scaling factor (or the VAE's mean and std where its config has them); an fp16
    VAE that overflows is upcast for the decode, as the pipeline does."""
    vae = pipe.vae
    config = vae.config
    if getattr(config, "latents_mean", None) is not None and getattr(
            config, "latents_std", None) is not None:
        mean = torch.tensor(config.latents_mean).view(1, 4, 1, 1).to(latents.device, latents.dtype)
        std = torch.tensor(config.latents_std).view(1, 4, 1, 1).to(latents.device, latents.dtype)
        latents = latents * std / config.scaling_factor + mean
    else:
        latents = latents / config.scaling_factor
    upcast = vae.dtype == torch.float16 and config.force_upcast
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        image = vae.decode(_prepare(vae, latents), return_dict=False)[0]
    finally:
        if upcast:
            vae.to(dtype=torch.float16)
    return _postprocess(pipe, image)


def decode_sana(pipe: Any, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Sana: the deep-compression autoencoder's scaling factor (easel turns resolution binning
    off, so there is no resize back)."""
    vae = pipe.vae
    latents = _prepare(vae, latents) / vae.config.scaling_factor
    return _postprocess(pipe, vae.decode(latents, return_dict=False)[0])


def decode_mini(pipe: Any, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """easel-mini samples pixels directly (its base image, [-1, 1]): nothing to decode. The
    preview skips the GPU recipe's super-resolution stage (several UNet steps, a job's worth of
    cost) and resizes the base image as the CPU model's final image is resized."""
    image = (latents.float().clamp(-1, 1) + 1) / 2
    if (height, width) != tuple(image.shape[-2:]):
        shrink = height < image.shape[-2] or width < image.shape[-1]
        image = F.interpolate(image, size=(height, width), mode="bicubic", align_corners=False,
                              antialias=shrink)
    return image.clamp(0, 1)
