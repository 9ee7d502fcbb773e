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

:class:`SqlSession` holds what every DB-API-backed session shares (statement plumbing, the
transaction block, the ``table_sync`` reads); a dialect fills in its catalog queries, its
quoting and placeholders, its bulk path and its error messages.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

import pyarrow as pa

from dapframe.errors import DatabaseError
from dapframe.sync._layout import TableLayout, qi
from dapframe.sync._url import ConnectionInfo

__all__ = ["Dialect", "LoadCounts", "Session", "SqlSession", "SyncRow", "first_line", "naive",
           "utc"]

log = logging.getLogger("dapframe.sync")

#: Where the official client keeps its bookkeeping (a schema, or a name prefix on MySQL).
META_SCHEMA: Final = "instructure_dap"
#: The bookkeeping layout version the official client 2.3.1 writes.
DATABASE_VERSION: Final = 1
#: Suffix of the table a re-initialisation builds beside the live one.
SHADOW_SUFFIX: Final = "__dapframe_new"


def utc(ts: datetime) -> datetime:
    """``ts`` as an aware UTC datetime (naive values are taken as UTC, as databases store them)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def naive(ts: datetime) -> datetime:
    """``ts`` as a naive UTC datetime, the form the replica columns hold."""
    return utc(ts).replace(tzinfo=None)


def first_line(text: str) -> str:
    """The first non-blank line of a driver message, cut to 300 characters."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return text[:300]


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

    #: Whether string columns with a ``maxLength`` are ``varchar(n)`` that refuse longer text
    #: (then an over-long value is refused before the load, naming its column and key).
    bounded_text: bool = True

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


class SqlSession(Session):
    """A :class:`Session` over one DB-API cursor: plumbing and bookkeeping reads.

    Subclasses set :attr:`info`, :attr:`cur` and :attr:`errors` (the driver's base exception)
    and implement :meth:`_error`, :meth:`_relation_exists` and the data-changing methods; they
    override :meth:`qualified`, :meth:`qi` and :meth:`param` where their SQL differs.
    """

    info: ConnectionInfo
    cur: Any
    errors: type[BaseException] | tuple[type[BaseException], ...] = ()

    # -- SQL spelling ------------------------------------------------------------------------
    def qi(self, name: str) -> str:
        """Quote an identifier (double quotes; MySQL overrides with backticks)."""
        return qi(name)

    def param(self, index: int) -> str:
        """The placeholder of the ``index``-th (1-based) statement parameter."""
        return "?"

    def qualified(self, namespace: str, table: str) -> str:
        """The quoted name of a replica table (``"ns"."table"`` where schemas exist)."""
        return f"{self.qi(namespace)}.{self.qi(table)}"

    def meta_table(self, name: str) -> str:
        """The quoted name of a bookkeeping table (``table_sync``, ``database_version``)."""
        return self.qualified(META_SCHEMA, name)

    # -- plumbing ----------------------------------------------------------------------------
    @abstractmethod
    def _error(self, exc: BaseException, action: str, table: str | None = None
               ) -> DatabaseError:
        """One clear line for a driver error raised while doing ``action``."""

    def _run(self, sql: str, params: Sequence[Any] | None = None) -> None:
        log.debug("SQL: %s", sql if len(sql) < 500 else sql[:500] + "...")
        if params is None:
            self.cur.execute(sql)
        else:
            self.cur.execute(sql, params)

    def _all(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        self._run(sql, params)
        return list(self.cur.fetchall())

    def _one(self, sql: str, params: Sequence[Any] | None = None) -> tuple[Any, ...] | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    def _begin(self) -> None:
        """Open a transaction (drivers in autocommit mode need it said)."""

    @abstractmethod
    def _commit(self) -> None:
        """Commit the open transaction."""

    @abstractmethod
    def _rollback(self) -> None:
        """Roll back the open transaction."""

    def _tx(self, action: str, table: str | None = None) -> Transaction:
        return Transaction(self, action, table)

    # -- bookkeeping reads -------------------------------------------------------------------
    @abstractmethod
    def _relation_exists(self, namespace: str, table: str) -> bool:
        """Whether the table ``qualified(namespace, table)`` exists (inside a transaction)."""

    def _sync_rows(self, where: str, params: list[Any]) -> list[SyncRow]:
        if not self._relation_exists(META_SCHEMA, "table_sync"):
            return []
        q = self.qi
        rows = self._all(
            f"SELECT {q('id')}, {q('source_namespace')}, {q('source_table')}, {q('timestamp')}, "
            f"{q('schema_version')}, {q('target_schema')}, {q('target_table')} "
            f"FROM {self.meta_table('table_sync')} WHERE {where} "
            f"ORDER BY {q('source_table')}, {q('id')}", params)
        out: list[SyncRow] = []
        seen: set[str] = set()
        for r in rows:
            if r[2] in seen:  # no unique constraint upstream: the first row counts
                continue
            seen.add(r[2])
            out.append(SyncRow(int(r[0]), r[1], r[2], utc(r[3]), int(r[4]), r[5], r[6]))
        return out

    def sync_row(self, namespace: str, table: str) -> SyncRow | None:
        """The ``table_sync`` row of a table (None when not initialised)."""
        q, p = self.qi, self.param
        with self._tx("reading table_sync", f"{namespace}.{table}"):
            rows = self._sync_rows(f"{q('source_namespace')} = {p(1)} AND "
                                   f"{q('source_table')} = {p(2)}", [namespace, table])
        return rows[0] if rows else None

    def sync_rows(self, namespace: str) -> list[SyncRow]:
        """Every ``table_sync`` row of a namespace."""
        with self._tx("reading table_sync"):
            return self._sync_rows(f"{self.qi('source_namespace')} = {self.param(1)}",
                                   [namespace])

    def table_exists(self, namespace: str, table: str) -> bool:
        """Whether the replica table exists."""
        with self._tx("reading the catalog", f"{namespace}.{table}"):
            return self._relation_exists(namespace, table)

    def count(self, namespace: str, table: str) -> int:
        """``SELECT count(*)`` of the replica table."""
        with self._tx("counting rows", f"{namespace}.{table}"):
            row = self._one(f"SELECT count(*) FROM {self.qualified(namespace, table)}")
        return int(row[0]) if row else 0

    def target(self, namespace: str, table: str) -> tuple[str | None, str]:
        """``(target_schema, target_table)`` as ``table_sync`` records them."""
        return namespace, table

    def _write_sync_row(self, layout: TableLayout, watermark: datetime,
                        row_id: int | None) -> None:
        """Insert the table's ``table_sync`` row, or update row ``row_id``."""
        q, p = self.qi, self.param
        schema, table = self.target(layout.namespace, layout.table)
        values = {"timestamp": naive(watermark), "schema_version": layout.version,
                  "target_schema": schema, "target_table": table,
                  "schema_description": layout.description}
        if row_id is None:
            values = {"source_namespace": layout.namespace, "source_table": layout.table,
                      **values}
            names = [*values, "schema_description_format"]
            marks = [p(i) for i in range(1, len(values) + 1)] + ["'json'"]
            self._run(f"INSERT INTO {self.meta_table('table_sync')} "
                      f"({', '.join(q(n) for n in names)}) VALUES ({', '.join(marks)})",
                      list(values.values()))
        else:
            sets = [f"{q(n)} = {p(i)}" for i, n in enumerate(values, 1)]
            sets.append(f"{q('schema_description_format')} = 'json'")
            self._run(f"UPDATE {self.meta_table('table_sync')} SET {', '.join(sets)} "
                      f"WHERE {q('id')} = {p(len(values) + 1)}", [*values.values(), row_id])

    def _drop_sync_row(self, namespace: str, table: str) -> SyncRow:
        """Delete a table's ``table_sync`` row (inside a transaction); refuse when there is none.

        Returns
        -------
        SyncRow
            The deleted row, which names the table to drop.
        """
        q, p = self.qi, self.param
        rows = self._sync_rows(f"{q('source_namespace')} = {p(1)} AND "
                               f"{q('source_table')} = {p(2)}", [namespace, table])
        if not rows:
            raise DatabaseError(f"{namespace}.{table} is not initialised in {self.info.where}: "
                                "nothing to drop (a table without a table_sync row is left "
                                "alone)")
        self._run(f"DELETE FROM {self.meta_table('table_sync')} WHERE "
                  f"{q('source_namespace')} = {p(1)} AND {q('source_table')} = {p(2)}",
                  [namespace, table])
        return rows[0]

    def _check_version(self, versions: list[int]) -> bool:
        """Whether ``database_version`` needs its row; refuse a newer layout than ours."""
        if versions and max(versions) > DATABASE_VERSION:
            raise DatabaseError(
                f"{self.info.where}: the bookkeeping tables are at version {max(versions)}, "
                f"newer than this dapframe knows ({DATABASE_VERSION}): upgrade dapframe")
        # An empty version table makes the official client re-run its 0 -> 1 upgrade, which
        # empties table_sync: always record the version.
        return not versions


class Transaction:
    """One transaction: commit on success; roll back and translate driver errors otherwise."""

    def __init__(self, session: SqlSession, action: str, table: str | None) -> None:
        self.session = session
        self.action = action
        self.table = table

    def __enter__(self) -> None:
        self.session._begin()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        s = self.session
        if exc is None:
            try:
                s._commit()
            except s.errors as err:
                raise s._error(err, self.action, self.table) from None
            return
        try:
            s._rollback()
        except Exception:  # the connection may be gone: the server rolls back for us
            pass
        if isinstance(exc, s.errors):
            raise s._error(exc, self.action, self.table) from exc


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
    if info.dialect == "mysql":
        from dapframe.sync._mysql import MySQLDialect

        return MySQLDialect(info)
    if info.dialect == "mssql":
        from dapframe.sync._mssql import MSSQLDialect

        return MSSQLDialect(info)
    from dapframe.sync._postgres import PostgresDialect

    return PostgresDialect(info)
