#!/usr/bin/env bash
# The wheels the GPU machine lacks, for bench/gpu_session.sh: fetched here (that machine reaches
# no index), into .gpu-wheels/ (git-ignored), to be carried with the working tree (64 MiB in
# all with it: the tracked files are some 17 MB, these some 36). The machine's image has Python
# 3.12, torch, transformers, accelerate, peft, huggingface_hub, numpy, Pillow, safetensors,
# OpenCV (headless), onnxruntime, scikit-image, httpx, anyio, h11, click, typer, rich, jinja2,
# uvloop, prometheus-client, regex and pytest; easel's engine, its API and its finishing need
# these besides, at the versions this checkout's own environment runs. Not carried: boto3 and
# psycopg (easel imports them only for a bucket or PostgreSQL) and c2pa-python (16 MB, more
# than is left; easel signs only when a certificate is configured, and bench/finishing.py
# runs --no-c2pa there).
#
#     bash bench/gpu_wheels.sh            # then carry .gpu-wheels
#     GPU_PYTHON=3.11 DEST=/tmp/sim-wheels bash bench/gpu_wheels.sh
#         # the same set for another Python: gpu_session.sh's simulation of that machine here
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
target=${GPU_PYTHON:-3.12}
dest=${DEST:-.gpu-wheels}
version() { "$python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
wanted=(diffusers torchao pydantic pydantic-core pydantic-settings annotated-types
        typing-inspection python-dotenv
        # the API and the worker (bench/api_vs_engine.py)
        fastapi fastapi-offline starlette annotated-doc opentelemetry-api uvicorn
        httptools python-multipart websockets sqlalchemy greenlet alembic mako standardwebhooks
        python-json-logger
        # finishing: the content check's detector, and the signing keys' library
        nudenet cryptography cffi pycparser)
pins=()
for name in "${wanted[@]}"; do pins+=("$name==$(version "$name")"); done
platforms=(--python-version "$target" --implementation cp --abi "cp${target/./}"
           --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64
           --platform linux_x86_64)
rm -rf "$dest" && mkdir -p "$dest"
"$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$dest" \
    "${platforms[@]}" "${pins[@]}"
# Every wheel installs for that Python (no dependency left out of the list above is checked:
# the dry run of bench/gpu_session.sh with PYTHON set imports what it runs).
"$python" -m pip install --quiet --no-index --no-deps --dry-run --target /tmp/easel-gpu-check \
    --only-binary=:all: "${platforms[@]}" "$dest"/*.whl
du -sh "$dest"
ls "$dest"
