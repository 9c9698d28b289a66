"""Built-in offline models: the real diffusers pipeline classes with tiny random weights.

They are built from configs (tokenizers from in-memory vocabularies, no download), saved once to
a cache directory and loaded back through the same `from_pretrained` path as real weights.
Untrained, so they draw noise; they let the whole system run and be tested without weights.
The VAEs keep the real scale factors, so sizes behave as with the full models.
"""

from __future__ import annotations

import os
import shutil
import string
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from easel.engine.libraries import quiet_libraries

TINY_VERSION = "1"
_SEED = 20261121  # fixed so every machine builds bit-identical tiny weights


def ensure_tiny(name: str, build: Callable[[], Any], cache_dir: Path) -> Path:
    """Build `name` with `build` into cache_dir once (atomically) and return its directory."""
    target = cache_dir / f"{name.split('/')[1]}-v{TINY_VERSION}"
    # A diffusers pipeline saves model_index.json; a transformers model (the upscaler) config.json.
    if (target / "model_index.json").exists() or (target / "config.json").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
    try:
        quiet_libraries()
        with torch.random.fork_rng():
            torch.manual_seed(_SEED)
            pipe = build()
        pipe.save_pretrained(staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process won the race; its copy is identical
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


# --- tokenizers from in-memory vocabularies ---------------------------------------------------


def _byte_unicode_chars() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (GPT-2/CLIP)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _clip_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in _byte_unicode_chars():
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _t5_tokenizer() -> Any:
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    for ch in string.printable[:95]:
        pieces.append((ch, -1.0))
        pieces.append(("▁" + ch, -1.0))
    pieces.append(("▁", -2.0))
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def _gemma_tokenizer() -> Any:
    from transformers import GemmaTokenizer

    vocab: dict[str, int] = {}
    for tok in ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]:
        vocab[tok] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for ch in string.ascii_letters + string.digits + " .,▁":
        vocab.setdefault(ch, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=[], model_max_length=300)


# ChatML, as the Qwen tokenizers ship it (FLUX.2 klein and Z-Image format prompts through it),
# with Qwen3's switch for the empty thinking block.
_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)


def _qwen_tokenizer() -> Any:
    """Byte-level BPE without merges (one token per byte) plus Qwen's special tokens."""
    from transformers import Qwen2Tokenizer

    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    for ch in _byte_unicode_chars():
        vocab.setdefault(ch, len(vocab))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=4096)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = _QWEN_CHAT_TEMPLATE
    return tokenizer


# --- text encoders ------------------------------------------------------------------------------


def _qwen3(class_name: str, layers: int) -> Any:
    import transformers
    from transformers import Qwen3Config

    config = Qwen3Config(
        vocab_size=320,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=4096,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=0,
    )
    return getattr(transformers, class_name)(config).eval()


def _clip_text(with_projection: bool, hidden: int = 32) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=514,
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        projection_dim=32,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_act="gelu",
    )
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(config).eval()


def _t5_encoder(d_model: int = 32) -> Any:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=200,
        d_model=d_model,
        d_ff=37,
        d_kv=8,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5EncoderModel(config).eval()


def _vae_kl(latent_channels: int) -> Any:
    from diffusers import AutoencoderKL

    sixteen = latent_channels == 16
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=32,
        use_quant_conv=not sixteen,
        use_post_quant_conv=not sixteen,
        shift_factor=0.0609 if sixteen else None,
        scaling_factor=1.5035 if sixteen else 0.13025,
    ).eval()


# --- pipelines ----------------------------------------------------------------------------------


def flux() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=(4, 6, 6),
    )
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae_kl(16),
        text_encoder=_clip_text(with_projection=False),
        tokenizer=_clip_tokenizer(),
        text_encoder_2=_t5_encoder(32),
        tokenizer_2=_t5_tokenizer(),
        transformer=transformer.eval(),
    )


# The published scheduler configs of the 2026 families, shared by the stand-ins and the
# full-size builds (bench/full_size.py): a stand-in samples on the real model's schedule.


def flux2_scheduler() -> Any:
    """FLUX.2's (klein 4B publishes none of its own; FLUX.2 [dev]'s, which it inherits)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096, time_shift_type="exponential",
    )


def zimage_scheduler() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)


def qwenimage_scheduler() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
        base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02,
        time_shift_type="exponential",
    )


def flux2() -> Any:
    """FLUX.2 [klein]: Qwen3 text encoder read at hidden layers 9, 18 and 27 (so 28 layers here,
    as the real call reads them), a 32-channel-style VAE with 2x2 latent patches."""
    from diffusers import (
        AutoencoderKLFlux2,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )

    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels x the VAE's 2x2 patch
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=48,  # three stacked hidden layers of 16
        timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )
    # No attention in the VAE's mid block: at 2K its 65k-token attention would dominate a
    # stand-in's time; the scale factors (what sizes depend on) are the real ones.
    vae = AutoencoderKLFlux2(
        block_out_channels=(4, 8, 8, 8),  # narrow: its full-resolution blocks dominate at 1K
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        mid_block_add_attention=False,
    )
    return Flux2KleinPipeline(
        scheduler=flux2_scheduler(),
        vae=vae.eval(),
        text_encoder=_qwen3("Qwen3ForCausalLM", layers=28),
        tokenizer=_qwen_tokenizer(),
        transformer=transformer.eval(),
        is_distilled=True,
    )


def zimage() -> Any:
    """Z-Image: Qwen3 text encoder (second-to-last hidden state), FLUX.1-type 16-channel VAE."""
    from diffusers import (
        AutoencoderKL,
        ZImagePipeline,
        ZImageTransformer2DModel,
    )

    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=1,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=16,
        axes_dims=[8, 4, 4],
        axes_lens=[1536, 512, 512],  # the published positions: 2K fits as it does for the real one
    )
    with torch.no_grad():  # created with torch.empty: give them values, as training would
        transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
        transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 8, 8, 8),  # narrow, as for FLUX.2 above
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=4,
        sample_size=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_add_attention=False,  # as for FLUX.2 above
        scaling_factor=0.3611,
        shift_factor=0.1159,
    )
    return ZImagePipeline(
        scheduler=zimage_scheduler(),
        vae=vae.eval(),
        text_encoder=_qwen3("Qwen3Model", layers=2),
        tokenizer=_qwen_tokenizer(),
        transformer=transformer.eval(),
    )


def qwenimage() -> Any:
    """Qwen-Image: Qwen2.5-VL text encoder, a causal 3D VAE (one frame), 2x2 latent patches."""
    from diffusers import (
        AutoencoderKLQwenImage,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 320, "hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 4096, "rope_theta": 1000000.0,
            "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
            "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 0,
        },
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": 16},
        vocab_size=320,
    )
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,  # 4 latent channels x 2x2 patch
        out_channels=4,
        num_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        axes_dims_rope=(4, 6, 6),
    )
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],  # three stages: the real 8x spatial factor
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    return QwenImagePipeline(
        scheduler=qwenimage_scheduler(),
        vae=vae.eval(),
        text_encoder=Qwen2_5_VLForConditionalGeneration(config).eval(),
        tokenizer=_qwen_tokenizer(),
        transformer=transformer.eval(),
    )


def sd3() -> Any:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=64,
        pooled_projection_dim=64,
    )
    return StableDiffusion3Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae_kl(16),
        text_encoder=_clip_text(with_projection=True),
        tokenizer=_clip_tokenizer(),
        text_encoder_2=_clip_text(with_projection=True),
        tokenizer_2=_clip_tokenizer(),
        text_encoder_3=_t5_encoder(64),
        tokenizer_3=_t5_tokenizer(),
        transformer=transformer.eval(),
    )


def sdxl() -> Any:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,
        norm_num_groups=8,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    return StableDiffusionXLPipeline(
        vae=_vae_kl(4),
        text_encoder=_clip_text(with_projection=False),
        tokenizer=_clip_tokenizer(),
        text_encoder_2=_clip_text(with_projection=True),
        tokenizer_2=_clip_tokenizer(),
        unet=unet.eval(),
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )


def sana() -> Any:
    from diffusers import (
        AutoencoderDC,
        DPMSolverMultistepScheduler,
        SanaPipeline,
        SanaTransformer2DModel,
    )
    from transformers import Gemma2Config, Gemma2Model

    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=384,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        )
    ).eval()
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=8,
        attention_head_dim=2,
        encoder_block_types=(("ResBlock",) * 3 + ("EfficientViTBlock",) * 3),
        decoder_block_types=(("ResBlock",) * 3 + ("EfficientViTBlock",) * 3),
        encoder_block_out_channels=(8,) * 6,
        decoder_block_out_channels=(8,) * 6,
        encoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
        decoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
        encoder_layers_per_block=(1,) * 6,
        decoder_layers_per_block=(1,) * 6,
        upsample_block_type="interpolate",
        downsample_block_type="stride_conv",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    ).eval()
    transformer = SanaTransformer2DModel(
        in_channels=8,
        out_channels=8,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=32,
        sample_size=32,
        patch_size=1,
    ).eval()
    scheduler = DPMSolverMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    return SanaPipeline(
        tokenizer=_gemma_tokenizer(),
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )


def mini() -> Any:
    from easel.mini.pipeline import build_random_pipeline

    return build_random_pipeline(seed=_SEED, preset="tiny")


def swin2sr() -> Any:
    """The upscale tier's stand-in: transformers' Swin2SR at x4 with the real weights' upsampler
    (nearest+conv) and one tiny stage (its outputs are noise, at the real sizes)."""
    from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution

    config = Swin2SRConfig(image_size=32, embed_dim=8, depths=[1], num_heads=[1], window_size=8,
                           mlp_ratio=1.0, upscale=4, upsampler="nearest+conv",
                           drop_path_rate=0.0)
    return Swin2SRForImageSuperResolution(config).eval()
