"""Encode emulator records tables as DAP data parts (jsonl, csv, tsv, parquet).

A *records table* (see ``docs/emulator-internals.md``) is a flat Arrow table whose columns are
named ``meta.ts``, optionally ``meta.action`` (incremental parts only), ``key.<pk>`` and
``value.<col>``.  :func:`encode_part` turns one such table into the bytes of one object file as
the DAP Query API serves it: gzip-compressed text for ``jsonl``/``csv``/``tsv`` and a Parquet file
with internal GZIP compression for ``parquet``.

The text encoders are vectorised with :mod:`pyarrow.compute`: every column is rendered to an Arrow
string array, escaped only in the rows a regular expression flags, and each line is built by one
element-wise join over all columns.  Rows are processed in batches (small batches keep the joins
in cache) on a thread pool; every batch is deflated on its worker too and the blocks are stitched
into a single gzip member (the way ``pigz`` does it).

Spelling choices (all formats agree where they overlap):

- timestamps ``YYYY-MM-DDThh:mm:ss.ffffffZ`` (always six fractional digits and ``Z``; the values
  are read as UTC whatever the column's time zone), dates ``YYYY-MM-DD``;
- booleans ``true``/``false``; integers and decimals in plain notation (decimals keep their
  scale, e.g. ``-0.50``); floats in Arrow's shortest round-trip notation (``0.1``, ``1e+20``);
- non-finite floats: ``NaN``/``Infinity``/``-Infinity`` in csv/tsv (PostgreSQL's and Python's
  spellings); in jsonl they cannot be JSON numbers, so the property is omitted like a null;
- JSON strings escape ``"``, ``\\``, ``\\n``, ``\\r``, ``\\t`` and other control characters
  (``\\u00XX``); non-ASCII text is written as raw UTF-8;
- tsv escapes ``\\\\ \\t \\n \\r \\b \\f \\v`` (PostgreSQL ``COPY`` text format); other control
  characters, including NUL, pass through unchanged;
- csv quotes a field only when it contains ``"`` ``,`` CR, LF or tab, is empty, or is the literal
  ``NULL`` (so that it cannot be mistaken for a null written by other producers);
- jsonl rows whose ``meta.action`` is ``"D"`` get no ``value`` object at all; csv/tsv/parquet
  write whatever the table holds there (the contract: nulls, i.e. ``\\N`` / empty fields);
- line ends are ``\\n`` in every text format (also csv, where RFC 4180 suggests CRLF; the DAP
  documentation's examples use LF).
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as _compute
import pyarrow.json as pa_json
import pyarrow.parquet as pq

# pyarrow-stubs reject valid calls used throughout (plain ``str`` literals where they want
# Scalars, e.g. ``pc.equal(arr, "D")`` or join separators), so compute is typed loosely.
pc: Any = _compute

__all__ = ["FORMATS", "MODES", "SUFFIX", "encode_part"]

SUFFIX: dict[str, str] = {
    "jsonl": ".json.gz",
    "csv": ".csv.gz",
    "tsv": ".tsv.gz",
    "parquet": ".gz.parquet",
}
"""Object-file suffix per output format."""

FORMATS: frozenset[str] = frozenset(SUFFIX)
"""Supported output formats."""

MODES: frozenset[str] = frozenset({"condensed", "expanded"})
"""Supported modes (``expanded`` only changes csv and tsv)."""

# Rows per batch are capped by count and by estimated text size: small batches keep the
# element-wise joins in cache (5x faster than whole-table joins) and far from the 2 GiB limit of
# Arrow's 32-bit string offsets.
_BATCH_ROWS = 65_536
_BATCH_BYTES = 32 * 1024 * 1024
_WORKERS = max(1, min(8, os.cpu_count() or 1))

# Column kinds of the rendering plan.
_K_STRING = "string"  # free text: needs escaping/quoting
_K_JSON = "json"  # JSON text (struct / enum_array): raw in jsonl, escaped text in csv/tsv
_K_FLOAT = "float"  # non-finite values need special spelling
_K_NUMBER = "number"  # integers, decimals: bare JSON numbers
_K_BOOL = "bool"
_K_TIMESTAMP = "timestamp"
_K_QUOTED = "quoted"  # other types whose text needs no escaping but is a JSON string (dates)

# RE2 patterns that find the rows needing work beyond a plain copy.
_TSV_SPECIAL = r"[\\\t\n\r\x08\x0c\x0b]"
_CSV_SPECIAL = r'[",\r\n\t]|^$|^NULL$'
_JSON_SPECIAL = r'["\\\x00-\x1f]'
_JSON_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"

# Order matters: the backslash is doubled before other escapes introduce backslashes.
_TSV_ESCAPES = (
    ("\\", "\\\\"),
    ("\t", "\\t"),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\b", "\\b"),
    ("\f", "\\f"),
    ("\v", "\\v"),
)
_JSON_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))

# An argument of binary_join_element_wise: a string array or a literal.
_Arg: TypeAlias = pa.Array | str


@dataclass(frozen=True)
class _Col:
    """One column of the rendering plan."""

    index: int  # position in the (possibly expanded) records table
    label: str  # dotted label, e.g. ``value.name``
    kind: str


def encode_part(
    records: pa.Table,
    fmt: str,
    *,
    json_columns: frozenset[str] = frozenset(),
    mode: str = "condensed",
    compresslevel: int = 1,
    struct_fields: Mapping[str, Sequence[str]] | None = None,
) -> bytes:
    """Encode a records table as the bytes of one DAP object file.

    Parameters
    ----------
    records
        Records table with flat dotted column names (``meta.ts``, optional ``meta.action``,
        ``key.*``, ``value.*``).  The part is incremental exactly when ``meta.action`` is present;
        rows whose action is ``"D"`` get no ``value`` object in jsonl.
    fmt
        ``"jsonl"``, ``"csv"``, ``"tsv"`` or ``"parquet"``.
    json_columns
        Names of string columns that hold compact JSON text (struct and enum-array kinds).
        jsonl embeds them as nested JSON (the text must be valid JSON; it is not re-parsed, and
        an empty string counts as null); csv/tsv write them as text, or expand object-valued ones
        in ``expanded`` mode.
    mode
        ``"condensed"`` (default) or ``"expanded"``.  Only csv and tsv are affected: in
        ``expanded`` mode every JSON column whose non-null values are all JSON objects becomes one
        string column per object key, labelled ``value.<col>.<key>`` (keys in first-seen order;
        non-string members are written as compact JSON text; a null object gives nulls).  Array
        columns, and object columns without any key to expand, stay condensed.
    compresslevel
        zlib/gzip compression level 0-9 (also used for Parquet's internal GZIP codec, where 0
        means 1).
    struct_fields
        Optional declared object keys per JSON column for ``expanded`` mode; they come first (so
        every part of a table gets the same header even when a part lacks some keys), followed by
        any further keys found in the data.

    Returns
    -------
    bytes
        A gzip file (one member) for text formats; a Parquet file, not gzip-wrapped, for
        ``parquet``.

    Raises
    ------
    ValueError
        Unknown format or mode, bad compression level, or (jsonl) a column outside the
        ``meta``/``key``/``value`` groups.
    TypeError
        A column type that has no text rendering (binary, nested Arrow types, ...).

    Examples
    --------
    >>> import gzip, pyarrow as pa
    >>> t = pa.table({"meta.ts": pa.array([0], pa.timestamp("us", tz="UTC")),
    ...               "key.id": [1], "value.name": ["Math 1"]})
    >>> gzip.decompress(encode_part(t, "jsonl")).decode()
    '{"meta":{"ts":"1970-01-01T00:00:00.000000Z"},"key":{"id":1},"value":{"name":"Math 1"}}\\n'
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(MODES)}")
    if not 0 <= compresslevel <= 9:
        raise ValueError(f"compresslevel must be within 0..9, got {compresslevel}")
    if fmt == "parquet":
        return _encode_parquet(records, compresslevel)
    if fmt == "jsonl":
        return _encode_jsonl(records, json_columns, compresslevel)
    if mode == "expanded":
        records, json_columns = _expand_objects(records, json_columns, struct_fields or {})
    return _encode_delimited(records, fmt, json_columns, compresslevel)


# --------------------------------------------------------------------------------------------
# parquet


def _encode_parquet(records: pa.Table, compresslevel: int) -> bytes:
    sink = io.BytesIO()
    # Arrow's GZIP codec rejects level 0.
    pq.write_table(records, sink, compression="gzip", compression_level=max(1, compresslevel))
    return sink.getvalue()


# --------------------------------------------------------------------------------------------
# plan and value rendering shared by the text formats


def _kind_of(field: pa.Field, json_columns: frozenset[str]) -> str:
    t = field.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return _K_JSON if field.name in json_columns else _K_STRING
    if pa.types.is_floating(t):
        return _K_FLOAT
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        return _K_NUMBER
    if pa.types.is_boolean(t):
        return _K_BOOL
    if pa.types.is_timestamp(t):
        return _K_TIMESTAMP
    if pa.types.is_date(t):
        return _K_QUOTED
    raise TypeError(f"column {field.name!r}: type {t} has no text rendering")


def _plan(schema: pa.Schema, json_columns: frozenset[str]) -> list[_Col]:
    return [_Col(i, f.name, _kind_of(f, json_columns)) for i, f in enumerate(schema)]


def _as_string(arr: pa.Array) -> pa.Array:
    """Cast to ``string`` (from dictionary, large_string or null arrays)."""
    if isinstance(arr, pa.DictionaryArray):
        arr = arr.dictionary_decode()
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return arr


def _timestamp_text(arr: pa.Array) -> pa.Array:
    """Render timestamps as ``YYYY-MM-DDThh:mm:ss.ffffff`` in UTC, *without* the final ``Z``.

    The caller appends the ``Z`` inside a join it does anyway.
    """
    unit = arr.type.unit
    # Timestamps store UTC instants whatever their zone: reinterpret as naive so the cast
    # renders UTC wall time (and skips the slow zone-aware formatter).
    naive = arr.view(pa.timestamp(unit))
    if unit != "us":
        naive = pc.cast(naive, pa.timestamp("us"), safe=False)
    return pc.replace_substring(pc.cast(naive, pa.string()), " ", "T", max_replacements=1)


def _float_text(arr: pa.Array, *, json: bool) -> pa.Array:
    """Shortest round-trip text; NaN/inf as null (JSON) or PostgreSQL's spellings."""
    text = pc.cast(arr, pa.string())
    if not pc.any(pc.invert(pc.is_finite(arr))).as_py():
        return text
    if json:
        return pc.if_else(pc.is_finite(arr), text, pa.scalar(None, pa.string()))
    positive = pc.greater(arr, pa.scalar(0, arr.type))
    special = pc.if_else(positive, "Infinity", "-Infinity")
    special = pc.if_else(pc.is_nan(arr), "NaN", special)
    return pc.if_else(pc.is_finite(arr), text, special)


def _plain_text(arr: pa.Array, kind: str, *, json: bool) -> pa.Array:
    """Render a non-timestamp column as a nullable string array, before any escaping."""
    if kind in (_K_STRING, _K_JSON):
        return _as_string(arr)
    if isinstance(arr, pa.DictionaryArray):
        arr = arr.dictionary_decode()
    if kind == _K_FLOAT:
        return _float_text(arr, json=json)
    return pc.cast(arr, pa.string())


def _patch(arr: pa.Array, pattern: str, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """Apply ``fn`` only to the rows matching ``pattern`` (most text needs no escaping)."""
    mask = pc.fill_null(pc.match_substring_regex(arr, pattern), False)
    hits = pc.sum(mask).as_py() or 0
    if hits == 0:
        return arr
    if hits == len(arr) - arr.null_count:
        return fn(arr)
    return pc.replace_with_mask(arr, mask, fn(pc.filter(arr, mask)))


def _replace_all(arr: pa.Array, pairs: Iterable[tuple[str, str]]) -> pa.Array:
    for old, new in pairs:
        arr = pc.replace_substring(arr, old, new)
    return arr


def _json_escape(arr: pa.Array) -> pa.Array:
    """Escape string contents for a JSON string literal (without the surrounding quotes)."""

    def escape(sub: pa.Array) -> pa.Array:
        escaped = _replace_all(sub, _JSON_ESCAPES)
        # Rare control characters other than \n \r \t: json.dumps writes the \u00XX escapes.
        mask = pc.fill_null(pc.match_substring_regex(sub, _JSON_CONTROL), False)
        if not pc.any(mask).as_py():
            return escaped
        fixed = [json.dumps(v, ensure_ascii=False)[1:-1] for v in pc.filter(sub, mask).to_pylist()]
        return pc.replace_with_mask(escaped, mask, pa.array(fixed, pa.string()))

    return _patch(arr, _JSON_SPECIAL, escape)


def _tsv_escape(arr: pa.Array) -> pa.Array:
    return _patch(arr, _TSV_SPECIAL, lambda sub: _replace_all(sub, _TSV_ESCAPES))


def _csv_quote(arr: pa.Array) -> pa.Array:
    def quote(sub: pa.Array) -> pa.Array:
        return pc.binary_join_element_wise('"', pc.replace_substring(sub, '"', '""'), '"', "")

    return _patch(arr, _CSV_SPECIAL, quote)


def _join(args: Sequence[_Arg], rows: int, null: str | None) -> pa.Array:
    """Concatenate arguments row-wise; ``null`` replaces null arrays' values (None: emit null).

    Adjacent literals are merged first: the join's cost grows with its argument count.
    """
    merged: list[_Arg] = []
    for arg in args:
        if isinstance(arg, str) and merged and isinstance(merged[-1], str):
            merged[-1] += arg
        else:
            merged.append(arg)
    if not any(isinstance(a, pa.Array) for a in merged):
        return pa.array(["".join(a for a in merged if isinstance(a, str))] * rows, pa.string())
    if len(merged) == 1 and null is None and isinstance(merged[0], pa.Array):
        return merged[0]
    if null is None:
        return pc.binary_join_element_wise(*merged, "")
    return pc.binary_join_element_wise(
        *merged, "", null_handling="replace", null_replacement=null
    )


# --------------------------------------------------------------------------------------------
# batching and gzip

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, mtime 0, OS unknown
_CRC_POLY = 0xEDB88320


def _gf2_multmodp(a: int, b: int) -> int:
    """Multiply two polynomials modulo the CRC-32 polynomial (zlib's ``multmodp``)."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if (a & (m - 1)) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1


_X2N = [1 << 30]  # x^(2^k) modulo the polynomial, k = 0..31
for _ in range(31):
    _X2N.append(_gf2_multmodp(_X2N[-1], _X2N[-1]))


def _crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)`` (zlib's algorithm)."""
    p, k = 1 << 31, 3  # x^0; start at x^(8 * 2^0): lengths are in bytes
    while len2:
        if len2 & 1:
            p = _gf2_multmodp(_X2N[k & 31], p)
        len2 >>= 1
        k += 1
    return _gf2_multmodp(p, crc1) ^ crc2


@dataclass(frozen=True)
class _Block:
    """One independently deflated slice of the output text."""

    deflated: bytes
    crc: int
    size: int


def _deflate(data: bytes | memoryview, level: int) -> _Block:
    # Raw deflate ending in a sync flush: byte-aligned, not final, so blocks concatenate.
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return _Block(deflated, zlib.crc32(data), len(data))


def _text_bytes(lines: pa.Array) -> memoryview:
    """The concatenated bytes of a null-free string array, without copying."""
    buffer = lines.buffers()[1]
    assert buffer is not None  # string arrays always have offsets
    offsets = np.frombuffer(memoryview(buffer), dtype=np.int32)
    start = int(offsets[lines.offset])
    end = int(offsets[lines.offset + len(lines)])
    data = lines.buffers()[2]
    if data is None or start == end:
        return memoryview(b"")
    return memoryview(data)[start:end]


def _batches(records: pa.Table) -> list[pa.RecordBatch]:
    rows = records.num_rows
    if rows == 0:
        return []
    # Arrow bytes x3 is a rough upper estimate of the text; it only bites for very wide rows.
    per_row = max(1, records.nbytes // rows) * 3
    size = max(1024, min(_BATCH_ROWS, _BATCH_BYTES // per_row))
    chunks = max((c.num_chunks for c in records.columns), default=1)
    if chunks > 1 and rows / chunks < size / 4:
        # Many small chunks would mean many small batches, and per-batch overhead is per column.
        records = records.combine_chunks()
    return records.to_batches(max_chunksize=size)


def _gzip_lines(
    header: bytes,
    batches: Sequence[pa.RecordBatch],
    render: Callable[[pa.RecordBatch], pa.Array],
    compresslevel: int,
) -> bytes:
    """Render and deflate batches on a thread pool; stitch the blocks into one gzip member.

    One member rather than one per batch: the official client gunzips with a single ``zlib``
    decompressor, which would silently stop after the first member.
    """

    def work(batch: pa.RecordBatch) -> _Block:
        return _deflate(_text_bytes(render(batch)), compresslevel)

    blocks = [_deflate(header, compresslevel)]
    if len(batches) <= 1:
        blocks.extend(work(batch) for batch in batches)
    else:
        pending: deque[Future[_Block]] = deque()
        with ThreadPoolExecutor(max_workers=min(_WORKERS, len(batches))) as pool:
            for batch in batches:
                pending.append(pool.submit(work, batch))
                # Bounded look-ahead keeps memory flat on big parts.
                if len(pending) >= 2 * _WORKERS:
                    blocks.append(pending.popleft().result())
            blocks.extend(future.result() for future in pending)
    crc, size = 0, 0
    for block in blocks:
        crc = _crc32_combine(crc, block.crc, block.size)
        size += block.size
    final = zlib.compressobj(compresslevel, zlib.DEFLATED, -zlib.MAX_WBITS).flush()
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return b"".join([_GZIP_HEADER, *(b.deflated for b in blocks), final, trailer])


# --------------------------------------------------------------------------------------------
# csv / tsv


def _encode_delimited(
    records: pa.Table, fmt: str, json_columns: frozenset[str], compresslevel: int
) -> bytes:
    plan = _plan(records.schema, json_columns)
    if fmt == "tsv":
        sep, null, escape, label = "\t", "\\N", _tsv_escape, _tsv_label
    else:
        sep, null, escape, label = ",", "", _csv_quote, _csv_label
    header = sep.join(label(c.label) for c in plan) + "\n"

    def field(batch: pa.RecordBatch, col: _Col) -> pa.Array:
        arr = batch.column(col.index)
        if col.kind == _K_TIMESTAMP:
            return pc.binary_join_element_wise(_timestamp_text(arr), "Z", "")
        text = _plain_text(arr, col.kind, json=False)
        return escape(text) if col.kind in (_K_STRING, _K_JSON) else text

    def render(batch: pa.RecordBatch) -> pa.Array:
        fields = [field(batch, col) for col in plan]
        # The line end rides on the last field: cheaper than a second join over whole lines.
        fields[-1] = _join([fields[-1], "\n"], batch.num_rows, null)
        return pc.binary_join_element_wise(
            *fields, sep, null_handling="replace", null_replacement=null
        )

    return _gzip_lines(header.encode(), _batches(records), render, compresslevel)


def _tsv_label(label: str) -> str:
    for old, new in _TSV_ESCAPES:
        label = label.replace(old, new)
    return label


def _csv_label(label: str) -> str:
    if any(ch in label for ch in '",\r\n\t') or label in ("", "NULL"):
        return '"' + label.replace('"', '""') + '"'
    return label


# --------------------------------------------------------------------------------------------
# expanded mode


def _expand_objects(
    records: pa.Table, json_columns: frozenset[str], struct_fields: Mapping[str, Sequence[str]]
) -> tuple[pa.Table, frozenset[str]]:
    """Replace object-valued JSON columns by one string column per object key."""
    names: list[str] = []
    arrays: list[pa.Array | pa.ChunkedArray] = []
    remaining = set(json_columns)
    for name, column in zip(records.column_names, records.columns, strict=True):
        expanded = None
        if name in json_columns:
            expanded = _expand_column(column, tuple(struct_fields.get(name, ())))
        if expanded is None:
            names.append(name)
            arrays.append(column)
            continue
        remaining.discard(name)
        for key, values in expanded:
            names.append(f"{name}.{key}")
            arrays.append(values)
    return pa.Table.from_arrays(arrays, names=names), frozenset(remaining)


def _expand_column(
    column: pa.ChunkedArray, declared: tuple[str, ...]
) -> list[tuple[str, pa.Array]] | None:
    """Split a JSON-object text column into per-key string arrays (None: keep condensed)."""
    arr = _as_string(column.combine_chunks())
    # Empty text is not JSON; read it as a null object.
    arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    present = len(arr) - arr.null_count
    if present:
        starts = pc.starts_with(pc.utf8_ltrim_whitespace(pc.drop_null(arr)), "{")
        if not pc.all(starts).as_py():
            return None  # arrays or scalars: always JSON text
    columns = (_expand_vectorised(arr) or _expand_python(arr)) if present else {}
    keys = list(declared) + [k for k in columns if k not in declared]
    if not keys:
        return None
    nulls = pa.nulls(len(arr), pa.string())
    return [(k, columns.get(k, nulls)) for k in keys]


def _expand_vectorised(arr: pa.Array) -> dict[str, pa.Array] | None:
    """Parse with Arrow's JSON reader; None when a member is not a string (or on errors)."""
    lines = pc.binary_join_element_wise(pc.fill_null(arr, "{}"), "\n", "")
    data = bytes(_text_bytes(lines))
    longest = pc.max(pc.binary_length(lines)).as_py() or 0
    read_options = pa_json.ReadOptions(block_size=max(1 << 20, 2 * longest))
    # Compact JSON has no raw newlines; pretty-printed text needs the slower mode.
    multiline = bool(pc.any(pc.match_substring(arr, "\n")).as_py())
    try:
        table = pa_json.read_json(
            io.BytesIO(data), read_options, pa_json.ParseOptions(newlines_in_values=multiline)
        )
        types = [f.type for f in table.schema]
        if not all(
            pa.types.is_string(t) or pa.types.is_null(t) or pa.types.is_timestamp(t)
            or pa.types.is_date(t)
            for t in types
        ):
            return None
        if any(pa.types.is_timestamp(t) or pa.types.is_date(t) for t in types):
            # Arrow inferred date-like strings as timestamps; read them again verbatim.
            explicit = pa.schema([(f.name, pa.string()) for f in table.schema])
            options = pa_json.ParseOptions(explicit_schema=explicit, newlines_in_values=multiline)
            table = pa_json.read_json(io.BytesIO(data), read_options, options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(arr):
        return None
    return {
        name: _as_string(column.combine_chunks())
        for name, column in zip(table.column_names, table.columns, strict=True)
    }


def _expand_python(arr: pa.Array) -> dict[str, pa.Array]:
    """Fallback for objects with non-string members: those become compact JSON text."""
    objects = [None if v is None else json.loads(v) for v in arr.to_pylist()]
    keys: dict[str, None] = {}
    for obj in objects:
        if obj is not None:
            keys.update(dict.fromkeys(obj))

    def member(obj: dict[str, object] | None, key: str) -> str | None:
        value = None if obj is None else obj.get(key)
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    return {key: pa.array([member(obj, key) for obj in objects], pa.string()) for key in keys}


# --------------------------------------------------------------------------------------------
# jsonl


def _json_pieces(arr: pa.Array, kind: str) -> list[_Arg]:
    """The JSON value of a column as join arguments; the array(s) are null where omitted."""
    if kind == _K_TIMESTAMP:
        return ['"', _timestamp_text(arr), 'Z"']
    text = _plain_text(arr, kind, json=True)
    if kind == _K_STRING:
        return ['"', _json_escape(text), '"']
    if kind == _K_QUOTED:
        return ['"', text, '"']
    if kind == _K_JSON:
        # Empty text is not JSON; omit it like a null rather than emit a broken line.
        return [pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)]
    return [text]


def _null_free(values: pa.Array, live: pa.Array | None) -> bool:
    """Whether ``values`` has no nulls (in the ``live`` rows, if given)."""
    if live is None:
        return values.null_count == 0
    return not pc.any(pc.and_(pc.is_null(values), live)).as_py()


def _masked_literal(text: str, like: pa.Array) -> pa.Array:
    """``text`` in every row, null where ``like`` is null (its validity bitmap is shared).

    Lets a nullable property's punctuation go straight into the line join (which drops nulls)
    instead of costing a join of its own; building it is a few numpy operations.
    """
    validity = like.buffers()[0]
    if validity is None and like.null_count:  # defensive: a null array without a bitmap
        return pc.if_else(pc.is_valid(like), text, pa.scalar(None, pa.string()))
    return _literal_array(text, len(like), validity, like.offset, like.null_count)


def _literal_where(text: str, mask: pa.Array) -> pa.Array:
    """``text`` where the null-free boolean ``mask`` is true, null elsewhere."""
    # A boolean array's value bitmap is a valid validity bitmap for the same rows.
    trues = pc.sum(mask).as_py() or 0
    return _literal_array(text, len(mask), mask.buffers()[1], mask.offset, len(mask) - trues)


def _literal_array(
    text: str, length: int, validity: pa.Buffer | None, offset: int, null_count: int
) -> pa.Array:
    raw = text.encode()
    rows = offset + length
    offsets = np.arange(rows + 1, dtype=np.int32) * np.int32(len(raw))
    return pa.Array.from_buffers(
        pa.string(),
        length,
        [validity, pa.py_buffer(offsets.tobytes()), pa.py_buffer(raw * rows)],
        null_count=null_count,
        offset=offset,
    )


def _object_members(
    batch: pa.RecordBatch, cols: Sequence[tuple[_Col, str]], deleted: pa.Array | None = None
) -> list[_Arg]:
    """Join arguments for the members of one JSON object, omitting null properties.

    Commas are the difficulty: an *anchor* property that is present in every row not
    ``deleted`` is written bare, properties before it carry a trailing comma and properties after
    it a leading one, so no row gets a stray comma whatever is omitted.  The punctuation of
    properties that can be null is made null with them, so the line join drops the whole
    property.  In ``deleted`` rows every member is null (the caller drops the object there).
    """
    live = None if deleted is None else pc.invert(deleted)
    rendered = []
    for col, name in cols:
        arr = batch.column(col.index)
        if deleted is not None and pc.any(pc.and_(deleted, pc.is_valid(arr))).as_py():
            arr = pc.if_else(deleted, pa.scalar(None, arr.type), arr)  # contract says null
        pieces = _json_pieces(arr, col.kind)
        values = next(p for p in pieces if isinstance(p, pa.Array))
        rendered.append((name, pieces, values))
    free = [_null_free(values, live) for _, _, values in rendered]
    anchor = free.index(True) if True in free else None
    args: list[_Arg] = []
    for i, (name, pieces, values) in enumerate(rendered):
        if anchor is None or i > anchor:
            member = [f",{name}:", *pieces]
        elif i < anchor:
            member = [f"{name}:", *pieces, ","]
        else:
            member = [f"{name}:", *pieces]
        if values.null_count == 0:
            args.extend(member)
        else:
            args.extend(_masked_literal(p, values) if isinstance(p, str) else p for p in member)
    if anchor is None and args:
        # No property is always present: strip the first comma (rare; costs one more pass).
        joined = _join(args, batch.num_rows, "")
        return [pc.utf8_slice_codeunits(joined, 1)]
    return args


def _encode_jsonl(records: pa.Table, json_columns: frozenset[str], compresslevel: int) -> bytes:
    plan = _plan(records.schema, json_columns)
    groups: dict[str, list[tuple[_Col, str]]] = {"meta": [], "key": [], "value": []}
    for col in plan:
        group, dot, name = col.label.partition(".")
        if not dot or group not in groups:
            raise ValueError(f"jsonl: column {col.label!r} is not meta.*, key.* or value.*")
        groups[group].append((col, json.dumps(name, ensure_ascii=False)))
    action = next((c.index for c, _ in groups["meta"] if c.label == "meta.action"), None)

    def render(batch: pa.RecordBatch) -> pa.Array:
        deleted = None
        if action is not None:
            deleted = pc.fill_null(pc.equal(batch.column(action), "D"), False)
            if not pc.any(deleted).as_py():
                deleted = None
        opener: _Arg = ',"value":{'
        closer: _Arg = "}"
        if deleted is not None:
            # Hard deletes carry no value object at all.
            live = pc.invert(deleted)
            opener, closer = _literal_where(',"value":{', live), _literal_where("}", live)
        args = [
            '{"meta":{', *_object_members(batch, groups["meta"]),
            '},"key":{', *_object_members(batch, groups["key"]), "}",
            opener, *_object_members(batch, groups["value"], deleted), closer, "}\n",
        ]
        return _join(args, batch.num_rows, "")

    return _gzip_lines(b"", _batches(records), render, compresslevel)
