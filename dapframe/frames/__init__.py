"""Typed frames from DAP query results: Arrow record batches, Polars and DuckDB.

:func:`read_batches` (pyarrow only) decodes downloaded parts of any transfer format into
record batches of the canonical schema; :func:`polars_schema` and :func:`duckdb_types` give
the matching Polars dtypes and DuckDB types. :func:`scan`, :func:`to_duckdb` and
:func:`apply_changes` build on them; Polars and DuckDB are imported only when called.
"""

from __future__ import annotations

from dapframe.frames._duckdb import to_duckdb
from dapframe.frames._polars import apply_changes, read_parquet_part, scan
from dapframe.frames._read import FORMATS, duckdb_types, polars_schema, read_batches

__all__ = [
    "FORMATS",
    "apply_changes",
    "duckdb_types",
    "polars_schema",
    "read_batches",
    "read_parquet_part",
    "scan",
    "to_duckdb",
]
