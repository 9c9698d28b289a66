"""LoRA adapters per request: which adapters a loaded pipeline holds, and which it runs with.

Adapters load through diffusers' PEFT integration (`load_lora_weights`, whose converters read
the kohya/Civitai and other layouts) and stay loaded between batches, least recently used out
first, within a byte budget and a count. The adapters of the batch in hand are never unloaded.
With no adapters the pipeline runs with LoRA disabled, which is the base model exactly.

With torch.compile on, adapters go into a fixed set of slots instead (`hotswap`): a new adapter
replaces an old one's weights in place, padded to one rank, so switching does not recompile.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from easel.domain.errors import InferenceError
from easel.domain.generation import AdapterSpec
from easel.engine.families import family_of
from easel.engine.optimize import denoiser

log = logging.getLogger(__name__)

AdapterKey = tuple[str, str]  # (allow-list name, sha256 of the file)


@dataclass
class _Loaded:
    """One adapter held by a pipeline under `peft_name` (a slot's name when hot-swapping)."""

    peft_name: str
    key: AdapterKey
    nbytes: int  # its LoRA tensors as loaded on the device
    text_encoder: bool  # whether it adapts a text encoder (prompt embeddings change with it)
    # Hot-swapping: each adapted layer's scaling at weight 1 (peft's own record, r and alpha,
    # stays the first occupant's when another adapter is swapped into the slot).
    unit_scaling: dict[Any, float] = field(default_factory=dict)


class PipelineAdapters:
    """The adapters of one loaded pipeline, and which of them its next call runs with."""

    def __init__(self, pipe: Any, family: str, max_bytes: int, max_count: int,
                 hotswap_rank: int | None = None) -> None:
        if not hasattr(pipe, "load_lora_weights"):
            raise InferenceError(f"the {family} family takes no LoRA adapters (its pipeline "
                                 f"{type(pipe).__name__} has no LoRA loader)")
        self.pipe = pipe
        self.max_bytes = max_bytes
        self.max_count = max(1, max_count)
        self.hotswap_rank = hotswap_rank
        self._loaded: OrderedDict[AdapterKey, _Loaded] = OrderedDict()  # oldest use first
        self._enabled = True
        self._active: tuple[AdapterSpec, ...] = ()

    # --- what the engine asks ------------------------------------------------------------------

    def apply(self, adapters: tuple[AdapterSpec, ...]) -> None:
        """Make the pipeline's next call run with exactly `adapters`, at their weights."""
        if not adapters:
            if self._loaded and self._enabled:
                self.pipe.disable_lora()
                self._enabled = False
            self._active = ()
            return
        wanted = [_key(spec) for spec in adapters]
        if len(set(wanted)) != len(wanted):
            raise InferenceError("the same adapter is named twice in one batch")
        for spec in adapters:
            self._ensure_loaded(spec, keep=set(wanted))
        self._trim(keep=set(wanted))
        if not self._enabled:
            self.pipe.enable_lora()
            self._enabled = True
        self._set_weights(adapters)
        self._active = adapters

    def loaded(self) -> list[str]:
        """The allow-list names of the adapters held, least recently used first."""
        return [name for name, _digest in self._loaded]

    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._loaded.values())

    def text_variant(self) -> tuple[tuple[str, str, float], ...]:
        """What the prompt embeddings of the next call depend on besides the prompt: the active
        adapters (names, digests, weights) when one of them adapts a text encoder, else
        nothing, so transformer-only adapters keep sharing the cached embeddings."""
        if not any(self._loaded[_key(spec)].text_encoder for spec in self._active):
            return ()
        return tuple((spec.name, spec.digest, spec.weight) for spec in self._active)

    # --- loading and unloading -----------------------------------------------------------------

    def _ensure_loaded(self, spec: AdapterSpec, keep: set[AdapterKey]) -> None:
        key = _key(spec)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return
        if self.hotswap_rank is None:
            self._loaded[key] = self._load(spec, peft_name(spec), hotswap=False)
        else:
            self._check_rank(spec)  # before a slot is given up for it
            self._loaded[key] = self._load_into_slot(spec, keep)
        log.info("loaded LoRA adapter %s (%s, %d bytes)", spec.name, spec.digest[:12],
                 self._loaded[key].nbytes)

    def _load(self, spec: AdapterSpec, name: str, hotswap: bool) -> _Loaded:
        path = Path(spec.path)
        if path.suffix != ".safetensors":
            raise InferenceError(f"adapter {spec.name}: only .safetensors files are loaded")
        try:
            with warnings.catch_warnings():  # several adapters in one model is the point here
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                # use_safetensors: never fall back to unpickling a file.
                self.pipe.load_lora_weights(str(path), adapter_name=name, hotswap=hotswap,
                                            use_safetensors=True, local_files_only=True)
        except Exception as exc:  # the converters assert and index on what they expect
            raise InferenceError(f"adapter {spec.name} did not load: {exc}") from exc
        nbytes, text_encoder = _footprint(self.pipe, name)
        return _Loaded(name, _key(spec), nbytes, text_encoder,
                       _unit_scaling(self.pipe, name) if self.hotswap_rank else {})

    def _check_rank(self, spec: AdapterSpec) -> None:
        assert self.hotswap_rank is not None
        try:
            rank = file_rank(Path(spec.path))
        except Exception as exc:  # not a readable file: said as a failed load
            raise InferenceError(f"adapter {spec.name} did not load: {exc}") from exc
        if rank > self.hotswap_rank:
            raise InferenceError(
                f"adapter {spec.name} is of rank {rank}; hot-swap slots hold adapters up to "
                f"the lora_max_rank setting, {self.hotswap_rank}")

    def _trim(self, keep: set[AdapterKey]) -> None:
        """Unload the least recently used adapters outside `keep` while over budget."""
        while len(self._loaded) > self.max_count or self.nbytes() > self.max_bytes:
            victim = next((key for key in self._loaded if key not in keep), None)
            if victim is None:  # the batch's own adapters alone are over: they stay
                return
            entry = self._loaded.pop(victim)
            log.info("unloading LoRA adapter %s (%s)", victim[0], victim[1][:12])
            # A hot-swap slot goes too (a recompile): the budget is memory, a hard limit.
            self.pipe.delete_adapters(entry.peft_name)

    def _set_weights(self, adapters: tuple[AdapterSpec, ...]) -> None:
        names = [self._loaded[_key(spec)].peft_name for spec in adapters]
        weights = [spec.weight for spec in adapters]
        if self.hotswap_rank is None:
            self.pipe.set_adapters(names, weights)
            return
        # Every slot stays active (a change of the active set would recompile); a slot outside
        # the batch runs at weight 0, which adds exactly zero.
        by_slot = dict(zip(names, weights, strict=True))
        for entry in self._loaded.values():
            _scale(self.pipe, entry, by_slot.get(entry.peft_name, 0.0))

    # --- hot-swap slots ------------------------------------------------------------------------

    def _load_into_slot(self, spec: AdapterSpec, keep: set[AdapterKey]) -> _Loaded:
        """Swap `spec` into a free slot, or the least recently used slot outside `keep`; open
        a new slot (one recompile) when there is none or the swap does not fit its layers."""
        slot = self._reusable_slot(keep)
        if slot is not None:
            try:
                return self._load(spec, slot.peft_name, hotswap=True)
            except InferenceError as exc:
                # A swap needs the new adapter's layers to be a subset of the slot's: another
                # layer set gets a fresh slot in its place.
                log.info("adapter %s does not fit slot %s (%s); reloading the slot",
                         spec.name, slot.peft_name, exc)
                self.pipe.delete_adapters(slot.peft_name)
                return self._open_slot(spec, slot.peft_name)
        taken = {entry.peft_name for entry in self._loaded.values()}
        name = next(f"slot_{i}" for i in range(len(taken) + 1) if f"slot_{i}" not in taken)
        return self._open_slot(spec, name)

    def _reusable_slot(self, keep: set[AdapterKey]) -> _Loaded | None:
        """The least recently used slot outside `keep` once the count is reached; else None."""
        if len(self._loaded) < self.max_count:
            return None
        victim = next((key for key in self._loaded if key not in keep), None)
        return None if victim is None else self._loaded.pop(victim)

    def _open_slot(self, spec: AdapterSpec, name: str) -> _Loaded:
        # Pad every slot, this one included, to one rank and make its scalings tensors, so
        # later swaps change values, never shapes or Python constants the graph depends on.
        # "ignore": enabling after the first slot is expected here.
        denoiser(self.pipe).enable_lora_hotswap(target_rank=self.hotswap_rank,
                                                check_compiled="ignore")
        entry = self._load(spec, name, hotswap=False)
        _activate(self.pipe, [slot.peft_name for slot in self._loaded.values()] + [name])
        return entry


# --- on the pipeline's layers ------------------------------------------------------------------


def peft_name(spec: AdapterSpec) -> str:
    """The adapter's name inside the pipeline: its allow-list name made module-name safe (peft
    keys layers by it; a dot would split it) and its digest, since a name can change files."""
    safe = re.sub(r"[^0-9A-Za-z_]", "_", spec.name)[:48]
    return f"{safe}_{spec.digest[:12]}"


def file_rank(path: Path) -> int:
    """The highest LoRA rank in a .safetensors file, from its header alone."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return max((handle.get_slice(key).get_shape()[0] for key in handle.keys()  # noqa: SIM118
                    if ".lora_A." in key or ".lora_down." in key), default=0)


def _key(spec: AdapterSpec) -> AdapterKey:
    return (spec.name, spec.digest)


def _lora_layers(pipe: Any) -> Iterator[tuple[str, Any]]:
    """(component name, layer) for every peft LoRA layer in the pipeline's adaptable parts."""
    from peft.tuners.lora import LoraLayer

    for component in getattr(pipe, "_lora_loadable_modules", []):
        model = getattr(pipe, component, None)
        if isinstance(model, torch.nn.Module):
            for module in model.modules():
                if isinstance(module, LoraLayer):
                    yield component, module


def _footprint(pipe: Any, name: str) -> tuple[int, bool]:
    """The bytes of adapter `name`'s tensors on the device, and whether it adapts a text
    encoder (any component but the denoiser)."""
    nbytes, text_encoder = 0, False
    for component, layer in _lora_layers(pipe):
        for part in (layer.lora_A, layer.lora_B):
            if name in part:
                nbytes += sum(p.numel() * p.element_size() for p in part[name].parameters())
                text_encoder |= component.startswith("text_encoder")
    return nbytes, text_encoder


def _unit_scaling(pipe: Any, name: str) -> dict[Any, float]:
    return {layer: float(layer.scaling[name]) for _c, layer in _lora_layers(pipe)
            if name in layer.scaling}


def _scale(pipe: Any, entry: _Loaded, weight: float) -> None:
    """Set a slot's weight in place: the compiled graph reads the scaling tensor's value."""
    for layer, unit in entry.unit_scaling.items():
        current = layer.scaling.get(entry.peft_name)
        if isinstance(current, torch.Tensor):
            current.fill_(weight * unit)
        else:
            layer.scaling[entry.peft_name] = torch.tensor(
                weight * unit, device=layer.get_base_layer().weight.device)


def _activate(pipe: Any, names: list[str]) -> None:
    """Make `names` the active adapters of every LoRA layer, leaving scalings alone (diffusers'
    set_adapters would reset them from peft's stale r and alpha)."""
    for _component, layer in _lora_layers(pipe):
        layer.set_adapter([name for name in names if name in layer.lora_A])


# --- checking a file before it is allow-listed -------------------------------------------------


@dataclass(frozen=True)
class AdapterFacts:
    """What `easel lora add` learns of a file: its layout, LoRA rank, whether it adapts a text
    encoder, its tensors' bytes and how many modules it adapts."""

    format: str  # "diffusers", "kohya", "peft", "ai-toolkit", "lokr" or "other"
    rank: int
    targets_text_encoder: bool
    tensor_bytes: int
    modules: int


_LORA_SUFFIX = re.compile(r"\.(lora_[AB]|lora_down|lora_up|lokr_\w+|alpha|dora_scale)"
                          r"(\.[\w-]+)?(\.(weight|bias))?$")
_LORA_FACTOR = re.compile(r"\.(lora_[AB]|lora_down|lora_up)\.")
_DENOISERS = ("transformer.", "unet.")


def check_adapter_file(path: str | Path, family: str,
                       config_source: str | None = None) -> AdapterFacts:
    """Check that `path` is a LoRA `.safetensors` file for the `family` pipeline, without a
    model: read it with safetensors (never a pickle), convert it to diffusers' layout with the
    family pipeline's own `lora_state_dict`, and compare the modules it adapts with the
    family's transformer: built on the meta device from `config_source` (the base weights' hub
    id or folder; names and shapes), else the family's tiny stand-in (names, block numbers
    aside). Raises ValueError saying what does not fit."""
    path = Path(path)
    pipeline_class = _lora_pipeline_class(family)
    raw = _read_safetensors(path)
    try:
        converted = pipeline_class.lora_state_dict(dict(raw), use_safetensors=True)
    except Exception as exc:  # the converters assert and index on what they expect
        raise ValueError(f"{path.name} is not a LoRA that {family} can read: {exc}") from exc
    if isinstance(converted, tuple):  # the SDXL/SD loaders return (state dict, alphas)
        converted = converted[0]
    _check_factors(converted)
    modules = _adapted_modules(converted)
    if not modules:
        raise ValueError(f"{path.name} holds no LoRA weights for {family}'s transformer")
    _check_targets(modules, family, config_source)
    ranks = [t.shape[0] for k, t in converted.items() if ".lora_A." in k or "lora_down" in k]
    return AdapterFacts(
        format=_layout(raw),
        rank=max(ranks, default=0),
        targets_text_encoder=any(k.startswith(("text_encoder", "lora_te")) for k in converted),
        tensor_bytes=sum(t.numel() * t.element_size() for t in raw.values()),
        modules=len(modules),
    )


def _lora_pipeline_class(family: str) -> Any:
    import diffusers

    row = family_of(family)
    cls = getattr(diffusers, row.pipeline, None) if row.pipeline else None
    if cls is None or not hasattr(cls, "lora_state_dict"):
        raise ValueError(f"the {family} family takes no LoRA adapters")
    return cls


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix != ".safetensors":
        raise ValueError(f"{path.name}: only .safetensors files are accepted (a pickled "
                         ".ckpt/.pt/.bin file can run code when it is read)")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:  # reads the header; tensors lazily
            return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path.name} is not a readable .safetensors file: {exc}") from exc


def _layout(raw: dict[str, torch.Tensor]) -> str:
    keys = list(raw)
    if any(".lokr_" in k for k in keys):
        return "lokr"
    if any(k.startswith(("lora_unet_", "lora_te")) or ".lora_down." in k for k in keys):
        return "kohya"
    if any(k.startswith("base_model.model.") for k in keys):
        return "peft"
    if any(k.startswith("diffusion_model.") for k in keys):
        return "ai-toolkit"
    if any(k.startswith(_DENOISERS) for k in keys):
        return "diffusers"
    return "other"


def _check_factors(state: dict[str, torch.Tensor]) -> None:
    """Every LoRA factor is a matrix (4-d for a convolution): a scalar or a vector passes the
    checks of names and would fail only when a worker loads it."""
    for key, tensor in state.items():
        if _LORA_FACTOR.search(key) and tensor.ndim < 2:
            raise ValueError(f"{key} is not a LoRA matrix (its shape is "
                             f"{list(tensor.shape)})")


def _adapted_modules(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, int]]:
    """The denoiser modules a diffusers-layout LoRA adapts: name -> (out, in) features."""
    modules: dict[str, list[int]] = {}
    for key, tensor in state.items():
        if not key.startswith(_DENOISERS):
            continue
        name = _LORA_SUFFIX.sub("", key.split(".", 1)[1])
        shape = modules.setdefault(name, [0, 0])
        if ".lora_A." in key and tensor.ndim >= 2:
            shape[1] = int(tensor.shape[1])
        elif ".lora_B." in key and tensor.ndim >= 2:
            shape[0] = int(tensor.shape[0])
    return {name: (out, inp) for name, (out, inp) in modules.items()}


def _check_targets(modules: dict[str, tuple[int, int]], family: str,
                   config_source: str | None) -> None:
    base = _base_modules(family, config_source)
    if config_source is None:  # the stand-in has one block of each kind: compare the kinds
        names = {re.sub(r"\d+", "#", name) for name in base}
        missing = sorted(n for n in modules if re.sub(r"\d+", "#", n) not in names)
    else:
        missing = sorted(n for n, shape in modules.items() if not _fits(shape, base.get(n)))
    if missing:
        shown = ", ".join(missing[:4]) + (f" (and {len(missing) - 4} more)"
                                          if len(missing) > 4 else "")
        raise ValueError(f"this adapter targets modules that {family} does not have: {shown}; "
                         "is it a LoRA for another model?")


def _fits(shape: tuple[int, int], weight: tuple[int, ...] | None) -> bool:
    if weight is None or len(weight) < 2:
        return False
    out, inp = shape
    return out in (0, weight[0]) and inp in (0, weight[1])


def _base_modules(family: str, config_source: str | None) -> dict[str, tuple[int, ...]]:
    """Module name -> weight shape of the family's denoiser, built without weights."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        if config_source is None:
            model = denoiser(family_of(family).build_stand_in())
        else:
            model = _denoiser_from_config(family, config_source)
    return {name: tuple(module.weight.shape) for name, module in model.named_modules()
            if isinstance(getattr(module, "weight", None), torch.Tensor)}


def _denoiser_from_config(family: str, config_source: str) -> Any:
    import inspect

    import diffusers

    pipeline_class = _lora_pipeline_class(family)
    parameters = inspect.signature(pipeline_class.__init__).parameters
    part = "transformer" if "transformer" in parameters else "unet"
    annotation = parameters[part].annotation
    model_class = getattr(diffusers, annotation if isinstance(annotation, str)
                          else annotation.__name__)
    config = model_class.load_config(config_source, subfolder=part, local_files_only=True)
    return model_class.from_config(config)
