"""The fault matrix: one scenario per fault, each injecting it and measuring what survived.

Every scenario starts its own emulator (real sockets), and the sync scenarios their own replica
(a fresh PostgreSQL database on the test server, or a DuckDB file), injects one fault, runs the
operation, and returns a :class:`FaultRecord`:

- ``outcome``: ``recovered`` (it succeeded after retrying; for a process killed with SIGKILL:
  its rerun did), or ``typed error: <Class>: <line>`` (it stopped with one error of the
  :mod:`dapframe.errors` tree);
- ``survived``: that outcome is one of those two, cleanly: a typed error is a
  :class:`~dapframe.errors.DapError` with a one-line message (the CLI: exit code 5 and one
  ``error:`` line on stderr, no traceback), and a sync replica equals the state before or the
  state after the run, table by table, with the watermark naming that state; a rerun then
  converges on the state after;
- ``rows_lost`` and ``rows_duplicated``: the replica (or the rows a query delivered) against the
  emulator's expected state. For sync, each table is compared with the state before and the
  state after, and counted against the nearer one: rows of that state missing or with other
  values are lost; rows beyond one per key, or with keys that state does not hold, are
  duplicated.

:data:`SCENARIOS` is the registry; :func:`run_scenario` runs one, :func:`run_all` all of them
(``bench/faults.py`` prints the table, ``tests/test_faults.py`` asserts every record).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dapframe.api import DapClient
from dapframe.emulator import Emulator
from dapframe.emulator._data import Dataset
from dapframe.errors import DapError, DatabaseError
from tests._servers import PgServer

__all__ = ["SCENARIOS", "FaultEnv", "FaultRecord", "Scenario", "run_all", "run_scenario"]

ROOT = Path(__file__).resolve().parent.parent
SECRET = "fault-matrix-secret"
#: Tables the sync scenarios replicate (a few parts each at ``ROWS_PER_PART``).
SYNC_TABLES = ("users", "submissions")
ROWS_PER_PART = 300
#: What every API scenario fetches.
API_TABLE = "submissions"

RECOVERED = "recovered"
TYPED_ERROR = "typed error"


@dataclass
class FaultRecord:
    """What one injected fault did.

    Attributes
    ----------
    fault : str
        The fault, in words.
    target : str
        ``api``, ``duckdb`` or ``postgresql``.
    outcome : str
        ``recovered``, or ``typed error: <ErrorClass>: <one-line message>``.
    survived : bool
        Success after retry or one clear typed error, and (sync) a replica equal to the state
        before or after, which a rerun brings to the state after.
    rows_lost, rows_duplicated : int
        Against the expected state (0 expected).
    seconds : float
        Wall time of the faulted run.
    expected : str
        The outcome kind the scenario expects: ``recovered`` or ``typed error``.
    detail : str
        Why it did not survive, or notes (which state the replica equals).
    """

    fault: str
    target: str
    outcome: str
    survived: bool
    rows_lost: int
    rows_duplicated: int
    seconds: float
    expected: str
    detail: str = ""

    @property
    def kind(self) -> str:
        """``recovered`` or ``typed error`` (or ``other``)."""
        if self.outcome == RECOVERED or self.outcome.startswith(RECOVERED + ":"):
            return RECOVERED
        return TYPED_ERROR if self.outcome.startswith(TYPED_ERROR + ":") else "other"


@dataclass
class FaultEnv:
    """Where scenarios run: a scratch folder and, for PostgreSQL targets, a server."""

    workdir: Path
    pg: PgServer | None = None
    _databases: list[str] = field(default_factory=list)

    def target(self, dialect: str, name: str) -> str:
        """A connection string to a fresh, empty replica database."""
        if dialect == "duckdb":
            folder = Path(tempfile.mkdtemp(prefix="duckdb-", dir=self.workdir))
            return f"duckdb:///{folder}/{name}.duckdb"
        if self.pg is None:
            raise RuntimeError("this scenario needs a PostgreSQL server")
        db = self.pg.create_database()
        self._databases.append(db)
        return self.pg.url(db)

    def close(self) -> None:
        """Drop the databases made for the scenarios."""
        if self.pg is not None:
            for db in self._databases:
                self.pg.drop_database(db)
        self._databases.clear()


@dataclass(frozen=True)
class Scenario:
    """One entry of the registry."""

    fault: str
    target: str
    expect: str
    run: Callable[[FaultEnv, Scenario], FaultRecord]
    error: str | None = None  # the error class a typed-error scenario must end with
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def id(self) -> str:
        """A short test id."""
        word = "".join(c if c.isalnum() else "-" for c in self.fault.lower())
        return f"{self.target}:{'-'.join(w for w in word.split('-') if w)}"[:60]

    def opt(self, name: str, default: Any = None) -> Any:
        """A scenario option."""
        return dict(self.options).get(name, default)


# ------------------------------------------------------------------------------------------
# outcomes


def _one_line(text: str, width: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3] + "..."


def _error_outcome(exc: BaseException) -> tuple[str, bool, str]:
    """(outcome, clear, detail) for an exception that ended a run."""
    text = str(exc)
    clear = isinstance(exc, DapError) and bool(text.strip()) and "\n" not in text \
        and "Traceback" not in text
    if isinstance(exc, DapError):
        return f"{TYPED_ERROR}: {type(exc).__name__}: {_one_line(text)}", clear, \
            "" if clear else "the message is not one line"
    return f"untyped {type(exc).__name__}: {_one_line(text)}", False, "not a DapError"


def _emulator(**kwargs: Any) -> Emulator:
    params: dict[str, Any] = {"seed": 7, "scale": 1, "client_id": "us-east-1#faults",
                              "client_secret": SECRET, "rows_per_part": ROWS_PER_PART,
                              "job_seconds": 0}
    params.update(kwargs)
    return Emulator(**params).start()


def _client(emu: Emulator, **kwargs: Any) -> DapClient:
    params: dict[str, Any] = {"base_url": emu.base_url, "client_id": emu.client_id,
                              "client_secret": emu.client_secret, "rate_limits": None}
    params.update(kwargs)
    return DapClient(**params)


# ------------------------------------------------------------------------------------------
# API scenarios: a snapshot fetched through the client, its rows checked against the emulator


def _delivered(frame: Any, reference: Any) -> tuple[int, int]:
    """(lost, duplicated) of fetched rows against a clean fetch of the same job.

    A reference row missing, or present with other values, is lost; rows beyond one per key,
    or with keys the reference lacks, are duplicated.
    """
    key = "id"
    want = {row[key]: row for row in reference.to_dicts()}
    got = frame.to_dicts()
    distinct = {row[key]: row for row in got}
    lost = sum(1 for k, w in want.items() if distinct.get(k) != w)
    return lost, (len(got) - len(distinct)) + sum(1 for k in distinct if k not in want)


def _api(env: FaultEnv, sc: Scenario) -> FaultRecord:
    inject: Callable[[Emulator], Any] = sc.opt("inject", lambda emu: None)
    with contextlib.ExitStack() as stack:
        emu = stack.enter_context(_emulator(**sc.opt("emulator", {})))
        client_kwargs = dict(sc.opt("client", {}))
        secret = client_kwargs.pop("client_secret", emu.client_secret)
        client = stack.enter_context(_client(emu, client_secret=secret, **client_kwargs))
        folder = sc.opt("directory", lambda e: None)(env) or Path(
            tempfile.mkdtemp(prefix="api-", dir=env.workdir))
        during = inject(emu)
        start = time.monotonic()
        lost = dup = 0
        try:
            result = _fetch(client, sc, folder)
            sc.opt("after_download", lambda r: None)(result)
            frame = result.to_polars()
            seconds = time.monotonic() - start
            emu.faults.reset()
            emu.faults.job_seconds = 0
            # The same job again, untouched by faults: what the rows must be.
            reference = _fetch(client, sc, Path(tempfile.mkdtemp(prefix="ref-",
                                                                 dir=env.workdir)))
            lost, dup = _delivered(frame, reference.to_polars())
            outcome, clear, detail = RECOVERED, True, f"{frame.height} rows"
        except Exception as exc:  # the point: what escapes, typed or not
            seconds = time.monotonic() - start
            outcome, clear, detail = _error_outcome(exc)
        finally:
            if isinstance(during, threading.Timer):
                during.cancel()
        survived = clear and lost == 0 and dup == 0
    return FaultRecord(sc.fault, sc.target, outcome, survived, lost, dup, seconds, sc.expect,
                       detail)


def _fetch(client: DapClient, sc: Scenario, folder: Path) -> Any:
    import dapframe

    return dapframe.snapshot(f"canvas.{API_TABLE}", client=client,
                             format=sc.opt("format", "parquet"), directory=folder,
                             deadline=sc.opt("deadline"))


def _damage_first_part(result: Any) -> None:
    """Overwrite bytes inside the first downloaded part (a disk or copy fault after download)."""
    path = Path(result.files[0])
    data = bytearray(path.read_bytes())
    data[len(data) - 64: len(data) - 16] = b"\x00" * 48  # inside the footer's metadata
    path.write_bytes(bytes(data))


def _later(seconds: float, action: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()
    return timer


@contextlib.contextmanager
def small_disk(env: FaultEnv, size_kib: int = 48) -> Iterator[tuple[Path, Callable[[], Any]]]:
    """A folder that fills up after ``size_kib``: a tmpfs when mounting works (root), else an
    ordinary folder plus a ``preexec_fn`` limiting file sizes (``RLIMIT_FSIZE``) for a child.

    Yields (folder, preexec) where ``preexec`` is None for the tmpfs.
    """
    folder = Path(tempfile.mkdtemp(prefix="full-", dir=env.workdir))
    mounted = False
    # DAPFRAME_FAULTS_NO_TMPFS=1 takes the fallback even as root (to test it).
    if os.geteuid() == 0 and shutil.which("mount") and \
            not os.environ.get("DAPFRAME_FAULTS_NO_TMPFS"):
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs",
                                  str(folder)], capture_output=True).returncode == 0
    try:
        if mounted:
            yield folder, lambda: None
        else:
            def limit() -> None:
                import resource

                # EFBIG instead of death by SIGXFSZ: the writer sees an OSError, as on ENOSPC.
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (size_kib * 1024, size_kib * 1024))

            yield folder, limit
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _api_disk_full(env: FaultEnv, sc: Scenario) -> FaultRecord:
    """The download directory fills up mid-object (in a child process when not root)."""
    with small_disk(env) as (folder, preexec):
        if os.geteuid() == 0 and folder.is_mount():
            return _api(env, Scenario(sc.fault, sc.target, sc.expect, _api, sc.error,
                                      (*sc.options, ("directory", lambda e: folder))))
        return _cli_api_disk_full(env, sc, folder, preexec)


def _cli_api_disk_full(env: FaultEnv, sc: Scenario, folder: Path,
                       preexec: Callable[[], Any]) -> FaultRecord:
    with _emulator() as emu:
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "dapframe", "--non-interactive", "--loglevel", "warning",
             "snapshot", "--namespace",
             "canvas", "--table", API_TABLE, "--format", "jsonl", "--output-directory",
             str(folder)], env=_cli_env(emu, env.workdir), capture_output=True, text=True,
            preexec_fn=preexec, timeout=120)
        seconds = time.monotonic() - start
    outcome, clear, detail = _cli_outcome(proc)
    return FaultRecord(sc.fault, sc.target, outcome, clear, 0, 0, seconds, sc.expect, detail)


# ------------------------------------------------------------------------------------------
# sync scenarios: a replica initialised, the emulator moved on, one faulted syncdb (or initdb)


def _step_of(ds: Dataset, watermark: datetime) -> int | None:
    for step in range(ds.step + 1):
        if ds.commit_time(step) == watermark:
            return step
    return None


@dataclass
class _Verdict:
    exact: bool
    lost: int
    duplicated: int
    notes: list[str]


def measure(target: str, ds: Dataset, tables: tuple[str, ...], before: int | None,
            after: int) -> _Verdict:
    """Compare each replica table with the states before (None: absent) and after the run."""
    # conftest first: sync_support imports it, and it imports sync_support back.
    import tests.conftest  # noqa: F401
    from dapframe.sync import listdb
    from tests.sync_support import expected_rows, replica_rows

    marks = {r["name"]: datetime.fromisoformat(r["timestamp"])
             for r in listdb(target, "canvas", omit_not_replicated=True,
                             omit_record_count=True)}
    verdict = _Verdict(True, 0, 0, [])
    for table in tables:
        key = ds.spec("canvas", table).key.name
        try:
            got = replica_rows(target, ds, "canvas", table)
            present = True
        except DatabaseError:
            got, present = [], False
        mark = marks.get(table)
        step = _step_of(ds, mark) if mark is not None else None
        best: tuple[int, int, str, bool] | None = None
        for name, state in (("before", before), ("after", after)):
            want = {} if state is None else {r[key]: r for r in
                                             expected_rows(ds, "canvas", table, state)}
            keys = [r[key] for r in got]
            distinct = {r[key]: r for r in got}
            lost = sum(1 for k, w in want.items() if distinct.get(k) != w)
            dup = (len(keys) - len(distinct)) + sum(1 for k in distinct if k not in want)
            # The bookkeeping must name the same state: absent <-> no table_sync row.
            consistent = (present and step == state) if state is not None else \
                (not present and mark is None)
            if best is None or lost + dup < best[0] + best[1]:
                best = (lost, dup, name, consistent)
        assert best is not None
        lost, dup, name, consistent = best
        verdict.lost += lost
        verdict.duplicated += dup
        exact = lost == 0 and dup == 0 and consistent
        verdict.exact &= exact
        verdict.notes.append(f"{table}={name}" + ("" if exact else
                                                  f" (lost {lost}, dup {dup}, watermark "
                                                  f"{'ok' if consistent else 'WRONG'})"))
    return verdict


def _cli_env(emu: Emulator, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAP_")}
    env.update(DAP_API_URL=emu.base_url, DAP_CLIENT_ID=emu.client_id,
               DAP_CLIENT_SECRET=emu.client_secret, TMPDIR=str(tmp),
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def _cli_command(command: str, target: str, tables: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "dapframe", "--non-interactive", "--loglevel", "warning",
            command, "--namespace", "canvas", "--table", ",".join(tables),
            "--connection-string", target]


def _cli_outcome(proc: subprocess.CompletedProcess[str]) -> tuple[str, bool, str]:
    """A CLI run's outcome: exit 0, or exit 5 with ``error:`` lines and no traceback."""
    if proc.returncode == 0:
        return RECOVERED, True, ""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    clear = proc.returncode == 5 and bool(errors) and "Traceback" not in proc.stderr \
        and len(errors) == len(lines)
    first = errors[0] if errors else (lines[-1] if lines else "")
    # The CLI names no class: its typed errors are the tree's, shown as one line each.
    kind = TYPED_ERROR if clear else f"exit {proc.returncode}"
    return f"{kind}: CLI exit {proc.returncode}: {_one_line(first)}", clear, \
        "" if clear else _one_line(proc.stderr[-300:])


def _sync(env: FaultEnv, sc: Scenario) -> FaultRecord:
    """initdb (unless the scenario is about initdb), tick, inject, run, measure, rerun."""
    from dapframe.sync import sync_tables

    dialect = sc.target
    tables: tuple[str, ...] = sc.opt("tables", SYNC_TABLES)
    command: str = sc.opt("command", "syncdb")
    with _emulator(**sc.opt("emulator", {})) as emu, _client(emu) as client:
        target = env.target(dialect, "replica")
        before: int | None = None
        if command == "syncdb":
            reports = sync_tables(target, "canvas", list(tables), command="initdb",
                                  client=client)
            if not all(r.ok for r in reports):
                raise RuntimeError(f"setup initdb failed: {[r.error for r in reports]}")
            before = emu.dataset.step
            # Two steps change ~5% of the rows (one part); mid-load scenarios want several.
            emu.tick(sc.opt("ticks", 2))
        after = emu.dataset.step
        runner: Callable[..., tuple[str, bool, str, float]] = sc.opt("runner", _run_in_process)
        outcome, clear, detail, seconds = runner(env, sc, emu, client, target, tables, command)
        emu.faults.reset()
        verdict = measure(target, emu.dataset, tables, before, after)
        # A plain rerun (no fault) must converge on the state after.
        rerun = sync_tables(target, "canvas", list(tables), command="auto", client=client)
        again = measure(target, emu.dataset, tables, after, after)
        converged = all(r.ok for r in rerun) and again.exact
    notes = ", ".join(verdict.notes) + ("" if converged else "; rerun did NOT converge")
    survived = clear and verdict.exact and converged
    return FaultRecord(sc.fault, sc.target, outcome, survived, verdict.lost, verdict.duplicated,
                       seconds, sc.expect, "; ".join(x for x in (detail, notes) if x))


def _run_in_process(env: FaultEnv, sc: Scenario, emu: Emulator, client: DapClient,
                    target: str, tables: tuple[str, ...], command: str
                    ) -> tuple[str, bool, str, float]:
    from dapframe.sync import sync_tables

    inject: Callable[[Emulator], Any] = sc.opt("inject", lambda e: None)
    during = inject(emu)
    start = time.monotonic()
    try:
        reports = sync_tables(target, "canvas", list(tables), command=command, client=client,
                              deadline=sc.opt("deadline"), format=sc.opt("format", "parquet"))
    except Exception as exc:  # auth and transport errors are raised, not reported
        return (*_error_outcome(exc), time.monotonic() - start)
    finally:
        if isinstance(during, threading.Timer):
            during.cancel()
    seconds = time.monotonic() - start
    failed = [r for r in reports if not r.ok]
    if not failed:
        return RECOVERED, True, "", seconds
    outcomes = [_error_outcome(r.exception or RuntimeError(r.error or "")) for r in failed]
    clear = all(c for _, c, _ in outcomes)
    return outcomes[0][0], clear, f"{len(failed)} of {len(reports)} table(s) failed", seconds


def _run_disk_full(env: FaultEnv, sc: Scenario, emu: Emulator, client: DapClient,
                   target: str, tables: tuple[str, ...], command: str
                   ) -> tuple[str, bool, str, float]:
    """The CLI with TMPDIR on a nearly full filesystem: parts cannot be written."""
    # Syncdb's parts are small (only the changed rows): a few KiB fill this disk.
    with small_disk(env, size_kib=8) as (folder, preexec):
        start = time.monotonic()
        proc = subprocess.run(_cli_command(command, target, tables),
                              env=_cli_env(emu, folder), capture_output=True, text=True,
                              preexec_fn=preexec, timeout=120)
        seconds = time.monotonic() - start
    return (*_cli_outcome(proc), seconds)


def _run_cli_deadline(env: FaultEnv, sc: Scenario, emu: Emulator, client: DapClient,
                      target: str, tables: tuple[str, ...], command: str
                      ) -> tuple[str, bool, str, float]:
    """The CLI with ``--deadline 1`` against jobs that never finish."""
    emu.faults.job_seconds = 10_000
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="deadline-", dir=env.workdir))
    proc = subprocess.run([*_cli_command(command, target, tables), "--deadline", "1"],
                          env=_cli_env(emu, tmp), capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - start
    # The API hands a live job back to an identical query: fail the stuck ones, as the API
    # eventually would, so that the rerun gets a new job.
    with emu.state.lock:
        for job in emu.state.jobs.values():
            if job.job_seconds >= 10_000:
                job.fail = True
                job.job_seconds = 0
    return (*_cli_outcome(proc), seconds)


def _loading(tmp: Path) -> bool:
    """A load is under way: the engine keeps its parts in a dapframe-sync-* folder meanwhile."""
    return any(tmp.glob("dapframe-sync-*"))


def _run_killed(env: FaultEnv, sc: Scenario, emu: Emulator, client: DapClient,
                target: str, tables: tuple[str, ...], command: str
                ) -> tuple[str, bool, str, float]:
    """SIGKILL the CLI at a point: ``after`` seconds, or ``after`` seconds into a load."""
    tmp = Path(tempfile.mkdtemp(prefix="kill-", dir=env.workdir))
    # Slow streams: the load (and its open transaction) lasts a while.
    emu.faults.object_bandwidth = sc.opt("bandwidth", 40_000)
    aim: str = sc.opt("aim", "load")
    delay: float = sc.opt("after", 0.2)
    start = time.monotonic()
    proc = subprocess.Popen(_cli_command(command, target, tables), env=_cli_env(emu, tmp),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if aim == "load":
        end = time.monotonic() + 30
        while proc.poll() is None and not _loading(tmp) and time.monotonic() < end:
            time.sleep(0.005)
    in_load = _loading(tmp)
    try:
        proc.wait(timeout=delay)
        finished = True
    except subprocess.TimeoutExpired:
        in_load = in_load or _loading(tmp)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        finished = False
    seconds = time.monotonic() - start
    shutil.rmtree(tmp, ignore_errors=True)
    if finished:
        return (f"not killed: the run ended first (exit {proc.returncode})", False,
                "aim earlier", seconds)
    where = "inside a load" if in_load else "outside a load"
    # Killed: nothing to report by the process itself; the replica and the rerun tell
    # (the rerun's convergence is checked by the caller, and survived depends on it).
    return f"{RECOVERED}: killed {where}, the rerun completed", True, \
        f"SIGKILL after {seconds:.2f} s", seconds


def _run_pg_terminate(env: FaultEnv, sc: Scenario, emu: Emulator, client: DapClient,
                      target: str, tables: tuple[str, ...], command: str
                      ) -> tuple[str, bool, str, float]:
    """pg_terminate_backend on the sync's session while its load transaction is open."""
    import psycopg

    emu.faults.object_bandwidth = sc.opt("bandwidth", 40_000)
    box: dict[str, Any] = {}

    def run() -> None:
        box["result"] = _run_in_process(env, Scenario(sc.fault, sc.target, sc.expect,
                                                      _sync), emu, client, target, tables,
                                        command)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    killed = 0
    with psycopg.connect(target, autocommit=True, application_name="fault-matrix") as conn:
        end = time.monotonic() + 30
        while worker.is_alive() and time.monotonic() < end:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dapframe' "
                "AND datname = current_database() AND now() - xact_start > interval '0.2 s'"
            ).fetchone()
            if row and row[0]:
                time.sleep(0.2)  # well inside the load: some batches are in
                done = conn.execute(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM "
                    "pg_stat_activity WHERE application_name = 'dapframe' AND "
                    "datname = current_database() AND xact_start IS NOT NULL) t"
                ).fetchone()
                killed = int(done[0]) if done else 0
                break
            time.sleep(0.01)
    worker.join(timeout=120)
    outcome, clear, detail, seconds = box.get(
        "result", ("no result: the run hung", False, "", 0.0))
    if not killed:
        return "not terminated: no open load transaction seen", False, detail, seconds
    return outcome, clear, f"{killed} session(s) terminated mid-load; {detail}", seconds


# ------------------------------------------------------------------------------------------
# the registry


def _burst(*specs: tuple[str, int, int, Any]) -> Callable[[Emulator], None]:
    def inject(emu: Emulator) -> None:
        for endpoint, status, count, retry_after in specs:
            emu.faults.burst(endpoint, status=status, count=count, retry_after=retry_after)
    return inject


def _revoke_soon(delay: float) -> Callable[[Emulator], threading.Timer]:
    def inject(emu: Emulator) -> threading.Timer:
        return _later(delay, emu.faults.revoke_tokens)
    return inject


def _api_scenarios() -> list[Scenario]:
    S = Scenario
    return [
        S("429 burst, Retry-After in seconds", "api", RECOVERED, _api, options=(
            ("inject", _burst(("query", 429, 2, 1), ("object_url", 429, 1, 1))),)),
        S("429 burst, Retry-After as an HTTP date", "api", RECOVERED, _api, options=(
            ("inject", _burst(("job", 429, 1, "date"),)), ("emulator", {"job_seconds": 0.3}))),
        S("429 without end (every retry spent)", "api", TYPED_ERROR, _api, "RateLimitError",
          options=(("inject", _burst(("schema", 429, 50, 0))),)),
        S("5xx bursts (500/502/503/504 on every endpoint)", "api", RECOVERED, _api, options=(
            ("inject", _burst(("schema", 502, 2, None), ("query", 503, 1, None),
                              ("job", 504, 1, None), ("object_url", 500, 2, None),
                              ("object", 503, 2, None))),
            ("emulator", {"job_seconds": 0.3}))),
        S("5xx without end", "api", TYPED_ERROR, _api, "ServerError",
          options=(("inject", _burst(("query", 503, 50, None))),)),
        S("login: wrong secret", "api", TYPED_ERROR, _api, "AuthenticationError",
          options=(("client", {"client_secret": "not-the-secret"}),)),
        S("login: 401 from the token endpoint", "api", TYPED_ERROR, _api,
          "AuthenticationError", options=(("inject", _burst(("login", 401, 1, None))),)),
        S("login: 5xx burst from the token endpoint", "api", RECOVERED, _api,
          options=(("inject", _burst(("login", 503, 2, None))),)),
        S("token expiring mid-run (ttl 2 s, job 3 s)", "api", RECOVERED, _api, options=(
            ("emulator", {"token_ttl": 2, "job_seconds": 3}),)),
        S("token revoked mid-run", "api", RECOVERED, _api, options=(
            ("emulator", {"job_seconds": 1.0}), ("inject", _revoke_soon(0.4)))),
        S("stream dropped mid-object", "api", RECOVERED, _api, options=(
            ("inject", lambda e: e.faults.drop_downloads(count=2, after_bytes=300)),)),
        S("object URL expired", "api", RECOVERED, _api, options=(
            ("inject", lambda e: e.faults.expire_urls(count=2)),)),
        S("truncated gzip part (jsonl)", "api", TYPED_ERROR, _api, "DapError", options=(
            ("format", "jsonl"),
            ("inject", lambda e: e.faults.corrupt_objects(count=1, mode="truncate")))),
        S("corrupt gzip part (tsv)", "api", TYPED_ERROR, _api, "DapError", options=(
            ("format", "tsv"),
            ("inject", lambda e: e.faults.corrupt_objects(count=1, mode="garble")))),
        S("truncated parquet part (once)", "api", RECOVERED, _api, options=(
            ("inject", lambda e: e.faults.corrupt_objects(count=1, mode="truncate")),)),
        S("truncated parquet part (every attempt)", "api", TYPED_ERROR, _api, "DownloadError",
          options=(("inject", lambda e: e.faults.corrupt_objects(count=100, mode="truncate")),)),
        S("corrupt parquet file on disk", "api", TYPED_ERROR, _api, "DapError", options=(
            ("after_download", _damage_first_part),)),
        S("job fails", "api", TYPED_ERROR, _api, "JobFailedError",
          options=(("inject", lambda e: e.faults.fail_next_jobs(1)),)),
        S("job never finishes (deadline 1 s)", "api", TYPED_ERROR, _api, "JobTimeoutError",
          options=(("emulator", {"job_seconds": 10_000}), ("deadline", 1.0))),
        # Not root (no tmpfs): the CLI in a child with RLIMIT_FSIZE, which names no class.
        S("disk full in the download folder", "api", TYPED_ERROR, _api_disk_full,
          "DownloadError", options=(("or_cli", True),)),
    ]


def _sync_scenarios(dialect: str) -> list[Scenario]:
    S = Scenario
    out = [
        S("syncdb: 429 and 5xx bursts", dialect, RECOVERED, _sync, options=(
            ("inject", _burst(("query", 429, 1, 1), ("job", 503, 1, None),
                              ("object_url", 502, 1, None), ("object", 500, 2, None))),)),
        S("syncdb: token revoked mid-run", dialect, RECOVERED, _sync, options=(
            ("emulator", {"job_seconds": 0.8}), ("inject", _revoke_soon(0.3)))),
        S("syncdb: stream dropped and URL expired", dialect, RECOVERED, _sync, options=(
            ("inject", lambda e: (e.faults.drop_downloads(count=1, after_bytes=500),
                                  e.faults.expire_urls(count=1))),)),
        S("syncdb: truncated parquet part (once)", dialect, RECOVERED, _sync, options=(
            ("inject", lambda e: e.faults.corrupt_objects(count=1, mode="truncate")),)),
        S("syncdb: corrupt gzip part (tsv)", dialect, TYPED_ERROR, _sync, "DapError", options=(
            ("format", "tsv"),
            ("inject", lambda e: e.faults.corrupt_objects(count=1, mode="garble")))),
        S("syncdb: job fails", dialect, TYPED_ERROR, _sync, "JobFailedError",
          options=(("inject", lambda e: e.faults.fail_next_jobs(1)),)),
        S("syncdb: job never finishes (deadline 1 s)", dialect, TYPED_ERROR, _sync,
          "JobTimeoutError", options=(
              ("inject", lambda e: setattr(e.faults, "job_seconds", 10_000)),
              # The API hands the same (stuck) job back to an identical query while it
              # lives: ask in csv here so that the rerun's parquet query is a new job.
              ("deadline", 1.0), ("format", "csv"))),
        S("syncdb: job never finishes (CLI --deadline 1)", dialect, TYPED_ERROR, _sync, "CLI",
          options=(("runner", _run_cli_deadline),)),
        S("syncdb: disk full in TMPDIR (CLI)", dialect, TYPED_ERROR, _sync, "CLI", options=(
            ("runner", _run_disk_full),)),
        S("initdb: SIGKILL during start-up", dialect, RECOVERED, _sync, options=(
            ("runner", _run_killed), ("command", "initdb"), ("aim", "time"), ("after", 0.3))),
        S("initdb: SIGKILL mid-load", dialect, RECOVERED, _sync, options=(
            ("runner", _run_killed), ("command", "initdb"), ("aim", "load"), ("after", 0.3))),
        S("syncdb: SIGKILL mid-load", dialect, RECOVERED, _sync, options=(
            ("runner", _run_killed), ("aim", "load"), ("after", 0.3), ("bandwidth", 30_000),
            ("ticks", 24))),
    ]
    if dialect == "postgresql":
        out += [
            S("initdb: connection dropped mid-load", dialect, TYPED_ERROR, _sync,
              "DatabaseError", options=(("runner", _run_pg_terminate), ("command", "initdb"),
                                        ("tables", ("submissions",)))),
            S("syncdb: connection dropped mid-load", dialect, TYPED_ERROR, _sync,
              "DatabaseError", options=(("runner", _run_pg_terminate), ("bandwidth", 30_000),
                                        ("ticks", 24), ("tables", ("submissions",)))),
        ]
    return out


#: Every scenario of the matrix, API first, then DuckDB, then PostgreSQL.
SCENARIOS: list[Scenario] = _api_scenarios() + _sync_scenarios("duckdb") + \
    _sync_scenarios("postgresql")


def run_scenario(env: FaultEnv, scenario: Scenario) -> FaultRecord:
    """Run one scenario; an escaped exception (a bug here or there) is a record, not a crash."""
    start = time.monotonic()
    try:
        return scenario.run(env, scenario)
    except Exception as exc:
        outcome, _, detail = _error_outcome(exc)
        return FaultRecord(scenario.fault, scenario.target, f"harness: {outcome}", False, 0, 0,
                           time.monotonic() - start, scenario.expect, detail)


def run_all(env: FaultEnv, scenarios: list[Scenario] | None = None,
            on_record: Callable[[FaultRecord], None] | None = None) -> list[FaultRecord]:
    """Run scenarios (all by default) one after another."""
    records = []
    for sc in SCENARIOS if scenarios is None else scenarios:
        if sc.target == "postgresql" and env.pg is None:
            continue
        record = run_scenario(env, sc)
        records.append(record)
        if on_record is not None:
            on_record(record)
    return records
