#!/usr/bin/env bash
# The GPU issue's prepared run: one command for the few minutes a lent H100/H200 gives, each
# step under its own time limit so one that hangs does not take the others' time, everything it
# measures packed into $OUT/session.tgz (the device tool brings that folder back). Unpack it
# under bench/results/, commit it, and the tables into docs/benchmarks.md.
#
#     bash bench/gpu_wheels.sh                          # here, once: the wheels it lacks there
#     bash bench/gpu_session.sh                         # there, with .gpu-wheels carried
#         # (one call of at most 600 s, within some 15 minutes of device time starts included:
#         # steps.log in the archive says which steps finished; a second call on the still-warm
#         # machine takes STEPS= of the rest)
#     STEPS=api,finishing bash bench/gpu_session.sh     # there: only these steps (a second call)
#     OUT=/tmp/dry bash bench/gpu_session.sh            # here: the same steps on the tiny families
#     PYTHON=/path/to/python WHEELS=/tmp/sim-wheels OUT=/tmp/dry bash bench/gpu_session.sh
#         # here, with a Python holding only what the GPU machine's image has and the wheels
#         # gpu_wheels.sh fetched for that Python: installed as there, so a wheel missing from
#         # its list shows here
#
# Steps, most wanted first (the issue: Fast and Standard before Ultra and 2K):
#   tiers      Fast and Standard, 1024x1024, batch 1 and 4: stock diffusers against easel's
#              engine with every lossless option (regional compile, fused QKV, cuDNN attention)
#   api        the Fast tier through the API (16 Google clients, watermark and content check
#              on) against the engine alone: does finishing keep up with the GPU
#   coldstart  `easel serve` on the Fast tier's weights on disk (16 GB written first), from its
#              start to its first image, compile cache cold then warm
#   cuda       the paths only CUDA reaches, on the tiny families (tests/gpu): fp8, int8, NF4,
#              model and sequential offload, compile with hot-swapped LoRA adapters, cancel
#              between steps, two worker processes on one GPU
#   fp8        the tiers with fp8 (lossy: its PSNR against stock is in the rows)
#   2k         Standard at 2048x2048: easel's two-pass path against stock in one pass
#   previews   what partial images cost a job (issue #35), on the real architectures
#   ultra      Ultra, 1024x1024, batch 1, lossless
#   ultracache Ultra with step caching (First-Block-Cache at 0.12), PSNR against stock
#   upscale    an upscale x4 of 512 and 1024 pixels on Swin2SR's full-size architecture
#   finishing  finishing's images/s on the machine's CPUs, 1 to 8 threads, 1024 and 2048 px
set -uo pipefail
cd "$(dirname "$0")/.."
# Every log and JSON goes to a working folder, packed after each step into one archive in
# $OUT: the device tool brings back at most 8 files, and a call cut off at its time limit
# still brings back the steps that finished.
results=${OUT:-bench/results/gpu-session}
out=$(mktemp -d /tmp/easel-gpu-session.XXXX)
mkdir -p "$results"
pack() {  # written aside and renamed: a call cut off mid-write keeps the previous archive
    tar -czf "$results/.session.tgz" -C "$out" . && mv "$results/.session.tgz" "$results/session.tgz"
}
export PYTHONUNBUFFERED=1
steps=",${STEPS:-tiers,api,coldstart,cuda,fp8,2k,previews,ultra,ultracache,upscale,finishing},"
python=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && ! command -v nvidia-smi >/dev/null; then
    python=.venv/bin/python  # the dry run on this checkout's own environment
fi
path="$PWD/src:$PWD/bench:$PWD"
wheels=${WHEELS:-.gpu-wheels}
if [ "$python" != .venv/bin/python ] && compgen -G "$wheels/*.whl" >/dev/null; then
    site=$(mktemp -d /tmp/easel-site.XXXX)
    "$python" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" \
        "$wheels"/*.whl 2>&1 | tail -3
    path="$site:$path"
fi
export PYTHONPATH="$path"

if "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    gpu=1 tiers="flux2-klein-4b,z-image-turbo" ultra="qwen-image" size=1024 batches=1,4
    fast=(--compile --fuse-qkv --attention _native_cudnn)
else  # the dry run: the same steps, the tiny families, no CUDA-only option
    gpu=0 tiers="tiny-flux2,tiny-zimage" ultra="tiny-qwenimage" size=128 batches=1,2
    fast=()
fi

# On the GPU a step starts only if its limit fits in what is left of the call's budget (the
# device tool's 600 s a call, less a margin): one cut off mid-way wastes GPU time for nothing.
budget=${BUDGET:-$([ "$gpu" = 1 ] && echo 570 || echo 36000)}

wanted() { [[ $steps == *",$1,"* ]]; }

step() {  # step NAME SECONDS COMMAND...: run it under its limit, its output kept as NAME.log
    local name=$1 limit=$2
    shift 2
    if ((SECONDS + limit > budget)); then
        echo "== $name: not started, its ${limit} s do not fit in the $((budget - SECONDS)) s" \
            "left of the call's budget" | tee -a "$out/steps.log"
        return
    fi
    echo "== $name (limit ${limit}s)"
    local started=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
    echo "== $name: exit ${PIPESTATUS[0]}, $((SECONDS - started)) s" | tee -a "$out/steps.log"
    pack
}

{
    date -u
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
        --format=csv
    nproc
    "$python" -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', \
diffusers.__version__, 'cuda', torch.cuda.is_available())"
    df -h /tmp . 2>/dev/null
    findmnt -n -o FSTYPE,TARGET /tmp 2>/dev/null
    # What the API and finishing steps need; one missing here is a wheel to add to gpu_wheels.sh.
    "$python" -c "import easel.runtime.build, easel.engine, easel.services.images.safety, \
cv2, onnxruntime; print('easel imports: ok')"
} 2>&1 | tee "$out/machine.log"
pack

wanted tiers && step tiers-lossless 330 "$python" bench/gpu.py --archs "$tiers" \
    --sizes "$size" --batches "$batches" --repeats 3 "${fast[@]}" --out "$out/tiers-lossless.json"
if wanted api; then
    if [ "$gpu" = 1 ]; then
        step api 180 "$python" bench/api_vs_engine.py --arch flux2-klein-4b --size 1024 \
            --batch 4 --clients 16 --images 64 "${fast[@]}" --out "$out/api.json"
    else
        step api 120 "$python" bench/api_vs_engine.py --arch tiny-flux2 --size 256 --batch 2 \
            --clients 4 --images 8 --out "$out/api.json"
    fi
fi
if wanted coldstart; then
    # On the checkout's disk, not /tmp (which may be memory): 16 GB of weights, removed after.
    work=.gpu-work/cold-start
    rm -rf "$work"  # a rerun starts cold too
    free_gb=$(df -P --block-size=1G . | awk 'NR == 2 {print $4}')
    if [ "$gpu" = 1 ] && [ "$free_gb" -lt 25 ]; then
        echo "== coldstart: not started, ${free_gb} GB free of the 25 it needs" | tee -a "$out/steps.log"
    elif [ "$gpu" = 1 ]; then
        step coldstart 300 "$python" bench/cold_start.py --arch flux2-klein-4b --size 1024 \
            "${fast[@]}" --drop-caches --work "$work" --out "$out/cold-start.json"
        rm -rf "$work"
    else
        step coldstart 120 "$python" bench/cold_start.py --arch tiny-flux2 --size 256 \
            --work "$work" --out "$out/cold-start.json"
        rm -rf "$work"
    fi
fi
# The CUDA-only paths on the tiny families (tests/gpu; skipped, quickly, without CUDA).
# The dry run runs what of them the CPU can, to check the harness itself.
[ "$gpu" = 1 ] || export EASEL_GPU_TESTS_DEVICE=cpu
wanted cuda && step cuda-paths 240 "$python" -m pytest -q -s -rs -p no:cacheprovider tests/gpu
wanted fp8 && [ "$gpu" = 1 ] && step tiers-fp8 240 "$python" bench/gpu.py --archs "$tiers" \
    --sizes "$size" --batches 1 --repeats 3 "${fast[@]}" --fp8 --out "$out/tiers-fp8.json"
# Standard at 2K: easel's two-pass path (the catalog's plan, as the server draws it) against
# stock diffusers in one pass at full size (no PSNR: two different pictures).
standard2k=$([ "$gpu" = 1 ] && echo z-image-turbo || echo tiny-zimage)
rounds=$([ "$gpu" = 1 ] && echo "--repeats 2 --warmups 1" || echo "--repeats 1 --warmups 0")
# shellcheck disable=SC2086  # $rounds is two options
wanted 2k && step standard-2k 200 "$python" bench/gpu.py --archs "$standard2k" --sizes 2048 \
    --batches 1 $rounds --two-pass "${fast[@]}" --out "$out/standard-2k.json"
if wanted previews; then
    if [ "$gpu" = 1 ]; then
        step previews 60 "$python" bench/previews.py --arch flux2-klein-4b --size "$size"
    else
        step previews 120 "$python" bench/previews.py --models easel/tiny-flux --size "$size" \
            --repeats 2
    fi
fi
wanted ultra && step ultra-lossless 300 "$python" bench/gpu.py --archs "$ultra" \
    --sizes "$size" --batches 1 --repeats 2 "${fast[@]}" --out "$out/ultra-lossless.json"
# Ultra with step caching (lossy: its PSNR against stock is in the row; the target is >= 30 dB)
wanted ultracache && step ultra-cache 300 "$python" bench/gpu.py --archs "$ultra" \
    --sizes "$size" --batches 1 --repeats 2 "${fast[@]}" --step-cache 0.12 \
    --out "$out/ultra-cache.json"
upscales=$([ "$gpu" = 1 ] && echo 512,1024 || echo 32)
wanted upscale && step upscale 60 "$python" -m bench.upscale --sizes "$upscales" --repeats 3 \
    --out "$out/upscale.json"
if wanted finishing; then
    signing=()  # c2pa-python (16 MB) does not fit in what travels: no C2PA there
    "$python" -c "import c2pa" 2>/dev/null || signing=(--no-c2pa)
    if [ "$gpu" = 1 ]; then
        step finishing 90 "$python" -m bench.finishing --size 1024 --threads 1,4,8 --images 32 \
            --repeat 3 --levels 1,4,6 "${signing[@]}"
    else
        step finishing 120 "$python" -m bench.finishing --size 256 --threads 1,2 --images 4 \
            --repeat 1 --levels 4 "${signing[@]}"
    fi
fi
ls -la "$out"
echo "packed into $results/session.tgz (tar -xzf it under bench/results/ to commit)"
