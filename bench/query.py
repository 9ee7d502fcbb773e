"""Benchmark: a snapshot of canvas.submissions into a collected Polars frame.

Three ways, same emulator, same run; each in its own process so that peak RSS is its own:

- ``dapframe``: ``dapframe.read_snapshot("canvas.submissions")`` (typed from the schema; each
  part decoded while the others download);
- ``dapframe-lazy``: ``dapframe.snapshot(...).to_polars()`` (download, then one native scan);
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
            df = dapframe.read_snapshot("canvas.submissions", client=c, directory=workdir)
    elif kind == "dapframe-lazy":
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

            with ThreadPoolExecutor(16) as pool:  # as many streams as dapframe's default
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


def run_child(kind: str, emu: Emu) -> tuple[float, int, float]:
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", kind, emu.base_url, emu.client_id,
             emu.client_secret, d], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{kind} failed")
        doc = json.loads(out.strip().splitlines()[-1])
        # ru_maxrss (KiB on Linux): this child, or its largest waited-for descendant (dap).
        return doc["seconds"], doc["rows"], usage.ru_maxrss / 1024


class Emu:
    """The emulator in its own process, so that no child inherits its memory."""

    def __init__(self, scale: float, rows_per_part: int, job_seconds: float, latency: float,
                 bandwidth: float) -> None:
        self.client_id, self.client_secret = "bench", "bench-secret"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dapframe", "emulator", "--port", "0", "--scale", str(scale),
             "--rows-per-part", str(rows_per_part), "--job-seconds", str(job_seconds),
             "--client-id", self.client_id, "--client-secret", self.client_secret,
             "--latency", str(latency)]
            + (["--object-bandwidth", str(bandwidth)] if bandwidth > 0 else []),
            stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().split()[-1]

    def tick(self) -> None:
        import httpx

        httpx.post(f"{self.base_url}/emulator/tick", timeout=60).raise_for_status()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:7])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=500.0)
    ap.add_argument("--rows-per-part", type=int, default=100_000)
    ap.add_argument("--job-seconds", type=float, default=1.0,
                    help="the emulator's job latency in the end-to-end runs")
    ap.add_argument("--latency", type=float, default=0.05,
                    help="seconds the emulator adds to each API call (0 for plain loopback)")
    ap.add_argument("--object-bandwidth", type=float, default=25e6,
                    help="bytes/s of each download stream, as object storage gives one "
                         "connection (0: unlimited loopback)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from bench.download import official_dap
    from dapframe.api import DapClient
    from dapframe.wire import QueryRequest

    (ROOT / "bench" / ".dap").write_text(str(official_dap()))
    t = time.perf_counter()
    emu = Emu(args.scale, args.rows_per_part, args.job_seconds, args.latency,
              args.object_bandwidth)
    print(f"emulator: scale {args.scale}, started in {time.perf_counter() - t:.1f} s; "
          f"network: {args.latency * 1000:g} ms per API call, "
          + (f"{args.object_bandwidth / 1e6:g} MB/s per download stream"
             if args.object_bandwidth > 0 else "unlimited download streams"))
    transfer: dict[str, list[tuple[float, int, float]]] = {
        "floor": [], "dapframe": [], "dapframe-lazy": [], "official": []}
    e2e: dict[str, list[tuple[float, int, float]]] = {"dapframe": [], "official": []}
    try:
        for _ in range(args.repeat):
            # Transfer only: one completed job, identical queries get it back (deduplicated).
            with DapClient(base_url=emu.base_url, client_id=emu.client_id,
                           client_secret=emu.client_secret) as c:
                c.wait(c.start_query("canvas", "submissions", QueryRequest(format="parquet")))
            for kind in transfer:
                transfer[kind].append(run_child(kind, emu))
            # End to end: a new change step before each run, so each makes and waits for its
            # own job (the emulator's latency plus the real encoding of ~1M rows).
            for kind in e2e:
                emu.tick()
                e2e[kind].append(run_child(kind, emu))
    finally:
        emu.close()
    rows = transfer["dapframe"][0][1]
    floor = min(r[0] for r in transfer["floor"])
    print(f"\ncanvas.submissions: {rows:,} rows in parquet parts of {args.rows_per_part:,}; "
          f"best of {args.repeat}; peak RSS per process\n")
    print(f"{'path':<48}{'best s':>8}{'peak RSS':>11}{'vs floor':>10}")
    labels = {"floor": "floor: httpx download + pl.read_parquet",
              "dapframe": "dapframe.read_snapshot(...)",
              "dapframe-lazy": "dapframe.snapshot(...).to_polars()",
              "official": "dap snapshot --format parquet + read_parquet"}
    best: dict[str, float] = {}
    for title, table in (("transfer only (job already complete)", transfer),
                         (f"end to end (new job, emulator latency {args.job_seconds:g} s)", e2e)):
        print(f"-- {title}")
        for k, runs in table.items():
            b = min(r[0] for r in runs)
            best[f"{title[:3]}-{k}"] = b
            print(f"{labels[k]:<48}{b:>8.2f}{max(r[2] for r in runs):>8.0f} MB{b / floor:>9.2f}x")
    print(f"\ndapframe / floor (transfer) = {best['tra-dapframe'] / floor:.2f}  (target <= 1.3)")
    print(f"official / dapframe (transfer) = "
          f"{best['tra-official'] / best['tra-dapframe']:.2f}  (target >= 2)")
    print(f"official / dapframe (end to end) = "
          f"{best['end-official'] / best['end-dapframe']:.2f}  (target >= 2)")


if __name__ == "__main__":
    main()
