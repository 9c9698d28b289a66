"""Seconds per image for each tiny family on this machine, and easel's engine overhead.

Overhead = engine.generate() minus calling the same loaded diffusers pipeline directly with the
same arguments: what easel's batching, seeding, checks and quantisation add.

    .venv/bin/python bench/engine.py [--steps 2] [--repeats 3] [--sizes 256,1024]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from easel.domain.generation import EngineBatch, ImageSpec
from easel.engine import Engine
from easel.engine.families import call_kwargs
from easel.engine.optimize import EngineOptions

FAMILIES = ("flux", "sd3", "sdxl", "sana")


def interleaved_medians(a: Callable[[], None], b: Callable[[], None],
                        repeats: int) -> tuple[float, float]:
    """Median seconds of a and b, run alternately so both see the same machine load."""
    a(), b()  # warm-up: first calls pay allocator and kernel selection costs
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((a, times_a), (b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="256,1024")
    parser.add_argument("--text-cache", type=int, default=0,
                        help="prompt-embedding cache entries (0: off, to measure pure overhead)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    engine = Engine(Path(tempfile.mkdtemp(prefix="easel-bench-")), device="cpu", max_loaded=1,
                    options=EngineOptions(text_cache_size=args.text_cache))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, steps {args.steps}")
    print("| family | size | engine s/image | direct diffusers s/image | overhead |")
    print("|---|---|---:|---:|---:|")
    for family in FAMILIES:
        for size in sizes:
            batch = EngineBatch(
                f"easel/tiny-{family}",
                family,
                size,
                size,
                args.steps,
                3.0,
                (ImageSpec("a red fox in fresh snow", 7),),
            )
            pipe = engine.pipeline(batch.source)

            def direct(batch: EngineBatch = batch, pipe: object = pipe) -> None:
                gens = [torch.Generator().manual_seed(s.seed) for s in batch.images]
                with torch.inference_mode():
                    pipe(**call_kwargs(batch, gens))  # type: ignore[operator]

            def via_engine(batch: EngineBatch = batch) -> None:
                engine.generate(batch, progress=lambda s, t: None)

            t_direct, t_engine = interleaved_medians(direct, via_engine, args.repeats)
            overhead = (t_engine - t_direct) / t_direct * 100
            print(
                f"| {family} | {size}x{size} | {t_engine:.3f} | {t_direct:.3f} | "
                f"{overhead:+.1f}% |",
                flush=True,
            )


if __name__ == "__main__":
    main()
