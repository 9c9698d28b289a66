"""Single-file checkpoints (one .safetensors file, as ComfyUI and A1111 keep them), loaded
through diffusers' `from_single_file` with the pipeline's diffusers configs, offline.

A file holds the denoiser in its original layout (ComfyUI's diffusion_models/), or, for an
all-in-one checkpoint (A1111's and ComfyUI's checkpoints/), the VAE and the CLIP/T5 text
encoders too. The backend's `config` (a hub id in the Hugging Face cache, or a local diffusers
folder) gives every component's config, and the weights of the components the file lacks.
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from easel.engine.fit import (
    DENOISERS,
    GpuFit,
    check_single_file_fit,
    quantize_loaded,
    text_encoder_quantization,
)
from easel.services.weights.files import config_path

log = logging.getLogger(__name__)


class SingleFileError(ValueError):
    pass


def load_single_file(file: str, config: str | None, dtype: torch.dtype, fit: GpuFit) -> Any:
    """The pipeline of `file`: each component the file holds comes from the file, the others
    from `config`. Pipelines with a pipeline-level `from_single_file` (FLUX.1, Z-Image, SD3,
    SDXL) get it, so an all-in-one checkpoint's text encoders come from the file too; the others
    (FLUX.2 klein, Qwen-Image, SANA) take the denoiser and VAE the file holds and the rest from
    `config`."""
    import diffusers

    path = Path(file).expanduser()
    check_single_file_fit(fit)
    config_dir = _config_dir(path, config)
    index = json.loads((config_dir / "model_index.json").read_text("utf-8"))
    pipeline_class = getattr(diffusers, index["_class_name"])
    components = {name: spec for name, spec in index.items()
                  if not name.startswith("_") and isinstance(spec, list) and None not in spec}
    pipeline_level = hasattr(pipeline_class, "from_single_file")
    checkpoint = _checkpoint(path) if pipeline_level else {}
    given: dict[str, Any] = {}
    for name, (library, class_name) in components.items():
        cls = getattr(importlib.import_module(library), class_name)
        part = _component(cls, name, path, config_dir, dtype, fit, checkpoint, pipeline_level)
        if part is not None:
            given[name] = part
    common = {"local_files_only": True, "dtype": dtype, **given}
    if pipeline_level:
        return pipeline_class.from_single_file(str(path), config=str(config_dir), **common)
    return pipeline_class.from_pretrained(str(config_dir), **common)


def _config_dir(path: Path, config: str | None) -> Path:
    if config is None:
        raise SingleFileError(f"{path} is a single file: its backend needs `config`, the hub id "
                              "or local folder of its pipeline's diffusers configs")
    config_dir = config_path(config)
    if config_dir is None or not (config_dir / "model_index.json").is_file():
        raise SingleFileError(f"the config {config} of {path.name} is neither a local diffusers "
                              "folder nor in the Hugging Face cache (`easel pull` fetches it)")
    return config_dir


def _checkpoint(path: Path) -> dict[str, Any]:
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint

    # Memory-mapped: reading it again per component costs no copy.
    return dict(load_single_file_checkpoint(str(path), local_files_only=True))


def _component(
    cls: Any, name: str, path: Path, config_dir: Path, dtype: torch.dtype, fit: GpuFit,
    checkpoint: dict[str, Any], pipeline_level: bool,
) -> Any:
    """The component `name` loaded here, or None to leave it to the pipeline's own loader
    (tokenizers and schedulers from `config`; CLIP and T5 held by the file)."""
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES
    from diffusers.loaders.single_file_utils import SingleFileComponentError
    from transformers import PreTrainedModel

    if cls.__name__ in SINGLE_FILE_LOADABLE_CLASSES:
        try:
            model = cls.from_single_file(str(path), config=str(config_dir), subfolder=name,
                                         local_files_only=True, dtype=dtype)
            _check_complete(model, cls.__name__, path)
            return quantize_loaded(model, fit) if name in DENOISERS else model
        except NotImplementedError as exc:  # diffusers moving parameters the file lacked
            if "meta tensor" not in str(exc):
                raise
            raise SingleFileError(f"{path.name} holds no {cls.__name__} weights that diffusers "
                                  "recognises for some of its tensors") from None
        except SingleFileComponentError:
            if name in DENOISERS:
                raise SingleFileError(f"{path.name} holds no {cls.__name__} weights that "
                                      "diffusers recognises") from None
            log.info("%s: %s comes from %s", path.name, name, config_dir)
    elif name in DENOISERS:
        raise SingleFileError(f"diffusers cannot read a {cls.__name__} from a single file")
    if not issubclass(cls, PreTrainedModel):
        return _diffusers_model(cls, name, config_dir, dtype)
    if pipeline_level and _text_encoder_in_file(cls, checkpoint):
        return None
    return cls.from_pretrained(str(config_dir), subfolder=name, dtype=dtype,
                               quantization_config=text_encoder_quantization(fit))


def _check_complete(model: Any, class_name: str, path: Path) -> None:
    """diffusers converts whatever keys a file has: parameters it found none for stay on the
    meta device, and would fail much later, at the first move or call."""
    missing = [name for name, p in model.named_parameters() if p.device.type == "meta"]
    if missing:
        raise SingleFileError(f"{path.name} holds no {class_name} weights that diffusers "
                              f"recognises for {len(missing)} of its tensors (e.g. {missing[0]})")


def _diffusers_model(cls: Any, name: str, config_dir: Path, dtype: torch.dtype) -> Any:
    from diffusers import ModelMixin

    if not issubclass(cls, ModelMixin):
        return None  # tokenizers and schedulers: configs, read by the pipeline's loader
    return cls.from_pretrained(str(config_dir), subfolder=name, dtype=dtype)


def _text_encoder_in_file(cls: Any, checkpoint: dict[str, Any]) -> bool:
    from diffusers.loaders.single_file_utils import (
        is_clip_model_in_single_file,
        is_t5_in_single_file,
    )

    return bool(is_clip_model_in_single_file(cls, checkpoint) or (
        cls.__name__ == "T5EncoderModel" and is_t5_in_single_file(checkpoint)))
