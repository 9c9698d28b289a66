"""How many images a second the worker's finishing keeps up with, on this machine's CPUs.

Finishing is what happens to each image between the engine and the store, on the worker's
finishing threads: the content check (NudeNet), the invisible watermark, encoding, C2PA
signing (a test certificate) and the write to the image store (local disk). Measured with
Google's defaults, the heaviest a dialect asks for: check on, watermark on, PNG. Each row
finishes `--images` photographs on `threads` threads, as the worker's pool does, after one
warm-up round; the figure is the median of `--repeat` rounds. A GPU worker that turns out more
images a second than this is bound by finishing (easel_worker_waited_for_finishing_seconds
grows); below it, finishing hides behind the next batch's denoising. A second table gives what
each PNG zlib level (EASEL_PNG_COMPRESS_LEVEL) costs and saves on the same photographs.

    .venv/bin/python -m bench.finishing --size 1024 --threads 1,2
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tests.safety.pictures import pixels

from easel.catalog import Catalog
from easel.domain.request import GenerationRequest, ImageFormat
from easel.domain.safety import OnFlagged, SafetyInput, SafetyLevel
from easel.services.images.encoding import PNG_COMPRESS_LEVEL
from easel.services.images.finishing import ImageFinisher, Provenance
from easel.services.images.provenance import ContentCredentials, make_test_certificate
from easel.services.images.safety import ContentChecker, NudeNetDetector
from easel.services.metrics import Metrics
from easel.store import JobStore
from easel.store.blobs import LocalBlobStore

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def google_default(size: int) -> GenerationRequest:
    """What a `:predict` call with no parameters asks for."""
    return GenerationRequest(
        "imagen-4.0-generate-001", "a photograph", size, size,
        output_format=ImageFormat.PNG,
        safety=SafetyInput(SafetyLevel.BLOCK_MEDIUM_AND_ABOVE, OnFlagged.WITHHOLD),
        watermark=True)


def finish_round(finisher: ImageFinisher, blobs: LocalBlobStore, request: GenerationRequest,
                 images: list[np.ndarray], threads: int) -> float:
    """Seconds to finish and store every image on `threads` threads."""
    provenance = Provenance("standard", "bench")

    def one(index: int) -> None:
        done = finisher.finish(images[index], index, request, {"bench": True}, provenance)
        assert done.data is not None, "the content check withheld a photograph"
        blobs.put(f"{index}.png", done.data, "image/png")

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(len(images))))
    return time.perf_counter() - started


def png_levels(images: list[np.ndarray], levels: list[int], repeat: int) -> None:
    """Median ms to encode, and mean bytes, of each photograph at each zlib level."""
    photos = [Image.fromarray(image) for image in images[: len(PHOTOS)]]
    print("| zlib level | ms per image | MB per image |")
    print("|---:|---:|---:|")
    for level in levels:
        sizes, times = [], []
        for photo in photos:
            for _ in range(repeat):
                out = io.BytesIO()
                started = time.perf_counter()
                photo.save(out, format="PNG", compress_level=level)
                times.append(time.perf_counter() - started)
            sizes.append(out.tell())
        print(f"| {level} | {statistics.median(times) * 1000:.0f} | "
              f"{statistics.mean(sizes) / 1e6:.2f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--png-level", type=int, default=PNG_COMPRESS_LEVEL)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--levels", default="1,2,3,4,6,9",
                        help="PNG zlib levels for the second table (empty: none)")
    args = parser.parse_args(argv)
    images = [pixels(PHOTOS[i % len(PHOTOS)], args.size, args.size) for i in range(args.images)]
    request = google_default(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        credentials = ContentCredentials.from_files(*make_test_certificate(root))
        checker = ContentChecker(NudeNetDetector(), Catalog.load().safety)
        finisher = ImageFinisher(checker, Metrics(JobStore(f"sqlite:///{root / 'jobs.db'}")),
                                 credentials=credentials, png_level=args.png_level)
        blobs = LocalBlobStore(root / "images")
        print(f"{args.images} images {args.size}x{args.size}, check + watermark + PNG "
              f"(level {args.png_level}) + C2PA + store; median of {args.repeat} rounds")
        print("| threads | images/s | ms per image |")
        print("|---:|---:|---:|")
        for threads in (int(t) for t in args.threads.split(",")):
            finish_round(finisher, blobs, request, images[:threads], threads)  # warm-up
            seconds = statistics.median(
                finish_round(finisher, blobs, request, images, threads)
                for _ in range(args.repeat))
            print(f"| {threads} | {args.images / seconds:.2f} | "
                  f"{seconds / args.images * 1000:.0f} |", flush=True)
    if args.levels:
        print()
        png_levels(images, [int(level) for level in args.levels.split(",")], args.repeat)


if __name__ == "__main__":
    main()
