"""What the safety and provenance steps cost per image, on this machine's CPU, at each size.

Each step runs on real pixels (the rendered torso and photographs of tests/safety/pictures.py,
and seeded noise as a generated image stands in): the content check (NudeNet), the invisible
watermark (embed, and reading it back), JPEG and PNG encoding, and C2PA signing with a test
certificate. Median of `--repeat` runs after one warm-up. Last, the CPU one check costs when
images come 50 ms apart, as a server's do: onnxruntime's threads spinning while idle (its
default, NudeNet's own constructor) against sleeping (easel's detector).

    .venv/bin/python -m bench.safety --repeat 5
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tests.safety.pictures import pixels

from easel.domain.request import ImageFormat
from easel.services.images.encoding import encode
from easel.services.images.provenance import (
    ContentCredentials,
    CredentialFacts,
    Watermarker,
    make_test_certificate,
    read_watermark,
)
from easel.services.images.safety import NudeNetDetector

SIZES = ((1024, 1024), (1408, 768), (2048, 2048))


def median_ms(step: Callable[[], object], repeat: int) -> float:
    step()  # warm-up: model load, first-call allocations
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(width: int, height: int, repeat: int, credentials: ContentCredentials) -> list[str]:
    detector, marker = NudeNetDetector(), Watermarker()
    picture = pixels("astronaut", width, height)
    noise = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    marked = marker.embed(picture)
    jpeg = encode(marked, ImageFormat.JPEG, 90, {})
    opened = Image.open(io.BytesIO(jpeg)).convert("RGB")
    facts = CredentialFacts(model="imagen-4.0-generate-001", tier="standard",
                            backend="Tongyi-MAI/Z-Image-Turbo", easel_version="bench", seed=1)
    rows = {
        "content check (NudeNet 320n), a photo": lambda: detector.scores(picture),
        "content check, noise": lambda: detector.scores(noise),
        "watermark embed (dwtDctSvd)": lambda: marker.embed(picture),
        "watermark read, at its size": lambda: read_watermark(opened, [(width, height)]),
        "JPEG encode q90 (for scale)": lambda: encode(picture, ImageFormat.JPEG, 90, {}),
        "PNG encode, zlib level 4 (easel's default)":
            lambda: encode(picture, ImageFormat.PNG, 90, {}, 4),
        "PNG encode, zlib level 6 (zlib's default)":
            lambda: encode(picture, ImageFormat.PNG, 90, {}, 6),
        "C2PA sign, JPEG": lambda: credentials.sign(jpeg, "image/jpeg", facts),
    }
    return [f"| {width}x{height} | {name} | {median_ms(step, repeat):.0f} |"
            for name, step in rows.items()]


def check_cpu_ms(scores: Callable[[np.ndarray], object], picture: np.ndarray,
                 checks: int = 20, gap: float = 0.05) -> tuple[float, float]:
    """CPU (this process, all threads) and wall time of one check, in ms, checks `gap` apart."""
    scores(picture)
    wall = cpu = 0.0
    for _ in range(checks):
        started, used = time.perf_counter(), time.process_time()
        scores(picture)
        time.sleep(gap)  # the idle gap counts for CPU: spinning threads burn it
        cpu += time.process_time() - used
        wall += time.perf_counter() - started - gap
    return cpu / checks * 1000, wall / checks * 1000


def idle_threads(size: int) -> list[str]:
    from nudenet import NudeDetector

    picture = pixels("coffee", size, size)
    theirs = NudeDetector()
    rgba = np.dstack([picture, np.full(picture.shape[:2], 255, np.uint8)])
    rows = {"spinning (NudeNet's own session)": lambda image: theirs.detect(rgba),
            "sleeping (easel's detector)": NudeNetDetector().scores}
    lines = []
    for name, scores in rows.items():
        cpu, wall = check_cpu_ms(scores, picture)
        lines.append(f"| {size}x{size} | {name} | {cpu:.0f} | {wall:.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        chain, key = make_test_certificate(Path(tmp))
        credentials = ContentCredentials.from_files(chain, key)
        print("| size | step | ms per image (median) |")
        print("|---|---|---:|")
        for width, height in SIZES:
            for line in measure(width, height, args.repeat, credentials):
                print(line, flush=True)
    print()
    print("| size | content check's idle threads | CPU ms per check | wall ms per check |")
    print("|---|---|---:|---:|")
    for line in idle_threads(1024):
        print(line, flush=True)


if __name__ == "__main__":
    main()
