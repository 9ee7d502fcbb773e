"""The interface every replica database implements, and what flows through it.

A :class:`Dialect` knows one kind of database; :meth:`Dialect.session` opens one connection
(:class:`Session`), used by one table at a time from one thread. The engine
(:mod:`dapframe.sync._engine`) talks to the API and hands the session typed Arrow batches; the
session owns every statement, and each data-changing method is one transaction:

=========================  ====================================================================
``initdb``                 build the table and its rows, then record the watermark: one
                           transaction (a shadow table swapped in when one exists already)
``syncdb``                 stage the changes, upsert ``U`` rows, delete ``D`` keys, advance the
                           watermark: one transaction
``migrate``                in-place schema changes (new columns, enum values, wider types),
                           committed before the data transaction that needs them
``dropdb``                 drop the table and its ``table_sync`` row: one transaction
=========================  ====================================================================

MySQL and SQL Server follow as further subclasses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType

import pyarrow as pa

from dapframe.sync._layout import TableLayout
from dapframe.sync._url import ConnectionInfo

__all__ = ["Dialect", "LoadCounts", "Session", "SyncRow"]


@dataclass(frozen=True)
class SyncRow:
    """One ``instructure_dap.table_sync`` row.

    Attributes
    ----------
    id : int
        Row id.
    namespace, table : str
        Source namespace and table.
    timestamp : datetime
        Watermark (aware, UTC): where the next incremental query starts.
    schema_version : int
        Schema version of the last initdb or syncdb.
    target_schema, target_table : str or None
        Where the replica lives.
    """

    id: int
    namespace: str
    table: str
    timestamp: datetime
    schema_version: int
    target_schema: str | None
    target_table: str


@dataclass
class LoadCounts:
    """Rows a load changed: inserted, updated and deleted (and rows received)."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    received: int = 0
    changes: list[str] = field(default_factory=list)


class Session(ABC):
    """One connection to a replica database, used from one thread at a time."""

    @abstractmethod
    def ensure_bookkeeping(self, namespace: str) -> None:
        """Create ``instructure_dap.table_sync``/``database_version`` and the namespace schema."""

    @abstractmethod
    def sync_row(self, namespace: str, table: str) -> SyncRow | None:
        """The ``table_sync`` row of a table, or None when it is not initialised."""

    @abstractmethod
    def sync_rows(self, namespace: str) -> list[SyncRow]:
        """Every ``table_sync`` row of a namespace, by table name."""

    @abstractmethod
    def table_exists(self, namespace: str, table: str) -> bool:
        """Whether the replica table exists (with or without a ``table_sync`` row)."""

    @abstractmethod
    def migrate(self, layout: TableLayout) -> list[str]:
        """Bring an existing table to ``layout`` in place; return what changed (committed)."""

    @abstractmethod
    def initdb(self, layout: TableLayout, batches: Iterator[pa.RecordBatch],
               watermark: datetime, *, replace: SyncRow | None = None) -> LoadCounts:
        """Load a snapshot into a new table and record ``watermark``, in one transaction.

        When the table exists already (re-initialisation, or a table some interrupted load
        left without a ``table_sync`` row), the new one is built beside it and swapped in, so
        readers see the old table until the commit and the new one after it. A PostgreSQL
        table that views depend on is kept instead and takes the new rows in place, in the
        same transaction, so that its views survive.

        Parameters
        ----------
        layout : TableLayout
            The table.
        batches : iterator of RecordBatch
            Canonical snapshot batches (``layout.read_schema``, plain naming), streamed.
        watermark : datetime
            The snapshot's ``at``.
        replace : SyncRow, optional
            Re-initialise an initialised table (recovery): this row is updated. Without it,
            the table must have no ``table_sync`` row.
        """

    @abstractmethod
    def syncdb(self, layout: TableLayout, batches: Iterator[pa.RecordBatch],
               watermark: datetime, row: SyncRow) -> LoadCounts:
        """Apply incremental batches and advance the watermark from ``row``, in one transaction."""

    @abstractmethod
    def dropdb(self, namespace: str, table: str) -> None:
        """Drop the table and its ``table_sync`` row, in one transaction."""

    @abstractmethod
    def count(self, namespace: str, table: str) -> int:
        """Rows in the replica table."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection (an open transaction is rolled back)."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Dialect(ABC):
    """One kind of replica database.

    Parameters
    ----------
    info : ConnectionInfo
        The parsed connection string.
    """

    #: Dialect name, as in the connection string scheme.
    name: str = ""

    def __init__(self, info: ConnectionInfo) -> None:
        self.info = info

    @abstractmethod
    def session(self) -> Session:
        """Open a connection.

        Raises
        ------
        DatabaseError
            Unreachable server, wrong credentials, unknown database, file in use.
        """

    def close(self) -> None:  # noqa: B027 - most dialects hold nothing between sessions
        """Release what the dialect holds across sessions (DuckDB's database instance)."""

    @property
    def where(self) -> str:
        """Short name of the database for messages."""
        return self.info.where

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.display!r})"


def dialect_for(info: ConnectionInfo) -> Dialect:
    """The :class:`Dialect` for a parsed connection string."""
    if info.dialect == "duckdb":
        from dapframe.sync._duckdb import DuckDBDialect

        return DuckDBDialect(info)
    from dapframe.sync._postgres import PostgresDialect

    return PostgresDialect(info)
