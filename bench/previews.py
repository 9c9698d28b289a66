"""What partial images cost: one job with previews=0 and with previews=3, timed alternately.

A preview is one VAE decode of the clean-image prediction the sampler already computed (no extra
model evaluation), so its cost is a decode's. Besides the job's overhead, the run with previews
times each preview's decode (from the step's end to the preview's delivery) and each step.

    .venv/bin/python bench/previews.py [--models easel/tiny-flux,easel/mini] [--size 512]
        [--steps 8] [--repeats 5] [--threads 1]
    python bench/previews.py --arch flux-dev --size 1024      # full size, random weights (GPU)

The tiny stand-ins' denoisers are far smaller than their VAEs, so on them a decode outweighs a
step; `--flops` counts, without a GPU, what one step and one preview decode cost at full size
(the published architectures on the meta device: shapes, no weights):

    .venv/bin/python bench/previews.py --flops [--size 1024]
"""

from __future__ import annotations

import argparse
import functools
import inspect
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from easel.domain.generation import EngineBatch, GeneratedImage, ImageSpec
from easel.engine import Engine
from easel.engine.families import call_kwargs, family_of
from easel.engine.libraries import quiet_libraries

PROMPT = "a red fox standing in fresh snow at dawn, photograph"
MINI_STEPS = 20  # easel-mini's catalog steps: it is measured at its real schedule


class Clock:
    """Step ends and preview deliveries of one job, on one clock (synchronised on a GPU, so a
    timestamp is when the work finished, not when it was queued)."""

    def __init__(self, device: str) -> None:
        cuda = device.startswith("cuda")
        self.sync: Callable[[], None] = torch.cuda.synchronize if cuda else (lambda: None)
        self.step_ends: list[float] = []
        self.preview_costs: list[float] = []

    def progress(self, done: int, total: int) -> None:
        self.sync()
        self.step_ends.append(time.perf_counter())

    def preview(self, index: int, images: list[GeneratedImage]) -> None:
        # Progress is reported at a step's end, before that step's preview is decoded.
        self.preview_costs.append(time.perf_counter() - self.step_ends[-1])


def job(engine: Engine, batch: EngineBatch) -> tuple[float, Clock]:
    clock = Clock(engine.device)
    start = time.perf_counter()
    engine.generate(batch, progress=clock.progress,
                    preview=clock.preview if batch.previews else None)
    clock.sync()
    return time.perf_counter() - start, clock


def measure(engine: Engine, batch: EngineBatch, repeats: int) -> dict[str, float]:
    without = replace(batch, previews=0)
    job(engine, without), job(engine, batch)  # warm-up: allocator, kernels, prompt cache
    plain: list[float] = []
    with_previews: list[float] = []
    steps: list[float] = []
    decodes: list[float] = []
    for _ in range(repeats):  # alternately, so both see the same machine load
        seconds, clock = job(engine, without)
        plain.append(seconds)
        steps += [b - a for a, b in zip(clock.step_ends, clock.step_ends[1:], strict=False)]
        seconds, clock = job(engine, batch)
        with_previews.append(seconds)
        decodes += clock.preview_costs
    t0, t3 = statistics.median(plain), statistics.median(with_previews)
    step, decode = statistics.median(steps), statistics.median(decodes)
    return {"plain": t0, "previews": t3, "overhead": (t3 - t0) / t0 * 100, "step": step,
            "decode": decode, "ratio": decode / step}


class _FirstStep(Exception):
    """Raised by the scheduler's first step: the denoiser has run once for it."""


def _meta_prompt(pipe: Any, family: str) -> dict[str, Any]:
    """Prompt embeddings in place of prompts where the text encoder cannot run on the meta
    device (Qwen's causal masks read values). Text tokens barely weigh against 4096 image
    tokens: FLUX.2 pads to 512; Z-Image and Qwen-Image keep the prompt's own (say 128)."""
    width = getattr(pipe.transformer.config, "joint_attention_dim", None)
    empty = functools.partial(torch.empty, device="meta")
    if family == "flux2":
        return {"prompt": None, "prompt_embeds": empty(1, 512, width)}
    if family == "zimage":
        return {"prompt": None, "negative_prompt": None,
                "prompt_embeds": [empty(128, pipe.transformer.config.cap_feat_dim)]}
    if family == "qwenimage":  # true CFG: the negative branch runs too (two passes a step)
        mask = torch.ones(1, 128, dtype=torch.long)
        return {"prompt": None, "negative_prompt": None, "prompt_embeds": empty(1, 128, width),
                "prompt_embeds_mask": mask, "negative_prompt_embeds": empty(1, 128, width),
                "negative_prompt_embeds_mask": mask}
    return {}


def count_flops(arch: str, size: int) -> tuple[float, float]:
    """(FLOPs of one denoising step, CFG included; FLOPs of one preview decode) at size x size:
    the real pipeline call on the meta device up to its first scheduler step, then the family's
    preview decoder on latents of the shape that step was given."""
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(Path(__file__).parent))
    from full_size import ARCHS, build_full_size

    spec = ARCHS[arch]
    pipe = build_full_size(arch, "meta")
    batch = EngineBatch(arch, spec["family"], size, size, 2, spec["guidance"],
                        (ImageSpec(PROMPT, 7),))
    kwargs = {**call_kwargs(batch, [torch.Generator().manual_seed(7)]),
              **_meta_prompt(pipe, spec["family"]), "output_type": "latent"}
    step_flops = FlopCounterMode(display=False)
    latents: list[torch.Tensor] = []
    original = pipe.scheduler.step
    signature = inspect.signature(original)

    @functools.wraps(original)  # the pipelines read step's signature
    def first_step(*args: Any, **kwargs: Any) -> Any:
        latents.append(signature.bind_partial(*args, **kwargs).arguments["sample"])
        raise _FirstStep()

    pipe.scheduler.step = first_step
    denoiser = StepFlops(step_flops)
    hooks = [pipe.transformer.register_forward_pre_hook(denoiser.before),
             pipe.transformer.register_forward_hook(denoiser.after)]
    try:
        with torch.no_grad(), step_flops:
            pipe(**kwargs)
    except _FirstStep:
        pass
    finally:
        for hook in hooks:
            hook.remove()
    decode_flops = FlopCounterMode(display=False)
    with torch.no_grad(), decode_flops:
        family_of(spec["family"]).decode_preview(pipe, latents[0], size, size)
    return denoiser.flops, float(decode_flops.get_total_flops())


class StepFlops:
    """FLOPs counted inside the denoiser's forward calls (not the text encoders')."""

    def __init__(self, counter: Any) -> None:
        self.counter = counter
        self.flops = 0.0
        self.started = 0

    def before(self, *_: Any) -> None:
        self.started = self.counter.get_total_flops()

    def after(self, *_: Any) -> None:
        self.flops += self.counter.get_total_flops() - self.started


def flops_table(size: int, previews: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from full_size import ARCHS

    quiet_libraries()
    print(f"FLOPs at {size}x{size}, one image; a job = steps x step + one decode")
    print(f"| architecture | steps | TFLOP/step | TFLOP/decode | decode/step | "
          f"+{previews} previews |")
    print("|---|---:|---:|---:|---:|---:|")
    for arch, spec in ARCHS.items():
        step, decode = count_flops(arch, size)
        job = spec["steps"] * step + decode
        print(f"| {arch} | {spec['steps']} | {step / 1e12:.1f} | {decode / 1e12:.2f} | "
              f"{decode / step:.2f} | {previews * decode / job * 100:+.1f}% |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="easel/tiny-flux,easel/mini")
    parser.add_argument("--arch", default=None,
                        help="a full-size architecture of bench/full_size.py instead (a GPU)")
    parser.add_argument("--size", type=int, default=None, help="default: 512, 1024 with --flops")
    parser.add_argument("--steps", type=int, default=8, help="tiny families' steps")
    parser.add_argument("--previews", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1 on a shared machine: contention swamps the rest)")
    parser.add_argument("--flops", action="store_true",
                        help="count full-size FLOPs per step and per decode instead of timing")
    args = parser.parse_args(argv)
    if args.flops:
        flops_table(args.size or 1024, args.previews)
        return
    size = args.size or 512

    engine = Engine(Path(tempfile.mkdtemp(prefix="easel-bench-")), device=args.device,
                    max_loaded=1, num_threads=args.threads)
    jobs: list[EngineBatch] = []
    if args.arch:
        sys.path.insert(0, str(Path(__file__).parent))
        from full_size import ARCHS, build_full_size

        spec = ARCHS[args.arch]
        engine.adopt(args.arch, build_full_size(args.arch, engine.device))
        jobs.append(EngineBatch(args.arch, spec["family"], size, size, spec["steps"],
                                spec["guidance"], (ImageSpec(PROMPT, 7),),
                                previews=args.previews))
    else:
        for source in args.models.split(","):
            family = "mini" if source == "easel/mini" else source.removeprefix("easel/tiny-")
            steps = MINI_STEPS if source == "easel/mini" else args.steps
            jobs.append(EngineBatch(source, family, size, size, steps, 4.0,
                                    (ImageSpec(PROMPT, 7),), previews=args.previews))

    print(f"torch {torch.__version__}, {engine.device}, threads {torch.get_num_threads()}, "
          f"median of {args.repeats}")
    print(f"| model | size | steps | previews=0 s | previews={args.previews} s | overhead | "
          "s/step | s/preview decode | decode/step |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for batch in jobs:
        r = measure(engine, batch, args.repeats)
        print(f"| {batch.source} | {batch.width}x{batch.height} | {batch.steps} | "
              f"{r['plain']:.3f} | {r['previews']:.3f} | {r['overhead']:+.1f}% | "
              f"{r['step']:.4f} | {r['decode']:.4f} | {r['ratio']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
