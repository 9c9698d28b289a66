"""Where a backend's weights are, whether they are complete, and how to fetch them."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from easel.catalog import Backend, License

WEIGHT_SUFFIXES = (".safetensors", ".bin")
# The README/license files and the original single-file checkpoints are not needed by diffusers'
# from_pretrained; skipping them saves tens of GB for FLUX and SD3.5.
# Other runtimes' exports (ONNX, OpenVINO, Flax) and variants easel does not load are skipped too.
SKIPPED_FILES = ["*.md", "*.gguf", "*.ckpt", "*.pt", "*.pth", "flux1-*.safetensors",
                 "flux-2-*.safetensors", "ae.safetensors", "sd3.5_*.safetensors",
                 "sd_xl_*.safetensors", "text_encoders/*", "*.onnx", "*.onnx_data", "*.msgpack",
                 "openvino*", "*.fp16.safetensors", "*.fp16.bin"]


def weights_present(source: str) -> bool:
    """Built-in models are always available; others need a complete local dir or hub cache."""
    if source.startswith("easel/"):
        if source == "easel/mini":
            return _mini_present()
        return True
    path = Path(source).expanduser()
    if path.is_dir():
        return snapshot_gap(path) is None
    cached = _cached_snapshot(source)
    return cached is not None and snapshot_gap(cached) is None


def _cached_snapshot(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None


def snapshot_gap(path: Path) -> str | None:
    """What a diffusers folder lacks (an interrupted pull leaves some files out), or None when
    every component model_index.json names has its config and every weight shard its index
    lists."""
    index = path / "model_index.json"
    if not index.is_file():
        return "model_index.json is missing"
    try:
        components = json.loads(index.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        return f"model_index.json is unreadable: {exc}"
    if not isinstance(components, dict):
        return "model_index.json is not a JSON object"
    for name, spec in components.items():
        if name.startswith("_") or not isinstance(spec, list) or None in spec:
            continue
        gap = _component_gap(path / name)
        if gap is not None:
            return f"{name}: {gap}"
    return None


# The weight files diffusers and transformers load without a variant, whole or as an index.
LOADABLE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                    "model.safetensors", "pytorch_model.bin")
SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.(safetensors|bin)$")


def _component_gap(folder: Path) -> str | None:
    try:
        if not folder.is_dir():
            return "the folder is missing"
        files = {f.name for f in folder.iterdir() if f.is_file()}
        if not files:
            return "the folder is empty"
        return _shard_gap(folder, files) or _weights_gap(files)
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        return f"unreadable: {exc}"


def _shard_gap(folder: Path, files: set[str]) -> str | None:
    """Every shard an index lists, and an index with all N shards for any "-i-of-N" file."""
    for index in (f for f in files if f.endswith((".safetensors.index.json", ".bin.index.json"))):
        weight_map = json.loads((folder / index).read_text("utf-8"))["weight_map"]
        missing = sorted(set(weight_map.values()) - files)
        if missing:
            return f"weight shards missing: {', '.join(missing)}"
    for name in files:
        match = SHARD.search(name)
        if match is None:
            continue
        stem = name[: match.start()]
        count, suffix = int(match.group(2)), match.group(3)
        if f"{stem}.{suffix}.index.json" not in files:
            return f"{name} has no {stem}.{suffix}.index.json"
        expected = {f"{stem}-{i:05d}-of-{count:05d}.{suffix}" for i in range(1, count + 1)}
        if not expected <= files:
            return f"weight shards missing: {', '.join(sorted(expected - files))}"
    return None


def _weights_gap(files: set[str]) -> str | None:
    """A model's config.json needs weights a plain from_pretrained loads (not only a variant
    such as *.fp16.safetensors, nor another runtime's files)."""
    if "config.json" not in files:
        return None  # a scheduler, tokenizer or processor: configs only
    indexes = {f"{w}.index.json" for w in LOADABLE_WEIGHTS}
    if files & set(LOADABLE_WEIGHTS) or files & indexes:
        return None
    return "a model config without weights a plain from_pretrained loads"


def _mini_present() -> bool:
    try:
        from easel.mini.weights import mini_weights_dir
    except ImportError:
        return False
    try:
        return (mini_weights_dir() / "model_index.json").exists()
    except FileNotFoundError:
        return False


class PullError(Exception):
    pass


@dataclass(frozen=True)
class PullTarget:
    """What `easel pull` fetches: a hub repository, and the licence to show before it does."""

    repo_id: str
    license: License | None  # None: not in the catalog; the model card says


def pull_target(source: str, license: License | None = None) -> PullTarget:
    if source.startswith("easel/"):
        raise PullError(f"{source} is built in; there is nothing to download")
    if Path(source).expanduser().is_dir():
        raise PullError(f"{source} is a local directory; there is nothing to download")
    return PullTarget(source, license)


def target_for(backend: Backend) -> PullTarget:
    return pull_target(backend.source, backend.license)


def card_license(repo_id: str) -> str | None:
    """The licence a hub model card declares (None when the card says none or is unreachable;
    the download that follows reports why)."""
    from huggingface_hub import model_info

    try:
        card = model_info(repo_id).card_data
    except Exception:
        return None
    value = card.get("license") if card is not None else None
    return str(value) if value else None


def pull(target: PullTarget) -> Path:
    """Download into the Hugging Face cache (HF_HOME / HF_HUB_CACHE), resuming partial files,
    with huggingface_hub's progress bars; then check the snapshot is complete."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        path = Path(snapshot_download(target.repo_id, ignore_patterns=SKIPPED_FILES,
                                      etag_timeout=10))
    except GatedRepoError:
        raise PullError(_login_hint(target.repo_id, endpoint, "is gated")) from None
    except RepositoryNotFoundError:
        raise PullError(_login_hint(target.repo_id, endpoint,
                                    "was not found (or is private or gated)")) from None
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PullError(f"could not download {target.repo_id} from {endpoint}: {reason} "
                        "(run the same command again to resume)") from exc
    gap = snapshot_gap(path)
    if gap is not None:
        raise PullError(f"{target.repo_id} downloaded to {path} but is not a complete diffusers "
                        f"folder ({gap})")
    return path


def _login_hint(repo_id: str, endpoint: str, what: str) -> str:
    return (f"{repo_id} {what} at {endpoint}: accept its licence at {endpoint}/{repo_id} with "
            "your account, then log in with `hf auth login` or set HF_TOKEN to an access token")
