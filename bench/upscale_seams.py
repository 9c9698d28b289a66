"""How far tiled upscaling is from upscaling the whole image at once, per context width: Swin2SR
at full size (the architecture of caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr, random
weights) on a 160x96 picture in 48-pixel tiles; the difference in 8-bit levels, max and mean.

    .venv/bin/python -m bench.upscale_seams [--contexts 8,16,32,48] [--threads 2]

Random weights are not the trained ones: a trained model may reach further, so the context the
engine uses (easel/engine/upscaler.py) keeps a margin over the width measured exact here.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench.images_in import full_size_upscaler
from easel.engine.upscaler import Upscaler


def picture() -> np.ndarray:
    """Smooth stripes and a sawtooth: structure in both directions (noise would exaggerate)."""
    y, x = np.mgrid[0:96, 0:160]
    channels = [np.sin(x / 7) * 127 + 128, np.cos(y / 5) * 127 + 128, (x + y) % 64 * 4]
    return np.stack(channels, -1).astype(np.uint8)[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", default="8,16,32,48")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    full = full_size_upscaler()
    image = picture()
    whole = Upscaler(full.model, tile=4096).enlarge(image).astype(int)
    print("| context px | max difference (levels) | mean difference (levels) |")
    print("|---:|---:|---:|")
    for context in (int(c) for c in args.contexts.split(",")):
        tiled = Upscaler(full.model, tile=48, context=context).enlarge(image).astype(int)
        difference = np.abs(tiled - whole)
        print(f"| {context} | {difference.max()} | {difference.mean():.4f} |")


if __name__ == "__main__":
    main()
