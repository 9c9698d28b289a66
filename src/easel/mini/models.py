"""Model configurations of easel-mini, and builders for each component.

Presets:
- "cpu-pooled" is the model that ships: a 32x32 pixel-space UNet told each pixel's x and y,
  with the pooled text in every ResNet block, trained on two CPU cores in three runs of 80 to
  110 minutes (docs/mini.md); its image is resized to the size asked. "cpu" is the same UNet
  without the pooled text (the first run), "cpu-plain" without the coordinates either.
- "cpu-p4" and "cpu-p2" are the patch transformers it was weighed against: "cpu-p4" (4x4
  patches) shipped before it and never drew shapes, "cpu-p2" (2x2 patches) lost the pilot.
- "full" is the GPU recipe: a 64x64 UNet base and a 64->256 super-resolution UNet (~35 MB).
- "tiny" has the full preset's structure at toy width, "tiny-cpu" and "tiny-cpu-pooled" the
  cpu presets' and "tiny-dit" the patch transformers', for smoke tests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

BASE_SIZE = 64
SR_SIZE = 256
NUM_TRAIN_TIMESTEPS = 1000
COORDINATE_CHANNELS = 2  # x and y, each from -1 to 1 across the picture


@dataclass(frozen=True)
class Preset:
    text_hidden: int
    text_layers: int
    text_heads: int
    text_ffn_mult: int
    base_channels: tuple[int, ...]
    base_layers: int
    base_heads: int
    base_groups: int
    sr_channels: tuple[int, ...] | None  # None: no super-resolution stage (resized instead)
    sr_layers: int
    sr_groups: int
    base_size: int = BASE_SIZE
    # (patch, width, depth, heads): a transformer over patches instead of a UNet; matmuls use
    # two CPU cores about four times better than the UNet's small convolutions do.
    base_transformer: tuple[int, int, int, int] | None = None
    # The UNet base also takes each pixel's (x, y) as two input channels (CoordConv): its
    # convolutions and attention carry no position of their own, and prompts say "on the left".
    base_coordinates: bool = False
    # The UNet base also adds an attention-pooled summary of the text to its timestep embedding,
    # so every ResNet block, the 32x32 ones included, is told the prompt (Imagen does the same);
    # cross-attention alone reaches only the 16x16 and 8x8 levels, where an object is 2-5 pixels.
    base_pooled_text: bool = False


# 0.9M + 4.3M parameters (4.45M with the pooled text): 10.8 MB of fp16 safetensors; ~3.3 GFLOP
# per training sample.
# Convolutions at 32x32: an object of 5 to 10 pixels is drawn by kernels that see its outline,
# where a 4x4-patch transformer saw one or two tokens of it (docs/mini.md).
_CPU = Preset(
    text_hidden=192, text_layers=3, text_heads=4, text_ffn_mult=2,
    base_channels=(32, 64, 128), base_layers=1, base_heads=4, base_groups=16,
    sr_channels=None, sr_layers=0, sr_groups=0, base_size=32, base_coordinates=True,
)
# The model shipped before "cpu": 0.9M + 5.2M parameters, ~1.9 GFLOP per training sample.
_CPU_P4 = Preset(
    text_hidden=192, text_layers=3, text_heads=4, text_ffn_mult=2,
    base_channels=(), base_layers=0, base_heads=0, base_groups=0,
    sr_channels=None, sr_layers=0, sr_groups=0,
    base_size=32, base_transformer=(4, 192, 8, 3),
)
_TINY_CPU = Preset(
    text_hidden=32, text_layers=1, text_heads=2, text_ffn_mult=2,
    base_channels=(16, 32), base_layers=1, base_heads=2, base_groups=8,
    sr_channels=None, sr_layers=0, sr_groups=0, base_size=32, base_coordinates=True,
)

PRESETS: dict[str, Preset] = {
    # ~0.9M + 7.0M + 1.75M parameters: 38.5 MB of fp32 safetensors in all.
    "full": Preset(
        text_hidden=192, text_layers=3, text_heads=4, text_ffn_mult=2,
        base_channels=(64, 96, 112, 128), base_layers=1, base_heads=4, base_groups=16,
        sr_channels=(32, 48, 64, 96), sr_layers=1, sr_groups=16,
    ),
    "tiny": Preset(
        text_hidden=32, text_layers=1, text_heads=2, text_ffn_mult=2,
        base_channels=(16, 32), base_layers=1, base_heads=2, base_groups=8,
        sr_channels=(8, 16), sr_layers=1, sr_groups=4,
    ),
    "cpu": _CPU,
    # "cpu" without the coordinate channels: the shipped run's first 3,241 steps (docs/mini.md).
    "cpu-plain": replace(_CPU, base_coordinates=False),
    # "cpu" with the pooled text in every ResNet block (docs/mini.md, the pooled-text run).
    "cpu-pooled": replace(_CPU, base_pooled_text=True),
    "cpu-p4": _CPU_P4,
    # 2x2 patches (256 tokens) at width 128: the transformer the "cpu" UNet was piloted against.
    "cpu-p2": replace(_CPU_P4, base_transformer=(2, 128, 8, 2)),
    "tiny-cpu": _TINY_CPU,
    "tiny-cpu-pooled": replace(_TINY_CPU, base_pooled_text=True),
    "tiny-dit": Preset(
        text_hidden=32, text_layers=1, text_heads=2, text_ffn_mult=2,
        base_channels=(), base_layers=0, base_heads=0, base_groups=0,
        sr_channels=None, sr_layers=0, sr_groups=0,
        base_size=32, base_transformer=(4, 32, 1, 2),
    ),
}


def text_encoder(preset: Preset, vocab_size: int) -> Any:
    from easel.mini.text_encoder import MiniTextEncoder

    return MiniTextEncoder(
        vocab_size=vocab_size,
        hidden_size=preset.text_hidden,
        num_layers=preset.text_layers,
        num_heads=preset.text_heads,
        ffn_mult=preset.text_ffn_mult,
    )


def base_model(preset: Preset) -> Any:
    """The base denoiser of a preset: a UNet, or a patch transformer."""
    return base_unet(preset) if preset.base_transformer is None else base_transformer(preset)


def base_transformer(preset: Preset) -> Any:
    """A pixel-space PixArt-style transformer (adaLN-single timestep, cross-attention to the
    text); `caption_channels` projects the text encoder's width to the transformer's."""
    from diffusers import PixArtTransformer2DModel

    assert preset.base_transformer is not None
    patch, width, depth, heads = preset.base_transformer
    return PixArtTransformer2DModel(
        num_attention_heads=heads,
        attention_head_dim=width // heads,
        in_channels=3,
        out_channels=3,
        num_layers=depth,
        cross_attention_dim=width,
        sample_size=preset.base_size,
        patch_size=patch,
        caption_channels=preset.text_hidden,
        use_additional_conditions=False,
    )


def base_unet(preset: Preset) -> Any:
    """A pixel-space UNet at the preset's base size; it cross-attends the text at its two lowest
    resolutions (16 and 8 for the 64-pixel base with four levels and the 32-pixel one with
    three)."""
    from diffusers import UNet2DConditionModel

    ch = preset.base_channels
    plain = max(1, len(ch) - 2)
    pooled: dict[str, Any] = {}
    if preset.base_pooled_text:
        pooled = {"addition_embed_type": "text", "addition_embed_type_num_heads": preset.base_heads}
    down = ("DownBlock2D",) * plain + ("CrossAttnDownBlock2D",) * (len(ch) - plain)
    up = ("CrossAttnUpBlock2D",) * (len(ch) - plain) + ("UpBlock2D",) * plain
    unet = UNet2DConditionModel(
        sample_size=preset.base_size,
        in_channels=3 + (COORDINATE_CHANNELS if preset.base_coordinates else 0),
        out_channels=3,
        block_out_channels=ch,
        down_block_types=down,
        up_block_types=up,
        layers_per_block=preset.base_layers,
        cross_attention_dim=preset.text_hidden,
        attention_head_dim=preset.base_heads,  # diffusers reads this as the number of heads
        norm_num_groups=preset.base_groups,
        **pooled,
    )
    if preset.base_pooled_text:
        silence_pooled_text(unet)
    return unet


def silence_pooled_text(unet: Any) -> None:
    """Zero the pooled text's last scale and shift: the UNet starts out drawing exactly what it
    drew without it (weights trained without it load unchanged), and learns how much to use."""
    import torch

    with torch.no_grad():
        unet.add_embedding.norm2.weight.zero_()
        unet.add_embedding.norm2.bias.zero_()


def sr_unet(preset: Preset) -> Any:
    """64->256 super-resolution UNet, convolutions only.

    Input: the noisy 256 image concatenated with the upsampled (and noise-augmented) 64 image.
    The augmentation level enters through the class embedding as a second timestep; the text is
    not used (the low-resolution image already carries the content).
    """
    from diffusers import UNet2DConditionModel

    ch = preset.sr_channels
    if ch is None:
        return None
    return UNet2DConditionModel(
        sample_size=SR_SIZE,
        in_channels=6,
        out_channels=3,
        block_out_channels=ch,
        down_block_types=("DownBlock2D",) * len(ch),
        up_block_types=("UpBlock2D",) * len(ch),
        mid_block_type="UNetMidBlock2D",
        layers_per_block=preset.sr_layers,
        cross_attention_dim=8,
        class_embed_type="timestep",
        norm_num_groups=preset.sr_groups,
    )


def scheduler_config() -> dict[str, Any]:
    """Shared by training (DDPM) and sampling (DPM-Solver++): v-prediction on a cosine schedule.

    Thresholding is Imagen's dynamic thresholding, for pixel-space sampling at high guidance.
    """
    return {
        "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
        "beta_schedule": "squaredcos_cap_v2",
        "prediction_type": "v_prediction",
        "thresholding": True,
        "dynamic_thresholding_ratio": 0.995,
        "sample_max_value": 1.0,
    }


def sampling_scheduler() -> Any:
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(
        **scheduler_config(), algorithm_type="dpmsolver++", solver_order=2,
        timestep_spacing="trailing",
    )


def training_scheduler(config: dict[str, Any] | None = None) -> Any:
    from diffusers import DDPMScheduler

    cfg = dict(config or scheduler_config())
    keep = {k: v for k, v in cfg.items() if k in scheduler_config()}
    return DDPMScheduler(**keep)
