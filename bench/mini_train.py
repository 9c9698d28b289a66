"""Training throughput of the easel-mini presets on this machine: samples/s and GFLOP/s, and
what the denoiser costs an image when serving.

One training step (text encoder + base denoiser, forward, backward, AdamW) on random inputs of
the preset's base size; FLOPs are counted by torch's FlopCounterMode on the first step, the time
is the median of `--repeat` steps after one warm-up. Data rendering is not included (it runs in
a loader process beside the trainer). The serving column is the denoiser alone, in fp32, on
batches of 8 images with classifier-free guidance (16 rows), times 20 steps, per image.

    .venv/bin/python -m bench.mini_train --presets cpu cpu-p4 cpu-p2 --bf16
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from examples.mini.vocabulary import default_tokenizer
from torch.utils.flop_counter import FlopCounterMode

from easel.mini import models
from easel.mini.pipeline import denoise
from easel.mini.tokenizer import encode


def measure(preset_name: str, batch: int, repeat: int, bf16: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    preset = models.PRESETS[preset_name]
    tokenizer = default_tokenizer()
    text = models.text_encoder(preset, len(tokenizer))
    base = models.base_model(preset)
    params = list(text.parameters()) + list(base.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    ids, mask = encode(tokenizer, ["a big red star on the left, on grass"] * batch, "cpu")
    size = preset.base_size
    x = torch.randn(batch, 3, size, size)
    t = torch.randint(0, models.NUM_TRAIN_TIMESTEPS, (batch,))

    def step() -> None:
        cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with cast:
            pred = denoise(base, x, t, text(ids, mask), mask)
        loss = F.mse_loss(pred.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {
        "serve_s": _serving_seconds(base, text, tokenizer, size),
        "preset": preset_name, "bf16": bf16, "batch": batch, "base_size": size,
        "params_m": sum(p.numel() for p in base.parameters()) / 1e6,
        "gflop_per_sample": flops / batch / 1e9,
        "samples_per_s": batch / seconds,
        "gflop_per_s": flops / seconds / 1e9,
    }


def _serving_seconds(base: Any, text: Any, tokenizer: Any, size: int) -> float:
    """The denoiser's seconds per image at 20 steps with guidance, batches of 8, in fp32 (run
    last: it leaves the models in eval mode)."""
    base.eval()
    text.eval()
    with torch.no_grad():
        ids, mask = encode(tokenizer, ["a red circle on grass"] * 16, "cpu")
        embeds = text(ids, mask)
        x = torch.randn(16, 3, size, size)
        t = torch.tensor(500)
        denoise(base, x, t, embeds, mask)
        started = time.perf_counter()
        for _ in range(5):
            denoise(base, x, t, embeds, mask)
        per_step = (time.perf_counter() - started) / 5
    return per_step * 20 / 8


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.mini_train", description=__doc__)
    p.add_argument("--presets", nargs="+", default=["cpu", "cpu-p4", "cpu-p2"])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--bf16", action="store_true", help="also measure with bf16 autocast")
    args = p.parse_args()
    batches = {"tiny": 32, "full": 16, "cpu": 32, "cpu-p4": 64, "cpu-p2": 64}
    print("| preset | autocast | batch | base | base params | GFLOP/sample | samples/s | GFLOP/s "
          "| serving s/image |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.presets:
        for bf16 in (False, True) if args.bf16 else (False,):
            r = measure(name, batches.get(name, 32), args.repeat, bf16)
            print(f"| {name} | {'bf16' if bf16 else 'fp32'} | {r['batch']} | {r['base_size']}px"
                  f" | {r['params_m']:.2f}M | {r['gflop_per_sample']:.2f} "
                  f"| {r['samples_per_s']:.1f} | {r['gflop_per_s']:.0f} "
                  f"| {r['serve_s']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
