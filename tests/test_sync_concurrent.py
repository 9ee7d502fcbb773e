"""Two ``syncdb`` runs of the same table at once: one may wait or fail clearly, none corrupts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dapframe.emulator import Emulator
from dapframe.sync import dialect_for, parse_connection_string
from tests.sync_support import assert_replica_equals, sync_client, sync_emu, sync_target
from tests.test_cli import dapframe

__all__ = ["sync_client", "sync_emu", "sync_target"]  # fixtures used by name below

TABLE = "submissions"
# What the second of two overlapping runs may say instead of succeeding (one line, exit 5).
CLEAR = ("synchronised by someone else", "in use by another process", "run syncdb again")


def _syncdb(emu: Emulator, target: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAP_")}
    env.update(DAP_API_URL=emu.base_url, DAP_CLIENT_ID=emu.client_id,
               DAP_CLIENT_SECRET=emu.client_secret)
    return subprocess.Popen(
        [sys.executable, "-m", "dapframe", "--non-interactive", "syncdb", "--namespace",
         "canvas", "--table", TABLE, "--connection-string", target],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


def test_two_syncdb_runs_at_once(sync_target: str, sync_emu: Emulator, tmp_path: Path) -> None:
    emu = sync_emu
    first = dapframe("initdb", "--namespace", "canvas", "--table", TABLE,
                     "--connection-string", sync_target, emu=emu, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    emu.tick(2)
    # Slow parts keep both runs inside their loads at the same time.
    emu.faults.object_bandwidth = 60_000
    runs = [_syncdb(emu, sync_target, tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=180), *p.communicate()) for p in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0, results  # at least one run applied the changes
    for code, _, err in results:
        assert "Traceback" not in err
        if code != 0:
            assert code == 5, err
            lines = [line for line in err.splitlines() if line.startswith("error:")]
            assert len(lines) == 1 and any(w in lines[0] for w in CLEAR), err
    # The replica holds the step-2 state exactly once, with the matching watermark.
    assert_replica_equals(sync_target, emu.dataset, "canvas", TABLE)
    dialect = dialect_for(parse_connection_string(sync_target))
    try:
        with dialect.session() as session:
            row = session.sync_row("canvas", TABLE)
    finally:
        dialect.close()
    assert row is not None and row.timestamp == emu.dataset.commit_time(2)
    # And a later run carries on from there.
    emu.faults.object_bandwidth = 0
    emu.tick()
    again = dapframe("syncdb", "--namespace", "canvas", "--table", TABLE,
                     "--connection-string", sync_target, emu=emu, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert_replica_equals(sync_target, emu.dataset, "canvas", TABLE)
