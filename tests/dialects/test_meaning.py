"""easel-mini's pictures answer their prompts, through each dialect's official SDK.

The shipped easel-mini weights serve every tier here (no real weights are present), so the
project's checker (examples.mini.checker) can tell whether an image shows what its prompt asked.
Jobs are queued first, on a server without a worker, and one worker started after them claims
them together: image i of a batch must answer prompt i, wherever it sat in the batch. The worker
then stays for the module's later tests.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from examples.mini import checker, data
from PIL import Image

from easel.services.weights.files import weights_present
from tests.dialects.conftest import CLIENTS, KEY
from tests.server_harness import SMALL_SIZES, Server

# Picked once from the training distribution: plain backgrounds, one big object each, three
# different colours in three different places, so swapped images cannot pass.
PROMPTS = (
    ("a big red circle at the top, on a plain grey background", "red", "top"),
    ("a big blue square on the left, on a black background", "blue", "left"),
    ("a big yellow star at the bottom, on a beige background", "yellow", "bottom"),
)

# Two objects of two colours; the negative prompt names one of them in the form of the model's
# own captions. The shipped model binds a prompt's own words strongly: at its default guidance 4
# this negative prompt takes blue from 1 picture of 8, at guidance 7 from 8 of 16 (docs/mini.md;
# from 9 of 16 at the 10 steps below), so the request asks for 7 (Runware's CFGScale).
NEGATIVE_CASE: dict[str, Any] = {
    "prompt": "a red circle above a blue square, on a plain grey background",
    "negative": "a blue square on a plain grey background", "colour": "blue", "other": "red",
    "seeds": range(16), "guidance": 7.0,
}


# easel-mini samples 20 steps by default; these tests ask for 10, which halves the worker's time
# and draws what they judge as well: with the pipeline called directly, the colours of PROMPTS
# right in 12 of 12 pictures (seeds 100-403) at 20 steps and at 10, the negative case's blue
# 16 -> 8 of 16 at 20 steps and 16 -> 7 at 10, red kept in all 16 at both.
MEANING_STEPS = """
[backends.mini]
steps = 10
"""


def scene(prompt: str, colour: str, position: str) -> data.Scene:
    """The ground truth the checker judges against: one object of that colour and place."""
    shape = next(s for s in data.SHAPES if s in prompt)
    obj = data.SceneObject(shape, colour, "big", 0.5, 0.5, position)
    return data.Scene("single", "grey", prompt, (obj,),
                      attributes=("colour", "position"))


def as_checker_image(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png)).convert("RGB").resize((256, 256), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255


@dataclass
class Call:
    """One SDK call running in its own process; `png()` is the image it got back."""

    name: str
    proc: subprocess.Popen[str]
    decode: Callable[[dict[str, Any]], bytes]

    def result(self) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=240)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        assert self.proc.returncode == 0 and lines, f"{self.name}: {out}\n{err}"
        reply: dict[str, Any] = json.loads(lines[-1])
        return reply

    def png(self) -> bytes:
        return self.decode(self.result())


def launch(python: Path, script: Path, spec: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(python), str(script), json.dumps(spec)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


RUNWARE_CLIENT = Path(__file__).parents[1] / "runware" / "clients" / "sdk.py"


def calls_for(srv: Server, sdks: dict[str, Path], dialect: str, prompt: str, seed: int,
              **extra: Any) -> Call:
    """Start one generation of `prompt` through `dialect`'s SDK (it waits for its image)."""
    if dialect == "openai":
        spec = {"url": srv.url, "key": KEY, "kwargs": {
            "model": "google/imagen-4.0-generate-001", "prompt": prompt,
            "response_format": "b64_json"}, "extra_body": {"seed": seed, **extra}}
        return Call(dialect, launch(sdks["openai"], CLIENTS / "openai_client.py", spec),
                    lambda r: base64.b64decode(r["response"]["data"][0]["b64_json"]))
    if dialect == "google":
        spec = {"url": srv.url, "key": KEY, "mode": "vertex", "model": "imagen-4.0-generate-001",
                "prompt": prompt, "config": {"seed": seed, "add_watermark": False,
                                             "number_of_images": 1, **extra}}
        return Call(dialect, launch(sdks["google-genai-3"], CLIENTS / "google_client.py", spec),
                    lambda r: base64.b64decode(r["images"][0]["b64"]))
    if dialect == "wavespeed":
        spec = {"url": srv.url, "key": KEY, "model": "google/imagen4",
                "input": {"prompt": prompt, "seed": seed, **extra}}
        return Call(dialect, launch(sdks["wavespeed"], CLIENTS / "wavespeed_client.py", spec),
                    lambda r: httpx.get(r["outputs"][0], timeout=30).content)
    task = {"model": "google:2@1", "positivePrompt": prompt, "seed": seed, "width": 64,
            "height": 64, "outputType": "base64Data", **extra}
    spec = {"transport": "rest", "url": f"{srv.url}/v1", "apiKey": KEY, "task": task}
    return Call(dialect, launch(sdks["runware-sdk"], RUNWARE_CLIENT, spec),
                lambda r: base64.b64decode(r["images"][0]["imageBase64Data"]))


DIALECTS = ("openai", "google", "wavespeed", "runware")

# These judge easel-mini's pictures, so they need its trained weights in the package.
pytestmark = pytest.mark.skipif(not weights_present("easel/mini"),
                                reason="easel-mini's trained weights are not in the package yet")


@pytest.fixture(scope="module")
def queued_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that queues jobs and runs none: the tests start a worker when all are in."""
    # The SDK clients poll ten times a second (the suite waits less), several jobs at once.
    srv = Server(tmp_path_factory.mktemp("easel-meaning"), EASEL_API_KEYS=KEY,
                 EASEL_RUN_WORKER="false", EASEL_RATE_LIMIT_PER_SECOND=100)
    srv.overlay = SMALL_SIZES + MEANING_STEPS
    srv.start()
    yield srv
    srv.stop()


def wait_queued(srv: Server, n: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.db("SELECT COUNT(*) FROM jobs WHERE status = 'queued'")[0][0] >= n:
            return
        time.sleep(0.2)
    jobs = srv.db("SELECT id, status FROM jobs")
    raise AssertionError(f"fewer than {n} jobs were queued: {jobs}")


@dataclass
class ModuleWorker:
    """The module's one worker process, the diffusers engine on easel-mini (starting one costs
    some 7 s of CPU: it imports diffusers). A test starts it once all its jobs are queued, so
    they are claimed together; it then runs the later tests' jobs as they come."""

    srv: Server
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start_after(self, queued: int, fresh: bool = False) -> None:
        """Wait until `queued` jobs are queued and start the worker, unless one runs already;
        `fresh`: stop a running one first, so that these jobs are queued together too."""
        if fresh:
            self.stop()
        if self.proc is None:
            wait_queued(self.srv, queued)
            self.proc = self.srv.worker(self.log, engine="tiny")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(60)
            self.proc = None


@pytest.fixture(scope="module")
def worker(queued_server: Server, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ModuleWorker]:
    one = ModuleWorker(queued_server, tmp_path_factory.mktemp("meaning-worker") / "worker.log")
    yield one
    one.stop()


def test_each_image_of_a_batch_answers_its_own_prompt(
    queued_server: Server, sdks: dict[str, Path], worker: ModuleWorker
) -> None:
    srv = queued_server
    earlier = {row[0] for row in srv.db("SELECT id FROM jobs")}
    calls, scenes = [], []
    for dialect in DIALECTS:
        for i, (prompt, colour, position) in enumerate(PROMPTS):
            calls.append(calls_for(srv, sdks, dialect, prompt, seed=100 + i))
            scenes.append(scene(prompt, colour, position))
    worker.start_after(len(calls), fresh=True)  # all twelve queued before any is claimed
    images = [call.png() for call in calls]
    jobs = [row for row in srv.db("SELECT id, batch_id FROM jobs") if row[0] not in earlier]
    sizes = [sum(1 for _, b in jobs if b == batch) for _, batch in jobs]
    assert len(jobs) == len(calls) and max(sizes) > 1, jobs  # prompts shared engine calls
    for call, png, truth in zip(calls, images, scenes, strict=True):
        verdict = checker.check(as_checker_image(png), truth)
        # Colour alone tells the images apart (three prompts, three colours); the shipped model
        # places objects right 85.5% of the time (docs/mini.md), so position is not judged.
        assert verdict["colour"], (call.name, truth.caption, verdict)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_a_seed_reproduces_its_picture_and_another_seed_draws_another(
    queued_server: Server, sdks: dict[str, Path], worker: ModuleWorker
) -> None:
    prompt = PROMPTS[0][0]
    # One job at a time, each alone in its engine call: the same seed in the same batch
    # composition gives the same pixels, while in another one the CPU may round a few levels
    # apart (docs/architecture.md, "Determinism"); jobs sent together to the module's running
    # worker could be split across calls.
    drawn = []
    for seed in (7, 7, 8):
        call = calls_for(queued_server, sdks, "wavespeed", prompt, seed=seed)
        worker.start_after(1)
        drawn.append(pixels(call.png()))
    first, again, other = drawn
    assert np.abs(first - again).max() <= 1
    # A different seed draws a different picture. The model puts this prompt's circle at the top
    # for either seed, so the two differ in the circle's outline and the background's grain,
    # not in layout: a mean difference of 6.9 levels (seed 7 against 8 drawn directly at 10
    # steps; 6.2 at 20), where the same seed differs by at most 1 level.
    assert np.abs(first - other).mean() > 2


def colours_drawn(png: bytes) -> set[str]:
    return {blob.colour for blob in checker.segment(as_checker_image(png))}


def test_a_negative_prompt_takes_a_colour_away(
    queued_server: Server, sdks: dict[str, Path], worker: ModuleWorker
) -> None:
    """Through the Runware SDK on `easel/mini`, whose backend honours negative prompts: over
    sixteen seeds, the negative prompt's colour is drawn less often, the other colour kept.
    (The model draws both objects for most seeds, not all: docs/mini.md has its scores.)"""
    prompt, seeds = NEGATIVE_CASE["prompt"], list(NEGATIVE_CASE["seeds"])
    tasks = [{"model": "easel/mini", "positivePrompt": prompt, "seed": seed, "width": 64,
              "height": 64, "outputType": "base64Data", "CFGScale": NEGATIVE_CASE["guidance"],
              **negative}
             for negative in ({}, {"negativePrompt": NEGATIVE_CASE["negative"]})
             for seed in seeds]
    spec = {"transport": "rest", "url": f"{queued_server.url}/v1", "apiKey": KEY,
            "tasks": tasks}  # one client process sends them all, at once
    client = Call("runware", launch(sdks["runware-sdk"], RUNWARE_CLIENT, spec), lambda r: b"")
    worker.start_after(len(tasks))
    reply = client.result()
    drawn = [colours_drawn(base64.b64decode(result["images"][0]["imageBase64Data"]))
             for result in reply["results"]]
    plain, negated = drawn[:len(seeds)], drawn[len(seeds):]
    colour, other = NEGATIVE_CASE["colour"], NEGATIVE_CASE["other"]
    with_colour = sum(colour in found for found in plain)
    still_there = sum(colour in found for found in negated)
    # The pipeline called directly with these seeds at 10 steps draws blue in 16, then 7, and
    # red in all 16.
    assert with_colour >= 13 and still_there <= with_colour - 5, (plain, negated)
    assert sum(other in found for found in negated) >= 13, negated
