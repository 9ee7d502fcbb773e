"""MySQL and MariaDB replicas (``mysql://...``) through ``LOAD DATA LOCAL INFILE``, with pymysql.

Layout (the official client's for MySQL, checked against ``dap initdb`` 2.3.1 on MariaDB 10.11):
no schemas, tables named ``<namespace>__<table>`` in the connection's database, bookkeeping in
``instructure_dap__table_sync`` and ``instructure_dap__database_version`` with the official
DDL and comments, and the official column types:

=================================  ===========================================================
DAP kind                           MySQL column
=================================  ===========================================================
int16 / int32 / int64              smallint / int / bigint
float32 / float64                  real / double
decimal(p, s)                      decimal(p,s)
bool                               tinyint
string (maxLength n) / unbounded   varchar(n) (mediumtext from 65536) / mediumtext
timestamp                          **datetime(6)** (official: datetime, whole seconds)
date / time                        date / time(6)
uuid                               binary(16)
ip (v4 or v6)                      binary(16): IPv4 as its 4 bytes, zero-padded (as ``dap``)
enum                               inline ENUM(...) CHARACTER SET ascii COLLATE ascii_bin
object / array                     json
=================================  ===========================================================

Timestamps keep their microseconds in tables dapframe creates (``datetime(6)``); the one
deviation from the official layout. An existing ``datetime`` column (a table ``dap`` built) is
accepted as it is and never rewritten: values lose their fraction there, as with ``dap``. The
official client, syncing a table dapframe built, migrates those columns down to ``datetime``
(its schema comparison sees a different precision); both keep working on the result. The
``table_sync`` watermark is stored truncated to the second (the official column is
``datetime``; MySQL 8 would round a fraction up, which could skip changes).

Loading: Arrow batches are written as CSV files by pyarrow (values quoted, ``NULL`` unquoted
for nulls, ``ESCAPED BY ''`` so backslashes stay data) in chunks of :data:`CHUNK_ROWS` rows,
each loaded with ``LOAD DATA LOCAL INFILE`` as it is written: memory and disk stay bounded by
one chunk, whatever the table size. UUIDs and IP addresses are validated in Arrow and packed
by the server (``UNHEX``, ``INET6_ATON``). Non-finite floats, which MySQL cannot store, fail
the load with one line naming the table, the column and the key.

Atomicity (InnoDB DDL commits implicitly, so no transaction can span a ``CREATE``/``RENAME``):

- ``syncdb``: no DDL at all. A ``TEMPORARY`` staging table (its creation does not commit) takes
  the rows, then ``DELETE`` of ``D`` keys, ``INSERT ... SELECT ... ON DUPLICATE KEY UPDATE`` of
  ``U`` rows and the ``table_sync`` update commit in one InnoDB transaction.
- ``initdb`` (and re-initialisation): rows go into a private shadow table
  ``<name>__dapframe_new``; the bookkeeping change is made in a private copy of
  ``instructure_dap__table_sync``; then ONE ``RENAME TABLE`` swaps both in (the shadow to the
  table's name, the copy to ``instructure_dap__table_sync``, the old ones aside), and the old
  ones are dropped. A multi-table ``RENAME TABLE`` is atomic and crash-safe (MariaDB >= 10.6,
  MySQL 8 atomic DDL), and readers wait on its metadata locks, so a reader sees the old table
  with the old watermark or the new table with the new one, never a mix. A crash before the
  rename leaves only private leftovers (removed by the next run); after it, only the ``__old``
  tables still to drop (likewise).
- ``dropdb``: the same swap, with the row removed and the table renamed aside.
- ``migrate``: all changes of a table in one ``ALTER TABLE`` statement (atomic DDL), committed
  before the data transaction that needs them.

Swaps copy ``table_sync``, so every dapframe writer of ``table_sync`` holds a named lock
(``GET_LOCK``) while it writes; a run of the official client at the same moment is not
covered (nor is it on PostgreSQL: two syncs of one table at once are refused there only by
the watermark check). Views on a replica table name it, so they follow the swap: they survive
re-initialisation and read the new rows; ``dropdb`` refuses a table views use, naming them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import shutil
import ssl as ssl_mod
import tempfile
import threading
import time
import uuid as uuid_mod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc

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
    quoted,
    table_layout,
    uuid_bytes,
)
from dapframe.sync._url import ConnectionInfo

if TYPE_CHECKING:
    import polars as pl

__all__ = ["CHUNK_ROWS", "MySQLDialect", "MySQLSession", "column_type", "mysql_error",
           "read_mysql"]

log = logging.getLogger("dapframe.sync")

#: Rows per CSV file handed to ``LOAD DATA`` (about 10-30 MB of text for wide tables).
CHUNK_ROWS = 65_536
#: A chunk is loaded after this many seconds even when smaller: slow downloads stream too.
CHUNK_SECONDS = 0.5
#: Namespaces whose snapshots repeat keys (web_logs): the last row of a key wins.
REPEATING_NAMESPACES: Final = frozenset({"canvas_logs"})
#: Suffix of the tables a swap moves aside before dropping them.
OLD_SUFFIX: Final = "__dapframe_old"
#: Session settings: strict (bad values fail instead of being coerced), literals quoted the
#: standard way (``''`` only: ``ql`` never writes backslash escapes), UTC.
_SQL_MODE: Final = ("STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION,"
                    "NO_BACKSLASH_ESCAPES")
#: Seconds to wait for another dapframe session's lock on the same table (or table_sync).
LOCK_WAIT = 600
_INT_WIDTH = re.compile(r"^(tinyint|smallint|mediumint|int|bigint)\(\d+\)")
_ENUM_LABEL = re.compile(r"'((?:[^']|'')*)'")

# The official client's bookkeeping DDL for MySQL (pysqlsync 2.3.1), comments included.
_SYNC_COMMENTS: Final = {
    "source_namespace": "The namespace of the source table exposed by DAP API (e.g. `canvas`).",
    "source_table": "The name of the source table exposed by DAP API (e.g. `accounts`).",
    "timestamp": "The timestamp of the source table that can be used by the client library in "
                 "incremental queries during subsequent `syncdb` command executions.",
    "schema_version": "The latest schema version of the source table at the time point when "
                      "it was last initialized or synchronized with the DAP API.",
    "target_schema": "The name of the target schema in the local database if applicable (e.g. "
                     "in case of a PostgreSQL database the tables can be grouped into schemas).",
    "target_table": "The name of the target table in the local database. In might differ from "
                    "the name of the source table. For example in case of a MySQL database, "
                    "the tables cannot be grouped in schemas. In this case, the implementor can "
                    "use a prefix that reflects the namespace of the source table. For example, "
                    "the qualified name `canvas.accounts` would become `canvas__accounts`.",
    "schema_description_format": "The format of the schema descriptor (e.g. `json`).",
    "schema_description": "The latest schema descriptor of the source table at the time point "
                          "when it was initialized or last synchronized.",
}
_SYNC_TYPES: Final = {
    "source_namespace": "varchar(64) NOT NULL", "source_table": "varchar(64) NOT NULL",
    "timestamp": "datetime NOT NULL", "schema_version": "bigint NOT NULL",
    "target_schema": "varchar(64)", "target_table": "varchar(64) NOT NULL",
    "schema_description_format": "varchar(64) NOT NULL",
    "schema_description": "mediumtext NOT NULL",
}


def mq(name: str) -> str:
    """Quote a MySQL identifier: ```name``` with backticks doubled (NUL refused)."""
    return quoted(name, "`", "`", literal=False, error=DatabaseError)


def ml(text: str) -> str:
    """Quote a string literal for a session with ``NO_BACKSLASH_ESCAPES``: quotes doubled."""
    return quoted(text, "'", "'", literal=True, error=DatabaseError)


def flat_name(namespace: str, table: str) -> str:
    """The MySQL table name of ``namespace.table``: ``<namespace>__<table>`` (official)."""
    return f"{namespace}__{table}"


def aux_name(base: str, suffix: str) -> str:
    """``base + suffix``, or a hashed stand-in when that passes MySQL's 64-character limit."""
    name = base + suffix
    if len(name) <= 64:
        return name
    return f"dapframe_{hashlib.sha1(base.encode()).hexdigest()[:24]}{suffix}"


_IMPORT_LOCK = threading.Lock()


def _pymysql() -> Any:
    with _IMPORT_LOCK:
        try:
            import pymysql
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise ImportError("MySQL needs the mysql extra: pip install 'dapframe[mysql]'"
                              ) from None
    return pymysql


# ------------------------------------------------------------------------------------------
# types


def _is_ascii(values: tuple[str, ...]) -> bool:
    return all(v.isascii() for v in values)


def column_type(col: DbColumn) -> str:
    """The MySQL column type of ``col`` (without nullability or comment).

    Enums carry their character set: ascii (binary collation), as the official client
    declares them, or utf8mb4 when a member is not ASCII (which the official client cannot
    load at all).
    """
    kind = col.kind
    simple = {"int16": "smallint", "int32": "int", "int64": "bigint", "float32": "real",
              "float64": "double", "bool": "tinyint", "timestamp": "datetime(6)",
              "date": "date", "time": "time(6)", "uuid": "binary(16)", "ip": "binary(16)",
              "struct": "json", "array": "json"}
    if kind in simple:
        return simple[kind]
    if kind == "decimal":
        return f"decimal({col.precision},{col.scale})"
    if kind == "enum":
        values = ",".join(ml(v) for v in col.enum)
        charset = (" CHARACTER SET ascii COLLATE ascii_bin" if _is_ascii(col.enum)
                   else " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        return f"enum({values}){charset}"
    if kind == "string":
        n = col.max_length
        if n is None or n >= 16_777_216:
            return "mediumtext" if n is None else "longtext"
        return f"varchar({n})" if n < 65_536 else "mediumtext"
    raise DatabaseError(f"no MySQL type for column {col.name!r} of kind {kind!r}")


def _comment(text: str) -> str:
    # The official client comments with the first line (MySQL allows 1024 characters).
    line = text.split("\n", 1)[0]
    return line[:1024]


def column_spec(col: DbColumn, type_: str | None = None) -> str:
    """Type (``type_`` if given), nullability and comment of ``col`` for ``CREATE``/``ALTER``."""
    spec = (type_ or column_type(col)) + ("" if col.nullable else " NOT NULL")
    if col.description:
        spec += f" COMMENT {ml(_comment(col.description))}"
    return spec


def _norm_type(text: str) -> str:
    """A catalog ``COLUMN_TYPE`` in a comparable form (integer display widths dropped)."""
    text = text.strip().lower()
    text = _INT_WIDTH.sub(r"\1", text)
    if text == "real":
        return "double"
    return text


def _base_type(text: str) -> str:
    return _norm_type(text).split("(", 1)[0]


def enum_labels(column_type_text: str) -> list[str]:
    """The members of an ``enum('a','b')`` column type."""
    inner = column_type_text[column_type_text.index("(") + 1:column_type_text.rindex(")")]
    return [m.replace("''", "'") for m in _ENUM_LABEL.findall(inner)]


def _same_type(have: _Existing, col: DbColumn) -> bool:
    want = _norm_type(column_type(col).split(" CHARACTER SET", 1)[0])
    got = _norm_type(have.type)
    if col.kind == "enum":
        return got.startswith("enum(")
    if col.kind in ("timestamp", "time"):
        # Any precision is accepted: dap's whole-second columns are never rewritten.
        return _base_type(got) == _base_type(want)
    if want == "json":
        return got in ("json", "longtext")  # MariaDB's JSON is longtext + json_valid
    return got == want


@dataclass(frozen=True)
class _Existing:
    """A column as ``information_schema.columns`` describes it."""

    name: str
    type: str
    nullable: bool
    charset: str | None
    collation: str | None
    comment: str


# ------------------------------------------------------------------------------------------
# the dialect


class MySQLDialect(Dialect):
    """MySQL 8 / MariaDB 10.6+ (``mysql://user:password@host:3306/database[?ssl=MODE]``)."""

    name = "mysql"

    def __init__(self, info: ConnectionInfo) -> None:
        super().__init__(info)
        self._charset_checked = False
        self._lock = threading.Lock()

    def session(self) -> MySQLSession:
        """Open a pymysql connection (see :class:`MySQLSession`)."""
        session = MySQLSession(self.info)
        with self._lock:
            check = not self._charset_checked
            self._charset_checked = True
        if check:
            session.check_charset()
        return session


def _ssl_context(mode: str) -> ssl_mod.SSLContext:
    ctx = ssl_mod.create_default_context()
    if mode in ("require", "prefer", "allow"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl_mod.CERT_NONE
    elif mode == "verify-ca":
        ctx.check_hostname = False
    return ctx


def connect(info: ConnectionInfo) -> Any:
    """A pymysql connection for ``info`` (autocommit off, utf8mb4, UTC, strict, LOCAL INFILE).

    Raises
    ------
    DatabaseError
        Unreachable server, refused login, unknown database (one line, no password).
    """
    pymysql = _pymysql()
    mode = info.params.get("ssl")
    kwargs: dict[str, Any] = dict(
        host=info.host or "localhost", port=info.port or 3306, user=info.username or "",
        password=info.password.reveal() if info.password else "", database=info.database,
        charset="utf8mb4", autocommit=False, local_infile=True,
        connect_timeout=int(info.params.get("connect_timeout", "10")),
        init_command=(f"SET SESSION sql_mode = '{_SQL_MODE}', time_zone = '+00:00', "
                      f"lock_wait_timeout = {LOCK_WAIT}, "
                      f"innodb_lock_wait_timeout = {LOCK_WAIT}"),
        program_name="dapframe")
    if "charset" in info.params:
        kwargs["charset"] = info.params["charset"]
    attempts: list[ssl_mod.SSLContext | None]
    if mode in (None, "disable"):
        attempts = [None]
    elif mode == "prefer":
        attempts = [_ssl_context(mode), None]
    elif mode == "allow":
        attempts = [None, _ssl_context(mode)]
    else:
        attempts = [_ssl_context(mode)]
    error: BaseException | None = None
    for ctx in attempts:
        try:
            return pymysql.connect(**kwargs, ssl=ctx) if ctx is not None \
                else pymysql.connect(**kwargs)
        except pymysql.err.Error as exc:
            error = exc
            if _code(exc) in (1045, 1044, 1049):  # a refusal: SSL or not, the same answer
                break
    assert error is not None
    raise mysql_error(error, info, "connecting") from None


class MySQLSession(SqlSession):
    """One pymysql connection; every method runs and commits (or rolls back) its own work."""

    def __init__(self, info: ConnectionInfo) -> None:
        self.info = info
        pymysql = _pymysql()
        self.errors = pymysql.err.Error
        self.conn = connect(info)
        self.cur = self.conn.cursor()
        self._sync_name = flat_name(META_SCHEMA, "table_sync")
        self._locks: list[str] = []

    # -- SQL spelling ------------------------------------------------------------------------
    def qi(self, name: str) -> str:
        """Backtick quoting."""
        return mq(name)

    def param(self, index: int) -> str:
        """pymysql's placeholder."""
        return "%s"

    def qualified(self, namespace: str, table: str) -> str:
        """```<namespace>__<table>```: MySQL has no schemas (official layout)."""
        return mq(flat_name(namespace, table))

    def meta_table(self, name: str) -> str:
        """```instructure_dap__<name>``` (``table_sync`` may be redirected to a swap's copy)."""
        if name == "table_sync":
            return mq(self._sync_name)
        return mq(flat_name(META_SCHEMA, name))

    # -- plumbing --------------------------------------------------------------------------
    def _error(self, exc: BaseException, action: str, table: str | None = None
               ) -> DatabaseError:
        return mysql_error(exc, self.info, action, table)

    def _commit(self) -> None:
        self.conn.commit()

    def _rollback(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        """Roll back whatever is open and close the connection (named locks go with it)."""
        try:
            self.conn.rollback()
        except Exception:
            pass
        try:
            self.cur.close()
            self.conn.close()
        except Exception:
            pass

    def _relation_exists(self, namespace: str, table: str) -> bool:
        return self._exists_flat(flat_name(namespace, table))

    def _exists_flat(self, name: str) -> bool:
        return self._one("SELECT 1 FROM information_schema.tables WHERE table_schema = "
                         "DATABASE() AND table_name = %s AND table_type = 'BASE TABLE'",
                         [name]) is not None

    @contextmanager
    def _named_lock(self, what: str, table: str | None = None) -> Iterator[None]:
        """Hold MySQL's named lock ``what`` (per database) across transactions."""
        name = "dapframe:" + hashlib.sha1(f"{self.info.database}\x00{what}".encode()
                                          ).hexdigest()[:40]
        if name in self._locks:  # re-entrant within this session
            yield
            return
        try:
            row = self._one("SELECT GET_LOCK(%s, %s)", [name, LOCK_WAIT])
        except self.errors as exc:
            raise self._error(exc, "waiting for a lock", table) from None
        if not row or row[0] != 1:
            raise DatabaseError(f"{table or what}: another sync has held it for {LOCK_WAIT} s "
                                f"in {self.info.where}: try again when it is done")
        self._locks.append(name)
        try:
            yield
        finally:
            self._locks.remove(name)
            try:
                self._run("SELECT RELEASE_LOCK(%s)", [name])
                self.cur.fetchall()
            except Exception:  # the connection is gone: the server released it
                pass

    def _table_lock(self, layout_name: str) -> Any:
        return self._named_lock(f"table:{layout_name}", layout_name)

    def _sync_lock(self, table: str | None = None) -> Any:
        return self._named_lock("table_sync", table)

    # -- charset -----------------------------------------------------------------------------
    def check_charset(self) -> None:
        """Warn when the database's default character set is not utf8mb4."""
        try:
            row = self._one("SELECT @@character_set_database, @@collation_database")
            self.conn.commit()
        except self.errors as exc:
            raise self._error(exc, "reading the character set") from None
        if row and str(row[0]).lower() != "utf8mb4":
            log.warning("%s: the database's character set is %s, not utf8mb4: tables dapframe "
                        "creates are utf8mb4 all the same, but tables created by others may "
                        "not store every character (ALTER DATABASE ... CHARACTER SET utf8mb4)",
                        self.info.where, row[0])

    def _database_utf8mb4(self) -> bool:
        row = self._one("SELECT @@character_set_database")
        return row is not None and str(row[0]).lower() == "utf8mb4"

    # -- bookkeeping -------------------------------------------------------------------------
    def ensure_bookkeeping(self, namespace: str) -> None:
        """Create ``instructure_dap__table_sync`` and ``__database_version`` (official DDL)."""
        sync = mq(flat_name(META_SCHEMA, "table_sync"))
        version = mq(flat_name(META_SCHEMA, "database_version"))
        with self._sync_lock(), self._tx("creating the bookkeeping tables"):
            if not self._exists_flat(flat_name(META_SCHEMA, "table_sync")):
                cols = [f"{mq('id')} bigint NOT NULL AUTO_INCREMENT"]
                cols += [f"{mq(n)} {t} COMMENT {ml(_SYNC_COMMENTS[n])}"
                         for n, t in _SYNC_TYPES.items()]
                cols.append(f"PRIMARY KEY ({mq('id')})")
                self._run(f"CREATE TABLE IF NOT EXISTS {sync} (\n  " + ",\n  ".join(cols)
                          + "\n) COMMENT = 'Table for storing meta-information about tables "
                          "managed by the client library.'" + self._charset_clause())
            if not self._exists_flat(flat_name(META_SCHEMA, "database_version")):
                self._run(f"CREATE TABLE IF NOT EXISTS {version} (\n  {mq('version')} bigint "
                          "NOT NULL AUTO_INCREMENT COMMENT 'The version of the database "
                          f"schema.',\n  PRIMARY KEY ({mq('version')})\n) COMMENT = 'Table for "
                          "storing meta-information about the database schema version.'"
                          + self._charset_clause())
            versions = [int(r[0]) for r in self._all(f"SELECT {mq('version')} FROM {version}")]
            if self._check_version(versions):
                self._run(f"INSERT IGNORE INTO {version} ({mq('version')}) "
                          f"VALUES ({DATABASE_VERSION})")

    def _charset_clause(self) -> str:
        # Tables inherit the database's character set, as the official client's do; a
        # database that is not utf8mb4 gets utf8mb4 tables from dapframe all the same.
        if self._database_utf8mb4():
            return ""
        return " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"

    def _write_sync_row(self, layout: TableLayout, watermark: datetime,
                        row_id: int | None) -> None:
        # The official column is datetime: store whole seconds ourselves (MySQL 8 rounds a
        # fraction up, MariaDB truncates); an earlier watermark only re-applies changes.
        super()._write_sync_row(layout, utc(watermark).replace(microsecond=0), row_id)

    # -- catalog -----------------------------------------------------------------------------
    def _columns(self, name: str) -> dict[str, _Existing]:
        rows = self._all(
            "SELECT column_name, column_type, is_nullable, character_set_name, collation_name, "
            "column_comment FROM information_schema.columns WHERE table_schema = DATABASE() "
            "AND table_name = %s ORDER BY ordinal_position", [name])
        return {r[0]: _Existing(r[0], str(r[1]), r[2] == "YES", r[3], r[4], r[5] or "")
                for r in rows}

    def _views_on(self, name: str) -> list[str]:
        """Views of this database whose definition names table ``name``."""
        rows = self._all("SELECT table_name FROM information_schema.views WHERE table_schema "
                         "= DATABASE() AND LOCATE(%s, view_definition) > 0 ORDER BY 1",
                         [mq(name)])
        return [r[0] for r in rows]

    # -- migration ---------------------------------------------------------------------------
    def migrate(self, layout: TableLayout) -> list[str]:
        """Bring an existing table to ``layout`` in place: one ``ALTER TABLE`` (atomic DDL).

        New columns are added (nullable), enum members added (in the schema's order; members
        the schema dropped are kept at the end, so no row loses its value), changed types
        modified, and a column that became optional or left the schema loses NOT NULL.
        Timestamp precision is left as found (see the module docstring). MySQL views name
        their columns, so none of this is blocked by views.
        """
        name = flat_name(layout.namespace, layout.table)
        changes: list[str] = []
        clauses: list[str] = []
        with self._table_lock(layout.name), self._tx("migrating the table", layout.name):
            existing = self._columns(name)
            if not existing:
                return changes
            narrow = False
            for col in layout.columns:
                have = existing.get(col.name)
                if have is None:
                    clauses.append(f"ADD COLUMN {mq(col.name)} "
                                   + column_spec(replace(col, nullable=True)))
                    changes.append(f"column {col.name}: added ({column_type(col)})")
                    continue
                if have.charset not in (None, "utf8mb4", "ascii", "binary") \
                        and col.kind in ("string", "struct", "array"):
                    narrow = True
                nullable = have.nullable or col.nullable  # NOT NULL is never added
                if col.kind == "enum":
                    labels = enum_labels(have.type)
                    members = (*col.enum, *[v for v in labels if v not in col.enum])
                    target = replace(col, nullable=nullable, enum=members)
                    if not set(col.enum) <= set(labels):
                        added = [v for v in col.enum if v not in labels]
                        clauses.append(f"MODIFY COLUMN {mq(col.name)} {column_spec(target)}")
                        changes.append(f"enum {col.enum_type}: added "
                                       f"{', '.join(map(repr, added))}")
                        continue
                    target = replace(col, nullable=nullable, enum=tuple(labels))
                elif not _same_type(have, col):
                    target = replace(col, nullable=nullable)
                    clauses.append(f"MODIFY COLUMN {mq(col.name)} {column_spec(target)}")
                    changes.append(f"column {col.name}: {_norm_type(have.type)} -> "
                                   f"{column_type(col)}")
                    continue
                else:
                    target = replace(col, nullable=nullable)
                if have.nullable or not col.nullable:
                    continue
                # Only NOT NULL goes; the type stays as the catalog has it (e.g. datetime).
                keep = have.type if col.kind in ("timestamp", "time") else None
                clauses.append(f"MODIFY COLUMN {mq(col.name)} {column_spec(target, keep)}")
                changes.append(f"column {col.name}: now nullable")
            known = {c.name for c in layout.columns}
            for cname, have in existing.items():
                if cname not in known and not have.nullable:
                    clauses.append(f"MODIFY COLUMN {mq(cname)} {_restate(have)}")
                    changes.append(f"column {cname}: no longer in the schema, now nullable")
            if narrow:
                log.warning("%s: text columns of %s are not utf8mb4: characters outside their "
                            "character set fail to load (ALTER TABLE %s CONVERT TO CHARACTER "
                            "SET utf8mb4)", layout.name, name, mq(name))
            if clauses:
                self._run(f"ALTER TABLE {mq(name)} " + ", ".join(clauses))
        return changes

    # -- loading -----------------------------------------------------------------------------
    def _create_table(self, layout: TableLayout, name: str) -> None:
        cols = [f"{mq(c.name)} {column_spec(c)}" for c in layout.columns]
        cols.append(f"PRIMARY KEY ({mq(layout.key.name)})")
        self._run(f"CREATE TABLE {mq(name)} (\n  " + ",\n  ".join(cols) + "\n)"
                  + self._charset_clause())

    def _check_current(self, layout: TableLayout, replace: SyncRow | None) -> None:
        current = self._sync_rows("`source_namespace` = %s AND `source_table` = %s",
                                  [layout.namespace, layout.table])
        if replace is None and current:
            raise DatabaseError(f"{layout.name} is already initialised in {self.info.where}: "
                                "run syncdb to update it")
        if replace is not None and (not current or current[0].id != replace.id
                                    or current[0].timestamp != replace.timestamp):
            raise DatabaseError(f"{layout.name} changed in {self.info.where} while it was "
                                "being re-initialised (another sync?): run syncdb again")

    def initdb(self, layout: TableLayout, batches: Iterator[pa.RecordBatch],
               watermark: datetime, *, replace: SyncRow | None = None) -> LoadCounts:
        """Build the table in a shadow table, then swap it and ``table_sync`` in at once."""
        name = flat_name(layout.namespace, layout.table)
        shadow = aux_name(name, SHADOW_SUFFIX)
        counts = LoadCounts()
        with self._table_lock(layout.name):
            with self._tx("checking the table", layout.name):
                self._check_current(layout, replace)
            with self._tx("creating the shadow table", layout.name):
                self._run(f"DROP TABLE IF EXISTS {mq(shadow)}")
                self._create_table(layout, shadow)
            loaded = self._load(layout, shadow, batches, incremental=False, replace=True,
                                commit_each=True)
            counts.received = loaded.received
            counts.inserted = loaded.received - loaded.deleted
            if layout.namespace in REPEATING_NAMESPACES or loaded.deleted:
                # An identical repeated row counts as neither replaced nor deleted: count.
                with self._tx("counting rows", layout.name):
                    found = self._one(f"SELECT count(*) FROM {mq(shadow)}")
                counts.inserted = int(found[0]) if found else 0
            with self._sync_lock(layout.name):
                with self._tx("checking the table", layout.name):
                    self._check_current(layout, replace)
                    exists = self._exists_flat(name)
                self._swap(layout, shadow, exists, lambda: self._write_sync_row(
                    layout, watermark, replace.id if replace else None))
        return counts

    def _swap(self, layout: TableLayout, shadow: str | None, exists: bool,
              change_sync: Callable[[], None]) -> None:
        """Swap the shadow (or nothing) and a changed copy of ``table_sync`` in, atomically.

        Holds the ``table_sync`` lock (the caller's). ``change_sync`` writes the bookkeeping
        change; it runs against the copy.
        """
        name = flat_name(layout.namespace, layout.table)
        sync = flat_name(META_SCHEMA, "table_sync")
        copy, sync_old = aux_name(sync, SHADOW_SUFFIX), aux_name(sync, OLD_SUFFIX)
        old = aux_name(name, OLD_SUFFIX)
        with self._tx("preparing the swap", layout.name):
            self._run(f"DROP TABLE IF EXISTS {mq(copy)}, {mq(sync_old)}, {mq(old)}")
            self._run(f"CREATE TABLE {mq(copy)} LIKE {mq(sync)}")
            self._run(f"INSERT INTO {mq(copy)} SELECT * FROM {mq(sync)}")
            self._sync_name = copy
            try:
                change_sync()
            finally:
                self._sync_name = sync
        pairs = [(sync, sync_old), (copy, sync)]
        if exists:
            pairs.append((name, old))
        if shadow is not None:
            pairs.append((shadow, name))
        with self._tx("swapping the table in", layout.name):
            # One statement: every rename happens, or none does (atomic, crash-safe DDL).
            self._run("RENAME TABLE " + ", ".join(f"{mq(a)} TO {mq(b)}" for a, b in pairs))
        with self._tx("dropping the replaced table", layout.name):
            self._run(f"DROP TABLE IF EXISTS {mq(sync_old)}, {mq(old)}")

    def syncdb(self, layout: TableLayout, batches: Iterator[pa.RecordBatch],
               watermark: datetime, row: SyncRow) -> LoadCounts:
        """Stage, delete, upsert and advance the watermark, in one transaction (no DDL)."""
        name = mq(flat_name(layout.namespace, layout.table))
        key = mq(layout.key.name)
        stage, last = mq("dapframe_stage"), mq("dapframe_stage_last")
        counts = LoadCounts()
        with self._table_lock(layout.name):
            try:
                with self._tx("applying the changes", layout.name):
                    # TEMPORARY tables neither commit nor are seen by others.
                    self._run(f"DROP TEMPORARY TABLE IF EXISTS {stage}, {last}")
                    self._create_stage(layout, "dapframe_stage", keyed=False)
                    loaded = self._load(layout, "dapframe_stage", batches, incremental=True,
                                        replace=False, commit_each=False)
                    counts.received = loaded.received
                    stats = self._one(f"SELECT count(*), count(DISTINCT {key}) FROM {stage}")
                    source = stage
                    if stats is not None and stats[0] != stats[1]:
                        # A key more than once (web_logs repeats): its last version wins. Rows
                        # go in (ts, seq) order into a keyed copy, later ones overwriting.
                        self._create_stage(layout, "dapframe_stage_last", keyed=True)
                        cols = [META_TS, META_ACTION, META_SEQ,
                                *[c.name for c in layout.columns]]
                        names = ", ".join(mq(c) for c in cols)
                        sets = ", ".join(f"{mq(c)} = VALUES({mq(c)})" for c in cols)
                        self._run(f"INSERT INTO {last} ({names}) SELECT {names} FROM {stage} "
                                  f"ORDER BY {mq(META_TS)}, {mq(META_SEQ)} "
                                  f"ON DUPLICATE KEY UPDATE {sets}")
                        source = last
                    with self._sync_lock(layout.name):
                        sync = self.meta_table("table_sync")
                        now = self._one(f"SELECT {mq('timestamp')} FROM {sync} "
                                        f"WHERE {mq('id')} = %s FOR UPDATE", [row.id])
                        if now is None or utc(now[0]) != row.timestamp:
                            raise DatabaseError(f"{layout.name} was synchronised by someone "
                                                f"else meanwhile in {self.info.where}: run "
                                                "syncdb again")
                        found = self._one(
                            f"SELECT count(*) FROM {source} s JOIN {name} t "
                            f"ON t.{key} = s.{key} WHERE s.{mq(META_ACTION)} = 'U'")
                        ups = self._one(f"SELECT count(*) FROM {source} "
                                        f"WHERE {mq(META_ACTION)} = 'U'")
                        assert found is not None and ups is not None
                        counts.updated = int(found[0])
                        counts.inserted = int(ups[0]) - counts.updated
                        self._run(f"DELETE t FROM {name} t JOIN {source} s "
                                  f"ON t.{key} = s.{key} WHERE s.{mq(META_ACTION)} = 'D'")
                        counts.deleted = max(int(self.cur.rowcount), 0)
                        cols = [c.name for c in layout.columns]
                        names = ", ".join(mq(c) for c in cols)
                        values = [c for c in cols if c != layout.key.name] or [layout.key.name]
                        sets = ", ".join(f"{mq(c)} = VALUES({mq(c)})" for c in values)
                        self._run(f"INSERT INTO {name} ({names}) SELECT {names} "
                                  f"FROM {source} WHERE {mq(META_ACTION)} = 'U' "
                                  f"ON DUPLICATE KEY UPDATE {sets}")
                        self._write_sync_row(layout, watermark, row.id)
                        self._commit()  # inside the table_sync lock (the block commits again)
            finally:
                try:
                    self._run(f"DROP TEMPORARY TABLE IF EXISTS {stage}, {last}")
                except Exception:  # the connection is gone: so are its temporary tables
                    pass
        return counts

    def _create_stage(self, layout: TableLayout, name: str, *, keyed: bool) -> None:
        cols = [f"{mq(META_TS)} datetime(6) NOT NULL", f"{mq(META_ACTION)} char(1) NOT NULL",
                f"{mq(META_SEQ)} bigint NOT NULL"]
        cols += [f"{mq(c.name)} {column_type(c)}" for c in layout.columns]
        key = mq(layout.key.name)
        cols.append(f"PRIMARY KEY ({key})" if keyed else f"KEY ({key})")
        self._run(f"CREATE TEMPORARY TABLE {mq(name)} (" + ", ".join(cols) + ") ENGINE=InnoDB"
                  " DEFAULT CHARSET=utf8mb4")

    def _load(self, layout: TableLayout, table: str, batches: Iterator[pa.RecordBatch], *,
              incremental: bool, replace: bool, commit_each: bool) -> _Loaded:
        """LOAD DATA the batches into ``table``, chunk after chunk, as they arrive."""
        loaded = _Loaded()
        writer = _CsvWriter(layout, incremental=incremental)
        spool = tempfile.mkdtemp(prefix="dapframe-mysql-")
        try:
            path = os.path.join(spool, "chunk.csv")
            # '\n' is a real newline in the statement: NO_BACKSLASH_ESCAPES reads backslashes
            # as themselves.
            load = (f"LOAD DATA LOCAL INFILE {ml(path)} {'REPLACE ' if replace else ''}"
                    f"INTO TABLE {mq(table)} CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' "
                    "ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\n' "
                    + writer.column_clause())
            for rows in writer.chunks(batches, path):
                try:
                    self._run(load)
                    result = self.cur._result
                    warnings = int(getattr(result, "warning_count", 0) or 0)
                    if warnings:
                        self._raise_warning(layout, table)
                    if replace:  # a replaced row counts twice (deleted, then inserted)
                        loaded.deleted += max(int(self.cur.rowcount) - rows, 0)
                    loaded.received += rows
                    if commit_each:
                        self._commit()
                except self.errors as exc:
                    raise self._error(exc, "loading rows", layout.name) from None
        finally:
            shutil.rmtree(spool, ignore_errors=True)
        return loaded

    def _raise_warning(self, layout: TableLayout, table: str) -> None:
        rows = self._all("SHOW WARNINGS LIMIT 5")
        serious = [r for r in rows if str(r[0]).lower() != "note"] or rows
        if not serious:
            return
        level, code, text = serious[0][:3]
        hint = ""
        if int(code) == 1366:
            hint = (": the column's character set cannot hold the value (convert the table: "
                    f"ALTER TABLE {mq(flat_name(layout.namespace, layout.table))} CONVERT TO "
                    "CHARACTER SET utf8mb4)")
        raise DatabaseError(f"{layout.name}: MySQL refused a value while loading rows: "
                            f"{first_line(str(text))} ({level} {code}){hint}")

    def dropdb(self, namespace: str, table: str) -> None:
        """Drop the table and its ``table_sync`` row at once (refused when not initialised)."""
        qname = f"{namespace}.{table}"
        with self._table_lock(qname), self._sync_lock(qname):
            with self._tx("dropping the table", qname):
                rows = self._sync_rows("`source_namespace` = %s AND `source_table` = %s",
                                       [namespace, table])
                if not rows:
                    raise DatabaseError(f"{qname} is not initialised in {self.info.where}: "
                                        "nothing to drop (a table without a table_sync row is "
                                        "left alone)")
                row = rows[0]
                target = flat_name(row.target_schema or namespace, row.target_table)
                views = self._views_on(target)
                if views:
                    raise DatabaseError(f"{qname}: views depend on the table "
                                        f"({', '.join(views)}): drop them first")
                exists = self._exists_flat(target)
            layout = _NameOnly(row.target_schema or namespace, row.target_table)

            def delete_row() -> None:
                self._run(f"DELETE FROM {self.meta_table('table_sync')} WHERE "
                          "`source_namespace` = %s AND `source_table` = %s", [namespace, table])

            self._swap(layout, None, exists, delete_row)  # type: ignore[arg-type]


@dataclass
class _Loaded:
    received: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class _NameOnly:
    """What :meth:`MySQLSession._swap` needs of a layout when dropping a table."""

    namespace: str
    table: str

    @property
    def name(self) -> str:
        return f"{self.namespace}.{self.table}"


def _restate(have: _Existing) -> str:
    """An existing column's definition, nullable, as the catalog has it."""
    spec = have.type
    if have.charset and have.collation and not _base_type(have.type) == "longtext":
        spec += f" CHARACTER SET {have.charset} COLLATE {have.collation}"
    spec += " NULL"
    if have.comment:
        spec += f" COMMENT {ml(have.comment)}"
    return spec


# ------------------------------------------------------------------------------------------
# Arrow batches as CSV for LOAD DATA


class _CsvWriter:
    """Canonical batches -> CSV chunk files for ``LOAD DATA`` (pyarrow's CSV writer)."""

    def __init__(self, layout: TableLayout, *, incremental: bool) -> None:
        self.layout = layout
        self.incremental = incremental

    def column_clause(self) -> str:
        """``(col, @var, ...) SET col = f(@var)``: UUIDs and IP addresses packed by the server."""
        names: list[str] = [mq(META_TS), mq(META_ACTION), mq(META_SEQ)] if self.incremental \
            else []
        sets: list[str] = []
        for i, col in enumerate(self.layout.columns):
            if col.kind == "uuid":
                names.append(f"@v{i}")
                sets.append(f"{mq(col.name)} = UNHEX(REPLACE(@v{i}, '-', ''))")
            elif col.kind == "ip":
                names.append(f"@v{i}")
                sets.append(f"{mq(col.name)} = INET6_ATON(@v{i})")
            else:
                names.append(mq(col.name))
        return f"({', '.join(names)})" + (f" SET {', '.join(sets)}" if sets else "")

    def convert(self, batch: pa.RecordBatch, seq: int) -> pa.Table:
        """One batch in CSV-ready form (checked: finite floats, valid UUIDs and addresses)."""
        arrays: list[pa.Array] = []
        names: list[str] = []
        if self.incremental:
            arrays += [naive_utc(batch.column(META_TS)), batch.column(META_ACTION),
                       pa.array(range(seq, seq + batch.num_rows), pa.int64())]
            names += [META_TS, META_ACTION, META_SEQ]
        for col in self.layout.columns:
            arrays.append(self._column(col, batch))
            names.append(col.name)
        return pa.Table.from_arrays(arrays, names=names)

    def _column(self, col: DbColumn, batch: pa.RecordBatch) -> pa.Array:
        arr = batch.column(col.name)
        kind = col.kind
        if kind == "timestamp":
            return naive_utc(arr)
        if kind == "bool":
            return arr.cast(pa.int8())
        if kind in ("float32", "float64"):
            self._check_finite(col, arr, batch)
            return arr
        if kind == "uuid":
            return self._uuid_text(col, arr, batch)
        if kind == "ip":
            self._check_ips(col, arr, batch)
            return arr
        return arr

    def _key_of(self, batch: pa.RecordBatch, index: int) -> str:
        return repr(batch.column(self.layout.key.name)[index].as_py())

    def _check_finite(self, col: DbColumn, arr: pa.Array, batch: pa.RecordBatch) -> None:
        if arr.null_count == len(arr):
            return
        bad = pc.invert(pc.is_finite(arr))
        if not pc.any(bad).as_py():
            return
        index = int(pc.index(bad, True).as_py())
        raise DatabaseError(
            f"{self.layout.name}: column {col.name!r} holds {arr[index].as_py()} for key "
            f"{self._key_of(batch, index)}: MySQL cannot store NaN or infinity (the official "
            "client refuses such rows too); nothing was changed")

    def _uuid_text(self, col: DbColumn, arr: pa.Array, batch: pa.RecordBatch) -> pa.Array:
        try:
            uuid_bytes(arr)  # validates (the canonical form fast, others one by one)
        except ValueError as exc:
            raise DatabaseError(f"{self.layout.name}: column {col.name!r}: {exc}") from None
        lengths: Any = pc.utf8_length(arr)  # type: ignore[call-overload]
        canonical = pc.equal(lengths, pa.scalar(36, lengths.type))
        if arr.null_count == len(arr) or pc.all(canonical).as_py():
            return arr
        return pa.array([None if v is None else str(uuid_mod.UUID(v)) for v in arr.to_pylist()],
                        pa.string())

    def _check_ips(self, col: DbColumn, arr: pa.Array, batch: pa.RecordBatch) -> None:
        for text in arr.unique().to_pylist():
            if text is None:
                continue
            try:
                ipaddress.ip_address(str(text))
            except ValueError:
                raise DatabaseError(f"{self.layout.name}: column {col.name!r}: {text!r} is not "
                                    "an IP address") from None

    def chunks(self, batches: Iterator[pa.RecordBatch], path: str) -> Iterator[int]:
        """Write ``path`` with up to :data:`CHUNK_ROWS` rows at a time; yield the row count.

        The first batch is a chunk of its own, and a chunk also ends :data:`CHUNK_SECONDS`
        after its first batch, so rows that arrive slowly are loaded as they come.
        """
        import pyarrow.csv as pcsv

        options = pcsv.WriteOptions(include_header=False, null_string="NULL",  # type: ignore[call-arg]
                                    quoting_style="all_valid")
        pending: list[pa.Table] = []
        rows = seq = 0
        started = 0.0

        def flush() -> int:
            table_ = pa.concat_tables(pending)
            pending.clear()
            pcsv.write_csv(table_, path, options)
            return table_.num_rows

        for batch in batches:
            if batch.num_rows == 0:
                continue
            if not pending:
                started = time.monotonic()
            pending.append(self.convert(batch, seq))
            seq += batch.num_rows
            rows += batch.num_rows
            # The first batch goes at once: the load (and syncdb's transaction) starts with
            # the first rows, not a chunk later.
            if rows >= CHUNK_ROWS or seq == batch.num_rows \
                    or time.monotonic() - started >= CHUNK_SECONDS:
                yield flush()
                rows = 0
        if pending:
            yield flush()


# ------------------------------------------------------------------------------------------
# errors


def _code(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return 0


def mysql_error(exc: BaseException, info: ConnectionInfo, action: str,
                table: str | None = None) -> DatabaseError:
    """One line for a MySQL failure: what failed, where, and the fix when there is one."""
    code = _code(exc)
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    text = str(args[1]) if len(args) > 1 else str(exc)
    detail = first_line(text)
    if code in (1045, 1698):
        return DatabaseError(f"MySQL refused the user name or password for {info.display}: "
                             "check the connection string (percent-encode special characters)")
    if code == 1044:
        return DatabaseError(f"MySQL user {info.username!r} may not use database "
                             f"{info.database!r} on {info.address}: grant access or fix the "
                             "connection string")
    if code == 1049:
        return DatabaseError(f"database {info.database!r} does not exist on {info.address}: "
                             "create it (CREATE DATABASE ... CHARACTER SET utf8mb4) or fix the "
                             "connection string")
    if code in (2003, 2005, 2006, 2013) and action == "connecting":
        detail = re.sub(r"^Can't connect to MySQL server on '[^']*' ", "", detail).strip("() ")
        return DatabaseError(f"cannot reach MySQL at {info.address} ({detail}): check the "
                             "host, the port and that the server is running")
    if code in (1148, 3948, 4166, 2068):
        return DatabaseError(f"{info.where} refuses LOAD DATA LOCAL INFILE ({detail}): enable "
                             "it on the server (SET GLOBAL local_infile = 1)")
    prefix = f"{table}: " if table else ""
    return DatabaseError(f"{prefix}MySQL failed while {action} in {info.where}: {detail}"
                         + (f" (error {code})" if code else ""))


# ------------------------------------------------------------------------------------------
# reading back


def read_mysql(info: ConnectionInfo, ns: str, name: str, order_by_key: bool) -> pl.DataFrame:
    """Read replica table ``ns.name`` into Polars, typed as the other dialects read back.

    Through connectorx (Arrow). Timestamps come back UTC-aware, ``tinyint`` booleans as
    Boolean, enums as ``pl.Enum`` with the column's members, decimals as ``Decimal(p, s)``,
    UUIDs and IP addresses as text, JSON objects as their text, arrays as ``List(String)``.
    The recorded schema (``table_sync``) tells UUIDs from IP addresses (both ``binary(16)``).
    """
    from dapframe.sync._api import _finish, _polars

    try:
        import connectorx as cx
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError("MySQL needs the mysql extra: pip install 'dapframe[mysql]'") from None
    pl = _polars()
    table = flat_name(ns, name)
    session = MySQLSession(info)
    try:
        with session._tx("reading the catalog", f"{ns}.{name}"):
            columns = session._columns(table)
            if not columns:
                raise DatabaseError(f"{ns}.{name} does not exist in {info.where}: run initdb "
                                    "first")
            kinds: dict[str, str] = {}
            if session._exists_flat(flat_name(META_SCHEMA, "table_sync")):
                row = session._one(
                    f"SELECT {mq('schema_description')}, {mq('schema_version')} FROM "
                    f"{mq(flat_name(META_SCHEMA, 'table_sync'))} WHERE `source_namespace` = %s "
                    "AND `source_table` = %s ORDER BY `id` LIMIT 1", [ns, name])
                if row is not None:
                    import json

                    try:
                        layout = table_layout(ns, name, json.loads(row[0]), int(row[1]))
                        kinds = {c.name: c.kind for c in layout.columns}
                    except Exception:  # an unreadable record: fall back to the catalog
                        kinds = {}
    finally:
        session.close()
    select, specs, bools, arrays = [], [], [], []
    for column, have in columns.items():
        ref = mq(column)
        base = _base_type(have.type)
        kind = kinds.get(column)
        labels = enum_labels(have.type) if base == "enum" else None
        typ = have.type
        if base == "binary" and (kind == "ip" or (kind is None and have.type.endswith("(4)"))):
            select.append(f"CASE WHEN LENGTH({ref}) = 16 AND SUBSTR({ref}, 5) = "
                          f"X'000000000000000000000000' THEN INET6_NTOA(SUBSTR({ref}, 1, 4)) "
                          f"ELSE INET6_NTOA({ref}) END AS {ref}")
        elif base == "binary":  # UUIDs
            h = f"LOWER(HEX({ref}))"
            select.append(f"CONCAT(SUBSTR({h}, 1, 8), '-', SUBSTR({h}, 9, 4), '-', "
                          f"SUBSTR({h}, 13, 4), '-', SUBSTR({h}, 17, 4), '-', SUBSTR({h}, 21)) "
                          f"AS {ref}")
        elif base in ("json", "longtext", "mediumtext", "text", "enum") or kind in (
                "struct", "array"):
            select.append(f"CAST({ref} AS CHAR) AS {ref}")
        elif base == "decimal":
            select.append(ref)
            typ = "DECIMAL" + have.type[have.type.index("("):]
        else:
            select.append(ref)
        if base == "tinyint":
            bools.append(column)
        if kind == "array":
            arrays.append(column)
        specs.append((column, typ, labels))
    first = next(iter(columns))
    sql = f"SELECT {', '.join(select)} FROM {mq(table)}"
    if order_by_key:
        sql += f" ORDER BY {mq(first)}"
    try:
        arrow = cx.read_sql(_connectorx_uri(info), sql, return_type="arrow")
    except Exception as exc:
        raise DatabaseError(f"{ns}.{name}: reading from {info.where} failed: "
                            f"{first_line(str(exc))}") from None
    for column in bools:
        i = arrow.schema.get_field_index(column)
        values: Any = arrow.column(i)
        arrow = arrow.set_column(i, column, pc.not_equal(values, pa.scalar(0, values.type)))
    frame = _finish(arrow, specs)
    if arrays:
        frame = frame.with_columns(pl.col(c).str.json_decode(pl.List(pl.String)) for c in arrays)
    return frame


def _connectorx_uri(info: ConnectionInfo) -> str:
    from urllib.parse import quote

    auth = quote(info.username or "", safe="")
    if info.password:
        auth += ":" + quote(info.password.reveal(), safe="")
    host = info.host or "localhost"
    return f"mysql://{auth}@{host}:{info.port or 3306}/{quote(info.database or '', safe='')}"
