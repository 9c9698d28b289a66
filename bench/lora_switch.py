"""What switching LoRA adapters between batches costs, on the tiny stand-ins (CPU).

For each family, one warm engine draws a batch (one image) in each situation, the situations
taking turns run by run so all see the same machine load; medians of `--repeats` runs:

- none: no adapter (after a batch without one),
- same: the adapter the previous batch ran with,
- new: an adapter not loaded yet (a fresh file every run: the load is in the time),
- switch: another adapter already loaded (after a batch with the first one),
- hot-swap new: a new adapter swapped into an occupied slot (the compile path; eager here),
- hot-swap switch: another adapter already in a slot.

The stand-ins' LoRAs are tiny (ranks 4, tens of kB), so "new" measures the fixed cost of
diffusers' loading path (reading, converting, injecting peft layers), not moving weights.

    .venv/bin/python -m bench.lora_switch [--families flux2,zimage,qwenimage] [--size 128]
        [--steps 2] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tests.loras import make_lora

from easel.domain.generation import AdapterSpec, EngineBatch, ImageSpec
from easel.engine import Engine
from easel.engine.optimize import EngineOptions

SITUATIONS = ("none", "same", "new", "switch", "hot-swap new", "hot-swap switch")


class Files:
    """Tiny LoRA files of one family, a fresh one on every call of `fresh`."""

    def __init__(self, family: str, directory: Path) -> None:
        self.family = family
        self.directory = directory
        self.seeds = itertools.count(100)

    def fresh(self) -> AdapterSpec:
        seed = next(self.seeds)
        path = make_lora(self.family, self.directory / f"{self.family}-{seed}.safetensors", seed)
        return AdapterSpec(f"lora-{seed}", str(path),
                           hashlib.sha256(path.read_bytes()).hexdigest(), 0.8)


def timed(engine: Engine, batch: EngineBatch, before: EngineBatch | None = None) -> float:
    """Seconds of `batch`, after an untimed `before` (the previous batch it follows)."""
    if before is not None:
        engine.generate(before)
    started = time.perf_counter()
    engine.generate(batch)
    return time.perf_counter() - started


def measure(family: str, cache: Path, size: int, steps: int, repeats: int,
            directory: Path) -> dict[str, float]:
    files = Files(family, directory)

    def batch(*adapters: AdapterSpec) -> EngineBatch:
        return EngineBatch(f"easel/tiny-{family}", family, size, size, steps, 3.0,
                           (ImageSpec("a red fox in fresh snow", 1),), adapters=adapters)

    plain = Engine(cache, device="cpu", options=EngineOptions(lora_cache_count=64))
    swapping = Engine(cache, device="cpu",
                      options=EngineOptions(lora_hotswap=True, lora_max_rank=8,
                                            lora_cache_count=3))
    first, second = files.fresh(), files.fresh()
    for engine in (plain, swapping):  # warm: pipelines, both adapters, both slots
        engine.generate(batch(first, second))
    runs: dict[str, Callable[[], float]] = {
        "none": lambda: timed(plain, batch(), before=batch()),
        "same": lambda: timed(plain, batch(first), before=batch(first)),
        "new": lambda: timed(plain, batch(files.fresh()), before=batch(first)),
        "switch": lambda: timed(plain, batch(second), before=batch(first)),
        # Three slots: first and second stay (just used), a new adapter takes the third.
        "hot-swap new": lambda: timed(swapping, batch(files.fresh()), before=batch(first)),
        "hot-swap switch": lambda: timed(swapping, batch(second), before=batch(first)),
    }
    swapping.generate(batch(files.fresh()))  # the third slot opens (later ones swap)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            seconds[name].append(run())
    return {name: statistics.median(values) for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="flux2,zimage,qwenimage")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=None,
                        help="where the stand-ins are built (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        cache = args.cache or Path(scratch) / "models"
        print(f"{args.size}x{args.size}, {args.steps} steps, one image, CPU "
              f"({args.threads} thread(s)), medians of {args.repeats}; ms per batch "
              "(and over the batch without an adapter)\n")
        print("| family | " + " | ".join(SITUATIONS) + " |")
        print("|---|" + "---:|" * len(SITUATIONS))
        for family in args.families.split(","):
            result = measure(family, cache, args.size, args.steps, args.repeats,
                             Path(scratch) / "loras")
            base = result["none"]
            cells = [f"{result['none'] * 1000:.1f}"] + [
                f"{result[name] * 1000:.1f} ({(result[name] - base) * 1000:+.1f})"
                for name in SITUATIONS[1:]]
            print(f"| {family} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
