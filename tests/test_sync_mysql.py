"""MySQL-specific sync cases on the MariaDB the test run starts (the shared suite is in
tests/test_sync.py): read-back types, hostile values, errors, views, charset, layout."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from dapframe.api import DapClient
from dapframe.emulator import Emulator
from dapframe.errors import DatabaseError
from dapframe.sync import dialect_for, dropdb, parse_connection_string, read_table, sync
from dapframe.sync._layout import table_layout
from tests._servers import MySQLServer
from tests.sync_support import assert_replica_equals

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _db(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_read_back_types_match_duckdb(mysql_database: str, sync_emu: Emulator,
                                      sync_client: DapClient, tmp_path: Any) -> None:
    duck = f"duckdb:///{tmp_path}/r.duckdb"
    for table in ("canvas.assignments", "canvas_logs.web_logs", "canvas.submissions"):
        sync(mysql_database, table, client=sync_client)
        sync(duck, table, client=sync_client)
        ours, theirs = read_table(mysql_database, table), read_table(duck, table)
        assert ours.schema == theirs.schema, table
        if table != "canvas_logs.web_logs":
            assert ours.equals(theirs), table


def _layout(columns: dict[str, Any], required: list[str] | None = None) -> Any:
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "properties": {
            "key": {"type": "object", "properties": {"id": {"type": "integer",
                                                            "format": "int64"}},
                    "additionalProperties": False, "required": ["id"]},
            "value": {"type": "object", "properties": columns, "additionalProperties": False,
                      "required": required or []}},
        "additionalProperties": False, "required": ["key"]}
    return table_layout("canvas", "odd", doc, 1)


def _batches(layout: Any, rows: dict[str, list[Any]]) -> list[pa.RecordBatch]:
    schema = layout.read_schema.arrow_schema(incremental=False)
    n = len(rows["id"])
    data = {"meta.ts": [datetime(2026, 1, 1, tzinfo=UTC)] * n, **rows}
    return [pa.RecordBatch.from_pydict(data, schema=schema)]


def _initdb(url: str, layout: Any, rows: dict[str, list[Any]]) -> Any:
    db = dialect_for(parse_connection_string(url))
    with db.session() as session:
        session.ensure_bookkeeping("canvas")
        return session.initdb(layout, iter(_batches(layout, rows)),
                              datetime(2026, 11, 1, tzinfo=UTC))


def test_hostile_text_round_trips(mysql_database: str) -> None:
    texts = ["plain", "NULL", "", None, 'a"b', "x,y", "back\\slash\\", "new\nline", "tab\tx",
             "cr\r\n", "\\N", '"', "\\", "ünïcødé 😀", "'; DROP TABLE x; --", "`tick`"]
    layout = _layout({"s": {"type": "string"}, "f": {"type": "number", "format": "float64"}})
    rows = {"id": list(range(len(texts))), "s": texts,
            "f": [1e300, -0.0, 2.5e-308, None] * 4}
    _initdb(mysql_database, layout, rows)
    got = read_table(mysql_database, "canvas.odd")
    assert got["s"].to_list() == texts
    assert got["f"].to_list() == rows["f"]


def test_nan_fails_with_one_line_naming_table_column_and_key(mysql_database: str) -> None:
    layout = _layout({"f": {"type": "number", "format": "float64"}})
    with pytest.raises(DatabaseError) as info:
        _initdb(mysql_database, layout, {"id": [1, 2, 3], "f": [1.0, float("nan"), None]})
    text = str(info.value)
    assert "\n" not in text
    assert "canvas.odd" in text and "'f'" in text and "key 2" in text and "NaN" in text
    with pytest.raises(DatabaseError, match="inf"):
        _initdb(mysql_database, layout, {"id": [1], "f": [float("-inf")]})
    with pytest.raises(DatabaseError, match="does not exist"):
        read_table(mysql_database, "canvas.odd")  # nothing was created


@pytest.mark.parametrize("bad, message", [
    ("password", "refused the user name or password"),
    ("database", "does not exist"),
    ("port", "cannot reach MySQL"),
])
def test_connection_errors_are_one_clear_line(mysql_server: MySQLServer, bad: str,
                                              message: str) -> None:
    url = mysql_server.url("mysql")
    if bad == "password":
        url = mysql_server.url("mysql", password="wrong-Secret-42")
    elif bad == "database":
        url = mysql_server.url("no_such_db")
    else:
        url = url.replace(f":{mysql_server.port}/", ":1/")
    with pytest.raises(DatabaseError) as info:
        dialect_for(parse_connection_string(url)).session()
    text = str(info.value)
    assert message in text and "\n" not in text
    assert "wrong-Secret-42" not in text and "s3cr" not in text


def test_views_survive_reinit_and_block_dropdb(mysql_database: str, sync_emu: Emulator,
                                               sync_client: DapClient,
                                               mysql_server: MySQLServer) -> None:
    db = _db(mysql_database)
    sync(mysql_database, "canvas.users", client=sync_client)
    mysql_server.query(db, "CREATE VIEW v_users AS SELECT id, name FROM canvas__users")
    sync_emu.tick()
    session = dialect_for(parse_connection_string(mysql_database)).session()
    try:
        row = session.sync_row("canvas", "users")
    finally:
        session.close()
    assert row is not None
    # A re-initialisation swaps a new table in under the same name: the view follows it.
    from dapframe.emulator._tables import json_schema

    layout = table_layout("canvas", "users",
                          json_schema(sync_emu.dataset.spec("canvas", "users")), 1)
    snap = sync_emu.dataset.snapshot("canvas", "users")
    batch = snap.rename_columns([n.split(".", 1)[1] if n != "meta.ts" else n
                                 for n in snap.schema.names])
    session = dialect_for(parse_connection_string(mysql_database)).session()
    try:
        session.initdb(layout, iter(batch.to_batches()), sync_emu.dataset.clock, replace=row)
    finally:
        session.close()
    assert_replica_equals(mysql_database, sync_emu.dataset, "canvas", "users")
    count = mysql_server.query(db, "SELECT count(*) FROM v_users")[0][0]
    assert count == snap.num_rows
    with pytest.raises(DatabaseError, match=r"views depend on the table \(v_users\)"):
        dropdb(mysql_database, "canvas.users")
    mysql_server.query(db, "DROP VIEW v_users")
    assert dropdb(mysql_database, "canvas.users") == ["canvas.users"]
    left = mysql_server.query(db, "SHOW TABLES")
    assert sorted(r[0] for r in left) == ["instructure_dap__database_version",
                                         "instructure_dap__table_sync"]


def test_latin1_database_warns_and_still_stores_utf8mb4(
        mysql_server: MySQLServer, sync_emu: Emulator, sync_client: DapClient,
        caplog: pytest.LogCaptureFixture) -> None:
    name = mysql_server.create_database("latin1", "latin1_swedish_ci")
    try:
        url = mysql_server.url(name)
        with caplog.at_level(logging.WARNING, logger="dapframe.sync"):
            sync(url, "canvas.accounts", client=sync_client)
        assert any("not utf8mb4" in r.getMessage() for r in caplog.records)
        charset = mysql_server.query(
            name, "SELECT table_collation FROM information_schema.tables WHERE table_schema = "
                  "DATABASE() AND table_name = 'canvas__accounts'")[0][0]
        assert charset.startswith("utf8mb4")
        assert_replica_equals(url, sync_emu.dataset, "canvas", "accounts")
    finally:
        mysql_server.drop_database(name)


def test_timestamps_keep_microseconds(mysql_database: str, sync_emu: Emulator,
                                      sync_client: DapClient,
                                      mysql_server: MySQLServer) -> None:
    sync(mysql_database, "canvas.accounts", client=sync_client)
    typ = mysql_server.query(
        _db(mysql_database), "SELECT column_type FROM information_schema.columns WHERE "
        "table_schema = DATABASE() AND table_name = 'canvas__accounts' AND "
        "column_name = 'created_at'")[0][0]
    assert typ == "datetime(6)"
    frame = read_table(mysql_database, "canvas.accounts")
    assert any(ts.microsecond for ts in frame["created_at"].to_list())


def test_a_datetime_table_is_accepted_not_rewritten(mysql_database: str, sync_emu: Emulator,
                                                    sync_client: DapClient,
                                                    mysql_server: MySQLServer) -> None:
    """A table with whole-second datetime columns (as dap builds them) keeps them."""
    db = _db(mysql_database)
    sync(mysql_database, "canvas.accounts", client=sync_client)
    mysql_server.query(db, "ALTER TABLE canvas__accounts MODIFY created_at datetime NOT NULL")
    sync_emu.tick(2)
    report = sync(mysql_database, "canvas.accounts", client=sync_client)
    assert report.command == "syncdb" and not report.migrations
    typ = mysql_server.query(
        db, "SELECT column_type FROM information_schema.columns WHERE table_schema = "
            "DATABASE() AND table_name = 'canvas__accounts' AND column_name = 'created_at'")
    assert typ[0][0] == "datetime"
