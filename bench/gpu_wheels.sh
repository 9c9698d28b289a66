#!/usr/bin/env bash
# The wheels the GPU machine lacks, for bench/gpu_session.sh: fetched here (that machine reaches
# no index), into .gpu-wheels/ (git-ignored), to be carried with the working tree (64 MiB in
# all with it). The machine's image has Python 3.12, torch, transformers, huggingface_hub,
# numpy, Pillow, safetensors and typing_extensions; easel's engine and bench/gpu.py need these
# besides, at the versions this checkout's own environment runs.
#
#     bash bench/gpu_wheels.sh            # then carry .gpu-wheels
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
version() { "$python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
wanted=(diffusers torchao pydantic pydantic-core pydantic-settings annotated-types
        typing-inspection python-dotenv)
pins=()
for name in "${wanted[@]}"; do pins+=("$name==$(version "$name")"); done
rm -rf .gpu-wheels && mkdir -p .gpu-wheels
"$python" -m pip download --quiet --no-deps --only-binary=:all: --dest .gpu-wheels \
    --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform linux_x86_64 "${pins[@]}"
# Every wheel installs for that Python (no dependency left out of the list above is checked:
# the dry run of bench/gpu_session.sh imports what it runs).
"$python" -m pip install --quiet --no-index --no-deps --dry-run --target /tmp/easel-gpu-check \
    --python-version 3.12 --implementation cp --abi cp312 --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform linux_x86_64 .gpu-wheels/*.whl
du -sh .gpu-wheels
ls .gpu-wheels
