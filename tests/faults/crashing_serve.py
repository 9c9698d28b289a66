"""`easel serve` whose engine dies like a segfaulting one (exit 86) whenever a batch holds a
prompt with the marker; the real tiny engine otherwise. Test only: the poison-job test runs
this as its server, so production code carries no crash hook.

python -m tests.faults.crashing_serve MARKER --port P --data-dir D
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable
from pathlib import Path

from easel.domain.generation import Engine, EngineBatch, EngineStatus, GeneratedImage
from easel.runtime.build import build_server, diffusers_engine
from easel.runtime.serve import run_server
from easel.settings import Settings


class CrashOnMarker:
    def __init__(self, inner: Engine, marker: str) -> None:
        self.inner = inner
        self.marker = marker

    def warm(self, source: str) -> None:
        self.inner.warm(source)

    def status(self) -> EngineStatus:
        return self.inner.status()

    def generate(
        self,
        batch: EngineBatch,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        if any(self.marker in spec.prompt for spec in batch.images):
            os._exit(86)
        return self.inner.generate(batch, progress, cancel)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("marker")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    settings = Settings(port=args.port, data_dir=args.data_dir)
    real = diffusers_engine(settings)
    run_server(build_server(settings, lambda: CrashOnMarker(real(), args.marker)), settings)


if __name__ == "__main__":
    main()
