"""Seconds per upscale through the engine's tiled upscaler, on Swin2SR's full-size architecture
(that of caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr, random weights: its cost, not its
pixels), on this machine's accelerator in bf16 (or the CPU in float32): x4 of square inputs,
median of N after a warm-up; peak accelerator memory with it.

    .venv/bin/python -m bench.upscale --sizes 256,512,1024 --repeats 3 [--out upscale.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.images_in import full_size_upscaler
from easel.engine.upscaler import Upscaler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    torch.manual_seed(0)
    upscaler = Upscaler(full_size_upscaler().model.to(device, dtype))
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        image = np.random.default_rng(size).integers(0, 256, (1, size, size, 3), np.uint8)
        upscaler.enlarge(image)  # warm-up (the result comes back to the host: synchronised)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            upscaler.enlarge(image)
            times.append(time.perf_counter() - started)
        row = {"device": torch.cuda.get_device_name() if cuda else "cpu", "dtype": str(dtype),
               "input": size, "output": size * 4, "tiles": len(upscaler.tiles(size, size)),
               "seconds": round(statistics.median(times), 4),
               "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}
        rows.append(row)
        print(json.dumps(row))
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
