"""Cold start to the first image: `easel serve` started on a tier's weights on disk, timed from
the process's start to its first image, with the compile cache cold and then warm.

The GPU issue's target: <= 30 s (Fast, Standard), <= 45 s (Ultra), with a warm compile cache.
The bench writes the tier's pipeline to disk as a diffusers folder (bench/full_size.py's
full-size architecture with random weights on a GPU, the tiny family on the CPU), points the
tier's backend at that folder in a catalog overlay, and starts `easel serve` on it twice on one
data directory: the first start compiles (its graphs land in the data directory's compile
cache), the second finds them there. Each start is timed to /livez (the API answers), /readyz
(the weights are loaded) and the first `:predict` image (the first call compiles, or loads its
graphs from the cache). `--drop-caches` empties the kernel's page cache before each start
(root only), so the weights come from the disk, not from memory the save left them in.

    # GPU: the Fast tier (16 GB of weights written to --work)
    python bench/cold_start.py --arch flux2-klein-4b --size 1024 --compile --fuse-qkv \\
        --attention _native_cudnn --drop-caches --out bench/results/cold-start.json
    # CPU smoke run (the tiny FLUX.2, no compile)
    .venv/bin/python bench/cold_start.py --arch tiny-flux2 --size 256
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from serving import (
    GOOGLE_MODELS,
    KEY,
    free_port,
    predict_body,
    predicted_png,
    tier_serving,
    until_ok,
    write_overlay,
)


@dataclass
class Start:
    compile_cache: str  # "cold" or "warm"
    live_s: float
    ready_s: float
    first_image_s: float
    page_cache_dropped: bool


@dataclass
class Result:
    arch: str
    device: str
    size: int
    weights_gb: float
    save_s: float
    options: list[str]
    starts: list[Start]


def write_weights(arch: str, folder: Path) -> tuple[str, str, float]:
    """The architecture's pipeline as a diffusers folder; (family, device name, seconds)."""
    import torch

    from easel.engine.families import stand_in_dir
    from easel.engine.pipelines import default_placement
    from full_size import ARCHS, build_full_size

    device = default_placement(None).device
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    started = time.perf_counter()
    if arch.startswith("tiny-"):
        built = stand_in_dir(f"easel/{arch}", folder.parent / "tiny")
        folder.symlink_to(built, target_is_directory=True)
        return arch.removeprefix("tiny-"), name, time.perf_counter() - started
    pipe = build_full_size(arch, device)
    pipe.save_pretrained(folder, safe_serialization=True)
    del pipe
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # the servers below need the GPU's memory
    return ARCHS[arch]["family"], name, time.perf_counter() - started


def drop_page_cache() -> bool:
    """Empty the kernel's page cache (root only): the next reads come from the disk."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def one_start(env: dict[str, str], data: Path, model: str, compile_cache: str,
              drop: bool) -> Start:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    dropped = drop_page_cache() if drop else False
    log = data / f"serve-{compile_cache}.log"
    with open(log, "wb") as out:
        started = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "easel.cli", "serve", "--port", str(port), "--data-dir",
             str(data)], env=env, stdout=out, stderr=subprocess.STDOUT)

    def exited() -> str | None:
        return None if server.poll() is None else "the server exited"

    try:
        until_ok(f"{url}/livez", gone=exited)
        live = time.perf_counter() - started
        until_ok(f"{url}/readyz", timeout=600 - live, gone=exited)  # 600 s from the start
        ready = time.perf_counter() - started
        predicted_png(httpx.post(f"{url}/v1beta/models/{model}:predict", timeout=900,
                                 headers={"x-goog-api-key": KEY},
                                 json=predict_body("a red fox in fresh snow")))
        first = time.perf_counter() - started
    except (RuntimeError, TimeoutError) as exc:
        raise SystemExit(f"{exc}\n{log.read_text()[-3000:]}") from None
    finally:
        server.terminate()
        server.wait(120)
    start = Start(compile_cache, round(live, 2), round(ready, 2), round(first, 2), dropped)
    print(f"compile cache {compile_cache}: live {start.live_s} s, ready {start.ready_s} s, "
          f"first image {start.first_image_s} s", flush=True)
    return start


def main(argv: list[str] | None = None) -> Result:
    args = parse(argv)
    # Absolute: the catalog overlay names the weights' folder, and a relative path there would
    # read as a hub id.
    work = (args.work or Path(tempfile.mkdtemp(prefix="easel-cold-start-"))).absolute()
    folder = work / "weights" / args.arch
    folder.parent.mkdir(parents=True, exist_ok=True)
    family, device, save_s = write_weights(args.arch, folder)
    weights = sum(f.stat().st_size for f in folder.resolve().rglob("*.safetensors"))
    print(f"{args.arch}: {weights / 1e9:.1f} GB written in {save_s:.1f} s", flush=True)
    tier = tier_serving(family, args.arch)
    overlay = write_overlay(work / "bench.toml", tier.backend.name, str(folder), args.size)
    model = GOOGLE_MODELS[tier.name]
    options = {"EASEL_COMPILE": "true" if args.compile else "false",
               "EASEL_FUSE_QKV": "true" if args.fuse_qkv else "false",
               **({"EASEL_ATTENTION_BACKEND": args.attention} if args.attention else {})}
    env = {**os.environ, "EASEL_CATALOG_FILE": str(overlay), "EASEL_API_KEYS": KEY,
           "EASEL_PRELOAD_MODELS": model, "EASEL_STRICT": "true", **options}
    data = work / "data"
    data.mkdir(exist_ok=True)
    starts = [one_start(env, data, model, cache, args.drop_caches) for cache in ("cold", "warm")]
    result = Result(args.arch, device, args.size, round(weights / 1e9, 2), round(save_s, 1),
                    [f"{k}={v}" for k, v in options.items()], starts)
    print(json.dumps(asdict(result), indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(asdict(result), indent=1))
    return result


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="tiny-flux2")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--fuse-qkv", action="store_true")
    parser.add_argument("--attention", default=None)
    parser.add_argument("--drop-caches", action="store_true")
    parser.add_argument("--work", type=Path, default=None,
                        help="where the weights and the data directory go (default: a new "
                             "temporary directory)")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
