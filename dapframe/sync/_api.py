"""The Python face of sync: :func:`sync`, :func:`sync_tables`, :func:`dropdb`, :func:`listdb`,
:func:`read_table`, and :func:`sync_result` behind ``QueryResult.sync``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

import pyarrow as pa

from dapframe.errors import DatabaseError, UsageError
from dapframe.result import parse_table_name
from dapframe.sync._dialect import Dialect, dialect_for
from dapframe.sync._engine import SYNC_FORMAT, SyncReport, run_tables
from dapframe.sync._layout import TableLayout, qi, table_layout
from dapframe.sync._url import ConnectionInfo, parse_connection_string

if TYPE_CHECKING:
    import polars as pl

    from dapframe.api import AsyncDapClient, DapClient, RateLimits
    from dapframe.config import DapConfig
    from dapframe.result import QueryResult

__all__ = ["dropdb", "initdb", "listdb", "read_table", "sync", "sync_result", "sync_tables",
           "syncdb"]

_T = TypeVar("_T")
_DEFAULT: Final = object()  # "the client's default rate limits"


@contextmanager
def _api(client: DapClient | None, config: DapConfig | None, rate_limits: Any
         ) -> Iterator[tuple[Callable[[Coroutine[Any, Any, Any]], Any], AsyncDapClient]]:
    """A way to run coroutines on a client's event loop, and its async client."""
    from dapframe.api import DapClient

    if client is not None:
        # The sync client's loop owns its connection pool: run the engine there.
        yield client._portal.call, client.async_client
        return
    kwargs: dict[str, Any] = {} if rate_limits is _DEFAULT else {"rate_limits": rate_limits}
    with DapClient(config, **kwargs) as own:
        yield own._portal.call, own.async_client


@contextmanager
def _database(connection_string: str | None, *, read_only: bool = False,
              create: bool = True) -> Iterator[Dialect]:
    info = parse_connection_string(connection_string)
    if info.dialect == "duckdb":
        from dapframe.sync._duckdb import DuckDBDialect

        dialect: Dialect = DuckDBDialect(info, read_only=read_only, create=create)
    else:
        dialect = dialect_for(info)
    try:
        yield dialect
    finally:
        dialect.close()


def sync_tables(connection_string: str | None, namespace: str, tables: str | Sequence[str] = "all",
                *, command: str = "auto", recover: bool = True, client: DapClient | None = None,
                config: DapConfig | None = None, rate_limits: RateLimits | Any | None = _DEFAULT,
                concurrency: int = 4, format: str = SYNC_FORMAT, deadline: float | None = None,
                on_done: Callable[[SyncReport], None] | None = None) -> list[SyncReport]:
    """Initialise or synchronise several tables of a namespace, concurrently.

    Parameters
    ----------
    connection_string : str or None
        ``postgresql://user:password@host:port/database[?ssl=MODE]`` or
        ``duckdb:///path.duckdb``; None: ``duckdb:///dapframe.duckdb`` in the working folder.
    namespace : str
        E.g. ``canvas``.
    tables : str or list of str
        ``"all"`` (every table the API lists), one name, a comma list, or a list.
    command : {"auto", "initdb", "syncdb"}
        ``auto`` initialises new tables and synchronises the others.
    recover : bool
        Re-initialise a table (atomically, into a shadow table) when the API answers
        snapshot-required or out-of-range; False reports the table as failed instead.
    client : DapClient, optional
        Reuse a client; by default one is made from ``config`` or the ``DAP_*`` variables.
    rate_limits : RateLimits or None, optional
        For the client made here (default: the API's documented limits; None: none).
    concurrency : int
        Tables at once.
    format : str
        Transfer format of the parts (``parquet`` by default: the fastest to decode).
    deadline : float, optional
        Most seconds to wait for each query job.
    on_done : callable, optional
        Called with each table's report as soon as it finishes.

    Returns
    -------
    list of SyncReport
        One per table; a failed table has ``error`` set and changed nothing.

    Raises
    ------
    ConfigError
        Malformed connection string, unknown dialect, missing API credentials.
    AuthenticationError, TransportError
        The API refused the credentials or could not be reached (the same for every table).
    """
    names = _table_list(tables, namespace)
    # syncdb needs an initialised replica: never create an empty DuckDB file for it.
    with _database(connection_string, create=command != "syncdb") as dialect, \
            _api(client, config, rate_limits) as (call, ac):
        return call(run_tables(ac, dialect, namespace, names, command=command, recover=recover,
                               concurrency=concurrency, format=format, deadline=deadline,
                               on_done=on_done))


def _table_list(tables: str | Sequence[str], namespace: str) -> list[str]:
    if isinstance(tables, str):
        names = [t.strip() for t in tables.split(",") if t.strip()]
    else:
        names = [t.strip() for t in tables]
    if not names:
        raise UsageError("no table given: name a table, a comma list, or 'all'")
    if names == ["all"]:
        return names
    return [parse_table_name(n, namespace)[1] for n in names]


def sync(connection_string: str | None, table: str, *, namespace: str | None = None,
         command: str = "auto", **kwargs: Any) -> SyncReport:
    """Initialise or synchronise one table and return its :class:`SyncReport`.

    Parameters
    ----------
    connection_string : str or None
        Where the replica lives (see :func:`sync_tables`); None: the local DuckDB default.
    table : str
        ``"canvas.accounts"`` (or ``"accounts"`` with ``namespace="canvas"``).
    command : {"auto", "initdb", "syncdb"}
        ``auto``: initdb for a new table, syncdb for an initialised one.
    **kwargs
        ``recover``, ``client``, ``config``, ``rate_limits``, ``format``, ``deadline``: as for
        :func:`sync_tables`.

    Returns
    -------
    SyncReport
        Rows inserted, updated, deleted; the new watermark; the duration.

    Raises
    ------
    DapError
        The table failed (e.g. :class:`~dapframe.errors.DatabaseError`); nothing changed.

    Examples
    --------
    >>> report = dapframe.sync("postgresql://me@localhost/dap", "canvas.accounts")  # doctest: +SKIP
    >>> report.inserted, report.updated, report.deleted, report.watermark           # doctest: +SKIP
    """
    ns, name = parse_table_name(table, namespace)
    (report,) = sync_tables(connection_string, ns, [name], command=command, **kwargs)
    if report.exception is not None:
        raise report.exception
    return report


def initdb(connection_string: str | None, table: str, **kwargs: Any) -> SyncReport:
    """Initialise one table (snapshot); refused when it is initialised already."""
    return sync(connection_string, table, command="initdb", **kwargs)


def syncdb(connection_string: str | None, table: str, **kwargs: Any) -> SyncReport:
    """Synchronise one initialised table (incremental from its watermark)."""
    return sync(connection_string, table, command="syncdb", **kwargs)


def dropdb(connection_string: str | None, table: str | Sequence[str], *,
           namespace: str | None = None) -> list[str]:
    """Drop replica tables and their ``table_sync`` rows (one transaction per table).

    Parameters
    ----------
    table : str or list of str
        ``"canvas.accounts"``, or names with ``namespace``; ``"all"`` with ``namespace``
        drops every table of the namespace recorded in ``table_sync``.

    Returns
    -------
    list of str
        The tables dropped.

    Raises
    ------
    DatabaseError
        A table is not initialised (a table without a ``table_sync`` row is left alone).
    """
    if isinstance(table, str) and namespace is None:
        ns, first = parse_table_name(table)
        names = [first]
    else:
        if namespace is None:
            raise UsageError("several tables need namespace=")
        ns = namespace
        names = _table_list(table, ns)
    dropped = []
    with _database(connection_string, create=False) as dialect, dialect.session() as session:
        if names == ["all"]:
            names = [r.table for r in session.sync_rows(ns)]
        for name in names:
            session.dropdb(ns, name)
            dropped.append(f"{ns}.{name}")
    return dropped


def staleness(timestamp: datetime) -> str:
    """Age of a watermark the way ``dap listdb`` prints it (``2d 3h``, ``5m 2s`` ...)."""
    seconds = int((datetime.now(UTC) - timestamp).total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days > 0:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours > 0:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes > 0:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def listdb(connection_string: str | None, namespace: str, *, client: DapClient | None = None,
           config: DapConfig | None = None, rate_limits: Any = _DEFAULT,
           omit_not_replicated: bool = False, omit_record_count: bool = False
           ) -> list[dict[str, Any]]:
    """The namespace's tables and their replicas, as ``dap listdb`` lists them.

    Returns
    -------
    list of dict
        ``{name, timestamp, staleness, schema, command[, records]}`` per table: replicated
        tables first (by name), then the API's other tables (unless
        ``omit_not_replicated``), whose ``command`` is ``initdb``.
    """
    parse_table_name(namespace + ".x")
    info = parse_connection_string(connection_string)
    rows: list[Any] = []
    counts: dict[str, int] = {}
    if info.dialect != "duckdb" or info.path is None or info.path.exists():
        # Read-only for DuckDB: listing must not create a file, nor block other readers.
        with _database(connection_string, read_only=True) as dialect, \
                dialect.session() as session:
            rows = session.sync_rows(namespace)
            if not omit_record_count:
                counts = {r.table: session.count(r.target_schema or namespace, r.target_table)
                          for r in rows}
    out: list[dict[str, Any]] = []
    for r in rows:
        entry: dict[str, Any] = {
            "name": r.table, "timestamp": r.timestamp.astimezone().isoformat(),
            "staleness": staleness(r.timestamp), "schema": r.schema_version, "command": "syncdb"}
        if not omit_record_count:
            entry["records"] = counts.get(r.table)
        out.append(entry)
    if not omit_not_replicated:
        with _api(client, config, rate_limits) as (call, ac):
            listed = call(ac.list_tables(namespace))
        known = {r.table for r in rows}
        for name in sorted(listed):
            if name not in known:
                entry = {"name": name, "timestamp": None, "staleness": None, "schema": None,
                         "command": "initdb"}
                if not omit_record_count:
                    entry["records"] = None
                out.append(entry)
    return out


# ------------------------------------------------------------------------------------------
# QueryResult.sync


def sync_result(result: QueryResult, connection_string: str | None = None) -> SyncReport:
    """Load a fetched :class:`~dapframe.QueryResult` into a replica (``QueryResult.sync``).

    A snapshot result initialises the table (it must not be initialised yet); an incremental
    result is applied to a table whose watermark equals the result's ``since`` (so that no
    change is skipped or applied twice), and advances it to ``until``. One transaction.

    Raises
    ------
    DatabaseError
        Initialised already (snapshot), not initialised, or the watermark does not match.
    """
    start = time.monotonic()
    ns, table = result.spec.namespace, result.spec.table
    layout = table_layout(ns, table, schema_document(result.schema), result.schema.version)
    report = SyncReport(table=layout.name, command="syncdb" if result.incremental else "initdb")
    with _database(connection_string) as dialect, dialect.session() as session:
        report.database = dialect.info.display
        session.ensure_bookkeeping(ns)
        row = session.sync_row(ns, table)
        if session.table_exists(ns, table):
            report.migrations += session.migrate(layout)
        batches = _result_batches(result, layout)
        if not result.incremental:
            if row is not None:
                raise DatabaseError(f"{layout.name} is already initialised in {dialect.where}: "
                                    "apply an incremental result, or use syncdb")
            assert result.at is not None
            counts = session.initdb(layout, batches, result.at)
            report.watermark = result.at
        else:
            if row is None:
                raise DatabaseError(f"{layout.name} is not initialised in {dialect.where}: "
                                    "load a snapshot first")
            if result.since is None or row.timestamp != result.since.astimezone(UTC):
                raise DatabaseError(
                    f"{layout.name}: the replica is at {row.timestamp.isoformat()} but the result "
                    f"starts at {result.since.isoformat() if result.since else None}: fetch "
                    f"incremental(since={row.timestamp.isoformat()}) instead")
            assert result.until is not None
            counts = session.syncdb(layout, batches, result.until, row)
            report.watermark = result.until
    report.inserted, report.updated, report.deleted = (counts.inserted, counts.updated,
                                                       counts.deleted)
    report.schema_version = layout.version
    report.duration = time.monotonic() - start
    return report


def _result_batches(result: QueryResult, layout: TableLayout) -> Iterator[pa.RecordBatch]:
    from dapframe.frames import read_batches

    if result.format != "jsonl":
        # Objects and arrays are JSON text in csv, tsv and parquet: read them as text.
        yield from read_batches(result.files, result.format, layout.read_schema,
                                incremental=result.incremental)
        return
    # JSON Lines nests objects and arrays: decode them, then write them back as JSON text.
    target = layout.read_schema.arrow_schema(incremental=result.incremental)
    for batch in read_batches(result.files, "jsonl", result.schema,
                              incremental=result.incremental):
        arrays = []
        for f in target:
            arr = batch.column(f.name)
            if arr.type != f.type:
                arr = pa.array([_json_text(v) for v in arr.to_pylist()], pa.string())
            arrays.append(arr)
        yield pa.RecordBatch.from_arrays(arrays, schema=target)


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):  # null members are left out, as upstream writes them
        value = {k: v for k, v in value.items() if v is not None}
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def schema_document(schema: Any) -> dict[str, Any]:
    """A section 7 schema document rebuilt from a :class:`~dapframe.schema.TableSchema`.

    Used where only the parsed schema is at hand (a :class:`~dapframe.QueryResult`): it gives
    the same column types; the ``table_sync`` description is this rebuilt document.
    """
    def prop(col: Any) -> dict[str, Any]:
        kind = col.kind
        p: dict[str, Any]
        if kind in ("int16", "int32", "int64"):
            p = {"type": "integer", "format": kind}
        elif kind in ("float32", "float64"):
            p = {"type": "number", "format": kind}
        elif kind == "decimal":
            bound = 10 ** (col.precision - col.scale)
            p = {"type": "number", "exclusiveMinimum": -bound, "exclusiveMaximum": bound,
                 "multipleOf": 10.0 ** -col.scale}
        elif kind == "bool":
            p = {"type": "boolean"}
        elif kind in ("timestamp", "date", "time", "uuid"):
            fmt = {"timestamp": "date-time"}.get(kind, kind)
            p = {"type": "string", "format": fmt}
        elif kind == "ip":
            p = {"oneOf": [{"type": "string", "format": "ipv4"},
                           {"type": "string", "format": "ipv6"}]}
        elif kind == "enum":
            p = {"type": "string", "enum": list(col.enum)}
        elif kind == "struct":
            p = {"type": "object", "properties": {f: {"type": "string"} for f in col.fields},
                 "additionalProperties": False}
        elif kind == "array":
            items: dict[str, Any] = ({"type": "string", "enum": list(col.enum)}
                                     if col.items == "enum" else {"type": "string"})
            p = {"type": "array", "items": items}
        else:
            p = {"type": "string"}
            if col.max_length is not None:
                p["maxLength"] = col.max_length
        if col.description:
            p["description"] = col.description
        return p

    key = {c.name: prop(c) for c in schema.key}
    value = {c.name: prop(c) for c in schema.values}
    required = [c.name for c in schema.values if not c.nullable]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "key": {"type": "object", "properties": key, "additionalProperties": False,
                    "required": list(key), "title": schema.title},
            "value": {"type": "object", "properties": value, "additionalProperties": False,
                      "required": required, "title": schema.title},
        },
        "additionalProperties": False,
        "required": ["key"],
    }


# ------------------------------------------------------------------------------------------
# reading a replica back


def read_table(connection_string: str | None, table: str, *, namespace: str | None = None,
               order_by_key: bool = True) -> pl.DataFrame:
    """Read a replica table into a Polars DataFrame.

    PostgreSQL goes through connectorx (Arrow, no pandas); DuckDB through DuckDB's Arrow
    export. Types are made the same for both: timestamps ``Datetime("us", "UTC")`` (the
    columns hold UTC), enums ``pl.Enum`` with the type's members, decimals ``Decimal(p, s)``,
    JSON objects as their JSON text, UUIDs and IP addresses as text, arrays ``List(String)``.

    Parameters
    ----------
    connection_string : str or None
        As for :func:`sync`.
    table : str
        ``"canvas.accounts"`` (or a bare name with ``namespace``).
    order_by_key : bool
        Sort by the primary key (the first column).

    Raises
    ------
    DatabaseError
        The database cannot be reached or the table does not exist.
    """
    ns, name = parse_table_name(table, namespace)
    info = parse_connection_string(connection_string)
    if info.dialect == "duckdb":
        return _read_duckdb(info, ns, name, order_by_key)
    if info.dialect == "mysql":
        from dapframe.sync._mysql import read_mysql

        return read_mysql(info, ns, name, order_by_key)
    if info.dialect == "mssql":
        from dapframe.sync._mssql import read_mssql

        return read_mssql(info, ns, name, order_by_key)
    return _read_postgres(info, ns, name, order_by_key)


def _polars() -> Any:
    try:
        import polars as pl
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError("read_table needs polars: pip install 'dapframe[frames]'") from None
    return pl


_DECIMAL = re.compile(r"^(?:numeric|DECIMAL)\((\d+),\s*(\d+)\)$")


def _finish(table: pa.Table, specs: list[tuple[str, str, list[str] | None]]) -> pl.DataFrame:
    """Arrow -> Polars with the common types; ``specs``: (column, type text, enum labels)."""
    pl = _polars()
    df = pl.from_arrow(table)
    exprs = []
    for name, typ, labels in specs:
        col = pl.col(name)
        dtype = df.schema[name]
        if labels is not None and not typ.endswith("[]"):
            exprs.append(col.cast(pl.String).cast(pl.Enum(labels)))
        elif isinstance(dtype, pl.Datetime):
            exprs.append(col.dt.replace_time_zone("UTC") if dtype.time_zone is None
                         else col.dt.convert_time_zone("UTC"))
        elif (m := _DECIMAL.match(typ)) is not None:
            exprs.append(col.cast(pl.Decimal(int(m.group(1)), int(m.group(2)))))
        elif isinstance(dtype, pl.List):
            exprs.append(col.cast(pl.List(pl.String)))
        else:
            exprs.append(col)
    return df.select(exprs)


def _read_duckdb(info: ConnectionInfo, ns: str, name: str, order: bool) -> pl.DataFrame:
    from dapframe.sync._duckdb import open_duckdb

    con = open_duckdb(info, read_only=True)
    try:
        cols = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? AND "
            "table_name = ? AND database_name = current_database() ORDER BY column_index",
            [ns, name]).fetchall()
        if not cols:
            raise DatabaseError(f"{ns}.{name} does not exist in {info.where}: run initdb first")
        select, specs = [], []
        for column, typ in cols:
            labels = None
            if typ.startswith("ENUM("):
                base = typ[:-2] if typ.endswith("[]") else typ
                labels = list(con.execute(f"SELECT enum_range(NULL::{base})").fetchall()[0][0])
            if typ in ("UUID", "JSON"):
                select.append(f"CAST({qi(column)} AS VARCHAR) AS {qi(column)}")
            elif typ.endswith("[]"):
                select.append(f"CAST({qi(column)} AS VARCHAR[]) AS {qi(column)}")
            else:
                select.append(qi(column))
            specs.append((column, typ, labels))
        order_sql = f" ORDER BY {qi(cols[0][0])}" if order else ""
        arrow = con.sql(f"SELECT {', '.join(select)} FROM {qi(ns)}.{qi(name)}{order_sql}"
                        ).to_arrow_table()
    finally:
        con.close()
    return _finish(arrow, specs)


def _read_postgres(info: ConnectionInfo, ns: str, name: str, order: bool) -> pl.DataFrame:
    from dapframe.sync._postgres import PostgresSession

    try:
        import connectorx as cx
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError("PostgreSQL needs the postgresql extra: pip install "
                          "'dapframe[postgresql]'") from None
    session = PostgresSession(info)
    try:
        columns = session._columns(ns, name)
        if not columns:
            raise DatabaseError(f"{ns}.{name} does not exist in {info.where}: run initdb first")
        select, specs = [], []
        for column, have in columns.items():
            labels = session._enum_labels(*have.enum) if have.enum else None
            if have.enum and have.is_array:
                select.append(f"{qi(column)}::text[] AS {qi(column)}")
            elif have.type == "inet":
                select.append(f"host({qi(column)}) AS {qi(column)}")
            elif have.type in ("jsonb", "json", "uuid"):
                select.append(f"{qi(column)}::text AS {qi(column)}")
            else:
                select.append(qi(column))
            specs.append((column, have.type + ("[]" if have.is_array else ""), labels))
    finally:
        session.close()
    first = next(iter(columns))
    sql = f"SELECT {', '.join(select)} FROM {qi(ns)}.{qi(name)}"
    if order:
        sql += f" ORDER BY {qi(first)}"
    uri = _connectorx_uri(info)
    try:
        arrow = cx.read_sql(uri, sql, return_type="arrow")
    except Exception as exc:
        raise DatabaseError(f"{ns}.{name}: reading from {info.where} failed: "
                            f"{str(exc).splitlines()[0][:300]}") from None
    return _finish(arrow, specs)


def _connectorx_uri(info: ConnectionInfo) -> str:
    # connectorx takes libpq's URI but not every parameter: keep sslmode only.
    from dataclasses import replace

    params = {k: v for k, v in info.params.items() if k == "sslmode"}
    return replace(info, params=params).libpq_uri()
