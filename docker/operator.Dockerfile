# syntax=docker/dockerfile:1
# The operator: turns PipelineService resources into Deployments and Services (charts/pipeserve).
#   docker build -f docker/operator.Dockerfile -t ghcr.io/pipeserve/operator:0.1.0 .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeserve ./pipeserve
RUN python -m venv /opt/pipeserve \
 && /opt/pipeserve/bin/pip install "."

FROM python:${PYTHON_VERSION}-slim-bookworm
RUN groupadd --gid 10001 pipeserve \
 && useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin pipeserve
COPY --from=build /opt/pipeserve /opt/pipeserve
ENV PATH=/opt/pipeserve/bin:$PATH PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["pipeserve"]
CMD ["operator", "--all-namespaces", "--liveness", "http://0.0.0.0:8080/healthz"]
