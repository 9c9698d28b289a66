"""Give a stopped run's UNet base the coordinate channels, so it resumes as the preset with them.

    python -m examples.mini.widen_input OUT

The shipped run trained its first steps as `cpu-plain` (a UNet with no input but the image),
found it placing objects anywhere, and went on as `cpu` (the same UNet told each pixel's x and
y). This rewrites OUT/checkpoint.pt in place (the old one is kept as checkpoint.plain.pt): the
first convolution's kernel, its EMA copy and its AdamW moments gain zero weights for the two new
channels, so the resumed model starts out drawing exactly what it drew, and learns to use them.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from easel.mini import models
from examples.mini.train import Checkpoint

KERNEL = "conv_in.weight"  # the UNet's first convolution: (out, in, k, k)


def widen(kernel: torch.Tensor, extra: int) -> torch.Tensor:
    """The kernel with `extra` more input channels, of zero weight."""
    out, _, kh, kw = kernel.shape
    return torch.cat([kernel, kernel.new_zeros(out, extra, kh, kw)], dim=1)


def widen_checkpoint(state: dict[str, Any], extra: int = models.COORDINATE_CHANNELS) -> None:
    """Widen the base model's first kernel in the weights, the EMA and the optimiser's moments."""
    old = state["modules"]["unet"][KERNEL]
    for weights in (state["modules"]["unet"], state["ema"]["unet"]):
        weights[KERNEL] = widen(weights[KERNEL], extra)
    moments = [s for s in state["optimizer"]["state"].values()
               if s.get("exp_avg") is not None and s["exp_avg"].shape == old.shape]
    if len(moments) != 1:
        raise ValueError(f"expected one optimiser entry shaped {tuple(old.shape)}, "
                         f"found {len(moments)}")
    for key in ("exp_avg", "exp_avg_sq"):
        moments[0][key] = widen(moments[0][key], extra)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m examples.mini.widen_input", description=__doc__)
    p.add_argument("out", type=Path, help="the run's folder (holds checkpoint.pt)")
    args = p.parse_args(argv)
    checkpoint = Checkpoint(args.out)
    state = checkpoint.load()
    if state is None:
        p.error(f"{checkpoint.path} does not exist")
    shutil.copy2(checkpoint.path, args.out / "checkpoint.plain.pt")
    widen_checkpoint(state)
    checkpoint.save(state)
    print(f"{checkpoint.path}: {KERNEL} now takes {state['modules']['unet'][KERNEL].shape[1]} "
          "channels")


if __name__ == "__main__":
    main()
