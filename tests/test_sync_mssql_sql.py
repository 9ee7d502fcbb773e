"""SQL Server without a server: the generated T-SQL, the type mapping, the bulk-copy rows, errors.

No SQL Server can be installed here, so these tests check what can be checked without one:

- every statement the dialect generates for every emulator table parses as T-SQL (sqlglot), with
  the official layout's names, types and constraints; and, with the official client's venv, the
  DDL is compared with what ``dap`` 2.3.1's own generator (pysqlsync) emits for the same schema;
- the session's initdb/syncdb/migrate/dropdb run against a recording connection that answers
  catalog queries: the statements (as pymssql would send them, parameters quoted by pymssql
  itself) parse, come in the right order, in one transaction;
- the bulk-copy rows hold the values pymssql needs; an unreachable server fails fast, one line.

The live suite (tests/test_sync.py and the others that use ``sync_target``) runs on SQL Server
when DAPFRAME_MSSQL_URL is set.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from dapframe.emulator._data import Dataset
from dapframe.emulator._tables import json_schema
from dapframe.errors import DatabaseError
from dapframe.sync import parse_connection_string
from dapframe.sync._dialect import SHADOW_SUFFIX, SyncRow
from dapframe.sync._layout import META_ACTION, TableLayout, table_layout
from dapframe.sync._mssql import (
    STAGE,
    MSSQLDialect,
    MSSQLSession,
    bookkeeping_ddl,
    bulk_rows,
    change_counts_sql,
    dedupe_sql,
    delete_sql,
    insert_sql,
    lookup_ddl,
    lookup_insert_sql,
    merge_sql,
    mssql_error,
    mssql_type,
    read_arrays,
    stage_columns,
    stage_ddl,
    swap_sql,
    table_ddl,
    version_insert_sql,
)
from tests.sync_support import TABLES

DS = Dataset(scale=0.01)
INFO = parse_connection_string("mssql://sa:S3cret%40pw@db.example:1433/replica")

# Reference section 7, SQL Server column: the expected type of each kind of column.
SYNTH = {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
    "additionalProperties": False, "required": ["key"],
    "properties": {
        "meta": {"type": "object", "additionalProperties": False, "required": ["ts"],
                 "properties": {"ts": {"type": "string", "format": "date-time"},
                                "action": {"type": "string", "enum": ["U", "D"]}}},
        "key": {"type": "object", "additionalProperties": False, "required": ["id"],
                "properties": {"id": {"type": "integer", "format": "int64"}}},
        "value": {"type": "object", "additionalProperties": False, "required": ["s16", "state"],
                  "properties": {
                      "s16": {"type": "integer", "format": "int16"},
                      "i32": {"type": "integer", "format": "int32"},
                      "i64": {"type": "integer", "format": "int64"},
                      "plain_int": {"type": "integer"},
                      "f32": {"type": "number", "format": "float32"},
                      "f64": {"type": "number", "format": "float64"},
                      "dec": {"type": "number", "exclusiveMinimum": -1000,
                              "exclusiveMaximum": 1000, "multipleOf": 0.01},
                      "flag": {"type": "boolean"},
                      "name": {"type": "string", "maxLength": 255},
                      "edge": {"type": "string", "maxLength": 2000},
                      "long": {"type": "string", "maxLength": 3000},
                      "text": {"type": "string"},
                      "body": {"oneOf": [{"type": "string",
                                          "const": "__dap_oversized_truncated__"},
                                         {"type": "string"}]},
                      "at": {"type": "string", "format": "date-time"},
                      "day": {"type": "string", "format": "date"},
                      "clock": {"type": "string", "format": "time"},
                      "guid": {"type": "string", "format": "uuid"},
                      "ip4": {"type": "string", "format": "ipv4"},
                      "ip6": {"type": "string", "format": "ipv6"},
                      "ip": {"oneOf": [{"type": "string", "format": "ipv4"},
                                       {"type": "string", "format": "ipv6"}]},
                      "state": {"type": "string", "enum": ["active", "deleted", "it's"]},
                      "tags": {"type": "array", "items": {"type": "string",
                                                          "enum": ["a", "b"]}},
                      "ids": {"type": "array", "items": {"type": "integer",
                                                         "format": "int64"}},
                      "settings": {"type": "object", "additionalProperties": False,
                                   "properties": {"x": {"type": "string"}}},
                  }},
    },
}
EXPECTED_TYPES = {
    "id": "bigint", "s16": "smallint", "i32": "integer", "i64": "bigint", "plain_int": "bigint",
    "f32": "real", "f64": "double precision", "dec": "decimal(5, 2)", "flag": "bit",
    "name": "varchar(1020)", "edge": "varchar(8000)", "long": "varchar(max)",
    "text": "varchar(max)", "body": "varchar(max)", "at": "datetime2", "day": "date",
    "clock": "time", "guid": "binary(16)", "ip4": "binary(4)", "ip6": "binary(16)",
    "ip": "binary(16)", "state": "integer", "tags": "varchar(max)", "ids": "varchar(max)",
    "settings": "varchar(max)",
}
# The same by layout kind, for the emulator tables (strings: their own maxLength rule).
KIND_TYPES = {"int16": "smallint", "int32": "integer", "int64": "bigint", "float32": "real",
              "float64": "double precision", "bool": "bit", "timestamp": "datetime2",
              "date": "date", "time": "time", "uuid": "binary(16)", "ip": "binary(16)",
              "enum": "integer", "array": "varchar(max)", "struct": "varchar(max)"}


def _layout(ns: str, table: str) -> TableLayout:
    return table_layout(ns, table, json_schema(DS.spec(ns, table)), 1)


def _synth() -> TableLayout:
    return table_layout("canvas", "synth", SYNTH, 1)


def _expected_type(layout: TableLayout, name: str) -> str:
    col = layout.column(name)
    if col.kind == "string":
        n = col.max_length
        return "varchar(max)" if n is None or 4 * n > 8000 else f"varchar({4 * n})"
    if col.kind == "decimal":
        return f"decimal({col.precision}, {col.scale})"
    return KIND_TYPES[col.kind]


# ------------------------------------------------------------------------------------------
# parsing helpers


def parse_tsql(sql: str) -> list[exp.Expression]:
    """Parse as T-SQL, strictly: no fallback to an opaque command."""
    stmts = [s for s in sqlglot.parse(sql, read="tsql", error_level=ErrorLevel.RAISE)
             if s is not None]
    assert stmts, sql
    for s in stmts:
        if isinstance(s, exp.Command):
            # sqlglot keeps SET IDENTITY_INSERT as a command; nothing else may fall back.
            assert re.fullmatch(r"SET IDENTITY_INSERT \[[^\]]+\]\.\[[^\]]+\] (ON|OFF)",
                                sql.strip()), sql
    return stmts


def _type_of(typ: str) -> str:
    """A type as sqlglot prints it (both sides of a comparison go through this)."""
    node = parse_tsql(f"CREATE TABLE [t] ([c] {typ})")[0]
    assert isinstance(node, exp.Create)
    col = node.this.expressions[0]
    return str(col.args["kind"].sql("tsql"))


@dataclass
class Table:
    """A table as DDL describes it: columns and named constraints."""

    columns: list[tuple[str, str, bool, bool]] = field(default_factory=list)
    constraints: dict[str, str] = field(default_factory=dict)


def describe(statements: Sequence[str]) -> dict[tuple[str, str], Table]:
    """Tables, columns (name, type, not null, identity) and constraints from DDL."""
    out: dict[tuple[str, str], Table] = {}
    for sql in statements:
        for stmt in parse_tsql(sql):
            if isinstance(stmt, exp.Create) and stmt.args.get("kind") == "TABLE":
                t = stmt.this.this
                table = out.setdefault((t.db, t.name), Table())
                for e in stmt.this.expressions:
                    if isinstance(e, exp.ColumnDef):
                        cons = [c.kind for c in e.args.get("constraints") or []]
                        not_null = any(isinstance(c, exp.NotNullColumnConstraint)
                                       and not c.args.get("allow_null") for c in cons)
                        identity = "IDENTITY" in e.sql("tsql").upper()
                        table.columns.append((e.name, e.args["kind"].sql("tsql"), not_null,
                                              identity))
                    elif isinstance(e, exp.Constraint):
                        table.constraints[e.name] = e.expressions[0].sql("tsql")
            elif isinstance(stmt, exp.Alter):
                t = stmt.this
                table = out.setdefault((t.db, t.name), Table())
                for action in stmt.args.get("actions") or []:
                    for c in action.find_all(exp.Constraint):
                        table.constraints[c.name] = c.expressions[0].sql("tsql")
    return out


def fresh_ddl(layout: TableLayout) -> list[str]:
    """What a first initdb creates: lookup tables, then the table."""
    out: list[str] = []
    for col in layout.enums:
        out += lookup_ddl(layout, col)
    return out + table_ddl(layout)


TABLE_IDS = [f"{ns}.{t}" for ns, t in TABLES]


# ------------------------------------------------------------------------------------------
# type mapping


def test_type_mapping_column_by_column() -> None:
    layout = _synth()
    got = {c.name: mssql_type(c, layout) for c in layout.columns}
    assert got == EXPECTED_TYPES
    # ... and each parses as that T-SQL type.
    for name, typ in got.items():
        assert _type_of(typ).split("(")[0] in {
            "BIGINT", "SMALLINT", "INTEGER", "INT", "REAL", "FLOAT", "DECIMAL", "NUMERIC", "BIT",
            "VARCHAR", "DATETIME2", "DATE", "TIME", "BINARY"}, (name, typ)


def test_synth_ddl_layout() -> None:
    layout = _synth()
    tables = describe(fresh_ddl(layout))
    # one lookup table per enum column and per enum array (official), none for plain arrays
    assert set(tables) == {("canvas", "synth"), ("canvas", "synth__state"),
                           ("canvas", "synth__tags")}
    main = tables["canvas", "synth"]
    assert [(c[0], c[1]) for c in main.columns] == [
        (n, _type_of(t)) for n, t in EXPECTED_TYPES.items()]
    nn = {c[0] for c in main.columns if c[2]}
    assert nn == {"id", "s16", "state"}
    assert main.constraints == {
        "pk_canvas_synth": "PRIMARY KEY ([id])",
        "fk_canvas_synth_state": "FOREIGN KEY ([state]) REFERENCES [canvas].[synth__state] "
                                 "([id])"}
    # A label with a quote is quoted, not pasted.
    sql = lookup_insert_sql(layout, layout.column("state"), ["active", "it's"])
    assert sql is not None
    literals = [lit.this for lit in parse_tsql(sql)[0].find_all(exp.National, exp.Literal)]
    assert "it's" in literals


# ------------------------------------------------------------------------------------------
# every emulator table: DDL, MERGE, DELETE, bookkeeping


@pytest.mark.parametrize(("ns", "table"), TABLES, ids=TABLE_IDS)
def test_ddl_matches_the_official_layout(ns: str, table: str) -> None:
    layout = _layout(ns, table)
    tables = describe(fresh_ddl(layout))
    main = tables[ns, table]
    assert [c[0] for c in main.columns] == [c.name for c in layout.columns]
    for (name, typ, not_null, identity), col in zip(main.columns, layout.columns, strict=True):
        assert typ == _type_of(_expected_type(layout, name)), (name, typ)
        assert not_null == (not col.nullable), name
        assert not identity
    enums = [c for c in layout.columns if c.kind == "enum"]
    assert main.constraints.pop(f"pk_{ns}_{table}") == f"PRIMARY KEY ([{layout.key.name}])"
    assert main.constraints == {
        f"fk_{ns}_{table}_{c.name}": f"FOREIGN KEY ([{c.name}]) REFERENCES "
                                     f"[{ns}].[{table}__{c.name}] ([id])" for c in enums}
    lookups = {k: v for k, v in tables.items() if k != (ns, table)}
    assert set(lookups) == {(ns, f"{table}__{c.name}") for c in layout.enums}
    for (_, name), t in lookups.items():
        assert t.columns == [("id", "INTEGER", True, True), ("value", "VARCHAR(256)", True, False)]
        assert t.constraints == {f"pk_{ns}_{name}": "PRIMARY KEY ([id])",
                                 f"uq_{name}": "UNIQUE ([value])"}


def test_bookkeeping_ddl() -> None:
    tables = describe(bookkeeping_ddl())
    sync = tables["instructure_dap", "table_sync"]
    assert sync.columns == [
        ("id", "BIGINT", True, True), ("source_namespace", "VARCHAR(256)", True, False),
        ("source_table", "VARCHAR(256)", True, False), ("timestamp", "DATETIME2", True, False),
        ("schema_version", "BIGINT", True, False), ("target_schema", "VARCHAR(256)", False, False),
        ("target_table", "VARCHAR(256)", True, False),
        ("schema_description_format", "VARCHAR(256)", True, False),
        ("schema_description", "VARCHAR(MAX)", True, False)]
    assert sync.constraints == {"pk_instructure_dap_table_sync": "PRIMARY KEY ([id])"}
    version = tables["instructure_dap", "database_version"]
    assert version.columns == [("version", "BIGINT", True, True)]
    assert version.constraints == {"pk_instructure_dap_database_version": "PRIMARY KEY ([version])"}
    stmts = version_insert_sql()
    kinds = [parse_tsql(s)[0].key for s in stmts]
    assert kinds[1] == "insert" and {kinds[0], kinds[2]} <= {"command", "set"}
    assert stmts[0].endswith(" ON") and stmts[2].endswith(" OFF")


_OFFICIAL_GEN = r'''
import json, sys, types
stub = types.ModuleType("pyodbc")  # only ODBC type constants are read while generating DDL
stub.__getattr__ = lambda name: 0
stub.Connection = object
sys.modules["pyodbc"] = stub
from pysqlsync.base import GeneratorOptions
from pysqlsync.formation.mutation import MutatorOptions
from pysqlsync.formation.py_to_sql import StructMode
from pysqlsync.dialect.mssql.generator import MSSQLGenerator
from dap.replicator import canvas, canvas_logs, catalog, meta_schema, new_quizzes
from dap.replicator.sql_op import create_table_dataclass, get_module_for_namespace
out = {}
for ns, table, doc in json.load(sys.stdin):
    gen = MSSQLGenerator(GeneratorOptions(  # the options dap.integration.database passes
        struct_mode=StructMode.JSON, foreign_constraints=False,
        namespaces={meta_schema: "instructure_dap", canvas: "canvas",
                    canvas_logs: "canvas_logs", catalog: "catalog", new_quizzes: "new_quizzes"},
        synchronization=MutatorOptions(allow_drop_enum=False, allow_drop_struct=False,
                                       allow_drop_table=False, allow_drop_namespace=False)))
    if table is None:
        out["bookkeeping"] = gen.create(modules=[meta_schema])
    else:
        entity = create_table_dataclass(table, get_module_for_namespace(ns), doc)
        out[f"{ns}.{table}"] = gen.create(tables=[entity])
json.dump(out, sys.stdout)
'''


@pytest.fixture(scope="module")
def official_ddl(official_dap: Path) -> dict[str, str]:
    """The DDL ``dap`` 2.3.1's own generator emits for SQL Server, per emulator table."""
    python = official_dap.parent / "python"
    work = [[ns, t, json_schema(DS.spec(ns, t))] for ns, t in TABLES] + [
        [None, None, None], ["canvas", "synth", SYNTH]]
    proc = subprocess.run([str(python), "-c", _OFFICIAL_GEN], input=json.dumps(work),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out: dict[str, str] = {}
    for name, sql in json.loads(proc.stdout).items():
        # The schema statement (IF ... EXEC('CREATE SCHEMA')) is made differently here: the
        # session checks sys.schemas and runs CREATE SCHEMA on its own.
        out[name] = "\n".join(line for line in sql.splitlines()
                              if not line.startswith("IF NOT EXISTS"))
    return out


@pytest.mark.parametrize("name", [*TABLE_IDS, "canvas.synth", "bookkeeping"])
def test_ddl_equals_the_official_clients(name: str, official_ddl: dict[str, str]) -> None:
    """Tables, columns (order, type, nullability, identity) and constraints as ``dap`` makes."""
    if name == "bookkeeping":
        ours = bookkeeping_ddl()
    else:
        ns, table = name.split(".")
        ours = fresh_ddl(_synth() if table == "synth" else _layout(ns, table))
    theirs = describe([official_ddl[name]])
    assert describe(ours) == theirs


@pytest.mark.parametrize(("ns", "table"), TABLES, ids=TABLE_IDS)
def test_merge_delete_and_stage_statements(ns: str, table: str) -> None:
    layout = _layout(ns, table)
    key = layout.key.name
    names = [c.name for c in layout.columns]
    values = [n for n in names if n != key]
    target = f"[{ns}].[{table}]"

    (merge,) = parse_tsql(merge_sql(layout))
    assert isinstance(merge, exp.Merge)
    assert merge.this.sql("tsql").startswith(target)
    on = merge.args["on"]
    assert {c.name for c in on.find_all(exp.Column)} == {key}
    source = merge.args["using"]
    assert [s.alias_or_name for s in source.find(exp.Select).expressions] == names
    where = source.find(exp.Where)
    assert where is not None and "N'U'" in where.sql("tsql") and META_ACTION in where.sql("tsql")
    whens = merge.args["whens"].expressions
    matched = [w for w in whens if w.args.get("matched")]
    unmatched = [w for w in whens if not w.args.get("matched")]
    assert len(matched) == 1 and len(unmatched) == 1
    update = matched[0].args["then"]
    assert [e.this.name for e in update.expressions] == values  # every value column, not the key
    insert = unmatched[0].args["then"]
    assert [c.name for c in insert.this.expressions] == names

    (delete,) = parse_tsql(delete_sql(layout))
    assert isinstance(delete, exp.Delete)
    text = delete.sql("tsql")
    assert target in text and STAGE in text and "N'D'" in text
    joins = delete.args.get("joins") or delete.find_all(exp.Join)
    assert {c.name for j in joins for c in j.args["on"].find_all(exp.Column)} == {key}

    # Staging: nvarchar text with the database's collation, enum ids, the table's other types.
    for incremental in (False, True):
        stmts = [s for sql in stage_ddl(layout, incremental=incremental) for s in parse_tsql(sql)]
        create = stmts[-1]
        assert isinstance(create, exp.Create) and create.this.this.sql("tsql") == STAGE
        cols = {e.name: e.args["kind"].sql("tsql") for e in create.this.expressions}
        assert list(cols)[:2 + incremental] == (["meta.ts", "meta.action", "meta.seq"]
                                                if incremental else ["meta.ts", "meta.seq"])
        for c in layout.columns:
            want = _expected_type(layout, c.name)
            if want.startswith("varchar"):
                assert cols[c.name].startswith("NVARCHAR"), c.name
                assert "COLLATE DATABASE_DEFAULT" in create.sql("tsql")
            else:
                assert cols[c.name] == _type_of(want), c.name
        assert [n for n, _ in stage_columns(layout, incremental=incremental)] == list(cols)
        parse_tsql(dedupe_sql(layout, incremental=incremental))
    (ins,) = parse_tsql(insert_sql(layout, table + SHADOW_SUFFIX))
    assert isinstance(ins, exp.Insert)
    assert [c.name for c in ins.this.expressions] == names
    (counts,) = parse_tsql(change_counts_sql(layout))
    assert len(counts.expressions) == 3

    # The swap renames the shadow table and its constraints to the official names.
    swap = swap_sql(layout, table + SHADOW_SUFFIX)
    assert isinstance(parse_tsql(swap[0])[0], exp.Drop)
    renames = [parse_tsql(s)[0] for s in swap[1:]]
    assert all(isinstance(r, exp.Execute) for r in renames)
    literals = [[lit.this for lit in r.find_all(exp.National, exp.Literal)] for r in renames]
    assert literals[0] == [f"{ns}.{table}{SHADOW_SUFFIX}", table, "OBJECT"]
    assert literals[1] == [f"{ns}.pk_{ns}_{table}{SHADOW_SUFFIX}", f"pk_{ns}_{table}", "OBJECT"]
    assert sorted(x[1] for x in literals[2:]) == sorted(
        f"fk_{ns}_{table}_{c.name}" for c in layout.columns if c.kind == "enum")
    shadow = describe(table_ddl(layout, table + SHADOW_SUFFIX))[ns, table + SHADOW_SUFFIX]
    assert set(shadow.constraints) == {x[0].split(".", 1)[1] for x in literals[1:]}


# ------------------------------------------------------------------------------------------
# the session against a recording connection


class Recorder:
    """A pymssql connection stand-in: records what would be sent, answers catalog queries."""

    def __init__(self, *, tables: set[tuple[str, str]] | None = None,
                 columns: list[tuple[Any, ...]] | None = None, stage_rows: int = 0,
                 duplicates: int = 0, changes: tuple[int, int, int] = (0, 0, 0)) -> None:
        self.sent: list[str] = []
        self.events: list[str] = []
        self.bulk: list[tuple[str, list[tuple[Any, ...]], list[int], int]] = []
        self.tables = set(tables or ())
        self.schemas: set[str] = {s for s, _ in self.tables}
        self.lookups: dict[str, list[str]] = {}
        self.versions: list[int] = []
        self.columns = columns or []
        self.stage_rows, self.duplicates, self.changes = stage_rows, duplicates, changes
        self.watermark: datetime | None = None
        self.kwargs: dict[str, Any] = {}

    def __call__(self, **kwargs: Any) -> Recorder:
        self.kwargs = kwargs
        return self

    def cursor(self) -> RecorderCursor:
        return RecorderCursor(self)

    def commit(self) -> None:
        self.events.append("COMMIT")

    def rollback(self) -> None:
        self.events.append("ROLLBACK")

    def close(self) -> None:
        self.events.append("CLOSE")

    def bulk_copy(self, table: str, rows: Any, column_ids: list[int] | None = None,
                  batch_size: int = 1000) -> None:
        rows = list(rows)
        self.bulk.append((table, rows, list(column_ids or []), batch_size))
        self.events.append(f"BULK {table} {len(rows)}")

    # what the server would answer
    def answer(self, sql: str, params: Sequence[Any]) -> tuple[list[tuple[Any, ...]], int]:
        from pymssql import _mssql

        text = sql if not params else _mssql.substitute_params(sql, tuple(params)).decode()
        self.sent.append(text)
        self.events.append(text)
        if "FROM sys.schemas WHERE" in sql:
            return ([(1,)] if params[0] in self.schemas else []), 1
        if sql.startswith("CREATE SCHEMA"):
            self.schemas.add(re.findall(r"\[([^\]]+)\]", sql)[0])
        if "FROM sys.tables AS t INNER JOIN sys.schemas" in sql and "sys.columns" not in sql:
            return ([(1,)] if (params[0], params[1]) in self.tables else []), 1
        if "FROM sys.columns" in sql:
            return list(self.columns), 1
        if sql.startswith("CREATE TABLE [") or sql.startswith("DROP TABLE"):
            m = re.match(r"(?:CREATE|DROP) TABLE (?:IF EXISTS )?\[([^\]]+)\]\.\[([^\]]+)\]", sql)
            if m:
                (self.tables.add if sql.startswith("CREATE") else self.tables.discard)(m.groups())
        if sql.startswith("EXEC sp_rename"):
            old, new = re.findall(r"N'([^']*)'", sql)[:2]
            schema, name = old.split(".", 1)
            if (schema, name) in self.tables:
                self.tables.discard((schema, name))
                self.tables.add((schema, new))
        if "DATABASEPROPERTYEX" in sql:
            return [("Latin1_General_100_CI_AS_SC_UTF8",)], 1
        if sql.startswith("SELECT [version]"):
            return [(v,) for v in self.versions], 1
        if sql.startswith("INSERT INTO [instructure_dap].[database_version]"):
            self.versions.append(1)
        if "FROM [instructure_dap].[table_sync] WHERE [source_namespace]" in sql:
            return [], 1
        if "WITH (UPDLOCK, HOLDLOCK)" in sql:
            return [(self.watermark,)], 1
        m = re.match(r"INSERT INTO \[[^\]]+\]\.\[([^\]]+)\] \(\[value\]\)", sql)
        if m:
            self.lookups.setdefault(m.group(1), []).extend(re.findall(r"\(\d+, N'([^']*)'\)",
                                                                      sql))
        m = re.match(r"SELECT \[value\], \[id\] FROM \[[^\]]+\]\.\[([^\]]+)\]", sql)
        if m:
            return [(v, i) for i, v in enumerate(self.lookups.get(m.group(1), []), 1)], 1
        if sql.startswith("SELECT COUNT(*), COUNT(DISTINCT"):
            return [(self.stage_rows, self.stage_rows - self.duplicates)], 1
        if sql.startswith("SELECT COALESCE("):
            return [self.changes], 1
        if sql.startswith("INSERT INTO") and STAGE in sql:
            return [], self.stage_rows - self.duplicates
        return [], 0


class RecorderCursor:
    def __init__(self, conn: Recorder) -> None:
        self.conn = conn
        self.rows: list[tuple[Any, ...]] = []
        self.rowcount = -1

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self.rows, self.rowcount = self.conn.answer(sql, params or ())

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def close(self) -> None:
        pass


def _batches(ns: str, table: str, layout: TableLayout, *, incremental: bool, size: int = 37
             ) -> Iterator[pa.RecordBatch]:
    """The emulator's snapshot as canonical batches (plain naming), as the engine hands them."""
    snap = DS.snapshot(ns, table, step=0)
    snap = snap.rename_columns([c.split(".", 1)[1] if not c.startswith("meta.") else c
                                for c in snap.column_names])
    if incremental:
        snap = snap.append_column(META_ACTION, pa.array(["U"] * snap.num_rows))
    schema = layout.read_schema.arrow_schema(incremental=incremental)
    snap = snap.select(schema.names).cast(schema)
    yield from snap.to_batches(max_chunksize=size)


def _session(rec: Recorder) -> MSSQLSession:
    return MSSQLSession(INFO, connect=rec)


def _parse_all(rec: Recorder) -> None:
    for sql in rec.sent:
        parse_tsql(sql)


def _between_commits(rec: Recorder) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for e in rec.events:
        if e == "COMMIT":
            out.append([])
        else:
            out[-1].append(e)
    return out


def test_session_connects_with_pymssql_arguments() -> None:
    rec = Recorder()
    _session(rec).close()
    kw = rec.kwargs
    assert (kw["server"], kw["port"], kw["user"], kw["database"]) == ("db.example", "1433", "sa",
                                                                      "replica")
    assert kw["password"] == "S3cret@pw" and kw["autocommit"] is False
    assert kw["use_datetime2"] is True and "SET XACT_ABORT ON;" in kw["conn_properties"]


def test_ensure_bookkeeping_statements() -> None:
    rec = Recorder()
    session = _session(rec)
    session.ensure_bookkeeping("canvas")
    session.ensure_bookkeeping("canvas")  # the second run creates nothing
    _parse_all(rec)
    first, second, _ = _between_commits(rec)
    assert first[0].startswith("EXEC sp_getapplock")
    assert "CREATE SCHEMA [instructure_dap]" in first and "CREATE SCHEMA [canvas]" in first
    assert sum(s.startswith("CREATE TABLE") for s in first) == 2
    assert [s for s in first if "IDENTITY_INSERT" in s or "database_version] ([version])" in s
            ] == version_insert_sql()
    assert not any(s.startswith(("CREATE", "INSERT", "SET")) for s in second)


@pytest.mark.parametrize(("ns", "table"), TABLES, ids=TABLE_IDS)
def test_initdb_statements(ns: str, table: str) -> None:
    layout = _layout(ns, table)
    n = DS.snapshot(ns, table, step=0).num_rows
    rec = Recorder(tables={("instructure_dap", "table_sync")}, stage_rows=n)
    at = datetime(2026, 11, 1, 12, 30, 1, 123456, tzinfo=UTC)
    counts = _session(rec).initdb(layout, _batches(ns, table, layout, incremental=False), at)
    _parse_all(rec)
    assert counts.received == n and counts.inserted == n
    (tx, tail) = _between_commits(rec)
    assert tail == ["ROLLBACK", "CLOSE"] or tail == []  # one transaction, committed once
    assert tx[0].startswith("EXEC sp_getapplock")
    create_stage = tx.index(next(e for e in tx if e.startswith(f"CREATE TABLE {STAGE}")))
    bulks = [i for i, e in enumerate(tx) if e.startswith("BULK")]
    insert = next(i for i, e in enumerate(tx) if e.startswith(f"INSERT INTO [{ns}].[{table}]"))
    sync = next(i for i, e in enumerate(tx) if e.startswith("INSERT INTO [instructure_dap]"))
    assert create_stage < min(bulks) and max(bulks) < insert < sync
    # a fresh table: nothing dropped or renamed
    assert not any(e.startswith((f"DROP TABLE [{ns}]", "EXEC sp_rename")) for e in tx)
    # every row went through the bulk copy, in bounded batches
    assert sum(len(rows) for _, rows, _, _ in rec.bulk) == n
    assert all(len(rows) <= 37 for _, rows, _, _ in rec.bulk)
    width = len(stage_columns(layout, incremental=False))
    assert all(ids == list(range(1, width + 1)) for _, _, ids, _ in rec.bulk)
    assert all(len(r) == width for _, rows, _, _ in rec.bulk for r in rows)
    # the watermark goes in with its microseconds
    assert "'2026-11-01 12:30:01.123456'" in tx[sync]
    # lookup rows were written before any row that refers to them
    for col in layout.enums:
        assert rec.lookups[col.enum_type or ""] == list(col.enum)


def test_initdb_over_an_existing_table_swaps_a_shadow_in() -> None:
    layout = _layout("canvas", "accounts")
    rec = Recorder(tables={("instructure_dap", "table_sync"), ("canvas", "accounts"),
                           ("canvas", "accounts__workflow_state")}, stage_rows=3, duplicates=1)
    rec.lookups["accounts__workflow_state"] = ["deleted"]  # an existing lookup: ids kept
    row = SyncRow(7, "canvas", "accounts", datetime(2026, 1, 1, tzinfo=UTC), 1, "canvas",
                  "accounts")
    session = _session(rec)
    session._sync_rows = lambda where, params: [row]  # type: ignore[method-assign]
    session.initdb(layout, _batches("canvas", "accounts", layout, incremental=False),
                   datetime(2026, 2, 1, tzinfo=UTC), replace=row)
    _parse_all(rec)
    tx = _between_commits(rec)[0]
    shadow = f"[canvas].[accounts{SHADOW_SUFFIX}]"
    create = next(i for i, e in enumerate(tx) if e.startswith(f"CREATE TABLE {shadow}"))
    dedupe = next(i for i, e in enumerate(tx) if e.startswith("WITH d AS"))
    insert = next(i for i, e in enumerate(tx) if e.startswith(f"INSERT INTO {shadow}"))
    drop = tx.index("DROP TABLE [canvas].[accounts]")
    rename = next(i for i, e in enumerate(tx) if e.startswith("EXEC sp_rename"))
    update = next(i for i, e in enumerate(tx) if e.startswith("UPDATE [instructure_dap]"))
    assert create < dedupe < insert < drop < rename < update
    assert ("canvas", "accounts") in rec.tables and ("canvas", f"accounts{SHADOW_SUFFIX}") \
        not in rec.tables
    # The existing label kept id 1; the others follow in schema order.
    ids = rec.lookups["accounts__workflow_state"]
    assert ids[0] == "deleted" and sorted(ids) == sorted(layout.column("workflow_state").enum)
    first = rec.bulk[0][1][0]
    label = DS.snapshot("canvas", "accounts", step=0).column("value.workflow_state")[0].as_py()
    pos = [n for n, _ in stage_columns(layout, incremental=False)].index("workflow_state")
    assert first[pos] == ids.index(label) + 1


def test_syncdb_statements() -> None:
    layout = _layout("canvas", "submissions")
    rec = Recorder(tables={("instructure_dap", "table_sync"), ("canvas", "submissions")},
                   stage_rows=10, duplicates=2, changes=(6, 1, 4))
    before = datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=UTC)
    rec.watermark = before.replace(tzinfo=None)
    row = SyncRow(3, "canvas", "submissions", before, 1, "canvas", "submissions")
    counts = _session(rec).syncdb(layout, _batches("canvas", "submissions", layout,
                                                   incremental=True),
                                  datetime(2026, 1, 2, tzinfo=UTC), row)
    _parse_all(rec)
    assert (counts.received, counts.inserted, counts.updated, counts.deleted) == (10, 2, 4, 1)
    tx = _between_commits(rec)[0]
    order = [next(i for i, e in enumerate(tx) if e.startswith(p)) for p in (
        "EXEC sp_getapplock", "SELECT [timestamp]", f"CREATE TABLE {STAGE}", "BULK",
        "WITH d AS", "SELECT COALESCE(", "DELETE t FROM", "MERGE INTO", f"DROP TABLE {STAGE}",
        "UPDATE [instructure_dap].[table_sync]")]
    assert order == sorted(order)
    assert tx[-1].endswith("WHERE [id] = 3")
    assert rec.bulk and all(r[1] in ("U", "D") for _, rows, _, _ in rec.bulk for r in rows)


def test_syncdb_refuses_a_moved_watermark() -> None:
    layout = _layout("canvas", "accounts")
    rec = Recorder(tables={("instructure_dap", "table_sync")})
    rec.watermark = datetime(2026, 1, 5)
    row = SyncRow(3, "canvas", "accounts", datetime(2026, 1, 1, tzinfo=UTC), 1, "canvas",
                  "accounts")
    with pytest.raises(DatabaseError, match="synchronised by someone else"):
        _session(rec).syncdb(layout, iter([]), datetime(2026, 1, 2, tzinfo=UTC), row)
    assert "COMMIT" not in rec.events and "ROLLBACK" in rec.events
    assert not rec.bulk


def test_migrate_statements() -> None:
    """New column, new enum value (a lookup row), widened type, relaxed NOT NULL."""
    layout = _layout("canvas", "accounts")
    catalog: list[tuple[Any, ...]] = []
    for c in layout.columns:
        if c.name == "default_locale":
            continue  # "new" column
        typ = mssql_type(c, layout)
        if c.name == "name":  # narrower than the schema says now
            catalog.append((c.name, "varchar", 400, 0, 0, c.nullable, None))
            continue
        lookup = c.enum_type if c.kind == "enum" else None
        base, _, size = typ.partition("(")
        length = -1 if size.startswith("max") else int(size[:-1] or 0) if size else 8
        catalog.append((c.name, {"integer": "int", "double precision": "float"}.get(base, base),
                        length, 0, 0, c.nullable, lookup))
    catalog.append(("gone", "bigint", 8, 0, 0, False, None))
    rec = Recorder(tables={("canvas", "accounts"), ("canvas", "accounts__workflow_state")},
                   columns=catalog)
    rec.lookups["accounts__workflow_state"] = list(layout.column("workflow_state").enum[:-1])
    changes = _session(rec).migrate(layout)
    _parse_all(rec)
    new_label = layout.column("workflow_state").enum[-1]
    assert f"enum accounts__workflow_state: added {new_label!r}" in changes
    assert "column default_locale: added (varchar(1020))" in changes
    assert "column name: varchar(400) -> varchar(1020)" in changes
    assert "column gone: no longer in the schema, now nullable" in changes
    assert len(changes) == 4, changes
    alters = [s for s in rec.sent if s.startswith("ALTER TABLE [canvas].[accounts]")]
    assert "ALTER TABLE [canvas].[accounts] ADD [default_locale] varchar(1020) NULL" in alters
    assert "ALTER TABLE [canvas].[accounts] ALTER COLUMN [name] varchar(1020) NULL" in alters
    assert "ALTER TABLE [canvas].[accounts] ALTER COLUMN [gone] bigint NULL" in alters
    assert len(_between_commits(rec)) == 2  # one committed transaction


def test_dropdb_statements() -> None:
    rec = Recorder(tables={("instructure_dap", "table_sync"), ("canvas", "users")})
    session = _session(rec)
    row = SyncRow(4, "canvas", "users", datetime(2026, 1, 1, tzinfo=UTC), 1, "canvas", "users")
    session._sync_rows = lambda where, params: [row]  # type: ignore[method-assign]
    session.dropdb("canvas", "users")
    _parse_all(rec)
    tx = _between_commits(rec)[0]
    assert tx[0].startswith("EXEC sp_getapplock")
    assert tx[1].startswith("DELETE FROM [instructure_dap].[table_sync] WHERE")
    assert tx[2] == "DROP TABLE IF EXISTS [canvas].[users]"


def test_sql_injection_in_names_stays_quoted() -> None:
    doc = json_schema(DS.spec("canvas", "accounts"))
    props = doc["properties"]["value"]["properties"]
    props["x]; DROP TABLE y; --"] = {"type": "string", "maxLength": 5}
    layout = table_layout("canvas", "accounts", doc, 1)
    for sql in [*table_ddl(layout), merge_sql(layout), *stage_ddl(layout, incremental=True)]:
        stmts = parse_tsql(sql)
        assert len(stmts) == 1 and not any(isinstance(s, exp.Drop) for s in stmts[0].walk()
                                           if s is not stmts[0] or "DROP TABLE IF" not in sql)


# ------------------------------------------------------------------------------------------
# bulk-copy rows


def _synth_batch(**overrides: Any) -> pa.RecordBatch:
    layout = _synth()
    schema = layout.read_schema.arrow_schema(incremental=True)
    row: dict[str, Any] = {
        "meta.ts": datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC), "meta.action": "U",
        "id": 42, "s16": -3, "i32": 7, "i64": 2**40, "plain_int": 5, "f32": 1.5, "f64": 0.1,
        "dec": Decimal("12.34"), "flag": True, "name": "Zoë ✓", "edge": None, "long": "x",
        "text": "t", "body": "__dap_oversized_truncated__",
        "at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "day": date(2026, 2, 28),
        "clock": dtime(23, 59, 58, 123), "guid": "6f9619ff-8b86-d011-b42d-00cf4fc964ff",
        "ip4": "10.1.2.3", "ip6": "2001:db8::1", "ip": "192.168.0.1", "state": "it's",
        "tags": '["a","b"]', "ids": "[1,2]", "settings": '{"x":"y"}',
    }
    row.update(overrides)
    return pa.RecordBatch.from_pylist([row, {**{k: None for k in row}, "meta.ts": row["meta.ts"],
                                             "meta.action": "D", "id": 43}], schema=schema)


def test_bulk_rows_convert_values() -> None:
    layout = _synth()
    ids = {"state": {"active": 1, "deleted": 2, "it's": 3}}
    rows = bulk_rows(layout, _synth_batch(), incremental=True, seq=100, enum_ids=ids)
    names = [n for n, _ in stage_columns(layout, incremental=True)]
    got, deleted = dict(zip(names, rows[0], strict=True)), dict(zip(names, rows[1], strict=True))
    assert got["meta.ts"] == "2026-03-04 05:06:07.891011"  # naive UTC text, microseconds kept
    assert (got["meta.action"], got["meta.seq"], deleted["meta.seq"]) == ("U", 100, 101)
    assert got["id"] == 42 and got["i64"] == 2**40 and got["s16"] == -3
    assert got["flag"] is True and isinstance(got["f64"], float)
    assert got["dec"] == "12.34"  # exact text, not a float
    assert got["name"] == "Zoë ✓" and got["body"] == "__dap_oversized_truncated__"
    assert got["at"] == "2026-01-02 03:04:05.000006"
    assert got["day"] == "2026-02-28" and got["clock"] == "23:59:58.000123"
    assert got["guid"] == uuid.UUID("6f9619ff-8b86-d011-b42d-00cf4fc964ff").bytes
    assert got["ip4"] == bytes([10, 1, 2, 3]) and len(got["ip6"]) == 16
    assert got["ip"] == bytes([192, 168, 0, 1])  # .packed, as the official client stores it
    assert got["state"] == 3  # the lookup id
    assert json.loads(got["tags"]) == ["a", "b"] and json.loads(got["settings"]) == {"x": "y"}
    assert got["ids"] == "[1,2]"
    assert deleted["meta.action"] == "D" and deleted["id"] == 43
    assert all(v is None for k, v in deleted.items() if k not in ("meta.ts", "meta.action",
                                                                  "meta.seq", "id"))
    assert len(rows) == 2 and all(len(r) == len(names) for r in rows)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_name_table_column_and_key(bad: float) -> None:
    with pytest.raises(DatabaseError) as err:
        bulk_rows(_synth(), _synth_batch(f64=bad), incremental=True, seq=0,
                  enum_ids={"state": {"it's": 1}})
    text = str(err.value)
    assert "\n" not in text
    assert "canvas.synth" in text and "'f64'" in text and "id=42" in text


def test_unknown_enum_label_and_bad_uuid_are_one_line() -> None:
    with pytest.raises(DatabaseError, match=r"'state' .* id=42 holds \"it's\""):
        bulk_rows(_synth(), _synth_batch(), incremental=True, seq=0, enum_ids={"state": {}})
    with pytest.raises(DatabaseError, match=r"'guid'.*not a UUID"):
        bulk_rows(_synth(), _synth_batch(guid="nope"), incremental=True, seq=0,
                  enum_ids={"state": {"it's": 1}})
    with pytest.raises(DatabaseError, match=r"'ip4'.*not an IPv4 address"):
        bulk_rows(_synth(), _synth_batch(ip4="::1"), incremental=True, seq=0,
                  enum_ids={"state": {"it's": 1}})


# ------------------------------------------------------------------------------------------
# reading back


def test_read_arrays_types_like_the_other_dialects() -> None:
    guid = uuid.uuid4()
    table = read_arrays(
        ["id", "state", "guid", "ip", "ip6", "tags", "at", "day", "dec", "f32"],
        ["bigint", "int", "binary(16)", "binary(16)", "binary(16)", "varchar(max)", "datetime2",
         "date", "decimal(5, 2)", "real"],
        [None, "enum", "uuid", "ip", "ip", "array", None, None, None, None],
        [None, {1: "active", 2: "deleted"}, None, None, None, None, None, None, None, None],
        [(1, 2, guid.bytes, bytes([10, 0, 0, 1]) + bytes(12),
          b"\x20\x01\x0d\xb8" + bytes(11) + b"\x01", '["a","b"]',
          datetime(2026, 1, 2, 3, 4, 5, 6), date(2026, 1, 2), Decimal("1.50"), 1.5),
         (2, None, None, None, None, None, "2026-01-02 03:04:05.1234567", "2026-01-03", None,
          None)])
    rows = table.to_pylist()
    assert rows[0]["state"] == "deleted" and rows[0]["guid"] == str(guid)
    assert rows[0]["ip"] == "10.0.0.1" and rows[0]["ip6"] == "2001:db8::1"
    assert rows[0]["tags"] == ["a", "b"] and rows[0]["dec"] == Decimal("1.50")
    assert rows[1]["at"] == datetime(2026, 1, 2, 3, 4, 5, 123456)  # text from an old TDS
    assert table.schema.field("f32").type == pa.float32()
    assert table.schema.field("id").type == pa.int64()


# ------------------------------------------------------------------------------------------
# errors


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_fails_fast_in_one_line() -> None:
    port = _closed_port()
    info = parse_connection_string(f"mssql://sa:Sup3r%23Secret@127.0.0.1:{port}/master")
    start = time.monotonic()
    with pytest.raises(DatabaseError) as err:
        MSSQLDialect(info).session()
    elapsed = time.monotonic() - start
    text = str(err.value)
    assert elapsed < 2, elapsed
    assert text.startswith(f"cannot reach SQL Server at 127.0.0.1:{port} (")
    assert "\n" not in text and "Sup3r" not in text and "DB-Lib" not in text
    assert len(text) < 300


def test_server_errors_are_one_clear_line() -> None:
    import pymssql
    from pymssql import _mssql

    login = pymssql.OperationalError((18456, b"Login failed for user 'sa'.DB-Lib error "
                                             b"message 20018, severity 14:\nGeneral SQL Server "
                                             b"error: Check messages from the SQL Server\n"))
    msg = str(mssql_error(login, INFO, "connecting"))
    assert msg.startswith("SQL Server refused the user name or password for mssql://sa:***@")
    assert "S3cret" not in msg
    nodb = pymssql.OperationalError((4060, b'Cannot open database "replica" requested by the '
                                           b"login. The login failed."))
    assert "database 'replica' does not exist on db.example:1433" in str(
        mssql_error(nodb, INFO, "connecting"))
    other = pymssql.ProgrammingError((2714, b"There is already an object named 'x' in the "
                                            b"database.DB-Lib error message 20018, severity "
                                            b"16:\nGeneral SQL Server error: Check messages\n"))
    text = str(mssql_error(other, INFO, "loading the snapshot", "canvas.users"))
    assert text == ("canvas.users: SQL Server failed while loading the snapshot in "
                    "db.example:1433/replica: There is already an object named 'x' in the "
                    "database. (error 2714)")
    assert issubclass(_mssql.MSSQLDatabaseException, _mssql.MSSQLException)
