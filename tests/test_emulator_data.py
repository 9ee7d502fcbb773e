"""Table specs and the synthetic dataset of the emulator (fast: scale 1)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dapframe.emulator._data import BASE_ROW_COUNTS, HOSTILE_STRINGS, Dataset
from dapframe.emulator._tables import (
    OVERSIZED,
    TABLES,
    UNSPECIFIED,
    TableSpec,
    arrow_schema,
    arrow_type,
    bump,
    json_schema,
)

STEPS = 3
ALL_TABLES = sorted(TABLES)
LEAVES = {"pseudonyms", "enrollments", "submissions"}
US = 1_000_000


@pytest.fixture(scope="module")
def big_ds() -> Dataset:
    """Scale-30 dataset: enough rows in the small parent tables to expect nulls."""
    return Dataset(seed=0, scale=30)


@pytest.fixture(scope="module")
def ds() -> Dataset:
    """Scale-1 dataset with three committed steps (read-only in tests)."""
    d = Dataset(seed=0)
    d.tick(STEPS)
    return d


def _us(t: Any) -> int:
    return int(np.datetime64(t.replace(tzinfo=None), "us").astype(np.int64))


def _ts_us(table: pa.Table, column: str = "meta.ts") -> np.ndarray:
    return np.asarray(pc.cast(table.column(column), pa.int64()), dtype=np.int64)


def _keys(table: pa.Table) -> np.ndarray:
    name = next(c for c in table.column_names if c.startswith("key."))
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))


def _ids(table: pa.Table, column: str) -> set[Any]:
    return set(table.column(column).drop_null().to_pylist())


def _dedupe_last(table: pa.Table) -> pa.Table:
    """Last row per key, ordered by key."""
    keys = _keys(table)
    if len(keys) == 0:
        return table
    _, first_from_end = np.unique(keys[::-1], return_index=True)
    last = np.sort(len(keys) - 1 - first_from_end)
    out = table.take(last)
    name = next(c for c in out.column_names if c.startswith("key."))
    return out.sort_by(name)


# --------------------------------------------------------------------------------------
# Schema documents and Arrow schemas
# --------------------------------------------------------------------------------------

ALLOWED_KEYWORDS = {
    "$schema", "type", "properties", "additionalProperties", "required", "title",
    "description", "format", "maxLength", "enum", "const", "oneOf", "items",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "default",
}
ALLOWED_TYPES = {"object", "string", "integer", "number", "boolean", "array"}
ALLOWED_FORMATS = {
    "int16", "int32", "int64", "float32", "float64", "date-time", "date", "time", "uuid",
    "ipv4", "ipv6",
}


def _walk(node: Any, path: str, *, top: bool = False) -> None:
    """Reject anything outside the section 7 vocabulary the official client understands."""
    assert isinstance(node, dict), path
    unknown = set(node) - ALLOWED_KEYWORDS
    assert not unknown, f"{path}: unknown keywords {unknown}"
    assert ("$schema" in node) == top, path
    if "type" in node:
        assert isinstance(node["type"], str) and node["type"] in ALLOWED_TYPES, path
    if "format" in node:
        assert node["format"] in ALLOWED_FORMATS, path
    if "enum" in node:
        assert node["enum"] and all(isinstance(v, str) for v in node["enum"]), path
        assert len(set(node["enum"])) == len(node["enum"]), path
    if "maxLength" in node:
        assert isinstance(node["maxLength"], int) and node["maxLength"] > 0, path
    if node.get("type") == "object":
        assert node.get("additionalProperties") is False, f"{path}: additionalProperties"
        props = node.get("properties")
        assert isinstance(props, dict) and props, f"{path}: free-form object"
        assert set(node.get("required", [])) <= set(props), path
        for name, sub in props.items():
            _walk(sub, f"{path}.{name}")
    else:
        assert "properties" not in node and "additionalProperties" not in node, path
    if "oneOf" in node:
        assert isinstance(node["oneOf"], list) and node["oneOf"], path
        for i, sub in enumerate(node["oneOf"]):
            _walk(sub, f"{path}.oneOf[{i}]")
    if "items" in node:
        assert node.get("type") == "array", path
        _walk(node["items"], f"{path}.items")


@pytest.mark.parametrize("ns_table", ALL_TABLES, ids=".".join)
def test_json_schema_vocabulary(ns_table: tuple[str, str]) -> None:
    spec = TABLES[ns_table]
    for s in (spec, bump(bump(spec))):
        doc = json_schema(s)
        json.dumps(doc)  # serialisable
        _walk(doc, "$", top=True)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert doc["required"] == ["key"]
        props = doc["properties"]
        assert set(props) == {"meta", "key", "value"}
        assert props["meta"]["required"] == ["ts"]
        assert props["meta"]["properties"]["action"]["enum"] == ["U", "D"]
        assert list(props["key"]["properties"]) == [s.key.name]
        assert props["key"]["required"] == [s.key.name]
        assert props["key"]["title"] == props["value"]["title"] == s.title
        value = props["value"]
        assert list(value["properties"]) == list(s.column_names)
        assert value["required"] == [c.name for c in s.columns if c.required]
        for name, prop in {**value["properties"], **props["key"]["properties"]}.items():
            assert prop.get("description"), name


def test_json_schema_property_shapes() -> None:
    subs = json_schema(TABLES["canvas", "submissions"])["properties"]
    key = json_schema(TABLES["canvas", "submissions"])["properties"]["key"]["properties"]["id"]
    assert (key["type"], key["format"]) == ("integer", "int64")
    v = subs["value"]["properties"]
    assert v["points_deducted"]["exclusiveMinimum"] == -10_000
    assert v["points_deducted"]["exclusiveMaximum"] == 10_000
    assert v["points_deducted"]["multipleOf"] == pytest.approx(0.01)
    assert v["late_policy_status"]["maxLength"] == 16
    assert v["anonymous_id"]["maxLength"] == 5
    assert v["resource_link_lookup_uuid"]["format"] == "uuid"
    assert v["workflow_state"]["enum"][-1] == UNSPECIFIED
    assert v["created_at"]["format"] == "date-time"
    courses = json_schema(TABLES["canvas", "courses"])["properties"]["value"]["properties"]
    assert courses["syllabus_body"]["oneOf"][0] == {"type": "string", "const": OVERSIZED}
    assert courses["settings"]["type"] == "object"
    assigns = json_schema(TABLES["canvas", "assignments"])["properties"]["value"]["properties"]
    assert assigns["submission_types"]["items"]["enum"][-1] == UNSPECIFIED
    assert assigns["all_day_date"]["format"] == "date"
    logs = json_schema(TABLES["canvas_logs", "web_logs"])["properties"]
    assert logs["key"]["properties"]["id"]["format"] == "uuid"
    assert {o["format"] for o in logs["value"]["properties"]["remote_ip"]["oneOf"]} == {
        "ipv4", "ipv6"}
    assert logs["value"]["properties"]["http_status"]["format"] == "int32"


def test_spec_registry() -> None:
    assert {ns for ns, _ in TABLES} == {"canvas", "canvas_logs"}
    for spec in TABLES.values():
        assert spec.version == 1
        assert spec.key.required
        names = [spec.key.name, *spec.column_names]
        assert len(names) == len(set(names))
        for col in spec.columns:
            if col.kind in ("enum", "enum_array"):
                assert col.enum[-1] == UNSPECIFIED
            if col.kind == "string":
                assert col.max_length
    assert TABLES["canvas_logs", "web_logs"].append_only
    assert not any(s.append_only for (ns, _), s in TABLES.items() if ns == "canvas")
    subs = TABLES["canvas", "submissions"]
    assert subs.column("points_deducted").kind == "decimal"
    deducted = subs.column("points_deducted")
    assert (deducted.precision, deducted.scale) == (6, 2)
    assert TABLES["canvas", "courses"].column("enrollment_term_id").required
    assert not TABLES["canvas", "courses"].column("name").required


@pytest.mark.parametrize("ns_table", ALL_TABLES, ids=".".join)
def test_arrow_schema_matches_spec(ns_table: tuple[str, str], ds: Dataset) -> None:
    spec = TABLES[ns_table]
    snap = arrow_schema(spec, incremental=False)
    inc = arrow_schema(spec, incremental=True)
    assert snap.names == ["meta.ts", f"key.{spec.key.name}",
                          *(f"value.{c}" for c in spec.column_names)]
    assert inc.names == ["meta.ts", "meta.action", *snap.names[1:]]
    assert snap.field("meta.ts").type == pa.timestamp("us", tz="UTC")
    assert inc.field("meta.action").type == pa.string()
    for col in spec.columns:
        assert snap.field(f"value.{col.name}").type == arrow_type(col)
    expected = {"int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
                "float64": pa.float64(), "bool": pa.bool_(), "date": pa.date32(),
                "timestamp": pa.timestamp("us", tz="UTC"), "decimal": pa.decimal128(6, 2)}
    for col in spec.columns:
        assert arrow_type(col) == expected.get(col.kind, pa.string()), col.name
    # The dataset produces exactly these schemas.
    assert ds.snapshot(*ns_table).schema == snap
    assert ds.changes(*ns_table, ds.commit_time(0), ds.clock).schema == inc


def test_bump_spec() -> None:
    spec = TABLES["canvas", "accounts"]
    b = bump(spec)
    assert b.version == 2 and spec.version == 1
    assert b.columns[-1].name == "emulator_note_v2"
    assert (b.columns[-1].kind, b.columns[-1].max_length, b.columns[-1].required) == (
        "string", 255, False)
    ws = b.column("workflow_state").enum
    assert ws[-2:] == ("emulator_state_v2", UNSPECIFIED)
    assert set(ws) - {"emulator_state_v2"} == set(spec.column("workflow_state").enum)
    bb = bump(b)
    assert bb.version == 3
    assert bb.column_names[-2:] == ("emulator_note_v2", "emulator_note_v3")
    assert bb.column("workflow_state").enum[-3:] == (
        "emulator_state_v2", "emulator_state_v3", UNSPECIFIED)


# --------------------------------------------------------------------------------------
# Dataset: API, counts, timing
# --------------------------------------------------------------------------------------


def test_catalogue(ds: Dataset) -> None:
    assert ds.namespaces() == ["canvas", "canvas_logs"]
    assert ds.tables("canvas") == sorted(n for ns, n in TABLES if ns == "canvas")
    assert ds.tables("canvas_logs") == ["web_logs"]
    assert isinstance(ds.spec("canvas", "users"), TableSpec)
    with pytest.raises(KeyError):
        ds.spec("canvas", "nope")
    with pytest.raises(KeyError):
        ds.spec("canvas_logs", "users")
    with pytest.raises(KeyError):
        ds.tables("nope")
    with pytest.raises(ValueError):
        ds.snapshot("canvas", "users", step=STEPS + 1)
    assert ds.step == STEPS
    assert ds.clock == ds.commit_time(STEPS) == ds.start + STEPS * timedelta(hours=1)
    assert ds.commit_time(0).isoformat() == "2026-11-01T00:00:00+00:00"


def test_row_counts_scale(ds: Dataset) -> None:
    d0 = Dataset(seed=0)
    for ns, table in ALL_TABLES:
        n = d0.snapshot(ns, table).num_rows
        base = BASE_ROW_COUNTS[table]
        if table == "web_logs":
            assert base <= n <= base * 1.1  # plus repeated rows
        else:
            assert n == base
    d2 = Dataset(seed=0, scale=2.5)
    assert d2.snapshot("canvas", "submissions").num_rows == 5000
    assert d2.snapshot("canvas", "accounts").num_rows in (12, 13)
    tiny = Dataset(seed=0, scale=0.01)
    assert all(tiny.snapshot(ns, t).num_rows >= 1 for ns, t in ALL_TABLES)


@pytest.mark.parametrize("ns_table", ALL_TABLES, ids=".".join)
def test_step_volume_and_actions(ns_table: tuple[str, str], ds: Dataset) -> None:
    base = ds.snapshot(*ns_table, step=0).num_rows
    for step in range(1, STEPS + 1):
        ch = ds.changes(*ns_table, ds.commit_time(step - 1), ds.commit_time(step))
        actions = ch.column("meta.action").to_pylist()
        assert actions.count("U") >= 1
        if ns_table[1] not in LEAVES:
            assert "D" not in actions  # parents and logs are never hard-deleted
        assert len(ch) <= max(3, 0.2 * base), "about 1-3% change per step"
    subs = [ds.changes("canvas", "submissions", ds.commit_time(s - 1), ds.commit_time(s))
            for s in range(1, STEPS + 1)]
    assert any("D" in c.column("meta.action").to_pylist() for c in subs)


@pytest.mark.parametrize("ns_table", ALL_TABLES, ids=".".join)
def test_meta_ts(ns_table: tuple[str, str], ds: Dataset) -> None:
    start = _us(ds.commit_time(0))
    snap0 = ds.snapshot(*ns_table, step=0)
    ts0 = _ts_us(snap0)
    assert (ts0 <= start).all() and (ts0 % 1000 == 0).all()
    if ns_table[1] == "web_logs":
        assert (ts0 >= start - 7 * 86_400 * US).all()
        assert (ts0 == _ts_us(snap0, "value.timestamp")).all()
    else:
        assert (ts0 == _ts_us(snap0, "value.updated_at")).all()
    for step in range(1, STEPS + 1):
        lo, hi = _us(ds.commit_time(step - 1)), _us(ds.commit_time(step))
        ch = ds.changes(*ns_table, ds.commit_time(step - 1), ds.commit_time(step))
        ts = _ts_us(ch)
        assert ((ts > lo) & (ts <= hi)).all()
        assert (ts % 1000 == 0).all()
        distinct = _dedupe_last(ch) if ns_table[1] == "web_logs" else ch
        assert len(np.unique(_ts_us(distinct))) == len(distinct)
        if ns_table[1] != "web_logs":
            upserts = ch.filter(pc.equal(ch.column("meta.action"), "U"))
            updated = _ts_us(upserts, "value.updated_at")
            assert ((updated > lo) & (updated <= _ts_us(upserts))).all()


# --------------------------------------------------------------------------------------
# History identity, windows, determinism
# --------------------------------------------------------------------------------------


def _apply(base: pa.Table, changes: pa.Table) -> pa.Table:
    """Apply an incremental result to a snapshot by key (upsert U, remove D)."""
    key = next(c for c in base.column_names if c.startswith("key."))
    touched = pa.array(np.unique(_keys(changes))) if len(changes) else pa.array([], base[key].type)
    kept = base.filter(pc.invert(pc.is_in(base.column(key), value_set=touched)))
    ups = changes.filter(pc.equal(changes.column("meta.action"), "U")).drop_columns(["meta.action"])
    return pa.concat_tables([kept, ups.cast(base.schema)]).sort_by(key)


@pytest.mark.parametrize("ns_table", ALL_TABLES, ids=".".join)
def test_changes_reproduce_snapshot(ns_table: tuple[str, str], ds: Dataset) -> None:
    for k in range(1, STEPS + 1):
        base = ds.snapshot(*ns_table, step=0)
        ch = ds.changes(*ns_table, ds.commit_time(0), ds.commit_time(k))
        target = ds.snapshot(*ns_table, step=k)
        if ns_table[1] == "web_logs":
            merged = _dedupe_last(pa.concat_tables([base, ch.drop_columns(["meta.action"])]))
            assert merged.equals(_dedupe_last(target))
            # Nothing consolidated: every appended row is in the window.
            assert len(ch) == len(target) - len(base)
        else:
            assert len(np.unique(_keys(ch))) == len(ch), "one version per key"
            assert _apply(base, ch).equals(target.sort_by(f"key.{ds.spec(*ns_table).key.name}"))


def test_identity_across_schema_bump() -> None:
    d = Dataset(seed=3)
    d.tick(1)
    d.schema_bump("canvas", "submissions")
    d.schema_bump("canvas_logs", "web_logs")
    d.tick(2)
    for ns, table in (("canvas", "submissions"), ("canvas_logs", "web_logs")):
        base = d.snapshot(ns, table, step=0)
        ch = d.changes(ns, table, d.commit_time(0), d.clock)
        target = d.snapshot(ns, table)
        if table == "web_logs":
            merged = _dedupe_last(pa.concat_tables([base, ch.drop_columns(["meta.action"])]))
            assert merged.equals(_dedupe_last(target))
        else:
            assert _apply(base, ch).equals(target.sort_by("key.id"))


def test_changes_window_boundaries(ds: Dataset) -> None:
    for ns, table in ALL_TABLES:
        c0, c1 = ds.commit_time(0), ds.commit_time(1)
        ch = ds.changes(ns, table, c0, c1)
        row = ch.slice(len(ch) // 2, 1).to_pylist()[0]
        t = row["meta.ts"]
        key = next(k for k in row if k.startswith("key."))
        keys_at = set(_keys(ds.changes(ns, table, t - timedelta(milliseconds=1), t)))
        assert row[key] in keys_at, "until is inclusive"
        after = ds.changes(ns, table, t, c1)
        assert row[key] not in set(_keys(after)), "since is exclusive"
        assert (_ts_us(after) > _us(t)).all()
        # Empty and full windows.
        assert ds.changes(ns, table, c1, c1).num_rows == 0
        assert ds.changes(ns, table, ds.clock, ds.clock + timedelta(days=1)).num_rows == 0
        everything = ds.changes(ns, table, c0 - timedelta(days=4000), ds.clock)
        if table == "web_logs":
            assert len(everything) == len(ds.snapshot(ns, table))
        else:
            live = everything.filter(pc.equal(everything.column("meta.action"), "U"))
            assert len(live) == len(ds.snapshot(ns, table))


def test_deterministic() -> None:
    a, b, c = Dataset(seed=11), Dataset(seed=11), Dataset(seed=12)
    for d in (a, b, c):
        d.tick(2)
        d.schema_bump("canvas", "courses")
        d.tick(1)
    for ns, table in ALL_TABLES:
        assert a.snapshot(ns, table).equals(b.snapshot(ns, table))
        assert a.snapshot(ns, table, step=1).equals(b.snapshot(ns, table, step=1))
        assert a.changes(ns, table, a.commit_time(0), a.clock).equals(
            b.changes(ns, table, b.commit_time(0), b.clock))
    assert not a.snapshot("canvas", "submissions").equals(c.snapshot("canvas", "submissions"))


def test_snapshot_history_is_stable(ds: Dataset) -> None:
    """Older snapshots do not change when later steps are committed."""
    d = Dataset(seed=0)
    d.tick(1)
    for ns, table in ALL_TABLES:
        assert d.snapshot(ns, table).equals(ds.snapshot(ns, table, step=1))


def test_custom_clock() -> None:
    from datetime import UTC, datetime
    start = datetime(2025, 1, 1, tzinfo=UTC)
    d = Dataset(seed=1, start=start, step_interval=timedelta(minutes=5))
    d.tick(2)
    assert d.clock == start + timedelta(minutes=10)
    ts = _ts_us(d.changes("canvas", "users", d.commit_time(1), d.commit_time(2)))
    assert ((ts > _us(d.commit_time(1))) & (ts <= _us(d.commit_time(2)))).all()
    with pytest.raises(ValueError):
        Dataset(step_interval=timedelta(microseconds=1500))


# --------------------------------------------------------------------------------------
# Data realism
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [0, STEPS])
def test_links_consistent(ds: Dataset, step: int) -> None:
    def snap(t: str) -> pa.Table:
        return ds.snapshot("canvas", t, step=step)

    accounts, terms, users = snap("accounts"), snap("enrollment_terms"), snap("users")
    courses, sections, assignments = snap("courses"), snap("course_sections"), snap("assignments")
    pseudonyms, enrollments = snap("pseudonyms"), snap("enrollments")
    submissions = snap("submissions")
    account_ids, user_ids = _ids(accounts, "key.id"), _ids(users, "key.id")
    course_ids = _ids(courses, "key.id")
    assert _ids(accounts, "value.parent_account_id") <= account_ids
    assert _ids(courses, "value.account_id") <= account_ids
    assert _ids(courses, "value.enrollment_term_id") <= _ids(terms, "key.id")
    assert _ids(sections, "value.course_id") <= course_ids
    assert _ids(pseudonyms, "value.user_id") <= user_ids
    assert _ids(pseudonyms, "value.account_id") <= account_ids
    assert _ids(enrollments, "value.user_id") <= user_ids
    assert _ids(enrollments, "value.course_id") <= course_ids
    assert _ids(enrollments, "value.course_section_id") <= _ids(sections, "key.id")
    assert _ids(assignments, "value.context_id") <= course_ids
    assert _ids(submissions, "value.assignment_id") <= _ids(assignments, "key.id")
    assert _ids(submissions, "value.user_id") <= user_ids
    assert _ids(submissions, "value.course_id") <= course_ids
    # Joined consistency: an enrollment's course is its section's course, a
    # submission's course is its assignment's course.
    section_course = dict(zip(sections["key.id"].to_pylist(),
                              sections["value.course_id"].to_pylist(), strict=True))
    for sec, course in zip(enrollments["value.course_section_id"].to_pylist(),
                           enrollments["value.course_id"].to_pylist(), strict=True):
        assert section_course[sec] == course
    assignment_course = dict(zip(assignments["key.id"].to_pylist(),
                                 assignments["value.context_id"].to_pylist(), strict=True))
    for a, course in zip(submissions["value.assignment_id"].to_pylist(),
                         submissions["value.course_id"].to_pylist(), strict=True):
        assert assignment_course[a] == course
    # Every course has at least one section at the start.
    if step == 0:
        assert course_ids <= _ids(sections, "value.course_id")


def test_parents_only_soft_deleted(ds: Dataset) -> None:
    for table in ("accounts", "users", "courses", "course_sections", "assignments",
                  "enrollment_terms"):
        before = set(_keys(ds.snapshot("canvas", table, step=0)))
        assert before <= set(_keys(ds.snapshot("canvas", table)))
    for table in ("accounts", "users", "pseudonyms"):
        snap = ds.snapshot("canvas", table)
        deleted = pc.equal(snap["value.workflow_state"], "deleted").to_numpy(zero_copy_only=False)
        has_deleted_at = snap["value.deleted_at"].is_valid().to_numpy(zero_copy_only=False)
        assert (deleted == has_deleted_at).all()


def test_web_logs_repeat_keys(ds: Dataset) -> None:
    snap = ds.snapshot("canvas_logs", "web_logs")
    keys = _keys(snap)
    uniq, counts = np.unique(keys, return_counts=True)
    assert (counts > 1).any()
    for key in uniq[counts > 1][:20]:
        rows = snap.filter(pc.equal(snap["key.id"], key)).to_pylist()
        assert all(r == rows[0] for r in rows), "a repeated key repeats the whole row"
    for step in range(1, STEPS + 1):
        ch = ds.changes("canvas_logs", "web_logs", ds.commit_time(step - 1), ds.commit_time(step))
        assert len(np.unique(_keys(ch))) < len(ch), "each step repeats some rows"
        assert set(ch.column("meta.action").to_pylist()) == {"U"}


def _string_cells(ds: Dataset) -> list[str]:
    out: list[str] = []
    for ns, table in ALL_TABLES:
        snap = ds.snapshot(ns, table)
        for col in ds.spec(ns, table).columns:
            if col.kind in ("string", "text", "sentinel_text"):
                out.extend(snap[f"value.{col.name}"].drop_null().to_pylist())
    return out


@pytest.mark.parametrize("ns_table", ALL_TABLES, ids=".".join)
def test_values_obey_spec(ns_table: tuple[str, str], ds: Dataset) -> None:
    spec = ds.spec(*ns_table)
    for step in (0, STEPS):
        snap = ds.snapshot(*ns_table, step=step)
        snap.validate(full=True)  # includes UTF-8 validity of every string
        assert snap[f"key.{spec.key.name}"].null_count == 0
        assert len(np.unique(_keys(snap))) == len(snap) or spec.append_only
        for col in spec.columns:
            arr = snap[f"value.{col.name}"]
            if col.required:
                assert arr.null_count == 0, col.name
            values = arr.drop_null()
            if col.kind == "string":
                assert pc.max(pc.utf8_length(values)).as_py() <= col.max_length, col.name
            if col.kind == "enum":
                assert set(values.to_pylist()) <= set(col.enum), col.name
            if col.kind == "enum_array":
                for text in values.to_pylist():
                    items = json.loads(text)
                    assert items and set(items) <= set(col.enum), col.name
            if col.kind == "struct":
                for text in values.to_pylist():
                    obj = json.loads(text)
                    assert obj and set(obj) <= set(col.struct_fields), col.name
                    assert all(isinstance(v, str) for v in obj.values())
            if col.kind == "uuid":
                assert pc.all(pc.match_substring_regex(
                    values, r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
                )).as_py() in (True, None), col.name
            if col.kind == "ip":
                assert pc.all(pc.match_substring_regex(
                    values, r"^(\d{1,3}(\.\d{1,3}){3}|[0-9a-f:]+)$")).as_py() in (True, None)


# Tables of a few rows at scale 1 (accounts, terms, courses, sections) are checked at scale 20.
@pytest.mark.parametrize("ns_table", ALL_TABLES, ids=".".join)
def test_nullable_columns_have_nulls(ns_table: tuple[str, str], ds: Dataset,
                                     big_ds: Dataset) -> None:
    """Nullable columns really are null sometimes."""
    snap = ds.snapshot(*ns_table, step=0)
    if len(snap) < 100:
        snap = big_ds.snapshot(*ns_table, step=0)
    assert len(snap) >= 100
    # Nullable in the ERD but filled in practice (identity, names, request basics).
    always_set = {"created_at", "updated_at", "timestamp", "name", "sortable_name", "uuid",
                  "lti_context_id", "course_code", "url", "http_method", "http_status",
                  "http_version"}
    missing = [c.name for c in ds.spec(*ns_table).columns
               if not c.required and c.name not in always_set
               and snap[f"value.{c.name}"].null_count == 0]
    assert not missing


def test_sentinels_and_hostile_strings(ds: Dataset) -> None:
    cells = _string_cells(ds)
    for needle in ("\n", "\r", "\t", '"', ",", "\\", "é", "中文", "🎓", "'"):
        assert any(needle in c for c in cells), repr(needle)
    for exact in ("NULL", "\\N", ""):
        assert exact in cells, repr(exact)
    assert set(HOSTILE_STRINGS) & set(cells)
    assert OVERSIZED in cells
    courses = ds.snapshot("canvas", "courses", step=0)
    for name in ("syllabus_body", "turnitin_comments", "public_description"):
        assert OVERSIZED in courses[f"value.{name}"].to_pylist(), name
    for table in ("users", "submissions", "enrollments", "pseudonyms", "assignments"):
        snap = ds.snapshot("canvas", table, step=0)
        assert UNSPECIFIED in snap["value.workflow_state"].to_pylist(), table
    # Long text and JSON columns.
    body = ds.snapshot("canvas", "assignments")["value.description"].drop_null()
    assert pc.max(pc.utf8_length(body)).as_py() > 2000
    settings = ds.snapshot("canvas", "courses")["value.settings"].drop_null().to_pylist()
    assert settings and all(isinstance(json.loads(s), dict) for s in settings)


def test_schema_bump_dataset() -> None:
    d = Dataset(seed=5)
    d.tick(1)
    spec = d.schema_bump("canvas", "enrollments")
    assert spec.version == 2 and d.spec("canvas", "enrollments") is spec
    assert d.spec("canvas", "users").version == 1
    old = d.snapshot("canvas", "enrollments")
    assert old.schema == arrow_schema(spec, incremental=False)
    assert old["value.emulator_note_v2"].null_count == len(old)
    assert d.snapshot("canvas", "enrollments", step=0).schema == old.schema
    d.tick(3)
    ch = d.changes("canvas", "enrollments", d.commit_time(1), d.clock)
    ups = ch.filter(pc.equal(ch["meta.action"], "U"))
    notes = ups["value.emulator_note_v2"]
    assert notes.null_count == 0  # new and updated rows fill the new column
    assert "emulator_state_v2" in ups["value.workflow_state"].to_pylist()
    dels = ch.filter(pc.equal(ch["meta.action"], "D"))
    assert dels["value.emulator_note_v2"].null_count == len(dels)
    assert "emulator_note_v2" in json_schema(spec)["properties"]["value"]["properties"]
    # A second bump keeps both added columns.
    spec3 = d.schema_bump("canvas", "enrollments")
    assert spec3.version == 3
    assert d.snapshot("canvas", "enrollments").column_names[-2:] == [
        "value.emulator_note_v2", "value.emulator_note_v3"]
    with pytest.raises(KeyError):
        d.schema_bump("canvas", "nope")
