"""SQL Server replicas (``mssql://user:password@host:1433/database``) through pymssql.

pymssql bundles FreeTDS, so no system ODBC driver is needed (the official client's pyodbc path
breaks every ``dap`` command when "ODBC Driver 18 for SQL Server" is missing).

The official layout for SQL Server (pysqlsync's mssql dialect, as ``dap`` 2.3.1 generates it):

- a schema per namespace; ``instructure_dap.table_sync`` and ``database_version`` with
  ``bigint IDENTITY`` keys and ``varchar(256)`` names (64 characters, 4 UTF-8 bytes each);
- constraints named after the schema too: ``pk_<ns>_<table>``, ``fk_<ns>_<table>_<column>``;
- an enum column is an ``integer`` foreign key to a lookup table ``<ns>.<table>__<column>``
  (``id integer IDENTITY``, ``value varchar(256)`` unique as ``uq_<table>__<column>``); an enum
  array is JSON text of its labels (its lookup table exists but nothing references it);
- ``varchar(4n)`` for ``maxLength`` n (``varchar(max)`` past 8000 bytes or without a length),
  ``datetime2`` (naive UTC), ``bit``, ``binary(16)`` UUIDs, ``binary(4|16)`` IP addresses,
  objects and arrays as ``varchar(max)`` JSON text.

Loading: every operation is one transaction (pymssql runs without autocommit; SQL Server's DDL is
transactional; ``XACT_ABORT`` makes any error roll the whole of it back). Rows go through
pymssql's bulk copy (TDS bulk load) into a ``#temp`` staging table, streamed batch by batch:

- ``initdb``: lookup rows -> stage -> (repeated keys: last one kept) -> ``INSERT ... SELECT``
  into a new table, or into a shadow table that ``sp_rename`` swaps in -> ``table_sync``.
- ``syncdb``: lookup rows -> stage -> ``DELETE`` for ``D`` keys -> ``MERGE`` for ``U`` rows ->
  ``table_sync``.

Enum labels become lookup ids while the bulk-copy rows are built (the lookup rows are written
first, in the same transaction), so the stage is typed like the table and the ``MERGE`` is a
plain keyed merge. Every statement comes from a pure function of the :class:`TableLayout` below,
so the SQL Server tests check the very text a live run sends.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from dapframe.errors import DatabaseError, SchemaError
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
    quoted,
    table_layout,
    uuid_bytes,
)
from dapframe.sync._url import ConnectionInfo

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "STAGE",
    "MSSQLDialect",
    "MSSQLSession",
    "bookkeeping_ddl",
    "bulk_rows",
    "delete_sql",
    "lookup_ddl",
    "lookup_insert_sql",
    "merge_sql",
    "mssql_error",
    "mssql_type",
    "nl",
    "qb",
    "read_mssql",
    "stage_columns",
    "stage_ddl",
    "swap_sql",
    "table_ddl",
]

log = logging.getLogger("dapframe.sync")

#: The staging table (a session-local ``#temp`` table, gone with the session).
STAGE: Final = "#dapframe_stage"
#: Rows per bulk-copy batch (TDS batches inside the one transaction).
BULK_BATCH: Final = 10_000
#: ``varchar(n)`` holds n bytes; past this only ``varchar(max)`` (official, pysqlsync).
MAX_VARCHAR: Final = 8000
#: A character takes at most 4 bytes in UTF-8: ``maxLength`` n becomes ``varchar(4n)``.
UTF8_BYTES: Final = 4
#: Labels of lookup tables and the bookkeeping names: 64 characters (official).
LABEL_TYPE: Final = f"varchar({64 * UTF8_BYTES})"
#: pymssql's own session settings, plus XACT_ABORT: any error rolls the transaction back.
_CONN_PROPERTIES: Final = (
    "SET ARITHABORT ON;", "SET CONCAT_NULL_YIELDS_NULL ON;", "SET ANSI_NULLS ON;",
    "SET ANSI_NULL_DFLT_ON ON;", "SET ANSI_PADDING ON;", "SET ANSI_WARNINGS ON;",
    "SET CURSOR_CLOSE_ON_COMMIT ON;", "SET QUOTED_IDENTIFIER ON;", "SET TEXTSIZE 2147483647;",
    "SET XACT_ABORT ON;",
)
_SIMPLE: Final = {
    "int16": "smallint", "int32": "integer", "int64": "bigint", "float32": "real",
    "float64": "double precision", "bool": "bit", "timestamp": "datetime2", "date": "date",
    "time": "time", "uuid": "binary(16)", "struct": "varchar(max)", "array": "varchar(max)",
    "enum": "integer",
}
_SSL: Final = {"disable": "off", "allow": "request", "prefer": "request", "require": "require",
               "verify-ca": "require", "verify-full": "require"}


# ------------------------------------------------------------------------------------------
# SQL spelling


def qb(name: str) -> str:
    """Quote a T-SQL identifier: ``[name]`` with ``]`` doubled."""
    return quoted(name, "[", "]", literal=False)


def nl(text: str) -> str:
    """A T-SQL Unicode string literal: ``N'text'`` with ``'`` doubled."""
    return quoted(text, "N'", "'", literal=True)


def _name(schema: str, table: str) -> str:
    return f"{qb(schema)}.{qb(table)}"


def pk_name(namespace: str, table: str) -> str:
    """Primary-key constraint name: ``pk_<ns>_<table>`` (official on SQL Server)."""
    return f"pk_{namespace}_{table}"


def fk_name(namespace: str, table: str, column: str) -> str:
    """Enum foreign-key constraint name: ``fk_<ns>_<table>_<column>`` (official)."""
    return f"fk_{namespace}_{table}_{column}"


def lookup_table(col: DbColumn) -> str:
    """Bare name of an enum column's lookup table, ``<table>__<column>``."""
    assert col.enum_type is not None
    return col.enum_type


def _ip_width(layout: TableLayout, col: DbColumn) -> int:
    """4 for an IPv4-only column, 16 otherwise (IPv6, or either)."""
    try:
        props = json.loads(layout.description)["properties"]
        prop = {**props.get("key", {}).get("properties", {}),
                **props.get("value", {}).get("properties", {})}.get(col.name, {})
    except (ValueError, KeyError, AttributeError, TypeError):
        return 16
    return 4 if isinstance(prop, dict) and prop.get("format") == "ipv4" else 16


def mssql_type(col: DbColumn, layout: TableLayout | None = None) -> str:
    """The official SQL Server type of a column (reference section 7).

    Parameters
    ----------
    col : DbColumn
        The column.
    layout : TableLayout, optional
        Its table: tells an IPv4-only column (``binary(4)``) from the others (``binary(16)``).
    """
    kind = col.kind
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind == "decimal":
        return f"decimal({col.precision}, {col.scale})"
    if kind == "ip":
        return f"binary({_ip_width(layout, col) if layout is not None else 16})"
    if kind == "string":
        n = col.max_length
        if n is None or n <= 0 or n * UTF8_BYTES > MAX_VARCHAR:
            return "varchar(max)"
        return f"varchar({n * UTF8_BYTES})"
    raise SchemaError(f"no SQL Server type for column {col.name!r} of kind {kind!r}")


def _null(col: DbColumn) -> str:
    return " NOT NULL" if not col.nullable else " NULL"


# ------------------------------------------------------------------------------------------
# DDL


def bookkeeping_ddl() -> list[str]:
    """``instructure_dap.table_sync`` and ``database_version`` as the official client makes them."""
    sync = _name(META_SCHEMA, "table_sync")
    version = _name(META_SCHEMA, "database_version")
    return [
        f"CREATE TABLE {sync} (\n"
        f"    {qb('id')} bigint NOT NULL IDENTITY,\n"
        f"    {qb('source_namespace')} {LABEL_TYPE} NOT NULL,\n"
        f"    {qb('source_table')} {LABEL_TYPE} NOT NULL,\n"
        f"    {qb('timestamp')} datetime2 NOT NULL,\n"
        f"    {qb('schema_version')} bigint NOT NULL,\n"
        f"    {qb('target_schema')} {LABEL_TYPE},\n"
        f"    {qb('target_table')} {LABEL_TYPE} NOT NULL,\n"
        f"    {qb('schema_description_format')} {LABEL_TYPE} NOT NULL,\n"
        f"    {qb('schema_description')} varchar(max) NOT NULL,\n"
        f"    CONSTRAINT {qb(pk_name(META_SCHEMA, 'table_sync'))} PRIMARY KEY ({qb('id')})\n)",
        f"CREATE TABLE {version} (\n"
        f"    {qb('version')} bigint NOT NULL IDENTITY,\n"
        f"    CONSTRAINT {qb(pk_name(META_SCHEMA, 'database_version'))} PRIMARY KEY "
        f"({qb('version')})\n)",
    ]


def version_insert_sql(version: int = DATABASE_VERSION) -> list[str]:
    """Record the bookkeeping version (an identity column: ``IDENTITY_INSERT``, as ``dap``)."""
    table = _name(META_SCHEMA, "database_version")
    return [f"SET IDENTITY_INSERT {table} ON",
            f"INSERT INTO {table} ({qb('version')}) VALUES ({int(version)})",
            f"SET IDENTITY_INSERT {table} OFF"]


def table_ddl(layout: TableLayout, name: str | None = None) -> list[str]:
    """``CREATE TABLE`` (primary key inline) and the enum foreign keys of ``layout``.

    Parameters
    ----------
    layout : TableLayout
        The table.
    name : str, optional
        Build under another name (a shadow table); its constraints are named after it, so
        they do not collide with the live table's until :func:`swap_sql` renames them.
    """
    ns = layout.namespace
    build = name or layout.table
    cols = ",\n    ".join(f"{qb(c.name)} {mssql_type(c, layout)}{_null(c)}"
                          for c in layout.columns)
    out = [f"CREATE TABLE {_name(ns, build)} (\n    {cols},\n"
           f"    CONSTRAINT {qb(pk_name(ns, build))} PRIMARY KEY ({qb(layout.key.name)})\n)"]
    fks = [f"CONSTRAINT {qb(fk_name(ns, build, c.name))} FOREIGN KEY ({qb(c.name)}) "
           f"REFERENCES {_name(ns, lookup_table(c))} ({qb('id')})"
           for c in layout.columns if c.kind == "enum"]
    if fks:
        out.append(f"ALTER TABLE {_name(ns, build)} ADD\n" + ",\n".join(fks))
    return out


def lookup_ddl(layout: TableLayout, col: DbColumn) -> list[str]:
    """The lookup table of an enum column (or enum array), as the official client makes it."""
    ns, name = layout.namespace, lookup_table(col)
    return [
        f"CREATE TABLE {_name(ns, name)} (\n"
        f"    {qb('id')} integer NOT NULL IDENTITY,\n"
        f"    {qb('value')} {LABEL_TYPE} NOT NULL,\n"
        f"    CONSTRAINT {qb(pk_name(ns, name))} PRIMARY KEY ({qb('id')})\n)",
        f"ALTER TABLE {_name(ns, name)} ADD CONSTRAINT {qb('uq_' + name)} UNIQUE ({qb('value')})",
    ]


def lookup_insert_sql(layout: TableLayout, col: DbColumn, values: Sequence[str]) -> str | None:
    """Add the ``values`` a lookup table lacks, ids in the given order (None: nothing to add)."""
    if not values:
        return None
    table = _name(layout.namespace, lookup_table(col))
    rows = ", ".join(f"({i}, {nl(v)})" for i, v in enumerate(values))
    # ORDER BY in INSERT ... SELECT fixes the order identity values are handed out in.
    return (f"INSERT INTO {table} ({qb('value')}) SELECT v.{qb('value')} FROM (VALUES {rows}) "
            f"AS v({qb('n')}, {qb('value')}) WHERE NOT EXISTS (SELECT 1 FROM {table} AS l "
            f"WHERE l.{qb('value')} = v.{qb('value')}) ORDER BY v.{qb('n')}")


def lookup_select_sql(layout: TableLayout, col: DbColumn) -> str:
    """``(value, id)`` of a lookup table, by id."""
    return (f"SELECT {qb('value')}, {qb('id')} FROM "
            f"{_name(layout.namespace, lookup_table(col))} ORDER BY {qb('id')}")


def swap_sql(layout: TableLayout, build: str) -> list[str]:
    """Drop the live table and rename the shadow ``build`` (and its constraints) into place."""
    ns, table = layout.namespace, layout.table
    out = [f"DROP TABLE {_name(ns, table)}",
           f"EXEC sp_rename {nl(f'{ns}.{build}')}, {nl(table)}, N'OBJECT'",
           f"EXEC sp_rename {nl(f'{ns}.{pk_name(ns, build)}')}, {nl(pk_name(ns, table))}, "
           "N'OBJECT'"]
    for c in layout.columns:
        if c.kind == "enum":
            out.append(f"EXEC sp_rename {nl(f'{ns}.{fk_name(ns, build, c.name)}')}, "
                       f"{nl(fk_name(ns, table, c.name))}, N'OBJECT'")
    return out


# ------------------------------------------------------------------------------------------
# staging, MERGE, DELETE


def stage_columns(layout: TableLayout, *, incremental: bool) -> list[tuple[str, str]]:
    """``(name, type)`` of the staging table, in bulk-copy order.

    Text is staged as ``nvarchar`` (pymssql sends it as UTF-16, whatever the client's code
    page) with the database's collation, so that it converts into the UTF-8 ``varchar``
    columns on the server; enum columns are staged as their lookup ids.
    """
    cols = [(META_TS, "datetime2")]
    if incremental:
        cols.append((META_ACTION, "nvarchar(1) COLLATE DATABASE_DEFAULT"))
    cols.append((META_SEQ, "bigint"))
    for c in layout.columns:
        typ = mssql_type(c, layout)
        if typ.startswith("varchar("):
            n = c.max_length if c.kind == "string" else None
            width = "max" if n is None or n * 2 > 4000 else str(max(n * 2, 1))
            typ = f"nvarchar({width}) COLLATE DATABASE_DEFAULT"
        cols.append((c.name, typ))
    return cols


def stage_ddl(layout: TableLayout, *, incremental: bool) -> list[str]:
    """Drop any leftover staging table and create it (every column nullable: ``D`` rows)."""
    cols = ", ".join(f"{qb(n)} {t} NULL" for n, t in stage_columns(layout, incremental=incremental))
    return [f"DROP TABLE IF EXISTS {STAGE}", f"CREATE TABLE {STAGE} ({cols})"]


def stage_stats_sql(layout: TableLayout) -> str:
    """Rows and distinct keys in the stage."""
    key = qb(layout.key.name)
    return f"SELECT COUNT(*), COUNT(DISTINCT {key}) FROM {STAGE}"


def dedupe_sql(layout: TableLayout, *, incremental: bool) -> str:
    """Keep each key's last version in the stage (latest ``meta.ts``, then delivery order)."""
    order = (f"{qb(META_TS)} DESC, {qb(META_SEQ)} DESC" if incremental
             else f"{qb(META_SEQ)} DESC")
    return (f"WITH d AS (SELECT ROW_NUMBER() OVER (PARTITION BY {qb(layout.key.name)} "
            f"ORDER BY {order}) AS rn FROM {STAGE}) DELETE FROM d WHERE rn > 1")


def insert_sql(layout: TableLayout, build: str) -> str:
    """``INSERT ... SELECT`` of the staged snapshot into a new table, in key order."""
    names = ", ".join(qb(c.name) for c in layout.columns)
    return (f"INSERT INTO {_name(layout.namespace, build)} ({names}) "
            f"SELECT {names} FROM {STAGE} ORDER BY {qb(layout.key.name)}")


def change_counts_sql(layout: TableLayout) -> str:
    """Staged ``U`` rows; and ``D`` and ``U`` rows whose key the table holds already."""
    key = qb(layout.key.name)
    target = _name(layout.namespace, layout.table)
    action = f"s.{qb(META_ACTION)}"
    return (f"SELECT COALESCE(SUM(CASE WHEN {action} = N'U' THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN {action} = N'D' AND t.{key} IS NOT NULL THEN 1 ELSE 0 END)"
            f", 0), COALESCE(SUM(CASE WHEN {action} = N'U' AND t.{key} IS NOT NULL THEN 1 "
            f"ELSE 0 END), 0) FROM {STAGE} AS s LEFT JOIN {target} AS t ON t.{key} = s.{key}")


def delete_sql(layout: TableLayout) -> str:
    """Delete the rows of the staged ``D`` keys."""
    key = qb(layout.key.name)
    return (f"DELETE t FROM {_name(layout.namespace, layout.table)} AS t INNER JOIN {STAGE} AS s "
            f"ON t.{key} = s.{key} WHERE s.{qb(META_ACTION)} = N'D'")


def merge_sql(layout: TableLayout) -> str:
    """``MERGE`` the staged ``U`` rows into the table (update, or insert)."""
    key = qb(layout.key.name)
    names = [qb(c.name) for c in layout.columns]
    values = [qb(c.name) for c in layout.columns if c.name != layout.key.name]
    parts = [f"MERGE INTO {_name(layout.namespace, layout.table)} WITH (HOLDLOCK) AS t",
             f"USING (SELECT {', '.join(names)} FROM {STAGE} WHERE {qb(META_ACTION)} = N'U') "
             "AS s",
             f"ON t.{key} = s.{key}"]
    if values:
        parts.append("WHEN MATCHED THEN UPDATE SET "
                     + ", ".join(f"t.{n} = s.{n}" for n in values))
    parts.append(f"WHEN NOT MATCHED BY TARGET THEN INSERT ({', '.join(names)}) VALUES "
                 f"({', '.join('s.' + n for n in names)});")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------
# bulk-copy rows


def _texts(arr: Any, fmt: str) -> list[Any]:
    return list(pc.strftime(arr, format=fmt).to_pylist())


def _ip_packed(arr: pa.Array, width: int) -> list[bytes | None]:
    encoded = arr.dictionary_encode()
    packed: list[bytes] = []
    for text in encoded.dictionary.to_pylist():
        try:
            ip = ipaddress.ip_address(str(text))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address") from None
        if width == 4 and ip.version != 4:
            raise ValueError(f"{text!r} is not an IPv4 address")
        packed.append(ip.packed)  # the official client stores .packed (IPv4 padded in 16)
    return [None if i is None else packed[i] for i in encoded.indices.to_pylist()]


def _floats(layout: TableLayout, col: DbColumn, arr: Any, keys: Any) -> list[Any]:
    values: list[Any] = arr.to_pylist()
    bad: Any = pc.invert(pc.is_finite(arr))
    if pc.any(bad).as_py():
        i = next(j for j, v in enumerate(values) if v is not None and not math.isfinite(v))
        raise DatabaseError(f"{layout.name}: column {col.name!r} of the row with key "
                            f"{layout.key.name}={keys[i].as_py()!r} holds {values[i]!r}, which "
                            "SQL Server cannot store (no NaN or infinity in float columns)")
    return values


def _column_values(layout: TableLayout, col: DbColumn, arr: Any, keys: Any,
                   enum_ids: Mapping[str, Mapping[str, int]]) -> list[Any]:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    kind = col.kind
    try:
        if kind == "timestamp":
            return _texts(arr.cast(pa.timestamp("us")), "%Y-%m-%d %H:%M:%S")
        if kind == "date":
            return _texts(arr, "%Y-%m-%d")
        if kind == "time":
            return _texts(arr.cast(pa.time64("us")), "%H:%M:%S")
        if kind == "decimal":
            return list(arr.cast(pa.string()).to_pylist())  # plain notation, exact
        if kind == "uuid":
            return list(uuid_bytes(arr).to_pylist())
        if kind == "ip":
            return _ip_packed(arr, _ip_width(layout, col))
        if kind in ("float32", "float64"):
            return _floats(layout, col, arr, keys)
    except ValueError as exc:
        raise DatabaseError(f"{layout.name}: column {col.name!r}: {exc}") from None
    values = list(arr.to_pylist())
    if kind == "enum":
        ids = enum_ids.get(col.name, {})
        out: list[int | None] = []
        for i, v in enumerate(values):
            if v is None:
                out.append(None)
            elif v in ids:
                out.append(ids[v])
            else:
                raise DatabaseError(f"{layout.name}: column {col.name!r} of the row with key "
                                    f"{layout.key.name}={keys[i].as_py()!r} holds {v!r}, which "
                                    "is not a member of the schema's enum")
        return out
    return values


def bulk_rows(layout: TableLayout, batch: pa.RecordBatch, *, incremental: bool, seq: int,
              enum_ids: Mapping[str, Mapping[str, int]]) -> list[tuple[Any, ...]]:
    """One Arrow batch as the rows pymssql's ``bulk_copy`` takes, in :func:`stage_columns` order.

    Timestamps become naive UTC text with microseconds (pymssql would send a ``datetime`` with
    milliseconds only), dates and times ISO text, decimals exact text, UUIDs and IP addresses
    their 16 (or 4) bytes, booleans ``bool``, enum labels their lookup ids, objects and arrays
    their JSON text, nulls ``None``.

    Parameters
    ----------
    layout : TableLayout
        The table.
    batch : RecordBatch
        A canonical batch (``layout.read_schema``, plain naming).
    incremental : bool
        The batch carries ``meta.action``.
    seq : int
        Delivery sequence number of the batch's first row.
    enum_ids : mapping
        Column name -> label -> lookup id, for the enum columns.

    Raises
    ------
    DatabaseError
        A value SQL Server cannot store (NaN/infinity, a label outside the enum, a malformed
        UUID or IP address): one line naming table, column and key.
    """
    n = batch.num_rows
    keys = batch.column(layout.key.name)
    columns: list[list[Any]] = [_texts(batch.column(META_TS).cast(pa.timestamp("us")),
                                       "%Y-%m-%d %H:%M:%S")]
    if incremental:
        columns.append(list(batch.column(META_ACTION).to_pylist()))
    columns.append(list(range(seq, seq + n)))
    for col in layout.columns:
        columns.append(_column_values(layout, col, batch.column(col.name), keys, enum_ids))
    return list(zip(*columns, strict=True))


# ------------------------------------------------------------------------------------------
# errors

_DBLIB = re.compile(r"DB-Lib error message \d+, severity \d+:\s*")
_NETLIB = re.compile(r";?\s*Net-Lib error during\s*")


def _driver_text(exc: BaseException) -> tuple[int | None, str]:
    """``(error number, message)`` of a pymssql exception, the DB-Lib noise removed."""
    args: Any = exc.args
    number: Any = getattr(exc, "number", None)
    text: Any = getattr(exc, "message", None) or str(exc)
    if number is not None:
        pass
    elif args and isinstance(args[0], tuple) and len(args[0]) >= 2:
        number, text = args[0][0], args[0][1]
    elif len(args) >= 2 and isinstance(args[0], int):
        number, text = args[0], args[1]
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text)
    lines = []
    for line in _DBLIB.sub("\n", text).splitlines():
        line = line.strip()
        if line and line not in lines and not line.startswith("General SQL Server error"):
            lines.append(line)
    found = re.search(r"\b(\d{3,5})\b", str(number)) if number is not None else None
    return (int(found.group(1)) if found else None), "; ".join(lines)


def mssql_error(exc: BaseException, info: ConnectionInfo, action: str,
                table: str | None = None) -> DatabaseError:
    """One line for a SQL Server failure: what failed, where, and the fix when there is one."""
    number, detail = _driver_text(exc)
    secret = info.password.reveal() if info.password else ""
    if secret and secret in detail:  # never echo a password, whatever the driver said
        detail = detail.replace(secret, "***")
    low = detail.lower()
    where = info.display
    if number == 4060 or "cannot open database" in low:
        return DatabaseError(f"database {info.database!r} does not exist on {info.address} or the "
                             "user may not open it: create it or fix the connection string")
    if number == 18456 or "login failed" in low:
        return DatabaseError(f"SQL Server refused the user name or password for {where}: check "
                             "the connection string (percent-encode special characters)")
    if number in (20002, 20003, 20009) or "unable to connect" in low \
            or "connection refused" in low or "unknown host" in low \
            or "adaptive server connection" in low:
        detail = _NETLIB.sub(": ", detail)
        detail = detail.replace("Unable to connect: ", "")
        return DatabaseError(f"cannot reach SQL Server at {info.address} ({first_line(detail)}):"
                             " check the host, the port, and that the server is running and "
                             "accepts TCP connections")
    prefix = f"{table}: " if table else ""
    return DatabaseError(f"{prefix}SQL Server failed while {action} in {info.where}: "
                         f"{first_line(detail) or type(exc).__name__}"
                         + (f" (error {number})" if number else ""))


# ------------------------------------------------------------------------------------------
# the dialect


def _pymssql() -> Any:
    try:
        import pymssql
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError("SQL Server needs the mssql extra: pip install 'dapframe[mssql]'"
                          ) from None
    return pymssql


def connect_kwargs(info: ConnectionInfo) -> dict[str, Any]:
    """pymssql's ``connect`` arguments for a parsed ``mssql://`` string (password included)."""
    params = info.params
    timeout = params.get("login_timeout") or params.get("connect_timeout") or "10"
    kwargs: dict[str, Any] = {
        "server": info.host or "localhost", "port": str(info.port or 1433),
        "user": info.username or "", "password": info.password.reveal() if info.password else "",
        "database": info.database or "", "login_timeout": int(timeout), "charset": "UTF-8",
        "appname": "dapframe", "autocommit": False,
        # TDS 7.4 (SQL Server 2012+): datetime2, date and time come back typed.
        "tds_version": params.get("tds_version", "7.4"), "use_datetime2": True,
        "conn_properties": " ".join(_CONN_PROPERTIES),
    }
    if "ssl" in params:
        kwargs["encryption"] = _SSL[params["ssl"]]
    return kwargs


class MSSQLDialect(Dialect):
    """SQL Server (``mssql://user:password@host:1433/database[?ssl=MODE]``), through pymssql."""

    name = "mssql"

    def session(self) -> MSSQLSession:
        """Open a pymssql connection (see :class:`MSSQLSession`)."""
        return MSSQLSession(self.info)


@dataclass
class _Existing:
    """A column as SQL Server's catalog describes it."""

    name: str
    type: str
    nullable: bool
    lookup: str | None  # the table an enum column's foreign key references


class MSSQLSession(SqlSession):
    """One pymssql connection; every method runs and commits (or rolls back) one transaction.

    Parameters
    ----------
    info : ConnectionInfo
        The parsed connection string.
    connect : callable, optional
        Opens the DB-API connection from pymssql's keyword arguments (tests pass a recorder).
    errors : tuple of exception types, optional
        The driver's exceptions, with ``connect`` (pymssql's by default).
    """

    def __init__(self, info: ConnectionInfo, *, connect: Callable[..., Any] | None = None,
                 errors: tuple[type[BaseException], ...] = ()) -> None:
        self.info = info
        self.errors = errors
        if connect is None:
            pymssql = _pymssql()
            from pymssql import _mssql

            self.errors = (pymssql.Error, _mssql.MSSQLException)
            connect = pymssql.connect
        try:
            self.conn = connect(**connect_kwargs(info))
        except self.errors as exc:
            raise self._error(exc, "connecting") from None
        self.cur = self.conn.cursor()
        self._warned = False

    # -- plumbing --------------------------------------------------------------------------
    def qi(self, name: str) -> str:
        """Bracket-quoted identifier."""
        return qb(name)

    def param(self, index: int) -> str:
        """pymssql's placeholder (``%s``, values quoted client-side)."""
        return "%s"

    def _run(self, sql: str, params: Sequence[Any] | None = None) -> None:
        if params is not None:
            # pymssql would send a datetime with milliseconds only: send exact text instead.
            params = tuple(v.isoformat(sep=" ", timespec="microseconds")
                           if isinstance(v, datetime) else v for v in params)
        super()._run(sql, params)

    def _error(self, exc: BaseException, action: str, table: str | None = None) -> DatabaseError:
        return mssql_error(exc, self.info, action, table)

    def _commit(self) -> None:
        self.conn.commit()

    def _rollback(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        """Roll back whatever is open and close the connection."""
        try:
            self.conn.rollback()
        except Exception:
            pass
        try:
            self.conn.close()
        except Exception:
            pass

    def _lock(self, resource: str) -> None:
        # Serialises dapframe runs on one table (or on the bookkeeping DDL) across processes,
        # until this transaction ends.
        self._run("EXEC sp_getapplock @Resource = %s, @LockMode = N'Exclusive', "
                  "@LockOwner = N'Transaction', @LockTimeout = -1", [f"dapframe:{resource}"])

    # -- catalog ---------------------------------------------------------------------------
    def _schema_exists(self, schema: str) -> bool:
        return self._one("SELECT 1 FROM sys.schemas WHERE name = %s", [schema]) is not None

    def _relation_exists(self, namespace: str, table: str) -> bool:
        return self._one("SELECT 1 FROM sys.tables AS t INNER JOIN sys.schemas AS s ON "
                         "s.schema_id = t.schema_id WHERE s.name = %s AND t.name = %s",
                         [namespace, table]) is not None

    def _columns(self, namespace: str, table: str) -> dict[str, _Existing]:
        rows = self._all(
            "SELECT c.name, ty.name, c.max_length, c.precision, c.scale, c.is_nullable, "
            "rt.name FROM sys.columns AS c "
            "INNER JOIN sys.tables AS t ON t.object_id = c.object_id "
            "INNER JOIN sys.schemas AS s ON s.schema_id = t.schema_id "
            "INNER JOIN sys.types AS ty ON ty.user_type_id = c.user_type_id "
            "LEFT JOIN sys.foreign_key_columns AS f ON f.parent_object_id = c.object_id "
            "AND f.parent_column_id = c.column_id "
            "LEFT JOIN sys.tables AS rt ON rt.object_id = f.referenced_object_id "
            "WHERE s.name = %s AND t.name = %s ORDER BY c.column_id", [namespace, table])
        return {r[0]: _Existing(r[0], catalog_type(r[1], r[2], r[3], r[4]), bool(r[5]), r[6])
                for r in rows}

    def _check_collation(self) -> None:
        if self._warned:
            return
        self._warned = True
        row = self._one("SELECT CONVERT(nvarchar(128), DATABASEPROPERTYEX(DB_NAME(), "
                        "'Collation'))")
        collation = str(row[0]) if row and row[0] is not None else "unknown"
        if not collation.upper().endswith("_UTF8"):
            # The official client's warning: varchar columns keep only the code page's
            # characters under a non-UTF-8 collation.
            log.warning("%s: the database collation %s does not appear to use UTF-8; text "
                        "outside its code page is stored as '?'. Use a UTF-8 collation, e.g. "
                        "ALTER DATABASE ... COLLATE Latin1_General_100_CI_AS_SC_UTF8",
                        self.info.where, collation)

    # -- bookkeeping -----------------------------------------------------------------------
    def ensure_bookkeeping(self, namespace: str) -> None:
        """Create the official bookkeeping tables (version 1) and the namespace's schema."""
        with self._tx("creating the bookkeeping tables"):
            self._lock("bookkeeping")
            self._check_collation()
            for schema in (META_SCHEMA, namespace):
                if not self._schema_exists(schema):
                    self._run(f"CREATE SCHEMA {qb(schema)}")
            missing = [not self._relation_exists(META_SCHEMA, t)
                       for t in ("table_sync", "database_version")]
            for sql, needed in zip(bookkeeping_ddl(), missing, strict=True):
                if needed:
                    self._run(sql)
            table = _name(META_SCHEMA, "database_version")
            versions = [int(r[0]) for r in self._all(f"SELECT {qb('version')} FROM {table}")]
            if self._check_version(versions):
                for sql in version_insert_sql():
                    self._run(sql)

    # -- enums -----------------------------------------------------------------------------
    def _ensure_lookups(self, layout: TableLayout, changes: list[str]
                        ) -> dict[str, dict[str, int]]:
        """Create missing lookup tables, add missing labels; the ids of the enum columns."""
        ids: dict[str, dict[str, int]] = {}
        for col in layout.enums:
            name = lookup_table(col)
            created = not self._relation_exists(layout.namespace, name)
            if created:
                for sql in lookup_ddl(layout, col):
                    self._run(sql)
                changes.append(f"enum {name}: created")
                have: dict[str, int] = {}
            else:
                have = {str(v): int(i) for v, i in self._all(lookup_select_sql(layout, col))}
            new = [v for v in col.enum if v not in have]
            insert = lookup_insert_sql(layout, col, new)
            if insert is not None:
                self._run(insert)
                have = {str(v): int(i) for v, i in self._all(lookup_select_sql(layout, col))}
                if not created:
                    changes.append(f"enum {name}: added {', '.join(map(repr, new))}")
            if col.kind == "enum":
                ids[col.name] = have
        return ids

    # -- migration -------------------------------------------------------------------------
    def migrate(self, layout: TableLayout) -> list[str]:
        """Bring an existing table to ``layout`` in place (one committed transaction).

        New columns are added (nullable: existing rows have no value; an enum column with its
        lookup table and foreign key), new enum values become lookup rows, changed types are
        altered (``ALTER COLUMN``), and a column that became optional, or left the schema,
        drops ``NOT NULL``. A column moving between enum and another type is refused.
        """
        changes: list[str] = []
        ns, table = layout.namespace, layout.table
        with self._tx("migrating the table", layout.name):
            self._lock(layout.name)
            existing = self._columns(ns, table)
            self._ensure_lookups(layout, changes)
            if not existing:
                return changes
            target = _name(ns, table)
            for col in layout.columns:
                want = mssql_type(col, layout)
                have = existing.get(col.name)
                if have is None:
                    self._run(f"ALTER TABLE {target} ADD {qb(col.name)} {want} NULL")
                    if col.kind == "enum":
                        self._run(f"ALTER TABLE {target} ADD CONSTRAINT "
                                  f"{qb(fk_name(ns, table, col.name))} FOREIGN KEY "
                                  f"({qb(col.name)}) REFERENCES {_name(ns, lookup_table(col))} "
                                  f"({qb('id')})")
                    changes.append(f"column {col.name}: added ({want})")
                    continue
                if (col.kind == "enum") != (have.lookup is not None):
                    raise DatabaseError(
                        f"{layout.name}: column {col.name!r} changes between an enum (lookup "
                        "table) and another type, which cannot be migrated in place: run dropdb "
                        "and initdb")
                nullable = col.nullable or have.nullable
                if canonical_type(have.type) != canonical_type(want):
                    self._run(f"ALTER TABLE {target} ALTER COLUMN {qb(col.name)} {want}"
                              + (" NULL" if nullable else " NOT NULL"))
                    changes.append(f"column {col.name}: {have.type} -> {want}")
                elif not have.nullable and col.nullable:
                    self._run(f"ALTER TABLE {target} ALTER COLUMN {qb(col.name)} {have.type} "
                              "NULL")
                    changes.append(f"column {col.name}: now nullable")
            known = {c.name for c in layout.columns}
            for name, have in existing.items():
                if name not in known and not have.nullable:
                    self._run(f"ALTER TABLE {target} ALTER COLUMN {qb(name)} {have.type} NULL")
                    changes.append(f"column {name}: no longer in the schema, now nullable")
        return changes

    # -- loading ---------------------------------------------------------------------------
    def _stage(self, layout: TableLayout, batches: Iterator[pa.RecordBatch], *,
               incremental: bool, enum_ids: Mapping[str, Mapping[str, int]]) -> int:
        """Create the staging table and bulk-copy the batches into it; rows received."""
        for sql in stage_ddl(layout, incremental=incremental):
            self._run(sql)
        column_ids = list(range(1, len(stage_columns(layout, incremental=incremental)) + 1))
        received = 0
        for batch in batches:  # one Arrow batch (and its rows) in memory at a time
            # Rows are built (and checked) before the bulk copy starts: a bad value raises
            # here, never in the middle of a TDS bulk load.
            rows = bulk_rows(layout, batch, incremental=incremental, seq=received,
                             enum_ids=enum_ids)
            if rows:
                self.conn.bulk_copy(STAGE, rows, column_ids=column_ids, batch_size=BULK_BATCH)
            received += batch.num_rows
        return received

    def _dedupe(self, layout: TableLayout, *, incremental: bool) -> int:
        stats = self._one(stage_stats_sql(layout))
        assert stats is not None
        if stats[0] != stats[1]:  # a key more than once (web_logs repeats): last one wins
            self._run(dedupe_sql(layout, incremental=incremental))
        return int(stats[0])

    def _check_row(self, layout: TableLayout, current: list[SyncRow],
                   replace: SyncRow | None) -> None:
        if replace is None and current:
            raise DatabaseError(f"{layout.name} is already initialised in {self.info.where}: "
                                "run syncdb to update it")
        if replace is not None and (not current or current[0].id != replace.id
                                    or current[0].timestamp != replace.timestamp):
            raise DatabaseError(f"{layout.name} changed in {self.info.where} while it was "
                                "being re-initialised (another sync?): run syncdb again")

    def initdb(self, layout: TableLayout, batches: Iterator[pa.RecordBatch],
               watermark: datetime, *, replace: SyncRow | None = None) -> LoadCounts:
        """Build the table and its rows and record the watermark, in one transaction."""
        ns, table = layout.namespace, layout.table
        counts = LoadCounts()
        q = qb
        with self._tx("loading the snapshot", layout.name):
            self._lock(layout.name)
            current = self._sync_rows(f"{q('source_namespace')} = %s AND "
                                      f"{q('source_table')} = %s", [ns, table])
            self._check_row(layout, current, replace)
            enum_ids = self._ensure_lookups(layout, counts.changes)
            exists = self._relation_exists(ns, table)
            build = table + SHADOW_SUFFIX if exists else table
            if exists:
                self._run(f"DROP TABLE IF EXISTS {_name(ns, build)}")
            for sql in table_ddl(layout, build):
                self._run(sql)
            counts.received = self._stage(layout, batches, incremental=False,
                                          enum_ids=enum_ids)
            self._dedupe(layout, incremental=False)
            self._run(insert_sql(layout, build))
            counts.inserted = max(int(self.cur.rowcount), 0)
            if exists:
                # The swap: readers see the old table until the commit, the new one after it.
                for sql in swap_sql(layout, build):
                    self._run(sql)
            self._run(f"DROP TABLE {STAGE}")
            self._write_sync_row(layout, watermark, replace.id if replace else None)
        return counts

    def syncdb(self, layout: TableLayout, batches: Iterator[pa.RecordBatch],
               watermark: datetime, row: SyncRow) -> LoadCounts:
        """Stage, delete, merge and advance the watermark, in one transaction."""
        counts = LoadCounts()
        with self._tx("applying the changes", layout.name):
            self._lock(layout.name)
            now = self._one(f"SELECT {qb('timestamp')} FROM {self.meta_table('table_sync')} "
                            f"WITH (UPDLOCK, HOLDLOCK) WHERE {qb('id')} = %s", [row.id])
            if now is None or utc(_as_datetime(now[0])) != row.timestamp:
                raise DatabaseError(f"{layout.name} was synchronised by someone else meanwhile "
                                    f"in {self.info.where}: run syncdb again")
            enum_ids = self._ensure_lookups(layout, counts.changes)
            self._stage(layout, batches, incremental=True, enum_ids=enum_ids)
            counts.received = self._dedupe(layout, incremental=True)
            found = self._one(change_counts_sql(layout))
            assert found is not None
            ups, counts.deleted, counts.updated = (int(v) for v in found)
            counts.inserted = ups - counts.updated
            self._run(delete_sql(layout))
            self._run(merge_sql(layout))
            self._run(f"DROP TABLE {STAGE}")
            self._write_sync_row(layout, watermark, row.id)
        return counts

    def dropdb(self, namespace: str, table: str) -> None:
        """Drop the table and its ``table_sync`` row (refused when not initialised).

        The lookup tables stay, as the official client leaves enum types: an initdb reuses
        them.
        """
        name = f"{namespace}.{table}"
        with self._tx("dropping the table", name):
            self._lock(name)
            row = self._drop_sync_row(namespace, table)
            target = _name(row.target_schema or namespace, row.target_table)
            self._run(f"DROP TABLE IF EXISTS {target}")


def _as_datetime(value: Any) -> datetime:
    """A ``datetime2`` as pymssql returns it (a datetime; text under an old TDS version)."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).strip()[:26])


# ------------------------------------------------------------------------------------------
# catalog types


def catalog_type(name: str, max_length: int, precision: int, scale: int) -> str:
    """A column's type as written in DDL, from ``sys.columns``/``sys.types``."""
    name = name.lower()
    if name in ("varchar", "varbinary", "binary", "char"):
        return f"{name}({'max' if max_length == -1 else max_length})"
    if name in ("nvarchar", "nchar"):
        return f"{name}({'max' if max_length == -1 else max_length // 2})"
    if name in ("decimal", "numeric"):
        return f"decimal({precision}, {scale})"
    return name


_CANON: Final = {"integer": "int", "double precision": "float", "float(53)": "float",
                 "numeric": "decimal", "datetime2(7)": "datetime2"}


def canonical_type(text: str) -> str:
    """A type's canonical spelling, to compare catalog types with :func:`mssql_type`."""
    t = re.sub(r"\s+", " ", text.strip().lower())
    t = re.sub(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)", r"(\1,\2)", t)
    return _CANON.get(t, t)


# ------------------------------------------------------------------------------------------
# reading back


def _arrow_type(typ: str) -> pa.DataType:
    t = canonical_type(typ)
    simple: dict[str, pa.DataType] = {
        "bigint": pa.int64(), "int": pa.int32(), "smallint": pa.int16(), "tinyint": pa.uint8(),
        "bit": pa.bool_(), "real": pa.float32(), "float": pa.float64(),
        "datetime2": pa.timestamp("us"), "datetime": pa.timestamp("us"), "date": pa.date32(),
        "time": pa.time64("us")}
    if t in simple:
        return simple[t]
    if (m := re.match(r"decimal\((\d+),(\d+)\)", t)) is not None:
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    if t.startswith(("binary", "varbinary")):
        return pa.binary()
    return pa.string()


def _parse_temporal(value: Any, kind: type) -> Any:
    if value is None or isinstance(value, kind):
        return value
    text = str(value).strip()
    if kind is datetime:
        return datetime.fromisoformat(text[:26])
    if kind is date:
        return date.fromisoformat(text[:10])
    return time.fromisoformat(text[:15])


def _ip_text(raw: bytes) -> str:
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16 and raw[4:] == bytes(12):
        # binary(16) pads a 4-byte IPv4 address with zeros (the official client stores
        # .packed): read it back as IPv4.
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.ip_address(raw))


def read_arrays(names: Sequence[str], types: Sequence[str], kinds: Sequence[str | None],
                labels: Sequence[Mapping[int, str] | None],
                rows: Iterable[Sequence[Any]]) -> pa.Table:
    """Fetched rows as an Arrow table typed like the other dialects' reads.

    Parameters
    ----------
    names, types : sequence of str
        Column names and their catalog types.
    kinds : sequence of str or None
        The layout kind of each column when known (``uuid``, ``ip``, ``array``, ...).
    labels : sequence of mapping or None
        For enum columns: lookup id -> label.
    rows : iterable of sequences
        The rows, as pymssql returns them.
    """
    data: list[list[Any]] = [[] for _ in names]
    for row in rows:
        for i, v in enumerate(row):
            data[i].append(v)
    arrays: list[pa.Array] = []
    for i, values in enumerate(data):
        kind, lab = kinds[i], labels[i]
        typ = _arrow_type(types[i])
        if lab is not None:
            arrays.append(pa.array([None if v is None else lab.get(int(v), str(v))
                                    for v in values], pa.string()))
        elif kind == "uuid" or (kind is None and types[i] == "binary(16)"):
            import uuid

            arrays.append(pa.array([None if v is None else str(uuid.UUID(bytes=bytes(v)))
                                    for v in values], pa.string()))
        elif kind == "ip":
            arrays.append(pa.array([None if v is None else _ip_text(bytes(v)) for v in values],
                                   pa.string()))
        elif kind == "array":
            arrays.append(pa.array([None if v is None else
                                    [None if x is None else (x if isinstance(x, str)
                                                             else json.dumps(x))
                                     for x in json.loads(v)] for v in values],
                                   pa.list_(pa.string())))
        elif pa.types.is_timestamp(typ):
            arrays.append(pa.array([_parse_temporal(v, datetime) for v in values], typ))
        elif pa.types.is_date(typ):
            arrays.append(pa.array([_parse_temporal(v, date) for v in values], typ))
        elif pa.types.is_time(typ):
            arrays.append(pa.array([_parse_temporal(v, time) for v in values], typ))
        else:
            arrays.append(pa.array(values, typ))
    return pa.Table.from_arrays(arrays, names=list(names))


def read_mssql(info: ConnectionInfo, ns: str, name: str, order: bool) -> pl.DataFrame:
    """Read a SQL Server replica table into Polars (pymssql fetch, typed like the others).

    Enum ids become their labels (``pl.Enum`` in lookup-id order), UUIDs and IP addresses
    text, arrays ``List(String)``, timestamps ``Datetime("us", "UTC")``.
    """
    from dapframe.sync._api import _finish

    session = MSSQLSession(info)
    try:
        with session._tx("reading the table", f"{ns}.{name}"):
            columns = session._columns(ns, name)
            if not columns:
                raise DatabaseError(f"{ns}.{name} does not exist in {info.where}: run initdb "
                                    "first")
            kinds: dict[str, str] = {}
            rows = session._sync_rows("[source_namespace] = %s AND [source_table] = %s",
                                      [ns, name])
            if rows:
                desc = session._one(f"SELECT {qb('schema_description')}, {qb('schema_version')}"
                                    f" FROM {session.meta_table('table_sync')} WHERE "
                                    f"{qb('id')} = %s", [rows[0].id])
                try:
                    layout = table_layout(ns, name, json.loads(desc[0]), int(desc[1])) \
                        if desc else None
                except (ValueError, SchemaError):
                    layout = None
                if layout is not None:
                    kinds = {c.name: c.kind for c in layout.columns}
            labels: list[Mapping[int, str] | None] = []
            for col in columns.values():
                if col.lookup is None:
                    labels.append(None)
                    continue
                labels.append({int(i): str(v) for i, v in session._all(
                    f"SELECT {qb('id')}, {qb('value')} FROM {_name(ns, col.lookup)} "
                    f"ORDER BY {qb('id')}")})
            select = ", ".join(qb(c) for c in columns)
            sql = f"SELECT {select} FROM {_name(ns, name)}"
            if order:
                sql += f" ORDER BY {qb(next(iter(columns)))}"
            session._run(sql)

            def fetched() -> Iterator[Sequence[Any]]:
                while chunk := session.cur.fetchmany(10_000):
                    yield from chunk

            table = read_arrays(list(columns), [c.type for c in columns.values()],
                                [kinds.get(c) for c in columns], labels, fetched())
    finally:
        session.close()
    specs: list[tuple[str, str, list[str] | None]] = []
    for (column, have), lab in zip(columns.items(), labels, strict=True):
        typ = have.type
        if (m := re.match(r"decimal\((\d+), (\d+)\)", typ)) is not None:
            typ = f"DECIMAL({m.group(1)},{m.group(2)})"
        specs.append((column, typ, list(lab.values()) if lab is not None else None))
    return _finish(table, specs)
