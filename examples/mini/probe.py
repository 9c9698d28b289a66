"""A quick look at whether a model draws shapes: the nine shapes, big, in the centre, on white.

    python -m examples.mini.probe --model DIR [--run RUN] [--image OUT.png]

Two colours (green, red) times two seeds: 36 pictures, each judged by the checker's shape
verdict. It takes seconds, so a run can be watched at its checkpoints (`--run` draws with the
run's checkpoint's raw weights instead of the saved EMA ones) where the 200-prompt evaluation
takes minutes. docs/mini.md has its figures for runs 2 and 3.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from examples.mini import checker, data

COLOURS = ("green", "red")
SEEDS = (0, 100)


def scenes() -> list[data.Scene]:
    """Each shape in each colour, big, in the centre, on white: what the checker judges."""
    return [data.Scene("single", "plain white",
                       f"a big {colour} {shape} in the centre on a plain white background",
                       (data.SceneObject(shape, colour, "big", 0.5, 0.5, "centre"),),
                       attributes=("shape",))
            for colour in COLOURS for shape in data.SHAPES]


def probe(pipe: object, size: int = 96, steps: int = 20) -> tuple[int, list[np.ndarray]]:
    """How many of the pictures show the shape asked, and the pictures (uint8)."""
    import torch

    asked = scenes()
    right, images = 0, []
    for seed in SEEDS:
        out = pipe(  # type: ignore[operator]
            [s.caption for s in asked], num_inference_steps=steps, guidance_scale=4.0, width=size,
            height=size, output_type="np",
            generator=[torch.Generator().manual_seed(seed + i) for i in range(len(asked))],
        ).images
        drawn = [(np.asarray(im) * 255).round().astype(np.uint8) for im in out]
        verdicts = [checker.check(im, s) for im, s in zip(drawn, asked, strict=True)]
        right += sum(bool(v["shape"]) for v in verdicts)
        images += drawn
    return right, images


def main(argv: Sequence[str] | None = None) -> None:
    import torch
    from PIL import Image

    from easel.mini.pipeline import EaselMiniPipeline
    from examples.mini.train import Checkpoint

    p = argparse.ArgumentParser(prog="python -m examples.mini.probe", description=__doc__)
    p.add_argument("--model", required=True, help="a saved EaselMiniPipeline directory")
    p.add_argument("--run", type=Path, help="a training run's folder: draw with its "
                   "checkpoint's raw weights")
    p.add_argument("--image", help="also save the pictures here, a row per colour and seed")
    p.add_argument("--steps", type=int, default=20, help="sampling steps (the figures: 20)")
    args = p.parse_args(argv)
    pipe = EaselMiniPipeline.from_pretrained(args.model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    if args.run:
        checkpoint = Checkpoint(args.run)
        state = checkpoint.load()
        if state is None:
            p.error(f"{checkpoint.path} does not exist")
        for name, weights in state["modules"].items():
            getattr(pipe, name).load_state_dict(weights)
    right, images = probe(pipe, steps=args.steps)
    print(f"shapes right: {right} of {len(images)}")
    if args.image:
        n = len(data.SHAPES)
        rows = [np.concatenate(images[i:i + n], axis=1) for i in range(0, len(images), n)]
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.image)


if __name__ == "__main__":
    main()
