"""Query results as DuckDB views, typed from the table schema."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dapframe.frames._read import duckdb_types

if TYPE_CHECKING:
    import duckdb

    from dapframe.result import QueryResult

__all__ = ["import_duckdb", "quote_ident", "quote_literal", "to_duckdb"]


def import_duckdb() -> Any:
    """Import duckdb, or say which extra installs it."""
    try:
        import duckdb
    except ImportError:
        raise ImportError("duckdb is needed for this: pip install 'dapframe[frames]'") from None
    return duckdb


def quote_ident(name: str) -> str:
    """A DuckDB/SQL identifier, double-quoted with inner quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A SQL string literal, single-quoted with inner quotes doubled."""
    return "'" + text.replace("'", "''") + "'"


def to_duckdb(result: QueryResult, *, con: duckdb.DuckDBPyConnection | None = None,
              name: str, naming: str = "plain") -> duckdb.DuckDBPyRelation:
    """Create or replace a view named ``name`` over the result's parts.

    Parquet parts are read in place by DuckDB (no copy). Text formats (csv, tsv, jsonl) are
    first decoded once into a typed Parquet file beside the parts (``<job dir>/<table>.parquet``,
    streamed, written atomically), and the view reads that: DuckDB's CSV reader cannot undo
    the TSV escaping of the API, and this keeps one set of types for every format.
    Enum columns become DuckDB ``ENUM`` types with the schema's value list.
    """
    duckdb = import_duckdb()
    con = con if con is not None else duckdb.default_connection()
    types = duckdb_types(result.schema, incremental=result.incremental, naming=naming)
    schema = result.schema
    parquet_parts = result.format == "parquet" and all(
        p.name.endswith(".parquet") for p in result.files)
    if parquet_parts:
        files = [str(p) for p in result.files]
        select = ['CAST("meta.ts" AS TIMESTAMPTZ) AS "meta.ts"']
        if result.incremental:
            select.append(f'CAST("meta.action" AS {types["meta.action"]}) AS "meta.action"')
        for col in schema.columns:
            out = col.name if naming == "plain" else col.label
            src = quote_ident(col.label)
            if col.kind in ("struct", "array"):
                expr = f"from_json({src}, {quote_literal(_json_structure(col))})"
            else:
                expr = f"CAST({src} AS {types[out]})"
            select.append(f"{expr} AS {quote_ident(out)}")
        source = f"read_parquet([{', '.join(quote_literal(f) for f in files)}], union_by_name=true)"
    else:
        from dapframe.export import consolidate

        target = Path(result.files[0]).parent / f"{result.spec.table}.parquet" if result.files \
            else None
        if target is None:
            raise ValueError("the result has no parts")
        consolidate(result, target, naming=naming)
        select = []
        for out, sql_type in types.items():
            if sql_type.startswith("ENUM("):
                select.append(f"CAST({quote_ident(out)} AS {sql_type}) AS {quote_ident(out)}")
            else:
                select.append(quote_ident(out))
        source = f"read_parquet({quote_literal(str(target))})"
    sql = f"CREATE OR REPLACE VIEW {quote_ident(name)} AS SELECT {', '.join(select)} FROM {source}"
    con.execute(sql)
    return con.table(quote_ident(name))


def _json_structure(col: Any) -> str:
    """DuckDB ``from_json`` structure text for a struct or array column."""
    if col.kind == "struct":
        import json

        return json.dumps({f: "VARCHAR" for f in col.fields})
    return '["VARCHAR"]'
