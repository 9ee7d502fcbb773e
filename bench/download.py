"""Benchmark: one snapshot download, dapframe's client against the official ``dap`` client.

Both fetch the same table in the same format from the same emulator in the same run (official
layout, no decompression); the script prints seconds, MB/s and the ratio. The emulator's job
time is excluded for both sides: each job is created and finished once up front (identical
queries are deduplicated by the API, so both clients get the same, already complete job).

Run::

    .venv/bin/python bench/download.py --scale 50 --format tsv
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dapframe.api import DapClient  # noqa: E402
from dapframe.emulator import Emulator  # noqa: E402
from dapframe.wire import QueryRequest  # noqa: E402


def official_dap() -> Path:
    """The official client, installed from the test suite's exact pins (cached under .cache)."""
    req = ROOT / "tests" / "official" / "requirements.txt"
    venv = ROOT / ".cache" / f"dap-official-{hashlib.sha256(req.read_bytes()).hexdigest()[:12]}"
    if not (venv / ".installed").exists():
        uv = shutil.which("uv") or "uv"
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                        "-r", str(req)], check=True)
        (venv / ".installed").write_text("ok\n")
    return venv / "bin" / "dap"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=50.0)
    ap.add_argument("--table", default="submissions")
    ap.add_argument("--format", default="tsv", choices=["jsonl", "csv", "tsv", "parquet"])
    ap.add_argument("--rows-per-part", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    t = time.perf_counter()
    emu = Emulator(scale=args.scale, rows_per_part=args.rows_per_part, job_seconds=0).start()
    print(f"emulator: scale {args.scale}, generated in {time.perf_counter() - t:.2f} s")
    try:
        rows = emu.dataset.snapshot("canvas", args.table).num_rows
        dap = official_dap()
        request = QueryRequest(format=args.format)
        with DapClient(base_url=emu.base_url, client_id=emu.client_id,
                       client_secret=emu.client_secret) as client:
            t = time.perf_counter()
            job = client.wait(client.start_query("canvas", args.table, request))
            print(f"job: {len(job.objects)} parts, {rows:,} rows, encoded in "
                  f"{time.perf_counter() - t:.2f} s (excluded below)")
            ours: list[float] = []
            ours_cli: list[float] = []
            theirs: list[float] = []
            env = {**os.environ, "DAP_API_URL": emu.base_url, "DAP_CLIENT_ID": emu.client_id,
                   "DAP_CLIENT_SECRET": emu.client_secret}
            size = 0
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory() as d:
                    t = time.perf_counter()
                    job = client.wait(client.start_query("canvas", args.table, request))
                    files = client.download(job, Path(d) / f"job_{job.id}")
                    ours.append(time.perf_counter() - t)
                    size = sum(f.stat().st_size for f in files)
                with tempfile.TemporaryDirectory() as d:
                    t = time.perf_counter()
                    subprocess.run(
                        [sys.executable, "-m", "dapframe", "--non-interactive", "snapshot",
                         "--namespace", "canvas", "--table", args.table, "--format", args.format,
                         "--output-directory", d], check=True, capture_output=True, env=env)
                    ours_cli.append(time.perf_counter() - t)
                with tempfile.TemporaryDirectory() as d:
                    t = time.perf_counter()
                    subprocess.run(
                        [str(dap), "--base-url", emu.base_url, "--client-id", emu.client_id,
                         "--client-secret", emu.client_secret, "--no-tracking",
                         "--non-interactive", "--loglevel", "error", "snapshot", "--namespace",
                         "canvas", "--table", args.table, "--format", args.format,
                         "--output-directory", d], check=True, capture_output=True)
                    theirs.append(time.perf_counter() - t)
        mb = size / 1e6
        best_theirs = min(theirs)
        print(f"\n{'client':<34}{'best s':>8}{'MB/s':>8}{'vs dap':>8}   runs")
        for label, runs in (("dapframe DapClient (in process)", ours),
                            ("dapframe snapshot (CLI process)", ours_cli),
                            ("dap 2.3.1 snapshot (CLI process)", theirs)):
            best = min(runs)
            print(f"{label:<34}{best:>8.2f}{mb / best:>8.1f}{best_theirs / best:>7.1f}x   "
                  + " ".join(f"{x:.2f}" for x in runs))
        print(f"\n{mb:.1f} MB in {len(job.objects)} parts of {args.rows_per_part:,} rows; "
              "CLI figures include process start-up")
    finally:
        emu.close()


if __name__ == "__main__":
    main()
