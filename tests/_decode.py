"""Test-side reference decoder for emulator data parts, and the expected decoding of a table.

Deliberately plain Python, written for clarity rather than speed, and independent of
``dapframe.emulator._encode`` (it must not import it): the tests compare
``decode_part(encode_part(t, fmt), fmt)`` with ``expected_rows(t, fmt)``.

Representation: one flat ``dict`` per record keyed by dotted label.

- tsv/csv: every field is the text as written (unescaped / unquoted), ``None`` for nulls
  (tsv ``\\N``; csv an empty unquoted field or an unquoted ``NULL``; a quoted ``""`` is ``""``).
- jsonl: ``meta``/``key``/``value`` objects flattened to dotted keys; absent properties are
  absent keys; numbers with a fraction or exponent are parsed as :class:`~decimal.Decimal` (so
  decimal scale survives); nested JSON is re-serialised as compact JSON text.
- parquet: ``pyarrow.parquet`` rows as Python objects.

Floats are compared numerically (:class:`FloatText`, :class:`FloatNumber`) because the exact
shortest spelling is the encoder's business; NaN is spelled out where the format allows it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

Row = dict[str, Any]

_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_TSV_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "v": "\v",
                 "0": "\0"}


def compact_json(obj: Any) -> str:
    """Compact JSON text: no spaces, raw UTF-8, keys in their given order."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# decoding


def decode_part(data: bytes, fmt: str) -> list[Row]:
    """Decode one object file into flat rows (see the module docstring)."""
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(data)).to_pylist()
    text = gzip.decompress(data).decode("utf-8")
    if fmt == "jsonl":
        assert text == "" or text.endswith("\n"), "every jsonl line ends with \\n"
        return [_flatten(json.loads(line, parse_float=decimal.Decimal))
                for line in text.split("\n") if line]
    if fmt == "tsv":
        return _rows(_tsv_records(text))
    if fmt == "csv":
        return _rows(_csv_records(text))
    raise ValueError(fmt)


def header(data: bytes, fmt: str) -> list[str]:
    """The column labels of a csv/tsv part (first line)."""
    text = gzip.decompress(data).decode("utf-8")
    records = _tsv_records(text) if fmt == "tsv" else _csv_records(text)
    return [label for label in records[0] if label is not None]


def _rows(records: list[list[str | None]]) -> list[Row]:
    labels = records[0]
    rows = []
    for fields in records[1:]:
        assert len(fields) == len(labels), f"field count {len(fields)} != {len(labels)}"
        rows.append({str(label): value for label, value in zip(labels, fields, strict=True)})
    return rows


def _flatten(obj: dict[str, Any]) -> Row:
    assert set(obj) <= {"meta", "key", "value"}, obj.keys()
    row: Row = {}
    for group, members in obj.items():
        assert isinstance(members, dict)
        for name, value in members.items():
            if isinstance(value, dict | list):
                value = compact_json(value)
            row[f"{group}.{name}"] = value
    return row


def _tsv_records(text: str) -> list[list[str | None]]:
    assert text.endswith("\n"), "every tsv line ends with \\n"
    return [[_tsv_field(f) for f in line.split("\t")] for line in text[:-1].split("\n")]


def _tsv_field(field: str) -> str | None:
    if field == "\\N":
        return None
    out = []
    i = 0
    while i < len(field):
        ch = field[i]
        if ch == "\\":
            nxt = field[i + 1]  # a lone trailing backslash is malformed: IndexError
            out.append(_TSV_UNESCAPE[nxt])
            i += 2
        else:
            assert ch not in "\t\n\r", "raw tab/newline/CR inside a tsv field"
            out.append(ch)
            i += 1
    return "".join(out)


def _csv_records(text: str) -> list[list[str | None]]:
    """A small RFC 4180 tokenizer that keeps quoted and unquoted empty fields apart."""
    records: list[list[str | None]] = []
    fields: list[str | None] = []
    i, n = 0, len(text)
    while i < n:
        value: str | None
        if text[i] == '"':
            parts = []
            i += 1
            while True:
                j = text.index('"', i)  # unterminated quote: ValueError
                parts.append(text[i:j])
                if text.startswith('""', j):  # doubled quote inside a quoted field
                    parts.append('"')
                    i = j + 2
                else:
                    i = j + 1
                    break
            value = "".join(parts)
        else:
            j = i
            while j < n and text[j] not in ",\r\n":
                assert text[j] != '"', "quote inside an unquoted csv field"
                j += 1
            raw = text[i:j]
            value = None if raw in ("", "NULL") else raw
            i = j
        fields.append(value)
        if i < n and text[i] == ",":
            i += 1
            if i == n:
                fields.append(None)  # a final empty field without a line end
        elif i == n or text[i] in "\r\n":
            i += 2 if text.startswith("\r\n", i) else 1
            records.append(fields)
            fields = []
        else:
            raise AssertionError(f"garbage after a quoted field at {i}: {text[i:i + 20]!r}")
    if fields:
        records.append(fields)
    return records


# ---------------------------------------------------------------------------------------------
# expectations


class FloatText:
    """Matches the text spelling of a float: a decimal/exponent number equal to the value, or
    exactly ``NaN``/``Infinity``/``-Infinity``."""

    def __init__(self, value: float, single: bool = False) -> None:
        self.value = value
        self.single = single

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str):
            return NotImplemented
        if math.isnan(self.value):
            return other == "NaN"
        if math.isinf(self.value):
            return other == ("Infinity" if self.value > 0 else "-Infinity")
        if not _NUMBER.fullmatch(other):
            return False
        parsed = float(other)
        if self.single:
            return bool(np.float32(parsed) == np.float32(self.value))
        return parsed == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"FloatText({self.value!r})"


class FloatNumber:
    """Matches a JSON number (int or Decimal from the decoder) equal to a finite float."""

    def __init__(self, value: float, single: bool = False) -> None:
        self.value = value
        self.single = single

    def __eq__(self, other: object) -> bool:
        if isinstance(other, bool) or not isinstance(other, int | decimal.Decimal):
            return NotImplemented
        if self.single:
            return bool(np.float32(float(other)) == np.float32(self.value))
        return float(other) == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"FloatNumber({self.value!r})"


def nan_safe(rows: list[Row]) -> list[Row]:
    """Replace float NaN by the string ``"NaN"`` (NaN != NaN would fail row comparisons)."""
    return [{k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            for row in rows]


def _timestamp_text(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: Any, typ: pa.DataType) -> Any:
    """How csv/tsv spell one value (before escaping)."""
    if value is None:
        return None
    if pa.types.is_floating(typ):
        return FloatText(value, single=pa.types.is_float32(typ))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return _timestamp_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)  # int, Decimal (str keeps the scale), str


def _json_value(value: Any, typ: pa.DataType, is_json: bool) -> Any:
    """What the jsonl decoder gives back for one value (None: property omitted)."""
    if value is None:
        return None
    if is_json:
        return compact_json(json.loads(value)) if value != "" else None
    if pa.types.is_floating(typ):
        if not math.isfinite(value):
            return None  # NaN/inf cannot be JSON numbers: omitted
        return FloatNumber(value, single=pa.types.is_float32(typ))
    if isinstance(value, dt.datetime):
        return _timestamp_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value  # bool, int, Decimal, str


def _expand(rows: list[Row], column: str, declared: Sequence[str] = ()) -> list[Row] | None:
    """Expanded mode for one JSON column, as documented: None if it stays condensed."""
    parsed = [None if not row[column] else json.loads(row[column]) for row in rows]
    present = [obj for obj in parsed if obj is not None]
    if not all(isinstance(obj, dict) for obj in present) or not (present or declared):
        return None
    keys: dict[str, None] = dict.fromkeys(declared)
    for obj in present:
        keys.update(dict.fromkeys(obj))
    if not keys:
        return None
    out = []
    for row, obj in zip(rows, parsed, strict=True):
        new = {k: v for k, v in row.items() if k != column}
        for key in keys:
            member = None if obj is None else obj.get(key)
            if member is not None and not isinstance(member, str):
                member = compact_json(member)
            new[f"{column}.{key}"] = member
        out.append(new)
    return out


def expected_rows(
    records: pa.Table,
    fmt: str,
    *,
    json_columns: frozenset[str] = frozenset(),
    mode: str = "condensed",
    struct_fields: Mapping[str, Sequence[str]] | None = None,
) -> list[Row]:
    """What :func:`decode_part` should return for ``records`` encoded as ``fmt``."""
    rows = records.to_pylist()
    if fmt == "parquet":
        return rows
    types = {f.name: f.type for f in records.schema}
    if fmt == "jsonl":
        out = []
        for row in rows:
            deleted = row.get("meta.action") == "D"
            flat = {}
            for name, value in row.items():
                if deleted and name.startswith("value."):
                    continue
                value = _json_value(value, types[name], name in json_columns)
                if value is not None:
                    flat[name] = value
            out.append(flat)
        return out
    rendered = [{name: _text(value, types[name]) for name, value in row.items()} for row in rows]
    if mode == "expanded":
        for column in sorted(json_columns & set(records.column_names)):
            declared = (struct_fields or {}).get(column, ())
            rendered = _expand(rendered, column, declared) or rendered
    return rendered


def sorted_rows(rows: list[Row]) -> list[Row]:
    """Rows in a canonical order (key columns, then meta.ts, then meta.action).

    Comparing sorted lists with ``==`` lets the float matchers of :func:`expected_rows` work,
    which a comparison of serialised rows would not.
    """

    def order(row: Row) -> tuple[str, ...]:
        keys = tuple(str(v) for k, v in sorted(row.items()) if k.startswith("key."))
        return (*keys, str(row.get("meta.ts")), str(row.get("meta.action")))

    return sorted(rows, key=order)


def assert_same_rows(got: list[Row], want: list[Row]) -> None:
    """Assert two row lists hold the same rows, whatever their order."""
    assert len(got) == len(want), f"{len(got)} rows, expected {len(want)}"
    for g, w in zip(sorted_rows(got), sorted_rows(want), strict=True):
        assert g == w, {k: (g.get(k), w.get(k)) for k in set(g) | set(w) if g.get(k) != w.get(k)}


def spec_rows(spec: Any, records: pa.Table, fmt: str, *, mode: str = "expanded") -> list[Row]:
    """:func:`expected_rows` for a table of the emulator, as its server encodes it.

    ``mode`` defaults to ``expanded``, the server's default when a query names none (the
    official CLI never sends one).
    """
    json_cols = frozenset(f"value.{c.name}" for c in spec.columns
                          if c.kind in ("struct", "enum_array"))
    fields = {f"value.{c.name}": tuple(c.struct_fields) for c in spec.columns
              if c.kind == "struct"}
    return expected_rows(records, fmt, json_columns=json_cols, mode=mode, struct_fields=fields)


def dataset_rows(ds: Any, ns: str, table: str, fmt: str, *, since: Any = None,
                 until: Any = None, mode: str = "expanded") -> list[Row]:
    """Expected decoded rows of the emulator's snapshot (or of its changes when ``since``)."""
    records = (ds.snapshot(ns, table) if since is None
               else ds.changes(ns, table, since, until or ds.clock))
    return spec_rows(ds.spec(ns, table), records, fmt, mode=mode)
