# syntax=docker/dockerfile:1
# The gateway: runs a pipeline's DAG and its HTTP and gRPC front doors, without model runtimes.
# A base image: extend it with FROM to add op code that runs in the gateway (docker/README.md).
#   docker build -f docker/gateway.Dockerfile -t ghcr.io/pipeserve/gateway:0.1.0 .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeserve ./pipeserve
RUN python -m venv /opt/pipeserve \
 && /opt/pipeserve/bin/pip install ".[otel]"

FROM python:${PYTHON_VERSION}-slim-bookworm
RUN groupadd --gid 10001 pipeserve \
 && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin pipeserve
COPY --from=build /opt/pipeserve /opt/pipeserve
ENV PATH=/opt/pipeserve/bin:$PATH PYTHONUNBUFFERED=1 PYTHONPATH=/app
WORKDIR /app
USER 10001:10001
EXPOSE 18070 18071
ENTRYPOINT ["pipeserve"]
CMD ["gateway", "--config", "/etc/pipeserve/config.yml", "--graph", "/etc/pipeserve/graph.yml"]
