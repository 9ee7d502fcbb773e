"""The ``dapframe`` command line (see :mod:`dapframe.cli._main`)."""

from dapframe.cli._main import cli, main

__all__ = ["cli", "main"]
