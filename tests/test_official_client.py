"""The official client (``instructure-dap-client``, command ``dap``) against the emulator.

It runs unchanged, from its own venv with exact pins, over real sockets: the emulator's
faithfulness bar. Every download is decoded and compared with the rows the emulator holds.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dapframe.emulator import Emulator
from dapframe.emulator._tables import json_schema
from dapframe.wire import format_timestamp
from tests._decode import assert_same_rows, dataset_rows, decode_part

pytestmark = pytest.mark.official

FORMATS = ["jsonl", "csv", "tsv", "parquet"]


def run_dap(dap: Path, emu: Emulator, *args: str, cwd: Path,
            secret: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [str(dap), "--base-url", emu.base_url, "--client-id", emu.client_id,
           "--client-secret", secret or emu.client_secret, "--no-tracking", "--non-interactive",
           "--loglevel", "warning", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=180,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def downloaded_rows(directory: Path, fmt: str) -> list[dict]:
    jobs = list(directory.glob("job_*"))
    assert len(jobs) == 1, f"expected one job folder, got {jobs}"
    files = sorted(p for p in jobs[0].iterdir() if p.is_file())
    assert files, "the official client downloaded no file"
    rows: list[dict] = []
    for f in files:
        rows.extend(decode_part(f.read_bytes(), fmt))
    return rows


def test_list(official_dap: Path, module_emulator: Emulator, tmp_path: Path) -> None:
    for ns in ("canvas", "canvas_logs"):
        proc = run_dap(official_dap, module_emulator, "list", "--namespace", ns, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == module_emulator.dataset.tables(ns)


def test_schema(official_dap: Path, module_emulator: Emulator, tmp_path: Path) -> None:
    proc = run_dap(official_dap, module_emulator, "schema", "--namespace", "canvas",
                   "--table", "all", "--output-directory", str(tmp_path / "s"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for table in module_emulator.dataset.tables("canvas"):
        spec = module_emulator.dataset.spec("canvas", table)
        saved = json.loads((tmp_path / "s" / f"{table}_schema_version_{spec.version}.json")
                           .read_text())
        assert saved == {"schema": json_schema(spec), "version": spec.version}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("table", [("canvas", "submissions"), ("canvas", "courses"),
                                   ("canvas_logs", "web_logs")])
def test_snapshot_rows_equal_emulator(official_dap: Path, module_emulator: Emulator,
                                      tmp_path: Path, fmt: str, table: tuple[str, str]) -> None:
    ns, name = table
    proc = run_dap(official_dap, module_emulator, "snapshot", "--namespace", ns, "--table", name,
                   "--format", fmt, "--output-directory", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = downloaded_rows(tmp_path / "out", fmt)
    want = dataset_rows(module_emulator.dataset, ns, name, fmt)
    assert len(want) > 0
    assert_same_rows(got, want)


@pytest.mark.parametrize("fmt", FORMATS)
def test_incremental_rows_equal_emulator(official_dap: Path, module_emulator: Emulator,
                                         tmp_path: Path, fmt: str) -> None:
    ds = module_emulator.dataset
    since = ds.commit_time(0)
    proc = run_dap(official_dap, module_emulator, "incremental", "--namespace", "canvas",
                   "--table", "enrollments", "--format", fmt, "--since", format_timestamp(since),
                   "--output-directory", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = downloaded_rows(tmp_path / "out", fmt)
    want = dataset_rows(ds, "canvas", "enrollments", fmt, since=since)
    assert {r["meta.action"] for r in want} == {"U", "D"}  # the window holds both kinds
    assert_same_rows(got, want)


def test_polling_a_slow_job(official_dap: Path, tmp_path: Path) -> None:
    """A job that is still waiting at creation: the official client polls until complete."""
    with Emulator(client_id="id", client_secret="secret-for-polling", job_seconds=1.0) as emu:
        proc = run_dap(official_dap, emu, "snapshot", "--namespace", "canvas", "--table",
                       "accounts", "--format", "tsv", "--output-directory", str(tmp_path / "o"),
                       cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        got = downloaded_rows(tmp_path / "o", "tsv")
        assert_same_rows(got, dataset_rows(emu.dataset, "canvas", "accounts", "tsv"))


def test_wrong_secret_is_refused(official_dap: Path, module_emulator: Emulator,
                                 tmp_path: Path) -> None:
    proc = run_dap(official_dap, module_emulator, "list", "--namespace", "canvas", cwd=tmp_path,
                   secret="not-the-secret")
    assert proc.returncode == 5
