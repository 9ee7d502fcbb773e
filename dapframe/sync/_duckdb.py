"""DuckDB replicas (``duckdb:///path.duckdb``): the embedded default, through DuckDB's Arrow path.

The official layout carried over: a schema per namespace, the official table and column names,
enum types named ``"<ns>"."<table>__<column>"``, timestamps as naive UTC ``TIMESTAMP``, and the
same ``instructure_dap.table_sync``/``database_version`` bookkeeping (``id`` from a sequence,
as DuckDB has no identity columns).

Arrow batches stream straight into ``INSERT ... SELECT`` from a registered record-batch reader;
DuckDB casts enums, JSON, UUIDs and arrays on the way in. One transaction per operation, as
for PostgreSQL: DuckDB's DDL is transactional, and a process killed mid-transaction leaves the
file as of the last commit. One process at a time may open a DuckDB file for writing; the
tables of one run share that process's database instance (a cursor per table).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final

import pyarrow as pa

from dapframe.errors import DatabaseError
from dapframe.sync._dialect import (
    DATABASE_VERSION,
    META_SCHEMA,
    SHADOW_SUFFIX,
    Dialect,
    LoadCounts,
    SqlSession,
    SyncRow,
    first_line,
    utc,
)
from dapframe.sync._layout import (
    META_ACTION,
    META_SEQ,
    META_TS,
    DbColumn,
    TableLayout,
    naive_utc,
    qi,
    ql,
)
from dapframe.sync._url import ConnectionInfo

__all__ = ["DuckDBDialect", "DuckDBSession"]

log = logging.getLogger("dapframe.sync")

_SYNC: Final = f"{qi(META_SCHEMA)}.{qi('table_sync')}"
_VERSION: Final = f"{qi(META_SCHEMA)}.{qi('database_version')}"
_SRC: Final = "dapframe_src"
_SEQ_ID: Final = f"{META_SCHEMA}.table_sync_id_seq"
# DuckDB's names for types it reports differently from how they are written.
_ALIASES: Final = {"REAL": "FLOAT"}

#: Name the replica file is attached under in dapframe's own DuckDB sessions.
CATALOG = "dapframe_replica"


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError("DuckDB needs the frames extra: pip install 'dapframe[frames]'"
                          ) from None
    return duckdb


class DuckDBDialect(Dialect):
    """DuckDB (``duckdb:///relative.duckdb``, ``duckdb:////absolute.duckdb``).

    Parameters
    ----------
    info : ConnectionInfo
        The parsed connection string.
    read_only : bool
        Open the file read-only (several readers may share it; no writer meanwhile).
    create : bool
        Create the file if it does not exist (False for commands that need an initialised
        replica: they fail without leaving an empty file behind).
    """

    name = "duckdb"

    def __init__(self, info: ConnectionInfo, *, read_only: bool = False,
                 create: bool = True) -> None:
        super().__init__(info)
        self.read_only = read_only
        self.create = create
        self._con: Any = None
        self._lock = threading.Lock()
        #: Serialises catalog-wide DDL (bookkeeping, schemas) between the tables of one run.
        self.ddl_lock = threading.Lock()

    def connection(self) -> Any:
        """The process's DuckDB connection to the file (opened on first use)."""
        with self._lock:
            if self._con is None:
                self._con = open_duckdb(self.info, read_only=self.read_only, create=self.create)
            return self._con

    def session(self) -> DuckDBSession:
        """A cursor on the shared connection."""
        cursor = self.connection().cursor()
        if self.info.path is not None:
            cursor.execute(f"USE {CATALOG}")  # a cursor starts in the default catalog again
        return DuckDBSession(self, cursor)

    def close(self) -> None:
        """Close the file (checkpointing it)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


def open_duckdb(info: ConnectionInfo, *, read_only: bool = False, create: bool = True) -> Any:
    """Open the DuckDB file of ``info``, with one-line errors."""
    duckdb = _duckdb()
    path = info.path
    if path is None:
        return duckdb.connect(":memory:")
    if (read_only or not create) and not path.exists():
        raise DatabaseError(f"DuckDB file {path} does not exist, so the table is not initialised "
                            "there: run initdb first (or check the connection string)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Attached under a fixed name, not the file's own: a file named like a namespace
        # (canvas.duckdb) would make "canvas"."accounts" ambiguous between catalog and schema.
        con = duckdb.connect(":memory:")
        literal = "'" + str(path).replace("'", "''") + "'"
        con.execute(f"ATTACH {literal} AS {CATALOG}" + (" (READ_ONLY)" if read_only else ""))
        con.execute(f"USE {CATALOG}")
        return con
    except OSError as exc:
        raise DatabaseError(f"cannot create DuckDB file {path}: {exc.strerror or exc}") from None
    except duckdb.Error as exc:
        text = str(exc)
        pid = re.search(r"PID (\d+)", text)
        if "lock" in text.lower():
            raise DatabaseError(
                f"DuckDB file {path} is in use by another process"
                + (f" (PID {pid.group(1)})" if pid else "")
                + ": wait for it to finish, or use another file") from None
        raise DatabaseError(f"cannot open DuckDB file {path}: {first_line(text)}") from None


class DuckDBSession(SqlSession):
    """One cursor on the dialect's connection; each method is one transaction."""

    bounded_text = False  # VARCHAR has no length: over-long text is kept as served

    def __init__(self, dialect: DuckDBDialect, cur: Any) -> None:
        self.dialect = dialect
        self.info = dialect.info
        self.cur = cur
        self.errors = _duckdb().Error

    def close(self) -> None:
        """Roll back an open transaction and close the cursor."""
        try:
            self.cur.rollback()
        except Exception:
            pass
        try:
            self.cur.close()
        except Exception:
            pass

    def _error(self, exc: BaseException, action: str, table: str | None = None
               ) -> DatabaseError:
        prefix = f"{table}: " if table else ""
        return DatabaseError(f"{prefix}DuckDB failed while {action} in {self.info.where}: "
                             f"{first_line(str(exc))}")

    def _begin(self) -> None:
        self.cur.begin()

    def _commit(self) -> None:
        self.cur.commit()

    def _rollback(self) -> None:
        self.cur.rollback()

    def _relation_exists(self, schema: str, name: str) -> bool:
        return self._one("SELECT 1 FROM duckdb_tables() WHERE schema_name = ? AND table_name = ? "
                         "AND database_name = current_database()", [schema, name]) is not None

    # -- bookkeeping -----------------------------------------------------------------------
    def ensure_bookkeeping(self, namespace: str) -> None:
        """Create the bookkeeping tables (version 1) and the namespace's schema."""
        with self.dialect.ddl_lock, self._tx("creating the bookkeeping tables"):
            for schema in (META_SCHEMA, namespace):
                self._run(f"CREATE SCHEMA IF NOT EXISTS {qi(schema)}")
            self._run(f"CREATE SEQUENCE IF NOT EXISTS {qi(META_SCHEMA)}."
                      f"{qi('table_sync_id_seq')}")
            self._run(f"""CREATE TABLE IF NOT EXISTS {_SYNC} (
    "id" BIGINT NOT NULL DEFAULT nextval({ql(_SEQ_ID)}),
    "source_namespace" VARCHAR NOT NULL,
    "source_table" VARCHAR NOT NULL,
    "timestamp" TIMESTAMP NOT NULL,
    "schema_version" BIGINT NOT NULL,
    "target_schema" VARCHAR,
    "target_table" VARCHAR NOT NULL,
    "schema_description_format" VARCHAR NOT NULL,
    "schema_description" VARCHAR NOT NULL,
    CONSTRAINT "pk_table_sync" PRIMARY KEY ("id")
)""")
            self._run(f'CREATE TABLE IF NOT EXISTS {_VERSION} ("version" BIGINT NOT NULL, '
                      'CONSTRAINT "pk_database_version" PRIMARY KEY ("version"))')
            versions = [int(r[0]) for r in self._all(f'SELECT "version" FROM {_VERSION}')]
            if self._check_version(versions):
                self._run(f'INSERT INTO {_VERSION} VALUES ({DATABASE_VERSION})')

    # -- types and migration ---------------------------------------------------------------
    def _enum_labels(self, schema: str, name: str) -> list[str] | None:
        found = self._one("SELECT 1 FROM duckdb_types() WHERE schema_name = ? AND type_name = ? "
                          "AND database_name = current_database()", [schema, name])
        if found is None:
            return None
        row = self._one(f"SELECT enum_range(NULL::{qi(schema)}.{qi(name)})")
        return list(row[0]) if row else []

    def _create_enum(self, layout: TableLayout, col: DbColumn) -> None:
        assert col.enum_type is not None
        values = ", ".join(ql(v) for v in col.enum)
        self._run(f"CREATE TYPE {qi(layout.namespace)}.{qi(col.enum_type)} AS ENUM ({values})")

    def _columns(self, namespace: str, table: str) -> dict[str, tuple[str, bool]]:
        rows = self._all("SELECT column_name, data_type, is_nullable FROM duckdb_columns() "
                         "WHERE schema_name = ? AND table_name = ? AND database_name = "
                         "current_database() ORDER BY column_index", [namespace, table])
        return {r[0]: (str(r[1]), bool(r[2])) for r in rows}

    def migrate(self, layout: TableLayout) -> list[str]:
        """Bring an existing table to ``layout`` in place (one committed transaction).

        DuckDB cannot add a value to an enum type, so a column whose enum grew is moved to
        text, its type recreated with the new members, and the column moved back: views keep
        working (DuckDB binds them by name). New columns are added, changed types altered.
        """
        changes: list[str] = []
        ns, table = layout.namespace, layout.table
        target = f"{qi(ns)}.{qi(table)}"
        with self._tx("migrating the table", layout.name):
            existing = self._columns(ns, table)
            for col in layout.enums:
                assert col.enum_type is not None
                labels = self._enum_labels(ns, col.enum_type)
                if labels is None:
                    self._create_enum(layout, col)
                    changes.append(f"enum {col.enum_type}: created")
                    continue
                if labels == list(col.enum) or set(col.enum) <= set(labels):
                    continue
                users = [c for c in layout.enums if c.enum_type == col.enum_type
                         and c.name in existing]
                for user in users:
                    text = "VARCHAR[]" if user.is_array else "VARCHAR"
                    self._run(f"ALTER TABLE {target} ALTER COLUMN {qi(user.name)} TYPE {text}")
                self._run(f"DROP TYPE {qi(ns)}.{qi(col.enum_type)}")
                self._create_enum(layout, col)
                for user in users:
                    self._run(f"ALTER TABLE {target} ALTER COLUMN {qi(user.name)} TYPE "
                              f"{user.duck_type}")
                added = [v for v in col.enum if v not in labels]
                changes.append(f"enum {col.enum_type}: added {', '.join(map(repr, added))}")
            if not existing:
                return changes
            for col in layout.columns:
                have = existing.get(col.name)
                if have is None:
                    self._run(f"ALTER TABLE {target} ADD COLUMN {qi(col.name)} {col.duck_type}")
                    if col.description:
                        self._run(f"COMMENT ON COLUMN {target}.{qi(col.name)} IS "
                                  f"{ql(col.description)}")
                    changes.append(f"column {col.name}: added ({col.duck_type})")
                    continue
                if col.enum_type is None and not _same_type(have[0], col.duck_type):
                    self._run(f"ALTER TABLE {target} ALTER COLUMN {qi(col.name)} TYPE "
                              f"{col.duck_type}")
                    changes.append(f"column {col.name}: {have[0]} -> {col.duck_type}")
                if not have[1] and col.nullable:
                    self._run(f"ALTER TABLE {target} ALTER COLUMN {qi(col.name)} "
                              "DROP NOT NULL")
                    changes.append(f"column {col.name}: now nullable")
            known = {c.name for c in layout.columns}
            for name, (_, nullable) in existing.items():
                if name not in known and not nullable:
                    self._run(f"ALTER TABLE {target} ALTER COLUMN {qi(name)} DROP NOT NULL")
                    changes.append(f"column {name}: no longer in the schema, now nullable")
        return changes

    # -- loading ---------------------------------------------------------------------------
    def _source(self, layout: TableLayout, batches: Iterator[pa.RecordBatch], *,
                incremental: bool) -> None:
        """Register the batches (timestamps made naive UTC, a sequence number added)."""
        canonical = layout.read_schema.arrow_schema(incremental=incremental)
        fields = []
        for f in canonical:
            typ = pa.timestamp("us") if pa.types.is_timestamp(f.type) else f.type
            fields.append(pa.field(f.name, typ, nullable=True))
        fields.append(pa.field(META_SEQ, pa.int64()))
        schema = pa.schema(fields)

        def convert() -> Iterator[pa.RecordBatch]:
            seq = 0
            for batch in batches:
                arrays = [naive_utc(a) if pa.types.is_timestamp(a.type) else a
                          for a in batch.columns]
                arrays.append(pa.array(range(seq, seq + batch.num_rows), pa.int64()))
                seq += batch.num_rows
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)

        self.cur.register(_SRC, pa.RecordBatchReader.from_batches(schema, convert()))

    def initdb(self, layout: TableLayout, batches: Iterator[pa.RecordBatch],
               watermark: datetime, *, replace: SyncRow | None = None) -> LoadCounts:
        """Build the table and its rows and record the watermark, in one transaction."""
        ns, table = layout.namespace, layout.table
        counts = LoadCounts()
        with self._tx("loading the snapshot", layout.name):
            current = self._sync_rows('"source_namespace" = ? AND "source_table" = ?',
                                      [ns, table])
            if replace is None and current:
                raise DatabaseError(f"{layout.name} is already initialised in "
                                    f"{self.info.where}: run syncdb to update it")
            if replace is not None and (not current or current[0].id != replace.id
                                        or current[0].timestamp != replace.timestamp):
                raise DatabaseError(f"{layout.name} changed in {self.info.where} while it was "
                                    "being re-initialised (another sync?): run syncdb again")
            for col in layout.enums:
                assert col.enum_type is not None
                labels = self._enum_labels(ns, col.enum_type)
                if labels is None:
                    self._create_enum(layout, col)
                elif not set(col.enum) <= set(labels):
                    raise DatabaseError(f"{layout.name}: enum type {col.enum_type} lacks values "
                                        "of the schema: run syncdb to migrate it")
            exists = self._relation_exists(ns, table)
            build = table + SHADOW_SUFFIX if exists else table
            self._run(f"DROP TABLE IF EXISTS {qi(ns)}.{qi(build)}")
            cols = ", ".join(f"{qi(c.name)} {c.duck_type}" + ("" if c.nullable else " NOT NULL")
                             for c in layout.columns)
            self._run(f"CREATE TABLE {qi(ns)}.{qi(build)} ({cols})")
            self._source(layout, batches, incremental=False)
            try:
                select = ", ".join(_select_expr(c, "s") for c in layout.columns)
                self._run(f"INSERT INTO {qi(ns)}.{qi(build)} SELECT {select} FROM {_SRC} s")
            finally:
                self.cur.unregister(_SRC)
            key = qi(layout.key.name)
            stats = self._one(f"SELECT count(*), count(DISTINCT {key}) FROM {qi(ns)}.{qi(build)}")
            assert stats is not None
            counts.received = int(stats[0])
            if stats[0] != stats[1]:
                # Repeated keys (web_logs): keep each key's last row in delivery order.
                self._run(f"DELETE FROM {qi(ns)}.{qi(build)} WHERE rowid NOT IN "
                          f"(SELECT max(rowid) FROM {qi(ns)}.{qi(build)} GROUP BY {key})")
            self._run(f"ALTER TABLE {qi(ns)}.{qi(build)} ADD CONSTRAINT "
                      f"{qi(layout.pk_name)} PRIMARY KEY ({key})")
            if exists:
                self._run(f"DROP TABLE {qi(ns)}.{qi(table)}")
                self._run(f"ALTER TABLE {qi(ns)}.{qi(build)} RENAME TO {qi(table)}")
            for col in layout.columns:
                if col.description:
                    self._run(f"COMMENT ON COLUMN {qi(ns)}.{qi(table)}.{qi(col.name)} IS "
                              f"{ql(col.description)}")
            counts.inserted = int(stats[1])
            self._write_sync_row(layout, watermark, replace.id if replace else None)
        return counts

    def syncdb(self, layout: TableLayout, batches: Iterator[pa.RecordBatch],
               watermark: datetime, row: SyncRow) -> LoadCounts:
        """Stage, delete, upsert and advance the watermark, in one transaction."""
        ns, table = layout.namespace, layout.table
        target = f"{qi(ns)}.{qi(table)}"
        key = qi(layout.key.name)
        stage = qi(f"dapframe_stage_{id(self):x}")
        counts = LoadCounts()
        with self._tx("applying the changes", layout.name):
            now = self._one(f'SELECT "timestamp" FROM {_SYNC} WHERE "id" = ?', [row.id])
            if now is None or utc(now[0]) != row.timestamp:
                raise DatabaseError(f"{layout.name} was synchronised by someone else meanwhile "
                                    f"in {self.info.where}: run syncdb again")
            self._source(layout, batches, incremental=True)
            try:
                select = ", ".join(_select_expr(c, "s") for c in layout.columns)
                self._run(f"CREATE TEMPORARY TABLE {stage} AS SELECT s.{qi(META_TS)}, "
                          f"s.{qi(META_ACTION)}, s.{qi(META_SEQ)}, {select} FROM {_SRC} s")
            finally:
                self.cur.unregister(_SRC)
            try:
                stats = self._one(f"SELECT count(*), count(DISTINCT {key}) FROM {stage}")
                assert stats is not None
                counts.received = int(stats[0])
                if stats[0] != stats[1]:
                    # A key more than once (web_logs repeats): its last version wins.
                    self._run(f"DELETE FROM {stage} WHERE {qi(META_SEQ)} NOT IN (SELECT "
                              f"arg_max({qi(META_SEQ)}, ({qi(META_TS)}, {qi(META_SEQ)})) "
                              f"FROM {stage} GROUP BY {key})")
                found = self._one(
                    f"SELECT count(*) FILTER (WHERE s.{qi(META_ACTION)} = 'D'), "
                    f"count(*) FILTER (WHERE s.{qi(META_ACTION)} = 'U') FROM {stage} s "
                    f"WHERE EXISTS (SELECT 1 FROM {target} t WHERE t.{key} = s.{key})")
                ups = self._one(f"SELECT count(*) FROM {stage} WHERE {qi(META_ACTION)} = 'U'")
                assert found is not None and ups is not None
                counts.deleted, counts.updated = int(found[0]), int(found[1])
                counts.inserted = int(ups[0]) - counts.updated
                self._run(f"DELETE FROM {target} WHERE {key} IN (SELECT {key} FROM {stage})")
                names = ", ".join(qi(c.name) for c in layout.columns)
                self._run(f"INSERT INTO {target} ({names}) SELECT {names} FROM {stage} "
                          f"WHERE {qi(META_ACTION)} = 'U'")
            finally:
                self._run(f"DROP TABLE IF EXISTS {stage}")
            self._write_sync_row(layout, watermark, row.id)
        return counts

    def dropdb(self, namespace: str, table: str) -> None:
        """Drop the table and its ``table_sync`` row (refused when not initialised)."""
        name = f"{namespace}.{table}"
        with self._tx("dropping the table", name):
            row = self._drop_sync_row(namespace, table)
            self._run(f"DROP TABLE IF EXISTS {qi(row.target_schema or namespace)}."
                      f"{qi(row.target_table)}")


def _same_type(have: str, want: str) -> bool:
    return _ALIASES.get(have, have) == _ALIASES.get(want, want)


def _select_expr(col: DbColumn, alias: str) -> str:
    ref = f"{alias}.{qi(col.name)}"
    if col.is_array:
        return (f"CAST(CAST(CAST({ref} AS JSON) AS VARCHAR[]) AS {col.item_duck}[]) "
                f"AS {qi(col.name)}")
    if col.enum_type is not None or col.kind in ("struct", "uuid"):
        return f"CAST({ref} AS {col.duck_type}) AS {qi(col.name)}"
    return f"{ref} AS {qi(col.name)}"
