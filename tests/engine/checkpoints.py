"""Single-file checkpoints in the layouts other tools keep, written from a diffusers folder.

Each writer inverts diffusers' own conversion (diffusers.loaders.single_file_utils), so the file
is what `from_single_file` reads for that family: Z-Image in the layout of its original release
and of ComfyUI's diffusion_models/ (fused QKV, `model.diffusion_model.` prefix), optionally with
its VAE in the LDM layout ComfyUI's all-in-one checkpoints use (`vae.` prefix); Qwen-Image, whose
original layout is diffusers' own.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

# diffusers' renames of the Z-Image transformer (original -> diffusers), inverted.
ZIMAGE_RENAMES = (("all_final_layer.2-1.", "final_layer."), ("all_x_embedder.2-1.", "x_embedder."),
                  (".attention.to_out.0.", ".attention.out."),
                  (".attention.norm_k.", ".attention.k_norm."),
                  (".attention.norm_q.", ".attention.q_norm."))
DENOISER_PREFIX = "model.diffusion_model."


def zimage_transformer(folder: Path) -> dict[str, torch.Tensor]:
    weights = load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors")
    original: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        if key.endswith((".attention.to_k.weight", ".attention.to_v.weight")):
            continue  # fused into qkv with to_q below
        if key.endswith(".attention.to_q.weight"):
            stem = key.removesuffix(".to_q.weight")
            fused = torch.cat([weights[f"{stem}.to_{x}.weight"] for x in "qkv"])
            original[f"{DENOISER_PREFIX}{stem}.qkv.weight"] = fused
            continue
        for new, old in ZIMAGE_RENAMES:
            key = key.replace(new, old)
        original[DENOISER_PREFIX + key] = value
    return original


def ldm_vae(folder: Path, blocks: int = 4, prefix: str = "vae.") -> dict[str, torch.Tensor]:
    """An AutoencoderKL without a mid-block attention, in the LDM layout (decoder blocks
    numbered from the bottom), under `prefix`."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    direct = DIFFUSERS_TO_LDM_MAPPING["vae"]
    weights = load_file(folder / "vae" / "diffusion_pytorch_model.safetensors")
    renames = [("mid_block.resnets.0.", "mid.block_1."), ("mid_block.resnets.1.", "mid.block_2."),
               ("conv_shortcut", "nin_shortcut")]
    for i in range(blocks):
        up = blocks - 1 - i
        renames += [(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block."),
                    (f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."),
                    (f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{up}.block."),
                    (f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{up}.upsample.")]
    original = {}
    for key, value in weights.items():
        ldm = direct.get(key, key)
        for new, old in renames:
            ldm = ldm.replace(new, old)
        original[prefix + ldm] = value
    return original


def qwenimage_transformer(folder: Path) -> dict[str, torch.Tensor]:
    return dict(load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors"))


def write(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)
    return path
