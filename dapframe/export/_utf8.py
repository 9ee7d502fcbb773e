"""Refuse text that is not UTF-8 before it is stored (a Parquet file, a replica table).

Parquet parts and JSON Lines reach Arrow without any check of their strings' bytes: invalid
UTF-8 from the API would be written on as it came, into files no reader can open later, or
fail deep inside a database load with an unrelated message. One pass of Arrow's full
validation per batch finds it first and names the table and the column.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from dapframe.errors import DapError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["InvalidTextError", "checked_batches", "invalid_text_error"]


class InvalidTextError(DapError):
    """The API sent a string that is not valid UTF-8 (nothing was stored)."""


def invalid_text_error(table: str, column: str | None = None) -> InvalidTextError:
    """The one-line error for invalid UTF-8 in ``table`` (and ``column`` when known)."""
    where = f"{table}, column {column!r}" if column else table
    return InvalidTextError(
        f"the API sent text that is not valid UTF-8 in {where}; nothing was stored: re-run "
        "the query, and report it to Instructure support (with the job id) if it persists")


def checked_batches(batches: Iterable[pa.RecordBatch], table: str) -> Iterator[pa.RecordBatch]:
    """Yield ``batches`` unchanged; raise :class:`InvalidTextError` at the first bad string.

    Also turns a decoder's own complaint about UTF-8 (CSV/TSV parts) into the same error.
    """
    import pyarrow as pa

    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except (DapError, pa.ArrowInvalid) as exc:
            if "utf8" in str(exc).lower().replace("-", ""):
                raise invalid_text_error(table, _column_named(str(exc))) from exc
            raise
        try:
            batch.validate(full=True)
        except pa.ArrowInvalid:
            raise invalid_text_error(table, _bad_column(batch)) from None
        yield batch


def _bad_column(batch: pa.RecordBatch) -> str | None:
    import pyarrow as pa

    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            return name
    return None


def _column_named(message: str) -> str | None:
    # pyarrow's CSV reader says "In column 'value.name': ...".
    _head, sep, rest = message.partition("In column '")
    return rest.partition("'")[0] if sep else None
