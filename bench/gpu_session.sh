#!/usr/bin/env bash
# The GPU issue's prepared run: one command for the few minutes a lent H100/H200 gives, each
# step under its own time limit so one that hangs does not take the others' time, everything it
# measures written to $OUT (the device tool brings that folder back). Commit what comes back
# under bench/results/ and the tables into docs/benchmarks.md.
#
#     bash bench/gpu_wheels.sh                          # here, once: the wheels it lacks there
#     bash bench/gpu_session.sh                         # there, with .gpu-wheels carried
#     OUT=/tmp/dry bash bench/gpu_session.sh            # here: the same steps on the tiny families
#
# Steps, most wanted first (the issue: Fast and Standard before Ultra and 2K):
#   1. Fast and Standard, 1024x1024, batch 1 and 4: stock diffusers against easel's engine with
#      every lossless option (regional compile, fused QKV, cuDNN attention)
#   2. the same with fp8 (lossy: its PSNR against stock is in the rows)
#   3. what partial images cost a job (issue #35), on the real architectures
#   4. Ultra, 1024x1024, batch 1, lossless (when time is left)
#   5. an upscale x4 of 512 and 1024 pixels on Swin2SR's full-size architecture (issue #31)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results/gpu-session}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=python3
[ -x .venv/bin/python ] && ! command -v nvidia-smi >/dev/null && python=.venv/bin/python
path="$PWD/src:$PWD/bench:$PWD"
if compgen -G ".gpu-wheels/*.whl" >/dev/null && command -v nvidia-smi >/dev/null; then
    "$python" -m pip install --quiet --no-index --no-deps --target /tmp/easel-site \
        .gpu-wheels/*.whl 2>&1 | tail -3
    path="/tmp/easel-site:$path"
fi
export PYTHONPATH="$path"

if "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    gpu=1 tiers="flux2-klein-4b,z-image-turbo" ultra="qwen-image" size=1024 batches=1,4
    fast=(--compile --fuse-qkv --attention _native_cudnn)
else  # the dry run: the same steps, the tiny families, no CUDA-only option
    gpu=0 tiers="tiny-flux2,tiny-zimage" ultra="tiny-qwenimage" size=128 batches=1,2
    fast=()
fi

step() {  # step NAME SECONDS COMMAND...: run it under its limit, its output kept as NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    local started=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
    echo "== $name: exit ${PIPESTATUS[0]}, $((SECONDS - started)) s"
}

{
    date -u
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
        --format=csv
    "$python" -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', \
diffusers.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$out/machine.log"

step tiers-lossless 330 "$python" bench/gpu.py --archs "$tiers" --sizes "$size" \
    --batches "$batches" --repeats 3 "${fast[@]}" --out "$out/tiers-lossless.json"
if [ "$gpu" = 1 ]; then
    step tiers-fp8 150 "$python" bench/gpu.py --archs "$tiers" --sizes "$size" --batches 1 \
        --repeats 3 "${fast[@]}" --fp8 --out "$out/tiers-fp8.json"
    step previews 60 "$python" bench/previews.py --arch flux2-klein-4b --size "$size"
else
    step previews 120 "$python" bench/previews.py --models easel/tiny-flux --size "$size" \
        --repeats 2
fi
step ultra-lossless 150 "$python" bench/gpu.py --archs "$ultra" --sizes "$size" --batches 1 \
    --repeats 2 "${fast[@]}" --out "$out/ultra-lossless.json"
upscales=$([ "$gpu" = 1 ] && echo 512,1024 || echo 32)
step upscale 60 "$python" -m bench.upscale --sizes "$upscales" --repeats 3 \
    --out "$out/upscale.json"
ls -la "$out"
