"""Where a backend's weights are, whether they are complete, and how to fetch them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from easel.catalog import Backend, License, is_single_file

WEIGHT_SUFFIXES = (".safetensors", ".bin")
# The README/license files and the original single-file checkpoints are not needed by diffusers'
# from_pretrained; skipping them saves tens of GB for FLUX and SD3.5.
# Other runtimes' exports (ONNX, OpenVINO, Flax) and variants easel does not load are skipped too.
SKIPPED_FILES = ["*.md", "*.gguf", "*.ckpt", "*.pt", "*.pth", "flux1-*.safetensors",
                 "flux-2-*.safetensors", "ae.safetensors", "sd3.5_*.safetensors",
                 "sd_xl_*.safetensors", "text_encoders/*", "*.onnx", "*.onnx_data", "*.msgpack",
                 "openvino*", "*.fp16.safetensors", "*.fp16.bin"]
# A single-file backend brings its own denoiser: its config repository is pulled without one.
DENOISERS = ("transformer", "unet")
DENOISER_WEIGHTS = [f"{d}/*{suffix}" for d in DENOISERS for suffix in WEIGHT_SUFFIXES]
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on a header


def is_local(source: str) -> bool:
    """A path on this machine, not a hub repository id: a directory that exists, a single
    file, or anything a hub id cannot be (absolute, ~, ./, more than one slash)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if is_single_file(source) or Path(source).expanduser().is_dir():
        return True
    try:
        validate_repo_id(source)
    except HFValidationError:
        return True
    return False


def weights_present(source: str, config: str | None = None) -> bool:
    """Built-in models are always available; others need a complete local dir, hub cache
    snapshot, or single file with its config."""
    return absence(source, config) is None


def absence(source: str, config: str | None = None, name: str | None = None) -> str | None:
    """Why `source`'s weights cannot load here and what to do about it, in one sentence that
    names the path (None: they are present and complete). `name` is what `easel pull` takes."""
    pull = f"`easel pull {name or source}`"
    if source.startswith("easel/"):
        if source == "easel/mini" and not _mini_present():
            return ("easel-mini's weights are not built: `python -m examples.mini.train` trains "
                    "them (docs/mini.md)")
        return None
    if is_single_file(source):
        return _single_file_absence(source, config, pull)
    if is_local(source):
        return _directory_absence(Path(source).expanduser())
    cached = cached_snapshot(source)
    if cached is None:
        return f"{source} is not in the Hugging Face cache ({_hub_cache()}): {pull} downloads it"
    gap = snapshot_gap(cached)
    if gap is not None:
        return (f"the cached snapshot of {source} at {cached} is incomplete ({gap}): {pull} "
                "resumes the download")
    return None


OVERLAY_HINT = "in your catalog overlay (EASEL_CATALOG_FILE)"


def _directory_absence(path: Path) -> str | None:
    if not path.is_dir():
        return (f"the local directory {path} does not exist: put a diffusers folder there "
                "(model_index.json and one folder per component), or point the backend's "
                f"`source` at one {OVERLAY_HINT}")
    gap = snapshot_gap(path)
    if gap is not None:
        return (f"the local directory {path} is not a complete diffusers folder ({gap}): copy "
                "the missing files there")
    return None


def _single_file_absence(source: str, config: str | None, pull: str) -> str | None:
    path = Path(source).expanduser()
    if not path.is_file():
        return (f"the checkpoint {path} does not exist: put the .safetensors file there, or point "
                f"the backend's `source` at it {OVERLAY_HINT}")
    gap = safetensors_gap(path)
    if gap is not None:
        return f"the checkpoint {path} is incomplete ({gap}): copy it again"
    if config is None:
        return (f"the checkpoint {path} needs `config` {OVERLAY_HINT}: a hub id or a diffusers "
                "folder")
    config_dir = config_path(config)
    if config_dir is None and is_local(config):
        return (f"the config directory {config} of {path.name} does not exist: put the "
                f"pipeline's diffusers folder there, or point `config` at one {OVERLAY_HINT}")
    if config_dir is None:
        return (f"the config {config} of {path.name} is not in the Hugging Face cache "
                f"({_hub_cache()}): {pull} downloads it (without the denoiser's weights)")
    gap = snapshot_gap(config_dir, weights_elsewhere=components_in_file(path))
    if gap is not None:
        return (f"the config {config} of {path.name} at {config_dir} lacks what the file does not "
                f"hold ({gap}): {pull if not is_local(config) else 'copy the missing files'}")
    return None


def config_path(config: str) -> Path | None:
    """The local folder of a single file's diffusers config: a directory, or a hub id's
    snapshot in the Hugging Face cache (never downloaded here)."""
    if is_local(config):
        path = Path(config).expanduser()
        return path if path.is_dir() else None
    return cached_snapshot(config)


def cached_snapshot(repo_id: str) -> Path | None:
    """The folder of `repo_id`'s snapshot in the Hugging Face cache, complete or not (None when
    there is none): snapshot_gap judges it, by what diffusers loads."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as exc:
        # huggingface_hub 1.x and later keep the repository's file list and call a snapshot
        # incomplete when any file is missing, including those `easel pull` skips on purpose
        # (READMEs, other runtimes' exports, a single file's denoiser): it says where it is.
        snapshot = getattr(exc, "snapshot_path", None)
        return Path(snapshot) if snapshot else None


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def snapshot_gap(path: Path, weights_elsewhere: Collection[str] = ()) -> str | None:
    """What a diffusers folder lacks (an interrupted pull leaves some files out, an interrupted
    copy a truncated file), or None when every component model_index.json names has its config,
    every weight shard its index lists, and every safetensors file its full length.
    Components in `weights_elsewhere` (held by a single-file checkpoint) need their config
    only."""
    index = path / "model_index.json"
    if not index.is_file() and (path / "config.json").is_file():
        # A transformers model (the upscaler): the folder is its one component.
        return _component_gap(path)
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
        gap = _component_gap(path / name, config_only=name in weights_elsewhere)
        if gap is not None:
            return f"{name}: {gap}"
    return None


# The weight files diffusers and transformers load without a variant, whole or as an index.
LOADABLE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                    "model.safetensors", "pytorch_model.bin")
SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.(safetensors|bin)$")


def _component_gap(folder: Path, config_only: bool = False) -> str | None:
    try:
        if not folder.is_dir():
            return "the folder is missing"
        files = {f.name for f in folder.iterdir() if f.is_file()}
        if not files:
            return "the folder is empty"
        if config_only:
            return None
        return (_shard_gap(folder, files) or _weights_gap(files)
                or _truncation_gap(folder, files))
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


def _truncation_gap(folder: Path, files: set[str]) -> str | None:
    for name in sorted(f for f in files if f.endswith(".safetensors")):
        gap = safetensors_gap(folder / name)
        if gap is not None:
            return f"{name}: {gap}"
    return None


def _safetensors_header(path: Path) -> tuple[dict[str, object], int]:
    """The header's entries, and how many bytes the header takes."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{len(head)} bytes, shorter than a safetensors header")
        size = int.from_bytes(head, "little")
        if size > MAX_HEADER_BYTES:
            raise ValueError("not a safetensors file (its header length is implausible)")
        header = json.loads(f.read(size))
    if not isinstance(header, dict):
        raise ValueError("not a safetensors file (its header is not a JSON object)")
    return header, 8 + size


def safetensors_gap(path: Path) -> str | None:
    """A .safetensors file must be as long as its header says: an interrupted copy is not."""
    try:
        header, header_bytes = _safetensors_header(path)
        ends = [int(entry["data_offsets"][1]) for key, entry in header.items()
                if isinstance(entry, dict) and key != "__metadata__"]
        expected = header_bytes + max(ends, default=0)
        actual = path.stat().st_size
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        return f"unreadable: {exc}"
    if actual < expected:
        return f"truncated: {actual} of {expected} bytes"
    return None


# Key prefixes by which an all-in-one checkpoint (A1111's and ComfyUI's checkpoints/) holds
# components besides the denoiser; ComfyUI's diffusion_models/ files hold the denoiser only.
FILE_COMPONENT_PREFIXES = {
    "vae": ("first_stage_model.", "vae."),
    "text_encoder": ("conditioner.embedders.0.", "cond_stage_model.", "text_encoders.clip_l."),
    "text_encoder_2": ("conditioner.embedders.1.", "text_encoders.clip_g.",
                       "text_encoders.t5xxl."),
    "text_encoder_3": ("text_encoders.t5xxl.",),
}


def components_in_file(path: Path) -> set[str]:
    """The pipeline components a single-file checkpoint holds, from its key names alone: the
    denoiser always (a file without one fails to load, with diffusers' message), and the VAE and
    text encoders of an all-in-one checkpoint."""
    keys = [k for k in _safetensors_header(path)[0] if not k.startswith("__")]
    held = set(DENOISERS)
    for component, prefixes in FILE_COMPONENT_PREFIXES.items():
        if any(key.startswith(prefixes) for key in keys):
            held.add(component)
    return held


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
    # A single file's config repository: everything but the denoiser's weights, which the file
    # holds.
    without_denoiser: bool = False


def pull_target(source: str, license: License | None = None, config: str | None = None
                ) -> PullTarget:
    if source.startswith("easel/"):
        raise PullError(f"{source} is built in; there is nothing to download")
    if is_single_file(source):
        if config is None or is_local(config):
            raise PullError(f"{source} is a local checkpoint whose config is "
                            f"{config or 'not set'}; there is nothing to download")
        return PullTarget(config, license, without_denoiser=True)
    if is_local(source):
        reason = absence(source) or "it is present"
        raise PullError(f"{source} is a local directory, not a hub repository, so there is "
                        f"nothing to download ({reason})")
    return PullTarget(source, license)


def target_for(backend: Backend) -> PullTarget:
    return pull_target(backend.source, backend.license, backend.config)


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
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    skipped = SKIPPED_FILES + (DENOISER_WEIGHTS if target.without_denoiser else [])
    try:
        path = Path(snapshot_download(target.repo_id, ignore_patterns=skipped, etag_timeout=10))
    except GatedRepoError:
        raise PullError(_gated_hint(target, endpoint)) from None
    except RepositoryNotFoundError:
        raise PullError(_not_found_hint(target.repo_id, endpoint)) from None
    except HfHubHTTPError as exc:
        if _status(exc) == 401:
            raise PullError(_bad_token_hint(target.repo_id, endpoint)) from None
        raise PullError(_download_failed(target.repo_id, endpoint, exc)) from exc
    except Exception as exc:
        raise PullError(_download_failed(target.repo_id, endpoint, exc)) from exc
    gap = snapshot_gap(path, DENOISERS if target.without_denoiser else ())
    if gap is not None:
        raise PullError(f"{target.repo_id} downloaded to {path} but is not a complete diffusers "
                        f"folder ({gap})")
    return path


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _download_failed(repo_id: str, endpoint: str, exc: Exception) -> str:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if _unreachable(exc):  # nothing was fetched: there is nothing to resume
        return (f"cannot reach {endpoint} to download {repo_id}: {reason} (offline? on a "
                "machine without internet, copy the weights in and point the catalog at them, "
                "docs/catalog.md)")
    return (f"could not download {repo_id} from {endpoint}: {reason} "
            "(run the same command again to resume)")


def _unreachable(exc: BaseException) -> bool:
    """A name that does not resolve or a connection refused, anywhere in the chain."""
    import httpx

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, httpx.ConnectError | ConnectionError) or "ConnectError" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _token_sent() -> bool:
    from huggingface_hub import get_token

    return get_token() is not None


def _gated_hint(target: PullTarget, endpoint: str) -> str:
    """A gated repository: which licence to accept, where, and how to send the token."""
    page = f"{endpoint}/{target.repo_id}"
    licence = (f"the {target.license.name} ({target.license.url})"
               if target.license is not None and target.license.url else "its licence")
    if _token_sent():
        return (f"{target.repo_id} is gated at {endpoint} and your token's account has no access "
                f"yet: accept {licence} at {page} with that account (a fine-grained token also "
                "needs read access to public gated repositories), then run this again")
    return (f"{target.repo_id} is gated at {endpoint}: accept {licence} at {page} with your "
            "account, then log in with `hf auth login` or set HF_TOKEN to an access token "
            f"({endpoint}/settings/tokens) and run this again")


def _not_found_hint(repo_id: str, endpoint: str) -> str:
    login = "" if _token_sent() else (
        "; if it is private or gated, log in with `hf auth login` or set HF_TOKEN")
    return f"{repo_id} was not found (or is private or gated) at {endpoint}{login}"


def _bad_token_hint(repo_id: str, endpoint: str) -> str:
    return (f"{endpoint} refused the access token sent for {repo_id} (invalid or expired): set "
            f"HF_TOKEN to a valid one from {endpoint}/settings/tokens, or run `hf auth login` "
            "again")
