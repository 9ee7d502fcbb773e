"""``dapframe snapshot`` / ``incremental``: official layout plus what dap lacks; and dap vs us."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from dapframe.emulator import Emulator
from dapframe.emulator._tables import json_schema
from dapframe.frames import read_batches
from dapframe.schema import TableSchema
from dapframe.wire import format_timestamp
from tests.conftest import CLIENT_ID, CLIENT_SECRET
from tests.test_cli import assert_one_line_error, dapframe
from tests.test_official_client import run_dap


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(seed=5, scale=1, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                  rows_per_part=600, job_seconds=0, steps=3) as e:
        yield e


def frame(emu: Emulator, ns: str, table: str, files: list[Path], fmt: str,
          incremental: bool) -> pl.DataFrame:
    spec = emu.dataset.spec(ns, table)
    schema = TableSchema.from_json(ns, table, json_schema(spec), spec.version)
    reader = read_batches(files, fmt, schema, incremental=incremental)
    df = pl.from_arrow(pa.Table.from_batches(list(reader), schema=reader.schema))
    assert isinstance(df, pl.DataFrame)
    return df.sort(["id", "meta.ts"])


def job_files(directory: Path) -> list[Path]:
    (job,) = directory.glob("job_*")
    return sorted(p for p in job.iterdir() if p.is_file())


def test_several_tables_at_once(emu: Emulator, tmp_path: Path) -> None:
    proc = dapframe("--non-interactive", "snapshot", "--namespace", "canvas", "--table",
                    "accounts,users,courses", "--format", "csv", "--output-directory",
                    str(tmp_path), emu=emu)
    assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.glob("job_*"))) == 3
    for path in proc.stdout.split():
        assert Path(path).exists()


def test_table_all(emu: Emulator, tmp_path: Path) -> None:
    proc = dapframe("snapshot", "--namespace", "canvas_logs", "--table", "all",
                    "--output-directory", str(tmp_path), emu=emu)
    assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.glob("job_*"))) == 1


def test_decompress_and_consolidate(emu: Emulator, tmp_path: Path) -> None:
    proc = dapframe("incremental", "--namespace", "canvas", "--table", "enrollments",
                    "--format", "tsv", "--since", format_timestamp(emu.dataset.commit_time(0)),
                    "--decompress", "--consolidate", "--output-directory", str(tmp_path), emu=emu)
    assert proc.returncode == 0, proc.stderr
    files = job_files(tmp_path)
    assert files and all(f.suffix == ".tsv" for f in files)
    assert files[0].read_text().startswith("meta.ts\tmeta.action\tkey.id")
    typed = pl.read_parquet(tmp_path / "canvas.enrollments.parquet").sort(["id", "meta.ts"])
    assert typed.schema["meta.ts"] == pl.Datetime("us", "UTC")
    assert_frame_equal(typed, frame(emu, "canvas", "enrollments", files, "tsv", True),
                       check_dtypes=False)  # the file stores enums as strings


def test_resume_reuses_downloaded_parts(emu: Emulator, tmp_path: Path) -> None:
    args = ("snapshot", "--namespace", "canvas", "--table", "submissions", "--format", "jsonl",
            "--output-directory", str(tmp_path))
    assert dapframe(*args, emu=emu).returncode == 0
    files = job_files(tmp_path)
    assert len(files) > 2
    before = {f: f.stat().st_mtime_ns for f in files}
    files[1].unlink()  # as if the first run was interrupted there
    (files[1].parent / (files[1].name + ".part")).write_bytes(b"half a part")
    again = dapframe(*args, emu=emu)
    assert again.returncode == 0, again.stderr
    after = job_files(tmp_path)
    assert after == files  # the same job folder, no .part left
    assert after[0].stat().st_mtime_ns == before[files[0]]  # not downloaded again
    gzip.decompress(after[1].read_bytes())  # the missing part is back, complete


def test_bad_input(emu: Emulator, tmp_path: Path) -> None:
    proc = dapframe("snapshot", "--namespace", "canvas", "--table", "accounts", "--format",
                    "parquet", "--decompress", "--output-directory", str(tmp_path), emu=emu)
    assert_one_line_error(proc, 2, "--decompress")
    proc = dapframe("snapshot", "--namespace", "canvas", "--table", "accounts", "--format",
                    "xml", "--output-directory", str(tmp_path), emu=emu)
    assert proc.returncode == 2 and "xml" in proc.stderr
    proc = dapframe("incremental", "--namespace", "canvas", "--table", "accounts", "--since",
                    "2026-11-02T00:00:00Z", "--until", "2026-11-01T00:00:00Z",
                    "--output-directory", str(tmp_path), emu=emu)
    assert_one_line_error(proc, 2, "--until")
    proc = dapframe("snapshot", "--namespace", "canvas", "--table", "../../etc",
                    "--output-directory", str(tmp_path), emu=emu)
    assert_one_line_error(proc, 2, "invalid table")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = dapframe("snapshot", "--namespace", "canvas", "--table", "accounts",
                    "--output-directory", str(blocker / "sub"), emu=emu)
    assert_one_line_error(proc, 2, "--output-directory")
    assert list(tmp_path.iterdir()) == [blocker]


def test_one_failing_table_does_not_stop_the_others(emu: Emulator, tmp_path: Path) -> None:
    proc = dapframe("snapshot", "--namespace", "canvas", "--table", "accounts,nope,users",
                    "--output-directory", str(tmp_path), emu=emu)
    assert proc.returncode == 5
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "canvas.nope" in errors[0]
    assert len(list(tmp_path.glob("job_*"))) == 2
    assert not list(tmp_path.rglob("*.part"))


def test_rate_limited_api_is_respected(tmp_path: Path) -> None:
    """The emulator enforces 5 job creations a minute; five tables at once trip no 429."""
    with Emulator(client_id="i", client_secret="s-secret", job_seconds=0) as e:
        e.faults.rate_limits = True
        proc = dapframe("snapshot", "--namespace", "canvas", "--table",
                        "accounts,users,courses,enrollments,pseudonyms",
                        "--output-directory", str(tmp_path), emu=e)
        assert proc.returncode == 0, proc.stderr
        assert len(list(tmp_path.glob("job_*"))) == 5
        assert e.faults.state()["rate_limited_answers"] == 0


@pytest.mark.official
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "tsv"])
def test_same_rows_as_official_client(official_dap: Path, emu: Emulator, tmp_path: Path,
                                      fmt: str) -> None:
    ds = emu.dataset
    since, until = format_timestamp(ds.commit_time(1)), format_timestamp(ds.commit_time(3))
    args = ("incremental", "--namespace", "canvas", "--table", "courses", "--format", fmt,
            "--since", since, "--until", until)
    theirs = run_dap(official_dap, emu, *args, "--output-directory", str(tmp_path / "dap"),
                     cwd=tmp_path)
    assert theirs.returncode == 0, theirs.stderr
    ours = dapframe(*args, "--output-directory", str(tmp_path / "us"), emu=emu)
    assert ours.returncode == 0, ours.stderr
    a = frame(emu, "canvas", "courses", job_files(tmp_path / "dap"), fmt, True)
    b = frame(emu, "canvas", "courses", job_files(tmp_path / "us"), fmt, True)
    assert a.height > 0
    assert_frame_equal(a, b)
    # And both equal the emulator's own change set for the window.
    assert a.height == ds.changes("canvas", "courses", ds.commit_time(1),
                                  ds.commit_time(3)).num_rows
