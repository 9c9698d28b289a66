"""What the benches that serve one tier through `easel serve` share (bench/api_vs_engine.py,
bench/cold_start.py): the tier an architecture serves, its Google model id, the catalog overlay
that points its backend at the bench's weights, a free port."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

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
