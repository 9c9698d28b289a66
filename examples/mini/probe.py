"""A quick look at whether a model draws shapes: the nine shapes, big, in the centre, on white.

    python -m examples.mini.probe --model DIR [--checkpoint RUN/checkpoint.pt] [--image OUT.png]

Two colours (green, red) times two seeds: 36 pictures, each judged by the checker's shape
verdict. It takes seconds, so a run can be watched at its checkpoints (`--checkpoint` draws with
the checkpoint's raw weights instead of the saved EMA ones) where the 200-prompt evaluation takes
minutes. docs/mini.md has run 2's figures.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from examples.mini import checker, data

COLOURS = ("green", "red")
SEEDS = (0, 100)


def captions() -> list[tuple[str, str]]:
    """(caption, shape asked) for each colour and shape."""
    return [(f"a big {colour} {shape} in the centre on a plain white background", shape)
            for colour in COLOURS for shape in data.SHAPES]


def drawn_shape(image: np.ndarray) -> str | None:
    blobs = checker.segment(image)
    return checker.classify_shapes([blobs[0].mask])[0] if blobs else None


def probe(pipe: object, size: int = 96) -> tuple[int, list[np.ndarray]]:
    """How many of the pictures show the shape asked, and the pictures (uint8)."""
    import torch

    asked = captions()
    right, images = 0, []
    for seed in SEEDS:
        out = pipe(  # type: ignore[operator]
            [c for c, _ in asked], num_inference_steps=20, guidance_scale=4.0, width=size,
            height=size, output_type="np",
            generator=[torch.Generator().manual_seed(seed + i) for i in range(len(asked))],
        ).images
        drawn = [(np.asarray(im) * 255).round().astype(np.uint8) for im in out]
        right += sum(drawn_shape(im) == shape for im, (_, shape) in zip(drawn, asked, strict=True))
        images += drawn
    return right, images


def main(argv: Sequence[str] | None = None) -> None:
    import torch
    from PIL import Image

    from easel.mini.pipeline import EaselMiniPipeline

    p = argparse.ArgumentParser(prog="python -m examples.mini.probe", description=__doc__)
    p.add_argument("--model", required=True, help="a saved EaselMiniPipeline directory")
    p.add_argument("--checkpoint", help="draw with this training checkpoint's raw weights")
    p.add_argument("--image", help="also save the pictures here, a row per colour and seed")
    args = p.parse_args(argv)
    pipe = EaselMiniPipeline.from_pretrained(args.model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        for name, weights in state["modules"].items():
            getattr(pipe, name).load_state_dict(weights)
    right, images = probe(pipe)
    print(f"shapes right: {right} of {len(images)}")
    if args.image:
        n = len(data.SHAPES)
        rows = [np.concatenate(images[i:i + n], axis=1) for i in range(0, len(images), n)]
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.image)


if __name__ == "__main__":
    main()
