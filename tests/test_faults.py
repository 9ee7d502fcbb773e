"""The fault matrix as tests: every scenario of :mod:`tests.matrix_faults` must survive.

Each injects one fault (API bursts, login failures, tokens, dropped streams, expired URLs,
damaged parts, failed and stuck jobs, full disks, killed processes, terminated database
sessions) and must end as the scenario expects, recovered or with one typed error, with no row
lost or duplicated. ``bench/faults.py`` prints the same records as a table.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import httpx
import pytest

from dapframe.emulator import Emulator
from tests.matrix_faults import (
    RECOVERED,
    SCENARIOS,
    TYPED_ERROR,
    FaultEnv,
    Scenario,
    run_scenario,
)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_fault(scenario: Scenario, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    pg = request.getfixturevalue("pg_server") if scenario.target == "postgresql" else None
    env = FaultEnv(tmp_path, pg)
    try:
        record = run_scenario(env, scenario)
    finally:
        env.close()
    summary = f"{record.outcome} | {record.detail}"
    assert record.survived, summary
    assert record.rows_lost == 0, summary
    assert record.rows_duplicated == 0, summary
    assert record.kind == scenario.expect, summary
    if scenario.expect == TYPED_ERROR and scenario.error is not None:
        # The exact class (or, for the CLI, its exit code 5): a subclass would name another
        # cause, e.g. DatabaseError for what was a download or decode failure.
        wants = ["CLI exit 5"] if scenario.error == "CLI" else [scenario.error]
        if scenario.opt("or_cli"):
            wants.append("CLI exit 5")
        assert any(record.outcome.startswith(f"{TYPED_ERROR}: {w}:") for w in wants), summary
    assert record.seconds < 60, summary


def test_registry_covers_the_issue() -> None:
    """Every fault the issue names has a scenario, on each target it concerns."""
    words = {s.fault.lower() for s in SCENARIOS}
    for needle in ("retry-after in seconds", "http date", "5xx", "wrong secret",
                   "token endpoint", "token expiring", "token revoked", "stream dropped",
                   "url expired", "truncated gzip", "corrupt gzip", "job fails",
                   "never finishes", "connection dropped", "sigkill", "disk full"):
        assert any(needle in w for w in words), needle
    for target in ("api", "duckdb", "postgresql"):
        kinds = {s.expect for s in SCENARIOS if s.target == target}
        assert kinds == {RECOVERED, TYPED_ERROR}, target


def test_corrupt_objects_knob_over_http() -> None:
    """``corrupt_objects`` is set through ``POST /emulator/faults`` and consumed per download."""
    with Emulator(rows_per_part=500, job_seconds=0) as emu:
        body = json.dumps({"corrupt_objects": {"count": 2, "mode": "garble"}}).encode()
        req = urllib.request.Request(f"{emu.base_url}/emulator/faults", data=body,
                                     method="POST")
        with urllib.request.urlopen(req) as resp:
            assert json.load(resp)["corrupt_objects"] == 2
        bad = json.dumps({"corrupt_objects": {"mode": "shred"}}).encode()
        req = urllib.request.Request(f"{emu.base_url}/emulator/faults", data=bad,
                                     method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req)
        assert err.value.code == 400
        assert emu.faults.take_corruption() == "garble"
        assert emu.faults.state()["corrupt_objects"] == 1
        emu.faults.reset()
        assert emu.faults.state()["corrupt_objects"] == 0


def test_small_objects_are_paced() -> None:
    """``object_bandwidth`` holds for objects smaller than one write (it used to send them
    at once, so slowed emulators were not slow for small parts)."""
    from dapframe.api import DapClient
    from dapframe.wire import QueryRequest

    with Emulator(rows_per_part=200, job_seconds=0) as emu, \
            DapClient(base_url=emu.base_url, client_id=emu.client_id,
                      client_secret=emu.client_secret, rate_limits=None) as client:
        job = client.wait(client.start_query("canvas", "users", QueryRequest("jsonl")))
        url = client.object_urls([job.objects[0].id])[job.objects[0].id]
        size = len(httpx.get(url).content)
        assert size < 60_000
        emu.faults.object_bandwidth = size / 0.5  # the object should take about 0.5 s
        start = time.monotonic()
        assert len(httpx.get(url).content) == size
        assert time.monotonic() - start >= 0.35


def test_hung_up_clients_print_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    """A client hanging up mid-request is logged, not printed as a traceback on stderr."""
    with Emulator(rows_per_part=500, job_seconds=0) as emu:
        host, port = emu.base_url.removeprefix("http://").split(":")
        for _ in range(3):
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(b"GET /emulator/state HTTP/1.1\r\nHost: x\r\n")  # no blank line
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close with RST
        time.sleep(0.3)
        assert httpx.get(f"{emu.base_url}/emulator/state").status_code == 200
    assert "Traceback" not in capfd.readouterr().err


def test_cli_deadline_must_be_positive(tmp_path: Path) -> None:
    """``--deadline 0`` is a usage error in one line, before anything runs."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "dapframe", "--non-interactive", "syncdb",
                           "--namespace", "canvas", "--table", "users", "--deadline", "0",
                           "--connection-string", f"duckdb:///{tmp_path}/r.duckdb"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "DAP_API_URL": "http://127.0.0.1:9",
                               "DAP_CLIENT_ID": "x", "DAP_CLIENT_SECRET": "y"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--deadline" in lines[0], proc.stderr
    assert not (tmp_path / "r.duckdb").exists()


def test_cli_deadline_reached_says_what_to_do(tmp_path: Path) -> None:
    """A job still running at ``--deadline``: one line that reads right for the CLI (a longer
    deadline, or the same command again later), with no Python hint such as ``get_job(...)``."""
    from tests.test_cli import assert_one_line_error, dapframe

    with Emulator(rows_per_part=500, job_seconds=10_000) as emu:
        proc = dapframe("--non-interactive", "initdb", "--namespace", "canvas", "--table",
                        "accounts", "--deadline", "1", "--connection-string",
                        f"duckdb:///{tmp_path}/r.duckdb", emu=emu, cwd=tmp_path)
    assert_one_line_error(proc, 5, "canvas.accounts", "after 1 s: give a longer deadline, or "
                          "run the same query again later (the API hands back this job while "
                          "it lives)")
    assert "get_job" not in proc.stderr and "('" not in proc.stderr
