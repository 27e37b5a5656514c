# syntax=docker/dockerfile:1
# concept-service: activation sets, concept models, concept metrics. Needs
# torch; this image takes the CPU build from the PyTorch CPU index (about
# 200 MB instead of several GB of CUDA libraries). For GPU fitting, build with
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
#
#   docker build -f docker/concept.Dockerfile -t xaimesh/concept-service:0.1.0 .
#
# Activation sets and concept models live in XAIMESH_DATA_DIR: mount a volume
# there (a PersistentVolumeClaim on Kubernetes) or they die with the container.
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
# torch is already satisfied: the extra adds safetensors, scikit-learn, scipy.
# Dependencies first, from pyproject.toml alone (empty package directories and
# README stand in for the sources): this layer stays cached until
# pyproject.toml changes, so a source change re-installs xaimesh only.
COPY pyproject.toml ./
RUN mkdir -p contracts clients/python services && touch README.md \
 && pip install --no-cache-dir "/src[concept]"
COPY . .
RUN pip install --no-cache-dir --no-deps --force-reinstall "/src[concept]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="xaimesh concept-service" \
      org.opencontainers.image.source="https://github.com/xaimesh/xaimesh" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 xaimesh \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/xaimesh --create-home --shell /usr/sbin/nologin xaimesh \
 && mkdir -p /var/lib/xaimesh/data \
 && chown -R 10001:10001 /var/lib/xaimesh
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/xaimesh/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    XAIMESH_HOST=0.0.0.0 \
    XAIMESH_PORT=50053 \
    XAIMESH_METRICS_PORT=9103 \
    XAIMESH_LOG_FORMAT=json \
    XAIMESH_DATA_DIR=/var/lib/xaimesh/data \
    XAIMESH_MODEL_SERVER=model-server:50051
USER 10001:10001
WORKDIR /home/xaimesh
VOLUME ["/var/lib/xaimesh/data"]
EXPOSE 50053 9103
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "/opt/xaimesh/healthcheck.py"]
ENTRYPOINT ["xaimesh", "serve", "concept"]
