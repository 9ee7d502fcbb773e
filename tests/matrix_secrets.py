"""The secret-leak scan (issue 8, part 3): run everything with known secrets, then look for them.

:func:`run_scan` runs every ``dapframe`` command as a real process at ``--loglevel debug`` with
``--logfile`` (plain and JSON), with errors forced (unknown names, a wrong secret, emulator
faults, an unreachable database), and executes the notebooks with nbclient against the same
emulator. It then scans stdout, stderr, the log files, every file written and the saved
notebooks for the client secret, the database password, every bearer token the emulator issued
and any unredacted pre-signed URL signature. It also checks that TLS verification is on by
default and that the emulator binds to loopback by default.

No pytest needed: ``bench/faults.py`` calls :func:`run_scan` directly.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CLIENT_SECRET", "DB_PASSWORD", "SecretScanResult", "run_scan"]

CLIENT_ID = "us-east-1#secret-scan"
CLIENT_SECRET = "scan-Secret-c0ffee-9a8b7c6d"
DB_PASSWORD = "Db-Pass-5ca9-7e1f"
EMULATOR_SECRET = "own-emulator-Secret-42aa"  # the `dapframe emulator` command prints its own
ROOT = Path(__file__).resolve().parent.parent

# Secret-shaped strings that must never appear unredacted, whatever their value.
_SHAPES = (
    re.compile(rb"X-(?:Emu|Amz)-Signature=[0-9A-Za-z%]{8,}"),
    re.compile(rb"Bearer\s+eyJ[0-9A-Za-z_-]{8,}"),
)


@dataclass
class SecretScanResult:
    """What the scan looked at and what it found.

    Attributes
    ----------
    places_scanned : int
        Outputs (stdout, stderr), log files, files written and notebooks scanned.
    findings : list of str
        One line per leak or failed guarantee (empty: nothing found).
    """

    places_scanned: int
    findings: list[str] = field(default_factory=list)


@dataclass
class _Run:
    label: str
    stdout: bytes
    stderr: bytes
    code: int


def _env(base_url: str, workdir: Path, secret: str = CLIENT_SECRET) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAP_")}
    env.update(DAP_API_URL=base_url, DAP_CLIENT_ID=CLIENT_ID, DAP_CLIENT_SECRET=secret,
               DAPFRAME_CACHE_DIR=str(workdir / "cache"), MPLCONFIGDIR=str(workdir / "mpl"))
    return env


def _dapframe(label: str, args: list[str], env: dict[str, str], cwd: Path,
              timeout: float = 180) -> _Run:
    proc = subprocess.run([sys.executable, "-m", "dapframe", *args], capture_output=True,
                          env=env, cwd=cwd, timeout=timeout)
    return _Run(label, proc.stdout, proc.stderr, proc.returncode)


def _commands(workdir: Path, emu: Any, pg_url: str | None) -> list[_Run]:
    """Every command, debug logs to a file (plain and JSON) and to stderr, errors forced."""
    runs: list[_Run] = []
    env = _env(emu.base_url, workdir)
    out = workdir / "out"
    duck = f"duckdb:///{workdir / 'replica.duckdb'}"
    unreachable = f"postgresql://dap:{DB_PASSWORD}@127.0.0.1:1/dap"
    pg = pg_url or unreachable
    n = 0

    def run(label: str, *args: str, secret: str = CLIENT_SECRET) -> None:
        nonlocal n
        n += 1
        fmt = "json" if n % 2 else "plain"
        logs = ["--loglevel", "debug", "--logfile", str(workdir / "logs" / f"{n:02d}.log"),
                "--logformat", fmt, "--non-interactive"]
        runs.append(_dapframe(label, [*logs, *args], _env(emu.base_url, workdir, secret),
                              workdir))

    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    run("list", "list", "--namespace", "canvas")
    run("list, secret on the command line", "--client-secret", CLIENT_SECRET, "list",
        "--namespace", "canvas_logs")
    run("schema", "schema", "--namespace", "canvas", "--table", "accounts,users",
        "--output-directory", str(out / "schemas"))
    run("snapshot parquet --consolidate", "snapshot", "--namespace", "canvas", "--table",
        "accounts,courses", "--format", "parquet", "--consolidate", "--output-directory",
        str(out))
    run("incremental tsv --decompress", "incremental", "--namespace", "canvas", "--table",
        "submissions", "--since", "2026-11-01T00:00:00Z", "--format", "tsv", "--decompress",
        "--output-directory", str(out))
    run("initdb duckdb", "initdb", "--namespace", "canvas", "--table", "accounts,users",
        "--connection-string", duck)
    emu.tick(1)
    run("syncdb duckdb", "syncdb", "--namespace", "canvas", "--table", "accounts,users",
        "--connection-string", duck)
    run("listdb duckdb", "listdb", "--namespace", "canvas", "--connection-string", duck)
    run("dropdb duckdb", "dropdb", "--namespace", "canvas", "--table", "users",
        "--connection-string", duck)
    run("initdb postgresql", "initdb", "--namespace", "canvas", "--table", "accounts",
        "--connection-string", pg)
    run("syncdb postgresql", "syncdb", "--namespace", "canvas", "--table", "accounts",
        "--connection-string", pg)
    run("listdb postgresql", "listdb", "--namespace", "canvas", "--connection-string", pg)
    run("dropdb postgresql", "dropdb", "--namespace", "canvas", "--table", "accounts",
        "--connection-string", pg)
    # Errors forced.
    run("initdb unreachable postgresql", "initdb", "--namespace", "canvas", "--table",
        "accounts", "--connection-string", unreachable)
    if pg_url:
        wrong = re.sub(r":[^:@/]*@", f":{DB_PASSWORD}-wrong@", pg_url, count=1)
        run("initdb wrong database password", "initdb", "--namespace", "canvas", "--table",
            "courses", "--connection-string", wrong)
    run("list with a wrong secret", "list", "--namespace", "canvas",
        secret=CLIENT_SECRET + "-wrong")
    run("schema of an unknown table", "schema", "--namespace", "canvas", "--table", "nope",
        "--output-directory", str(out / "schemas"))
    run("snapshot of an unknown namespace", "snapshot", "--namespace", "nope", "--table",
        "accounts", "--output-directory", str(out))
    emu.faults.fail_next_jobs(1)
    run("snapshot, the job fails", "snapshot", "--namespace", "canvas", "--table",
        "enrollments", "--output-directory", str(out))
    emu.faults.reset()
    for endpoint in ("object_url", "job", "tables"):
        emu.faults.burst(endpoint, status=503, count=2)
    emu.faults.burst("query", status=429, count=1, retry_after="1")
    emu.faults.expire_urls(count=1)
    emu.faults.drop_downloads(count=1, after_bytes=100)
    run("snapshot through 5xx, 429, an expired URL and a dropped stream", "snapshot",
        "--namespace", "canvas", "--table", "pseudonyms", "--format", "csv",
        "--output-directory", str(out))
    emu.faults.reset()
    emu.faults.expire_urls(count=50)  # every renewal expires too: the download fails
    run("snapshot, object URLs keep expiring", "snapshot", "--namespace", "canvas", "--table",
        "course_sections", "--output-directory", str(out))
    emu.faults.reset()
    emu.faults.revoke_tokens()
    emu.faults.burst("login", status=500, count=20)
    run("list, token revoked and login failing", "list", "--namespace", "canvas")
    emu.faults.reset()
    # The demos start their own emulator; the environment still holds our secret.
    runs.append(_dapframe("demo", ["--loglevel", "debug", "--logfile",
                                   str(workdir / "logs" / "demo.log"), "demo",
                                   "--output-directory", str(out / "demo")], env, workdir))
    runs.append(_dapframe("demo-sync", ["--loglevel", "debug", "--logformat", "json",
                                        "--logfile", str(workdir / "logs" / "demo-sync.log"),
                                        "demo-sync", "--database",
                                        str(workdir / "demo.duckdb")], env, workdir))
    runs.append(_emulator_command(workdir, env))
    return runs


def _emulator_command(workdir: Path, env: dict[str, str]) -> _Run:
    """``dapframe emulator`` serving a login with our client secret sent to it (refused)."""
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "dapframe", "--loglevel", "debug",
                             "emulator", "--port", "0", "--client-secret", EMULATOR_SECRET],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=workdir)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = first.split()[-1].decode()
        httpx.post(f"{url}/ids/auth/login", data={"grant_type": "client_credentials"},
                   auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
        time.sleep(0.2)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    return _Run("emulator", first + out, err, proc.returncode)


def _notebooks(workdir: Path, emu: Any) -> list[Path]:
    """Execute every notebook against the emulator (credentials from DAP_*), save it."""
    import nbformat
    from nbclient import NotebookClient

    saved = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        folder = workdir / "notebooks" / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(folder)}})
        client.execute(env=_env(emu.base_url, folder))
        target = folder / path.name
        nbformat.write(nb, target)
        saved.append(target)
    return saved


def _tls_verified_by_default() -> str:
    """"" when the client refuses an unverified certificate by default, else the finding."""
    from dapframe.api import AsyncDapClient
    from dapframe.config import DapConfig, Secret

    config = DapConfig(base_url="https://dap.example", client_id="x",
                       client_secret=Secret("y-secret"))
    if not config.verify:
        return "DapConfig.verify is off by default"
    client = AsyncDapClient(config)
    # RetryTransport -> httpx.AsyncHTTPTransport -> httpcore pool -> ssl.SSLContext
    inner = getattr(client._transport, "_transport", client._transport)
    context = getattr(getattr(inner, "_pool", None), "_ssl_context", None)
    if not isinstance(context, ssl.SSLContext):
        return "cannot find the client's TLS context"
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        return "the client's TLS context does not verify certificates and host names"
    return ""


def _emulator_binds_loopback() -> str:
    from dapframe.emulator import Emulator

    emu = Emulator()
    try:
        host = emu._server.server_address[0]
    finally:
        emu.close()
    proc = subprocess.run([sys.executable, "-m", "dapframe", "emulator", "--help"],
                          capture_output=True, text=True, timeout=60)
    if host != "127.0.0.1":
        return f"Emulator() binds to {host!r}"
    if "[default: 127.0.0.1]" not in " ".join(proc.stdout.split()):
        return "dapframe emulator --host does not default to 127.0.0.1"
    return ""


def _scan_bytes(place: str, data: bytes, secrets: list[str]) -> list[str]:
    found = []
    for s in secrets:
        if s.encode() in data:
            found.append(f"{place}: contains {_name(s)}")
    for shape in _SHAPES:
        m = shape.search(data)
        if m:
            found.append(f"{place}: unredacted {m.group(0)[:24].decode(errors='replace')}...")
    return found


def _name(secret: str) -> str:
    if secret == CLIENT_SECRET:
        return "the client secret"
    if secret == DB_PASSWORD:
        return "the database password"
    return f"a bearer token ({secret[:12]}...)"


def run_scan(workdir: Path, pg_url: str | None = None) -> SecretScanResult:
    """Run everything with known secrets and scan all it left behind.

    Parameters
    ----------
    workdir : Path
        A scratch folder: logs, downloads, replicas and saved notebooks go under it.
    pg_url : str, optional
        A PostgreSQL database to sync into; its password is added to the secrets (a
        connection string with :data:`DB_PASSWORD` to a closed port is used either way).
    """
    from dapframe.emulator import Emulator

    workdir = Path(workdir).absolute()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    if pg_url:
        from dapframe.sync import parse_connection_string

        pg_password = parse_connection_string(pg_url).password.reveal()
        # The password of the server given: scanned too (the test server's is fixed).
        extra = [pg_password] if pg_password else []
    else:
        extra = []
    findings: list[str] = []
    with Emulator(seed=0, scale=1, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                  rows_per_part=300, job_seconds=0.1, steps=1) as emu:
        runs = _commands(workdir, emu, pg_url)
        notebooks = _notebooks(workdir, emu)
        tokens = list(emu.state.issued_tokens)
    if not tokens:
        findings.append("the emulator issued no token: the scan would prove nothing")
    secrets = [CLIENT_SECRET, DB_PASSWORD, *extra, *tokens]
    places = 0
    for r in runs:
        # The emulator command prints its own (different) secret by design; ours must not.
        for stream, data in (("stdout", r.stdout), ("stderr", r.stderr)):
            places += 1
            findings += _scan_bytes(f"{r.label} {stream}", data, secrets)
    for path in sorted(p for p in workdir.rglob("*") if p.is_file()):
        places += 1
        findings += _scan_bytes(str(path.relative_to(workdir)), path.read_bytes(), secrets)
    logs = list((workdir / "logs").glob("*.log"))
    if len(logs) < 10 or not all(p.stat().st_size for p in logs):
        findings.append(f"only {len(logs)} log files, some empty: the debug logs were not "
                        "written")
    if len(notebooks) < 2:
        findings.append("fewer than two notebooks were executed")
    for check in (_tls_verified_by_default, _emulator_binds_loopback):
        problem = check()
        if problem:
            findings.append(problem)
    return SecretScanResult(places_scanned=places, findings=findings)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":  # python -m tests.matrix_secrets [DIR]
    import tempfile

    result = run_scan(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
    print(f"{result.places_scanned} places scanned, {len(result.findings)} secrets found")
    for f in result.findings:
        print("  " + f)
