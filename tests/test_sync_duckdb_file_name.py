"""A DuckDB replica file named like a namespace (canvas.duckdb) works.

DuckDB names a database after its file, so "canvas"."accounts" would be ambiguous between
the catalog and the schema if dapframe opened the file under its own name.
"""

from __future__ import annotations

from pathlib import Path

from dapframe.api import DapClient
from dapframe.emulator import Emulator
from dapframe.sync import read_table, sync
from tests.conftest import CLIENT_ID, CLIENT_SECRET
from tests.sync_support import assert_replica_equals


def test_file_named_like_the_namespace(tmp_path: Path) -> None:
    target = f"duckdb:///{tmp_path / 'canvas.duckdb'}"
    with Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, job_seconds=0) as emu, \
            DapClient(base_url=emu.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                      rate_limits=None) as client:
        first = sync(target, "canvas.accounts", client=client)
        emu.tick(2)
        second = sync(target, "canvas.accounts", client=client)
        assert (first.command, second.command) == ("initdb", "syncdb")
        assert_replica_equals(target, emu.dataset, "canvas", "accounts")
        assert read_table(target, "canvas.accounts").height == \
            emu.dataset.snapshot("canvas", "accounts").num_rows
