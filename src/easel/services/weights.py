"""Where a backend's weights are, whether they are present, and how to fetch them."""

from __future__ import annotations

import os
from pathlib import Path

from easel.catalog import Backend


def weights_present(source: str) -> bool:
    """Built-in models are always available; others need a local dir or the hub cache."""
    if source.startswith("easel/"):
        if source == "easel/mini":
            return _mini_present()
        return True
    path = Path(source).expanduser()
    if path.is_dir():
        return (path / "model_index.json").exists()
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(source, local_files_only=True)
    except Exception:
        return False
    return True


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


def pull(backend: Backend) -> Path:
    """Download a backend's weights into the Hugging Face cache (resumable, with progress)."""
    if backend.is_builtin:
        raise PullError(f"{backend.source} is built in; there is nothing to download")
    if Path(backend.source).expanduser().is_dir():
        raise PullError(f"{backend.source} is a local directory; there is nothing to download")
    from huggingface_hub import snapshot_download

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    # The README/license files and the original single-file checkpoints are not needed by
    # diffusers' from_pretrained; skipping them saves tens of GB for FLUX and SD3.5.
    try:
        path = snapshot_download(
            backend.source,
            ignore_patterns=["*.md", "*.gguf", "*.ckpt", "*.pt", "*.pth", *_single_file_ckpts()],
            etag_timeout=10,
        )
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PullError(f"could not download {backend.source} from {endpoint}: {reason}") from exc
    return Path(path)


def _single_file_ckpts() -> list[str]:
    return ["flux1-*.safetensors", "ae.safetensors", "sd3.5_*.safetensors", "sd_xl_*.safetensors"]
