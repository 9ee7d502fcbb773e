"""dapframe: Instructure's DAP Query API (Canvas Data 2), native to Python, Polars and DuckDB.

Public names are loaded lazily so that ``import dapframe.emulator`` never pulls in the
client (the emulator shares only :mod:`dapframe.wire` with it).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dapframe.api import AsyncDapClient, DapClient, RetryPolicy, __version__
    from dapframe.config import DapConfig, Secret
    from dapframe.frames import apply_changes
    from dapframe.result import QueryResult, QuerySpec, incremental, snapshot
    from dapframe.sync import SyncReport, read_table
    from dapframe.wire import QueryRequest

__all__ = [
    "AsyncDapClient",
    "DapClient",
    "DapConfig",
    "QueryRequest",
    "QueryResult",
    "QuerySpec",
    "RetryPolicy",
    "Secret",
    "SyncReport",
    "__version__",
    "apply_changes",
    "incremental",
    "read_incremental",
    "read_snapshot",
    "read_table",
    "snapshot",
    "sync",
]

_LAZY = {
    "AsyncDapClient": "dapframe.api",
    "DapClient": "dapframe.api",
    "RetryPolicy": "dapframe.api",
    "__version__": "dapframe.api",
    "DapConfig": "dapframe.config",
    "Secret": "dapframe.config",
    "QueryRequest": "dapframe.wire",
    "QueryResult": "dapframe.result",
    "QuerySpec": "dapframe.result",
    "snapshot": "dapframe.result",
    "read_snapshot": "dapframe.result",
    "read_incremental": "dapframe.result",
    "incremental": "dapframe.result",
    "apply_changes": "dapframe.frames",
    "SyncReport": "dapframe.sync",
    "read_table": "dapframe.sync",
}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext dapframe``: register the ``%dap`` magics (see :mod:`dapframe.jupyter`)."""
    # Imported here, not at the top, so that ``import dapframe`` stays light.
    from dapframe.jupyter import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext dapframe``: close the magics' session (client, emulator)."""
    from dapframe.jupyter import unload_ipython_extension as unload

    unload(ipython)


def __getattr__(name: str) -> Any:
    if name == "sync":
        # The dapframe.sync package is callable: dapframe.sync(...) runs dapframe.sync.sync.
        return import_module("dapframe.sync")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dapframe' has no attribute {name!r}")
    return getattr(import_module(module), name)
