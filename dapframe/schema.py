"""DAP table schema documents as typed column lists and canonical Arrow schemas.

:meth:`TableSchema.from_json` reads the JSON Schema document the schema endpoint serves
(reference section 7) into a :class:`TableSchema`: one :class:`ColumnSchema` per key and value
column, with a *kind* that decides the column's type in every format and frame library. Only
the vocabulary of section 7 is understood; anything else raises
:class:`~dapframe.errors.SchemaError` naming the table, the column and the keyword, so a new
upstream schema feature fails loudly instead of being decoded wrongly.

Kinds and their canonical Arrow types (identical whatever the transfer format):

========================  =====================================================
kind                      Arrow
========================  =====================================================
int16 / int32 / int64     int16 / int32 / int64 (an integer without format: int64)
float32 / float64         float32 / float64 (a number without format: float64)
decimal                   decimal128(precision, scale)
bool                      bool
string, uuid, ip, enum    string (enums stay strings in Arrow; frames make them enums)
timestamp                 timestamp[us, tz=UTC]
date / time               date32 / time64[us]
struct                    struct<field: string, ...>
array                     list<string>
========================  =====================================================

Decisions worth knowing:

- Struct fields are always strings. A property of an object column that is not a string
  (``integer``, ``boolean``, a nested object ...) is still accepted and its values are carried
  as compact JSON text (``1``, ``true``, ``{"a":"b"}``), which is what expanded mode writes
  for such members too.
- Array items are always strings in Arrow, whatever their declared kind; ``items`` records the
  declared item kind (``"enum"`` with the members in ``enum``).
- ``__dap_unspecified__`` is added to every string enum's members if a schema ever omits it,
  because data may carry it (reference 6.6).
- An integer with ``enum``, ``minimum``/``maximum`` or no ``format`` is ``int64``, the widest
  width the official client would pick.
- A ``number`` with ``multipleOf`` (and usually ``exclusiveMinimum``/``exclusiveMaximum``) is
  a decimal: ``multipleOf = 10**-scale`` and ``exclusiveMaximum = 10**(precision - scale)``;
  without bounds the precision is 38.
- Unknown ``format`` values are refused like unknown keywords: a guessed type could silently
  change once dapframe learns the format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa

from dapframe.errors import SchemaError, UsageError

__all__ = [
    "KINDS",
    "NAMINGS",
    "OVERSIZED",
    "TIMESTAMP_TYPE",
    "UNSPECIFIED",
    "ColumnSchema",
    "TableSchema",
]

#: Enum sentinel: the source value is not a published member (reference 6.6).
UNSPECIFIED: Final = "__dap_unspecified__"
#: Text sentinel: the value was too large to export (reference 6.6).
OVERSIZED: Final = "__dap_oversized_truncated__"
#: Arrow type of ``meta.ts`` and of every timestamp column.
TIMESTAMP_TYPE: Final = pa.timestamp("us", tz="UTC")
#: Column naming schemes of :meth:`TableSchema.arrow_schema`.
NAMINGS: Final = ("plain", "dotted")

#: Every column kind :class:`ColumnSchema` may carry.
KINDS: Final = frozenset({
    "int16", "int32", "int64", "float32", "float64", "decimal", "bool", "string", "uuid", "ip",
    "timestamp", "date", "time", "enum", "struct", "array",
})

_MAX_PRECISION: Final = 38  # decimal128
_FIX: Final = "upgrade dapframe or report it"

# Keywords every column shape accepts: annotations that never change the type.
_ANNOTATIONS: Final = frozenset({"description", "title", "default", "const"})
# Keywords per column shape (section 7 vocabulary, plus annotations).
_SHAPE_KEYWORDS: Final[dict[str, frozenset[str]]] = {
    "integer": _ANNOTATIONS | {"type", "format", "enum", "minimum", "maximum",
                               "exclusiveMinimum", "exclusiveMaximum"},
    "number": _ANNOTATIONS | {"type", "format", "minimum", "maximum", "exclusiveMinimum",
                              "exclusiveMaximum", "multipleOf"},
    "boolean": _ANNOTATIONS | {"type"},
    "string": _ANNOTATIONS | {"type", "format", "maxLength", "enum"},
    "array": _ANNOTATIONS | {"type", "items"},
    "object": _ANNOTATIONS | {"type", "properties", "additionalProperties", "required"},
    "oneOf": _ANNOTATIONS | {"oneOf"},
    "enum": _ANNOTATIONS | {"enum"},
}
_DOC_KEYWORDS: Final = frozenset({"$schema", "$id", "type", "properties", "additionalProperties",
                                  "required", "title", "description"})
_GROUP_KEYWORDS: Final = frozenset({"type", "properties", "additionalProperties", "required",
                                    "title", "description"})
_INT_FORMATS: Final = {"int16": "int16", "int32": "int32", "int64": "int64"}
_FLOAT_FORMATS: Final = {"float32": "float32", "float64": "float64"}
_STRING_FORMATS: Final = {"date-time": "timestamp", "date": "date", "time": "time",
                          "uuid": "uuid", "ipv4": "ip", "ipv6": "ip"}


@dataclass(frozen=True)
class ColumnSchema:
    """One key or value column of a DAP table.

    Parameters
    ----------
    name : str
        Bare column name, e.g. ``"id"``, ``"workflow_state"``.
    part : str
        ``"key"`` or ``"value"``.
    kind : str
        One of :data:`KINDS`; decides the Arrow, Polars and DuckDB types.
    nullable : bool
        ``False`` for key columns and for value columns listed in ``value.required``.
    max_length : int or None
        ``maxLength`` of string columns.
    enum : tuple of str
        Members of an enum column, or of the items of an enum array.
    precision, scale : int or None
        Decimal precision and scale.
    fields : tuple of str
        Property names of a struct column (every field is a string in Arrow).
    items : str or None
        Declared kind of an array column's items (``"enum"``, ``"string"``, ...).
    description : str
        The column's ``description``.
    """

    name: str
    part: str
    kind: str
    nullable: bool
    max_length: int | None = None
    enum: tuple[str, ...] = ()
    precision: int | None = None
    scale: int | None = None
    fields: tuple[str, ...] = ()
    items: str | None = None
    description: str = ""

    @property
    def label(self) -> str:
        """Dotted label as used in csv/tsv headers and parquet: ``key.id``, ``value.name``."""
        return f"{self.part}.{self.name}"

    @property
    def arrow_type(self) -> pa.DataType:
        """The canonical Arrow type of the column (see the module docstring)."""
        return _arrow_type(self)


def _arrow_type(col: ColumnSchema) -> pa.DataType:
    kind = col.kind
    simple: dict[str, pa.DataType] = {
        "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
        "float32": pa.float32(), "float64": pa.float64(), "bool": pa.bool_(),
        "timestamp": TIMESTAMP_TYPE, "date": pa.date32(), "time": pa.time64("us"),
    }
    if kind in simple:
        return simple[kind]
    if kind == "decimal":
        assert col.precision is not None and col.scale is not None
        return pa.decimal128(col.precision, col.scale)
    if kind == "struct":
        return pa.struct([pa.field(f, pa.string()) for f in col.fields])
    if kind == "array":
        return pa.list_(pa.string())
    return pa.string()


@dataclass(frozen=True)
class TableSchema:
    """The columns of one DAP table at one schema version.

    Parameters
    ----------
    namespace, table : str
        Where the table lives, e.g. ``"canvas"``, ``"accounts"``.
    version : int
        Schema version the document was served with.
    title : str
        One-line table description (the ``title`` of ``value``, else of ``key``).
    columns : tuple of ColumnSchema
        Key columns first, then value columns, each in schema order.
    """

    namespace: str
    table: str
    version: int
    title: str
    columns: tuple[ColumnSchema, ...]

    @classmethod
    def from_json(cls, namespace: str, table: str, doc: Mapping[str, Any],
                  version: int) -> TableSchema:
        """Parse a table schema document (reference section 7).

        Parameters
        ----------
        namespace, table : str
            The table the document describes (used in error messages).
        doc : dict
            The ``schema`` object of the schema endpoint's answer.
        version : int
            The ``version`` the endpoint sent next to it.

        Returns
        -------
        TableSchema

        Raises
        ------
        SchemaError
            The document uses a keyword or a shape outside the section 7 vocabulary (unknown
            keyword, ``anyOf``, a type array, a free-form object, an unknown ``format`` ...),
            or has no key column. The message names the table, the column and the keyword.
        """
        return _Parser(f"{namespace}.{table}", version).table(namespace, table, doc)

    @property
    def key(self) -> tuple[ColumnSchema, ...]:
        """The primary-key columns (all known tables have exactly one)."""
        return tuple(c for c in self.columns if c.part == "key")

    @property
    def values(self) -> tuple[ColumnSchema, ...]:
        """The value (non-key) columns, in schema order."""
        return tuple(c for c in self.columns if c.part == "value")

    def arrow_schema(self, *, incremental: bool, naming: str = "plain") -> pa.Schema:
        """The canonical Arrow schema of this table's rows.

        Parameters
        ----------
        incremental : bool
            Whether rows come from an incremental query (adds ``meta.action``; value columns
            become nullable because ``D`` rows carry no values).
        naming : {"plain", "dotted"}
            ``"plain"``: key and value columns by bare name, meta columns keep their dotted
            labels (``meta.ts``) so they cannot collide. ``"dotted"``: the official labels
            everywhere (``key.id``, ``value.name``).

        Returns
        -------
        pyarrow.Schema
            ``meta.ts``, [``meta.action``], key columns, value columns. ``meta.*`` and key
            fields are non-nullable; value fields are nullable unless required (snapshots).

        Raises
        ------
        UsageError
            Unknown ``naming``, or two plain names collide (use ``naming="dotted"``).
        """
        names = self.column_names(incremental=incremental, naming=naming)
        fields: list[pa.Field] = [pa.field("meta.ts", TIMESTAMP_TYPE, nullable=False)]
        if incremental:
            fields.append(pa.field("meta.action", pa.string(), nullable=False))
        for name, col in zip(names[len(fields):], self.columns, strict=True):
            nullable = col.nullable or (incremental and col.part == "value")
            fields.append(pa.field(name, col.arrow_type, nullable=nullable))
        return pa.schema(fields)

    def column_names(self, *, incremental: bool, naming: str = "plain") -> list[str]:
        """Column names of :meth:`arrow_schema`, in order.

        Parameters
        ----------
        incremental : bool
            Include ``meta.action``.
        naming : {"plain", "dotted"}
            See :meth:`arrow_schema`.

        Raises
        ------
        UsageError
            Unknown ``naming``, or two plain names collide.
        """
        if naming not in NAMINGS:
            raise UsageError(f"unknown naming {naming!r}: choose one of {', '.join(NAMINGS)}")
        names = ["meta.ts", "meta.action"] if incremental else ["meta.ts"]
        names += [c.name if naming == "plain" else c.label for c in self.columns]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise UsageError(f"{self.namespace}.{self.table}: column names {dup} repeat with "
                             "naming='plain'; use naming='dotted'")
        return names


class _Parser:
    """Reads one schema document; knows the table name and version for error messages."""

    def __init__(self, table: str, version: int) -> None:
        self.table_name = table
        self.version = version

    def fail(self, column: str | None, keyword: str | None, problem: str) -> SchemaError:
        where = f"column {column!r}: " if column else ""
        return SchemaError(
            f"schema of {self.table_name} (version {self.version}): {where}{problem}; {_FIX}",
            table=self.table_name, column=column, keyword=keyword)

    def check_keywords(self, obj: Mapping[str, Any], allowed: frozenset[str],
                       column: str | None, what: str) -> None:
        for keyword in obj:
            if keyword not in allowed:
                raise self.fail(column, keyword, f"unknown keyword {keyword!r} for {what}")

    def table(self, namespace: str, table: str, doc: Mapping[str, Any]) -> TableSchema:
        if not isinstance(doc, Mapping):
            raise self.fail(None, None, f"the document is a {type(doc).__name__}, not an object")
        self.check_keywords(doc, _DOC_KEYWORDS, None, "the document")
        if doc.get("type", "object") != "object":
            raise self.fail(None, "type", f"the document's type is {doc['type']!r}, not 'object'")
        props = doc.get("properties")
        if not isinstance(props, Mapping):
            raise self.fail(None, "properties", "the document has no 'properties' object")
        for group in props:
            if group not in ("meta", "key", "value"):
                raise self.fail(group, "properties", f"unknown record part {group!r}")
        if "meta" in props:
            self.group_properties("meta", props["meta"])  # validated, columns are fixed
        # Key columns are never null, whether or not 'required' lists them.
        key_props, _, key_title = self.group_properties("key", props.get("key"))
        if not key_props:
            raise self.fail("key", "properties", "the table has no key column")
        value_props, value_required, value_title = ({}, frozenset(), "") if "value" not in props \
            else self.group_properties("value", props["value"])
        columns = [self.column("key", name, prop, nullable=False)
                   for name, prop in key_props.items()]
        columns += [self.column("value", name, prop, nullable=name not in value_required)
                    for name, prop in value_props.items()]
        title = value_title or key_title or str(doc.get("title", ""))
        return TableSchema(namespace, table, int(self.version), title, tuple(columns))

    def group_properties(self, group: str, obj: Any
                         ) -> tuple[Mapping[str, Any], frozenset[str], str]:
        if not isinstance(obj, Mapping):
            raise self.fail(group, None, f"'{group}' is missing or not an object")
        self.check_keywords(obj, _GROUP_KEYWORDS, group, f"the '{group}' object")
        if obj.get("type", "object") != "object":
            raise self.fail(group, "type", f"'{group}' has type {obj['type']!r}, not 'object'")
        props = obj.get("properties")
        if not isinstance(props, Mapping):
            raise self.fail(group, "properties", f"'{group}' has no 'properties' object")
        self.check_free_form(obj, group)
        required = obj.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise self.fail(group, "required", "'required' is not a list of names")
        title = obj.get("title", "")
        return props, frozenset(required), title if isinstance(title, str) else ""

    def check_free_form(self, obj: Mapping[str, Any], label: str) -> None:
        extra = obj.get("additionalProperties", False)
        if extra is not False:
            raise self.fail(label, "additionalProperties",
                            f"free-form object (additionalProperties={extra!r}) is not supported")

    # -- columns --------------------------------------------------------------------------

    def column(self, part: str, name: Any, prop: Any, *, nullable: bool) -> ColumnSchema:
        label = f"{part}.{name}"
        if not isinstance(name, str) or not name:
            raise self.fail(label, None, "column names must be non-empty strings")
        info = self.shape(label, prop)
        description = prop.get("description", "")
        return ColumnSchema(name=name, part=part, nullable=nullable,
                            description=description if isinstance(description, str) else "",
                            **info)

    def shape(self, label: str, prop: Any) -> dict[str, Any]:
        """Kind and type details of one property (also used for items and struct fields)."""
        if not isinstance(prop, Mapping):
            raise self.fail(label, None, f"the property is a {type(prop).__name__}, not an object")
        for keyword in ("anyOf", "allOf", "not", "$ref", "if"):
            if keyword in prop:
                raise self.fail(label, keyword, f"'{keyword}' is not supported")
        typ = prop.get("type")
        if isinstance(typ, list):
            raise self.fail(label, "type", f"type arrays ({typ!r}) are not supported")
        if typ is None:
            if "oneOf" in prop:
                return self.one_of(label, prop)
            if "enum" in prop:
                self.check_keywords(prop, _SHAPE_KEYWORDS["enum"], label, "an enum")
                return {"kind": "enum", "enum": self.members(label, prop["enum"])}
            if "const" in prop:
                return self.const_only(label, prop)
            raise self.fail(label, "type", "the property has no 'type'")
        if typ not in _SHAPE_KEYWORDS:
            raise self.fail(label, "type", f"unknown type {typ!r}")
        self.check_keywords(prop, _SHAPE_KEYWORDS[typ], label, f"type {typ!r}")
        if typ == "integer":
            return self.integer(label, prop)
        if typ == "number":
            return self.number(label, prop)
        if typ == "boolean":
            return {"kind": "bool"}
        if typ == "string":
            return self.string(label, prop)
        if typ == "array":
            return self.array(label, prop)
        return self.object(label, prop)

    def integer(self, label: str, prop: Mapping[str, Any]) -> dict[str, Any]:
        fmt = prop.get("format")
        if fmt is None:
            return {"kind": "int64"}
        if fmt not in _INT_FORMATS:
            raise self.fail(label, "format", f"unknown integer format {fmt!r}")
        return {"kind": _INT_FORMATS[fmt]}

    def number(self, label: str, prop: Mapping[str, Any]) -> dict[str, Any]:
        decimal_keywords = {"multipleOf", "exclusiveMinimum", "exclusiveMaximum"} & set(prop)
        if not decimal_keywords:
            fmt = prop.get("format", "float64")
            if fmt not in _FLOAT_FORMATS:
                raise self.fail(label, "format", f"unknown number format {fmt!r}")
            return {"kind": _FLOAT_FORMATS[fmt]}
        if "multipleOf" not in prop:
            keyword = sorted(decimal_keywords)[0]
            raise self.fail(label, keyword, f"'{keyword}' without 'multipleOf' gives no scale")
        scale = -self.power_of_ten(label, "multipleOf", prop["multipleOf"])
        if scale < 0:
            raise self.fail(label, "multipleOf", "multipleOf above 1 is not a decimal scale")
        upper = prop.get("exclusiveMaximum")
        lower = prop.get("exclusiveMinimum")
        if upper is not None and lower is not None and self.number_value(
                label, "exclusiveMinimum", lower) != -self.number_value(
                label, "exclusiveMaximum", upper):
            raise self.fail(label, "exclusiveMinimum",
                            "exclusiveMinimum is not -exclusiveMaximum")
        if upper is None and lower is None:
            precision = _MAX_PRECISION
        elif upper is not None:
            precision = scale + self.power_of_ten(label, "exclusiveMaximum", upper)
        else:
            bound = -self.number_value(label, "exclusiveMinimum", lower)
            precision = scale + self.power_of_ten(label, "exclusiveMinimum", bound)
        if not 1 <= precision <= _MAX_PRECISION or scale > precision:
            raise self.fail(label, "exclusiveMaximum",
                            f"decimal({precision},{scale}) from exclusiveMaximum and multipleOf "
                            "is outside decimal128")
        return {"kind": "decimal", "precision": precision, "scale": scale}

    def number_value(self, label: str, keyword: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(label, keyword, f"{keyword} is {value!r}, not a number")
        return float(value)

    def power_of_ten(self, label: str, keyword: str, value: Any) -> int:
        """The exponent ``e`` with ``value == 10**e`` (tolerating float rounding)."""
        number = self.number_value(label, keyword, value)
        if number > 0:
            exponent = round(math.log10(number))
            if math.isclose(number, 10.0**exponent, rel_tol=1e-9):
                return exponent
        raise self.fail(label, keyword, f"{keyword}={value!r} is not a power of ten")

    def string(self, label: str, prop: Mapping[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {"kind": "string"}
        if "maxLength" in prop:
            n = prop["maxLength"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise self.fail(label, "maxLength", f"maxLength {n!r} is not a count")
            info["max_length"] = n
        if "format" in prop:
            fmt = prop["format"]
            if fmt not in _STRING_FORMATS:
                raise self.fail(label, "format", f"unknown string format {fmt!r}")
            info["kind"] = _STRING_FORMATS[fmt]
        if "enum" in prop:
            if info["kind"] != "string":
                raise self.fail(label, "enum", "an enum with a format is not supported")
            info.update(kind="enum", enum=self.members(label, prop["enum"]))
        return info

    def members(self, label: str, values: Any) -> tuple[str, ...]:
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise self.fail(label, "enum", "enum members must be a list of strings")
        # Unique, in schema order, and always with the sentinel data may carry.
        return tuple(dict.fromkeys([*values, UNSPECIFIED]))

    def const_only(self, label: str, prop: Mapping[str, Any]) -> dict[str, Any]:
        self.check_keywords(prop, _ANNOTATIONS, label, "a const")
        value = prop["const"]
        if isinstance(value, bool):
            return {"kind": "bool"}
        if isinstance(value, int):
            return {"kind": "int64"}
        if isinstance(value, float):
            return {"kind": "float64"}
        if isinstance(value, str):
            return {"kind": "string"}
        raise self.fail(label, "const", f"const {value!r} is not a scalar")

    def one_of(self, label: str, prop: Mapping[str, Any]) -> dict[str, Any]:
        """The two known oneOf shapes: the oversized-text sentinel, and ipv4-or-ipv6."""
        self.check_keywords(prop, _SHAPE_KEYWORDS["oneOf"], label, "a oneOf")
        branches = prop["oneOf"]
        if not isinstance(branches, list) or not branches:
            raise self.fail(label, "oneOf", "oneOf is not a non-empty list")
        shapes = [self.shape(f"{label}.oneOf[{i}]", b) for i, b in enumerate(branches)]
        others = [s for b, s in zip(branches, shapes, strict=True)
                  if not (isinstance(b, Mapping) and b.get("const") == OVERSIZED)]
        kinds = {s["kind"] for s in others}
        if others and kinds == {"ip"}:
            return {"kind": "ip"}
        if len(others) < len(shapes) and len(others) == 1 and kinds <= {"string"}:
            return others[0]  # oversized sentinel or text (keeps the text's maxLength)
        raise self.fail(label, "oneOf",
                        f"oneOf of {sorted(kinds)} is not a known shape (only the oversized "
                        "sentinel with text, or ipv4 with ipv6)")

    def array(self, label: str, prop: Mapping[str, Any]) -> dict[str, Any]:
        items = prop.get("items")
        if items is None:
            raise self.fail(label, "items", "an array without 'items' is not supported")
        info = self.shape(f"{label}[]", items)
        return {"kind": "array", "items": info["kind"], "enum": info.get("enum", ())}

    def object(self, label: str, prop: Mapping[str, Any]) -> dict[str, Any]:
        props = prop.get("properties")
        if not isinstance(props, Mapping) or not props:
            raise self.fail(label, "properties",
                            "free-form object (no 'properties') is not supported")
        self.check_free_form(prop, label)
        for name, sub in props.items():
            if not isinstance(name, str) or not name:
                raise self.fail(label, "properties", "property names must be non-empty strings")
            self.shape(f"{label}.{name}", sub)  # validated; every field is text in Arrow
        return {"kind": "struct", "fields": tuple(props)}
