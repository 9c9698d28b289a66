"""Fitting a pipeline into a smaller GPU: weights quantized as they load, and CPU offload.

Each is a setting (docs/performance.md, "Fit the GPU you have"). Quantization goes through
diffusers' and transformers' own load-time integrations (`quantization_config`), so a layer's
weights are quantized as they are read and the full-precision model never has to fit anywhere
at once; offload goes through diffusers' `enable_model_cpu_offload` and
`enable_sequential_cpu_offload` (accelerate's hooks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

DENOISERS = ("transformer", "unet")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")


@dataclass(frozen=True)
class GpuFit:
    offload: str | None = None  # "model" or "sequential"
    weight_quant: str | None = None  # "int8" (torchao, weight-only) or "nf4" (bitsandbytes)
    quantize_text_encoders: bool = False

    def labels(self) -> list[str]:
        """What a pipeline loaded with these settings runs with, as `Engine.applied` reports."""
        labels = [f"offload={self.offload}"] if self.offload else []
        if self.weight_quant:
            parts = "denoiser+text-encoders" if self.quantize_text_encoders else "denoiser"
            labels.append(f"weights={self.weight_quant}({parts})")
        return labels


def check_fit(fit: GpuFit, device: str) -> None:
    """Refuse, before any weight is read, what this device cannot do."""
    cuda = device.startswith("cuda")
    if fit.offload == "sequential" and not cuda:
        # accelerate's layer-by-layer hooks fail with the CPU as their execution device, and
        # offloading to the CPU from the CPU saves nothing.
        raise ValueError(f"EASEL_OFFLOAD=sequential needs a CUDA device; this worker runs on "
                         f"{device}")
    if fit.weight_quant == "nf4" and not cuda:
        raise ValueError(f"EASEL_WEIGHT_QUANT=nf4 needs a CUDA device (bitsandbytes' kernels); "
                         f"this worker runs on {device}: int8 runs on the CPU too")
    if fit.offload not in (None, "model", "sequential"):
        raise ValueError(f"EASEL_OFFLOAD must be model or sequential, got {fit.offload!r}")
    if fit.weight_quant not in (None, "int8", "nf4"):
        raise ValueError(f"EASEL_WEIGHT_QUANT must be int8 or nf4, got {fit.weight_quant!r}")


def denoiser_quantization(fit: GpuFit) -> Any:
    """The diffusers quantization config of the denoiser, or None."""
    if fit.weight_quant is None:
        return None
    if fit.weight_quant == "int8":
        from diffusers import TorchAoConfig

        return TorchAoConfig(_torchao_int8())
    from diffusers import BitsAndBytesConfig

    return BitsAndBytesConfig(**_nf4_arguments())


def text_encoder_quantization(fit: GpuFit) -> Any:
    """The transformers quantization config of a text encoder, or None."""
    if fit.weight_quant is None or not fit.quantize_text_encoders:
        return None
    if fit.weight_quant == "int8":
        from transformers import TorchAoConfig

        return TorchAoConfig(_torchao_int8())
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(**_nf4_arguments())


def check_single_file_fit(fit: GpuFit) -> None:
    if fit.weight_quant not in (None, "int8"):
        raise ValueError(f"EASEL_WEIGHT_QUANT={fit.weight_quant} needs a diffusers folder: a "
                         "single-file checkpoint is quantized after it loads, which only int8 "
                         "(torchao) does here")


def quantize_loaded(model: Any, fit: GpuFit) -> Any:
    """Quantize a model that is already loaded (on the CPU, before it moves to the GPU), for
    the load paths that cannot quantize as they read: diffusers 0.42's `from_single_file` takes
    a `quantization_config` as describing weights already quantized in the file."""
    if fit.weight_quant is None:
        return model
    check_single_file_fit(fit)
    from torchao.quantization import quantize_

    quantize_(model, _torchao_int8())
    return model


def pipeline_quantization(fit: GpuFit) -> Any:
    """diffusers' pipeline-level config: the denoiser (and the text encoders when asked) by
    component name; components a pipeline does not have are never looked up."""
    mapping = {name: denoiser_quantization(fit) for name in DENOISERS}
    mapping |= {name: text_encoder_quantization(fit) for name in TEXT_ENCODERS}
    mapping = {name: config for name, config in mapping.items() if config is not None}
    if not mapping:
        return None
    from diffusers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(quant_mapping=mapping)


def _torchao_int8() -> Any:
    _quiet_torchao()
    try:
        from torchao.quantization import Int8WeightOnlyConfig
    except ImportError:
        raise ImportError("EASEL_WEIGHT_QUANT=int8 needs torchao: pip install 'easel[gpu-fit]'"
                          ) from None
    return Int8WeightOnlyConfig()


def _nf4_arguments() -> dict[str, Any]:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ImportError("EASEL_WEIGHT_QUANT=nf4 needs bitsandbytes: pip install "
                          "'easel[gpu-fit]'") from None
    # Double quantization stores the 4-bit blocks' scales in 8 bits: ~0.4 bit a weight less.
    return {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": torch.bfloat16, "bnb_4bit_use_double_quant": True}


def _quiet_torchao() -> None:
    # On a machine without CUDA, torchao reports each of its CUDA kernels it cannot load.
    logging.getLogger("torchao").setLevel(logging.ERROR)


def place(pipe: Any, device: str, fit: GpuFit) -> None:
    """Put a loaded pipeline where it runs: on the device, or offloaded to the CPU with hooks
    that move each component (model offload) or each layer (sequential) to the device when it
    runs. Generators stay on the CPU either way, so the pixels do not depend on the choice."""
    if fit.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif fit.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)


def share_components(pipeline_class: Any, pipe: Any) -> Any:
    """A pipeline of another class on `pipe`'s loaded components (no copy), as from_pipe builds
    one but without its cast of every component to one dtype, which diffusers refuses for a
    quantized model. Config options both classes take (e.g. SDXL's
    force_zeros_for_empty_prompt) carry over."""
    expected, optional = pipeline_class._get_signature_keys(pipeline_class)
    parts = {name: part for name, part in pipe.components.items() if name in expected}
    options = {name: pipe.config[name] for name in optional if name in pipe.config}
    return pipeline_class(**parts, **options)


def parameter_bytes(module: Any) -> int:
    """Bytes a module's parameters and buffers hold, counting a quantized tensor by the
    tensors it stores (int8 data and its scales, not the float shape it stands for)."""
    return sum(tensor_bytes(t) for t in (*module.parameters(), *module.buffers()))


def tensor_bytes(tensor: Any) -> int:
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is not None and type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return int(tensor.numel() * tensor.element_size())
