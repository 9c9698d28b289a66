"""`easel serve` whose engine paints a real picture when the prompt names one ("[picture:
torso]"), and the fake engine's seeded noise otherwise: no model could draw these offline,
and the content check must see real pictures. Everything else is the real server. Test only.

python -m tests.safety.picture_serve --port P --data-dir D
"""

from __future__ import annotations

import argparse
import re
import threading
from collections.abc import Callable
from pathlib import Path

from easel.domain.generation import EngineBatch, GeneratedImage
from easel.runtime.build import build_server
from easel.runtime.serve import run_server
from easel.settings import Settings
from tests.fakes import FakeEngine
from tests.safety.pictures import pixels

MARKER = re.compile(r"\[picture:(\w+)\]")


class PictureEngine(FakeEngine):
    def generate(
        self,
        batch: EngineBatch,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        drawn = super().generate(batch, progress, cancel)
        out = []
        for spec, image in zip(batch.images, drawn, strict=True):
            found = MARKER.search(spec.prompt)
            if found:
                image = GeneratedImage(pixels(found[1], batch.width, batch.height), image.seed,
                                       batch.width, batch.height)
            out.append(image)
        return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    settings = Settings(port=args.port, data_dir=args.data_dir)
    engine = PictureEngine()
    run_server(build_server(settings, lambda: engine), settings)


if __name__ == "__main__":
    main()
