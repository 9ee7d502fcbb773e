"""Write a query result to one file, atomically (temp file in the same folder, then rename)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dapframe.errors import UsageError

if TYPE_CHECKING:
    from dapframe.result import QueryResult

__all__ = ["EXPORT_FORMATS", "consolidate", "write"]

EXPORT_FORMATS: tuple[str, ...] = ("parquet", "csv", "tsv", "jsonl")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it into place only if the block succeeds.

    A failure (or a crash) never leaves a partial file under the final name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def consolidate(result: QueryResult, path: Path, *, naming: str = "plain") -> Path:
    """Write every part into one typed Parquet file (zstd), streaming batch by batch."""
    import pyarrow.parquet as pq

    from dapframe.export._utf8 import checked_batches

    reader = result.to_arrow(naming=naming)
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, reader.schema, compression="zstd") as writer:
            for batch in checked_batches(reader, result.spec.name):
                writer.write_batch(batch)
    return path


def write(result: QueryResult, path: Path, *, format: str = "parquet",
          naming: str = "plain") -> Path:
    """Write the typed rows of ``result`` to ``path`` in ``format``.

    parquet keeps every type (structs, lists; enums as strings with their dictionary).
    csv and tsv follow Polars' conventions (RFC 4180 quoting; TSV is the same with tabs),
    with JSON objects and arrays written as JSON text and timestamps in ISO 8601 with ``Z``.
    jsonl writes one JSON object per row with nested objects kept.

    Raises
    ------
    UsageError
        For an unknown format or an output folder that cannot be written.
    """
    if format not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {format!r}: choose one of "
                         f"{', '.join(EXPORT_FORMATS)}")
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output folder {str(folder)!r}: {exc.strerror}; "
                         "choose another path") from None
    if not os.access(folder, os.W_OK):
        raise UsageError(f"output folder {str(folder)!r} is not writable: choose another path")
    if format == "parquet":
        return consolidate(result, path, naming=naming)
    from dapframe.frames._polars import import_polars

    pl = import_polars()
    lf = result.scan(naming=naming)
    with atomic_path(path) as tmp:
        if format == "jsonl":
            lf.sink_ndjson(tmp)
        else:
            schema = lf.collect_schema()
            lf = lf.with_columns([_as_json_text(pl, n, schema[n]) for n in schema
                                  if isinstance(schema[n], pl.Struct | pl.List)])
            lf.sink_csv(tmp, separator="\t" if format == "tsv" else ",",
                        datetime_format="%Y-%m-%dT%H:%M:%S%.6fZ")
    return path


def _as_json_text(pl: Any, name: str, dtype: Any) -> Any:
    """A Polars expression turning a struct or list column into JSON text (nulls stay null)."""
    col = pl.col(name)
    if isinstance(dtype, pl.Struct):
        text = col.struct.json_encode()
    else:
        # Polars encodes structs only: wrap the list in one and strip the wrapper again.
        text = (pl.struct(col.alias("v")).struct.json_encode()
                .str.strip_prefix('{"v":').str.strip_suffix("}"))
    return pl.when(col.is_null()).then(None).otherwise(text).alias(name)
