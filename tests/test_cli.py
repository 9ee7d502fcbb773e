"""The ``dapframe`` command, run as a real process against the emulator over real sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dapframe.emulator import Emulator
from dapframe.emulator._tables import json_schema
from tests._decode import assert_same_rows, dataset_rows, decode_part
from tests.conftest import CLIENT_SECRET


def dapframe(*args: str, emu: Emulator | None = None, secret: str | None = None,
             cwd: Path | None = None, extra_env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAP_")}
    if emu is not None:
        env.update(DAP_API_URL=emu.base_url, DAP_CLIENT_ID=emu.client_id,
                   DAP_CLIENT_SECRET=secret or emu.client_secret)
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "dapframe", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_list(module_emulator: Emulator) -> None:
    proc = dapframe("--non-interactive", "list", "--namespace", "canvas", emu=module_emulator)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == module_emulator.dataset.tables("canvas")


def test_global_options_as_flags(module_emulator: Emulator) -> None:
    emu = module_emulator
    proc = dapframe("--base-url", emu.base_url, "--client-id", emu.client_id, "--client-secret",
                    emu.client_secret, "--no-tracking", "list", "--namespace", "canvas_logs")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["web_logs"]


def test_schema_all(module_emulator: Emulator, tmp_path: Path) -> None:
    proc = dapframe("schema", "--namespace", "canvas", "--table", "accounts,users",
                    "--output-directory", str(tmp_path), emu=module_emulator)
    assert proc.returncode == 0, proc.stderr
    for table in ("accounts", "users"):
        spec = module_emulator.dataset.spec("canvas", table)
        doc = json.loads((tmp_path / f"{table}_schema_version_{spec.version}.json").read_text())
        assert doc == {"schema": json_schema(spec), "version": spec.version}
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv", "parquet"])
def test_snapshot_official_layout(module_emulator: Emulator, tmp_path: Path, fmt: str) -> None:
    proc = dapframe("snapshot", "--namespace", "canvas", "--table", "enrollments", "--format", fmt,
                    "--output-directory", str(tmp_path), emu=module_emulator)
    assert proc.returncode == 0, proc.stderr
    (job_dir,) = tmp_path.glob("job_*")
    files = sorted(job_dir.iterdir())
    assert len(files) > 1  # several parts at 500 rows per part
    rows = [r for f in files for r in decode_part(f.read_bytes(), fmt)]
    want = dataset_rows(module_emulator.dataset, "canvas", "enrollments", fmt)
    assert_same_rows(rows, want)


def test_incremental(module_emulator: Emulator, tmp_path: Path) -> None:
    ds = module_emulator.dataset
    proc = dapframe("incremental", "--namespace", "canvas", "--table", "submissions",
                    "--format", "tsv", "--since", "2026-11-01T00:00:00Z",
                    "--output-directory", str(tmp_path), emu=module_emulator)
    assert proc.returncode == 0, proc.stderr
    rows = [r for f in sorted(tmp_path.glob("job_*/*")) for r in decode_part(f.read_bytes(), "tsv")]
    want = dataset_rows(ds, "canvas", "submissions", "tsv", since=ds.commit_time(0))
    assert len(want) > 0
    assert_same_rows(rows, want)


# -- bad input: one line, the right exit code, no traceback ---------------------------------------

def test_unknown_namespace(module_emulator: Emulator) -> None:
    proc = dapframe("list", "--namespace", "nope", emu=module_emulator)
    assert_one_line_error(proc, 5, "nope")


def test_unknown_table(module_emulator: Emulator, tmp_path: Path) -> None:
    proc = dapframe("schema", "--namespace", "canvas", "--table", "no_such_table",
                    "--output-directory", str(tmp_path), emu=module_emulator)
    assert_one_line_error(proc, 5, "no_such_table")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01T00:00:00Z", "2026-11-01T00:00:00",
                                   "2026-11-01"])
def test_malformed_since(module_emulator: Emulator, tmp_path: Path, since: str) -> None:
    proc = dapframe("incremental", "--namespace", "canvas", "--table", "accounts", "--since",
                    since, "--output-directory", str(tmp_path), emu=module_emulator)
    assert_one_line_error(proc, 2, "--since")
    assert not list(tmp_path.iterdir())


def test_wrong_credentials(module_emulator: Emulator) -> None:
    proc = dapframe("list", "--namespace", "canvas", emu=module_emulator, secret="wrong-secret")
    assert_one_line_error(proc, 5, "DAP_CLIENT_SECRET")
    assert "wrong-secret" not in proc.stderr + proc.stdout


def test_missing_credentials() -> None:
    proc = dapframe("list", "--namespace", "canvas")
    assert_one_line_error(proc, 5, "DAP_CLIENT_ID")


def test_unreachable_base_url() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = dapframe("list", "--namespace", "canvas", extra_env={
        "DAP_API_URL": f"http://127.0.0.1:{port}", "DAP_CLIENT_ID": "x",
        "DAP_CLIENT_SECRET": "y-secret"})
    assert_one_line_error(proc, 5, f"127.0.0.1:{port}")


def test_usage_error_exit_2() -> None:
    proc = dapframe("list")
    assert proc.returncode == 2
    assert "--namespace" in proc.stderr


def test_secret_never_logged(module_emulator: Emulator, tmp_path: Path) -> None:
    logfile = tmp_path / "log.jsonl"
    for fmt in ("plain", "json"):
        proc = dapframe("--loglevel", "debug", "--logfile", str(logfile), "--logformat", fmt,
                        "list", "--namespace", "canvas", emu=module_emulator)
        assert proc.returncode == 0, proc.stderr
        assert CLIENT_SECRET not in proc.stdout + proc.stderr
    bad = dapframe("--loglevel", "debug", "--logfile", str(logfile), "list", "--namespace",
                   "nope", emu=module_emulator)
    assert bad.returncode == 5
    text = logfile.read_text()
    assert text  # debug logging wrote something
    assert CLIENT_SECRET not in text + bad.stderr
    assert "Bearer ey" not in text + bad.stderr


def test_emulator_command(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dapframe", "emulator", "--port", "0", "--client-id", "me",
         "--client-secret", "my-own-secret"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in first
        url = first.split()[-1]
        printed = "".join(proc.stdout.readline() for _ in range(3))
        assert "DAP_CLIENT_ID=me" in printed and "DAP_CLIENT_SECRET=my-own-secret" in printed
        ok = dapframe("list", "--namespace", "canvas", extra_env={
            "DAP_API_URL": url, "DAP_CLIENT_ID": "me", "DAP_CLIENT_SECRET": "my-own-secret"})
        assert ok.returncode == 0 and "accounts" in ok.stdout.split()
        refused = dapframe("list", "--namespace", "canvas", extra_env={
            "DAP_API_URL": url, "DAP_CLIENT_ID": "me", "DAP_CLIENT_SECRET": "other"})
        assert refused.returncode == 5
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_emulator_defaults_printed() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "dapframe", "emulator", "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        assert any("DAP_CLIENT_ID=us-east-1#dapframe-emulator" in line for line in lines)
        assert any("DAP_CLIENT_SECRET=" in line for line in lines)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_naive_date_hint_is_valid() -> None:
    from dapframe.cli._main import parse_cli_timestamp
    from dapframe.errors import UsageError

    with pytest.raises(UsageError) as info:
        parse_cli_timestamp("2026-11-01", "--since")
    hint = str(info.value).split("e.g. ")[1].split(")")[0]
    parse_cli_timestamp(hint, "--since")  # the suggested spelling parses
