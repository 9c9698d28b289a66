"""Load: N concurrent Runware REST clients submit async tasks and poll getResponse for a while.

Starts its own easel (tiny stand-in model, small sizes, CPU) on a free loopback port, then checks
the store afterwards: every acknowledged task completed exactly once, no image id duplicated.
Reports p50/p99 of the time the server adds on top of engine time (client latency minus the
job's engine seconds), with queueing and polling included, since that is what a client sees.

    .venv/bin/python -m bench.load --clients 50 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from tests.server_harness import Server


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def client(url: str, until: float, poll: float, out: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        while time.monotonic() < until:
            task_uuid = str(uuid.uuid4())
            task = {"taskType": "imageInference", "taskUUID": task_uuid, "model": "google:2@3",
                    "positivePrompt": "a red fox in snow", "width": 64, "height": 64,
                    "deliveryMethod": "async"}
            started = time.perf_counter()
            response = await http.post("/v1", json=[task])
            if response.status_code != 200 or "errors" in response.json():
                out["errors"].append(response.text[:200])
                continue
            out["submitted"].append(task_uuid)
            while True:
                await asyncio.sleep(poll)
                body = (await http.post("/v1", json=[
                    {"taskType": "getResponse", "taskUUID": task_uuid}])).json()
                if "errors" in body:
                    out["errors"].append(json.dumps(body)[:200])
                    break
                items = body["data"]
                if items and all(i["status"] == "success" for i in items):
                    out["latency"][task_uuid] = time.perf_counter() - started
                    out["images"].extend(i["imageUUID"] for i in items)
                    break


async def run(url: str, clients: int, seconds: float, poll: float) -> dict[str, Any]:
    out: dict[str, Any] = {"errors": [], "submitted": [], "latency": {}, "images": []}
    until = time.monotonic() + seconds
    await asyncio.gather(*(client(url, until, poll, out) for _ in range(clients)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between polls")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # 50 clients share one caller identity (loopback, no key): the per-caller rate limit
        # would measure itself, not the server.
        srv = Server(Path(tmp) / "data", engine="tiny", EASEL_BATCH_SIZE=args.batch_size,
                     EASEL_STAND_IN="tiny",
                     EASEL_RATE_LIMIT_PER_SECOND=0).start()
        try:
            wall = time.monotonic()
            out = asyncio.run(run(srv.url, args.clients, args.seconds, args.poll))
            wall = time.monotonic() - wall
            report(srv, out, args, wall)
        finally:
            srv.stop()


def report(srv: Server, out: dict[str, Any], args: argparse.Namespace, wall: float) -> None:
    rows = srv.db("SELECT task_id, status, attempts, engine_seconds, created_at, started_at, "
                  "finished_at, batch_id FROM jobs")
    by_id = {r[0]: r for r in rows}
    lost = [t for t in out["submitted"] if t not in by_id or by_id[t][1] != "completed"]
    rerun = [r[0] for r in rows if r[2] != 1]
    duplicates = len(out["images"]) - len(set(out["images"]))
    added = [lat - by_id[t][3] for t, lat in out["latency"].items()]
    engine = [by_id[t][3] for t in out["latency"]]
    queued = [by_id[t][5] - by_id[t][4] for t in out["latency"]]
    batches = {r[7] for r in rows}
    print(f"clients={args.clients} seconds={args.seconds} poll={args.poll}s "
          f"batch_size={args.batch_size} wall={wall:.1f}s")
    print(f"tasks completed={len(out['latency'])} submitted={len(out['submitted'])} "
          f"errors={len(out['errors'])} lost={len(lost)} re-run={len(rerun)} "
          f"duplicate images={duplicates}")
    print(f"throughput={len(out['latency']) / wall:.1f} tasks/s, engine calls={len(batches)}, "
          f"images per call={len(rows) / max(len(batches), 1):.2f}")
    for name, values in (("client latency", list(out["latency"].values())),
                         ("engine time", engine), ("queue wait", queued),
                         ("server-added (latency - engine)", added)):
        if not values:
            print(f"{name}: no data")
            continue
        mean = statistics.fmean(values)
        print(f"{name:34s} p50={pct(values, 0.5) * 1000:8.1f} ms  "
              f"p99={pct(values, 0.99) * 1000:8.1f} ms  mean={mean * 1000:8.1f} ms")
    if out["errors"]:
        print("first errors:", out["errors"][:3])


if __name__ == "__main__":
    main()
