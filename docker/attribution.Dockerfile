# syntax=docker/dockerfile:1
# attribution-service: perturbation and gradient attribution methods. Holds no
# model (talks to the model-server), so no torch: only the `attribution` extra.
#
#   docker build -f docker/attribution.Dockerfile -t xaimesh/attribution-service:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject.toml alone (empty package directories and
# README stand in for the sources): this layer stays cached until
# pyproject.toml changes, so a source change re-installs xaimesh only.
COPY pyproject.toml ./
RUN mkdir -p contracts clients/python services && touch README.md \
 && pip install --no-cache-dir "/src[attribution]"
COPY . .
RUN pip install --no-cache-dir --no-deps --force-reinstall "/src[attribution]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="xaimesh attribution-service" \
      org.opencontainers.image.source="https://github.com/xaimesh/xaimesh" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 xaimesh \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/xaimesh --create-home --shell /usr/sbin/nologin xaimesh
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/xaimesh/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    XAIMESH_HOST=0.0.0.0 \
    XAIMESH_PORT=50052 \
    XAIMESH_METRICS_PORT=9102 \
    XAIMESH_LOG_FORMAT=json \
    XAIMESH_MODEL_SERVER=model-server:50051
USER 10001:10001
WORKDIR /home/xaimesh
EXPOSE 50052 9102
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "/opt/xaimesh/healthcheck.py"]
ENTRYPOINT ["xaimesh", "serve", "attribution"]
