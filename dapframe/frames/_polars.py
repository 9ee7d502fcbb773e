"""Query results as Polars LazyFrames, typed from the table schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dapframe.frames._read import polars_schema

if TYPE_CHECKING:
    import polars as pl

    from dapframe.result import QueryResult
    from dapframe.schema import TableSchema

__all__ = ["apply_changes", "import_polars", "read_parquet_part", "scan"]


def import_polars() -> Any:
    """Import polars, or say which extra installs it."""
    try:
        import polars
    except ImportError:
        raise ImportError("polars is needed for this: pip install 'dapframe[frames]'") from None
    return polars


def _parquet_parts(result: QueryResult) -> bool:
    return result.format == "parquet" and all(p.name.endswith(".parquet") for p in result.files)


def scan(result: QueryResult, *, naming: str = "plain") -> pl.LazyFrame:
    """A LazyFrame over a result's parts, with the canonical schema-derived dtypes.

    Parquet parts are scanned natively (projection and predicate pushdown, parallel decode);
    the text formats stream through :func:`dapframe.frames.read_batches` as a Polars IO
    source, so nothing is read before ``collect()`` and memory stays bounded when streaming.
    """
    pl = import_polars()
    target = polars_schema(result.schema, incremental=result.incremental, naming=naming)
    if _parquet_parts(result) and result.files:
        return _scan_parquet(result.files, result.schema, target,
                             incremental=result.incremental, naming=naming)

    def source(with_columns: list[str] | None, predicate: Any, n_rows: int | None,
               batch_size: int | None) -> Iterator[Any]:
        reader = result.to_arrow(naming=naming, batch_size=batch_size or 65_536)
        left = n_rows
        for batch in reader:
            df = pl.from_arrow(batch).cast(target)  # enums: String -> pl.Enum
            if with_columns is not None:
                df = df.select(with_columns)
            if predicate is not None:
                df = df.filter(predicate)
            if left is not None:
                df = df.head(left)
                left -= df.height
            yield df
            if left is not None and left <= 0:
                break

    return pl.io.plugins.register_io_source(
        source, schema=target, explain_name="dapframe", explain_detail=result.spec.name)


def read_parquet_part(path: Path, schema: TableSchema, *, incremental: bool,
                      naming: str = "plain") -> pl.DataFrame:
    """Read one parquet part eagerly, with the same dtypes as :func:`scan` gives."""
    target = polars_schema(schema, incremental=incremental, naming=naming)
    return _scan_parquet([path], schema, target, incremental=incremental, naming=naming).collect()


def _scan_parquet(files: list[Path], schema: TableSchema, target: dict[str, Any], *,
                  incremental: bool, naming: str) -> pl.LazyFrame:
    pl = import_polars()
    # What the parts hold: flat dotted labels; JSON objects/arrays and enums as text.
    source: dict[str, Any] = {"meta.ts": target["meta.ts"]}
    if incremental:
        source["meta.action"] = pl.String
    exprs = [pl.col("meta.ts")]
    if incremental:
        exprs.append(pl.col("meta.action").cast(target["meta.action"]))
    for col in schema.columns:
        out = col.name if naming == "plain" else col.label
        dtype = target[out]
        if col.kind in ("struct", "array"):
            source[col.label] = pl.String
            exprs.append(pl.col(col.label).str.json_decode(dtype).alias(out))
        elif col.kind == "enum":
            source[col.label] = pl.String
            exprs.append(pl.col(col.label).cast(dtype).alias(out))
        else:
            source[col.label] = dtype
            exprs.append(pl.col(col.label).alias(out))
    lf = pl.scan_parquet([str(Path(p)) for p in files], schema=source,
                         missing_columns="insert", extra_columns="ignore")
    return lf.select(exprs)


def apply_changes(base: pl.LazyFrame | pl.DataFrame, changes: pl.LazyFrame | pl.DataFrame, *,
                  key: str | list[str], ts: str = "meta.ts",
                  action: str = "meta.action") -> pl.LazyFrame:
    """Apply an incremental change set to a base frame, lazily.

    ``snapshot(t0)`` with ``incremental(t0, t1)`` applied equals ``snapshot(t1)``: rows of the
    base whose key changed are replaced by the last version in the change set (``U``) or
    removed (``D``); other rows are kept. The result has the base's columns plus any the
    changes add (a newer schema version), without ``meta.action``.

    Repeated keys (canvas_logs.web_logs delivers some rows twice): both the base and the
    changes are reduced to one row per key, the one with the latest ``meta.ts`` (repeats are
    identical rows upstream, so nothing is lost).

    Parameters
    ----------
    base : LazyFrame or DataFrame
        The table as of ``t0`` (e.g. ``snapshot(...).scan()``), with a ``meta.ts`` column.
    changes : LazyFrame or DataFrame
        The change set (e.g. ``incremental(...).scan()``), with ``meta.ts`` and ``meta.action``.
    key : str or list of str
        Primary-key column(s), e.g. ``result.key``.
    """
    pl = import_polars()
    keys = [key] if isinstance(key, str) else list(key)
    base_lf = base.lazy()
    changes_lf = changes.lazy()
    latest = changes_lf.sort(ts, maintain_order=True).unique(subset=keys, keep="last",
                                                             maintain_order=True)
    kept = (base_lf.sort(ts, maintain_order=True)
            .unique(subset=keys, keep="last", maintain_order=True)
            .join(latest.select(keys), on=keys, how="anti"))
    upserts = latest.filter(pl.col(action) == "U").drop(action)
    return pl.concat([kept, upserts], how="diagonal_relaxed")
