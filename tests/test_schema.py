"""dapframe.schema: DAP table schema documents -> TableSchema and canonical Arrow schemas."""

from __future__ import annotations

import copy
from typing import Any

import pyarrow as pa
import pytest

from dapframe import errors
from dapframe.emulator._tables import TABLES, arrow_schema, bump, json_schema
from dapframe.errors import DapError, SchemaError, UsageError
from dapframe.schema import OVERSIZED, TIMESTAMP_TYPE, UNSPECIFIED, TableSchema

UTC_US = pa.timestamp("us", tz="UTC")


def doc(value: dict[str, Any], *, required: list[str] | None = None,
        key: dict[str, Any] | None = None) -> dict[str, Any]:
    """A section 7 shaped document with the given value properties."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "meta": {"type": "object",
                     "properties": {"ts": {"type": "string", "format": "date-time"},
                                    "action": {"type": "string", "enum": ["U", "D"]}},
                     "additionalProperties": False, "required": ["ts"]},
            "key": {"type": "object",
                    "properties": key or {"id": {"type": "integer", "format": "int64"}},
                    "additionalProperties": False, "required": ["id"], "title": "Key title"},
            "value": {"type": "object", "properties": value, "additionalProperties": False,
                      "required": required or [], "title": "The table."},
        },
        "additionalProperties": False,
        "required": ["key"],
    }


def parse(value: dict[str, Any], **kwargs: Any) -> TableSchema:
    return TableSchema.from_json("canvas", "things", doc(value, **kwargs), 3)


def one(prop: dict[str, Any]) -> Any:
    return parse({"c": prop}).values[0]


@pytest.mark.parametrize("spec", list(TABLES.values()), ids=lambda s: s.name)
def test_every_emulator_table_parses_to_the_records_types(spec: Any) -> None:
    schema = TableSchema.from_json(spec.namespace, spec.name, json_schema(spec), spec.version)
    assert (schema.namespace, schema.table, schema.version) == (spec.namespace, spec.name, 1)
    assert schema.title == spec.title
    assert [c.name for c in schema.key] == [spec.key.name]
    assert [c.name for c in schema.values] == [c.name for c in spec.columns]
    for incremental in (False, True):
        ours = schema.arrow_schema(incremental=incremental, naming="dotted")
        records = arrow_schema(spec, incremental=incremental)
        assert ours.names == records.names
        for col, field, rec in zip(schema.columns, list(ours)[1 + incremental:],
                                   list(records)[1 + incremental:], strict=True):
            if col.kind == "struct":
                assert field.type == pa.struct([(f, pa.string()) for f in col.fields])
            elif col.kind == "array":
                assert field.type == pa.list_(pa.string())
            else:
                assert field.type == rec.type, col.label
    # required value columns: non-null in snapshots, nullable in incremental results (D rows)
    for col in schema.values:
        assert col.nullable is not spec.column(col.name).required
        snap = schema.arrow_schema(incremental=False).field(col.name)
        inc = schema.arrow_schema(incremental=True).field(col.name)
        assert snap.nullable is col.nullable and inc.nullable


def test_kinds_and_details() -> None:
    schema = parse({
        "i": {"type": "integer", "description": "no format"},
        "i16": {"type": "integer", "format": "int16", "default": 0},
        "i32": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 10},
        "ienum": {"type": "integer", "enum": [200, 404]},
        "f32": {"type": "number", "format": "float32"},
        "f64": {"type": "number", "format": "float64", "title": "T"},
        "num": {"type": "number"},
        "dec": {"type": "number", "exclusiveMinimum": -10000, "exclusiveMaximum": 10000,
                "multipleOf": 0.01},
        "dec_nobounds": {"type": "number", "multipleOf": 0.001},
        "dec_float_bounds": {"type": "number", "exclusiveMinimum": -1e3,
                             "exclusiveMaximum": 1e3, "multipleOf": 10.0**-7},
        "b": {"type": "boolean"},
        "s": {"type": "string", "maxLength": 255, "description": "Name."},
        "txt": {"type": "string"},
        "ts": {"type": "string", "format": "date-time"},
        "d": {"type": "string", "format": "date"},
        "t": {"type": "string", "format": "time"},
        "u": {"type": "string", "format": "uuid"},
        "ip4": {"type": "string", "format": "ipv4"},
        "ip": {"oneOf": [{"type": "string", "format": "ipv4"},
                         {"type": "string", "format": "ipv6"}]},
        "big": {"oneOf": [{"type": "string", "const": OVERSIZED},
                          {"type": "string", "maxLength": 4000}]},
        "e": {"type": "string", "enum": ["a", "b", UNSPECIFIED]},
        "e_nosentinel": {"type": "string", "enum": ["x", "x", "y"]},
        "e_notype": {"enum": ["p", "q"]},
        "arr": {"type": "array", "items": {"type": "string", "enum": ["on", "off"]}},
        "arr_s": {"type": "array", "items": {"type": "string"}},
        "obj": {"type": "object", "additionalProperties": False, "title": "Extracted",
                "properties": {"a": {"type": "string"}, "n": {"type": "integer"}}},
        "obj_open": {"type": "object", "properties": {"z": {"type": "string"}}},
        "c": {"type": "string", "const": "fixed"},
        "c_notype": {"const": 5},
    }, required=["s", "ts"])
    by = {c.name: c for c in schema.values}
    kinds = {name: c.kind for name, c in by.items()}
    assert kinds == {
        "i": "int64", "i16": "int16", "i32": "int32", "ienum": "int64", "f32": "float32",
        "f64": "float64", "num": "float64", "dec": "decimal", "dec_nobounds": "decimal",
        "dec_float_bounds": "decimal", "b": "bool", "s": "string", "txt": "string",
        "ts": "timestamp", "d": "date", "t": "time", "u": "uuid", "ip4": "ip", "ip": "ip",
        "big": "string", "e": "enum", "e_nosentinel": "enum", "e_notype": "enum",
        "arr": "array", "arr_s": "array", "obj": "struct", "obj_open": "struct", "c": "string",
        "c_notype": "int64",
    }
    assert (by["dec"].precision, by["dec"].scale) == (6, 2)
    assert (by["dec_nobounds"].precision, by["dec_nobounds"].scale) == (38, 3)
    assert (by["dec_float_bounds"].precision, by["dec_float_bounds"].scale) == (10, 7)
    assert by["s"].max_length == 255 and by["big"].max_length == 4000
    assert by["s"].description == "Name."
    assert by["e"].enum == ("a", "b", UNSPECIFIED)
    assert by["e_nosentinel"].enum == ("x", "y", UNSPECIFIED)
    assert by["arr"].items == "enum" and by["arr"].enum == ("on", "off", UNSPECIFIED)
    assert by["arr_s"].items == "string" and by["arr_s"].enum == ()
    assert by["obj"].fields == ("a", "n")
    assert not by["s"].nullable and not by["ts"].nullable and by["i"].nullable
    assert schema.title == "The table."

    arrow = schema.arrow_schema(incremental=False)
    expected = {
        "i": pa.int64(), "i16": pa.int16(), "i32": pa.int32(), "f32": pa.float32(),
        "f64": pa.float64(), "dec": pa.decimal128(6, 2), "b": pa.bool_(), "s": pa.string(),
        "ts": UTC_US, "d": pa.date32(), "t": pa.time64("us"), "u": pa.string(),
        "ip": pa.string(), "big": pa.string(), "e": pa.string(),
        "arr": pa.list_(pa.string()),
        "obj": pa.struct([("a", pa.string()), ("n", pa.string())]),
    }
    for name, typ in expected.items():
        assert arrow.field(name).type == typ, name
    assert arrow.field("meta.ts").type == TIMESTAMP_TYPE


def test_names_and_order() -> None:
    schema = parse({"name": {"type": "string"}, "n": {"type": "integer"}})
    assert schema.column_names(incremental=False) == ["meta.ts", "id", "name", "n"]
    assert schema.column_names(incremental=True, naming="dotted") == [
        "meta.ts", "meta.action", "key.id", "value.name", "value.n"]
    inc = schema.arrow_schema(incremental=True)
    assert inc.names == ["meta.ts", "meta.action", "id", "name", "n"]
    assert not inc.field("meta.ts").nullable and not inc.field("meta.action").nullable
    assert not inc.field("id").nullable
    assert [c.label for c in schema.columns] == ["key.id", "value.name", "value.n"]


def test_naming_errors() -> None:
    schema = parse({"id": {"type": "string"}})  # the value column shadows the key's bare name
    with pytest.raises(UsageError, match="naming='dotted'"):
        schema.arrow_schema(incremental=False)
    assert schema.column_names(incremental=False, naming="dotted") == [
        "meta.ts", "key.id", "value.id"]
    with pytest.raises(UsageError, match="unknown naming"):
        schema.column_names(incremental=False, naming="flat")


def test_bumped_schema_parses() -> None:
    spec = bump(TABLES["canvas", "courses"])
    schema = TableSchema.from_json("canvas", "courses", json_schema(spec), spec.version)
    assert schema.version == 2 and schema.values[-1].name == "emulator_note_v2"
    state = next(c for c in schema.values if c.name == "workflow_state")
    assert state.enum[-2:] == ("emulator_state_v2", UNSPECIFIED)


def test_schema_error_in_the_tree() -> None:
    assert issubclass(SchemaError, DapError) and SchemaError.exit_code == 5
    assert "SchemaError" in errors.__all__ and "SchemaError" in (errors.__doc__ or "")


BAD: list[tuple[str, Any, str, str]] = [
    # (id, mutation of value properties or whole doc, column, keyword)
    ("unknown keyword", {"c": {"type": "string", "x-extra": 1}}, "value.c", "x-extra"),
    ("deprecated", {"c": {"type": "integer", "deprecated": True}}, "value.c", "deprecated"),
    ("anyOf", {"c": {"anyOf": [{"type": "string"}]}}, "value.c", "anyOf"),
    ("allOf", {"c": {"allOf": [{"type": "string"}]}}, "value.c", "allOf"),
    ("type array", {"c": {"type": ["string", "null"]}}, "value.c", "type"),
    ("unknown type", {"c": {"type": "null"}}, "value.c", "type"),
    ("no type", {"c": {"description": "?"}}, "value.c", "type"),
    ("free-form object", {"c": {"type": "object"}}, "value.c", "properties"),
    ("open object", {"c": {"type": "object", "properties": {"a": {"type": "string"}},
                           "additionalProperties": True}}, "value.c", "additionalProperties"),
    ("map object", {"c": {"type": "object", "properties": {"a": {"type": "string"}},
                          "additionalProperties": {"type": "string"}}},
     "value.c", "additionalProperties"),
    ("bad field", {"c": {"type": "object", "properties": {"a": {"type": "string", "x": 1}}}},
     "value.c.a", "x"),
    ("unknown string format", {"c": {"type": "string", "format": "email"}}, "value.c", "format"),
    ("unknown int format", {"c": {"type": "integer", "format": "int8"}}, "value.c", "format"),
    ("unknown number format", {"c": {"type": "number", "format": "double"}},
     "value.c", "format"),
    ("multipleOf 0.03", {"c": {"type": "number", "multipleOf": 0.03}}, "value.c", "multipleOf"),
    ("bounds without multipleOf", {"c": {"type": "number", "exclusiveMaximum": 100}},
     "value.c", "exclusiveMaximum"),
    ("asymmetric bounds", {"c": {"type": "number", "exclusiveMinimum": 0,
                                 "exclusiveMaximum": 100, "multipleOf": 1}},
     "value.c", "exclusiveMinimum"),
    ("too precise", {"c": {"type": "number", "exclusiveMaximum": 1e40, "multipleOf": 1}},
     "value.c", "exclusiveMaximum"),
    ("odd oneOf", {"c": {"oneOf": [{"type": "string"}, {"type": "integer"}]}},
     "value.c", "oneOf"),
    ("enum of numbers", {"c": {"type": "string", "enum": [1, 2]}}, "value.c", "enum"),
    ("array without items", {"c": {"type": "array"}}, "value.c", "items"),
    ("bad items", {"c": {"type": "array", "items": {"type": "string", "format": "x"}}},
     "value.c[]", "format"),
    ("maxLength text", {"c": {"type": "string", "maxLength": "255"}}, "value.c", "maxLength"),
    ("property not an object", {"c": "string"}, "value.c", ""),
]


@pytest.mark.parametrize(("value", "column", "keyword"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_properties_raise_schema_error(value: dict[str, Any], column: str,
                                           keyword: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse(value)
    err = info.value
    assert err.table == "canvas.things" and err.column == column
    assert err.keyword == (keyword or None)
    message = str(err)
    assert "canvas.things" in message and repr(column) in message
    assert keyword in message and "upgrade dapframe or report it" in message
    assert "\n" not in message


def _mutated(fn: Any) -> dict[str, Any]:
    d = copy.deepcopy(doc({"name": {"type": "string"}}))
    fn(d)
    return d


BAD_DOCS: list[tuple[str, Any, str | None]] = [
    ("top-level keyword", lambda d: d.update({"x-version": 3}), "x-version"),
    ("group keyword", lambda d: d["properties"]["value"].update({"nullable": True}),
     "nullable"),
    ("no key", lambda d: d["properties"].pop("key"), None),
    ("empty key", lambda d: d["properties"]["key"].update({"properties": {}}), "properties"),
    ("unknown part", lambda d: d["properties"].update({"extra": {"type": "object"}}),
     "properties"),
    ("no properties", lambda d: d.pop("properties"), "properties"),
    ("open value", lambda d: d["properties"]["value"].update({"additionalProperties": True}),
     "additionalProperties"),
    ("not an object", lambda d: d.update({"type": "array"}), "type"),
]


@pytest.mark.parametrize(("fn", "keyword"), [b[1:] for b in BAD_DOCS],
                         ids=[b[0] for b in BAD_DOCS])
def test_bad_documents_raise_schema_error(fn: Any, keyword: str | None) -> None:
    with pytest.raises(SchemaError, match="upgrade dapframe") as info:
        TableSchema.from_json("canvas", "things", _mutated(fn), 1)
    assert info.value.keyword == keyword


def test_non_mapping_document() -> None:
    with pytest.raises(SchemaError, match="not an object"):
        TableSchema.from_json("canvas", "things", [], 1)  # type: ignore[arg-type]


def test_value_part_is_optional() -> None:
    d = doc({})
    del d["properties"]["value"]
    schema = TableSchema.from_json("canvas", "keys_only", d, 1)
    assert [c.label for c in schema.columns] == ["key.id"]
    assert schema.title == "Key title"
