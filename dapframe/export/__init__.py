"""Export query results to files: Parquet, CSV, TSV or JSON Lines, typed and atomic."""

from dapframe.export._write import EXPORT_FORMATS, consolidate, write

__all__ = ["EXPORT_FORMATS", "consolidate", "write"]
