"""Decode downloaded DAP parts (jsonl, csv, tsv, parquet) into canonical Arrow record batches.

:func:`read_batches` streams the parts of one query result, one part at a time and one block of
a part at a time, and yields record batches that all have exactly
:meth:`TableSchema.arrow_schema <dapframe.schema.TableSchema.arrow_schema>`, whatever the
transfer format. Everything is vectorised: Arrow's CSV and JSON readers do the parsing with
explicit column types, and the few fix-ups the formats need run as Arrow compute kernels on
whole columns:

- tsv: PostgreSQL ``COPY`` escapes are undone only in string columns, and only in the rows
  that contain a backslash (``\\\\`` is first swapped for a Unicode noncharacter so that the
  other escapes cannot be confused with an escaped backslash);
- JSON text (struct and array columns of csv/tsv/parquet) is decoded by Arrow's JSON reader
  from ``{"v":<text>}`` lines built with one element-wise join;
- expanded-mode columns (``value.settings.hide_final_grade``) are folded back into the struct;
- ``time`` values are parsed through a timestamp cast (Arrow has no string-to-time cast).

Decisions worth knowing:

- A struct whose fields are all null (``{}``, or all expanded columns null) is null: this is
  what the API writes (``\\N`` rather than ``{}``), and makes every format agree.
- Struct members and array items that are not JSON strings are kept as compact JSON text
  (``1``, ``true``); such data takes a slower per-row Python path (still streaming).
- jsonl: a non-finite float cannot be a JSON number, so it arrives as a null where the other
  formats give NaN/inf.
- ``meta.action`` that is absent or null in an incremental part reads as ``"U"``; value
  columns of ``"D"`` rows are always null.
- Columns absent from a part (older schema version) are null; columns the schema does not know
  are dropped with a debug log line.
- Text parts may be gzip files (detected by their magic bytes, whatever the suffix) or already
  decompressed; gzip is decompressed as a stream, never to disk.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import reduce
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as _compute
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from dapframe.errors import DapError, UsageError
from dapframe.schema import ColumnSchema, TableSchema

# pyarrow-stubs reject valid calls (plain str literals where they want Scalars), so compute is
# typed loosely, as in dapframe.emulator._encode.
pc: Any = _compute

__all__ = ["FORMATS", "duckdb_types", "polars_schema", "read_batches"]

log = logging.getLogger("dapframe.frames")

#: Transfer formats :func:`read_batches` understands.
FORMATS: Final = ("jsonl", "csv", "tsv", "parquet")

_GZIP_MAGIC: Final = b"\x1f\x8b"
# Bytes per block of the streaming text readers: big enough that per-batch work (one kernel
# call per column) is amortised, small enough to keep memory flat.
_BLOCK_BYTES: Final = 4 << 20
# A record longer than a block makes Arrow's readers fail ("straddling object"): the part is
# read again with the next, bigger block size, skipping the rows already delivered.
_BIGGER_BLOCKS: Final = (64 << 20, 1 << 30)
# Unicode noncharacters that stand in for an escaped backslash while tsv escapes are undone;
# the first one that does not occur in the column is used.
_PLACEHOLDERS: Final = ("\uffff", "\ufffe", "\U0010ffff", "\U0010fffe", "\ufdd0")
_TSV_ESCAPES: Final = (("\\t", "\t"), ("\\n", "\n"), ("\\r", "\r"), ("\\b", "\b"),
                       ("\\f", "\f"), ("\\v", "\v"), ("\\0", "\0"))
_NULL_STRING: Final = pa.scalar(None, pa.string())


@dataclass(frozen=True)
class _Target:
    """One output column: where it is in the parts and what it becomes."""

    label: str  # dotted label in the parts: meta.ts, meta.action, key.id, value.name
    name: str  # output name (per naming)
    type: pa.DataType  # canonical Arrow type
    column: ColumnSchema | None  # None for meta columns

    @property
    def is_value(self) -> bool:
        return self.column is not None and self.column.part == "value"


@dataclass(frozen=True)
class _Plan:
    schema: pa.Schema  # the output schema
    targets: tuple[_Target, ...]
    incremental: bool

    def by_label(self) -> dict[str, _Target]:
        return {t.label: t for t in self.targets}


def _plan(schema: TableSchema, incremental: bool, naming: str) -> _Plan:
    out = schema.arrow_schema(incremental=incremental, naming=naming)
    columns: list[ColumnSchema | None] = [None, None] if incremental else [None]
    columns += list(schema.columns)
    labels = ["meta.ts", "meta.action"] if incremental else ["meta.ts"]
    labels += [c.label for c in schema.columns]
    targets = tuple(_Target(label, f.name, f.type, col)
                    for label, f, col in zip(labels, out, columns, strict=True))
    return _Plan(out, targets, incremental)


# ------------------------------------------------------------------------------------------
# public entry point


def read_batches(files: Sequence[str | os.PathLike[str]], fmt: str, schema: TableSchema, *,
                 incremental: bool, naming: str = "plain",
                 batch_size: int = 65_536) -> pa.RecordBatchReader:
    """Stream the rows of downloaded parts as canonical Arrow record batches.

    Parameters
    ----------
    files : sequence of path
        The parts of one result, in order. Text parts may be gzip files or decompressed
        (``.csv``, ``.tsv``, ``.json``/``.jsonl``); gzip is recognised by its magic bytes.
    fmt : {"jsonl", "csv", "tsv", "parquet"}
        The transfer format of the parts.
    schema : TableSchema
        The table schema the rows are typed by.
    incremental : bool
        Whether the parts come from an incremental query (``meta.action`` column).
    naming : {"plain", "dotted"}
        Output column names; see :meth:`TableSchema.arrow_schema`.
    batch_size : int
        Maximum rows per batch.

    Returns
    -------
    pyarrow.RecordBatchReader
        Lazily reads one part at a time; every batch has exactly
        ``schema.arrow_schema(incremental=incremental, naming=naming)``.

    Raises
    ------
    UsageError
        Unknown format or naming, or ``batch_size`` below 1 (raised at once).
    DapError
        While iterating: a part is malformed (the message names the part and the column).

    Examples
    --------
    >>> reader = read_batches(result.files, "csv", result.schema, incremental=False)
    ... # doctest: +SKIP
    >>> table = reader.read_all()  # doctest: +SKIP
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
    plan = _plan(schema, incremental, naming)
    paths = [Path(f) for f in files]
    return pa.RecordBatchReader.from_batches(
        plan.schema, _batches(paths, fmt, plan, batch_size, f"{schema.namespace}.{schema.table}"))


def _batches(paths: list[Path], fmt: str, plan: _Plan, batch_size: int, table: str
             ) -> Iterator[pa.RecordBatch]:
    for path in paths:
        try:
            for batch in _read_part(path, fmt, plan, batch_size):
                # Readers cut by bytes; callers asked for at most batch_size rows.
                for start in range(0, batch.num_rows, batch_size):
                    yield batch.slice(start, batch_size)
        except (DapError, FileNotFoundError, PermissionError, IsADirectoryError):
            raise
        except (pa.ArrowException, OSError, EOFError, ValueError, TypeError) as exc:
            # Malformed text, a value that does not fit its column, a truncated gzip file...
            raise DapError(f"{table}: cannot decode {fmt} part {path.name}: {exc}") from exc


def _read_part(path: Path, fmt: str, plan: _Plan, batch_size: int) -> Iterator[pa.RecordBatch]:
    if fmt == "parquet":
        return _read_parquet(path, plan, batch_size)
    if fmt == "jsonl":
        return _read_jsonl(path, plan, batch_size)
    return _read_delimited(path, fmt, plan)


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _open_text(path: Path) -> pa.NativeFile:
    """A byte stream of the part's text; gzip is inflated on the fly by Arrow (no GIL)."""
    raw = pa.OSFile(str(path), "rb")
    return pa.CompressedInputStream(raw, "gzip") if _is_gzip(path) else raw


def _nulls(rows: int, typ: pa.DataType) -> pa.Array:
    return pa.nulls(rows, typ)  # type: ignore[call-overload]  # stubs: DataType overloads


class _BadPart(ValueError):
    """A value in a part does not match its column (wrapped into DapError with the part)."""


# ------------------------------------------------------------------------------------------
# assembling output batches


def _finish(raw: Mapping[str, pa.Array], rows: int, plan: _Plan) -> pa.RecordBatch:
    """Build one output batch from the raw columns found in a part (by dotted label)."""
    deleted = None
    arrays: list[pa.Array] = []
    for target in plan.targets:
        arr = raw.get(target.label)
        if target.label == "meta.action":
            arr = pc.fill_null(_coerce(arr, target), "U") if arr is not None \
                else pa.array(["U"] * rows, pa.string())
            hard = pc.equal(arr, "D")
            if pc.any(hard).as_py():
                deleted = hard
        elif arr is None:
            arr = _nulls(rows, target.type)
        else:
            arr = _coerce(arr, target)
        if deleted is not None and target.is_value and arr.null_count < rows \
                and pc.any(pc.and_(deleted, pc.is_valid(arr))).as_py():
            arr = pc.if_else(deleted, pa.scalar(None, target.type), arr)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=plan.schema)


def _coerce(arr: pa.Array | pa.ChunkedArray, target: _Target) -> pa.Array:
    """Convert one raw column to its canonical type."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if isinstance(arr, pa.DictionaryArray):
        arr = arr.dictionary_decode()
    typ = target.type
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    try:
        if pa.types.is_struct(typ) or pa.types.is_list(typ):
            if pa.types.is_string(arr.type):
                out = _decode_json_text(arr, typ)
            elif pa.types.is_null(arr.type):
                out = _nulls(len(arr), typ)
            else:
                out = _nested_to_text(arr, typ)
            return _null_empty_structs(out)
        if arr.type == typ:
            return arr
        if pa.types.is_time(typ) and pa.types.is_string(arr.type):
            return _parse_time(arr, typ)
        return pc.cast(arr, typ)
    except _BadPart as exc:
        raise _BadPart(f"column {target.label!r}: {exc}") from None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise _BadPart(f"column {target.label!r}: cannot read {arr.type} as "
                       f"{typ}: {exc}") from None


def _null_empty_structs(arr: pa.Array) -> pa.Array:
    """A struct whose fields are all null becomes null (the API writes ``\\N``, not ``{}``)."""
    if not isinstance(arr, pa.StructArray) or arr.type.num_fields == 0 or len(arr) == 0:
        return arr
    children = arr.flatten()  # parent nulls are merged into the children
    valid = reduce(pc.or_, [pc.is_valid(c) for c in children])
    if pc.all(valid).as_py():
        return arr
    return pa.StructArray.from_arrays(children, fields=list(arr.type), mask=pc.invert(valid))


def _text_buffer(lines: pa.Array) -> pa.Buffer:
    """The concatenated bytes of a null-free string array, without copying."""
    if len(lines) == 0:
        return pa.py_buffer(b"")
    value_offsets = lines.buffers()[1]
    data = lines.buffers()[2]
    assert value_offsets is not None  # string arrays always have offsets
    off = np.frombuffer(memoryview(value_offsets), dtype=np.int32)
    start, end = int(off[lines.offset]), int(off[lines.offset + len(lines)])
    if data is None or start == end:
        return pa.py_buffer(b"")
    return data.slice(start, end - start)


def _decode_json_text(arr: pa.Array, typ: pa.DataType) -> pa.Array:
    """Decode JSON text (objects or arrays) into ``typ`` with Arrow's JSON reader."""
    text = pc.if_else(pc.equal(arr, ""), _NULL_STRING, arr)  # empty text is no JSON: null
    if text.null_count == len(text):
        return _nulls(len(text), typ)
    lines = pc.binary_join_element_wise('{"v":', pc.fill_null(text, "null"), "}\n", "")
    longest = pc.max(pc.binary_length(lines)).as_py() or 0
    # Compact JSON has no raw line breaks; pretty-printed text needs the slower mode.
    multiline = bool(pc.any(pc.match_substring_regex(text, "[\r\n]")).as_py())
    try:
        table = pa_json.read_json(
            pa.BufferReader(_text_buffer(lines)),  # type: ignore[arg-type]
            read_options=pa_json.ReadOptions(block_size=max(1 << 20, 2 * longest + 64)),
            parse_options=pa_json.ParseOptions(explicit_schema=pa.schema([("v", typ)]),
                                               newlines_in_values=multiline,
                                               unexpected_field_behavior="ignore"))
        if table.num_rows == len(arr):
            return table.column(0).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # non-string members/items, or malformed text: the exact path decides
    return _json_python(text.to_pylist(), typ)


def _json_python(texts: Sequence[str | None], typ: pa.DataType) -> pa.Array:
    """Per-row fallback of :func:`_decode_json_text`: non-string members become JSON text."""
    values: list[Any] = []
    for text in texts:
        if text is None:
            values.append(None)
            continue
        try:
            obj = json.loads(text)
        except ValueError:
            raise _BadPart(f"invalid JSON text {text[:80]!r}") from None
        values.append(_nested_value(obj, typ))
    return pa.array(values, typ)


def _as_json_text(value: Any) -> str | None:
    """A JSON member as text: strings as they are, anything else as compact JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_number)


def _number(value: Any) -> float:
    """``json.dumps`` fallback for the Decimals of ``json.loads(parse_float=Decimal)``."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _nested_value(obj: Any, typ: pa.DataType) -> Any:
    """A decoded JSON value shaped for a struct<string...> or list<string> column."""
    if obj is None:
        return None
    if pa.types.is_struct(typ):
        if not isinstance(obj, dict):
            raise _BadPart(f"expected a JSON object, got {json.dumps(obj)[:80]}")
        return {f.name: _as_json_text(obj.get(f.name)) for f in typ}
    if not isinstance(obj, list):
        raise _BadPart(f"expected a JSON array, got {json.dumps(obj)[:80]}")
    return [_as_json_text(item) for item in obj]


def _nested_to_text(arr: pa.Array, typ: pa.DataType) -> pa.Array:
    """Arrow structs/lists (e.g. nested Parquet) to struct<string...>/list<string>."""
    if isinstance(arr, pa.StructArray) and pa.types.is_struct(typ) and all(
            pa.types.is_string(f.type) or pa.types.is_null(f.type) for f in arr.type):
        names = {f.name for f in arr.type}
        children = [pc.cast(arr.field(f.name), pa.string()) if f.name in names
                    else _nulls(len(arr), pa.string()) for f in typ]
        return pa.StructArray.from_arrays(children, fields=list(typ), mask=pc.is_null(arr))
    if pa.types.is_list(typ) and (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)) \
            and pa.types.is_string(arr.type.value_type):
        return pc.cast(arr, typ)
    # Anything else (non-string members): go through Python, members become JSON text.
    return pa.array([_nested_value(v, typ) for v in arr.to_pylist()], typ)


def _parse_time(arr: pa.Array, typ: pa.DataType) -> pa.Array:
    """``hh:mm:ss[.ffffff][Z|±hh:mm]`` to time64 (offsets are converted to UTC)."""
    text = pc.replace_substring_regex(pc.utf8_trim_whitespace(arr), "[Zz]$", "")
    offset = pc.match_substring_regex(text, r"[+-]\d\d:?\d\d$")
    stamps = pc.binary_join_element_wise("1970-01-01T", text, "")
    if pc.any(offset).as_py():
        stamps = pc.if_else(pc.fill_null(offset, True), stamps,
                            pc.binary_join_element_wise(stamps, "+00:00", ""))
        parsed = pc.cast(stamps, pa.timestamp("us", tz="UTC"))
    else:
        parsed = pc.cast(stamps, pa.timestamp("us"))
    return pc.cast(parsed, typ)


# ------------------------------------------------------------------------------------------
# csv and tsv


def _read_header(path: Path, fmt: str) -> list[str]:
    """The labels of the first line (read by itself: the parser needs them up front)."""
    stream = _open_text(path)
    try:
        head = b""
        while b"\n" not in head:
            chunk = stream.read(1 << 16)
            if not chunk:
                break
            head += chunk
    finally:
        stream.close()
    line = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8-sig")
    if not line:
        return []
    if fmt == "tsv":
        return [_unescape_label(label) for label in line.split("\t")]
    return next(csv.reader([line]))


def _unescape_label(label: str) -> str:
    arr = _tsv_unescape(pa.array([label], pa.string()))
    return str(arr[0].as_py())


def _read_delimited(path: Path, fmt: str, plan: _Plan) -> Iterator[pa.RecordBatch]:
    header = _read_header(path, fmt)
    if not header:
        return
    targets = plan.by_label()
    structs = {t.label: t for t in plan.targets if pa.types.is_struct(t.type)}
    types: dict[str, pa.DataType] = {}
    expanded: dict[str, list[tuple[str, str]]] = {}  # struct label -> [(field, header label)]
    unknown = []
    for label in header:
        target = targets.get(label)
        if target is not None:
            types[label] = _text_read_type(target)
            continue
        # Expanded mode: value.<struct>.<field> (a field name may itself hold dots).
        parent = next((p for p in structs if label.startswith(p + ".")), None)
        field = label[len(parent) + 1:] if parent is not None else ""
        column = structs[parent].column if parent is not None else None
        if parent is not None and column is not None and field in column.fields:
            types[label] = pa.string()
            expanded.setdefault(parent, []).append((field, label))
        else:
            unknown.append(label)
    if unknown:
        log.debug("%s: dropping columns the schema does not know: %s", path.name, unknown)
    tsv = fmt == "tsv"
    parse = pa_csv.ParseOptions(
        delimiter="\t" if tsv else ",",
        quote_char=False if tsv else '"',
        double_quote=not tsv,
        escape_char=False,
        # csv strings may hold raw line breaks inside quotes; tsv escapes them.
        newlines_in_values=not tsv,
    )
    convert = pa_csv.ConvertOptions(
        column_types=types,
        include_columns=list(types),
        null_values=["\\N"] if tsv else ["", "NULL"],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,  # csv: "" is the empty string, "NULL" the word
    )
    string_labels = [label for label, t in types.items() if pa.types.is_string(t)]
    done = 0
    for block in (_BLOCK_BYTES, *_BIGGER_BLOCKS):
        read = pa_csv.ReadOptions(block_size=block, skip_rows_after_names=done)
        try:
            reader = pa_csv.open_csv(_open_text(path),  # type: ignore[arg-type]
                                     read_options=read, parse_options=parse,
                                     convert_options=convert)
            for batch in reader:
                raw: dict[str, pa.Array] = dict(zip(batch.schema.names, batch.columns,
                                                    strict=True))
                if tsv:
                    for label in string_labels:
                        raw[label] = _tsv_unescape(raw[label])
                for parent, fields in expanded.items():
                    raw[parent] = _fold(raw, structs[parent].type, fields, batch.num_rows)
                yield _finish(raw, batch.num_rows, plan)
                done += batch.num_rows
            return
        except pa.ArrowInvalid as exc:
            if _straddling(exc) and block != _BIGGER_BLOCKS[-1]:
                log.debug("%s: a record exceeds %d bytes; reading on with bigger blocks",
                          path.name, block)
                continue
            # Arrow's CSV errors say "CSV column #3": name the column's label instead.
            def name_of(m: re.Match[str]) -> str:
                i = int(m.group(1))
                return f"column {header[i]!r}" if i < len(header) else m.group(0)

            raise _BadPart(re.sub(r"CSV column #(\d+)", name_of, str(exc))) from None


def _straddling(exc: Exception) -> bool:
    return "straddl" in str(exc)


def _text_read_type(target: _Target) -> pa.DataType:
    """What the csv/tsv parser should produce for a column (text where a fix-up follows)."""
    if target.label == "meta.action" or pa.types.is_struct(target.type) \
            or pa.types.is_list(target.type) or pa.types.is_time(target.type):
        return pa.string()
    return target.type


def _fold(raw: dict[str, pa.Array], typ: pa.DataType, fields: list[tuple[str, str]],
          rows: int) -> pa.Array:
    """Expanded-mode columns of one struct back into the struct (missing fields null)."""
    assert isinstance(typ, pa.StructType)
    found = {field: raw.pop(label) for field, label in fields}
    children = [found.get(f.name, _nulls(rows, pa.string())) for f in typ]
    return pa.StructArray.from_arrays(children, fields=list(typ))


def _tsv_unescape(arr: pa.Array) -> pa.Array:
    """Undo PostgreSQL ``COPY`` text escaping, only in rows that hold a backslash."""
    mask = pc.fill_null(pc.match_substring(arr, "\\"), False)
    hits = pc.sum(mask).as_py() or 0
    if hits == 0:
        return arr
    sub = arr if hits == len(arr) - arr.null_count else pc.filter(arr, mask)
    placeholder = next((p for p in _PLACEHOLDERS
                        if not pc.any(pc.match_substring(sub, p)).as_py()), None)
    if placeholder is None:  # pragma: no cover - every noncharacter present: exact path
        fixed = pa.array([_tsv_unescape_one(v) for v in sub.to_pylist()], pa.string())
    else:
        fixed = pc.replace_substring(sub, "\\\\", placeholder)
        for escape, char in _TSV_ESCAPES:
            fixed = pc.replace_substring(fixed, escape, char)
        # PostgreSQL reads any other backslashed character as itself.
        fixed = pc.replace_substring_regex(fixed, r"\\(.)", r"\1")
        fixed = pc.replace_substring(fixed, placeholder, "\\")
    if sub is arr:
        return fixed
    return pc.replace_with_mask(arr, mask, fixed)


def _tsv_unescape_one(text: str | None) -> str | None:  # pragma: no cover - see caller
    if text is None:
        return None
    table = {"t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(table.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# ------------------------------------------------------------------------------------------
# jsonl


def _json_read_type(target: _Target) -> pa.DataType:
    """What Arrow's JSON reader should produce (it cannot parse dates or times from text)."""
    if pa.types.is_date(target.type) or pa.types.is_time(target.type):
        return pa.string()
    return target.type


def _jsonl_schema(plan: _Plan) -> pa.Schema:
    groups: dict[str, list[pa.Field]] = {"meta": [], "key": [], "value": []}
    for target in plan.targets:
        group, _, name = target.label.partition(".")
        groups[group].append(pa.field(name, _json_read_type(target)))
    return pa.schema([pa.field(g, pa.struct(fields)) for g, fields in groups.items()])


def _flatten_groups(batch: pa.RecordBatch | pa.Table) -> dict[str, pa.Array]:
    raw: dict[str, pa.Array] = {}
    for group in batch.schema.names:
        column = batch.column(group)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if not isinstance(column, pa.StructArray):
            continue
        for field, child in zip(column.type, column.flatten(), strict=True):
            raw[f"{group}.{field.name}"] = child
    return raw


def _read_jsonl(path: Path, plan: _Plan, batch_size: int) -> Iterator[pa.RecordBatch]:
    parse = pa_json.ParseOptions(explicit_schema=_jsonl_schema(plan),
                                 unexpected_field_behavior="ignore")
    done = 0
    for block in (_BLOCK_BYTES, *_BIGGER_BLOCKS):
        try:
            reader = pa_json.open_json(_open_text(path),  # type: ignore[arg-type]
                                       read_options=pa_json.ReadOptions(block_size=block),
                                       parse_options=parse)
            skip = done  # rows delivered by an earlier attempt
            for batch in reader:
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                batch, skip = batch.slice(skip), 0
                out = _finish(_flatten_groups(batch), batch.num_rows, plan)
                try:
                    # Arrow's JSON reader passes string bytes on unchecked; Polars would
                    # panic on them later.
                    out.validate(full=True)
                except pa.ArrowInvalid:
                    raise _BadPart("text that is not valid UTF-8: re-run the query, and "
                                   "report it to Instructure support if it persists") from None
                yield out
                done += batch.num_rows
            return
        except pa.ArrowInvalid as exc:
            if _straddling(exc) and block != _BIGGER_BLOCKS[-1]:
                log.debug("%s: a line exceeds %d bytes; reading on with bigger blocks",
                          path.name, block)
                continue
            # Non-string struct members or array items: finish this part on the exact
            # per-line path, skipping the rows already delivered.
            log.debug("%s: vectorised jsonl decoding stopped (%s); continuing per line",
                      path.name, exc)
            break
    yield from _read_jsonl_python(path, plan, batch_size, skip=done)


def _read_jsonl_python(path: Path, plan: _Plan, batch_size: int, *, skip: int
                       ) -> Iterator[pa.RecordBatch]:
    opener: Callable[..., Any] = gzip.open if _is_gzip(path) else open
    with opener(path, "rt", encoding="utf-8", newline="\n") as text:
        rows: list[dict[str, Any]] = []
        seen = 0
        for line in text:
            if not line.strip():
                continue
            seen += 1
            if seen <= skip:
                continue
            try:
                # Decimal keeps the exact digits of decimal columns.
                rows.append(json.loads(line, parse_float=Decimal))
            except ValueError:
                raise _BadPart(f"line {seen}: invalid JSON {line[:80]!r}") from None
            if len(rows) >= batch_size:
                yield _rows_batch(rows, plan)
                rows = []
        if rows:
            yield _rows_batch(rows, plan)


def _rows_batch(rows: list[dict[str, Any]], plan: _Plan) -> pa.RecordBatch:
    raw: dict[str, pa.Array] = {}
    for target in plan.targets:
        group, _, name = target.label.partition(".")
        values = [(row.get(group) or {}).get(name) if isinstance(row, dict) else None
                  for row in rows]
        typ = target.type
        try:
            if pa.types.is_struct(typ) or pa.types.is_list(typ):
                raw[target.label] = pa.array([_nested_value(v, typ) for v in values], typ)
            elif pa.types.is_temporal(typ) or pa.types.is_decimal(typ):
                # Exact text through Arrow's own casts (decimals keep their digits).
                raw[target.label] = pa.array(
                    [None if v is None else v if isinstance(v, str) else str(v)
                     for v in values], pa.string())
            elif pa.types.is_floating(typ):
                raw[target.label] = pa.array(
                    [float(v) if isinstance(v, Decimal) else v for v in values], typ)
            else:
                raw[target.label] = pa.array(values, typ)
        except (_BadPart, pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise _BadPart(f"column {target.label!r}: {exc}") from None
    return _finish(raw, len(rows), plan)


# ------------------------------------------------------------------------------------------
# parquet


def _read_parquet(path: Path, plan: _Plan, batch_size: int) -> Iterator[pa.RecordBatch]:
    source: Any = str(path)
    if _is_gzip(path):  # a gzip-wrapped Parquet file needs random access: inflate in memory
        with gzip.open(path, "rb") as f:
            source = io.BytesIO(f.read())
    with pq.ParquetFile(source) as parquet:
        yield from _parquet_batches(path, parquet, plan, batch_size)


def _parquet_batches(path: Path, parquet: pq.ParquetFile, plan: _Plan, batch_size: int
                     ) -> Iterator[pa.RecordBatch]:
    names = parquet.schema_arrow.names
    targets = plan.by_label()
    nested = [n for n in names if n in ("meta", "key", "value")
              and pa.types.is_struct(parquet.schema_arrow.field(n).type)]
    if nested:  # meta/key/value as struct columns (not what DAP writes today, but cheap)
        columns = nested
    else:
        columns = [n for n in names if n in targets]
        unknown = [n for n in names if n not in targets and n != "meta.action"]
        if unknown:
            log.debug("%s: dropping columns the schema does not know: %s", path.name, unknown)
    for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
        raw = _flatten_groups(batch) if nested else dict(
            zip(batch.schema.names, batch.columns, strict=True))
        yield _finish(raw, batch.num_rows, plan)


# ------------------------------------------------------------------------------------------
# frame library types


def polars_schema(schema: TableSchema, *, incremental: bool,
                  naming: str = "plain") -> dict[str, Any]:
    """Polars dtypes of the canonical columns, with enums as ``pl.Enum``.

    Parameters
    ----------
    schema : TableSchema
        The table schema.
    incremental : bool
        Include ``meta.action`` (``pl.Enum(["U", "D"])``).
    naming : {"plain", "dotted"}
        Column names; see :meth:`TableSchema.arrow_schema`.

    Returns
    -------
    dict
        Column name -> Polars dtype, in column order.

    Raises
    ------
    ImportError
        Polars is not installed (it comes with the ``frames`` extra).
    """
    try:
        import polars as pl
    except ImportError:
        raise ImportError("polars is needed for this: pip install 'dapframe[frames]'") from None
    plan = _plan(schema, incremental, naming)
    out: dict[str, Any] = {}
    for target in plan.targets:
        col = target.column
        if target.label == "meta.action":
            out[target.name] = pl.Enum(["U", "D"])
        elif col is not None and col.kind == "enum":
            out[target.name] = pl.Enum(list(col.enum))
        else:
            out[target.name] = _polars_dtype(pl, target.type)
    return out


def _polars_dtype(pl: Any, typ: pa.DataType) -> Any:
    simple = {
        pa.int16(): pl.Int16, pa.int32(): pl.Int32, pa.int64(): pl.Int64,
        pa.float32(): pl.Float32, pa.float64(): pl.Float64, pa.bool_(): pl.Boolean,
        pa.string(): pl.String, pa.date32(): pl.Date, pa.time64("us"): pl.Time,
    }
    if typ in simple:
        return simple[typ]
    if pa.types.is_timestamp(typ):
        return pl.Datetime("us", "UTC")
    if pa.types.is_decimal(typ):
        return pl.Decimal(typ.precision, typ.scale)
    if pa.types.is_struct(typ):
        return pl.Struct({f.name: pl.String for f in typ})
    if pa.types.is_list(typ):
        return pl.List(pl.String)
    raise TypeError(f"no Polars dtype for {typ}")  # pragma: no cover - kinds are closed


def duckdb_types(schema: TableSchema, *, incremental: bool,
                 naming: str = "plain") -> dict[str, str]:
    """DuckDB type SQL of the canonical columns, with enums as ``ENUM('a', 'b')``.

    Parameters
    ----------
    schema : TableSchema
        The table schema.
    incremental : bool
        Include ``meta.action`` (``ENUM('U', 'D')``).
    naming : {"plain", "dotted"}
        Column names; see :meth:`TableSchema.arrow_schema`.

    Returns
    -------
    dict
        Column name -> DuckDB type text (``BIGINT``, ``DECIMAL(6,2)``, ``TIMESTAMPTZ``,
        ``STRUCT("a" VARCHAR)``, ``VARCHAR[]``, ``ENUM('a', 'it''s')`` ...), in column order.
        Identifiers are double-quoted and literals single-quoted with quotes doubled.
    """
    plan = _plan(schema, incremental, naming)
    out: dict[str, str] = {}
    for target in plan.targets:
        col = target.column
        if target.label == "meta.action":
            out[target.name] = "ENUM('U', 'D')"
        elif col is not None and col.kind == "enum":
            out[target.name] = "ENUM(" + ", ".join(_sql_literal(v) for v in col.enum) + ")"
        else:
            out[target.name] = _duckdb_type(target.type)
    return out


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _duckdb_type(typ: pa.DataType) -> str:
    simple = {
        pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.int64(): "BIGINT",
        pa.float32(): "FLOAT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
        pa.string(): "VARCHAR", pa.date32(): "DATE", pa.time64("us"): "TIME",
    }
    if typ in simple:
        return simple[typ]
    if pa.types.is_timestamp(typ):
        return "TIMESTAMPTZ"
    if pa.types.is_decimal(typ):
        return f"DECIMAL({typ.precision},{typ.scale})"
    if pa.types.is_struct(typ):
        fields = ", ".join('"' + f.name.replace('"', '""') + '" VARCHAR' for f in typ)
        return f"STRUCT({fields})"
    if pa.types.is_list(typ):
        return "VARCHAR[]"
    raise TypeError(f"no DuckDB type for {typ}")  # pragma: no cover - kinds are closed
