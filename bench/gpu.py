"""Stock diffusers vs easel's engine, side by side in one process and one run.

On a GPU it builds the full-size architectures with random weights from their published configs
(compute cost does not depend on the weight values, so latency and memory are real): FLUX.1-schnell
and FLUX.1-dev (transformer + T5-XXL + CLIP-L + VAE) and SANA 1.6B (+ Gemma2-2B + DC-AE). On CPU it
runs the same harness on the tiny families, which is how CI tests it.

For each architecture, size and batch it times stock diffusers (eager, the default attention) and
then easel's engine with the chosen options on the same weights and seeds, and reports per-image
latency split into text encoding, denoising and VAE decode, images/s, peak GPU memory, and the
PSNR of easel's images against stock diffusers'.

    # GPU (H100): the issue's targets
    python bench/gpu.py --archs flux-schnell,flux-dev,sana --sizes 1024,2048 --batches 1,4 \
        --compile --fuse-qkv --attention _native_cudnn --out bench/results/gpu.json
    # add --fp8 and/or --step-cache 0.12 for the lossy options (their PSNR is reported)
    # CPU smoke run (tiny families)
    python bench/gpu.py --archs tiny-flux,tiny-sana --sizes 256 --batches 1,2 --repeats 2
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from easel.domain.generation import EngineBatch, ImageSpec, TwoPass
from easel.engine import Engine
from easel.engine.families import TINY_MODELS, call_kwargs, stand_in_dir
from easel.engine.optimize import EngineOptions, psnr
from easel.engine.pipelines import default_placement

sys.path.insert(0, str(Path(__file__).parent))
from full_size import ARCHS, build_full_size
from serving import backend_of

PROMPT = "a red fox standing in fresh snow at dawn, photograph"


@dataclass
class Row:
    arch: str
    runner: str  # "diffusers" or "easel"
    size: int
    batch: int
    steps: int
    seconds_per_image: float
    images_per_second: float
    text_encode_s: float
    denoise_s: float
    vae_decode_s: float
    peak_gpu_gib: float | None
    psnr_vs_diffusers_db: float | None = None
    options: list[str] = field(default_factory=list)


class StageTimer:
    """Times text encoding and the VAE by wrapping the pipeline's own methods. The VAE's encode
    counts with its decode: the two-pass path encodes the upscaled draft for its refine pass
    (the refiner shares this VAE; its text encoding comes from the engine's cache)."""

    def __init__(self, pipe: Any, device: str) -> None:
        self.device = device
        self.encode = 0.0
        self.decode = 0.0
        pipe.encode_prompt = self._wrap(pipe.encode_prompt, "encode")
        pipe.vae.decode = self._wrap(pipe.vae.decode, "decode")
        pipe.vae.encode = self._wrap(pipe.vae.encode, "decode")

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def _wrap(self, fn: Callable[..., Any], stage: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._sync()
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            self._sync()
            setattr(self, stage, getattr(self, stage) + time.perf_counter() - start)
            return result

        return timed

    def reset(self) -> None:
        self.encode = self.decode = 0.0


@contextmanager
def peak_memory(device: str) -> Iterator[list[float | None]]:
    box: list[float | None] = [None]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    yield box
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        box[0] = torch.cuda.max_memory_allocated() / 2**30


def specs(size: int, batch: int, repeat: int) -> tuple[ImageSpec, ...]:
    # A fresh prompt per run, so the text-embedding cache does not flatter easel.
    return tuple(ImageSpec(f"{PROMPT} #{size}-{batch}-{repeat}", 1000 + i) for i in range(batch))


def measure(
    run: Callable[[int], Any], timer: StageTimer, device: str, repeats: int, warmups: int
) -> tuple[list[float], list[tuple[float, float]], float | None, Any]:
    for w in range(warmups):
        run(-1 - w)
    totals, stages, output = [], [], None
    with peak_memory(device) as peak:
        for r in range(repeats):
            timer.reset()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            output = run(r)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            totals.append(time.perf_counter() - start)
            stages.append((timer.encode, timer.decode))
    return totals, stages, peak[0], output


def row(
    arch: str,
    runner: str,
    size: int,
    batch: int,
    steps: int,
    totals: list[float],
    stages: list[tuple[float, float]],
    peak: float | None,
    options: list[str],
) -> Row:
    total = statistics.median(totals)
    encode = statistics.median(s[0] for s in stages)
    decode = statistics.median(s[1] for s in stages)
    return Row(
        arch,
        runner,
        size,
        batch,
        steps,
        total / batch,
        batch / total,
        encode / batch,
        (total - encode - decode) / batch,
        decode / batch,
        peak,
        None,
        options,
    )


def bench_arch(arch: str, args: argparse.Namespace, options: EngineOptions) -> list[Row]:
    device = default_placement(args.device).device
    pipe, family, steps, guidance = load_arch(arch, device)
    steps = args.steps or steps
    timer = StageTimer(pipe, device)
    engine = Engine(Path(tempfile.mkdtemp(prefix="easel-bench-")), device=device, options=options)
    rows: list[Row] = []
    stock_images: dict[tuple[int, int], Any] = {}
    for size in args.sizes:
        for batch in args.batches:

            def stock(r: int, size: int = size, batch: int = batch) -> Any:
                eb = EngineBatch(arch, family, size, size, steps, guidance, specs(size, batch, r))
                gens = [torch.Generator("cpu").manual_seed(s.seed) for s in eb.images]
                with torch.inference_mode():
                    return pipe(**call_kwargs(eb, gens)).images

            t, s, p, out = measure(stock, timer, device, args.repeats, args.warmups)
            stock_images[(size, batch)] = out
            rows.append(row(arch, "diffusers", size, batch, steps, t, s, p, ["eager"]))
            print_row(rows[-1])
    engine.adopt(arch, pipe)  # applies easel's options to the same weights, in place
    for size in args.sizes:
        for batch in args.batches:

            plan = two_pass_plan(arch, family, size) if args.two_pass else None

            def ours(r: int, size: int = size, batch: int = batch,
                     plan: TwoPass | None = plan) -> Any:
                eb = EngineBatch(arch, family, size, size, steps, guidance, specs(size, batch, r),
                                 two_pass=plan)
                return engine.generate(eb)

            t, s, p, out = measure(ours, timer, device, args.repeats, args.warmups)
            applied = [*engine.applied[arch], *(["two-pass"] if plan else [])]
            result = row(arch, "easel", size, batch, steps, t, s, p, applied)
            reference = stock_images[(size, batch)]
            # The two-pass path draws another picture than one pass at full size: no PSNR.
            result.psnr_vs_diffusers_db = None if plan else min(
                min(psnr(img.pixels, (ref.clip(0, 1) * 255).round().astype("uint8")), 999.0)
                for img, ref in zip(out, reference, strict=True)
            )
            rows.append(result)
            print_row(result)
    return rows


def two_pass_plan(arch: str, family: str, size: int) -> TwoPass | None:
    """How the server draws `size` on this architecture's backend (None: in one pass)."""
    plan: TwoPass | None = backend_of(family, arch).two_pass(size, size)
    return plan


def load_arch(arch: str, device: str) -> tuple[Any, str, int, float]:
    """(pipeline on device, family, default steps, guidance)."""
    if arch.startswith("tiny-"):
        family = arch.removeprefix("tiny-")
        from diffusers import DiffusionPipeline

        path = stand_in_dir(f"easel/{arch}", Path(tempfile.mkdtemp(prefix="easel-tiny-")))
        assert f"easel/{arch}" in TINY_MODELS
        pipe = DiffusionPipeline.from_pretrained(str(path)).to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe, family, 4, 3.5
    spec = ARCHS[arch]
    pipe = build_full_size(arch, device)
    return pipe, spec["family"], spec["steps"], spec["guidance"]


def print_row(r: Row) -> None:
    peak = f"{r.peak_gpu_gib:.1f}" if r.peak_gpu_gib is not None else "-"
    quality = "-" if r.psnr_vs_diffusers_db is None else f"{r.psnr_vs_diffusers_db:.1f}"
    print(
        f"| {r.arch} | {r.runner} | {r.size}x{r.size} | {r.batch} | {r.steps} | "
        f"{r.seconds_per_image:.3f} | {r.images_per_second:.2f} | {r.text_encode_s:.3f} | "
        f"{r.denoise_s:.3f} | {r.vae_decode_s:.3f} | {peak} | {quality} | "
        f"{', '.join(r.options)} |",
        flush=True,
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    on_gpu = torch.cuda.is_available()
    parser.add_argument(
        "--archs", default="flux-schnell,flux-dev,sana" if on_gpu else "tiny-flux,tiny-sana"
    )
    parser.add_argument("--sizes", default="1024,2048" if on_gpu else "256")
    parser.add_argument("--batches", default="1,4" if on_gpu else "1,2")
    parser.add_argument("--steps", type=int, default=None, help="default: the tier's steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmups", type=int, default=1)
    parser.add_argument("--device", default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-mode", default="default")
    parser.add_argument("--compile-cache", type=Path, default=Path(".easel-compile-cache"))
    parser.add_argument("--fuse-qkv", action="store_true")
    parser.add_argument("--attention", default=None)
    parser.add_argument("--fp8", action="store_true")
    parser.add_argument("--step-cache", type=float, default=None)
    parser.add_argument("--vae-tiling-pixels", type=int, default=None)
    parser.add_argument("--two-pass", action="store_true",
                        help="easel draws sizes above the model's native ones as the server does "
                             "(the catalog's two-pass plan); stock diffusers in one pass")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.batches = [int(b) for b in args.batches.split(",")]
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse(argv)
    options = EngineOptions(
        compile=args.compile,
        compile_mode=args.compile_mode,
        compile_cache_dir=args.compile_cache,
        attention_backend=args.attention,
        fuse_qkv=args.fuse_qkv,
        quantize="fp8" if args.fp8 else None,
        step_cache_threshold=args.step_cache,
        vae_tiling_pixels=args.vae_tiling_pixels,
    )
    device = default_placement(args.device).device
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    print(f"device {name}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(
        "| arch | runner | size | batch | steps | s/image | images/s | text enc s | denoise s "
        "| VAE s | peak GiB | PSNR dB | options |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    rows: list[Row] = []
    for arch in args.archs.split(","):
        rows += bench_arch(arch, args, options)
        # The architecture's pipeline goes before the next is built: its wrapped methods and
        # compiled blocks hold it in reference cycles, which only a collection frees, and its
        # compiled graphs would count against the next one's recompile limit.
        gc.collect()
        torch._dynamo.reset()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        if args.out:  # after each architecture: a run cut off keeps the finished ones
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return rows


if __name__ == "__main__":
    main()
