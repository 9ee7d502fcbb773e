"""Shared pieces of the sync tests: targets per dialect, and replica-vs-emulator comparison."""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from dapframe.api import DapClient
from dapframe.emulator import Emulator
from dapframe.emulator._data import Dataset
from tests.conftest import CLIENT_ID, CLIENT_SECRET

#: Every dialect the shared sync suite runs on (MySQL and SQL Server join in the next issue).
#: SQL Server runs only when DAPFRAME_MSSQL_URL names a server (see ``mssql_database``).
DIALECTS = ["duckdb", "postgresql", "mysql", "mssql"]
#: Every emulator table, as (namespace, table).
TABLES = [("canvas", t) for t in Dataset(scale=0.01).tables("canvas")] + [
    ("canvas_logs", "web_logs")]


@pytest.fixture(params=DIALECTS)
def sync_target(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A connection string to an empty replica database, once per dialect."""
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path}/replica.duckdb"
    elif request.param == "mssql":
        yield request.getfixturevalue("mssql_database")
    elif request.param == "mysql":  # MariaDB started by the test run
        yield request.getfixturevalue("mysql_database")
    else:
        yield request.getfixturevalue("pg_database")


@pytest.fixture
def sync_emu() -> Iterator[Emulator]:
    """A fresh emulator: instant jobs, small parts (results span several objects)."""
    with Emulator(seed=0, scale=1, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                  rows_per_part=500, job_seconds=0) as e:
        yield e


@pytest.fixture
def sync_client(sync_emu: Emulator) -> Iterator[DapClient]:
    """A client of ``sync_emu`` with rate limits off (they are not under test here)."""
    with DapClient(base_url=sync_emu.base_url, client_id=sync_emu.client_id,
                   client_secret=sync_emu.client_secret, rate_limits=None) as c:
        yield c


def _norm(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind in ("struct", "enum_array") and isinstance(value, str):
        return json.loads(value)
    if kind == "ip":
        return str(ipaddress.ip_address(value))
    if kind == "uuid":
        return str(uuid.UUID(str(value)))
    return value


def _kinds(ds: Dataset, ns: str, table: str) -> dict[str, str]:
    spec = ds.spec(ns, table)
    return {c.name: c.kind for c in (spec.key, *spec.columns)}


def expected_rows(ds: Dataset, ns: str, table: str, step: int | None = None
                  ) -> list[dict[str, Any]]:
    """The emulator's table at ``step`` as the replica must hold it (last version per key)."""
    kinds = _kinds(ds, ns, table)
    key = ds.spec(ns, table).key.name
    rows: dict[Any, dict[str, Any]] = {}
    for rec in ds.snapshot(ns, table, step=step).to_pylist():
        row = {label.split(".", 1)[1]: _norm(kinds[label.split(".", 1)[1]], v)
               for label, v in rec.items() if label != "meta.ts"}
        rows[row[key]] = row  # web_logs repeats keys: the last one wins
    return [rows[k] for k in sorted(rows)]


def replica_rows(connection_string: str, ds: Dataset, ns: str, table: str
                 ) -> list[dict[str, Any]]:
    """The replica table as plain Python rows, through :func:`dapframe.read_table`."""
    from dapframe.sync import read_table

    kinds = _kinds(ds, ns, table)
    frame = read_table(connection_string, f"{ns}.{table}")
    return [{k: _norm(kinds.get(k, ""), v) for k, v in row.items()}
            for row in frame.to_dicts()]


def assert_replica_equals(connection_string: str, ds: Dataset, ns: str, table: str,
                          step: int | None = None) -> None:
    """Compare the replica with the emulator's table in full (every row, every column)."""
    want = expected_rows(ds, ns, table, step)
    got = replica_rows(connection_string, ds, ns, table)
    assert len(got) == len(want), f"{ns}.{table}: {len(got)} rows, expected {len(want)}"
    for g, w in zip(got, want, strict=True):
        if g != w:
            diff = {k: (g.get(k), w.get(k)) for k in set(g) | set(w) if g.get(k) != w.get(k)}
            raise AssertionError(f"{ns}.{table}: row {w.get('id')} differs: {diff}")
