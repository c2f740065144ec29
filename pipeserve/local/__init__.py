"""``pipeserve run``: a PipelineService as processes on this machine, wired as on a cluster.

:mod:`plan` turns the operator's rendered objects into processes to start; :mod:`probes`
tells when each is ready; :mod:`supervisor` starts them in order, restarts those that exit
and stops them all.
"""
