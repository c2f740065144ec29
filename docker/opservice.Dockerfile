# syntax=docker/dockerfile:1
# Op services on CPU, with Paddle Inference and ONNX Runtime; also runs the gateway.
# The base image for op code on CPU: extend it with FROM (docker/README.md).
#   docker build -f docker/opservice.Dockerfile -t ghcr.io/pipeserve/opservice:0.1.0 .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeserve ./pipeserve
RUN python -m venv /opt/pipeserve \
 && /opt/pipeserve/bin/pip install ".[paddle,onnx,otel]"

FROM python:${PYTHON_VERSION}-slim-bookworm
# libgomp1: the OpenMP runtime Paddle's CPU kernels load (a shared library, not a build tool).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 pipeserve \
 && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin pipeserve
COPY --from=build /opt/pipeserve /opt/pipeserve
ENV PATH=/opt/pipeserve/bin:$PATH PYTHONUNBUFFERED=1 PYTHONPATH=/app
WORKDIR /app
USER 10001:10001
EXPOSE 9000
ENTRYPOINT ["pipeserve"]
# Which op to serve comes from the pipeline: `docker run IMAGE opservice --config ... --op NAME`.
CMD ["opservice", "--help"]
