"""The Kubernetes operator: a PipelineService resource becomes a running pipeline.

Rendering (``crd``, ``spec``, ``render`` and the modules it uses) is pure and imports no
kopf and no Kubernetes client; the handlers apply what it renders.
"""
