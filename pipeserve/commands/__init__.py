"""The ``pipeserve`` subcommands, one module each.

Each module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
(the exit status). ``pipeserve.cli`` lists them.
"""
