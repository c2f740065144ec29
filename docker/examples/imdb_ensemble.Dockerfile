# syntax=docker/dockerfile:1
# The imdb ensemble's image (examples/imdb_ensemble/pipelineservice.yaml, spec.image): the GPU
# base plus the example's op code. Build from the repository root:
#   docker build -f docker/examples/imdb_ensemble.Dockerfile -t ghcr.io/pipeserve/imdb-ensemble:0.1.0 .
FROM ghcr.io/pipeserve/opservice-gpu:0.1.0
# The PipelineService's workingDir; the base image puts it on PYTHONPATH, so ops:BowOp imports.
WORKDIR /app
COPY examples/imdb_ensemble/ops.py examples/imdb_ensemble/models.py ./
