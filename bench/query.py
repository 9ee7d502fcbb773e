"""Benchmark: a snapshot of canvas.submissions into a collected Polars frame.

Three ways, same emulator, same run; each in its own process so that peak RSS is its own:

- ``dapframe``: ``dapframe.snapshot("canvas.submissions").to_polars()`` (typed from the schema);
- ``floor``: the least work possible: raw parallel download of the same parquet parts with
  plain httpx, then ``polars.read_parquet`` (untyped: JSON text and enums stay strings);
- ``official``: ``dap snapshot --format parquet`` (the official client, its own venv) and
  ``polars.read_parquet`` of its files (process start-up included, as a user would see it).

The emulator's job is created once up front; identical queries return the same job, so job
processing time is excluded for all three.

Run::

    .venv/bin/python bench/query.py --scale 500          # ~1M submissions
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(kind: str, base_url: str, client_id: str, secret: str, workdir: str) -> None:
    """Run one variant; print its seconds and row count as JSON."""
    t = time.perf_counter()
    if kind == "dapframe":
        import dapframe
        from dapframe.api import DapClient

        with DapClient(base_url=base_url, client_id=client_id, client_secret=secret) as c:
            df = dapframe.snapshot("canvas.submissions", client=c, directory=workdir).to_polars()
    elif kind == "floor":
        from concurrent.futures import ThreadPoolExecutor

        import httpx
        import polars as pl

        with httpx.Client(base_url=base_url, timeout=120) as http:
            token = http.post("/ids/auth/login", data={"grant_type": "client_credentials"},
                              auth=(client_id, secret)).json()["access_token"]
            h = {"Authorization": f"Bearer {token}"}
            job = http.post("/dap/query/canvas/table/submissions/data", headers=h,
                            json={"format": "parquet"}).json()
            ids = [{"id": o["id"]} for o in job["objects"]]
            urls = http.post("/dap/object/url", headers=h, json=ids).json()["urls"]

            def get(item: tuple[int, str]) -> str:
                i, url = item
                path = os.path.join(workdir, f"part-{i}.parquet")
                with http.stream("GET", url) as r, open(path, "wb") as f:
                    for chunk in r.iter_bytes(1 << 20):
                        f.write(chunk)
                return path

            with ThreadPoolExecutor(8) as pool:
                files = list(pool.map(get, enumerate(u["url"] for u in urls.values())))
        df = pl.read_parquet(files)
    else:
        import polars as pl

        dap = ROOT / "bench" / ".dap"
        subprocess.run([str(dap.read_text().strip()), "--base-url", base_url, "--client-id",
                        client_id, "--client-secret", secret, "--no-tracking",
                        "--non-interactive", "--loglevel", "error", "snapshot", "--namespace",
                        "canvas", "--table", "submissions", "--format", "parquet",
                        "--output-directory", workdir], check=True, capture_output=True)
        df = pl.read_parquet(sorted(Path(workdir).glob("job_*/*.parquet")))
    print(json.dumps({"seconds": time.perf_counter() - t, "rows": df.height,
                      "columns": df.width}))


def run_child(kind: str, emu: object) -> tuple[float, int, float]:
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", kind, emu.base_url, emu.client_id,  # type: ignore[attr-defined]
             emu.client_secret, d], stdout=subprocess.PIPE, text=True)  # type: ignore[attr-defined]
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{kind} failed with exit code {proc.returncode}")
        doc = json.loads(out.strip().splitlines()[-1])
        # ru_maxrss is in KiB on Linux; it covers the waited child (and dap's own child).
        return doc["seconds"], doc["rows"], usage.ru_maxrss / 1024


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:7])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=500.0)
    ap.add_argument("--rows-per-part", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from bench.download import official_dap
    from dapframe.api import DapClient
    from dapframe.emulator import Emulator
    from dapframe.wire import QueryRequest

    (ROOT / "bench" / ".dap").write_text(str(official_dap()))
    t = time.perf_counter()
    emu = Emulator(scale=args.scale, rows_per_part=args.rows_per_part, job_seconds=0).start()
    print(f"emulator: scale {args.scale} generated in {time.perf_counter() - t:.1f} s")
    try:
        with DapClient(base_url=emu.base_url, client_id=emu.client_id,
                       client_secret=emu.client_secret) as c:
            t = time.perf_counter()
            job = c.wait(c.start_query("canvas", "submissions", QueryRequest(format="parquet")))
            print(f"job: {len(job.objects)} parquet parts, made in "
                  f"{time.perf_counter() - t:.1f} s (excluded below)")
        runs: dict[str, list[tuple[float, int, float]]] = {"floor": [], "dapframe": [],
                                                            "official": []}
        for _ in range(args.repeat):
            for kind in runs:
                runs[kind].append(run_child(kind, emu))
    finally:
        emu.close()
    best = {k: min(r[0] for r in v) for k, v in runs.items()}
    rss = {k: max(r[2] for r in v) for k, v in runs.items()}
    rows = runs["dapframe"][0][1]
    print(f"\ncanvas.submissions: {rows:,} rows; best of {args.repeat}; peak RSS per process\n")
    print(f"{'path':<44}{'best s':>8}{'peak RSS':>11}{'vs floor':>10}")
    labels = {"floor": "floor: httpx download + pl.read_parquet",
              "dapframe": "dapframe.snapshot(...).to_polars()",
              "official": "dap snapshot --format parquet + read_parquet"}
    for k in ("floor", "dapframe", "official"):
        print(f"{labels[k]:<44}{best[k]:>8.2f}{rss[k]:>8.0f} MB{best[k] / best['floor']:>9.2f}x")
    print(f"\ndapframe / floor = {best['dapframe'] / best['floor']:.2f} (target <= 1.3); "
          f"official / dapframe = {best['official'] / best['dapframe']:.2f} (target >= 2)")


if __name__ == "__main__":
    main()
