"""How many images a second the worker's finishing keeps up with, on this machine's CPUs.

Finishing is what happens to each image between the engine and the store, on the worker's
finishing threads: the content check (NudeNet), the invisible watermark, encoding, C2PA
signing (a test certificate) and the write to the image store (local disk). Measured with
Google's defaults, the heaviest a dialect asks for: check on, watermark on, PNG. Each row
finishes `--images` photographs on `threads` threads, as the worker's pool does, after one
warm-up round; the figure is the median of `--repeat` rounds. A GPU worker that turns out more
images a second than this is bound by finishing (easel_worker_waited_for_finishing_seconds
grows); below it, finishing hides behind the next batch's denoising. A second table gives what
each PNG zlib level (EASEL_PNG_COMPRESS_LEVEL) costs and saves on the same photographs, a
third what zlib's two strategies make of other kinds of picture, and which one easel picks.

    .venv/bin/python -m bench.finishing --size 1024 --threads 1,2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from tests.provenance.test_png_encoding import pillow_png as strategy_png
from tests.provenance.test_png_encoding import poster, tiled
from tests.safety.pictures import pixels

from easel.catalog import Catalog
from easel.domain.request import GenerationRequest, ImageFormat
from easel.domain.safety import OnFlagged, SafetyInput, SafetyLevel
from easel.services.images.encoding import PNG_COMPRESS_LEVEL, encode, png_strategy
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
    """Median ms to encode, and mean bytes, of each photograph at each zlib level: easel's
    encode (its strategy chosen from a sample) and Pillow's own."""
    photos = images[: len(PHOTOS)]
    encoders = {"easel": lambda image, level: encode(image, ImageFormat.PNG, 95, {}, level),
                # Pillow's own choice is the filtered strategy (the test checks the bytes).
                "Pillow's own": lambda image, level: strategy_png(image, zlib.Z_FILTERED, level)}
    print("| zlib level | easel: ms | MB | Pillow's own: ms | MB |")
    print("|---:|---:|---:|---:|---:|")
    for level in levels:
        cells = []
        for write in encoders.values():
            sizes, times = [], []
            for photo in photos:
                for _ in range(repeat):
                    started = time.perf_counter()
                    data = write(photo, level)
                    times.append(time.perf_counter() - started)
                sizes.append(len(data))
            cells += [f"{statistics.median(times) * 1000:.0f}",
                      f"{statistics.mean(sizes) / 1e6:.3f}"]
        print(f"| {level} | " + " | ".join(cells) + " |", flush=True)


def kinds_of_picture(size: int, level: int) -> None:
    """Each kind of picture with the filtered strategy (Pillow's own), with RLE, and with
    easel's pick."""
    photo = pixels("coffee", size, size)
    reduced = Image.fromarray(photo).quantize(12).convert("RGB").filter(ImageFilter.ModeFilter(5))
    pictures = {"photograph": photo, "flat art and text": poster(),
                "colour-reduced photograph": np.asarray(reduced), "repeated 32x32 patch": tiled(),
                "noise": np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8)}
    print("| picture | filtered: ms | KB | RLE: ms | KB | easel's pick: ms | KB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, picture in pictures.items():
        cells = []
        writers: list[Callable[[np.ndarray], bytes]] = [
            lambda p: strategy_png(p, zlib.Z_FILTERED, level),
            lambda p: strategy_png(p, zlib.Z_RLE, level),
            lambda p: encode(p, ImageFormat.PNG, 95, {}, level)]
        for write in writers:
            write(picture)
            times = []
            for _ in range(3):
                started = time.perf_counter()
                data = write(picture)
                times.append(time.perf_counter() - started)
            cells += [f"{statistics.median(times) * 1000:.0f}", f"{len(data) / 1e3:.0f}"]
        pick = "RLE" if png_strategy(picture, level) == zlib.Z_RLE else "filtered"
        print(f"| {name} ({pick}) | " + " | ".join(cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--png-level", type=int, default=PNG_COMPRESS_LEVEL)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--levels", default="1,2,3,4,6,9",
                        help="PNG zlib levels for the second table (empty: none)")
    parser.add_argument("--no-c2pa", action="store_true",
                        help="no C2PA signing (where c2pa-python is not installed; easel signs "
                             "only when a certificate is configured)")
    args = parser.parse_args(argv)
    images = [pixels(PHOTOS[i % len(PHOTOS)], args.size, args.size) for i in range(args.images)]
    request = google_default(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        credentials = None if args.no_c2pa else ContentCredentials.from_files(
            *make_test_certificate(root))
        checker = ContentChecker(NudeNetDetector(), Catalog.load().safety)
        finisher = ImageFinisher(checker, Metrics(JobStore(f"sqlite:///{root / 'jobs.db'}")),
                                 credentials=credentials, png_level=args.png_level)
        blobs = LocalBlobStore(root / "images")
        signing = "" if args.no_c2pa else " + C2PA"
        print(f"{args.images} images {args.size}x{args.size}, check + watermark + PNG "
              f"(level {args.png_level}){signing} + store; median of {args.repeat} rounds")
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
        print()
        kinds_of_picture(args.size, args.png_level)


if __name__ == "__main__":
    main()
