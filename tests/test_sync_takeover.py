"""Takeover both ways with the official client (``dap`` 2.3.1 with its postgresql extra) on a real
PostgreSQL, and with its mysql extra on the test run's MariaDB: a database one of them built is
synchronised by the other, and both converge."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dapframe.api import DapClient
from dapframe.emulator import Emulator
from dapframe.sync import sync_tables
from tests._servers import MySQLServer, PgServer
from tests.sync_support import TABLES, assert_replica_equals, expected_rows, replica_rows
from tests.test_official_client import run_dap

pytestmark = pytest.mark.official

NAMESPACES = ("canvas", "canvas_logs")


def dap_db(dap: Path, emu: Emulator, command: str, target: str, cwd: Path) -> None:
    for ns in NAMESPACES:
        proc = run_dap(dap, emu, command, "--namespace", ns, "--table", "all",
                       "--connection-string", target, cwd=cwd)
        assert proc.returncode == 0, proc.stderr[-2000:]


def dapframe_db(client: DapClient, command: str, target: str) -> None:
    for ns in NAMESPACES:
        reports = sync_tables(target, ns, "all", command=command, client=client)
        assert all(r.ok for r in reports), [r.error for r in reports if not r.ok]


def assert_all_equal(target: str, emu: Emulator) -> None:
    for ns, table in TABLES:
        assert_replica_equals(target, emu.dataset, ns, table)


@contextmanager
def databases(server: PgServer | MySQLServer, count: int) -> Iterator[list[str]]:
    """``count`` fresh databases on ``server``, dropped however the test ends."""
    names = [server.create_database() for _ in range(count)]
    try:
        yield names
    finally:
        for name in names:
            server.drop_database(name)


def assert_dap_lists_syncdb(dap: Path, emu: Emulator, target: str, cwd: Path) -> None:
    """dap's listdb shows the table as dapframe's syncdb last left it, not as initdb made it."""
    proc = run_dap(dap, emu, "listdb", "--namespace", "canvas", "--connection-string", target,
                   cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"command": "syncdb"' in proc.stdout and '"command": "initdb"' not in proc.stdout


def layout_of(server: PgServer, database: str) -> list[tuple[Any, ...]]:
    """Every column, type, nullability, comment and constraint of the replica schemas."""
    columns = server.query(database, """
        SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, col_description(c.oid, a.attnum)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('canvas', 'canvas_logs', 'instructure_dap') AND c.relkind = 'r'
          AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2, a.attnum""")
    constraints = server.query(database, """
        SELECT n.nspname, conname, contype, pg_get_constraintdef(co.oid)
        FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
        WHERE n.nspname IN ('canvas', 'canvas_logs', 'instructure_dap') ORDER BY 1, 2""")
    enums = server.query(database, """
        SELECT n.nspname, t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)::text
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY 1, 2 ORDER BY 1, 2""")
    return columns + constraints + enums


@pytest.fixture
def emu() -> Any:
    with Emulator(seed=0, scale=1, rows_per_part=500, job_seconds=0, client_id="us-east-1#tk",
                  client_secret="takeover-secret") as e:
        yield e


@pytest.fixture
def client(emu: Emulator) -> Any:
    with DapClient(base_url=emu.base_url, client_id=emu.client_id,
                   client_secret=emu.client_secret, rate_limits=None) as c:
        yield c


def test_dap_initdb_then_dapframe_syncdb(official_dap_pg: Path, emu: Emulator,
                                         client: DapClient, pg_server: PgServer,
                                         tmp_path: Path) -> None:
    with databases(pg_server, 2) as (theirs, ours):
        target = pg_server.url(theirs)
        dap_db(official_dap_pg, emu, "initdb", target, tmp_path)
        assert_all_equal(target, emu)
        # The layout dapframe builds is the one dap builds, to the comment.
        dapframe_db(client, "initdb", pg_server.url(ours))
        assert layout_of(pg_server, theirs) == layout_of(pg_server, ours)
        for _ in range(2):
            emu.tick()
            dapframe_db(client, "syncdb", target)
            assert_all_equal(target, emu)
        # ... and dap carries on from where dapframe left the watermark.
        emu.tick()
        dap_db(official_dap_pg, emu, "syncdb", target, tmp_path)
        assert_all_equal(target, emu)


def test_dapframe_initdb_then_dap_syncdb(official_dap_pg: Path, emu: Emulator,
                                         client: DapClient, pg_server: PgServer,
                                         tmp_path: Path) -> None:
    with databases(pg_server, 1) as [name]:
        target = pg_server.url(name)
        dapframe_db(client, "initdb", target)
        before = layout_of(pg_server, name)
        for _ in range(2):
            emu.tick()
            dap_db(official_dap_pg, emu, "syncdb", target, tmp_path)
            assert_all_equal(target, emu)
        # dap found nothing to migrate in dapframe's layout.
        assert layout_of(pg_server, name) == before
        emu.tick()
        dapframe_db(client, "syncdb", target)
        assert_all_equal(target, emu)
        # listdb agrees: dap lists what dapframe recorded.
        assert_dap_lists_syncdb(official_dap_pg, emu, target, tmp_path)


# ------------------------------------------------------------------------------------------
# MariaDB: the official client with its mysql extra (aiomysql), on the MariaDB of the test run


def mysql_layout(server: MySQLServer, database: str, *, whole_seconds: bool = True
                 ) -> dict[str, str]:
    """``SHOW CREATE TABLE`` of every table (``datetime(6)`` as ``datetime`` when asked)."""
    out = {}
    for (table,) in server.query(database, "SHOW TABLES"):
        ddl = server.query(database, f"SHOW CREATE TABLE `{table}`")[0][1]
        ddl = re.sub(r" AUTO_INCREMENT=\d+", "", ddl)
        if whole_seconds:
            ddl = ddl.replace("datetime(6)", "datetime")
        out[table] = ddl
    return out


def assert_all_equal_mysql(server: MySQLServer, database: str, target: str,
                           emu: Emulator) -> None:
    """Every table equals the emulator's; whole-second ``datetime`` columns (dap's) compared
    with the emulator's timestamps truncated to the second, as MariaDB stores them."""
    whole = {(t, c) for t, c in server.query(
        database, "SELECT table_name, column_name FROM information_schema.columns WHERE "
                  "table_schema = DATABASE() AND data_type = 'datetime' AND "
                  "datetime_precision = 0")}
    for ns, table in TABLES:
        cut = {c for t, c in whole if t == f"{ns}__{table}"}
        want = [{k: (v.replace(microsecond=0) if k in cut and v is not None else v)
                 for k, v in row.items()} for row in expected_rows(emu.dataset, ns, table)]
        got = replica_rows(target, emu.dataset, ns, table)
        assert len(got) == len(want), f"{ns}.{table}: {len(got)} rows, expected {len(want)}"
        for g, w in zip(got, want, strict=True):
            assert g == w, (f"{ns}.{table}", {k: (g.get(k), w.get(k)) for k in w
                                              if g.get(k) != w.get(k)})


def test_dap_initdb_then_dapframe_syncdb_mysql(official_dap_mysql: Path, emu: Emulator,
                                               client: DapClient, mysql_server: MySQLServer,
                                               tmp_path: Path) -> None:
    with databases(mysql_server, 2) as (theirs, ours):
        target = mysql_server.url(theirs)
        dap_db(official_dap_mysql, emu, "initdb", target, tmp_path)
        assert_all_equal_mysql(mysql_server, theirs, target, emu)
        # The layout dapframe builds is dap's, to the comment, but for sub-second timestamps.
        dapframe_db(client, "initdb", mysql_server.url(ours))
        assert mysql_layout(mysql_server, theirs) == mysql_layout(mysql_server, ours)
        before = mysql_layout(mysql_server, theirs, whole_seconds=False)
        for _ in range(2):
            emu.tick()
            dapframe_db(client, "syncdb", target)
            assert_all_equal_mysql(mysql_server, theirs, target, emu)
        # dapframe accepted dap's whole-second datetime columns as they are.
        assert mysql_layout(mysql_server, theirs, whole_seconds=False) == before
        emu.tick()
        dap_db(official_dap_mysql, emu, "syncdb", target, tmp_path)
        assert_all_equal_mysql(mysql_server, theirs, target, emu)


def test_dapframe_initdb_then_dap_syncdb_mysql(official_dap_mysql: Path, emu: Emulator,
                                               client: DapClient, mysql_server: MySQLServer,
                                               tmp_path: Path) -> None:
    with databases(mysql_server, 1) as [name]:
        target = mysql_server.url(name)
        dapframe_db(client, "initdb", target)
        assert_all_equal(target, emu)  # datetime(6): nothing lost
        before = mysql_layout(mysql_server, name)
        for _ in range(2):
            emu.tick()
            dap_db(official_dap_mysql, emu, "syncdb", target, tmp_path)
            assert_all_equal_mysql(mysql_server, name, target, emu)
        # dap changed nothing but the timestamps' precision (down to its whole seconds).
        assert mysql_layout(mysql_server, name) == before
        assert mysql_server.query(name, "SELECT count(*) FROM information_schema.columns WHERE "
                                        "table_schema = DATABASE() AND data_type = 'datetime' "
                                        "AND datetime_precision = 6")[0][0] == 0
        emu.tick()
        dapframe_db(client, "syncdb", target)
        assert_all_equal_mysql(mysql_server, name, target, emu)
        assert_dap_lists_syncdb(official_dap_mysql, emu, target, tmp_path)
