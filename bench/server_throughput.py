"""Images/s through the HTTP API with N concurrent clients vs the engine alone, same work.

The engine-alone figure runs batches of `--batch` images directly on easel's engine in this
process. The server figure starts `easel serve` (same tiny stand-in model, same size, same steps,
same batch size) and has `--clients` concurrent Runware REST clients send sync tasks of one image
each until `--images` images are done. Every image has a prompt of its own on both sides, so
neither is helped by the text-embedding cache. The ratio is what the HTTP layer, the job store,
encoding and storage cost on top of generation.

`--worker-process` runs the API as `easel serve --no-worker` and the engine in an
`easel worker` process beside it (one store), instead of a worker thread in the API process.

    .venv/bin/python -m bench.server_throughput --clients 16 --images 64 --size 512
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from tests.server_harness import MODELS_CACHE, Server

from easel.domain.generation import EngineBatch, ImageSpec
from easel.engine import Engine

PROMPT = "a red fox in fresh snow, photograph"


def engine_alone(images: int, batch: int, size: int, steps: int) -> float:
    engine = Engine(MODELS_CACHE, device="cpu")
    numbers = itertools.count()

    def run(n: int) -> None:
        # A prompt of its own per image, as the server's clients send: no text-cache hits.
        specs = tuple(ImageSpec(f"{PROMPT} {next(numbers)}", i) for i in range(n))
        engine.generate(EngineBatch("easel/tiny-flux", "flux", size, size, steps, 0.0, specs))

    run(batch)  # warm-up
    start = time.perf_counter()
    for _ in range(images // batch):
        run(batch)
    return (images // batch) * batch / (time.perf_counter() - start)


async def through_server(url: str, images: int, clients: int, size: int) -> float:
    remaining = images
    lock = asyncio.Lock()

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal remaining
        while True:
            async with lock:
                if remaining <= 0:
                    return
                remaining -= 1
            task = {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()),
                    "model": "google:2@3", "positivePrompt": f"{PROMPT} {remaining}",
                    "width": size, "height": size, "deliveryMethod": "sync", "outputType": "URL"}
            response = await http.post("/v1", json=[task])
            body = response.json()
            if response.status_code != 200 or "errors" in body:
                raise RuntimeError(f"task failed: {response.text[:300]}")

    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        # Warm-up: one batch through the whole path before the clock starts.
        await asyncio.gather(*(client_once(http, size) for _ in range(clients)))
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return images / (time.perf_counter() - start)


async def client_once(http: httpx.AsyncClient, size: int) -> None:
    task = {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), "model": "google:2@3",
            "positivePrompt": f"{PROMPT} warm-up {uuid.uuid4()}", "width": size,
            "height": size, "deliveryMethod": "sync"}
    (await http.post("/v1", json=[task])).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--worker-process", action="store_true",
                        help="API-only server plus an `easel worker` process")
    args = parser.parse_args()

    alone = engine_alone(args.images, args.batch, args.size, args.steps)
    gc.collect()  # the engine-alone pipeline is gone before the server starts
    print(f"engine alone: {alone:.3f} images/s (batch {args.batch}, {args.size}px, "
          f"{args.steps} steps)", flush=True)

    data = Path(tempfile.mkdtemp(prefix="easel-throughput-"))
    data.mkdir(exist_ok=True)
    catalog = data / "sizes.toml"
    catalog.write_text(f'[sizes]\n"1:1" = [{args.size}, {args.size}]\n')
    server = Server(data / "srv", small=False, engine="tiny", EASEL_CATALOG_FILE=catalog,
                    EASEL_BATCH_SIZE=args.batch, EASEL_STAND_IN="tiny",
                    EASEL_STAND_IN_MAX_STEPS=args.steps)
    worker = None
    if args.worker_process:
        server.command = ["-m", "easel.cli", "serve", "--no-worker"]
    server.start()
    if args.worker_process:
        env = {**os.environ, **server.env, "EASEL_DATA_DIR": str(server.data_dir)}
        worker = subprocess.Popen([sys.executable, "-m", "easel.cli", "worker", "--data-dir",
                                   str(server.data_dir)], env=env)
    try:
        served = asyncio.run(through_server(server.url, args.images, args.clients, args.size))
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(60)
        server.stop()
    setup = "API + worker process" if args.worker_process else "one process"
    print(f"through HTTP, {args.clients} clients ({setup}): {served:.3f} images/s", flush=True)
    print(f"ratio: {served / alone * 100:.1f}% of engine-alone throughput")


if __name__ == "__main__":
    main()
