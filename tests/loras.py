"""Tiny LoRA adapter files for the built-in stand-ins, built offline and deterministically.

`make_lora("flux2", path, seed=1)` writes a `.safetensors` LoRA for easel/tiny-flux2's
transformer: peft's own layers (`LoraConfig`, `get_peft_model_state_dict`) saved through the
family pipeline class's `save_lora_weights`, as a diffusers training script saves one. Its B
matrices are random (peft starts them at zero, and an all-zero LoRA changes nothing), drawn from
`seed`, so the same arguments always write the same bytes.

`layout="kohya"` writes the kohya/Civitai layout (`lora_unet_<block>_<module>.lora_down/up.weight`
and `.alpha`, on the original checkpoint's fused module names) for the families whose diffusers
converter reads it; `wrong_base_lora` writes a file for one family under the name of another.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import torch

from easel.engine.families import family_of

# The modules a tiny LoRA targets: the attention projections of the denoiser's blocks (what
# most published LoRAs train), named as each stand-in names them.
_ATTENTION = re.compile(r"\.(attn|attention)\.")
# Module names of CLIP's attention, for a LoRA that also trains the text encoder.
_TEXT_ATTENTION = re.compile(r"self_attn\.(q_proj|k_proj|v_proj|out_proj)$")
_TEXT_ENCODER_FAMILIES = ("flux",)  # the stand-ins whose loader takes a text-encoder LoRA
_KOHYA_FAMILIES = ("flux2",)


@functools.cache
def _stand_in(family: str) -> Any:
    """The family's tiny pipeline in memory (only its module names and shapes matter here)."""
    return family_of(family).build_stand_in()


def lora_targets(family: str) -> list[str]:
    """The full names of the denoiser modules a tiny LoRA of `family` adapts."""
    transformer = _stand_in(family).transformer
    return [name for name, module in transformer.named_modules()
            if isinstance(module, torch.nn.Linear) and _ATTENTION.search(name)]


def make_lora(
    family: str,
    path: Path,
    seed: int,
    rank: int = 4,
    layout: str = "diffusers",
    text_encoder: bool = False,
    alpha: int | None = None,
    scale: float = 0.5,
) -> Path:
    """Write a tiny LoRA for easel/tiny-<family> to `path` (a `.safetensors` file) and return it.

    `layout`: "diffusers" (what `save_lora_weights` writes) or "kohya" (flux2 only).
    `text_encoder`: also adapt the text encoder's attention (flux only).
    `alpha`: the LoRA alpha (default: the rank, a scale of 1); `scale`: the standard deviation
    of the random weights (large enough to change a tiny model's image, small enough to keep it
    finite)."""
    if layout == "kohya":
        if text_encoder:
            raise ValueError("the kohya writer adapts the transformer only")
        return _write_kohya(family, path, seed, rank, alpha, scale)
    if layout != "diffusers":
        raise ValueError(f"unknown layout {layout!r}; use 'diffusers' or 'kohya'")
    if text_encoder and family not in _TEXT_ENCODER_FAMILIES:
        raise ValueError(f"no text-encoder LoRA for {family}; only {_TEXT_ENCODER_FAMILIES}")
    pipe = _stand_in(family)
    generator = torch.Generator().manual_seed(seed)
    layers, metadata = _peft_layers(pipe.transformer, lora_targets(family), rank, alpha, scale,
                                    generator)
    saved: dict[str, Any] = {"transformer_lora_layers": layers,
                             "transformer_lora_adapter_metadata": metadata}
    if text_encoder:
        targets = [name for name, _ in pipe.text_encoder.named_modules()
                   if _TEXT_ATTENTION.search(name)]
        text_layers, text_metadata = _peft_layers(pipe.text_encoder, targets, rank, alpha, scale,
                                                  generator)
        saved |= {"text_encoder_lora_layers": text_layers,
                  "text_encoder_lora_adapter_metadata": text_metadata}
    path.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(path.parent, weight_name=path.name, **saved)
    return _canonical(path)


def _peft_layers(model: torch.nn.Module, targets: list[str], rank: int, alpha: int | None,
                 scale: float, generator: torch.Generator) -> tuple[dict[str, torch.Tensor],
                                                                     dict[str, Any]]:
    """peft's LoRA layers on a copy of `model`, A and B random, as a state dict and config."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank,
                        target_modules=targets, init_lora_weights=True)
    adapted = inject_adapter_in_model(config, copy.deepcopy(model), adapter_name="default")
    state = get_peft_model_state_dict(adapted, adapter_name="default")
    for key in sorted(state):  # sorted: the draw order, hence the bytes, never depend on dicts
        state[key] = torch.randn(state[key].shape, generator=generator) * scale
    metadata = config.to_dict()
    metadata["target_modules"] = sorted(metadata["target_modules"])  # a set: JSON needs a list
    return state, metadata


def _write_kohya(family: str, path: Path, seed: int, rank: int, alpha: int | None,
                 scale: float) -> Path:
    """FLUX.2 in the kohya layout: the original checkpoint's fused modules (a double block's
    image qkv and projection, a single block's linear1 and linear2), down/up and alpha each."""
    if family not in _KOHYA_FAMILIES:
        raise ValueError(f"no kohya writer for {family}; only {_KOHYA_FAMILIES}")
    from safetensors.torch import save_file

    transformer = _stand_in(family).transformer
    inner = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    single = transformer.single_transformer_blocks[0].attn
    shapes = {  # kohya module name -> (out, in) of the original checkpoint's linear layer
        "lora_unet_double_blocks_0_img_attn_qkv": (3 * inner, inner),
        "lora_unet_double_blocks_0_img_attn_proj": (inner, inner),
        "lora_unet_single_blocks_0_linear1": tuple(single.to_qkv_mlp_proj.weight.shape),
        "lora_unet_single_blocks_0_linear2": tuple(single.to_out.weight.shape),
    }
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, (out_features, in_features) in shapes.items():
        state[f"{name}.lora_down.weight"] = torch.randn(rank, in_features,
                                                        generator=generator) * scale
        state[f"{name}.lora_up.weight"] = torch.randn(out_features, rank,
                                                      generator=generator) * scale
        state[f"{name}.alpha"] = torch.tensor(float(alpha if alpha is not None else rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"ss_network_module": "networks.lora_flux"})
    return _canonical(path)


def _canonical(path: Path) -> Path:
    """Rewrite the file's header with its keys sorted: safetensors writes the metadata map in
    hash order, which differs between runs, and a file's digest is its identity in easel."""
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads its header to 8 bytes with spaces
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + length:])
    return path


def wrong_base_lora(path: Path, seed: int = 0, made_for: str = "flux2") -> Path:
    """A LoRA for `made_for`'s transformer, to offer as an adapter for another family."""
    return make_lora(made_for, path, seed)


def pickled_lora(path: Path) -> Path:
    """A LoRA saved with torch.save (a pickle): the format easel refuses to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"transformer.x.lora_A.weight": torch.zeros(1, 1)}, path)
    return path
