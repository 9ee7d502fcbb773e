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

from dapframe.wire import Job, QueryRequest, SchemaResponse

from ._auth import DapAuth
from ._client import (
    DEFAULT_POLL,
    DEFAULT_TIMEOUT,
    AsyncDapClient,
    DownloadProgress,
    ProgressCallback,
)
from ._logging import install_url_filter
from ._ratelimit import RateLimits
from ._retry import RetryPolicy, RetryTransport, parse_retry_after
from ._sync import DapClient
from ._version import __version__

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
