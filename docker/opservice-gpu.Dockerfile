# syntax=docker/dockerfile:1
# Op services on NVIDIA GPUs: CUDA 12.6 and cuDNN 9, paddlepaddle-gpu and onnxruntime-gpu.
# The base image for op code on GPUs: extend it with FROM (docker/README.md).
#   docker build -f docker/opservice-gpu.Dockerfile -t ghcr.io/pipeserve/opservice-gpu:0.1.0 .
# paddlepaddle-gpu 3.x is published on Paddle's own package index, not on PyPI (PyPI stops at
# 2.6.2); onnxruntime-gpu comes from PyPI (its CUDA 12 build).
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
# Ubuntu 24.04's Python.
ARG PYTHON_VERSION=3.12
ARG PADDLE_INDEX=https://www.paddlepaddle.org.cn/packages/stable/cu126/

FROM ${CUDA_IMAGE} AS build
ARG PADDLE_INDEX
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeserve ./pipeserve
RUN python3 -m venv /opt/pipeserve \
 && /opt/pipeserve/bin/pip install ".[otel]" "onnxruntime-gpu==1.31.1" "onnx==1.23.2"
RUN /opt/pipeserve/bin/pip install --extra-index-url "${PADDLE_INDEX}" "paddlepaddle-gpu==3.3.1"

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 pipeserve \
 && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin pipeserve
COPY --from=build /opt/pipeserve /opt/pipeserve
ENV PATH=/opt/pipeserve/bin:$PATH PYTHONUNBUFFERED=1 PYTHONPATH=/app
WORKDIR /app
USER 10001:10001
EXPOSE 9000
ENTRYPOINT ["pipeserve"]
# Which op to serve comes from the pipeline: `docker run --gpus 1 IMAGE opservice --config ... --op NAME`.
CMD ["opservice", "--help"]
