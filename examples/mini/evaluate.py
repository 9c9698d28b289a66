"""Judge an easel-mini model on the 200 held-out prompts, GenEval-style.

    python -m examples.mini.evaluate --model DIR [--ground-truth] [--json OUT]

`--ground-truth` judges the generator's own renders instead of a model: the checker's ceiling.
`--split train` asks for training's combinations instead of the held-out ones.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from examples.mini import checker, data


def generate(model: str, prompts: list[str], args: argparse.Namespace) -> list[np.ndarray]:
    import torch

    from easel.mini.pipeline import EaselMiniPipeline

    pipe = EaselMiniPipeline.from_pretrained(model, dtype=torch.float32).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    images: list[np.ndarray] = []
    started = time.perf_counter()
    for start in range(0, len(prompts), args.batch):
        chunk = prompts[start:start + args.batch]
        gens = [torch.Generator().manual_seed(args.seed + start + i) for i in range(len(chunk))]
        out = pipe(chunk, num_inference_steps=args.steps, guidance_scale=args.guidance,
                   width=256, height=256, generator=gens, output_type="np")
        images.extend(list(out.images))
    args.seconds_per_image = (time.perf_counter() - started) / max(1, len(prompts))
    return images


def evaluate(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The table over all prompts, and one per kind of prompt (single object, count, relation,
    word): where an attribute is lost, by the kind of scene that loses it."""
    scenes = data.heldout_scenes(args.n, split=args.split)
    if args.ground_truth:
        images = [data.render(s, 256) for s in scenes]
    else:
        images = generate(args.model, [s.caption for s in scenes], args)
    verdicts = [checker.check(img, s) for img, s in zip(images, scenes, strict=True)]
    by_kind: dict[str, Any] = {}
    for kind in dict.fromkeys(s.kind for s in scenes):
        of_kind = [v for v, s in zip(verdicts, scenes, strict=True) if s.kind == kind]
        by_kind[kind] = checker.summarize(of_kind)
    return checker.summarize(verdicts), by_kind


def format_by_kind(by_kind: dict[str, Any]) -> str:
    """One line per kind: each attribute as right/judged."""
    lines = []
    for kind, table in by_kind.items():
        cells = [f"{attr} unavailable" if row["accuracy"] is None
                 else f"{attr} {round(row['accuracy'] * row['n'])}/{row['n']}"
                 for attr, row in table.items() if attr != "overall"]
        lines.append(f"{kind:<9} " + ", ".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m examples.mini.evaluate", description=__doc__)
    p.add_argument("--model", help="a saved EaselMiniPipeline directory")
    p.add_argument("--ground-truth", action="store_true", help="judge the generator's renders")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--split", choices=("heldout", "train"), default="heldout",
                   help="train: the same mix of prompts from training's combinations")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the table here")
    args = p.parse_args(argv)
    if not args.ground_truth and not args.model:
        p.error("--model is required (or --ground-truth)")
    table, by_kind = evaluate(args)
    print(checker.format_table(table))
    print("by kind of prompt:\n" + format_by_kind(by_kind))
    record: dict[str, Any] = {"accuracy": table, "by_kind": by_kind}
    if not args.ground_truth:
        print(f"{args.seconds_per_image:.3f} s per 256x256 image on {args.device} "
              f"(batch {args.batch}, {args.steps} steps, guidance {args.guidance})")
        record.update(seconds_per_image=args.seconds_per_image, steps=args.steps,
                      guidance=args.guidance, batch=args.batch, seed=args.seed)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
