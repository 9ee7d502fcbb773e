"""Replicas of DAP tables in PostgreSQL and DuckDB: a drop-in for ``dap initdb``/``syncdb``.

The database layout is the official client's (reference section 11): a schema per namespace,
the official table and column names and types, enum types ``"<ns>"."<table>__<column>"``, and
the ``instructure_dap.table_sync`` and ``database_version`` bookkeeping tables. A database
``dap initdb`` built can be synchronised here, and the other way round.

Every load is one transaction: a crash leaves the old state or the new one, never a mix.

Examples
--------
>>> import dapframe
>>> report = dapframe.sync("duckdb:///canvas.duckdb", "canvas.accounts")   # doctest: +SKIP
>>> print(report.summary())                                                  # doctest: +SKIP
>>> dapframe.read_table("duckdb:///canvas.duckdb", "canvas.accounts")        # doctest: +SKIP

``dapframe.sync`` is both this package and its main function: calling the package calls
:func:`sync`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from dapframe.sync._api import (
    dropdb,
    initdb,
    listdb,
    read_table,
    sync,
    sync_result,
    sync_tables,
    syncdb,
)
from dapframe.sync._dialect import Dialect, LoadCounts, Session, SyncRow, dialect_for
from dapframe.sync._engine import SyncReport
from dapframe.sync._layout import TableLayout, table_layout
from dapframe.sync._url import (
    DEFAULT_DUCKDB_FILE,
    ConnectionInfo,
    default_connection_string,
    parse_connection_string,
)

__all__ = [
    "DEFAULT_DUCKDB_FILE",
    "ConnectionInfo",
    "Dialect",
    "DuckDBDialect",
    "LoadCounts",
    "PostgresDialect",
    "Session",
    "SyncReport",
    "SyncRow",
    "TableLayout",
    "default_connection_string",
    "dialect_for",
    "dropdb",
    "initdb",
    "listdb",
    "parse_connection_string",
    "read_table",
    "sync",
    "sync_result",
    "sync_tables",
    "syncdb",
    "table_layout",
]


def __getattr__(name: str) -> Any:
    # The dialects import their drivers' packages lazily; so do their names here.
    if name == "PostgresDialect":
        from dapframe.sync._postgres import PostgresDialect

        return PostgresDialect
    if name == "DuckDBDialect":
        from dapframe.sync._duckdb import DuckDBDialect

        return DuckDBDialect
    raise AttributeError(f"module 'dapframe.sync' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """``dapframe.sync(...)`` calls :func:`sync` although ``dapframe.sync`` is a package."""

    def __call__(self, *args: Any, **kwargs: Any) -> SyncReport:
        return sync(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
