"""Full-size architectures from their published configs, with random weights, built in memory.

Weights are created directly on the target device (meta -> to_empty -> init), so building FLUX
(~12B transformer + 4.7B T5-XXL) takes seconds and no disk. Tokenizers are the tiny in-memory
ones: token ids stay inside every vocabulary, and sequence lengths (what costs compute) are the
published ones, since the pipelines pad to max_sequence_length.
"""

from __future__ import annotations

from typing import Any

import torch

from easel.engine.tiny import (
    _clip_tokenizer,
    _gemma_tokenizer,
    _qwen_tokenizer,
    _t5_tokenizer,
    flux2_scheduler,
    qwenimage_scheduler,
    zimage_scheduler,
)

ARCHS: dict[str, dict[str, Any]] = {
    "flux-schnell": {"family": "flux", "steps": 4, "guidance": 0.0},
    "flux-dev": {"family": "flux", "steps": 28, "guidance": 3.5},
    "sana": {"family": "sana", "steps": 20, "guidance": 4.5},
    # The 2026 defaults (catalog tiers fast, standard, ultra), from their published configs.
    "flux2-klein-4b": {"family": "flux2", "steps": 4, "guidance": 1.0},
    "z-image-turbo": {"family": "zimage", "steps": 8, "guidance": 0.0},
    "qwen-image": {"family": "qwenimage", "steps": 50, "guidance": 4.0},
}


def _materialise(module: Any, device: str, dtype: torch.dtype) -> Any:
    """Give a module built by `_on_meta` its parameters on `device`, in `dtype` from the start
    (Qwen-Image's 20B transformer in float32 would not fit an 80 GB GPU), filled like a trained
    model's scale. Its buffers were made on the CPU with their real values (rotary frequencies,
    normalisation statistics) and only move. On "meta" it stays unallocated: shapes only,
    enough to count FLOPs (bench/previews.py)."""
    if device == "meta":
        return module.eval()
    generator = torch.Generator(device=device).manual_seed(0)
    made: dict[int, torch.nn.Parameter] = {}  # a parameter two modules share stays shared
    with torch.no_grad():
        for sub in module.modules():
            for name, param in list(sub._parameters.items()):
                if param is None:
                    continue
                if id(param) not in made:
                    made[id(param)] = torch.nn.Parameter(
                        _filled(name, param, device, dtype, generator), requires_grad=False)
                sub._parameters[name] = made[id(param)]
    module.to(device=device, dtype=dtype)
    for buf_name, buf in module.named_buffers():
        if buf.is_floating_point() and not torch.isfinite(buf).all():
            raise ValueError(f"buffer {buf_name} is not finite after materialising")
    return module.eval()


def _filled(name: str, param: Any, device: str, dtype: torch.dtype,
            generator: torch.Generator) -> torch.Tensor:
    kind = dtype if param.is_floating_point() else param.dtype
    tensor = torch.empty(param.shape, dtype=kind, device=device)
    if param.dim() == 1:  # norms and biases: identity-like, as after training
        return tensor.fill_(1.0 if "weight" in name or "scale" in name else 0.0)
    return tensor.normal_(0.0, 0.02, generator=generator)


def _on_meta(factory: Any) -> Any:
    """Build with its parameters on the meta device (no memory) and its buffers with their
    real values: built a second time with only the parameters on meta (which would untie
    parameters two modules share, such as T5's embeddings), to take its buffers."""
    from accelerate import init_empty_weights

    with torch.device("meta"):
        module = factory()
    with init_empty_weights(include_buffers=False):
        made = factory()
    for name, buffer in made.named_buffers():
        owner, _, leaf = name.rpartition(".")
        module.get_submodule(owner)._buffers[leaf] = buffer
    return module


def build_full_size(arch: str, device: str) -> Any:
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if arch in NEW_DEFAULTS:
        pipe = NEW_DEFAULTS[arch](device, dtype)
    elif arch.startswith("flux"):
        pipe = _flux(arch == "flux-dev", device, dtype)
    elif arch == "sana":
        pipe = _sana(device, dtype)
    else:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _flux(dev: bool, device: str, dtype: torch.dtype) -> Any:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    transformer = _on_meta(
        lambda: FluxTransformer2DModel(
            patch_size=1,
            in_channels=64,
            num_layers=19,
            num_single_layers=38,
            attention_head_dim=128,
            num_attention_heads=24,
            joint_attention_dim=4096,
            pooled_projection_dim=768,
            guidance_embeds=dev,
            axes_dims_rope=(16, 56, 56),
        )
    )
    t5 = _on_meta(
        lambda: T5EncoderModel(
            T5Config(
                vocab_size=32128,
                d_model=4096,
                d_ff=10240,
                d_kv=64,
                num_heads=64,
                num_layers=24,
                feed_forward_proj="gated-gelu",
                relative_attention_num_buckets=32,
                is_gated_act=True,
                dense_act_fn="gelu_new",
            )
        )
    )
    clip = _on_meta(
        lambda: CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                hidden_size=768,
                intermediate_size=3072,
                num_attention_heads=12,
                num_hidden_layers=12,
                projection_dim=768,
                max_position_embeddings=77,
                hidden_act="quick_gelu",
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        )
    )
    vae = _on_meta(
        lambda: AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=16,
            layers_per_block=2,
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            use_quant_conv=False,
            use_post_quant_conv=False,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            sample_size=1024,
        )
    )
    scheduler = (
        FlowMatchEulerDiscreteScheduler(
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
        if dev
        else FlowMatchEulerDiscreteScheduler(shift=1.0)
    )
    return FluxPipeline(
        scheduler=scheduler,
        vae=_materialise(vae, device, dtype),
        text_encoder=_materialise(clip, device, dtype),
        tokenizer=_clip_tokenizer(),
        text_encoder_2=_materialise(t5, device, dtype),
        tokenizer_2=_t5_tokenizer(),
        transformer=_materialise(transformer, device, dtype),
    )


def _sana(device: str, dtype: torch.dtype) -> Any:
    from diffusers import (
        AutoencoderDC,
        DPMSolverMultistepScheduler,
        SanaPipeline,
        SanaTransformer2DModel,
    )
    from transformers import Gemma2Config, Gemma2Model

    transformer = _on_meta(
        lambda: SanaTransformer2DModel(
            in_channels=32,
            out_channels=32,
            num_attention_heads=70,
            attention_head_dim=32,
            num_layers=20,
            num_cross_attention_heads=20,
            cross_attention_head_dim=112,
            cross_attention_dim=2240,
            caption_channels=2304,
            mlp_ratio=2.5,
            sample_size=32,
            patch_size=1,
            norm_elementwise_affine=False,
            norm_eps=1e-6,
        )
    )
    gemma = _on_meta(
        lambda: Gemma2Model(
            Gemma2Config(
                vocab_size=256000,
                hidden_size=2304,
                intermediate_size=9216,
                num_hidden_layers=26,
                num_attention_heads=8,
                num_key_value_heads=4,
                head_dim=256,
                pad_token_id=0,
                eos_token_id=1,
                bos_token_id=2,
            )
        )
    )
    vae = _on_meta(lambda: AutoencoderDC(scaling_factor=0.41407))  # defaults: DC-AE f32c32
    scheduler = DPMSolverMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    return SanaPipeline(
        tokenizer=_gemma_tokenizer(),
        text_encoder=_materialise(gemma, device, dtype),
        vae=_materialise(vae, device, dtype),
        transformer=_materialise(transformer, device, dtype),
        scheduler=scheduler,
    )


# Qwen3-4B, the text encoder of FLUX.2 [klein] 4B and Z-Image (their text_encoder/config.json).
QWEN3_4B: dict[str, Any] = {
    "vocab_size": 151936, "hidden_size": 2560, "intermediate_size": 9728,
    "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 128, "max_position_embeddings": 40960, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "tie_word_embeddings": True, "attention_bias": False,
}


def _qwen3(class_name: str) -> Any:
    import transformers
    from transformers import Qwen3Config

    return _on_meta(lambda: getattr(transformers, class_name)(Qwen3Config(**QWEN3_4B)))


def _flux2_klein_4b(device: str, dtype: torch.dtype) -> Any:
    from diffusers import (
        AutoencoderKLFlux2,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )

    transformer = _on_meta(lambda: Flux2Transformer2DModel(
        patch_size=1, in_channels=128, num_layers=5, num_single_layers=20,
        attention_head_dim=128, num_attention_heads=24, joint_attention_dim=7680,
        timestep_guidance_channels=256, mlp_ratio=3.0, axes_dims_rope=(32, 32, 32, 32),
        rope_theta=2000, eps=1e-6, guidance_embeds=False,
    ))
    vae = _on_meta(lambda: AutoencoderKLFlux2())  # the published config is the class default
    return Flux2KleinPipeline(
        scheduler=flux2_scheduler(), vae=_materialise(vae, device, dtype),
        text_encoder=_materialise(_qwen3("Qwen3ForCausalLM"), device, dtype),
        tokenizer=_qwen_tokenizer(), transformer=_materialise(transformer, device, dtype),
        is_distilled=True,
    )


def _z_image_turbo(device: str, dtype: torch.dtype) -> Any:
    from diffusers import (
        AutoencoderKL,
        ZImagePipeline,
        ZImageTransformer2DModel,
    )

    transformer = _on_meta(lambda: ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=3840, n_layers=30,
        n_refiner_layers=2, n_heads=30, n_kv_heads=30, norm_eps=1e-5, qk_norm=True,
        cap_feat_dim=2560, rope_theta=256.0, t_scale=1000.0, axes_dims=[32, 48, 48],
        axes_lens=[1536, 512, 512],
    ))
    vae = _on_meta(lambda: AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=16, layers_per_block=2,
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, use_quant_conv=False,
        use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159, sample_size=1024,
    ))
    transformer = _materialise(transformer, device, dtype)
    with torch.no_grad():  # created with torch.empty; ones keep the padded tokens finite
        transformer.x_pad_token.fill_(1.0)
        transformer.cap_pad_token.fill_(1.0)
    return ZImagePipeline(
        scheduler=zimage_scheduler(),
        vae=_materialise(vae, device, dtype),
        text_encoder=_materialise(_qwen3("Qwen3Model"), device, dtype),
        tokenizer=_qwen_tokenizer(), transformer=transformer,
    )


def _qwen_image(device: str, dtype: torch.dtype) -> Any:
    from diffusers import (
        AutoencoderKLQwenImage,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    # Qwen2.5-VL-7B-Instruct, as Qwen-Image's text_encoder/config.json has it.
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
            "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
            "max_position_embeddings": 128000, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
            "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
            "tokens_per_second": 2, "hidden_act": "silu",
        },
        vocab_size=152064, tie_word_embeddings=False,
    )
    text_encoder = _on_meta(lambda: Qwen2_5_VLForConditionalGeneration(config))
    transformer = _on_meta(lambda: QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=60, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=3584, guidance_embeds=False,
        axes_dims_rope=(16, 56, 56),
    ))
    vae = _on_meta(lambda: AutoencoderKLQwenImage())  # the published config is the default
    return QwenImagePipeline(
        scheduler=qwenimage_scheduler(), vae=_materialise(vae, device, dtype),
        text_encoder=_materialise(text_encoder, device, dtype), tokenizer=_qwen_tokenizer(),
        transformer=_materialise(transformer, device, dtype),
    )


NEW_DEFAULTS = {
    "flux2-klein-4b": _flux2_klein_4b,
    "z-image-turbo": _z_image_turbo,
    "qwen-image": _qwen_image,
}
