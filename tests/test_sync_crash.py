"""Crash safety: ``dapframe initdb`` and ``syncdb`` killed with SIGKILL at varied points.

After every kill, each table is either absent (no ``table_sync`` row, no table) or holds exactly
the emulator's rows at the step its watermark names: the old state or the new one, never a mix.
On PostgreSQL and MariaDB a concurrent reader polls every table during the runs and must never
see a watermark with other contents than the state it names (each poll reads a table's watermark
and contents in one statement, one snapshot; on MariaDB the statement's metadata locks also keep
initdb's RENAME swap out of it), and the test counts the kills that hit an open transaction.
A plain rerun then converges.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dapframe.api import DapClient
from dapframe.emulator import Emulator
from dapframe.emulator._data import Dataset
from dapframe.sync import sync_tables
from tests.sync_support import assert_replica_equals

TABLES = ["users", "enrollments", "submissions"]
KILLS_PER_PHASE = 5  # x 3 phases (initdb, 2 x syncdb) x 3 dialects = 45 runs to kill
SECRET = "crash-secret"


def _step_of(ds: Dataset, watermark: datetime) -> int:
    for step in range(ds.step + 1):
        if ds.commit_time(step) == watermark:
            return step
    raise AssertionError(f"watermark {watermark} is no step's commit time")


class Checker:
    """Reads the replica's state between runs (and, on PostgreSQL, during them)."""

    def __init__(self, target: str, ds: Dataset) -> None:
        self.target = target
        self.ds = ds
        self.pg = target.startswith("postgresql")
        self.mysql = target.startswith("mysql")
        self._mysql_columns: dict[str, list[str]] = {}
        # (table, watermark) -> fingerprint of the contents seen with that watermark
        self.seen: dict[tuple[str, Any], Any] = {}
        self.polls = 0
        self.verified: dict[tuple[str, int], int] = {}  # (table, step) -> digest of its rows
        self.conflicts: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- PostgreSQL: a reader polling while dapframe runs ------------------------------------
    def _poll_once(self, conn: Any) -> None:
        cur = conn.cursor()
        has_sync = cur.execute("SELECT to_regclass('instructure_dap.table_sync') IS NOT NULL"
                               ).fetchone()[0]
        for table in TABLES:
            mark_sql = ("(SELECT \"timestamp\" FROM instructure_dap.table_sync WHERE "
                        f"source_namespace = 'canvas' AND source_table = '{table}')"
                        if has_sync else "NULL::timestamp")
            if cur.execute("SELECT to_regclass(%s) IS NOT NULL", [f"canvas.{table}"]
                           ).fetchone()[0]:
                # One statement, one snapshot: the watermark and the contents together.
                try:
                    mark, count, digest = cur.execute(
                        f"SELECT {mark_sql}, count(*), sum(hashtext(t::text)::bigint) "
                        f"FROM canvas.{table} t").fetchone()
                except psycopg.errors.UndefinedTable:  # dropped meanwhile: poll again
                    continue
                # A table committed after this statement's snapshot reads as empty there
                # (PostgreSQL's catalogs are not MVCC): that is the state before the commit.
                fp = "absent" if mark is None and count == 0 else (count, digest)
            else:
                mark = cur.execute(f"SELECT {mark_sql}").fetchone()[0]
                if mark is not None and not cur.execute(
                        "SELECT to_regclass(%s) IS NOT NULL", [f"canvas.{table}"]
                        ).fetchone()[0]:
                    fp = "absent"  # a row without its table: recorded as a conflict below
                elif mark is not None:
                    continue  # committed between the two statements: poll again
                else:
                    fp = "absent"
            self.record(table, mark, fp)
        self.polls += 1

    # -- MariaDB: the same reader -------------------------------------------------------------
    def _mysql_connect(self) -> Any:
        from dapframe.sync import parse_connection_string
        from dapframe.sync._mysql import connect

        con = connect(parse_connection_string(self.target))
        con.autocommit(True)  # one statement, one snapshot
        return con

    def _mysql_poll_once(self, conn: Any) -> None:
        import pymysql

        cur = conn.cursor()

        def exists(name: str) -> bool:
            cur.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() "
                        "AND table_name = %s", [name])
            return bool(cur.fetchall())

        has_sync = exists("instructure_dap__table_sync")
        for table in TABLES:
            mark_sql = ("(SELECT `timestamp` FROM instructure_dap__table_sync WHERE "
                        f"source_namespace = 'canvas' AND source_table = '{table}')"
                        if has_sync else "NULL")
            name = f"canvas__{table}"
            try:
                if exists(name):
                    if name not in self._mysql_columns:
                        cur.execute("SELECT column_name FROM information_schema.columns WHERE "
                                    "table_schema = DATABASE() AND table_name = %s ORDER BY "
                                    "ordinal_position", [name])
                        self._mysql_columns[name] = [r[0] for r in cur.fetchall()]
                    cols = ", ".join(f"t.`{c}`" for c in self._mysql_columns[name])
                    # One statement: its metadata locks and its snapshot cover both tables.
                    cur.execute(f"SELECT {mark_sql}, count(*), "
                                f"sum(crc32(concat_ws('|', {cols}))) FROM `{name}` t")
                    mark, count, digest = cur.fetchone()
                    fp: Any = (count, int(digest or 0))
                else:
                    cur.execute(f"SELECT {mark_sql}")
                    mark = cur.fetchone()[0]
                    if mark is not None and not exists(name):
                        fp = "absent"  # a row without its table: recorded as a conflict below
                    elif mark is not None:
                        continue  # swapped in between the two statements: poll again
                    else:
                        fp = "absent"
            except pymysql.err.Error as exc:
                # Gone meanwhile (1146), a swap's lock deadlock (1213), a renamed table (1412):
                # nothing was read, poll again.
                if exc.args and exc.args[0] in (1146, 1213, 1412, 1205):
                    continue
                raise
            self.record(table, mark, fp)
        self.polls += 1

    def open_transactions(self, running: float = 0.0) -> int:
        """dapframe sessions inside a transaction right now (PostgreSQL, MariaDB; else 0).

        On MariaDB an initdb builds a private shadow table, committing chunk by chunk (its
        atomicity is the final RENAME swap): a shadow table the run under way created (within
        its ``running`` seconds, not a leftover of an earlier kill) counts too.
        """
        if self.mysql:
            con = self._mysql_connect()
            try:
                with con.cursor() as cur:
                    # Read-only autocommit statements (the reader's) are not listed.
                    cur.execute("SELECT count(*) FROM information_schema.innodb_trx t JOIN "
                                "information_schema.processlist p ON p.id = "
                                "t.trx_mysql_thread_id WHERE p.db = DATABASE() AND p.id <> "
                                "CONNECTION_ID()")
                    in_tx = cur.fetchone()[0]
                    cur.execute("SELECT count(*) FROM information_schema.tables WHERE "
                                "table_schema = DATABASE() AND table_name LIKE "
                                "'canvas~_~_%%~_~_dapframe~_new' ESCAPE '~' AND create_time >= "
                                "NOW() - INTERVAL %s SECOND", [int(running) + 1])
                    return 1 if in_tx or cur.fetchone()[0] else 0
            finally:
                con.close()
        if not self.pg:
            return 0
        with psycopg.connect(self.target, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                               "'dapframe' AND xact_start IS NOT NULL").fetchone()
        return 1 if row and row[0] else 0

    def record(self, table: str, mark: Any, fp: Any) -> None:
        if mark is None and fp != "absent":
            self.conflicts.append(f"{table}: a table without a table_sync row ({fp})")
        if mark is not None and fp == "absent":
            self.conflicts.append(f"{table}: a table_sync row at {mark} without its table")
        key = (table, mark)
        if key in self.seen and self.seen[key] != fp:
            self.conflicts.append(f"{table} at {mark}: {self.seen[key]} then {fp}")
        self.seen.setdefault(key, fp)

    def _run(self) -> None:
        if self.mysql:
            conn = self._mysql_connect()
            try:
                while not self._stop.is_set():
                    self._mysql_poll_once(conn)
                    time.sleep(0.05)
            finally:
                conn.close()
            return
        with psycopg.connect(self.target, autocommit=True) as conn:
            while not self._stop.is_set():
                self._poll_once(conn)
                time.sleep(0.05)

    def start_reader(self) -> None:
        if self.pg or self.mysql:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def stop_reader(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # -- between runs: the full comparison -------------------------------------------------
    def check(self) -> None:
        from dapframe.sync import listdb, read_table

        marks = {r["name"]: r["timestamp"] for r in listdb(self.target, "canvas",
                                                           omit_not_replicated=True,
                                                           omit_record_count=True)}
        for table in TABLES:
            if table not in marks:
                assert not self._exists(table), f"canvas.{table}: a table without table_sync"
                continue
            step = _step_of(self.ds, datetime.fromisoformat(marks[table]))
            digest = int(read_table(self.target, f"canvas.{table}").hash_rows().sum())
            if (table, step) in self.verified:  # compared in full before: same rows again?
                assert digest == self.verified[table, step], f"canvas.{table} at step {step}"
                continue
            assert_replica_equals(self.target, self.ds, "canvas", table, step=step)
            self.verified[table, step] = digest

    def _exists(self, table: str) -> bool:
        from dapframe.errors import DatabaseError
        from dapframe.sync import read_table

        try:
            read_table(self.target, f"canvas.{table}")
        except DatabaseError:
            return False
        return True


def _command(command: str, target: str) -> list[str]:
    return [sys.executable, "-m", "dapframe", "--loglevel", "warning", command, "--namespace",
            "canvas", "--table", ",".join(TABLES), "--connection-string", target]


@pytest.fixture(params=["duckdb", "postgresql", "mysql"])
def crash_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path}/crash.duckdb"
    elif request.param == "mysql":  # MariaDB started by the test run
        yield request.getfixturevalue("mysql_database")
    else:
        yield request.getfixturevalue("pg_database")


def _loading(tmp: Path) -> bool:
    """A load is under way: the engine keeps its parts in a dapframe-sync-* folder meanwhile."""
    return any(tmp.glob("dapframe-sync-*"))


def test_sigkill_at_varied_points(crash_target: str, tmp_path: Path) -> None:
    from dapframe.sync import dropdb, listdb

    rng = random.Random(20261101)
    kills = in_load = in_tx = 0
    work = tmp_path / "tmp"  # the runs' TMPDIR: their part folders show when a load runs
    work.mkdir()
    with Emulator(seed=3, scale=2, client_id="us-east-1#crash", client_secret=SECRET,
                  rows_per_part=150, job_seconds=0) as emu, \
            DapClient(base_url=emu.base_url, client_id=emu.client_id, client_secret=SECRET,
                      rate_limits=None) as client:
        # Slow object streams: a load (and its open transaction) lasts a while.
        emu.faults.object_bandwidth = 60_000
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAP_")}
        env.update(DAP_API_URL=emu.base_url, DAP_CLIENT_ID=emu.client_id,
                   DAP_CLIENT_SECRET=SECRET, TMPDIR=str(work))
        checker = Checker(crash_target, emu.dataset)
        checker.start_reader()
        try:
            for command in ("initdb", "syncdb", "syncdb"):
                for attempt in range(KILLS_PER_PHASE):
                    if command == "initdb":  # start over each time: a whole initdb to kill
                        done = [r["name"] for r in listdb(crash_target, "canvas",
                                                          omit_not_replicated=True,
                                                          omit_record_count=True)]
                        if done:
                            dropdb(crash_target, done, namespace="canvas")
                    else:
                        emu.tick(2)  # every attempt has changes to apply
                    started = time.monotonic()
                    proc = subprocess.Popen(_command(command, crash_target), env=env,
                                            cwd=tmp_path, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
                    if attempt % 2:
                        # Aim inside a load: once one is under way, a little later.
                        end = time.monotonic() + 15
                        while proc.poll() is None and not _loading(work) \
                                and time.monotonic() < end:
                            time.sleep(0.005)
                        delay = rng.uniform(0.0, 0.4)
                    else:  # anywhere: start-up, job, load, commit (syncdb runs are shorter)
                        delay = rng.uniform(0.2, 2.0 if command == "initdb" else 1.2)
                    try:
                        proc.wait(timeout=delay)
                    except subprocess.TimeoutExpired:
                        in_load += _loading(work)
                        in_tx += checker.open_transactions(time.monotonic() - started)
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait()
                        kills += 1
                    for leftover in work.glob("dapframe-sync-*"):  # a killed run's parts
                        shutil.rmtree(leftover, ignore_errors=True)
                    checker.check()
                # A plain rerun converges (auto: initdb what is missing, syncdb the rest).
                reports = sync_tables(crash_target, "canvas", TABLES, client=client)
                assert all(r.ok for r in reports), [r.error for r in reports]
                checker.check()
                for table in TABLES:
                    assert_replica_equals(crash_target, emu.dataset, "canvas", table)
        finally:
            checker.stop_reader()
    # Some unaimed runs may finish first (that is a run too); most must be killed.
    assert kills >= 3 * KILLS_PER_PHASE - 4, f"only {kills} runs were killed mid-way"
    assert in_load >= KILLS_PER_PHASE, f"only {in_load} kills hit a load"
    assert not checker.conflicts, checker.conflicts[:5]
    if checker.pg or checker.mysql:
        assert checker.polls > 30, checker.polls
        assert in_tx >= KILLS_PER_PHASE // 2, f"only {in_tx} kills hit an open transaction"
