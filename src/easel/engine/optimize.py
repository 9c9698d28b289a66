"""Speed options applied to a loaded pipeline. Each is a setting; lossy ones are off by default.

Lossless (must stay >= 40 dB PSNR against the exact path): torch.compile (regional, with the
inductor cache on disk), fused QKV projections, attention backends, VAE slicing, the
text-embedding cache. Lossy (PSNR reported by bench/gpu.py): fp8 dynamic quantisation of
linear layers (torchao, Hopper), First-Block-Cache step caching, VAE tiling.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from easel.engine.families import TextEncoding, family_of
from easel.engine.fit import GpuFit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    compile: bool = False
    # "default" keeps CUDA graphs off; "reduce-overhead" or "max-autotune" use them, which pays
    # when the step count and shapes repeat (a warm server) and costs memory per shape.
    compile_mode: str = "default"
    compile_fullgraph: bool = True
    compile_cache_dir: Path | None = None
    attention_backend: str | None = None  # diffusers backend name, e.g. "_native_cudnn", "flash"
    fuse_qkv: bool = False
    quantize: str | None = None  # "fp8": dynamic float8 activations and weights (torchao)
    step_cache_threshold: float | None = None  # First-Block-Cache residual threshold, e.g. 0.12
    # Tiled decoding blends overlapping tiles, so it is not exact: off unless asked for
    # (e.g. 2048*2048 to tile 2K images). Slicing (one image at a time) is exact and always on.
    vae_tiling_pixels: int | None = None
    text_cache_size: int = 256  # prompt embeddings kept per process (0: off)
    # Fit the GPU you have (engine/fit.py): applied as the weights load.
    offload: str | None = None  # "model" or "sequential"
    weight_quant: str | None = None  # "int8" (torchao) or "nf4" (bitsandbytes)
    weight_quant_text_encoders: bool = False
    # LoRA adapters kept loaded per pipeline (engine/adapters.py), least recently used out
    # first: their tensors' bytes on the device, and their count.
    lora_cache_bytes: int = 4 * 1024**3
    lora_cache_count: int = 16
    # Hot-swapping puts adapters into slots padded to `lora_max_rank`, so switching does not
    # recompile (None: exactly when compile is on, the case it exists for).
    lora_hotswap: bool | None = None
    lora_max_rank: int = 128

    @property
    def hotswap_rank(self) -> int | None:
        """The rank LoRA slots are padded to when adapters are hot-swapped, else None."""
        hotswap = self.compile if self.lora_hotswap is None else self.lora_hotswap
        return self.lora_max_rank if hotswap else None

    @property
    def fit(self) -> GpuFit:
        return GpuFit(self.offload, self.weight_quant, self.weight_quant_text_encoders)


def denoiser(pipe: Any) -> Any:
    """The model that runs every step: a transformer, or an SDXL UNet."""
    return getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)


def use_compile_cache(directory: Path) -> None:
    """Keep inductor's compiled graphs on disk so a restart does not recompile."""
    directory.mkdir(parents=True, exist_ok=True)
    # Assigned, not defaulted: torch fills the variable in with /tmp/torchinductor_<user> the
    # first time anything asks for the cache, which would lose the cache on reboot.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory)
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")


def apply_options(pipe: Any, options: EngineOptions, device: str) -> list[str]:
    """Apply the options that fit this pipeline and device; return what was applied."""
    applied: list[str] = []
    model = denoiser(pipe)
    if model is None:
        return applied
    if options.fuse_qkv and hasattr(model, "fuse_qkv_projections"):
        model.fuse_qkv_projections()
        applied.append("fused-qkv")
    if options.attention_backend and hasattr(model, "set_attention_backend"):
        model.set_attention_backend(options.attention_backend)
        applied.append(f"attention={options.attention_backend}")
    if options.quantize == "fp8":
        applied.append(_quantize_fp8(model, device))
    step_cache = []
    if options.step_cache_threshold and hasattr(model, "enable_cache"):
        step_cache = _first_block_cache(model, options.step_cache_threshold)
        applied += step_cache
    if options.compile:
        # The step cache decides on the GPU's numbers whether a step runs its other blocks (a
        # `.item()` outside the graph): compiled with it, the graph must be allowed to break.
        fullgraph = options.compile_fullgraph and not step_cache
        applied.append(_compile(model, options, fullgraph))
    return applied


def _first_block_cache(model: Any, threshold: float) -> list[str]:
    """First-Block-Cache: the first block's change decides whether a step runs the rest."""
    from diffusers.hooks import FirstBlockCacheConfig
    from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS as BLOCK_LISTS

    blocks = [block for name, child in model.named_children()
              if name in BLOCK_LISTS and isinstance(child, torch.nn.ModuleList)
              for block in child]
    reason = _why_no_step_cache(blocks)
    if reason is not None:  # diffusers would fail as the model loads, or at every call
        log.warning("no step cache on %s: %s", type(model).__name__, reason)
        return []
    model.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    return [f"first-block-cache={threshold}"]


def _why_no_step_cache(blocks: list[Any]) -> str | None:
    """Why diffusers' First-Block-Cache cannot run on these blocks, if it cannot."""
    from diffusers.hooks._helpers import TransformerBlockRegistry

    if len(blocks) < 2:  # the tiny stand-ins of some families
        return f"it has {len(blocks)} transformer block(s), the cache needs a first and a last"
    try:
        first, last = (TransformerBlockRegistry.get(type(b)) for b in (blocks[0], blocks[-1]))
    except ValueError:
        return f"diffusers' First-Block-Cache does not know {type(blocks[0]).__name__}"
    if (first.return_encoder_hidden_states_index is None) != (
            last.return_encoder_hidden_states_index is None):
        # FLUX.2: its double-stream blocks return text and image apart, its single-stream ones
        # one joined sequence; the cache takes the last block's output minus the first's.
        return ("its first block returns the text and image streams apart and its last one "
                "joined, which diffusers' First-Block-Cache cannot subtract (diffusers issue "
                "14280)")
    return None


def _quantize_fp8(model: Any, device: str) -> str:
    if not device.startswith("cuda") or torch.cuda.get_device_capability() < (8, 9):
        raise ValueError("fp8 quantisation needs a CUDA GPU with compute capability 8.9+")
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    quantize_(model, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
    return "fp8-dynamic"


def _compile(model: Any, options: EngineOptions, fullgraph: bool) -> str:
    if options.compile_cache_dir is not None:
        use_compile_cache(options.compile_cache_dir)
    mode = None if options.compile_mode == "default" else options.compile_mode
    # Regional compilation: the repeated blocks compile once and are reused by every layer,
    # which cuts compile time several-fold against compiling the whole model.
    if getattr(model, "_repeated_blocks", None):
        model.compile_repeated_blocks(fullgraph=fullgraph, mode=mode)
        return f"compile-regional({options.compile_mode})"
    model.compile(fullgraph=fullgraph, mode=mode)
    return f"compile({options.compile_mode})"


def prepare_vae(pipe: Any, width: int, height: int, options: EngineOptions) -> None:
    """Decode one image at a time (exact, lower peak memory for batches); tile very large images
    when asked to, since their decoder activations dominate memory."""
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "enable_tiling"):
        return
    if hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    if options.vae_tiling_pixels is not None and width * height >= options.vae_tiling_pixels:
        vae.enable_tiling()
    else:
        vae.disable_tiling()


class TextEmbeddingCache:
    """Prompt embeddings by (pipeline, prompt, negative prompt, `variant`): repeated prompts skip
    the text encoders (T5-XXL alone is ~4.7B parameters). Rows are encoded one prompt at a time,
    which gives the same values as a batched encode because these encoders see no padding mask
    across rows. `variant` names what else changes the encoders' output: the LoRA adapters in
    force when one of them adapts a text encoder."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[Any, ...], tuple[torch.Tensor, ...]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._entries.clear()

    def kwargs(self, pipe: Any, family: str, source: str, kwargs: dict[str, Any],
               variant: tuple[Any, ...] = ()) -> dict[str, Any]:
        """Replace prompt strings in `kwargs` by cached embeddings where the family allows it."""
        encoding = family_of(family).text_encoding
        if self.size <= 0 or encoding is None or not encoding.applies(pipe, kwargs):
            return kwargs
        prompts = kwargs["prompt"]
        negatives = kwargs.get("negative_prompt") or [""] * len(prompts)
        seq = kwargs.get("max_sequence_length")
        guided = encoding.guided(kwargs)
        rows = [
            self._row(pipe, encoding, (source, family, variant), p, n, seq, guided)
            for p, n in zip(prompts, negatives, strict=True)
        ]
        out = {k: v for k, v in kwargs.items() if k not in ("prompt", "negative_prompt")}
        for i, name in enumerate(encoding.names):
            if not guided and name.startswith("negative"):
                continue
            out[name] = torch.cat([row[i] for row in rows])
        return out

    def _row(
        self,
        pipe: Any,
        encoding: TextEncoding,
        model: tuple[Any, ...],
        prompt: str,
        negative: str,
        seq: int | None,
        guided: bool,
    ) -> tuple[torch.Tensor, ...]:
        key = (*model, prompt, negative if guided else "", seq, guided)
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]
        self.misses += 1
        row = encoding.encode(pipe, prompt, negative, seq, guided)
        self._entries[key] = row
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return row


def psnr(a: Any, b: Any) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB (inf when identical)."""
    import numpy as np

    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * float(np.log10(255.0**2 / mse))
