"""Round trips of the emulator's part encoder against the test-side reference decoder."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import zlib
from collections.abc import Sequence
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dapframe.emulator import _encode
from dapframe.emulator._encode import SUFFIX, encode_part
from tests._decode import compact_json, decode_part, expected_rows, header, nan_safe

UTC = dt.UTC
JSON_COLUMNS = frozenset({"value.settings", "value.types"})

HOSTILE = [
    "plain",
    'a "quoted" word',
    "comma, separated",
    "tab\there",
    "new\nline",
    "cr\rhere",
    "crlf\r\nend",
    "back\\slash",
    "trailing backslash\\",
    "NULL",
    "\\N",
    "",
    "é 中文 😀",
    "ctrl \x01\x1f \b\f\v end",
    " leading and trailing ",
    '"',
    ",",
    "\\t literal",
    "null",
]

SETTINGS = [
    {"hide_final_grade": "false", "title": 'He said "hi", then\tleft\n'},
    {"hide_final_grade": "true"},
    {"lock_at": "2025-01-01T00:00:00Z", "note": "é 中文 😀 \\ \x02"},
    {},
]
TYPES = [["online_url", "online_upload"], [], ["a\"b", "c,d"]]


def _column(values: Sequence[object], rows: int, nulls: set[int]) -> list[object]:
    """Cycle ``values`` over ``rows`` rows, with None at the ``nulls`` positions."""
    return [None if i in nulls else values[i % len(values)] for i in range(rows)]


def make_records(*, incremental: bool, rows: int = 24, null_keys: bool = True) -> pa.Table:
    """A records table with every Arrow type of the contract, hostile text and nulls.

    With ``null_keys`` even ``meta.ts`` and the key have nulls (not realistic, but it drives the
    encoder's slow paths); ``value.s`` is never null except in ``D`` rows.
    """
    actions = _column(["U", "U", "D", "U", "U", "U", "U"], rows, set())
    deleted = {i for i, a in enumerate(actions) if a == "D"} if incremental else set()

    def nulls(every: int, phase: int = 0) -> set[int]:
        return {i for i in range(rows) if i % every == phase} | deleted

    ts = [dt.datetime(2025, 1, 1, 12, 0, 0, 123000, tzinfo=UTC),
          dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
          dt.datetime(2024, 2, 29, 0, 0, tzinfo=UTC),
          dt.datetime(9999, 12, 31, 23, 59, 59, 5, tzinfo=UTC)]
    floats = [0.1, -2.5, float("nan"), float("inf"), float("-inf"), 1e20, 1e-7, -0.0, 123456.789,
              1.0]
    decimals = [Decimal("123.45"), Decimal("-0.50"), Decimal("0.00"), Decimal("9999.99"),
                Decimal("-9999.99"), Decimal("1.00")]
    columns: dict[str, pa.Array] = {
        "meta.ts": pa.array(_column(ts, rows, {5} if null_keys else set()),
                            pa.timestamp("us", tz="UTC")),
    }
    if incremental:
        columns["meta.action"] = pa.array(actions, pa.string())
    columns["key.id"] = pa.array(
        [None if null_keys and i == 7 else 1000 + i for i in range(rows)], pa.int64())
    columns.update({
        "value.s": pa.array(_column(["x", "y"], rows, deleted), pa.string()),
        "value.i16": pa.array(_column([-32768, 0, 32767, 7], rows, nulls(5)), pa.int16()),
        "value.i32": pa.array(_column([-(2**31), 2**31 - 1, 42], rows, nulls(4, 1)), pa.int32()),
        "value.i64": pa.array(_column([-(2**63), 2**63 - 1, 0], rows, nulls(6, 2)), pa.int64()),
        "value.f64": pa.array(_column(floats, rows, nulls(11, 3)), pa.float64()),
        "value.f32": pa.array(_column([0.1, -1.5, 3.4e38], rows, nulls(5, 4)), pa.float32()),
        "value.dec": pa.array(_column(decimals, rows, nulls(7, 1)), pa.decimal128(6, 2)),
        "value.flag": pa.array(_column([True, False], rows, nulls(3)), pa.bool_()),
        "value.name": pa.array(_column(HOSTILE, rows, nulls(len(HOSTILE) + 2, 20)), pa.string()),
        "value.at": pa.array(_column(ts[::-1], rows, nulls(4, 3)), pa.timestamp("us", tz="UTC")),
        "value.day": pa.array(
            _column([dt.date(2025, 1, 2), dt.date(1900, 3, 1), dt.date(9999, 12, 31)], rows,
                    nulls(5, 2)), pa.date32()),
        "value.settings": pa.array(
            _column([compact_json(s) for s in SETTINGS], rows, nulls(3, 1)), pa.string()),
        "value.types": pa.array(
            _column([compact_json(t) for t in TYPES], rows, nulls(4, 2)), pa.string()),
    })
    return pa.table(columns)


def roundtrip(records: pa.Table, fmt: str, mode: str = "condensed") -> None:
    data = encode_part(records, fmt, json_columns=JSON_COLUMNS, mode=mode)
    got = decode_part(data, fmt)
    want = expected_rows(records, fmt, json_columns=JSON_COLUMNS, mode=mode)
    if fmt == "parquet":
        got, want = nan_safe(got), nan_safe(want)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"row {i}"


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv", "parquet"])
@pytest.mark.parametrize("incremental", [False, True], ids=["snapshot", "incremental"])
@pytest.mark.parametrize("mode", ["condensed", "expanded"])
@pytest.mark.parametrize("null_keys", [False, True], ids=["keys", "nullkeys"])
def test_roundtrip(fmt: str, incremental: bool, mode: str, null_keys: bool) -> None:
    roundtrip(make_records(incremental=incremental, null_keys=null_keys), fmt, mode)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv"])
def test_many_batches_make_one_gzip_member(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    records = make_records(incremental=True, rows=500)
    whole = gzip.decompress(encode_part(records, fmt, json_columns=JSON_COLUMNS))
    monkeypatch.setattr(_encode, "_BATCH_ROWS", 7)
    data = encode_part(records, fmt, json_columns=JSON_COLUMNS)
    # one member: a single zlib gzip decompressor (what the official client uses) reads it all
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert inflater.decompress(data) == whole
    assert inflater.eof and not inflater.unused_data
    roundtrip(records, fmt)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv"])
def test_empty_table(fmt: str) -> None:
    records = make_records(incremental=True).slice(0, 0)
    text = gzip.decompress(encode_part(records, fmt)).decode()
    assert text == ("" if fmt == "jsonl" else _encode_header(records, fmt))
    assert decode_part(encode_part(records, fmt), fmt) == []


def _encode_header(records: pa.Table, fmt: str) -> str:
    return ("\t" if fmt == "tsv" else ",").join(records.column_names) + "\n"


def test_tsv_headers() -> None:
    snapshot = encode_part(make_records(incremental=False), "tsv", json_columns=JSON_COLUMNS)
    incremental = encode_part(make_records(incremental=True), "tsv", json_columns=JSON_COLUMNS)
    assert "meta.action" not in header(snapshot, "tsv")
    assert header(incremental, "tsv")[:3] == ["meta.ts", "meta.action", "key.id"]
    assert all(h.startswith(("meta.", "key.", "value.")) for h in header(snapshot, "tsv"))


def test_tsv_spellings() -> None:
    records = make_records(incremental=True, null_keys=False)
    lines = gzip.decompress(encode_part(records, "tsv", json_columns=JSON_COLUMNS)).decode()
    lines_ = lines.split("\n")
    assert lines_[-1] == ""
    labels = lines_[0].split("\t")
    for line, action in zip(lines_[1:-1], records.column("meta.action").to_pylist(), strict=True):
        fields = dict(zip(labels, line.split("\t"), strict=True))
        assert fields["meta.ts"].endswith("Z") and "T" in fields["meta.ts"]
        assert fields["value.flag"] in ("true", "false", "\\N")
        if action == "D":
            assert all(v == "\\N" for k, v in fields.items() if k.startswith("value."))
    assert "back\\\\slash" in lines and "tab\\there" in lines and "new\\nline" in lines
    assert "\\N\t" in lines and "\t\t" in lines  # nulls vs the empty string
    assert "Infinity" in lines and "-Infinity" in lines and "NaN" in lines


def test_csv_spellings() -> None:
    records = pa.table({
        "meta.ts": pa.array([0, 1, 2, 3], pa.timestamp("us", tz="UTC")),
        "key.id": [1, 2, 3, 4],
        "value.name": ["", "NULL", None, 'Math 1, section "A"'],
        "value.n": [1, None, 3, 4],
    })
    text = gzip.decompress(encode_part(records, "csv")).decode()
    assert text == (
        "meta.ts,key.id,value.name,value.n\n"
        '1970-01-01T00:00:00.000000Z,1,"",1\n'
        '1970-01-01T00:00:00.000001Z,2,"NULL",\n'
        "1970-01-01T00:00:00.000002Z,3,,3\n"
        '1970-01-01T00:00:00.000003Z,4,"Math 1, section ""A""",4\n'
    )


def test_jsonl_layout() -> None:
    records = make_records(incremental=True, null_keys=False)
    text = gzip.decompress(encode_part(records, "jsonl", json_columns=JSON_COLUMNS)).decode()
    lines = text.split("\n")
    assert lines[-1] == ""
    actions = records.column("meta.action").to_pylist()
    for line, action in zip(lines[:-1], actions, strict=True):
        obj = json.loads(line)  # strict: NaN/Infinity would fail
        assert list(obj) == (["meta", "key"] if action == "D" else ["meta", "key", "value"])
        assert obj["meta"]["action"] == action
        assert null_free(obj)
    assert '"ctrl \\u0001\\u001f \\b\\f\\u000b end"' in text
    assert "NaN" not in text and "Infinity" not in text
    snapshot = gzip.decompress(encode_part(make_records(incremental=False), "jsonl")).decode()
    assert all("action" not in json.loads(line)["meta"] for line in snapshot.splitlines())


def test_jsonl_delete_rows_never_carry_values() -> None:
    """Even if a records table (against the contract) has values in D rows."""
    records = pa.table({
        "meta.ts": pa.array([0, 1, 2], pa.timestamp("us", tz="UTC")),
        "meta.action": ["D", "U", "D"],
        "key.code": ["a\tb", 'q"', "z"],
        "value.n": [1, 2, None],
        "value.s": ["x", None, "y"],
    })
    lines = gzip.decompress(encode_part(records, "jsonl")).decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"meta": {"ts": "1970-01-01T00:00:00.000000Z", "action": "D"}, "key": {"code": "a\tb"}},
        {"meta": {"ts": "1970-01-01T00:00:00.000001Z", "action": "U"}, "key": {"code": 'q"'},
         "value": {"n": 2}},
        {"meta": {"ts": "1970-01-01T00:00:00.000002Z", "action": "D"}, "key": {"code": "z"}},
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv"])
def test_chunked_input(fmt: str) -> None:
    records = make_records(incremental=True, rows=60)
    chunked = pa.concat_tables([records.slice(i, 7) for i in range(0, 60, 7)])
    assert chunked.column(0).num_chunks > 1
    assert gzip.decompress(encode_part(chunked, fmt, json_columns=JSON_COLUMNS)) == \
        gzip.decompress(encode_part(records, fmt, json_columns=JSON_COLUMNS))


def null_free(obj: object) -> bool:
    if obj is None:
        return False
    if isinstance(obj, dict):
        return all(null_free(v) for v in obj.values())
    if isinstance(obj, list):
        return all(null_free(v) for v in obj)
    return True


def test_jsonl_nested_json() -> None:
    records = make_records(incremental=False, null_keys=False)
    rows = [json.loads(line) for line in gzip.decompress(
        encode_part(records, "jsonl", json_columns=JSON_COLUMNS)).decode().splitlines()]
    assert rows[0]["value"]["settings"] == SETTINGS[0]
    assert rows[0]["value"]["types"] == TYPES[0]
    # without json_columns the same text is an ordinary (escaped) string
    plain = gzip.decompress(encode_part(records, "jsonl")).decode().splitlines()
    assert json.loads(plain[0])["value"]["settings"] == compact_json(SETTINGS[0])


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_expanded_header(fmt: str) -> None:
    records = make_records(incremental=True)
    data = encode_part(records, fmt, json_columns=JSON_COLUMNS, mode="expanded")
    labels = header(data, fmt)
    keys = [k for s in SETTINGS for k in s]
    assert [h for h in labels if h.startswith("value.settings")] == [
        f"value.settings.{k}" for k in dict.fromkeys(keys)]
    assert "value.types" in labels  # arrays stay JSON text
    condensed = header(encode_part(records, fmt, json_columns=JSON_COLUMNS), fmt)
    assert "value.settings" in condensed


def test_expanded_declared_fields_and_fallback() -> None:
    records = pa.table({
        "meta.ts": pa.array([0, 0, 0], pa.timestamp("us", tz="UTC")),
        "key.id": [1, 2, 3],
        "value.o": ['{"n":1,"b":true,"s":"x","d":{"k":["v"]}}', None, '{"s":"2025-01-01"}'],
        "value.never": pa.array([None, None, None], pa.string()),
    })
    columns = frozenset({"value.o", "value.never"})
    data = encode_part(records, "tsv", json_columns=columns, mode="expanded",
                       struct_fields={"value.never": ["a", "b"], "value.o": ["z"]})
    rows = decode_part(data, "tsv")
    assert header(data, "tsv") == ["meta.ts", "key.id", "value.o.z", "value.o.n", "value.o.b",
                                   "value.o.s", "value.o.d", "value.never.a", "value.never.b"]
    assert rows[0]["value.o.n"] == "1" and rows[0]["value.o.b"] == "true"
    assert rows[0]["value.o.d"] == '{"k":["v"]}' and rows[0]["value.o.z"] is None
    assert rows[2]["value.o.s"] == "2025-01-01"
    assert all(r["value.never.a"] is None for r in rows)
    # without declared fields an all-null object column has nothing to expand: it stays
    data = encode_part(records, "tsv", json_columns=columns, mode="expanded")
    assert "value.never" in header(data, "tsv")


def test_other_timestamp_units_and_zones() -> None:
    instant = dt.datetime(2025, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)
    records = pa.table({
        "meta.ts": pa.array([instant], pa.timestamp("us", tz="UTC")),
        "key.id": [1],
        "value.ms": pa.array([instant], pa.timestamp("us", tz="UTC")).cast(
            pa.timestamp("ms", tz="UTC"), safe=False),
        "value.ns": pa.array([instant], pa.timestamp("ns", tz="America/New_York")),
        "value.naive": pa.array([instant.replace(microsecond=0, tzinfo=None)], pa.timestamp("s")),
    })
    row = decode_part(encode_part(records, "tsv"), "tsv")[0]
    assert row["value.ms"] == "2025-03-04T05:06:07.891000Z"
    assert row["value.ns"] == "2025-03-04T05:06:07.891234Z"
    assert row["value.naive"] == "2025-03-04T05:06:07.000000Z"


def test_parquet_is_plain_parquet() -> None:
    records = make_records(incremental=True)
    data = encode_part(records, "parquet", json_columns=JSON_COLUMNS, mode="expanded")
    assert data[:4] == b"PAR1" and data[-4:] == b"PAR1"
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    assert meta.row_group(0).column(0).compression == "GZIP"
    table = pq.read_table(io.BytesIO(data))
    assert table.schema == records.schema
    assert nan_safe(table.to_pylist()) == nan_safe(records.to_pylist())


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv"])
def test_text_parts_are_gzip(fmt: str) -> None:
    data = encode_part(make_records(incremental=False), fmt, compresslevel=9)
    assert data[:2] == b"\x1f\x8b"
    assert gzip.decompress(data).decode("utf-8")
    level0 = encode_part(make_records(incremental=False), fmt, compresslevel=0)
    assert gzip.decompress(level0) == gzip.decompress(data)


def test_suffixes() -> None:
    assert SUFFIX == {"jsonl": ".json.gz", "csv": ".csv.gz", "tsv": ".tsv.gz",
                      "parquet": ".gz.parquet"}


def test_bad_arguments() -> None:
    records = make_records(incremental=False)
    with pytest.raises(ValueError, match="format"):
        encode_part(records, "xml")
    with pytest.raises(ValueError, match="mode"):
        encode_part(records, "csv", mode="wide")
    with pytest.raises(ValueError, match="compresslevel"):
        encode_part(records, "csv", compresslevel=10)
    with pytest.raises(ValueError, match="meta"):
        encode_part(records.append_column("extra", pa.array([1] * records.num_rows)), "jsonl")
    with pytest.raises(TypeError, match=r"value\.blob"):
        encode_part(records.append_column("value.blob", pa.array([b"x"] * records.num_rows)),
                    "csv")


# --- the reference decoder itself ------------------------------------------------------------


def test_decoder_csv_tokens() -> None:
    text = 'a,b,c\n"",,NULL\n"x ""y""","1,\n2",\n"NULL",z,""\n'
    rows = decode_part(gzip.compress(text.encode()), "csv")
    assert rows == [{"a": "", "b": None, "c": None},
                    {"a": 'x "y"', "b": "1,\n2", "c": None},
                    {"a": "NULL", "b": "z", "c": ""}]


def test_decoder_tsv_tokens() -> None:
    text = "a\tb\n\\N\tx\\ty\\\\z\\n\n\t\\\\N\n"
    rows = decode_part(gzip.compress(text.encode()), "tsv")
    assert rows == [{"a": None, "b": "x\ty\\z\n"}, {"a": "", "b": "\\N"}]


def test_decoder_jsonl() -> None:
    text = '{"meta":{"ts":"t"},"key":{"id":1},"value":{"x":1.50,"o":{"a": "é"}}}\n'
    rows = decode_part(gzip.compress(text.encode()), "jsonl")
    assert rows == [{"meta.ts": "t", "key.id": 1, "value.x": Decimal("1.50"),
                     "value.o": '{"a":"é"}'}]
