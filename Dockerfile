# syntax=docker/dockerfile:1
# easel's two images, from one file (docs/deploy.md):
#   docker build -t easel:0.1.0-cuda .               the GPU image (the default target)
#   docker build --target cpu -t easel:0.1.0-cpu .   the CPU image
# Both build the same wheel once, run as a non-root user, keep their state in two volumes
# (/data: jobs and images; /cache/huggingface: the downloaded weights) and start
# `easel serve --host 0.0.0.0`, which refuses to listen without API keys: give EASEL_API_KEYS
# (or create a key in the data volume with `easel keys create`), or run the image with the
# command `serve --host 0.0.0.0 --insecure-no-auth` to serve anyone. No hadolint rule is ignored.
#
# Every version is pinned here. torch matches scripts/bootstrap; its default PyPI build is the
# CUDA 13.0 one, hence the CUDA 13.0 base (host driver 580 or newer).
ARG PYTHON_VERSION=3.11.18
ARG UV_VERSION=0.13.9
ARG TORCH_VERSION=2.13.0
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# The wheel, from pyproject.toml, README.md and src/ only (.dockerignore sends nothing else).
FROM python:${PYTHON_VERSION}-slim-trixie AS wheel
COPY --from=uv /uv /usr/local/bin/uv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN uv build --wheel --out-dir /dist

# ---- CPU image: Debian's slim Python, torch from PyTorch's CPU index -------------------------
FROM python:${PYTHON_VERSION}-slim-trixie AS cpu
ARG TORCH_VERSION
# uv is mounted for the installs, never kept in the image. torch has a layer of its own, so a
# new easel release reuses it. The second install names torch again so that nothing can move it.
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    uv venv --python /usr/local/bin/python3 --no-python-downloads /opt/easel/venv
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/easel/venv/bin/python --link-mode copy --compile-bytecode \
        --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    --mount=from=wheel,source=/dist,target=/dist \
    --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/easel/venv/bin/python --link-mode copy --compile-bytecode \
        /dist/easel-*.whl "torch==${TORCH_VERSION}"
# A fixed uid, so volume ownership survives a rebuild; --no-log-init keeps a high uid from
# growing /var/log/lastlog into gigabytes.
RUN groupadd --system --gid 10001 easel \
    && useradd --system --no-log-init --uid 10001 --gid easel --create-home \
        --home-dir /home/easel --shell /usr/sbin/nologin easel \
    && mkdir -p /data /cache/huggingface \
    && chown easel:easel /data /cache/huggingface
ENV PATH=/opt/easel/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EASEL_DATA_DIR=/data \
    HF_HOME=/cache/huggingface
VOLUME ["/data", "/cache/huggingface"]
EXPOSE 8000
USER 10001:10001
WORKDIR /home/easel
# /livez answers while the process serves (readiness, /readyz, waits for the models: probe it
# from a load balancer instead). Python, not curl: the image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('EASEL_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["easel"]
CMD ["serve", "--host", "0.0.0.0"]

# ---- CUDA image (the default target) ---------------------------------------------------------
# The base flavour of the CUDA image is enough: torch's wheels bring their own CUDA libraries
# (cuBLAS, cuDNN, ...), so the runtime flavour would add gigabytes of second copies. The base
# image carries what the NVIDIA Container Toolkit reads (NVIDIA_VISIBLE_DEVICES, and the driver
# check NVIDIA_REQUIRE_CUDA). Ubuntu 24.04 has no Python 3.11: uv installs a pinned build.
FROM ${CUDA_IMAGE} AS cuda
ARG PYTHON_VERSION
ARG TORCH_VERSION
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    UV_PYTHON_INSTALL_DIR=/opt/python uv python install "${PYTHON_VERSION}" \
    && UV_PYTHON_INSTALL_DIR=/opt/python uv venv --python "${PYTHON_VERSION}" \
        --no-python-downloads /opt/easel/venv
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/easel/venv/bin/python --link-mode copy --compile-bytecode \
        "torch==${TORCH_VERSION}"
RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv \
    --mount=from=wheel,source=/dist,target=/dist \
    --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/easel/venv/bin/python --link-mode copy --compile-bytecode \
        /dist/easel-*.whl "torch==${TORCH_VERSION}"
RUN groupadd --system --gid 10001 easel \
    && useradd --system --no-log-init --uid 10001 --gid easel --create-home \
        --home-dir /home/easel --shell /usr/sbin/nologin easel \
    && mkdir -p /data /cache/huggingface \
    && chown easel:easel /data /cache/huggingface
ENV PATH=/opt/easel/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EASEL_DATA_DIR=/data \
    HF_HOME=/cache/huggingface
VOLUME ["/data", "/cache/huggingface"]
EXPOSE 8000
USER 10001:10001
WORKDIR /home/easel
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('EASEL_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["easel"]
CMD ["serve", "--host", "0.0.0.0"]
