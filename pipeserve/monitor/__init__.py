"""Watching a running pipeline from outside: the DAG's picture, metrics, traces, a status page.

``shape`` and ``drawing`` turn a DAG (from Python, a config.yml or a PipelineService) into
a picture; ``metrics`` turns the engine's observer events into Prometheus metrics and live
per-op figures; ``tracing`` into OpenTelemetry spans; ``status_page`` shows the picture with
the figures. Nothing here is on the serving path unless a server turns it on.
"""
