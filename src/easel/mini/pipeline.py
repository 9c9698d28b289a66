"""EaselMiniPipeline: text -> base image -> (super-resolution) -> requested size.

It also draws from an input image, in its own pixel space: `image` and `strength`
(image-to-image: the input, shrunk to the base size, noised to the step `strength` of the way
back, then denoised) and `mask_image` (inpainting: after every step the pixels outside the mask
are put back at the noise level of the next step, so only the masked area is drawn anew).

The CPU model (preset `cpu`) is a 32x32 UNet with no super-resolution stage: its image is
resized to the requested size. The GPU recipe is a 64x64 UNet and a 64->256 SR UNet.

Saving records the text encoder as `["easel.mini.text_encoder", "MiniTextEncoder"]` in
model_index.json. diffusers resolves such a non-diffusers library from `sys.modules` only (it
never imports a module a repository names), and looks up the base classes it knows
(`ModelMixin`) on that same module to pick the loading method. Importing this module imports
`easel.mini.text_encoder`, which re-exports `ModelMixin`, so `EaselMiniPipeline.from_pretrained`
works wherever this class is reachable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, PixArtTransformer2DModel
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from easel.mini import models
from easel.mini import text_encoder as _text_encoder_module
from easel.mini.tokenizer import encode

MiniTextEncoder = _text_encoder_module.MiniTextEncoder
Generators = torch.Generator | list[torch.Generator] | None


@dataclass
class EaselMiniPipelineOutput(BaseOutput):
    images: np.ndarray | list[PIL.Image.Image] | torch.Tensor


def q_sample(
    alphas_cumprod: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """x_t of the forward process at integer timesteps t (one per sample)."""
    a = alphas_cumprod.to(x0.device)[t.to(x0.device).long()].to(x0.dtype).view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def denoise(
    model: Any, x: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """One prediction of the base denoiser, a UNet or a patch transformer (their call
    signatures differ; the transformer wants one timestep per sample)."""
    if isinstance(model, PixArtTransformer2DModel):
        steps = t.expand(x.shape[0]) if t.dim() == 0 else t
        return model(x, encoder_hidden_states=embeds, timestep=steps,
                     encoder_attention_mask=masks).sample
    if model.config.in_channels == x.shape[1] + models.COORDINATE_CHANNELS:
        x = torch.cat([x, coordinate_planes(x)], dim=1)
    return model(x, t, encoder_hidden_states=embeds, encoder_attention_mask=masks).sample


def coordinate_planes(x: torch.Tensor) -> torch.Tensor:
    """Each pixel's x and y, from -1 to 1, as two channels shaped like `x`'s (N, 2, H, W): a
    UNet whose config asks for them is told where each pixel is (CoordConv)."""
    n, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).expand(n, -1, -1, -1)


class EaselMiniPipeline(DiffusionPipeline):
    """The easel-mini cascade as a diffusers pipeline.

    `callback_on_step_end(pipe, step_index, timestep, callback_kwargs)` runs after every base
    step (step_index < num_inference_steps); the super-resolution steps that follow are not
    reported, they take a fixed, small number of steps.
    """

    model_cpu_offload_seq = "text_encoder->unet->sr_unet"
    _optional_components: ClassVar[list[str]] = ["sr_unet", "sr_scheduler"]
    _callback_tensor_inputs: ClassVar[list[str]] = [
        "latents", "prompt_embeds", "negative_prompt_embeds",
    ]

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: Any,
        unet: Any,
        scheduler: Any,
        sr_unet: Any = None,
        sr_scheduler: Any = None,
        sr_num_inference_steps: int = 8,
        sr_noise_level: int = 100,
    ) -> None:
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            unet=unet,
            scheduler=scheduler,
            sr_unet=sr_unet,
            sr_scheduler=sr_scheduler,
        )
        self.register_to_config(
            sr_num_inference_steps=sr_num_inference_steps, sr_noise_level=sr_noise_level
        )
        self._interrupt = False

    def save_pretrained(self, save_directory: str | os.PathLike[str], **kwargs: Any) -> None:
        super().save_pretrained(save_directory, **kwargs)
        # transformers 5 names its fast tokenizer class TokenizersBackend, which 4.x lacks;
        # PreTrainedTokenizerFast names the same class in both, so the folder loads with either.
        index_path = Path(save_directory) / "model_index.json"
        index = json.loads(index_path.read_text())
        if index.get("tokenizer") == ["transformers", "TokenizersBackend"]:
            index["tokenizer"] = ["transformers", "PreTrainedTokenizerFast"]
            index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def encode_prompt(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token text embeddings (B, L, D) and their attention mask (B, L)."""
        device = self._execution_device
        ids, mask = encode(self.tokenizer, prompts, device)
        emb = self.text_encoder(ids, mask)
        return emb.to(self.unet.dtype), mask

    @staticmethod
    def _as_list(value: str | Sequence[str] | None, n: int, name: str) -> list[str]:
        if value is None:
            return [""] * n
        if isinstance(value, str):
            return [value] * n
        values = list(value)
        if len(values) != n:
            raise ValueError(f"{name} has {len(values)} entries for {n} prompts")
        return values

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 4.0,
        width: int = 1024,
        height: int = 1024,
        generator: Generators = None,
        output_type: str = "np",
        callback_on_step_end: Callable[..., dict[str, Any]] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        num_images_per_prompt: int = 1,
        sr_num_inference_steps: int | None = None,
        sr_noise_level: int | None = None,
        return_dict: bool = True,
        image: PIL.Image.Image | Sequence[PIL.Image.Image] | None = None,
        mask_image: PIL.Image.Image | Sequence[PIL.Image.Image] | None = None,
        strength: float = 1.0,
    ) -> EaselMiniPipelineOutput | tuple[Any]:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = self._as_list(negative_prompt, len(prompts), "negative_prompt")
        if num_images_per_prompt > 1:
            prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
            negatives = [p for p in negatives for _ in range(num_images_per_prompt)]
        n = len(prompts)
        if isinstance(generator, list) and len(generator) != n:
            raise ValueError(f"got {len(generator)} generators for {n} images")
        allowed = self._callback_tensor_inputs
        bad = [k for k in callback_on_step_end_tensor_inputs if k not in allowed]
        if bad:
            raise ValueError(f"unknown callback tensor inputs {bad}")
        self._interrupt = False
        device = self._execution_device
        dtype = self.unet.dtype

        prompt_embeds, prompt_mask = self.encode_prompt(prompts)
        do_cfg = guidance_scale > 1.0
        if do_cfg:
            negative_prompt_embeds, negative_mask = self.encode_prompt(negatives)
        else:
            negative_prompt_embeds, negative_mask = prompt_embeds, prompt_mask

        # --- base stage, 64x64, classifier-free guidance ---
        size = int(self.unet.config.sample_size)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        noise = randn_tensor((n, 3, size, size), generator=generator, device=device, dtype=dtype)
        known = keep = None
        if image is None:
            latents = noise * self.scheduler.init_noise_sigma
        else:
            known = _pixels(image, n, size, device, dtype) * 2 - 1
            keep = None if mask_image is None else 1 - _pixels(mask_image, n, size, device, dtype)
            timesteps = timesteps[_first_step(len(timesteps), strength):]
            if hasattr(self.scheduler, "set_begin_index"):
                self.scheduler.set_begin_index(len(self.scheduler.timesteps) - len(timesteps))
            latents = self.scheduler.add_noise(known, noise, timesteps[:1])
        if do_cfg:
            embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
            masks = torch.cat([negative_mask, prompt_mask])
        else:
            embeds, masks = prompt_embeds, prompt_mask
        for i, t in enumerate(self.progress_bar(timesteps)):
            if self.interrupt:
                continue
            x_in = torch.cat([latents, latents]) if do_cfg else latents
            x_in = self.scheduler.scale_model_input(x_in, t)
            out = denoise(self.unet, x_in, t, embeds, masks)
            if do_cfg:
                uncond, cond = out.chunk(2)
                out = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(out, t, latents).prev_sample
            if keep is not None and known is not None:
                # Outside the mask: the input itself, noised to where the next step starts.
                later = timesteps[i + 1:i + 2]
                kept = known if len(later) == 0 else self.scheduler.add_noise(known, noise, later)
                latents = keep * kept + (1 - keep) * latents
            if callback_on_step_end is not None:
                scope = {
                    "latents": latents,
                    "prompt_embeds": prompt_embeds,
                    "negative_prompt_embeds": negative_prompt_embeds,
                }
                kwargs = {k: scope[k] for k in callback_on_step_end_tensor_inputs}
                outputs = callback_on_step_end(self, i, t, kwargs) or {}
                latents = outputs.pop("latents", latents)
                prompt_embeds = outputs.pop("prompt_embeds", prompt_embeds)
                negative_prompt_embeds = outputs.pop(
                    "negative_prompt_embeds", negative_prompt_embeds
                )
        low = latents.clamp(-1, 1)

        drawn = low if self.sr_unet is None else self.super_resolve(
            low,
            generator,
            sr_num_inference_steps or int(self.config.sr_num_inference_steps),
            int(self.config.sr_noise_level if sr_noise_level is None else sr_noise_level),
        )
        drawn = (drawn.float() + 1) / 2
        if (height, width) != tuple(drawn.shape[-2:]):
            shrink = height < drawn.shape[-2] or width < drawn.shape[-1]
            drawn = F.interpolate(
                drawn, size=(height, width), mode="bicubic", align_corners=False, antialias=shrink
            )
        drawn = drawn.clamp(0, 1)
        self.maybe_free_model_hooks()

        result: np.ndarray | list[PIL.Image.Image] | torch.Tensor
        if output_type == "pt":
            result = drawn
        else:
            arr = drawn.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
            if output_type == "pil":
                result = [PIL.Image.fromarray((a * 255).round().astype(np.uint8)) for a in arr]
            else:
                result = arr
        if not return_dict:
            return (result,)
        return EaselMiniPipelineOutput(images=result)

    def super_resolve(
        self, low: torch.Tensor, generator: Generators, steps: int, noise_level: int
    ) -> torch.Tensor:
        """64 -> 256: sample the SR UNet conditioned on the noise-augmented upsampled image."""
        device, dtype = low.device, self.sr_unet.dtype
        n = low.shape[0]
        size = int(self.sr_unet.config.sample_size)
        up = F.interpolate(low.to(dtype), size=(size, size), mode="bilinear", align_corners=False)
        aug = torch.full((n,), noise_level, device=device, dtype=torch.long)
        if noise_level > 0:
            aug_noise = randn_tensor(up.shape, generator=generator, device=device, dtype=dtype)
            up = q_sample(self.sr_scheduler.alphas_cumprod, up, aug_noise, aug)
        self.sr_scheduler.set_timesteps(steps, device=device)
        x = randn_tensor(up.shape, generator=generator, device=device, dtype=dtype)
        x = x * self.sr_scheduler.init_noise_sigma
        # Text is not used at this stage: one dummy token satisfies the UNet's signature.
        dim = self.sr_unet.config.cross_attention_dim
        dummy = torch.zeros(n, 1, dim, device=device, dtype=dtype)
        for t in self.sr_scheduler.timesteps:
            x_in = torch.cat([self.sr_scheduler.scale_model_input(x, t), up], dim=1)
            out = self.sr_unet(x_in, t, encoder_hidden_states=dummy, class_labels=aug).sample
            x = self.sr_scheduler.step(out, t, x).prev_sample
        return x.clamp(-1, 1)


def _first_step(count: int, strength: float) -> int:
    """The index of the first of `count` steps an input is denoised from, as the flow-matching
    pipelines of diffusers count it: about count * strength steps run, at least one."""
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    return min(int(max(count - count * strength, 0)), count - 1)


def _pixels(images: PIL.Image.Image | Sequence[PIL.Image.Image], n: int, size: int,
            device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Images (or masks, as one channel) as (n, C, size, size) in [0, 1], shrunk with
    antialiasing: a mask's edge becomes a blend at the base size."""
    listed = [images] if isinstance(images, PIL.Image.Image) else list(images)
    if len(listed) == 1 and n > 1:
        listed = listed * n
    if len(listed) != n:
        raise ValueError(f"got {len(listed)} input images for {n} images")
    arrays = [np.asarray(i.convert("L" if i.mode in ("L", "1") else "RGB"), np.float32) / 255
              for i in listed]
    batch = torch.from_numpy(np.stack([a if a.ndim == 3 else a[..., None] for a in arrays]))
    batch = batch.permute(0, 3, 1, 2).to(device=device, dtype=torch.float32)
    shrink = batch.shape[-1] > size or batch.shape[-2] > size
    small = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=shrink)
    return small.clamp(0, 1).to(dtype)


def build_pipeline(
    tokenizer: Any, preset: str = "full", seed: int = 0
) -> EaselMiniPipeline:
    """A pipeline with freshly initialised weights (deterministic for a seed)."""
    p = models.PRESETS[preset]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text = models.text_encoder(p, len(tokenizer))
        base = models.base_model(p)
        sr = models.sr_unet(p)
    return EaselMiniPipeline(
        tokenizer=tokenizer,
        text_encoder=text.eval(),
        unet=base.eval(),
        scheduler=models.sampling_scheduler(),
        sr_unet=None if sr is None else sr.eval(),
        sr_scheduler=None if sr is None else models.sampling_scheduler(),
    )


def build_random_pipeline(seed: int = 0, preset: str = "full") -> EaselMiniPipeline:
    """The easel-mini pipeline with random weights, built from configs (no files needed)."""
    from easel.mini.tokenizer import shipped_tokenizer

    return build_pipeline(shipped_tokenizer(), preset=preset, seed=seed)
