"""What an edit costs: seconds per image drawn from an input (image-to-image, inpainting, at
strength 0.6; editing by instruction from one reference image) per tier family, next to
text-to-image at the same schedule, median of N; and what an upscale costs (x2, x4) on the
upscale tier's stand-in and on Swin2SR's full-size architecture (random weights).

    .venv/bin/python bench/images_in.py [--families flux2,zimage,qwenimage,mini] [--size 128]
        [--repeats 5] [--threads 2] [--upscale-sizes 64,128]

On the tiny stand-ins (untrained, random weights) this measures easel's overheads around the
diffusers pipelines (input conversion, the img2img/inpaint views, the VAE encode of the input,
the paste-back), not what the real models cost. Schedules: each family's catalog steps, with
Qwen-Image's 50 cut to 10 to keep a CPU run short; at 0.6 a pipeline runs about 60% of them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from easel.domain.errors import InferenceError
from easel.domain.generation import EngineBatch, ImageSpec, Operation
from easel.engine import Engine
from easel.engine.families import input_pipeline
from easel.engine.pipelines import TINY_UPSCALER
from easel.engine.upscaler import Upscaler

STEPS = {"flux2": 4, "zimage": 8, "qwenimage": 10, "mini": 20}  # catalog: 4, 8, 50, 20
GUIDANCE = {"flux2": 1.0, "zimage": 0.0, "qwenimage": 4.0, "mini": 3.0}  # catalog defaults
STRENGTH = 0.6
PROMPT = "a red fox standing in fresh snow at dawn, photograph"


def inputs(size: int) -> dict[str, np.ndarray]:
    """A smooth picture and a centred square mask (white: repaint)."""
    y, x = np.mgrid[0:size, 0:size] * (255 // max(size - 1, 1))
    picture = np.stack([x, y, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    return {"picture": picture, "mask": mask}


def batch(family: str, operation: Operation, size: int) -> EngineBatch:
    mask = "mask" if operation is Operation.INPAINT else None
    init = None if operation in (Operation.TEXT, Operation.REFERENCE) else "picture"
    shown = ("picture",) if operation is Operation.REFERENCE else ()
    source = "easel/mini" if family == "mini" else f"easel/tiny-{family}"  # mini: its weights
    return EngineBatch(source, family, size, size, STEPS[family], GUIDANCE[family],
                       (ImageSpec(PROMPT, 7, init=init, mask=mask, references=shown),),
                       operation=operation, strength=STRENGTH, inputs=inputs(size))


def seconds_per_image(engine: Engine, job: EngineBatch, repeats: int) -> tuple[float, int]:
    """Median seconds of `repeats` runs after one warm-up, and the steps a run takes."""
    steps: list[int] = []
    engine.generate(job, progress=lambda done, total: steps.append(total))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.generate(job)
        times.append(time.perf_counter() - start)
    return statistics.median(times), steps[-1]


def upscale_batch(size: int, factor: int) -> EngineBatch:
    picture = inputs(size)["picture"]
    return EngineBatch(TINY_UPSCALER, "swin2sr", size * factor, size * factor, 1, 0.0,
                       (ImageSpec("", 7, init="picture"),), operation=Operation.UPSCALE,
                       inputs={"picture": picture}, upscale_factor=factor)


def full_size_upscaler() -> Upscaler:
    """Swin2SR as caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr's config.json has it (embed 180,
    six stages of six layers, six heads, window 8, x4 pixel shuffle, 12M parameters), with
    random weights: what the real model costs, not what it draws."""
    from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution

    config = Swin2SRConfig(embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, window_size=8,
                           mlp_ratio=2.0, upscale=4, upsampler="nearest+conv",
                           resi_connection="1conv", img_range=1.0)
    return Upscaler(Swin2SRForImageSuperResolution(config).eval())


def upscale_rows(engine: Engine, sizes: list[int], repeats: int) -> None:
    print("\n| upscaler | input | x2 s | x4 s |\n|---|---|---|---|")
    for size in sizes:
        cells = [f"{seconds_per_image(engine, upscale_batch(size, f), repeats)[0]:.3f}"
                 for f in (2, 4)]
        print(f"| easel/tiny-swin2sr (stand-in) | {size}x{size} | " + " | ".join(cells) + " |")
    full = full_size_upscaler()
    for size in sizes:
        picture = inputs(size)["picture"][None]
        full.enlarge(picture)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            full.enlarge(picture)  # x4: x2 resamples this output (a few ms more)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        print(f"| Swin2SR full size, random weights | {size}x{size} | {seconds:.3f} "
              f"| {seconds:.3f} |")


def can(family: str, operation: Operation) -> bool:
    if operation is Operation.TEXT:
        return True
    try:
        input_pipeline(family, operation)
    except InferenceError:  # the family refuses it by name: the table says so
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="flux2,zimage,qwenimage,mini")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--upscale-sizes", default="64,128")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:
        engine = Engine(Path(cache), device="cpu", max_loaded=1)
        print(f"{args.size}x{args.size}, strength {STRENGTH}, median of {args.repeats}, "
              f"{args.threads} threads\n")
        print("| family | steps | text-to-image s | image-to-image s (steps run) "
              "| inpaint s (steps run) | by instruction s (steps run) |")
        print("|---|---|---|---|---|---|")
        for family in args.families.split(","):
            cells = []
            for operation in (o for o in Operation if o is not Operation.UPSCALE):
                if not can(family, operation):
                    cells.append("refused")
                    continue
                seconds, ran = seconds_per_image(engine, batch(family, operation, args.size),
                                                 args.repeats)
                cells.append(f"{seconds:.3f}" if operation is Operation.TEXT
                             else f"{seconds:.3f} ({ran})")
            print(f"| {family} | {STEPS[family]} | " + " | ".join(cells) + " |")
        upscale_rows(engine, [int(s) for s in args.upscale_sizes.split(",")], args.repeats)


if __name__ == "__main__":
    main()
