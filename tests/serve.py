"""`easel serve` or `easel worker` with an engine of the test's choosing, everything else the
real server: the engines no production code carries a hook for.

    python -m tests.serve [--engine fake|tiny|pictures|crash:MARKER] [--step-seconds S]
                          serve|worker [--port P] [--data-dir D] [--no-worker] [--log-json]

- fake: pixels from the seed and the prompt (tests/fakes.py), no torch: what a test needs when
  the pictures do not matter (the SDK suites, the fault tests, the pages);
- tiny: the real diffusers engine on the offline stand-ins (easel-mini, or each family's tiny
  pipeline with EASEL_STAND_IN=tiny);
- pictures: the fake engine, but a prompt naming a picture ("[picture:torso]") gets a real one,
  for the content checks (tests/safety/pictures.py);
- crash:MARKER: the fake engine, but the process dies as a segfaulting engine would (exit 86)
  during the first step of a batch that holds a prompt with MARKER (the poison-job test).

Settings come as for `easel serve`: the environment (EASEL_*) and these few flags."""

from __future__ import annotations

import argparse
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from easel.domain.generation import Engine, EngineBatch, GeneratedImage, Preview
from easel.runtime.build import EngineFactory, diffusers_engine
from easel.settings import Settings, load_settings
from tests.fakes import FakeEngine

PICTURE = re.compile(r"\[picture:(\w+)\]")
CRASH_STATUS = 86


class PictureEngine(FakeEngine):
    def generate(
        self,
        batch: EngineBatch,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        preview: Preview | None = None,
    ) -> list[GeneratedImage]:
        from tests.safety.pictures import pixels

        drawn = super().generate(batch, progress, cancel, preview)
        out = []
        for spec, image in zip(batch.images, drawn, strict=True):
            found = PICTURE.search(spec.prompt)
            if found:
                image = GeneratedImage(pixels(found[1], batch.width, batch.height), image.seed,
                                       batch.width, batch.height)
            out.append(image)
        return out


class CrashingEngine(FakeEngine):
    def __init__(self, marker: str, step_seconds: float = 0.0) -> None:
        super().__init__(step_seconds=step_seconds)
        self.marker = marker

    def generate(
        self,
        batch: EngineBatch,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        preview: Preview | None = None,
    ) -> list[GeneratedImage]:
        if any(self.marker in spec.prompt for spec in batch.images):
            time.sleep(self.step_seconds)  # it dies during its first step, as a crash would
            os._exit(CRASH_STATUS)
        return super().generate(batch, progress, cancel, preview)


def engine_factory(name: str, settings: Settings, step_seconds: float = 0.0) -> EngineFactory:
    if name == "tiny":
        return diffusers_engine(settings)
    engine: Engine
    if name == "fake":
        engine = FakeEngine(step_seconds=step_seconds)
    elif name == "pictures":
        engine = PictureEngine(step_seconds=step_seconds)
    elif name.startswith("crash:"):
        engine = CrashingEngine(name.removeprefix("crash:"), step_seconds)
    else:
        raise SystemExit(f"unknown engine {name!r}: fake, tiny, pictures or crash:MARKER")
    return lambda: engine


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.serve")
    parser.add_argument("--engine", default="fake")
    parser.add_argument("--step-seconds", type=float, default=0.0)
    parser.add_argument("command", choices=["serve", "worker"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--no-worker", action="store_true")
    parser.add_argument("--log-json", action="store_true")
    args = parser.parse_args()
    settings = load_settings(port=args.port, data_dir=args.data_dir,
                             run_worker=False if args.no_worker else None,
                             log_json=True if args.log_json else None)
    factory = engine_factory(args.engine, settings, args.step_seconds)
    from easel import logs
    from easel.settings import secret_values

    logs.configure(settings.log_level, settings.log_json, secret_values(settings))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if args.command == "serve":
        from easel.runtime.serve import serve

        serve(settings, factory)
    else:
        from easel.runtime.work import work

        work(settings, factory)


if __name__ == "__main__":
    main()
