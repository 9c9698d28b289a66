"""Images/s through the API with finishing on, against easel's engine alone, on the same
weights: what the HTTP layer, the job store and finishing (content check, watermark, PNG,
store) cost on top of generation, and whether finishing keeps up with the GPU.

One process builds one tier's pipeline (bench/gpu.py's `load_arch`: the full-size architecture
with random weights on a GPU, a tiny family on the CPU) and serves it twice:

1. engine alone: batches of `--batch` images, each with a prompt of its own, at the tier's own
   steps, guidance and text length, timed over `--images` images after one warm-up batch;
2. through the API, as `easel serve` runs by default (API and worker in one process): the same
   engine object behind `easel serve`'s own server and uvicorn set-up, and a client process
   with `--clients` concurrent Google `:predict` calls of one image each, Google's defaults
   (watermark on, content check at block_medium_and_above, PNG), until `--images` are done.

The catalog overlay points the tier's backend at a built-in source name under which the bench
adopted the pipeline: the tier is served as if its weights were on disk (no stand-in), with its
own steps and guidance. The submission rate limit is off (one key sends every request).

Besides images/s both ways it reports, from the server's own metrics, the images per engine
call, the share of the wall time the engine ran, finishing's seconds per image and the time the
worker claimed nothing because finishing was behind (easel_worker_waited_for_finishing_seconds).

    # GPU: the Fast tier at 1024x1024, 16 clients
    python bench/api_vs_engine.py --arch flux2-klein-4b --size 1024 --batch 4 --clients 16 \\
        --images 64 --fuse-qkv --attention _native_cudnn --out bench/results/api-gpu.json
    # CPU smoke run (the tiny FLUX.2)
    .venv/bin/python bench/api_vs_engine.py --arch tiny-flux2 --size 256 --batch 2 \\
        --clients 4 --images 8
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from serving import (
    GOOGLE_MODELS,
    KEY,
    free_port,
    predict_body,
    predicted_png,
    tier_serving,
    until_ok,
    write_overlay,
)

PROMPT = "a red fox standing in fresh snow at dawn, photograph"


@dataclass
class Result:
    arch: str
    device: str
    size: int
    batch: int
    steps: int
    clients: int
    images: int
    engine_alone_images_per_second: float
    api_images_per_second: float
    api_share_of_engine_alone: float
    request_seconds_median: float
    images_per_engine_call: float
    engine_busy_share: float
    finishing_seconds_per_image: float
    finishing_threads: int
    waited_for_finishing_seconds: float
    graphs_compiled_while_timed: int
    options: list[str]


# -- the client process ----------------------------------------------------------------------


async def drive(url: str, model: str, clients: int, images: int) -> dict[str, Any]:
    """`clients` callers, each sending one `:predict` at a time until `images` are drawn."""
    numbers = itertools.count()
    latencies: list[float] = []

    async def predict(http: httpx.AsyncClient) -> None:
        # Prompts the engine-alone half never sent: its text-embedding cache holds those.
        body = predict_body(f"{PROMPT}, through the API {next(numbers)}")
        sent = time.perf_counter()
        predicted_png(await http.post(f"/v1beta/models/{model}:predict", json=body))
        latencies.append(time.perf_counter() - sent)

    async def caller(http: httpx.AsyncClient, share: int) -> None:
        for _ in range(share):
            await predict(http)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=900, limits=limits,
                                 headers={"x-goog-api-key": KEY}) as http:
        await asyncio.gather(*(predict(http) for _ in range(clients)))  # warm-up round
        latencies.clear()
        # The server side reads its metrics now, so that they cover the timed part alone.
        print("WARM", flush=True)
        sys.stdin.readline()
        shares = [images // clients + (i < images % clients) for i in range(clients)]
        start = time.perf_counter()
        await asyncio.gather(*(caller(http, share) for share in shares))
        seconds = time.perf_counter() - start
    return {"images": images, "seconds": seconds, "images_per_second": images / seconds,
            "request_seconds_median": statistics.median(latencies)}


# -- the server process ----------------------------------------------------------------------


def engine_alone(engine: Any, batch_of: Any, images: int, batch: int) -> float:
    # Warm-up at every batch size up to `batch`: the worker runs partial batches too, and with
    # compile each new size costs a compile (torch goes dynamic at the second); both halves
    # then time graphs that exist.
    for size in range(1, batch + 1):
        engine.generate(batch_of([f"{PROMPT} warm-up {size} {i}" for i in range(size)]))
    calls = images // batch
    start = time.perf_counter()
    for call in range(calls):
        engine.generate(batch_of([f"{PROMPT} {call} {i}" for i in range(batch)]))
    return calls * batch / (time.perf_counter() - start)


def compiled_graphs() -> float:
    """Graphs torch.compile has made in this process (a recompile in the timed part shows)."""
    from torch._dynamo.utils import counters

    return float(counters["stats"]["unique_graphs"])


def sample(registry: Any, name: str) -> float:
    value = registry.get_sample_value(name)
    return float(value) if value is not None else 0.0


def main(argv: list[str] | None = None) -> Result | None:
    args = parse(argv)
    if args.drive:
        print(json.dumps(asyncio.run(drive(args.drive, args.model, args.clients, args.images))))
        return None

    import torch

    from easel.domain.generation import EngineBatch, ImageSpec
    from easel.engine import Engine
    from easel.engine.optimize import EngineOptions
    from easel.engine.pipelines import default_placement
    from easel.runtime.build import build_server
    from easel.runtime.serve import run_server
    from easel.settings import Settings
    from gpu import load_arch

    device = default_placement(args.device).device
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    pipe, family, _steps, _guidance = load_arch(args.arch, device)
    tier = tier_serving(family, args.arch)
    backend = tier.backend
    source = f"easel/bench-{backend.name}"
    data = Path(tempfile.mkdtemp(prefix="easel-api-bench-"))
    options = EngineOptions(compile=args.compile, compile_cache_dir=args.compile_cache,
                            attention_backend=args.attention, fuse_qkv=args.fuse_qkv)
    engine = Engine(data / "models", device=device, options=options)
    engine.adopt(source, pipe)

    def batch_of(prompts: list[str]) -> EngineBatch:
        specs = tuple(ImageSpec(p, i) for i, p in enumerate(prompts))
        return EngineBatch(source, backend.family, args.size, args.size, backend.steps,
                           backend.guidance, specs, backend.max_sequence_length)

    alone = engine_alone(engine, batch_of, args.images, args.batch)
    print(f"engine alone: {alone:.3f} images/s ({args.arch}, {args.size}px, batch "
          f"{args.batch}, {backend.steps} steps, {', '.join(engine.applied[source]) or '-'})",
          flush=True)

    settings = Settings(
        data_dir=data,
        catalog_file=write_overlay(data / "bench.toml", backend.name, source, args.size),
        api_keys=[KEY], batch_size=args.batch, preload_models=[], rate_limit_per_second=0,
        host="127.0.0.1", port=free_port(), device=device)
    server = build_server(settings, engine_factory=lambda: engine)
    outcome: dict[str, Any] = {}

    metric_names = ("easel_engine_batch_seconds_sum", "easel_engine_batch_images_sum",
                    "easel_engine_batch_images_count", "easel_finishing_seconds_sum",
                    "easel_finishing_seconds_count",
                    "easel_worker_waited_for_finishing_seconds_total")

    def metrics() -> dict[str, float]:
        values = {key: sample(server.runtime.metrics.registry, key) for key in metric_names}
        return {**values, "compiled_graphs": compiled_graphs()}

    def clients() -> None:
        """Once the API answers, run the client process, keep what it says with the metrics of
        its timed part, and stop the server as `easel serve` is stopped (SIGTERM)."""
        try:
            until_ok(f"{settings.base_url}/readyz")
            command = [sys.executable, __file__, "--drive", settings.base_url, "--model",
                       GOOGLE_MODELS[tier.name], "--clients", str(args.clients),
                       "--images", str(args.images)]
            with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) as driver:
                assert driver.stdin is not None and driver.stdout is not None
                if driver.stdout.readline().strip() == "WARM":
                    before = metrics()
                    driver.stdin.write("GO\n")
                    driver.stdin.flush()
                out, err = driver.communicate()
            if driver.returncode != 0:
                outcome["error"] = err[-3000:]
                return
            outcome.update(json.loads(out.strip().splitlines()[-1]))
            after = metrics()
            outcome["metrics"] = {key: after[key] - before[key] for key in after}
        except Exception as exc:  # said by the main thread, once the server is down
            outcome["error"] = repr(exc)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=clients, name="bench-clients", daemon=True).start()
    run_server(server, settings)
    if "error" in outcome:
        raise SystemExit(f"the client process failed:\n{outcome['error']}")
    threads = server.runtime.worker.finishing_threads if server.runtime.worker else 0
    result = summarise(args, name, alone, outcome, backend.steps, engine.applied[source],
                       threads)
    print(json.dumps(asdict(result), indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(asdict(result), indent=1))
    return result


def summarise(args: argparse.Namespace, device: str, alone: float, outcome: dict[str, Any],
              steps: int, options: list[str], threads: int) -> Result:
    metrics = outcome["metrics"]  # of the timed part alone
    calls = max(metrics["easel_engine_batch_images_count"], 1.0)
    finished = max(metrics["easel_finishing_seconds_count"], 1.0)
    served = outcome["images_per_second"]
    return Result(
        arch=args.arch, device=device, size=args.size, batch=args.batch, steps=steps,
        clients=args.clients, images=args.images,
        engine_alone_images_per_second=round(alone, 3),
        api_images_per_second=round(served, 3),
        api_share_of_engine_alone=round(served / alone, 3),
        request_seconds_median=round(outcome["request_seconds_median"], 3),
        images_per_engine_call=round(metrics["easel_engine_batch_images_sum"] / calls, 2),
        engine_busy_share=round(metrics["easel_engine_batch_seconds_sum"] / outcome["seconds"],
                                3),
        finishing_seconds_per_image=round(metrics["easel_finishing_seconds_sum"] / finished, 4),
        finishing_threads=threads,
        waited_for_finishing_seconds=round(
            metrics["easel_worker_waited_for_finishing_seconds_total"], 3),
        graphs_compiled_while_timed=int(metrics["compiled_graphs"]),
        options=options,
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="tiny-flux2")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-cache", type=Path, default=Path(".easel-compile-cache"))
    parser.add_argument("--fuse-qkv", action="store_true")
    parser.add_argument("--attention", default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    parser.add_argument("--drive", default=None, help=argparse.SUPPRESS)  # the client process
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
