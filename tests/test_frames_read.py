"""dapframe.frames.read_batches: every transfer format decodes to the same canonical table.

Parts are produced in memory by the emulator's encoder (``encode_part``) and written to a
temporary folder; the expected tables are the emulator's records tables converted to the
canonical types here, in plain Python (JSON text decoded with :func:`json.loads`).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dapframe.emulator._data import HOSTILE_STRINGS, Dataset
from dapframe.emulator._encode import SUFFIX, encode_part
from dapframe.emulator._tables import Column, TableSpec, bump, json_schema
from dapframe.emulator._tables import arrow_schema as records_schema
from dapframe.errors import DapError, UsageError
from dapframe.frames import _read, duckdb_types, polars_schema, read_batches
from dapframe.schema import TableSchema

UTC = dt.UTC
# (format, mode): the server's modes only change csv and tsv.
VARIANTS = [("parquet", "condensed"), ("jsonl", "condensed"), ("csv", "condensed"),
            ("csv", "expanded"), ("tsv", "condensed"), ("tsv", "expanded")]
VARIANT_IDS = [f"{f}-{m}" for f, m in VARIANTS]


# ------------------------------------------------------------------------------------------
# helpers


def table_schema(spec: TableSpec) -> TableSchema:
    return TableSchema.from_json(spec.namespace, spec.name, json_schema(spec), spec.version)


def write_parts(folder: Path, records: pa.Table, spec: TableSpec, fmt: str, mode: str = "condensed",
                rows_per_part: int = 400) -> list[Path]:
    """Encode ``records`` as the emulator's server would, several parts, into ``folder``."""
    json_cols = frozenset(f"value.{c.name}" for c in spec.columns
                          if c.kind in ("struct", "enum_array"))
    fields = {f"value.{c.name}": c.struct_fields for c in spec.columns if c.kind == "struct"}
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, start in enumerate(range(0, max(records.num_rows, 1), rows_per_part)):
        part = records.slice(start, rows_per_part)
        data = encode_part(part, fmt, json_columns=json_cols, mode=mode, struct_fields=fields)
        path = folder / f"part-{i:05d}{SUFFIX[fmt]}"
        path.write_bytes(data)
        files.append(path)
    return files


def _struct_value(text: str | None, fields: Sequence[str]) -> dict[str, Any] | None:
    if not text:
        return None
    obj = json.loads(text)
    out = {f: obj.get(f) if obj.get(f) is None or isinstance(obj.get(f), str)
           else json.dumps(obj.get(f), separators=(",", ":")) for f in fields}
    return out if any(v is not None for v in out.values()) else None  # all-null: null


def canonical(records: pa.Table, schema: TableSchema, *, incremental: bool,
              naming: str = "plain") -> pa.Table:
    """The expected decoding of a records table (oracle, independent of the reader)."""
    target = schema.arrow_schema(incremental=incremental, naming=naming)
    labels = ["meta.ts", "meta.action"] if incremental else ["meta.ts"]
    labels += [c.label for c in schema.columns]
    columns = {c.label: c for c in schema.columns}
    arrays = []
    for label, field in zip(labels, target, strict=True):
        if label not in records.column_names:
            arrays.append(pa.nulls(records.num_rows, field.type))
            continue
        values = records.column(label)
        col = columns.get(label)
        if col is not None and col.kind == "struct":
            arrays.append(pa.array([_struct_value(v, col.fields) for v in values.to_pylist()],
                                   field.type))
        elif col is not None and col.kind == "array":
            arrays.append(pa.array([json.loads(v) if v else None for v in values.to_pylist()],
                                   field.type))
        else:
            arrays.append(values.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=target)


def read(files: Sequence[Path], fmt: str, schema: TableSchema, *, incremental: bool,
         **kwargs: Any) -> pa.Table:
    reader = read_batches(files, fmt, schema, incremental=incremental, **kwargs)
    expected = schema.arrow_schema(incremental=incremental, naming=kwargs.get("naming", "plain"))
    assert reader.schema == expected
    batches = list(reader)
    for batch in batches:
        assert batch.schema == expected
    return pa.Table.from_batches(batches, schema=expected)


def assert_same(got: pa.Table, want: pa.Table) -> None:
    assert got.schema == want.schema
    if got.equals(want):
        return
    for name in want.column_names:
        a, b = got.column(name).to_pylist(), want.column(name).to_pylist()
        diff = [(i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        assert not diff, f"{name}: first differences {diff[:3]}"
    raise AssertionError("tables differ")  # pragma: no cover


# ------------------------------------------------------------------------------------------
# every emulator table, every format


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    ds = Dataset(seed=0, scale=1)
    ds.tick(3)
    return ds


TABLE_NAMES = [("canvas", t) for t in ("accounts", "users", "pseudonyms", "courses",
                                        "course_sections", "enrollment_terms", "enrollments",
                                        "assignments", "submissions")]
TABLE_NAMES.append(("canvas_logs", "web_logs"))


@pytest.mark.parametrize("incremental", [False, True], ids=["snapshot", "incremental"])
@pytest.mark.parametrize(("namespace", "table"), TABLE_NAMES, ids=[t for _, t in TABLE_NAMES])
def test_every_table_every_format(dataset: Dataset, tmp_path: Path, namespace: str, table: str,
                                  incremental: bool) -> None:
    spec = dataset.spec(namespace, table)
    schema = table_schema(spec)
    records = (dataset.changes(namespace, table, dataset.commit_time(0), dataset.clock)
               if incremental else dataset.snapshot(namespace, table))
    assert records.num_rows > 0
    if incremental and table in ("pseudonyms", "enrollments", "submissions"):  # leaf tables
        assert "D" in records.column("meta.action").to_pylist()  # deletes are exercised
    want = canonical(records, schema, incremental=incremental)
    rows_per_part = max(1, records.num_rows // 3)  # three or four parts
    tables = {}
    for fmt, mode in VARIANTS:
        files = write_parts(tmp_path / f"{fmt}-{mode}", records, spec, fmt, mode, rows_per_part)
        assert len(files) >= min(3, records.num_rows)
        got = read(files, fmt, schema, incremental=incremental)
        assert_same(got, want)
        tables[fmt, mode] = got
    first = tables[VARIANTS[0]]
    assert all(t.equals(first) for t in tables.values())
    # Non-nullable fields really hold no nulls.
    for field in first.schema:
        if not field.nullable:
            assert first.column(field.name).null_count == 0, field.name


@pytest.mark.parametrize(("fmt", "mode"), VARIANTS, ids=VARIANT_IDS)
def test_dotted_naming(dataset: Dataset, tmp_path: Path, fmt: str, mode: str) -> None:
    spec = dataset.spec("canvas", "courses")
    schema = table_schema(spec)
    records = dataset.changes("canvas", "courses", dataset.commit_time(0), dataset.clock)
    files = write_parts(tmp_path, records, spec, fmt, mode)
    got = read(files, fmt, schema, incremental=True, naming="dotted")
    assert got.column_names[:3] == ["meta.ts", "meta.action", "key.id"]
    assert_same(got, canonical(records, schema, incremental=True, naming="dotted"))


# ------------------------------------------------------------------------------------------
# hostile values

NASTY = [*HOSTILE_STRINGS, "\\", "a\\\\b", "\\\\N", "x\\", "\uffff\\t\ufffe", "\x00nul",
         "\b\f\v", "\\0", "\u2028 line sep", "NULL ", '""', "\\\\\\"]
HOSTILE_SPEC = TableSpec(
    namespace="canvas", name="hostile", title="Hostile values.",
    key=Column("id", "int64", required=True),
    columns=(
        Column("name", "string", max_length=255),
        Column("body", "sentinel_text"),
        Column("state", "enum", enum=("a", "b", "__dap_unspecified__")),
        Column("settings", "struct", struct_fields=("x", "y")),
        Column("tags", "enum_array", enum=("a", "__dap_unspecified__")),
        Column("due", "date"),
        Column("at", "timestamp"),
        Column("score", "float64"),
        Column("points", "decimal", precision=6, scale=2),
        Column("flag", "bool"),
        Column("count", "int32"),
    ),
)


def hostile_records(incremental: bool) -> pa.Table:
    n = len(NASTY) + 2
    texts: list[str | None] = [*NASTY, None, "plain"]
    settings: list[str | None] = [json.dumps({"x": t, "y": "fixed"}, ensure_ascii=False)
                                  for t in NASTY]
    settings += [None, json.dumps({"x": None, "y": "only y"})]
    tags = [json.dumps([t, "a"], ensure_ascii=False) for t in NASTY] + [None, "[]"]
    ts0 = dt.datetime(2026, 11, 1, tzinfo=UTC)
    columns: dict[str, Any] = {
        "meta.ts": pa.array([ts0 + dt.timedelta(microseconds=i * 1001) for i in range(n)],
                            pa.timestamp("us", tz="UTC")),
        "key.id": pa.array(range(1, n + 1), pa.int64()),
        "value.name": texts,
        "value.body": list(reversed(texts)),
        "value.state": [("a", "b", "__dap_unspecified__", None)[i % 4] for i in range(n)],
        "value.settings": settings,
        "value.tags": tags,
        "value.due": [dt.date(2026, 1, 1) + dt.timedelta(days=i) if i % 3 else None
                      for i in range(n)],
        "value.at": [ts0 - dt.timedelta(days=i, microseconds=7) if i % 4 else None
                     for i in range(n)],
        "value.score": [i / 3 if i % 5 else None for i in range(n)],
        "value.points": [Decimal(i * 7 - 50) / 100 if i % 2 else None for i in range(n)],
        "value.flag": [(True, False, None)[i % 3] for i in range(n)],
        "value.count": [i * 1000 - 5 if i % 6 else None for i in range(n)],
    }
    if incremental:
        actions = ["D" if i % 5 == 4 else "U" for i in range(n)]
        columns = {"meta.ts": columns.pop("meta.ts"), "meta.action": actions, **columns}
    schema = records_schema(HOSTILE_SPEC, incremental=incremental)
    table = pa.table({k: pa.array(v, schema.field(k).type) if not isinstance(v, pa.Array)
                      else v for k, v in columns.items()}, schema=schema)
    if incremental:  # D rows carry no values
        deleted = [a == "D" for a in actions]
        arrays = [pa.array([None if d else v for d, v in zip(deleted, col.to_pylist(),
                                                               strict=True)], col.type)
                  if name.startswith("value.") else col
                  for name, col in zip(table.column_names, table.columns, strict=True)]
        table = pa.Table.from_arrays(arrays, schema=schema)
    return table


@pytest.mark.parametrize("incremental", [False, True], ids=["snapshot", "incremental"])
@pytest.mark.parametrize(("fmt", "mode"), VARIANTS, ids=VARIANT_IDS)
def test_hostile_values_survive(tmp_path: Path, fmt: str, mode: str, incremental: bool) -> None:
    records = hostile_records(incremental)
    schema = table_schema(HOSTILE_SPEC)
    files = write_parts(tmp_path, records, HOSTILE_SPEC, fmt, mode, rows_per_part=11)
    got = read(files, fmt, schema, incremental=incremental)
    assert_same(got, canonical(records, schema, incremental=incremental))
    if not incremental:
        assert got.column("name").to_pylist()[: len(NASTY)] == NASTY
        settings: list[Any] = got.column("settings").to_pylist()
        assert [s["x"] for s in settings[: len(NASTY)]] == NASTY
        assert settings[-2] is None and settings[-1] == {"x": None, "y": "only y"}
        assert got.column("tags").to_pylist()[-1] == []


# ------------------------------------------------------------------------------------------
# jsonl details

JSONL_SPEC = TableSpec(
    namespace="canvas", name="things", title="Things.",
    key=Column("id", "int64", required=True),
    columns=(Column("name", "string", max_length=255), Column("n", "int32"),
             Column("settings", "struct", struct_fields=("a", "b")),
             Column("tags", "enum_array", enum=("x", "y", "__dap_unspecified__")),
             Column("due", "date")),
)


def write_text(path: Path, text: str, *, compress: bool) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_jsonl_explicit_nulls_omitted_properties_and_extras(tmp_path: Path,
                                                            compress: bool) -> None:
    lines = [
        # explicit nulls everywhere
        '{"meta":{"ts":"2026-11-01T00:00:00Z","action":"U"},"key":{"id":1},'
        '"value":{"name":null,"n":null,"settings":null,"tags":null,"due":null}}',
        # omitted properties, and properties/parts the schema does not know
        '{"meta":{"ts":"2026-11-01T00:00:00.5Z","action":"U","extra":1},"key":{"id":2},'
        '"value":{"name":"x","future_column":{"deep":[1,2]}},"other":true}',
        # D rows: without value, and with an explicit null value
        '{"meta":{"ts":"2026-11-01T00:00:01.000Z","action":"D"},"key":{"id":3}}',
        '{"meta":{"ts":"2026-11-01T00:00:01.000001Z","action":"D"},"key":{"id":4},'
        '"value":null}',
        # a D row that still carries values: they are dropped
        '{"meta":{"ts":"2026-11-01T00:00:02Z","action":"D"},"key":{"id":5},'
        '"value":{"name":"ghost","n":5}}',
        # nested values, an unknown struct member, a property order of its own
        '{"key":{"id":6},"value":{"due":"2026-02-03","tags":["x","y"],'
        '"settings":{"b":"B","zz":"dropped","a":"A"},"n":-7,"name":"tab\\there \\u00e9"},'
        '"meta":{"action":"U","ts":"2026-11-01T00:00:03Z"}}',
        # an empty object is a null struct
        '{"meta":{"ts":"2026-11-01T00:00:04Z"},"key":{"id":7},"value":{"settings":{}}}',
    ]
    path = write_text(tmp_path / ("part.json.gz" if compress else "part.jsonl"),
                      "\n".join(lines) + "\n", compress=compress)
    got = read([path], "jsonl", table_schema(JSONL_SPEC), incremental=True).to_pylist()
    assert [r["id"] for r in got] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["meta.action"] for r in got] == ["U", "U", "D", "D", "D", "U", "U"]
    assert got[0] | {"meta.ts": None} == {"meta.ts": None, "meta.action": "U", "id": 1,
                                           "name": None, "n": None, "settings": None,
                                           "tags": None, "due": None}
    assert got[1]["name"] == "x" and got[1]["n"] is None
    assert got[1]["meta.ts"] == dt.datetime(2026, 11, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert all(r["name"] is None and r["n"] is None for r in got[2:5])
    assert got[5]["settings"] == {"a": "A", "b": "B"} and got[5]["tags"] == ["x", "y"]
    assert got[5]["name"] == "tab\there é" and got[5]["n"] == -7
    assert got[5]["due"] == dt.date(2026, 2, 3)
    assert got[6]["settings"] is None


def test_jsonl_non_string_members_fall_back_to_json_text(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dapframe.frames")
    rows = [{"meta": {"ts": "2026-11-01T00:00:00Z"}, "key": {"id": i},
             "value": {"name": f"n{i}", "settings": {"a": "s"}, "tags": ["x"]}}
            for i in range(1, 2001)]
    # Well past the first block, a member that is a number and items that are not strings.
    rows[1500]["value"] = {"settings": {"a": 1, "b": {"k": True}}, "tags": ["x", 2, None]}
    path = write_text(tmp_path / "part.json.gz",
                      "".join(json.dumps(r) + "\n" for r in rows), compress=True)
    got = read([path], "jsonl", table_schema(JSONL_SPEC), incremental=False, batch_size=256)
    assert got.num_rows == 2000 and got.column("id").to_pylist() == list(range(1, 2001))
    assert got.column("settings")[1500].as_py() == {"a": "1", "b": '{"k":true}'}
    assert got.column("tags")[1500].as_py() == ["x", "2", None]
    assert got.column("settings")[0].as_py() == {"a": "s", "b": None}
    assert "continuing per line" in caplog.text  # the exact path took over mid-part


def test_json_text_with_non_string_members_in_csv(tmp_path: Path) -> None:
    text = ('meta.ts,key.id,value.settings,value.tags\n'
            '2026-11-01T00:00:00Z,1,"{""a"":1,""b"":null}","[""x"",3]"\n'
            '2026-11-01T00:00:00Z,2,"{""a"":""s""}",\n'
            '2026-11-01T00:00:00Z,3,NULL,"[]"\n')
    path = write_text(tmp_path / "part.csv", text, compress=False)
    got = read([path], "csv", table_schema(JSONL_SPEC), incremental=False).to_pylist()
    assert [r["settings"] for r in got] == [{"a": "1", "b": None}, {"a": "s", "b": None}, None]
    assert [r["tags"] for r in got] == [["x", "3"], None, []]


# ------------------------------------------------------------------------------------------
# schema versions, inputs, streaming


@pytest.mark.parametrize(("fmt", "mode"), VARIANTS, ids=VARIANT_IDS)
def test_older_and_newer_parts(dataset: Dataset, tmp_path: Path,
                               caplog: pytest.LogCaptureFixture, fmt: str, mode: str) -> None:
    caplog.set_level(logging.DEBUG, logger="dapframe.frames")
    old = dataset.spec("canvas", "courses")
    new = bump(old)  # one more nullable column, one more enum member
    records = dataset.snapshot("canvas", "courses")
    files = write_parts(tmp_path / "old", records, old, fmt, mode)
    # A part of the older version read with the newer schema: the added column is null.
    got = read(files, fmt, table_schema(new), incremental=False)
    assert got.column("emulator_note_v2").null_count == got.num_rows
    assert_same(got, canonical(records, table_schema(new), incremental=False))
    # A part with a column the (older) schema does not know: the column is dropped.
    extra = records.append_column(
        pa.field("value.emulator_note_v2", pa.string()),
        pa.array(["note"] * records.num_rows, pa.string()))
    files = write_parts(tmp_path / "new", extra, new, fmt, mode)
    got = read(files, fmt, table_schema(old), incremental=False)
    assert_same(got, canonical(records, table_schema(old), incremental=False))
    if fmt != "jsonl":  # (Arrow's JSON reader ignores unknown properties silently)
        assert "dropping columns the schema does not know: ['value.emulator_note_v2']" \
            in caplog.text


@pytest.mark.parametrize(("fmt", "mode"), VARIANTS[1:], ids=VARIANT_IDS[1:])
def test_decompressed_and_misnamed_inputs(dataset: Dataset, tmp_path: Path, fmt: str,
                                          mode: str) -> None:
    spec = dataset.spec("canvas", "assignments")
    schema = table_schema(spec)
    records = dataset.changes("canvas", "assignments", dataset.commit_time(0), dataset.clock)
    files = write_parts(tmp_path / "gz", records, spec, fmt, mode, rows_per_part=4)
    want = read(files, fmt, schema, incremental=True)
    plain_suffix = {"jsonl": ".json", "csv": ".csv", "tsv": ".tsv"}[fmt]
    plain = []
    misnamed = []
    for f in files:
        p = tmp_path / (f.name.split(".")[0] + plain_suffix)
        p.write_bytes(gzip.decompress(f.read_bytes()))
        plain.append(p)
        m = tmp_path / (f.name.split(".")[0] + "-gzip-without-suffix" + plain_suffix)
        m.write_bytes(f.read_bytes())
        misnamed.append(m)
    assert read(plain, fmt, schema, incremental=True).equals(want)
    assert read(misnamed, fmt, schema, incremental=True).equals(want)
    if fmt == "jsonl":
        jsonl = [p.rename(p.with_suffix(".jsonl")) for p in plain]
        assert read(jsonl, fmt, schema, incremental=True).equals(want)


@pytest.mark.parametrize(("fmt", "mode"), VARIANTS, ids=VARIANT_IDS)
def test_streams_part_by_part(dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              fmt: str, mode: str) -> None:
    spec = dataset.spec("canvas", "submissions")
    records = dataset.snapshot("canvas", "submissions")
    files = write_parts(tmp_path, records, spec, fmt, mode, rows_per_part=500)
    assert len(files) == 5
    events: list[str] = []
    real = _read._read_part

    def spy(path: Path, *args: Any) -> Iterator[pa.RecordBatch]:
        events.append(f"open {path.name}")
        for batch in real(path, *args):
            events.append("batch")
            yield batch

    monkeypatch.setattr(_read, "_read_part", spy)
    reader = read_batches(files, fmt, table_schema(spec), incremental=False, batch_size=128)
    assert events == []  # nothing is read before the first batch is asked for
    first = reader.read_next_batch()
    assert first.num_rows == 128
    assert events[0] == f"open {files[0].name}" and sum(e.startswith("open") for e in events) == 1
    rest = list(reader)
    sizes = [first.num_rows] + [b.num_rows for b in rest]
    assert sum(sizes) == records.num_rows and max(sizes) <= 128
    # Batches never span parts: ceil(rows / 128) batches per part.
    assert len(sizes) == sum(-(-min(500, records.num_rows - s) // 128)
                             for s in range(0, records.num_rows, 500))
    # Each part is opened only after the previous one delivered all its batches.
    opens = [i for i, e in enumerate(events) if e.startswith("open")]
    assert [events[i] for i in opens] == [f"open {f.name}" for f in files]
    assert all(events[i + 1] == "batch" for i in opens)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_records_longer_than_a_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture, fmt: str) -> None:
    caplog.set_level(logging.DEBUG, logger="dapframe.frames")
    monkeypatch.setattr(_read, "_BLOCK_BYTES", 4096)  # the retry sizes stay real
    monkeypatch.setattr(_read, "_BIGGER_BLOCKS", (1 << 16, 1 << 20))
    records = hostile_records(incremental=False)
    long_text = "long " * 5000  # 25 kB: longer than a first block, shorter than a second
    names = records.column("value.name").to_pylist()
    names[20] = long_text
    records = records.set_column(records.schema.get_field_index("value.name"),
                                 records.schema.field("value.name"), pa.array(names, pa.string()))
    big = pa.concat_tables([records] * 20)  # several blocks before and after the long rows
    files = write_parts(tmp_path, big, HOSTILE_SPEC, fmt, rows_per_part=big.num_rows)
    schema = table_schema(HOSTILE_SPEC)
    got = read(files, fmt, schema, incremental=False, batch_size=50)
    assert_same(got, canonical(big, schema, incremental=False))
    assert "bigger blocks" in caplog.text and "per line" not in caplog.text


def test_multi_member_gzip(dataset: Dataset, tmp_path: Path) -> None:
    spec = dataset.spec("canvas", "users")
    records = dataset.snapshot("canvas", "users")
    one = write_parts(tmp_path / "a", records, spec, "csv", rows_per_part=records.num_rows)[0]
    text = gzip.decompress(one.read_bytes())
    middle = text.index(b"\n", len(text) // 2) + 1
    two = tmp_path / "two-members.csv.gz"
    two.write_bytes(gzip.compress(text[:middle]) + gzip.compress(text[middle:]))
    schema = table_schema(spec)
    assert read([two], "csv", schema, incremental=False).equals(
        canonical(records, schema, incremental=False))


def test_nested_parquet_layout(tmp_path: Path) -> None:
    """meta/key/value as Parquet struct columns, with real nested struct and list values."""
    records = hostile_records(incremental=True)
    schema = table_schema(HOSTILE_SPEC)
    want = canonical(records, schema, incremental=True, naming="dotted")
    groups: dict[str, list[tuple[str, pa.ChunkedArray]]] = {"meta": [], "key": [], "value": []}
    for name in want.column_names:
        group, _, field = name.partition(".")
        groups[group].append((field, want.column(name)))
    nested = pa.table({g: pa.StructArray.from_arrays([c.combine_chunks() for _, c in cols],
                                                     names=[f for f, _ in cols])
                       for g, cols in groups.items()})
    path = tmp_path / "nested.parquet"
    pq.write_table(nested, path)
    assert_same(read([path], "parquet", schema, incremental=True), canonical(
        records, schema, incremental=True))


def test_truncated_gzip_part(dataset: Dataset, tmp_path: Path) -> None:
    spec = dataset.spec("canvas", "users")
    part = write_parts(tmp_path, dataset.snapshot("canvas", "users"), spec, "csv",
                       rows_per_part=10_000)[0]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    with pytest.raises(DapError, match=part.name):
        read_batches([part], "csv", table_schema(spec), incremental=False).read_all()


def test_empty_inputs(tmp_path: Path) -> None:
    schema = table_schema(JSONL_SPEC)
    assert read([], "csv", schema, incremental=False).num_rows == 0
    empty = write_text(tmp_path / "empty.csv.gz", "", compress=True)
    header_only = write_text(tmp_path / "h.csv.gz", "meta.ts,key.id\n", compress=True)
    assert read([empty, header_only], "csv", schema, incremental=False).num_rows == 0
    blank = write_text(tmp_path / "empty.json.gz", "", compress=True)
    assert read([blank], "jsonl", schema, incremental=True).num_rows == 0


# ------------------------------------------------------------------------------------------
# special columns and errors

TIME_DOC = {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
    "properties": {
        "meta": {"type": "object", "properties": {"ts": {"type": "string", "format": "date-time"}},
                 "additionalProperties": False},
        "key": {"type": "object", "properties": {"id": {"type": "integer"}},
                "additionalProperties": False},
        "value": {"type": "object", "additionalProperties": False,
                  "properties": {"t": {"type": "string", "format": "time"}}},
    },
    "additionalProperties": False,
}


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_time_columns(tmp_path: Path, fmt: str) -> None:
    schema = TableSchema.from_json("canvas", "times", TIME_DOC, 1)
    values = ["12:34:56", "01:02:03.250000Z", "23:59:59.999999", "01:00:00+02:00", None]
    ts = "2026-11-01T00:00:00Z"
    if fmt == "jsonl":
        text = "".join(json.dumps({"meta": {"ts": ts}, "key": {"id": i}, "value": {"t": v}})
                       + "\n" for i, v in enumerate(values))
    else:
        sep, null = ("\t", "\\N") if fmt == "tsv" else (",", "")
        text = sep.join(["meta.ts", "key.id", "value.t"]) + "\n" + "".join(
            sep.join([ts, str(i), null if v is None else v]) + "\n" for i, v in enumerate(values))
    path = write_text(tmp_path / f"p.{fmt}", text, compress=False)
    got = read([path], fmt, schema, incremental=False).column("t").to_pylist()
    assert got == [dt.time(12, 34, 56), dt.time(1, 2, 3, 250000), dt.time(23, 59, 59, 999999),
                   dt.time(23, 0), None]


def test_tsv_escapes(tmp_path: Path) -> None:
    schema = table_schema(JSONL_SPEC)
    text = ("meta.ts\tkey.id\tvalue.name\tvalue.settings\n"
            "2026-11-01T00:00:00Z\t1\ta\\tb\\nc\\\\n\\q\\N\t{\"a\":\"x\\\\ty\"}\n"
            "2026-11-01T00:00:00Z\t2\t\t\\N\n"
            "2026-11-01T00:00:00Z\t3\t\\N\t{\"a\":\"\\\\\\\\\"}\n")
    path = write_text(tmp_path / "p.tsv.gz", text, compress=True)
    got = read([path], "tsv", schema, incremental=False).to_pylist()
    assert [r["name"] for r in got] == ["a\tb\nc\\nqN", "", None]
    assert [r["settings"] for r in got] == [{"a": "x\ty", "b": None}, None,
                                            {"a": "\\", "b": None}]


def test_incremental_part_without_action_reads_as_upserts(tmp_path: Path) -> None:
    text = "meta.ts,key.id,value.name\n2026-11-01T00:00:00Z,1,x\n"
    path = write_text(tmp_path / "p.csv", text, compress=False)
    got = read([path], "csv", table_schema(JSONL_SPEC), incremental=True)
    assert got.column("meta.action").to_pylist() == ["U"]


@pytest.mark.parametrize(("fmt", "text", "match"), [
    ("csv", "meta.ts,key.id\n2026-11-01T00:00:00Z,abc\n", "key.id"),
    ("tsv", "meta.ts\tkey.id\nyesterday\t1\n", "meta.ts"),
    ("jsonl", '{"meta":{"ts":"2026-11-01T00:00:00Z"},"key":{"id":1}}\nnot json\n', "invalid"),
    ("jsonl", '{"meta":{"ts":"2026-11-01T00:00:00Z"},"key":{"id":1},"value":{"settings":"x"}}\n',
     "value.settings"),
    ("csv", 'meta.ts,key.id,value.settings\n2026-11-01T00:00:00Z,1,"{nope"\n', "value.settings"),
])
def test_malformed_parts_raise_dap_error(tmp_path: Path, fmt: str, text: str, match: str) -> None:
    path = write_text(tmp_path / f"bad-part.{fmt}", text, compress=False)
    reader = read_batches([path], fmt, table_schema(JSONL_SPEC), incremental=False)
    with pytest.raises(DapError, match=match) as info:
        reader.read_all()
    assert "bad-part" in str(info.value)


def test_usage_errors() -> None:
    schema = table_schema(JSONL_SPEC)
    with pytest.raises(UsageError, match="unknown format"):
        read_batches([], "xml", schema, incremental=False)
    with pytest.raises(UsageError, match="batch_size"):
        read_batches([], "csv", schema, incremental=False, batch_size=0)
    with pytest.raises(UsageError, match="naming"):
        read_batches([], "csv", schema, incremental=False, naming="flat")


# ------------------------------------------------------------------------------------------
# Polars and DuckDB types


QUOTED_SPEC = TableSpec(
    namespace="canvas", name="quoted", title="Quotes.",
    key=Column("id", "int64", required=True),
    columns=(Column("kind", "enum", enum=("it's", 'say "hi"', "__dap_unspecified__")),
             Column("settings", "struct", struct_fields=('we"ird', "b")),
             Column("tags", "enum_array", enum=("x", "__dap_unspecified__")),
             Column("points", "decimal", precision=6, scale=2),
             Column("score", "float32"), Column("small", "int16"), Column("due", "date"),
             Column("flag", "bool"), Column("at", "timestamp")),
)


def test_polars_schema() -> None:
    pl = pytest.importorskip("polars")
    schema = table_schema(QUOTED_SPEC)
    types = polars_schema(schema, incremental=True)
    assert list(types) == schema.column_names(incremental=True)
    assert types["meta.action"] == pl.Enum(["U", "D"])
    assert types["meta.ts"] == pl.Datetime("us", "UTC")
    assert types["kind"] == pl.Enum(["it's", 'say "hi"', "__dap_unspecified__"])
    assert types["settings"] == pl.Struct({'we"ird': pl.String, "b": pl.String})
    assert types["tags"] == pl.List(pl.String)
    assert types["points"] == pl.Decimal(6, 2)
    assert types["score"] == pl.Float32 and types["small"] == pl.Int16
    assert types["due"] == pl.Date and types["flag"] == pl.Boolean
    assert list(polars_schema(schema, incremental=False, naming="dotted"))[:2] == [
        "meta.ts", "key.id"]


@pytest.mark.parametrize(("fmt", "mode"), VARIANTS, ids=VARIANT_IDS)
def test_batches_cast_to_polars_schema(dataset: Dataset, tmp_path: Path, fmt: str,
                                       mode: str) -> None:
    pl = pytest.importorskip("polars")
    spec = dataset.spec("canvas", "assignments")
    schema = table_schema(spec)
    records = dataset.changes("canvas", "assignments", dataset.commit_time(0), dataset.clock)
    files = write_parts(tmp_path, records, spec, fmt, mode)
    table = read(files, fmt, schema, incremental=True)
    frame = pl.from_arrow(table).cast(polars_schema(schema, incremental=True))
    assert dict(frame.schema) == polars_schema(schema, incremental=True)
    assert frame.height == records.num_rows


def test_duckdb_types() -> None:
    schema = table_schema(QUOTED_SPEC)
    types = duckdb_types(schema, incremental=True)
    assert list(types) == schema.column_names(incremental=True)
    assert types["meta.ts"] == "TIMESTAMPTZ" and types["meta.action"] == "ENUM('U', 'D')"
    assert types["id"] == "BIGINT"
    assert types["kind"] == "ENUM('it''s', 'say \"hi\"', '__dap_unspecified__')"
    assert types["settings"] == 'STRUCT("we""ird" VARCHAR, "b" VARCHAR)'
    assert types["tags"] == "VARCHAR[]" and types["points"] == "DECIMAL(6,2)"
    assert types["score"] == "FLOAT" and types["small"] == "SMALLINT"
    assert types["due"] == "DATE" and types["flag"] == "BOOLEAN" and types["at"] == "TIMESTAMPTZ"
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    cols = ", ".join(f'"{n}" {t}' for n, t in types.items())
    con.execute(f"CREATE TABLE t ({cols})")  # every type text is valid DuckDB
    con.close()
