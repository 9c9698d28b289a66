"""Two attacks on the queue, against a real server (loopback), and what a victim pays for them.

- monopoly: one key queues N Runware tasks of the most images and steps, all at once; then
  another key sends one one-image synchronous request. Printed: how long the victim waited,
  against its own run alone.
- cancel loop: the victim runs one job; the attacker keeps a compatible job queued behind it
  and cancels each of its jobs as soon as it starts running (so that it shares the victim's
  engine call). Printed: the victim's time, how many engine calls its job took.

The server runs the fake engine at a fixed cost per denoising step (`--step-seconds`), so the
numbers are the scheduler's, not the machine's. Run it on the code before and after a change:

    .venv/bin/python -m bench.fair_share --tasks 100 --step-seconds 0.05
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from tests.server_harness import Server

ATTACKER, VICTIM = "attacker-key", "victim-key"
MODEL = "google:2@3"


def task(**fields: Any) -> dict[str, Any]:
    return {"taskType": "imageInference", "taskUUID": str(uuid.uuid4()), "model": MODEL,
            "positivePrompt": "a fox", "width": 64, "height": 64, **fields}


def post(server: Server, key: str, tasks: list[dict[str, Any]]) -> httpx.Response:
    reply = httpx.post(server.url + "/v1", json=tasks, timeout=600,
                       headers={"Authorization": f"Bearer {key}"})
    reply.raise_for_status()
    return reply


def victim_seconds(server: Server) -> float:
    started = time.perf_counter()
    post(server, VICTIM, [task(positivePrompt="victim")])
    return time.perf_counter() - started


def monopoly(server: Server, tasks: int, images: int) -> str:
    alone = victim_seconds(server)
    flood = [task(numberResults=images, deliveryMethod="async") for _ in range(tasks)]
    started = time.perf_counter()
    post(server, ATTACKER, flood)
    accepted = time.perf_counter() - started
    waited = victim_seconds(server)
    return (f"monopoly: {tasks} tasks x {images} images accepted in {accepted:.1f} s; the "
            f"victim's one-image request took {waited:.2f} s (alone: {alone:.2f} s)")


def job_state(server: Server, key: str, task_uuid: str) -> str:
    reply = httpx.post(server.url + "/v1", json=[{"taskType": "getResponse",
                                                  "taskUUID": task_uuid}],
                       headers={"Authorization": f"Bearer {key}"}, timeout=60).json()
    items = reply.get("data") or reply.get("errors") or [{}]
    return str(items[-1].get("status", ""))


def cancel_loop(server: Server, images: int, seconds: float) -> str:
    """The attacker polls easel's own API for its job's state (a Runware task cannot be
    cancelled on the wire) and cancels it there."""
    alone = victim_seconds_images(server, images)
    stop = threading.Event()
    cancels = 0

    def attack() -> None:
        nonlocal cancels
        headers = {"Authorization": f"Bearer {ATTACKER}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            while not stop.is_set():
                body = {"model": MODEL, "prompt": "attacker", "num_images": images}
                job = client.post("/easel/jobs", json=body).json()["id"]
                while not stop.is_set():
                    state = client.get(f"/easel/jobs/{job}").json()["status"]
                    if state == "processing":
                        client.post(f"/easel/jobs/{job}/cancel")
                        cancels += 1
                        break
                    if state not in ("queued",):
                        break
                    time.sleep(0.005)

    attacker = threading.Thread(target=attack, daemon=True)
    attacker.start()
    time.sleep(0.2)  # the attacker's first job is queued or running
    started = time.perf_counter()
    done = threading.Event()
    result: dict[str, float] = {}

    def victim() -> None:
        post(server, VICTIM, [task(positivePrompt="victim", numberResults=images)])
        result["seconds"] = time.perf_counter() - started
        done.set()

    threading.Thread(target=victim, daemon=True).start()
    finished = done.wait(seconds)
    stop.set()
    attacker.join(30)
    took = f"{result['seconds']:.2f} s" if finished else f"not done after {seconds:.0f} s"
    return (f"cancel loop: the victim's {images}-image job took {took} (alone: {alone:.2f} s); "
            f"the attacker cancelled {cancels} jobs")


def victim_seconds_images(server: Server, images: int) -> float:
    started = time.perf_counter()
    post(server, VICTIM, [task(positivePrompt="victim alone", numberResults=images)])
    return time.perf_counter() - started


def on_fresh_server(server: Server, attack: Callable[[Server], str]) -> str:
    """Start the server, attack it, stop it (one attack's leftovers never hide the next's)."""
    server.start()
    try:
        return attack(server)
    finally:
        server.stop()


def fair_server(root: Path, step_seconds: float) -> Server:
    """A server of two keys, batches of 4, the fake engine at `step_seconds` a step."""
    return Server(root, step_seconds=step_seconds, EASEL_API_KEYS=f"{ATTACKER},{VICTIM}",
                  EASEL_RATE_LIMIT_BURST=100000, EASEL_RATE_LIMIT_PER_SECOND=100000,
                  EASEL_BATCH_SIZE=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--step-seconds", type=float, default=0.05)
    parser.add_argument("--cancel-images", type=int, default=2)
    parser.add_argument("--cancel-seconds", type=float, default=40.0)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="easel-fair-"))
    attacks = {
        "monopoly": lambda srv: monopoly(srv, args.tasks, args.images),
        "cancel": lambda srv: cancel_loop(srv, args.cancel_images, args.cancel_seconds),
    }
    for name, attack in attacks.items():  # a fresh server each
        print(on_fresh_server(fair_server(data / name, args.step_seconds), attack), flush=True)


if __name__ == "__main__":
    main()
