"""Client of Instructure's DAP Query API (Canvas Data 2).

Public names live here; the modules behind them are private::

    from dapframe.api import AsyncDapClient, DapClient, QueryRequest

    with DapClient() as dap:                      # DAP_API_URL / DAP_CLIENT_ID / DAP_CLIENT_SECRET
        job, files = dap.query("canvas", "accounts", QueryRequest("jsonl"), "out")

``rate_limits=RateLimits()`` keeps the calls within the API's per-endpoint limits (off by
default); ``progress=`` callbacks receive :class:`DownloadProgress` events.

Errors are those of :mod:`dapframe.errors`; logging goes to the ``dapframe.api`` logger.
Importing this package filters the ``httpx``/``httpcore`` loggers so that logged URLs keep no
query string (pre-signed download URLs carry their signature there).
"""

from __future__ import annotations

import sys as _sys


def _import_httpx() -> None:
    """Import httpx without its command-line tool.

    httpx's package import loads ``httpx._main`` (rich, pygments, click: about 0.15 s of every
    start-up) whenever those are installed, and dapframe never calls it. The block is lifted
    afterwards, so an explicit ``import httpx._main`` still works.
    """
    if "httpx" in _sys.modules:
        return
    _sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    try:
        import httpx  # noqa: F401
    finally:
        if "httpx._main" in _sys.modules and _sys.modules["httpx._main"] is None:
            del _sys.modules["httpx._main"]


_import_httpx()

from dapframe.wire import Job, QueryRequest, SchemaResponse  # noqa: E402

from ._auth import DapAuth  # noqa: E402
from ._client import (  # noqa: E402
    DEFAULT_POLL,
    DEFAULT_TIMEOUT,
    AsyncDapClient,
    DownloadProgress,
    ProgressCallback,
)
from ._logging import install_url_filter  # noqa: E402
from ._ratelimit import RateLimits  # noqa: E402
from ._retry import RetryPolicy, RetryTransport, parse_retry_after  # noqa: E402
from ._sync import DapClient  # noqa: E402
from ._version import __version__  # noqa: E402

install_url_filter()

__all__ = [
    "DEFAULT_POLL",
    "DEFAULT_TIMEOUT",
    "AsyncDapClient",
    "DapAuth",
    "DapClient",
    "DownloadProgress",
    "Job",
    "ProgressCallback",
    "QueryRequest",
    "RateLimits",
    "RetryPolicy",
    "RetryTransport",
    "SchemaResponse",
    "__version__",
    "parse_retry_after",
]
