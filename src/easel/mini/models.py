"""Model configurations of the easel-mini cascade, and builders for each component.

Two presets: "full" is what the GPU run trains and ships (all weights together ~35 MB in fp32);
"tiny" has the same structure at toy width, for CPU smoke tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BASE_SIZE = 64
SR_SIZE = 256
NUM_TRAIN_TIMESTEPS = 1000


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
    sr_channels: tuple[int, ...]
    sr_layers: int
    sr_groups: int


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


def base_unet(preset: Preset) -> Any:
    """64x64 pixel-space UNet; cross-attends the text at the two lowest resolutions (16, 8)."""
    from diffusers import UNet2DConditionModel

    ch = preset.base_channels
    plain = max(1, len(ch) - 2)
    down = ("DownBlock2D",) * plain + ("CrossAttnDownBlock2D",) * (len(ch) - plain)
    up = ("CrossAttnUpBlock2D",) * (len(ch) - plain) + ("UpBlock2D",) * plain
    return UNet2DConditionModel(
        sample_size=BASE_SIZE,
        in_channels=3,
        out_channels=3,
        block_out_channels=ch,
        down_block_types=down,
        up_block_types=up,
        layers_per_block=preset.base_layers,
        cross_attention_dim=preset.text_hidden,
        attention_head_dim=preset.base_heads,  # diffusers reads this as the number of heads
        norm_num_groups=preset.base_groups,
    )


def sr_unet(preset: Preset) -> Any:
    """64->256 super-resolution UNet, convolutions only.

    Input: the noisy 256 image concatenated with the upsampled (and noise-augmented) 64 image.
    The augmentation level enters through the class embedding as a second timestep; the text is
    not used (the low-resolution image already carries the content).
    """
    from diffusers import UNet2DConditionModel

    ch = preset.sr_channels
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
