"""The installed version of dapframe (for ``User-Agent`` and ``--version``)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__: str = version("dapframe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.1.0"
