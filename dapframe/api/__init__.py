"""Client of Instructure's DAP Query API (Canvas Data 2).

Public names live here; the modules behind them are private::

    from dapframe.api import AsyncDapClient, DapClient, QueryRequest

    with DapClient() as dap:                      # DAP_API_URL / DAP_CLIENT_ID / DAP_CLIENT_SECRET
        job, files = dap.query("canvas", "accounts", QueryRequest("jsonl"), "out")

Errors are those of :mod:`dapframe.errors`; logging goes to the ``dapframe.api`` logger.
"""

from __future__ import annotations

from dapframe.wire import Job, QueryRequest, SchemaResponse

from ._auth import DapAuth
from ._client import DEFAULT_POLL, DEFAULT_TIMEOUT, AsyncDapClient
from ._retry import RetryPolicy, RetryTransport, parse_retry_after
from ._sync import DapClient
from ._version import __version__

__all__ = [
    "DEFAULT_POLL",
    "DEFAULT_TIMEOUT",
    "AsyncDapClient",
    "DapAuth",
    "DapClient",
    "Job",
    "QueryRequest",
    "RetryPolicy",
    "RetryTransport",
    "SchemaResponse",
    "__version__",
    "parse_retry_after",
]
