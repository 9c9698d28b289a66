"""Draw the prompts docs/mini.md shows, with the shipped easel-mini weights (or any model folder).

    python -m examples.mini.gallery [--model DIR] [--out docs/images]

Each prompt is drawn at 256x256, 20 steps, guidance 4, with its own seed, as a newcomer's
first request would be served; the files are `mini-<slug>.png`. The script prints the Markdown
that shows them, so the page and the pictures come from one run.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# The prompts a new user tried first (the shapes issue names them); some of their words are
# outside the model's vocabulary, and the pictures show what it makes of them.
PROMPTS: tuple[str, ...] = (
    "a red circle on a white background",
    "two blue squares",
    "a cat wearing a hat",
    "a poster with the text HELLO",
)


@dataclass(frozen=True)
class Drawn:
    prompt: str
    path: Path
    seed: int


def slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")


def draw(model: Path, out: Path, prompts: Sequence[str], seed: int = 0,
         steps: int = 20) -> list[Drawn]:
    import torch

    from easel.mini.pipeline import EaselMiniPipeline

    pipe = EaselMiniPipeline.from_pretrained(model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    out.mkdir(parents=True, exist_ok=True)
    drawn = []
    for i, prompt in enumerate(prompts):
        image = pipe(prompt, num_inference_steps=steps, guidance_scale=4.0, width=256,
                     height=256, generator=torch.Generator().manual_seed(seed + i),
                     output_type="pil").images[0]
        path = out / f"mini-{slug(prompt)}.png"
        image.save(path)
        drawn.append(Drawn(prompt, path, seed + i))
    return drawn


def markdown(drawn: Sequence[Drawn], relative_to: Path) -> str:
    """A table of the pictures, each captioned with its prompt and seed."""
    head = "| " + " | ".join(f"`{d.prompt}` (seed {d.seed})" for d in drawn) + " |"
    rule = "|" + "---|" * len(drawn)
    cells = "| " + " | ".join(
        f"![{d.prompt}]({d.path.relative_to(relative_to).as_posix()})" for d in drawn) + " |"
    return "\n".join((head, rule, cells))


def main(argv: Sequence[str] | None = None) -> None:
    from easel.mini.weights import mini_weights_dir

    p = argparse.ArgumentParser(prog="python -m examples.mini.gallery", description=__doc__)
    p.add_argument("--model", type=Path, default=None, help="default: the shipped weights")
    p.add_argument("--out", type=Path, default=Path("docs/images"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    drawn = draw(args.model or mini_weights_dir(), args.out, PROMPTS, args.seed)
    print(markdown(drawn, args.out.parent))


if __name__ == "__main__":
    main()
