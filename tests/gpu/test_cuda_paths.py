"""The engine's paths that only CUDA reaches, on the tiny families of the default tiers: fp8,
int8 and NF4 weights (NF4 skips where bitsandbytes is not installed, as on the lent machine),
model and sequential offload, compile with LoRA adapters hot-swapped and with the step cache,
cancel between steps, two worker processes on one GPU, and every way the engine draws in the
GPU's bf16. The CPU suite refuses or cannot run
these (tests/engine/test_fit.py, test_optimize.py); here they run on a lent GPU, where
bench/gpu_session.sh's `cuda` step calls this file (skipped anywhere without CUDA; its dry run
runs what the CPU can of it, EASEL_GPU_TESTS_DEVICE=cpu).

Tiny models with random weights say nothing about speed or memory (bench/gpu.py and
bench/gpu_fit.py measure those on the full-size architectures): these check that each path
loads, draws, and draws what the exact path draws within the loss it is allowed. Each test
prints what it measured, for the session's log."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.loras import make_lora
from tests.server_harness import Server, inference, poll_until_done

from easel.domain.errors import CancelledError
from easel.domain.generation import AdapterSpec, EngineBatch, ImageSpec, Operation, TwoPass
from easel.engine import Engine
from easel.engine.optimize import EngineOptions, denoiser, psnr
from easel.engine.pipelines import TINY_UPSCALER

# EASEL_GPU_TESTS_DEVICE=cpu runs what of this file the CPU can (the dry run of the session
# script does, to check the harness itself); the CUDA-only tests skip there.
DEVICE = os.environ.get("EASEL_GPU_TESTS_DEVICE") or ("cuda" if torch.cuda.is_available() else "")
if not DEVICE:
    pytest.skip("needs a CUDA GPU (bench/gpu_session.sh runs it on one)", allow_module_level=True)
cuda_only = pytest.mark.skipif(DEVICE != "cuda", reason="a CUDA-only path")

TIERS = ("flux2", "zimage", "qwenimage")  # fast, standard, ultra
SPECS = (ImageSpec("a lighthouse at dusk", 5), ImageSpec("a red fox", 6))
GUIDANCE = {"flux2": 1.0, "zimage": 0.0, "qwenimage": 4.0, "flux": 3.5}


def batch(family: str, steps: int = 4, *adapters: AdapterSpec) -> EngineBatch:
    return EngineBatch(f"easel/tiny-{family}", family, 128, 128, steps, GUIDANCE[family], SPECS,
                       adapters=adapters)


def draw(engine: Engine, work: EngineBatch) -> list[np.ndarray]:
    return [image.pixels for image in engine.generate(work)]


def device_engine(model_cache: Path, **options: object) -> Engine:
    return Engine(model_cache, device=DEVICE, max_loaded=3, options=EngineOptions(**options))


def closeness(pixels: list[np.ndarray], exact: list[np.ndarray], what: str) -> float:
    """The worst PSNR of `pixels` against the exact path's images, printed for the log."""
    worst = min(psnr(a, b) for a, b in zip(pixels, exact, strict=True))
    print(f"{what}: {worst:.1f} dB against the exact path", flush=True)
    return worst


@pytest.fixture(scope="module")
def exact(model_cache: Path) -> dict[str, list[np.ndarray]]:
    engine = device_engine(model_cache)
    return {family: draw(engine, batch(family)) for family in TIERS}


@cuda_only
@pytest.mark.parametrize("family", TIERS)
def test_fp8_draws_the_scene(model_cache: Path, exact: dict[str, list[np.ndarray]],
                             family: str) -> None:
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 needs an Ada or Hopper GPU")
    engine = device_engine(model_cache, quantize="fp8")
    pixels = draw(engine, batch(family))
    assert any("fp8" in label for label in engine.applied[f"easel/tiny-{family}"])
    # Lossy (weights and activations in 8 bits), but the same picture: two unrelated images
    # are about 10 dB apart.
    assert closeness(pixels, exact[family], f"fp8 {family}") >= 20


@pytest.mark.parametrize("family", TIERS)
def test_int8_weights_on_cuda(model_cache: Path, exact: dict[str, list[np.ndarray]],
                              family: str) -> None:
    engine = device_engine(model_cache, weight_quant="int8")
    pixels = draw(engine, batch(family))
    model = denoiser(engine.pipeline(f"easel/tiny-{family}"))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m.weight).__name__ == "Int8Tensor" for m in linears)
    assert all(m.weight.device.type == DEVICE for m in linears)
    assert closeness(pixels, exact[family], f"int8 {family}") >= 25


@cuda_only
@pytest.mark.parametrize("family", TIERS)
def test_nf4_weights_on_cuda(model_cache: Path, exact: dict[str, list[np.ndarray]],
                             family: str) -> None:
    pytest.importorskip("bitsandbytes", reason="bitsandbytes (the gpu-fit extra) is not here")
    engine = device_engine(model_cache, weight_quant="nf4")
    pixels = draw(engine, batch(family))
    assert engine.applied[f"easel/tiny-{family}"] == ["weights=nf4(denoiser)"]
    assert closeness(pixels, exact[family], f"nf4 {family}") >= 20


@pytest.mark.parametrize("offload", ["model", pytest.param("sequential", marks=cuda_only)])
@pytest.mark.parametrize("family", TIERS)
def test_offload_moves_the_weights_and_keeps_the_picture(
    model_cache: Path, exact: dict[str, list[np.ndarray]], family: str, offload: str
) -> None:
    engine = device_engine(model_cache, offload=offload)
    pixels = draw(engine, batch(family))
    pipe = engine.pipeline(f"easel/tiny-{family}")
    assert engine.applied[f"easel/tiny-{family}"] == [f"offload={offload}"]
    # Between calls the weights wait in the CPU's memory; the GPU runs each part as it comes.
    assert next(denoiser(pipe).parameters()).device.type in ("cpu", "meta")
    # The same kernels on the same GPU: only the weights' trips differ.
    assert closeness(pixels, exact[family], f"offload={offload} {family}") >= 40


def _operations() -> list[tuple[str, EngineBatch]]:
    """Every way the engine draws, on the tier families: from text (with partial images), from
    an input image, inpainting, FLUX.2's reference editing, the two-pass 2K path, upscaling."""
    y, x = np.mgrid[0:64, 0:64]
    picture = np.stack([x * 4, y * 4, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:40] = 255
    inputs = {"picture": picture, "mask": mask}
    fox = ImageSpec("a fox", 1)
    cases = [(f"{family} text", EngineBatch(f"easel/tiny-{family}", family, 64, 64, 2,
                                           GUIDANCE[family], (fox,), previews=1))
             for family in TIERS]
    for family, operation in (("zimage", Operation.IMAGE), ("zimage", Operation.INPAINT),
                              ("qwenimage", Operation.IMAGE), ("qwenimage", Operation.INPAINT),
                              ("flux2", Operation.INPAINT)):
        drawn = ImageSpec("a fox", 1, init="picture",
                          mask="mask" if operation is Operation.INPAINT else None)
        cases.append((f"{family} {operation}", EngineBatch(
            f"easel/tiny-{family}", family, 64, 64, 2, GUIDANCE[family], (drawn,),
            operation=operation, strength=0.6, inputs=inputs)))
    cases += [
        ("flux2 reference", EngineBatch("easel/tiny-flux2", "flux2", 64, 64, 2, 1.0,
                                        (ImageSpec("make it red", 1, references=("picture",)),),
                                        operation=Operation.REFERENCE, inputs=inputs)),
        ("zimage two-pass", EngineBatch("easel/tiny-zimage", "zimage", 128, 128, 2, 0.0, (fox,),
                                        two_pass=TwoPass(64, 64, 0.35))),
        ("upscale", EngineBatch(TINY_UPSCALER, "swin2sr", 256, 256, 1, 0.0,
                                (ImageSpec("", 1, init="picture"),), operation=Operation.UPSCALE,
                                inputs=inputs, upscale_factor=4)),
    ]
    return cases


def test_every_operation_draws_and_keeps_the_pipeline_in_its_dtype(model_cache: Path) -> None:
    """In bf16 on a GPU (the CPU runs float32): a view that cast the shared components to
    float32 (diffusers' from_pipe does unless told) would double the memory of every later
    call; one that mixed dtypes would fail."""
    engine = Engine(model_cache, device=DEVICE, max_loaded=8)
    for name, work in _operations():
        images = engine.generate(work)
        assert images[0].pixels.shape == (work.height, work.width, 3), name
        assert images[0].pixels.std() > 0, name  # not a flat image
        pipe = engine.pipeline(work.source)
        model = pipe.model if work.operation is Operation.UPSCALE else denoiser(pipe)
        kinds = {p.dtype for p in model.parameters()}
        print(f"{name}: {images[0].pixels.shape}, {kinds}", flush=True)
        assert kinds == {engine.placement.dtype}, name


def test_cancel_stops_between_steps_on_cuda(model_cache: Path) -> None:
    engine = device_engine(model_cache)
    cancel = threading.Event()
    seen: list[int] = []

    def progress(step: int, total: int) -> None:
        seen.append(step)
        if step == 2:
            cancel.set()

    with pytest.raises(CancelledError):
        engine.generate(batch("flux2", 8), progress, cancel)
    assert seen == [1, 2]
    assert len(draw(engine, batch("flux2"))) == 2  # the engine goes on after a cancel


def _adapter(path: Path) -> AdapterSpec:
    return AdapterSpec(path.stem, str(path), hashlib.sha256(path.read_bytes()).hexdigest(), 1.0)


def test_compile_with_hot_swapped_adapters_compiles_once(model_cache: Path,
                                                        tmp_path: Path) -> None:
    """Regional compile with inductor on CUDA, one hot-swap slot (a second slot would open
    with one recompile, by design): swapping adapters in it reuses the compiled graphs, and
    draws what the eager engine draws with the same adapter in the same slot."""
    import torch._dynamo

    first, second = (_adapter(make_lora("flux2", tmp_path / f"flux2-{seed}.safetensors", seed))
                     for seed in (1, 2))
    eager = device_engine(model_cache, lora_hotswap=True, lora_cache_count=1)
    want = {spec.name: draw(eager, batch("flux2", 4, spec)) for spec in (first, second)}
    torch._dynamo.reset()
    engine = device_engine(model_cache, compile=True, compile_cache_dir=tmp_path / "compiled",
                         lora_cache_count=1)
    started = time.perf_counter()
    drawn = draw(engine, batch("flux2", 4, first))
    print(f"compile + first call: {time.perf_counter() - started:.1f} s", flush=True)
    with torch._dynamo.config.patch(error_on_recompile=True):
        swapped = draw(engine, batch("flux2", 4, second))
        again = draw(engine, batch("flux2", 4, first))
    assert "compile-regional(default)" in engine.applied["easel/tiny-flux2"]
    assert closeness(drawn, want[first.name], "compiled, first adapter") >= 30
    assert closeness(swapped, want[second.name], "compiled, swapped adapter") >= 30
    assert closeness(again, drawn, "compiled, first adapter again") >= 40
    torch._dynamo.reset()


def test_compile_with_the_step_cache(model_cache: Path, tmp_path: Path) -> None:
    """The step cache decides outside the compiled graph whether a step runs its other blocks,
    so the denoiser compiles without fullgraph then. On FLUX.1's tiny denoiser, which has the
    first and last block the cache needs (FLUX.2's it cannot run on: tests/engine)."""
    import torch._dynamo

    exact = draw(device_engine(model_cache), batch("flux"))
    torch._dynamo.reset()
    engine = device_engine(model_cache, compile=True, step_cache_threshold=0.12,
                           compile_cache_dir=tmp_path / "compiled")
    drawn = draw(engine, batch("flux"))
    assert engine.applied["easel/tiny-flux"] == ["first-block-cache=0.12",
                                                 "compile-regional(default)"]
    assert closeness(drawn, exact, "compiled with the step cache, flux") >= 20
    torch._dynamo.reset()


def test_two_worker_processes_share_one_gpu(tmp_path: Path) -> None:
    """Two `easel worker` processes on one store and one GPU, each with its own CUDA context:
    every job completes once, whichever worker ran it."""
    srv = Server(tmp_path / "srv", engine="tiny", EASEL_RUN_WORKER="false",
                 EASEL_DEVICE=DEVICE, EASEL_BATCH_SIZE=2)
    srv.start()
    logs = [tmp_path / f"worker{i}.log" for i in (1, 2)]
    workers = [srv.worker(log, engine="tiny", EASEL_DEVICE=DEVICE) for log in logs]
    try:
        wait_for(lambda: all("ready: worker" in log.read_text() for log in logs), 180)
        tasks = [inference(deliveryMethod="async", seed=i) for i in range(12)]
        assert srv.post(tasks).status_code == 200
        for task in tasks:
            assert len(poll_until_done(srv, task["taskUUID"], timeout=180)) == 1
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(60)
        srv.stop()
    done = [log.read_text().count(" completed: ") for log in logs]
    print(f"jobs completed by each worker: {done}", flush=True)
    assert srv.db("SELECT status, attempts FROM jobs") == [("completed", 1)] * 12
    assert sum(done) == 12


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
