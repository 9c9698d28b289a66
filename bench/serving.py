"""What the benches that serve one tier through `easel serve` share (bench/api_vs_engine.py,
bench/cold_start.py; bench/gpu.py takes the backend): the tier and backend an architecture
serves, the Google `:predict` call they send and the PNG it answers, the catalog overlay that
points the backend at the bench's weights, a free port, and the wait for a URL to answer."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

KEY = "bench-serving-key"
# The tiers as the Google dialect names them.
GOOGLE_MODELS = {"fast": "imagen-4.0-fast-generate-001", "standard": "imagen-4.0-generate-001",
                 "ultra": "imagen-4.0-ultra-generate-001"}


def tier_serving(family: str, arch: str) -> Any:
    """The catalog tier this architecture serves: its backend by name, or by family for a tiny
    stand-in architecture."""
    from easel.catalog import Catalog

    tiers = [t for t in Catalog.load().tiers.values() if t.name in GOOGLE_MODELS]
    for tier in tiers:
        if tier.backend.name == arch:
            return tier
    for tier in tiers:
        if tier.backend.family == family:
            return tier
    raise SystemExit(f"no tier of the catalog runs {arch} ({family})")


def backend_of(family: str, arch: str) -> Any:
    """The catalog backend of that name (a tier's or not), else the backend of the tier this
    architecture serves."""
    from easel.catalog import Catalog

    return Catalog.load().backends.get(arch) or tier_serving(family, arch).backend


def predict_body(prompt: str) -> dict[str, Any]:
    """One `:predict` call of one image with Google's defaults (watermark on, content check at
    block_medium_and_above, PNG)."""
    return {"instances": [{"prompt": prompt}], "parameters": {"sampleCount": 1}}


def predicted_png(reply: httpx.Response) -> bytes:
    """The PNG a `:predict` reply carries; anything else raises, saying what came."""
    if reply.status_code != 200:
        raise RuntimeError(f"{reply.status_code}: {reply.text[:500]}")
    png = base64.b64decode(reply.json()["predictions"][0]["bytesBase64Encoded"])
    if not png.startswith(b"\x89PNG"):
        raise RuntimeError("the prediction is not a PNG")
    return png


def write_overlay(path: Path, backend: str, source: str, size: int) -> Path:
    """A catalog overlay: `backend` served from `source`, Imagen's 1:1 size at `size`."""
    path.write_text(f'[backends.{backend}]\nsource = "{source}"\nlicense = "apache-2.0"\n\n'
                    f'[sizes]\n"1:1" = [{size}, {size}]\n', "utf-8")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def until_ok(url: str, timeout: float = 600,
             gone: Callable[[], str | None] = lambda: None) -> None:
    """Until `url` answers 200; `gone` says why it never will (a server that exited), if so."""
    deadline = time.monotonic() + timeout
    while True:
        reason = gone()
        if reason is not None:
            raise RuntimeError(reason)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 in {timeout} s")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
