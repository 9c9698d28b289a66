"""LoRA adapters: what the operator allow-listed, what a client asks for, what a job runs with.

An adapter is a small set of low-rank weight deltas for one base model's transformer. The
operator adds it once (`easel lora add`: the file is checked and copied into easel's own store);
a request names adapters of its model's backend with a weight each; the job records the file's
digest, so the job runs with the bytes that were allow-listed when it was accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WEIGHT_RANGE = (-4.0, 4.0)  # Runware's documented range for `lora[].weight`


@dataclass(frozen=True)
class LoraChoice:
    """An adapter as the client names it: an allow-list name (or an id the operator mapped to
    one, such as a Runware AIR `civitai:ID@VERSION`), and a weight (None: the adapter's own
    default scale)."""

    name: str
    weight: float | None = None


@dataclass(frozen=True)
class AppliedLora:
    """An adapter a job runs with: its allow-list name, its file's sha256 and its weight."""

    name: str
    digest: str
    weight: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.digest, "weight": self.weight}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AppliedLora:
        return cls(str(raw["name"]), str(raw["sha256"]), float(raw["weight"]))


@dataclass(frozen=True)
class Adapter:
    """One allow-listed adapter, as `easel lora list` and /easel/models show it."""

    name: str
    base: str  # the catalog backend it was made for (its transformer's layout was checked)
    digest: str  # sha256 of the .safetensors file
    size_bytes: int
    source: str  # where the operator took it from (a path, a URL, a Hugging Face repo/file)
    scale: float = 1.0  # the weight when a request gives none
    trigger: str = ""  # words its training tied it to: a prompt should carry them
    license: str = ""  # as the operator declared it
    aliases: tuple[str, ...] = ()  # other ids that name it (Runware AIR ids)
    layout: str = ""  # the file's layout when added ("diffusers", "kohya", ...)
    rank: int | None = None
    added_at: float = 0.0

    @property
    def blob_key(self) -> str:
        """Where its bytes are kept in the image store (one copy per distinct file)."""
        return f"lora-{self.digest}.safetensors"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base, "sha256": self.digest,
                "size_bytes": self.size_bytes, "source": self.source,
                "default_weight": self.scale, "trigger_words": self.trigger,
                "license": self.license, "aliases": list(self.aliases), "layout": self.layout,
                "rank": self.rank}
