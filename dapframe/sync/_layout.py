"""The official database layout of one DAP table, and Arrow batches shaped for loading.

:func:`table_layout` turns a schema document (reference section 7) into a :class:`TableLayout`:
the same table and column names, types, nullability, primary key and enum type names as the
official client creates (reference section 11; checked against ``dap initdb`` 2.3.1 on
PostgreSQL), with the DuckDB equivalents beside them.

PostgreSQL types (official)            DuckDB
-------------------------------------  -----------------------------------------
smallint / integer / bigint            SMALLINT / INTEGER / BIGINT
real / double precision                REAL / DOUBLE
numeric(p,s)                           DECIMAL(p,s)
boolean                                BOOLEAN
character varying(n) / text            VARCHAR
timestamp without time zone (UTC)      TIMESTAMP (UTC)
date / time without time zone          DATE / TIME
uuid                                   UUID
inet                                   VARCHAR (no inet type without an extension)
enum type "<ns>"."<table>__<column>"   ENUM type "<ns>"."<table>__<column>"
<item type>[] (enum items: the enum)   <item type>[]
jsonb (objects)                        JSON

Rows arrive as canonical Arrow batches from :func:`dapframe.frames.read_batches`. JSON objects and
arrays are read as their JSON text (not folded into structs) because that text is what goes
into ``jsonb``/``JSON`` and the arrays' SQL casts, exactly as the official client stores it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dapframe.errors import DapError, SchemaError
from dapframe.schema import ColumnSchema, TableSchema

__all__ = [
    "META_ACTION",
    "META_SEQ",
    "META_TS",
    "DbColumn",
    "TableLayout",
    "checked_lengths",
    "qi",
    "ql",
    "quoted",
    "table_layout",
]

META_TS: Final = "meta.ts"
META_ACTION: Final = "meta.action"
META_SEQ: Final = "meta.seq"

_PG_SIMPLE: Final = {
    "int16": "smallint", "int32": "integer", "int64": "bigint", "float32": "real",
    "float64": "double precision", "bool": "boolean", "timestamp": "timestamp without time zone",
    "date": "date", "time": "time without time zone", "uuid": "uuid", "ip": "inet",
    "struct": "jsonb",
}
_DUCK_SIMPLE: Final = {
    "int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT", "float32": "REAL",
    "float64": "DOUBLE", "bool": "BOOLEAN", "timestamp": "TIMESTAMP", "date": "DATE",
    "time": "TIME", "uuid": "UUID", "ip": "VARCHAR", "struct": "JSON", "string": "VARCHAR",
}


def quoted(text: str, opening: str, closing: str, *, literal: bool,
           error: type[DapError] = SchemaError) -> str:
    """``opening + text + closing`` with ``closing`` doubled inside; NUL refused.

    Every dialect's identifier and literal quoting is this, with its own marks (``"..."``,
    ```...```, ``[...]``, ``'...'``, ``N'...'``).
    """
    if "\x00" in text:
        shown = text[:40] if literal else text
        raise error(f"{'literal' if literal else 'identifier'} {shown!r} contains a NUL "
                    "character")
    return opening + text.replace(closing, closing * 2) + closing


def qi(name: str) -> str:
    """Quote an SQL identifier (PostgreSQL and DuckDB): ``"name"`` with ``"`` doubled."""
    return quoted(name, '"', '"', literal=False)


def ql(text: str) -> str:
    """Quote an SQL string literal: ``'text'`` with ``'`` doubled (standard conforming)."""
    return quoted(text, "'", "'", literal=True)


@dataclass(frozen=True)
class DbColumn:
    """One column of the replica table.

    Attributes
    ----------
    name : str
        Column name (the DAP property name).
    kind : str
        The :class:`~dapframe.schema.ColumnSchema` kind (``array`` for arrays).
    nullable : bool
        False for the key and required value columns.
    pg_type, duck_type : str
        Type text for ``CREATE TABLE`` (enum and array types schema-qualified and quoted).
    enum : tuple of str
        Enum members (of the column, or of an array's items).
    enum_type : str or None
        Bare name of the enum type, ``<table>__<column>``, for enum columns and enum arrays.
    item_pg, item_duck : str or None
        Item type of an array column.
    description : str
        Column comment.
    max_length : int or None
        ``maxLength`` of a string column (None: unbounded, or the oversized-text form).
    precision, scale : int or None
        Of a decimal column.
    item_kind : str or None
        Kind of an array's items.

    Other dialects (MySQL, SQL Server) derive their types from ``kind`` and these facts.
    """

    name: str
    kind: str
    nullable: bool
    pg_type: str
    duck_type: str
    enum: tuple[str, ...] = ()
    enum_type: str | None = None
    item_pg: str | None = None
    item_duck: str | None = None
    description: str = ""
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None
    item_kind: str | None = None

    @property
    def is_array(self) -> bool:
        """An array column (loaded as JSON text, cast in SQL)."""
        return self.kind == "array"


@dataclass(frozen=True)
class TableLayout:
    """The replica of one DAP table: names, columns and the schema facts to record.

    Attributes
    ----------
    namespace, table : str
        Source names; also the target schema and table (official layout).
    version : int
        Schema version.
    columns : tuple of DbColumn
        Key column first, then value columns in schema order.
    description : str
        The schema document without ``meta``, as compact JSON (``table_sync``).
    read_schema : TableSchema
        The schema to decode parts with (objects and arrays kept as JSON text).
    """

    namespace: str
    table: str
    version: int
    columns: tuple[DbColumn, ...]
    description: str
    read_schema: TableSchema

    @property
    def name(self) -> str:
        """``namespace.table``."""
        return f"{self.namespace}.{self.table}"

    @property
    def key(self) -> DbColumn:
        """The primary-key column (the first key property, as the official client uses)."""
        return self.columns[0]

    @property
    def enums(self) -> list[DbColumn]:
        """Columns with an enum type (enum columns and enum arrays)."""
        return [c for c in self.columns if c.enum_type is not None]

    def column(self, name: str) -> DbColumn:
        """The column called ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def pk_name(self) -> str:
        """Name of the primary-key constraint: ``pk_<table>`` (official)."""
        return f"pk_{self.table}"


def table_layout(namespace: str, table: str, doc: Mapping[str, Any], version: int
                 ) -> TableLayout:
    """Build the replica layout of a table from its schema document.

    Parameters
    ----------
    namespace, table : str
        The table.
    doc : dict
        The schema document (``schema`` of the schema endpoint).
    version : int
        Its version.

    Raises
    ------
    SchemaError
        The document is outside the section 7 vocabulary, or has a composite key (the
        official layout keys on one column; so does this one, and more would be ambiguous).
    """
    schema = TableSchema.from_json(namespace, table, doc, version)
    if len(schema.key) != 1:
        raise SchemaError(f"{namespace}.{table}: composite key {[c.name for c in schema.key]} "
                          "is not supported by the database layout", table=f"{namespace}.{table}")
    props = doc.get("properties", {})
    columns = []
    for col in schema.columns:
        prop = props.get(col.part, {}).get("properties", {}).get(col.name, {})
        columns.append(_db_column(namespace, table, col, prop))
    # The official client stores the document without its meta property (reference 11).
    described = dict(doc)
    described["properties"] = {k: v for k, v in props.items() if k != "meta"}
    description = json.dumps(described, ensure_ascii=False, check_circular=False,
                             separators=(",", ":"))
    # Objects and arrays are read as their JSON text: that text is what the database stores.
    read_cols = tuple(dataclasses.replace(c, kind="string", fields=(), items=None, enum=())
                      if c.kind in ("struct", "array") else c for c in schema.columns)
    read_schema = dataclasses.replace(schema, columns=read_cols)
    return TableLayout(namespace, table, schema.version, tuple(columns), description, read_schema)


def _string_pg(prop: Mapping[str, Any], col: ColumnSchema) -> str:
    # The oversized-text sentinel form is text whatever the text branch says (official).
    if "oneOf" in prop or col.max_length is None:
        return "text"
    return f"character varying({col.max_length})"


def _db_column(namespace: str, table: str, col: ColumnSchema, prop: Mapping[str, Any]
               ) -> DbColumn:
    enum_type = f"{table}__{col.name}"
    qualified = f"{qi(namespace)}.{qi(enum_type)}"
    # The official client comments an object column with the object's title (its type's
    # docstring), any other column with its description.
    comment = col.description
    if col.kind == "struct" and isinstance(prop, Mapping) and isinstance(prop.get("title"), str):
        comment = prop["title"]
    common: dict[str, Any] = {"name": col.name, "kind": col.kind, "nullable": col.nullable,
                              "description": comment, "precision": col.precision,
                              "scale": col.scale}
    if col.kind == "string" and "oneOf" not in prop:  # the sentinel form is unbounded text
        common["max_length"] = col.max_length
    if col.kind == "enum":
        return DbColumn(pg_type=qualified, duck_type=qualified, enum=col.enum,
                        enum_type=enum_type, **common)
    if col.kind == "array":
        items = prop.get("items", {}) if isinstance(prop, Mapping) else {}
        if col.items == "enum":
            return DbColumn(pg_type=f"{qualified}[]", duck_type=f"{qualified}[]", enum=col.enum,
                            enum_type=enum_type, item_pg=qualified, item_duck=qualified,
                            item_kind="enum", **common)
        item_col = ColumnSchema(name=col.name, part=col.part, kind=col.items or "string",
                                nullable=True, max_length=items.get("maxLength"))
        item_pg, item_duck = _scalar_types(item_col, items)
        return DbColumn(pg_type=f"{item_pg}[]", duck_type=f"{item_duck}[]", item_pg=item_pg,
                        item_duck=item_duck, item_kind=item_col.kind, **common)
    pg, duck = _scalar_types(col, prop)
    return DbColumn(pg_type=pg, duck_type=duck, **common)


def _scalar_types(col: ColumnSchema, prop: Mapping[str, Any]) -> tuple[str, str]:
    if col.kind in _PG_SIMPLE:
        return _PG_SIMPLE[col.kind], _DUCK_SIMPLE[col.kind]
    if col.kind == "decimal":
        return f"numeric({col.precision},{col.scale})", f"DECIMAL({col.precision},{col.scale})"
    if col.kind == "string":
        return _string_pg(prop, col), "VARCHAR"
    if col.kind in ("enum", "array", "struct"):  # pragma: no cover - handled by the caller
        raise AssertionError(col.kind)
    raise SchemaError(f"no database type for column {col.name!r} of kind {col.kind!r}")


# ------------------------------------------------------------------------------------------
# Arrow batches shaped for loading


def naive_utc(arr: Any) -> Any:
    """``timestamp[us, UTC]`` as naive ``timestamp[us]`` holding the same UTC wall-clock time."""
    return arr.cast(pa.timestamp("us"))  # the stored values are UTC already: no shift


_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i
_DASHES: Final = (8, 13, 18, 23)
_KEEP36: Final = np.array([i for i in range(36) if i not in _DASHES])


def uuid_bytes(arr: Any) -> pa.Array:
    """UUID text (``8-4-4-4-12`` hex) as 16-byte binary, the PostgreSQL wire form of ``uuid``.

    Vectorised for the canonical form; anything else goes through :mod:`uuid` value by value,
    which also says which value is malformed.
    """
    import uuid as uuid_mod

    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if arr.offset:
        arr = pa.concat_arrays([arr])  # a copy whose buffers start at the first value
    n = len(arr)
    filled: Any = pc.fill_null(arr, "00000000-0000-0000-0000-000000000000")
    lengths: Any = pc.binary_length(filled)
    if n and pc.all(pc.equal(lengths, pa.scalar(36, lengths.type))).as_py():
        offsets = np.frombuffer(filled.buffers()[1], dtype=np.int32, count=n + 1,
                                offset=filled.offset * 4)
        data = np.frombuffer(filled.buffers()[2], dtype=np.uint8)
        start = int(offsets[0])
        chars = data[start:start + 36 * n].reshape(n, 36)
        nibbles = _HEX[chars[:, _KEEP36]]
        if (chars[:, list(_DASHES)] == ord("-")).all() and (nibbles != 255).all():
            packed = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
            validity = arr.buffers()[0] if arr.null_count else None
            return pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(16), n, [validity, pa.py_buffer(np.ascontiguousarray(packed).tobytes())],
                null_count=arr.null_count)
    out: list[bytes | None] = []
    for v in arr.to_pylist():
        try:
            out.append(None if v is None else uuid_mod.UUID(v).bytes)
        except ValueError:
            raise ValueError(f"{v!r} is not a UUID") from None
    return pa.array(out, pa.binary(16))


def inet_bytes(arr: pa.Array) -> pa.Array:
    """IP address text as PostgreSQL's binary ``inet`` (family, bits, is_cidr, length, bytes)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    encoded = arr.dictionary_encode()
    wire = []
    for text in encoded.dictionary.to_pylist():
        try:
            ip = ipaddress.ip_address(str(text))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address") from None
        family = 2 if ip.version == 4 else 3  # PGSQL_AF_INET / PGSQL_AF_INET6
        raw = ip.packed
        wire.append(bytes([family, len(raw) * 8, 0, len(raw)]) + raw)
    return pa.array(wire, pa.binary()).take(encoded.indices)


def jsonb_wire(arr: pa.Array) -> pa.Array:
    """JSON text with the ``jsonb`` binary-format version byte in front (PostgreSQL COPY)."""
    return pc.utf8_replace_slice(arr, 0, 0, "\x01")


def checked_lengths(batches: Iterable[pa.RecordBatch], layout: TableLayout
                    ) -> Iterator[pa.RecordBatch]:
    """Yield ``batches``; refuse the first string longer than its column's ``maxLength``.

    A ``varchar(n)`` column would refuse it mid-load with the database's own words, which name
    neither the column nor the row; this names both, and nothing has been stored yet.
    """
    bounded = [c for c in layout.columns if c.kind == "string" and c.max_length is not None]
    for batch in batches:
        for col in bounded:
            assert col.max_length is not None
            lengths = pc.utf8_length(batch.column(col.name))  # type: ignore[call-overload]
            longest = pc.max(lengths).as_py()
            if longest is not None and longest > col.max_length:
                row = pc.index(lengths, longest).as_py()
                key = batch.column(layout.key.name)[row].as_py()
                raise SchemaError(
                    f"{layout.name}, column {col.name!r}: the API sent a value of {longest} "
                    f"characters (key {key}), longer than the schema's maxLength "
                    f"{col.max_length}; nothing was stored: report it to Instructure support "
                    "(with the job id), or sync into DuckDB, whose text has no length limit",
                    table=layout.name)
        yield batch
