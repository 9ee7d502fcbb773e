"""The shared sync suite, on every dialect (DuckDB, PostgreSQL): against the emulator over real
sockets, replicas compared in full with the emulator's own tables."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dapframe.api import DapClient
from dapframe.emulator import Emulator
from dapframe.emulator._server import HttpError
from dapframe.errors import DatabaseError
from dapframe.sync import SyncReport, dropdb, listdb, read_table, sync, sync_tables
from tests._servers import mysql_execute
from tests.conftest import CLIENT_ID, CLIENT_SECRET
from tests.sync_support import TABLES, assert_replica_equals, expected_rows

STEPS = 3


def _by_table(reports: list[SyncReport]) -> dict[str, SyncReport]:
    out = {r.table: r for r in reports}
    failed = {t: r.error for t, r in out.items() if not r.ok}
    assert not failed, failed
    return out


def _sync_all(target: str, client: DapClient, command: str) -> dict[str, SyncReport]:
    reports = []
    for ns in ("canvas", "canvas_logs"):
        reports += sync_tables(target, ns, "all", command=command, client=client)
    return _by_table(reports)


def test_convergence(sync_target: str, sync_emu: Emulator, sync_client: DapClient) -> None:
    """initdb at step 0, then k ticks each followed by syncdb: equal to the emulator each time."""
    ds = sync_emu.dataset
    reports = _sync_all(sync_target, sync_client, "initdb")
    assert set(reports) == {f"{ns}.{t}" for ns, t in TABLES}
    for ns, table in TABLES:
        assert_replica_equals(sync_target, ds, ns, table, step=0)
        r = reports[f"{ns}.{table}"]
        assert r.command == "initdb"
        assert r.watermark == ds.commit_time(0)
        assert r.inserted == len(expected_rows(ds, ns, table, 0))
    for step in range(1, STEPS + 1):
        previous = {(ns, t): {row[ds.spec(ns, t).key.name] for row in
                              expected_rows(ds, ns, t, step - 1)} for ns, t in TABLES}
        sync_emu.tick()
        reports = _sync_all(sync_target, sync_client, "syncdb")
        for ns, table in TABLES:
            assert_replica_equals(sync_target, ds, ns, table, step=step)
            r = reports[f"{ns}.{table}"]
            keys = {row[ds.spec(ns, table).key.name] for row in expected_rows(ds, ns, table)}
            assert (r.command, r.watermark) == ("syncdb", ds.commit_time(step))
            assert r.inserted == len(keys - previous[ns, table]), (table, step)
            assert r.deleted == len(previous[ns, table] - keys), (table, step)
            assert r.changed > 0
    # Nothing new: syncdb changes nothing and still succeeds.
    again = _sync_all(sync_target, sync_client, "syncdb")
    assert all(r.changed == 0 for r in again.values())


def test_auto_and_single_table_api(
        sync_target: str, sync_emu: Emulator, sync_client: DapClient) -> None:
    first = sync(sync_target, "canvas.enrollments", client=sync_client)
    assert first.command == "initdb" and first.inserted > 0
    sync_emu.tick(2)
    second = sync(sync_target, "canvas.enrollments", client=sync_client)
    assert second.command == "syncdb" and second.updated > 0 and second.deleted > 0
    assert second.duration > 0 and second.schema_version == 1
    assert_replica_equals(sync_target, sync_emu.dataset, "canvas", "enrollments")
    with pytest.raises(DatabaseError, match="already initialised"):
        sync(sync_target, "canvas.enrollments", command="initdb", client=sync_client)


def test_schema_bump_migrates_in_place(
        sync_target: str, sync_emu: Emulator, sync_client: DapClient) -> None:
    """A new schema version: new column and enum value added in place; views survive."""
    ds = sync_emu.dataset
    sync(sync_target, "canvas.accounts", client=sync_client)
    _make_view(sync_target)
    version = sync_emu.schema_bump("canvas", "accounts")
    sync_emu.tick(2)
    report = sync(sync_target, "canvas.accounts", client=sync_client)
    assert report.schema_version == version == 2
    assert any("emulator_note_v2" in m for m in report.migrations), report.migrations
    assert any("emulator_state_v2" in m for m in report.migrations), report.migrations
    assert_replica_equals(sync_target, ds, "canvas", "accounts")
    frame = read_table(sync_target, "canvas.accounts")
    assert "emulator_state_v2" in frame.schema["workflow_state"].categories.to_list()
    assert _view_rows(sync_target) == frame.height  # the view still works


def test_a_type_change_views_block_names_them(sync_target: str) -> None:
    """PostgreSQL cannot retype a column a view uses: the error names the views and the fix."""
    from dapframe.emulator._data import Dataset
    from dapframe.emulator._tables import json_schema
    from dapframe.sync import dialect_for, parse_connection_string, table_layout

    doc = json_schema(Dataset(scale=0.01).spec("canvas", "accounts"))
    layout = table_layout("canvas", "accounts", doc, 1)
    db = dialect_for(parse_connection_string(sync_target))
    try:
        with db.session() as session:
            session.ensure_bookkeeping("canvas")
            session.initdb(layout, iter([]), datetime(2026, 11, 1, tzinfo=UTC))
    finally:
        db.close()
    _make_view(sync_target, "accounts", "id, name")
    del doc["properties"]["value"]["properties"]["name"]["maxLength"]  # varchar -> text
    wider = table_layout("canvas", "accounts", doc, 2)
    db = dialect_for(parse_connection_string(sync_target))
    try:
        with db.session() as session:
            if sync_target.startswith("duckdb"):  # DuckDB binds views by name: no obstacle
                assert "column name: VARCHAR -> VARCHAR" not in session.migrate(wider)
            elif sync_target.startswith("mysql"):  # MySQL views name columns: no obstacle
                assert "column name: varchar(255) -> mediumtext" in session.migrate(wider)
            elif sync_target.startswith("mssql"):  # nor do SQL Server's (not schema-bound)
                assert "column name: varchar(1020) -> varchar(max)" in session.migrate(wider)
            else:
                with pytest.raises(DatabaseError, match=r"views depend on it \(canvas.v_accounts"
                                                        r"\): drop them"):
                    session.migrate(wider)
    finally:
        db.close()
    assert _view_rows(sync_target) == 0


def _execute(target: str, sql: str) -> list[Any]:
    if target.startswith("duckdb"):
        import duckdb

        con = duckdb.connect(target.removeprefix("duckdb:///"))
        try:
            return list(con.execute(sql).fetchall())
        finally:
            con.close()
    if target.startswith("mssql"):
        return _execute_mssql(target, sql)
    if target.startswith("mysql"):
        return _execute_mysql(target, sql)
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(target, autocommit=True) as con, con.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall()) if cur.description else []


def _execute_mssql(target: str, sql: str) -> list[Any]:
    """The same statements on SQL Server (its spelling of CREATE SCHEMA IF NOT EXISTS)."""
    import pymssql

    from dapframe.sync import parse_connection_string
    from dapframe.sync._mssql import connect_kwargs

    if (m := re.fullmatch(r"CREATE SCHEMA IF NOT EXISTS (\w+)", sql)) is not None:
        sql = f"IF SCHEMA_ID(N'{m.group(1)}') IS NULL EXEC(N'CREATE SCHEMA [{m.group(1)}]')"
    kwargs = {**connect_kwargs(parse_connection_string(target)), "autocommit": True}
    with pymssql.connect(**kwargs) as con, con.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall()) if cur.description else []


def _execute_mysql(target: str, sql: str) -> list[Any]:
    """The same statements on MySQL: no schemas, so ``canvas.x`` is table ``canvas__x``."""
    from dapframe.sync import parse_connection_string

    if sql.startswith("CREATE SCHEMA"):
        return []
    sql = re.sub(r"\bcanvas\.(\w+)", r"canvas__\1", sql)
    return mysql_execute(parse_connection_string(target), sql)


def _make_view(target: str, table: str = "accounts", columns: str = "id, workflow_state"
               ) -> None:
    _execute(target, f"CREATE VIEW canvas.v_{table} AS SELECT {columns} FROM canvas.{table}")


def _view_rows(target: str, table: str = "accounts") -> int:
    return int(_execute(target, f"SELECT count(*) FROM canvas.v_{table}")[0][0])


def _snapshot_required_once(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The next incremental query answers 400 SnapshotRequiredError (the table was reloaded)."""
    original = emu.state.start_query
    refused: list[str] = []

    def start_query(namespace: str, table: str, body: Any) -> Any:
        if isinstance(body, dict) and "since" in body and not refused:
            refused.append(f"{namespace}.{table}")
            raise HttpError(400, "SnapshotRequiredError", "the table was reloaded upstream",
                            since="2026-11-01T00:00:00Z", until=None)
        return original(namespace, table, body)

    monkeypatch.setattr(emu.state, "start_query", start_query)
    return refused


def test_snapshot_required_recovers_into_a_shadow_table(
        sync_target: str, sync_emu: Emulator, sync_client: DapClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sync(sync_target, "canvas.submissions", client=sync_client)
    _make_view(sync_target, "submissions", "id, score")
    sync_emu.tick(2)
    refused = _snapshot_required_once(sync_emu, monkeypatch)
    report = sync(sync_target, "canvas.submissions", client=sync_client)
    assert refused == ["canvas.submissions"]
    assert report.command == "reinit"
    assert report.watermark == sync_emu.dataset.clock
    assert_replica_equals(sync_target, sync_emu.dataset, "canvas", "submissions")
    # The view on the table survives the re-initialisation and sees the new rows.
    assert _view_rows(sync_target, "submissions") == len(
        expected_rows(sync_emu.dataset, "canvas", "submissions"))
    # Back to normal: the next syncdb continues from the new snapshot's watermark.
    sync_emu.tick()
    assert sync(sync_target, "canvas.submissions", client=sync_client).command == "syncdb"
    assert_replica_equals(sync_target, sync_emu.dataset, "canvas", "submissions")


def test_snapshot_required_refused_changes_nothing(
        sync_target: str, sync_emu: Emulator, sync_client: DapClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sync(sync_target, "canvas.submissions", client=sync_client)
    before = read_table(sync_target, "canvas.submissions")
    sync_emu.tick()
    _snapshot_required_once(sync_emu, monkeypatch)
    with pytest.raises(DatabaseError, match=r"needs a new snapshot|cannot continue"):
        sync(sync_target, "canvas.submissions", client=sync_client, recover=False)
    assert read_table(sync_target, "canvas.submissions").equals(before)
    (row,) = [r for r in listdb(sync_target, "canvas", omit_not_replicated=True)
              if r["name"] == "submissions"]
    assert row["records"] == before.height


def test_out_of_range_recovery_for_expired_logs(sync_target: str) -> None:
    """web_logs keeps 30 days: a replica older than that is re-initialised (out-of-range)."""
    with Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, job_seconds=0,
                  rows_per_part=500, step_interval=timedelta(days=11)) as sync_emu, \
            DapClient(base_url=sync_emu.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                      rate_limits=None) as c:
        sync(sync_target, "canvas_logs.web_logs", client=c)
        sync_emu.tick(3)  # 33 days later
        report = sync(sync_target, "canvas_logs.web_logs", client=c)
        assert report.command == "reinit"
        assert_replica_equals(sync_target, sync_emu.dataset, "canvas_logs", "web_logs")


def test_syncdb_needs_initdb_and_dropdb(
        sync_target: str, sync_emu: Emulator, sync_client: DapClient) -> None:
    with pytest.raises(DatabaseError, match=r"not initialised.*initdb"):
        sync(sync_target, "canvas.users", command="syncdb", client=sync_client)
    sync(sync_target, "canvas.users", client=sync_client)
    rows = {r["name"]: r for r in listdb(sync_target, "canvas", client=sync_client)}
    assert rows["users"]["command"] == "syncdb" and rows["users"]["records"] == 200
    assert rows["accounts"]["command"] == "initdb" and rows["accounts"]["records"] is None
    assert dropdb(sync_target, "canvas.users") == ["canvas.users"]
    with pytest.raises(DatabaseError, match="not initialised"):
        dropdb(sync_target, "canvas.users")
    assert [r for r in listdb(sync_target, "canvas", omit_not_replicated=True)] == []
    # dropped cleanly: initdb works again
    assert sync(sync_target, "canvas.users", command="initdb", client=sync_client).inserted == 200


def test_one_failing_table_does_not_stop_the_others(sync_target: str, sync_emu: Emulator,
                                                    sync_client: DapClient) -> None:
    reports = sync_tables(sync_target, "canvas", ["accounts", "no_such_table", "users"],
                          client=sync_client)
    by = {r.table: r for r in reports}
    assert by["canvas.accounts"].ok and by["canvas.users"].ok
    assert not by["canvas.no_such_table"].ok
    assert "no_such_table" in (by["canvas.no_such_table"].error or "")


def test_query_result_sync(sync_target: str, sync_emu: Emulator, sync_client: DapClient) -> None:
    """QueryResult.sync: a snapshot initialises, a chained incremental applies (any format)."""
    ds = sync_emu.dataset
    snap = sync_client.snapshot("canvas.assignments", format="jsonl")
    report = snap.sync(sync_target)
    assert report.command == "initdb" and report.inserted == len(expected_rows(
        ds, "canvas", "assignments"))
    assert_replica_equals(sync_target, ds, "canvas", "assignments")
    sync_emu.tick(2)
    assert snap.at is not None
    changes = sync_client.incremental("canvas.assignments", since=snap.at, format="tsv")
    assert changes.sync(sync_target).command == "syncdb"
    assert_replica_equals(sync_target, ds, "canvas", "assignments")
    with pytest.raises(DatabaseError, match="starts at"):
        changes.sync(sync_target)  # applying the same window twice is refused


def test_initdb_rebuilds_a_half_loaded_table(sync_target: str, sync_emu: Emulator,
                                             sync_client: DapClient) -> None:
    """A table an interrupted load left behind without a table_sync row (the official
    client's weak spot) is rebuilt beside it and swapped in."""
    _execute(sync_target, "CREATE SCHEMA IF NOT EXISTS canvas")
    _execute(sync_target, "CREATE TABLE canvas.users (id bigint, name varchar(255))")
    _execute(sync_target, "INSERT INTO canvas.users VALUES (1, 'half'), (2, 'loaded')")
    report = sync(sync_target, "canvas.users", command="initdb", client=sync_client)
    assert report.command == "initdb" and report.inserted == 200
    assert_replica_equals(sync_target, sync_emu.dataset, "canvas", "users")


def test_syncdb_rebuilds_a_table_dropped_by_hand(sync_target: str, sync_emu: Emulator,
                                                 sync_client: DapClient) -> None:
    sync(sync_target, "canvas.courses", client=sync_client)
    _execute(sync_target, "DROP TABLE canvas.courses")
    sync_emu.tick()
    with pytest.raises(DatabaseError, match="table is missing"):
        sync(sync_target, "canvas.courses", client=sync_client, recover=False)
    report = sync(sync_target, "canvas.courses", client=sync_client)
    assert report.command == "reinit"
    assert_replica_equals(sync_target, sync_emu.dataset, "canvas", "courses")
