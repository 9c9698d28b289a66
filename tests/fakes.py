"""A fake engine for in-process tests of the job service, the worker and delivery: it draws
pixels from each image's seed and prompt with numpy (no torch), reports every step, honours
cancel between steps, and fails on request."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import numpy as np

from easel.domain.errors import CancelledError, InferenceError
from easel.domain.generation import (
    EngineBatch,
    EngineStatus,
    GeneratedImage,
    Operation,
    Preview,
)


class FakeEngine:
    def __init__(
        self,
        fail_on_prompt: str | None = None,
        on_step: Callable[[EngineBatch, int], None] | None = None,
        step_seconds: float = 0.0,
        capacity: int | None = None,
    ) -> None:
        self.fail_on_prompt = fail_on_prompt
        self.on_step = on_step  # called before each step: tests act mid-denoise here
        # What a denoising step costs, for servers whose jobs must stay in flight a while (a
        # SIGTERM or a kill mid-job): the engine's work, not a test waiting out a timer.
        self.step_seconds = step_seconds
        self.warmed: list[str] = []
        # The pipelines in memory, least recently used first, at most `capacity` of them (None:
        # all); `loads` lists every source the engine had to load for a call, as a real engine's
        # `pipeline` does when a source is not in memory.
        self.capacity = capacity
        self.in_memory: list[str] = []
        self.loads: list[str] = []
        self.calls: list[EngineBatch] = []
        self.steps_run: list[int] = []  # per call, how many steps ran before it returned

    def warm(self, source: str) -> None:
        self.warmed.append(source)
        self._use(source)

    def status(self) -> EngineStatus:
        return EngineStatus("cpu", tuple(self.in_memory))

    def _use(self, source: str) -> None:
        if source in self.in_memory:
            self.in_memory.remove(source)
        else:
            self.loads.append(source)
        self.in_memory.append(source)
        if self.capacity is not None:
            del self.in_memory[:-self.capacity]

    def generate(
        self,
        batch: EngineBatch,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        preview: Preview | None = None,
    ) -> list[GeneratedImage]:
        self.calls.append(batch)
        self._use(batch.source)
        self.steps_run.append(0)
        if self.fail_on_prompt and any(self.fail_on_prompt in s.prompt for s in batch.images):
            raise InferenceError("the fake engine was told to fail")
        for step in range(batch.steps):
            if self.on_step is not None:
                self.on_step(batch, step)
            if self.step_seconds:
                time.sleep(self.step_seconds)
            self.steps_run[-1] = step + 1
            if progress is not None:
                progress(step + 1, batch.steps)
            if preview is not None and step + 1 in batch.preview_steps:
                # A partial image: its own pixels, from the prompt, the seed and the round.
                round_ = batch.preview_steps.index(step + 1)
                preview(round_, [GeneratedImage(
                    pixels(f"{spec.prompt}|partial {round_}", spec.seed, batch.width,
                           batch.height), spec.seed, batch.width, batch.height)
                    for spec in batch.images])
            if cancel is not None and cancel.is_set():
                raise CancelledError()
        if batch.operation is Operation.UPSCALE:  # the input, each pixel repeated
            factor = batch.upscale_factor
            return [GeneratedImage(
                np.asarray(batch.inputs[spec.init]).repeat(factor, 0).repeat(factor, 1),
                spec.seed, batch.width, batch.height) for spec in batch.images
                if spec.init is not None]
        # What a real engine's picture depends on besides the prompt and the seed: a client's
        # steps, guidance and negative prompt change it, and the batch it shares does not.
        drawing = f"{batch.steps}|{batch.guidance}|{batch.true_cfg}"
        return [GeneratedImage(pixels(f"{spec.prompt}|{spec.negative_prompt}|{drawing}",
                                      spec.seed, batch.width, batch.height),
                               spec.seed, batch.width, batch.height) for spec in batch.images]


def pixels(prompt: str, seed: int, width: int, height: int) -> np.ndarray:
    """An image that depends on the prompt and the seed alone (never all black)."""
    digest = hashlib.sha256(f"{prompt}|{seed}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    return rng.integers(1, 256, size=(height, width, 3), dtype=np.uint8)
