"""The bad-input matrix (issue 8, part 2): every command and magic fed malformed or hostile values.

:func:`run_matrix` starts what it needs (an emulator on a loopback port, DuckDB replica files, and
PostgreSQL when given a URL), runs every case as a real ``dapframe`` process (the magics in a real
IPython shell in a subprocess) and judges each:

``clear``
    the expected exit code (2 for a usage error, 5 for anything else, as ``dap``), exactly one line
    on stderr that names the problem and a fix, no Python traceback, no secret. A case whose
    hostile value is legitimate data (NaN in a float column, text longer than ``maxLength`` into
    DuckDB) expects success instead: exit 0 and no error line.
``changed``
    files or database rows changed where nothing should: the case's folder and replica are
    fingerprinted before and after (for a success case: the replica must hold the value as served).

The module needs no pytest: ``bench/faults.py`` calls :func:`run_matrix` directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "BadInputResult", "run_matrix"]

CLIENT_ID = "us-east-1#bad-input"
CLIENT_SECRET = "bad-input-Secret-7f3a91c2"  # must never be echoed
DB_PASSWORD = "Db-pw-5e8d21"  # in the connection strings of the cases; never echoed

SQL_INJECTION = 'accounts"; DROP TABLE x; --'
HOSTILE_NAMES: dict[str, str] = {
    "quote": "acc'ounts",
    "double quote": 'acc"ounts',
    "semicolon": "accounts;users",
    "parent path": "../x",
    "path separator": "a/b",
    "sql injection": SQL_INJECTION,
    "empty": "",
    "space": "acc ounts",
}
LONG_TEXT = "x" * 100_000  # far over the schema's maxLength 255
INVALID_UTF8 = b"bad \xff\xfe name"

# A fix is named when the message says what to do: one of these words after the problem.
_FIX = re.compile(r"\b(use|choose|give|run|add|drop|swap|set|check|report|retry|try|"
                  r"percent-encode|e\.g\.|install|upgrade|remove|name a|pick|wait|pass|write it|"
                  r"see|omit|start|rename|free|fix|ask|contact|delete|re-run|rerun|keep)\b", re.I)


@dataclass
class BadInputResult:
    """The outcome of one bad-input case.

    Attributes
    ----------
    command : str
        The CLI command (``list``, ``initdb`` ...) or ``%dap <command>`` for a magic.
    case : str
        What was fed to it.
    exit_code : int
        The process's exit code; for a magic 0 (no error), 2 (IPython ``UsageError``) or 1
        (any other exception, i.e. a traceback).
    message : str
        What stderr said (the ``UsageError`` text for a magic).
    clear : bool
        Right exit code, one line naming the problem and a fix, no traceback, no secret.
    changed : bool
        Files or rows changed where nothing should have.
    expected_code : int
        The exit code the case expects.
    why : str
        Why the case is unclear or changed ("" when it is neither).
    """

    command: str
    case: str
    exit_code: int
    message: str
    clear: bool
    changed: bool
    expected_code: int = 0
    why: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class _Case:
    command: str
    case: str
    argv: tuple[str, ...]
    code: int                                  # expected exit code
    words: tuple[str, ...] = ()                # the message must contain these (case-insensitive)
    replica: str | None = None                 # "duckdb" or "postgresql": the case's target
    allow: tuple[str, ...] = ()                # globs (case folder) that may appear
    check: Callable[[_Env, Path], str] | None = None  # success cases: "" or what is wrong
    magic: bool = False
    timeout: float = 90.0


@dataclass
class _Env:
    workdir: Path
    base_url: str
    base_duckdb: Path
    pg_url: str | None
    emulator: Any
    extra_secrets: list[str] = field(default_factory=list)

    def secrets(self) -> list[str]:
        return [CLIENT_SECRET, DB_PASSWORD, *self.extra_secrets]


# -- fingerprints -------------------------------------------------------------------------------

def _tree(folder: Path) -> dict[str, str]:
    """Relative path -> content digest of every file under ``folder`` (DuckDB files excluded)."""
    out: dict[str, str] = {}
    if not folder.exists():
        return out
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith((".duckdb", ".duckdb.wal")):
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _duckdb_rows(path: Path) -> dict[str, str]:
    """Table -> digest of its sorted rows (and columns), for a DuckDB file."""
    import duckdb

    if not path.exists():
        return {}
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.sql("SELECT table_catalog, table_schema, table_name FROM "
                         "information_schema.tables ORDER BY ALL").fetchall()
        out = {}
        for cat, schema, name in tables:
            q = f'"{cat}"."{schema}"."{name}"'
            cols = con.sql(f"DESCRIBE {q}").fetchall()
            rows = con.sql(f"SELECT * FROM {q} ORDER BY ALL").fetchall()
            out[f"{schema}.{name}"] = hashlib.sha256(repr((cols, rows)).encode()).hexdigest()
        return out
    finally:
        con.close()


def _pg_rows(url: str) -> dict[str, str]:
    """Table -> digest of its sorted rows, for the dapframe schemas of a PostgreSQL database."""
    import adbc_driver_postgresql.dbapi as dbapi

    from dapframe.sync._url import parse_connection_string

    uri = parse_connection_string(url).libpq_uri()
    with dbapi.connect(uri, autocommit=True) as con, con.cursor() as cur:
        cur.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE "
                    "table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2")
        tables = cur.fetchall()
        out = {}
        for schema, name in tables:
            cur.execute(f'SELECT * FROM "{schema}"."{name}"')
            rows = sorted(repr(r) for r in cur.fetchall())
            out[f"{schema}.{name}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
        return out


# -- running one case ---------------------------------------------------------------------------

def _env(env: _Env) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("DAP_")}
    out.update(DAP_API_URL=env.base_url, DAP_CLIENT_ID=CLIENT_ID, DAP_CLIENT_SECRET=CLIENT_SECRET,
               DAPFRAME_CACHE_DIR=str(env.workdir / "cache"))
    return out


def _judge(case: _Case, env: _Env, code: int, message: str, stderr: str) -> tuple[bool, str]:
    """(clear, why) for one finished case."""
    why: list[str] = []
    lines = [line for line in stderr.splitlines() if line.strip()]
    if code != case.code:
        why.append(f"exit {code}, expected {case.code}")
    if "Traceback" in stderr or "\n---->" in stderr:
        why.append("a traceback")
    for s in env.secrets():
        if s and s in stderr:
            why.append("a secret in the output")
    if case.code == 0:
        if any(line.startswith("error") for line in lines):
            why.append("an error line")
    else:
        if len(lines) != 1:
            why.append(f"{len(lines)} lines on stderr")
        low = message.lower()
        missing = [w for w in case.words if w.lower() not in low]
        if missing:
            why.append(f"does not name {missing}")
        if not _FIX.search(message):
            why.append("names no fix")
    return not why, "; ".join(why)


def _case_dir(env: _Env, index: int, case: _Case) -> Path:
    folder = env.workdir / "cases" / f"{index:03d}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if case.replica == "duckdb":
        shutil.copy(env.base_duckdb, folder / "replica.duckdb")
    return folder


def _argv(case: _Case, folder: Path, env: _Env) -> list[str]:
    pg = env.pg_url or ""
    return [a.replace("{dir}", str(folder)).replace("{pg}", pg) for a in case.argv]


def _fingerprint(case: _Case, folder: Path, env: _Env) -> tuple[Any, ...]:
    rows: dict[str, str] = {}
    if case.replica == "duckdb":
        rows = _duckdb_rows(folder / "replica.duckdb")
    elif case.replica == "postgresql" and env.pg_url:
        rows = _pg_rows(env.pg_url)
    tree = {k: v for k, v in _tree(folder).items()
            if not any(Path(k).match(g) or k.startswith(g.rstrip("*")) for g in case.allow)}
    return tree, rows, sorted(p.name for p in folder.glob("*.duckdb"))


def _run_cli(index: int, case: _Case, env: _Env) -> BadInputResult:
    folder = _case_dir(env, index, case)
    before = _fingerprint(case, folder, env)
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "dapframe", *_argv(case, folder, env)],
                              capture_output=True, text=True, env=_env(env), cwd=folder,
                              timeout=case.timeout)
        code, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr
        code = -1
        stderr = (err.decode(errors="replace") if isinstance(err, bytes) else err or "") + \
            f"\n(timed out after {case.timeout:.0f} s)"
    result = _finish(case, env, folder, before, code, stderr.strip(), stderr)
    result.seconds = time.monotonic() - started
    return result


def _finish(case: _Case, env: _Env, folder: Path, before: tuple[Any, ...], code: int,
            message: str, stderr: str) -> BadInputResult:
    clear, why = _judge(case, env, code, message, stderr)
    after = _fingerprint(case, folder, env)
    changed_why = ""
    if case.code == 0 and case.check is not None and code == 0:
        try:
            changed_why = case.check(env, folder)
        except Exception as exc:  # a check that cannot read the result: the data is wrong
            changed_why = f"result unreadable: {type(exc).__name__}: {exc}"[:300]
    elif after != before:
        changed_why = _diff(before, after)
    return BadInputResult(command=case.command, case=case.case, exit_code=code, message=message,
                          clear=clear, changed=bool(changed_why), expected_code=case.code,
                          why="; ".join(w for w in (why, changed_why) if w))


def _diff(before: tuple[Any, ...], after: tuple[Any, ...]) -> str:
    parts = []
    if before[0] != after[0]:
        new = sorted(set(after[0]) - set(before[0]))
        parts.append(f"files changed: {new[:3] or sorted(set(before[0]) ^ set(after[0]))[:3]}")
    if before[1] != after[1]:
        touched = sorted(k for k in set(before[1]) | set(after[1])
                         if before[1].get(k) != after[1].get(k))
        parts.append(f"rows changed in {touched[:4]}")
    if before[2] != after[2]:
        parts.append(f"database files changed: {after[2]}")
    return "; ".join(parts)


# -- success checks (legitimate hostile data) ---------------------------------------------------

def _value(target: str, table: str, column: str, key: int) -> Any:
    from dapframe.sync import read_table

    frame = read_table(target, table)
    row = frame.filter(frame["id"] == key)
    return row[column].to_list()[0] if row.height else "<missing row>"


def _first_key(env: _Env, table: str) -> int:
    records = env.emulator.dataset.snapshot("canvas", table)
    return int(records.column("key.id")[0].as_py())


def _check_floats(env: _Env, target: str) -> str:
    key = _first_key(env, "submissions")
    got = [_value(target, "canvas.submissions", c, key)
           for c in ("score", "published_score", "student_entered_score")]
    ok = (isinstance(got[0], float) and math.isnan(got[0]) and got[1] == math.inf
          and got[2] == -math.inf)
    return "" if ok else f"NaN/inf not kept: {got}"


def _check_long_text(env: _Env, target: str) -> str:
    got = _value(target, "canvas.courses", "name", _first_key(env, "courses"))
    return "" if got == LONG_TEXT else f"long text not kept whole ({len(str(got))} characters)"


def _duck_target(folder: Path) -> str:
    return f"duckdb:///{folder / 'replica.duckdb'}"


# -- the cases ----------------------------------------------------------------------------------

def _unwritable(workdir: Path) -> tuple[str, str]:
    """(a folder that cannot be created, an existing folder that cannot be written)."""
    if os.geteuid() == 0:  # root ignores permission bits: use sysfs, which refuses everyone
        return "/sys/dapframe-bad-input/out", "/sys/kernel"
    locked = workdir / "locked"
    locked.mkdir(exist_ok=True)
    locked.chmod(0o555)
    return str(locked / "out"), str(locked)


def _cli_cases(env: _Env) -> list[_Case]:
    cannot_create, cannot_write = _unwritable(env.workdir)
    a_file = str(env.workdir / "a-file.txt")
    cases: list[_Case] = []
    add = cases.append

    # Hostile namespaces and tables: refused before any request, file or SQL (exit 2).
    for label, name in HOSTILE_NAMES.items():
        words: tuple[str, ...] = ("--table",) if not name else ("invalid",)
        if name:
            add(_Case("list", f"namespace {label}", ("list", "--namespace", name), 2,
                      ("invalid namespace",)))
        add(_Case("schema", f"table {label}", ("schema", "--namespace", "canvas", "--table",
                                              name, "--output-directory", "{dir}/out"), 2, words))
        add(_Case("snapshot", f"table {label}", ("snapshot", "--namespace", "canvas", "--table",
                                                name, "--output-directory", "{dir}/out"), 2,
                  words))
        add(_Case("incremental", f"table {label}", (
            "incremental", "--namespace", "canvas", "--table", name, "--since",
            "2026-11-01T00:00:00Z", "--output-directory", "{dir}/out"), 2, words))
        for command in ("initdb", "syncdb", "dropdb"):
            add(_Case(command, f"table {label}", (
                command, "--namespace", "canvas", "--table", name, "--connection-string",
                "duckdb:///{dir}/replica.duckdb"), 2, words, replica="duckdb"))
    for label, ns in (("sql injection", 'canvas"; DROP SCHEMA canvas CASCADE; --'),
                      ("parent path", "../canvas"), ("path separator", "canvas/x"),
                      ("quote", "can'vas")):
        add(_Case("schema", f"namespace {label}", ("schema", "--namespace", ns, "--table",
                                                  "accounts", "--output-directory", "{dir}/out"),
                  2, ("invalid namespace",)))
        add(_Case("snapshot", f"namespace {label}", ("snapshot", "--namespace", ns, "--table",
                                                    "accounts", "--output-directory",
                                                    "{dir}/out"), 2, ("invalid namespace",)))
        for command in ("initdb", "dropdb"):
            add(_Case(command, f"namespace {label}", (
                command, "--namespace", ns, "--table", "accounts", "--connection-string",
                "duckdb:///{dir}/replica.duckdb"), 2, ("invalid namespace",), replica="duckdb"))
        add(_Case("listdb", f"namespace {label}", (
            "listdb", "--namespace", ns, "--connection-string", "duckdb:///{dir}/replica.duckdb"),
            2, ("invalid namespace",), replica="duckdb"))
    add(_Case("list", "unknown namespace", ("list", "--namespace", "nope"), 5, ("nope",)))
    add(_Case("schema", "unknown table", ("schema", "--namespace", "canvas", "--table",
                                          "no_such_table", "--output-directory", "{dir}/out"),
              5, ("no_such_table",)))

    # --since / --until: malformed, naive (refused, as documented), future, reversed.
    def inc(label: str, extra: tuple[str, ...], code: int, words: tuple[str, ...]) -> None:
        add(_Case("incremental", label, ("incremental", "--namespace", "canvas", "--table",
                                         "accounts", *extra, "--output-directory", "{dir}/out"),
                  code, words))

    inc("--since malformed", ("--since", "yesterday"), 2, ("--since", "ISO 8601"))
    inc("--since impossible date", ("--since", "2026-13-01T00:00:00Z"), 2, ("--since",))
    inc("--since empty", ("--since", ""), 2, ("--since",))
    inc("--since naive", ("--since", "2026-11-01T00:00:00"), 2, ("--since", "time zone"))
    inc("--since naive date", ("--since", "2026-11-01"), 2, ("--since", "time zone"))
    inc("--since bad offset", ("--since", "2026-11-01T00:00:00+25:00"), 2, ("--since",))
    inc("--since in the future", ("--since", "2099-01-01T00:00:00Z"), 5, ("since",))
    inc("--until malformed", ("--since", "2026-11-01T00:00:00Z", "--until", "soon"), 2,
        ("--until",))
    inc("--until naive", ("--since", "2026-11-01T00:00:00Z", "--until", "2026-11-02T00:00:00"),
        2, ("--until", "time zone"))
    inc("--until before --since", ("--since", "2026-11-02T00:00:00Z", "--until",
                                   "2026-11-01T00:00:00Z"), 2, ("--until", "--since"))
    inc("--since missing", (), 2, ("--since",))

    # Options of the query commands.
    for command in ("snapshot", "incremental"):
        since = ("--since", "2026-11-01T00:00:00Z") if command == "incremental" else ()
        base = (command, "--namespace", "canvas", "--table", "accounts", *since)
        add(_Case(command, "--format xml", (*base, "--format", "xml"), 2, ("--format", "xml")))
        add(_Case(command, "--concurrency 0", (*base, "--concurrency", "0", "--output-directory",
                                               "{dir}/out"), 2, ("--concurrency",)))
        add(_Case(command, "--concurrency not a number", (*base, "--concurrency", "many"), 2,
                  ("--concurrency",)))
        add(_Case(command, "--decompress with parquet", (*base, "--format", "parquet",
                                                         "--decompress"), 2, ("--decompress",)))
        add(_Case(command, "--output-directory cannot be created",
                  (*base, "--output-directory", cannot_create), 2, ("--output-directory",)))
        add(_Case(command, "--output-directory not writable",
                  (*base, "--output-directory", cannot_write), 2, ("--output-directory",)))
        add(_Case(command, "--output-directory is a file",
                  (*base, "--output-directory", a_file), 2, ("--output-directory",)))
        add(_Case(command, "--output-directory under a file",
                  (*base, "--output-directory", a_file + "/sub"), 2, ("--output-directory",)))
    add(_Case("schema", "--output-directory cannot be created", (
        "schema", "--namespace", "canvas", "--table", "accounts", "--output-directory",
        cannot_create), 2, ("--output-directory",)))
    add(_Case("schema", "--output-directory not writable", (
        "schema", "--namespace", "canvas", "--table", "accounts", "--output-directory",
        cannot_write), 2, ("--output-directory",)))
    add(_Case("schema", "--output-directory is a file", (
        "schema", "--namespace", "canvas", "--table", "accounts", "--output-directory", a_file),
        2, ("--output-directory",)))
    add(_Case("list", "no --namespace", ("list",), 2, ("--namespace",)))
    add(_Case("list", "unknown option", ("list", "--namespace", "canvas", "--frobnicate"), 2,
              ("--frobnicate",)))
    add(_Case("list", "--loglevel loud", ("--loglevel", "loud", "list", "--namespace", "canvas"),
              2, ("--loglevel",)))
    add(_Case("list", "--logfile in a missing folder", (
        "--logfile", "{dir}/no/such/folder/log.txt", "list", "--namespace", "canvas"), 2,
        ("--logfile",)))
    add(_Case("list", "--base-url malformed", ("--base-url", "not a url", "list", "--namespace",
                                               "canvas"), 5, ("not a url",)))
    add(_Case("list", "--base-url unknown scheme", ("--base-url", "ftp://127.0.0.1:1", "list",
                                                    "--namespace", "canvas"), 5, ("ftp",)))

    # Connection strings: malformed, unknown dialects, bad parameters, unusable DuckDB paths.
    pw = DB_PASSWORD
    bad_urls = {
        "not a url": ("not a connection string", ("malformed connection string",)),
        "bad port": (f"postgresql://u:{pw}@localhost:notaport/db", ("malformed",)),
        "oracle dialect": (f"oracle://scott:{pw}@host/db", ("'oracle' is not supported",)),
        "sqlite dialect": ("sqlite:///{dir}/x.db", ("'sqlite' is not supported",)),
        "unknown parameter": (f"postgresql://u:{pw}@localhost/db?x=1", ("unknown",)),
        "bad ssl mode": (f"postgresql://u:{pw}@localhost/db?ssl=sometimes", ("ssl",)),
        "ssl twice": (f"postgresql://u:{pw}@localhost/db?ssl=require&ssl=disable", ("ssl",)),
        "duckdb without slashes": ("duckdb:replica.duckdb", ("malformed",)),
        "duckdb parameters": ("duckdb:///{dir}/replica.duckdb?threads=4", ("parameters",)),
        "duckdb path is a folder": ("duckdb:///{dir}", ("directory",)),
        "duckdb folder missing": ("duckdb:///{dir}/no/such/x.duckdb", ("no/such",)),
        "duckdb under a file": (f"duckdb:///{a_file}/x.duckdb", ("a-file.txt",)),
        "duckdb not writable": (f"duckdb:///{cannot_write}/x.duckdb", (cannot_write,)),
        "postgresql unreachable": (f"postgresql://u:{pw}@127.0.0.1:1/db", ("cannot reach",)),
    }
    # initdb creates a missing folder (it makes the replica); listdb reads only: with no file
    # there is nothing replicated, an empty list.
    succeeds = {("initdb", "duckdb folder missing"), ("listdb", "duckdb folder missing"),
                ("listdb", "duckdb not writable")}
    for label, (url, words) in bad_urls.items():
        for command in ("initdb", "syncdb", "dropdb", "listdb"):
            ok = (command, label) in succeeds
            extra = ("--omit-not-replicated",) if command == "listdb" else (
                "--table", "accounts")
            add(_Case(command, f"connection string {label}", (
                command, "--namespace", "canvas", *extra, "--connection-string", url),
                0 if ok else 5, () if ok else words, replica="duckdb"))
    add(_Case("initdb", "--concurrency 0", (
        "initdb", "--namespace", "canvas", "--table", "accounts", "--concurrency", "0",
        "--connection-string", "duckdb:///{dir}/replica.duckdb"), 2, ("--concurrency",),
        replica="duckdb"))
    add(_Case("syncdb", "table not initialised", (
        "syncdb", "--namespace", "canvas", "--table", "users", "--connection-string",
        "duckdb:///{dir}/replica.duckdb"), 5, ("canvas.users", "initdb"), replica="duckdb"))
    add(_Case("dropdb", "table not initialised", (
        "dropdb", "--namespace", "canvas", "--table", "users", "--connection-string",
        "duckdb:///{dir}/replica.duckdb"), 5, ("users", "not initialised"), replica="duckdb"))
    add(_Case("initdb", "table already initialised", (
        "initdb", "--namespace", "canvas", "--table", "accounts", "--connection-string",
        "duckdb:///{dir}/replica.duckdb"), 5, ("accounts", "syncdb"), replica="duckdb"))
    add(_Case("initdb", "unknown table", (
        "initdb", "--namespace", "canvas", "--table", "no_such_table", "--connection-string",
        "duckdb:///{dir}/replica.duckdb"), 5, ("no_such_table",), replica="duckdb"))
    add(_Case("listdb", "missing DuckDB file", (
        "listdb", "--namespace", "canvas", "--omit-not-replicated", "--connection-string",
        "duckdb:///{dir}/missing.duckdb"), 0, replica="duckdb"))

    # Schema documents with unknown keywords or free-form objects (served by the emulator).
    for table, what in (("enrollment_terms", "unknown keyword"),
                        ("course_sections", "free-form object")):
        words = ("canvas." + table, "name")
        add(_Case("snapshot", f"schema with {what} (--consolidate)", (
            "snapshot", "--namespace", "canvas", "--table", table, "--consolidate",
            "--output-directory", "{dir}/out"), 5, words, allow=("out/job_*",)))
        add(_Case("incremental", f"schema with {what} (--consolidate)", (
            "incremental", "--namespace", "canvas", "--table", table, "--since",
            "2026-11-01T00:00:00Z", "--consolidate", "--output-directory", "{dir}/out"), 5,
            words, allow=("out/job_*",)))
        for command in ("initdb", "syncdb"):
            add(_Case(command, f"schema with {what}", (
                command, "--namespace", "canvas", "--table", table, "--connection-string",
                "duckdb:///{dir}/replica.duckdb"), 5, words, replica="duckdb"))

    # Data: NaN/inf, over-long text (legitimate: kept as served), invalid UTF-8 (refused).
    add(_Case("initdb", "NaN and inf into DuckDB", (
        "initdb", "--namespace", "canvas", "--table", "submissions", "--connection-string",
        "duckdb:///{dir}/replica.duckdb"), 0, replica="duckdb",
        check=lambda env, folder: _check_floats(env, _duck_target(folder))))
    add(_Case("initdb", "text over maxLength into DuckDB", (
        "initdb", "--namespace", "canvas", "--table", "courses", "--connection-string",
        "duckdb:///{dir}/replica.duckdb"), 0, replica="duckdb",
        check=lambda env, folder: _check_long_text(env, _duck_target(folder))))
    add(_Case("initdb", "invalid UTF-8 into DuckDB", (
        "initdb", "--namespace", "canvas", "--table", "users", "--connection-string",
        "duckdb:///{dir}/replica.duckdb"), 5, ("canvas.users", "UTF-8"), replica="duckdb"))
    for fmt in ("jsonl", "tsv", "csv", "parquet"):
        add(_Case("snapshot", f"invalid UTF-8 ({fmt}, --consolidate)", (
            "snapshot", "--namespace", "canvas", "--table", "users", "--format", fmt,
            "--consolidate", "--output-directory", "{dir}/out"), 5, ("canvas.users", "UTF-8"),
            allow=("out/job_*",)))
        # JSON has no NaN: the emulator's jsonl leaves such a value out, so it reads as null.
        add(_Case("snapshot", f"NaN and inf ({fmt}, --consolidate)", (
            "snapshot", "--namespace", "canvas", "--table", "submissions", "--format", fmt,
            "--consolidate", "--output-directory", "{dir}/out"), 0,
            check=_consolidated_check(json=fmt == "jsonl")))

    # The emulator and the demos.
    add(_Case("emulator", "--scale 0", ("emulator", "--port", "0", "--scale", "0"), 2,
              ("--scale",)))
    add(_Case("emulator", "--port out of range", ("emulator", "--port", "70000"), 2,
              ("--port",)))
    add(_Case("emulator", "--port negative", ("emulator", "--port", "-5"), 2, ("--port",)))
    add(_Case("emulator", "--host unknown", ("emulator", "--host", "no-such-host.invalid",
                                             "--port", "0"), 5, ("no-such-host.invalid",)))
    add(_Case("emulator", "--rows-per-part 0", ("emulator", "--port", "0", "--rows-per-part",
                                                "0"), 2, ("--rows-per-part",)))
    add(_Case("emulator", "--job-seconds negative", ("emulator", "--port", "0", "--job-seconds",
                                                     "-1"), 2, ("--job-seconds",)))
    add(_Case("emulator", "--steps negative", ("emulator", "--port", "0", "--steps", "-1"), 2,
              ("--steps",)))
    add(_Case("demo", "--scale 0", ("demo", "--scale", "0", "--output-directory", "{dir}/out"),
              2, ("--scale",)))
    add(_Case("demo", "--output-directory is a file", ("demo", "--output-directory", a_file), 2,
              ("--output-directory",)))
    add(_Case("demo", "--output-directory not writable", ("demo", "--output-directory",
                                                          cannot_write), 2,
              ("--output-directory",)))
    add(_Case("demo-sync", "--scale 0", ("demo-sync", "--scale", "0", "--database",
                                         "{dir}/d.duckdb"), 2, ("--scale",)))
    add(_Case("demo-sync", "--database is a folder", ("demo-sync", "--database", "{dir}"), 2,
              ("--database", "directory")))
    add(_Case("demo-sync", "--database not writable", ("demo-sync", "--database",
                                                       f"{cannot_write}/d.duckdb"), 5,
              (cannot_write,)))
    add(_Case("demo-sync", "--concurrency 0", ("demo-sync", "--concurrency", "0", "--database",
                                               "{dir}/d.duckdb"), 2, ("--concurrency",)))
    # An emulator that wrongly starts would serve until killed: do not wait long for it.
    return [dataclasses.replace(c, timeout=20) if c.command == "emulator" else c for c in cases]


def _consolidated_check(*, json: bool) -> Callable[[_Env, Path], str]:
    def check(env: _Env, folder: Path) -> str:
        return _check_consolidated_floats(env, folder, json=json)
    return check


def _check_consolidated_floats(env: _Env, folder: Path, *, json: bool = False) -> str:
    import polars as pl

    files = list((folder / "out").glob("canvas.submissions.parquet"))
    if not files:
        return "no consolidated file"
    key = _first_key(env, "submissions")
    frame = pl.read_parquet(files[0])
    row = frame.filter(pl.col("id") == key)
    got = [row[c].to_list()[0] for c in ("score", "published_score", "student_entered_score")]
    ok = (got == [None, None, None] if json else isinstance(got[0], float)
          and math.isnan(got[0]) and got[1] == math.inf and got[2] == -math.inf)
    return "" if ok else f"NaN/inf not kept: {got}"


def _pg_cases(env: _Env) -> list[_Case]:
    """Cases against the real PostgreSQL (run one after another on the one database)."""
    if not env.pg_url:
        return []

    def pg_check(check: Callable[[_Env, str], str]) -> Callable[[_Env, Path], str]:
        def run(e: _Env, folder: Path) -> str:
            assert e.pg_url is not None
            return check(e, e.pg_url)
        return run

    cases = [
        _Case("initdb", "sql injection in --table (PostgreSQL)", (
            "initdb", "--namespace", "canvas", "--table", SQL_INJECTION,
            "--connection-string", "{pg}"), 2, ("invalid",), replica="postgresql"),
        _Case("dropdb", "sql injection in --namespace (PostgreSQL)", (
            "dropdb", "--namespace", 'canvas"; DROP SCHEMA canvas CASCADE; --', "--table",
            "accounts", "--connection-string", "{pg}"), 2, ("invalid",), replica="postgresql"),
        _Case("initdb", "schema with unknown keyword (PostgreSQL)", (
            "initdb", "--namespace", "canvas", "--table", "enrollment_terms",
            "--connection-string", "{pg}"), 5, ("canvas.enrollment_terms", "name"),
            replica="postgresql"),
        _Case("syncdb", "schema with free-form object (PostgreSQL)", (
            "syncdb", "--namespace", "canvas", "--table", "course_sections",
            "--connection-string", "{pg}"), 5, ("canvas.course_sections", "name"),
            replica="postgresql"),
        _Case("initdb", "invalid UTF-8 into PostgreSQL", (
            "initdb", "--namespace", "canvas", "--table", "users", "--connection-string",
            "{pg}"), 5, ("canvas.users", "UTF-8"), replica="postgresql"),
        _Case("initdb", "text over maxLength into PostgreSQL varchar(255)", (
            "initdb", "--namespace", "canvas", "--table", "courses", "--connection-string",
            "{pg}"), 5, ("canvas.courses", "name", "255"), replica="postgresql"),
        _Case("initdb", "NaN and inf into PostgreSQL", (
            "initdb", "--namespace", "canvas", "--table", "submissions",
            "--connection-string", "{pg}"), 0, replica="postgresql",
            check=pg_check(_check_floats)),
    ]
    return cases


# -- the magics ---------------------------------------------------------------------------------

_MAGIC_DRIVER = textwrap.dedent("""
    import io, json, os, sys
    from contextlib import redirect_stderr, redirect_stdout
    from IPython.core.interactiveshell import InteractiveShell
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "dapframe")
    ip.run_line_magic("config", "Dap.env_file = ''")
    ip.run_line_magic("config", "Dap.display_limit = 0")
    cases = json.load(open(sys.argv[1]))
    results = []
    for c in cases:
        os.chdir(c["cwd"])
        ip.run_line_magic("config", "Dap.directory = " + repr(c["cwd"] + "/cache"))
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            r = ip.run_cell(c["source"])
        e = r.error_before_exec or r.error_in_exec
        results.append({"error": type(e).__name__ if e else None,
                        "message": str(e) if e else "",
                        "stdout": out.getvalue(), "stderr": err.getvalue()})
    json.dump(results, open(sys.argv[2], "w"))
""")


def _magic_cases(env: _Env) -> list[_Case]:
    cases: list[_Case] = []

    def add(line: str, case: str, words: tuple[str, ...], code: int = 2,
            replica: str | None = None, allow: tuple[str, ...] = ()) -> None:
        command = "%dap " + line.split()[0]
        cases.append(_Case(command, case, (line,), code, words, replica=replica, allow=allow,
                           magic=True))

    for label, name in HOSTILE_NAMES.items():
        if not name or label == "space":
            continue
        quoted = "'" + name.replace("'", "'\"'\"'") + "'"
        add(f"tables {quoted}", f"namespace {label}", ("invalid namespace",))
        add(f"schema canvas.{quoted}", f"table {label}", ("invalid",))
        add(f"snapshot canvas.{quoted}", f"table {label}", ("invalid",))
        add(f"sync canvas.{quoted} --to duckdb:///replica.duckdb", f"table {label}",
            ("invalid",), replica="duckdb")
    add("schema canvas.no_such_table", "unknown table", ("no_such_table",))
    since = "--since 2026-11-01T00:00:00Z"
    add("incremental canvas.accounts --since 2026-11-01T00:00:00", "--since naive",
        ("--since", "time zone"))
    add("incremental canvas.accounts --since yesterday", "--since malformed",
        ("--since", "ISO 8601"))
    add("incremental canvas.accounts --since 2099-01-01T00:00:00Z", "--since in the future",
        ("since",))
    add(f"incremental canvas.accounts {since} --until 2026-10-01T00:00:00Z",
        "--until before --since", ("until", "since"))
    add(f"incremental canvas.accounts {since} --until 2026-11-02", "--until naive",
        ("--until", "time zone"))
    for label, url, words in (
            ("oracle dialect", f"oracle://scott:{DB_PASSWORD}@h/db", ("'oracle'",)),
            ("sqlite dialect", "sqlite:///x.db", ("'sqlite'",)),
            ("malformed", "'not a url'", ("malformed",)),
            ("duckdb path is a folder", "duckdb:///.", ("directory",)),
            ("postgresql unreachable", f"postgresql://u:{DB_PASSWORD}@127.0.0.1:1/db",
             ("cannot reach",))):
        add(f"sync canvas.accounts --to {url}", f"connection string {label}", words,
            replica="duckdb")
    add("schema canvas.enrollment_terms", "schema with unknown keyword",
        ("canvas.enrollment_terms", "name"))
    add("snapshot canvas.course_sections", "schema with free-form object",
        ("canvas.course_sections", "name"), allow=("cache/*",))
    add("sync canvas.enrollment_terms --to duckdb:///replica.duckdb",
        "schema with unknown keyword", ("canvas.enrollment_terms", "name"), replica="duckdb")
    for fmt in ("jsonl", "parquet"):
        add(f"snapshot canvas.users --format {fmt} --eager -o users", f"invalid UTF-8 ({fmt})",
            ("canvas.users", "UTF"), allow=("cache/*",))
    add("sync canvas.users --to duckdb:///replica.duckdb", "invalid UTF-8",
        ("canvas.users", "UTF-8"), replica="duckdb")
    add("tick -3", "negative steps", ("tick",))
    add("emulator --scale -1", "--scale negative", ("--scale",))
    return cases


def _run_magics(indexed: list[tuple[int, _Case]], env: _Env) -> list[BadInputResult]:
    """All magic cases in one real IPython shell (a subprocess), each in its own folder."""
    folders, befores, docs = [], [], []
    for index, case in indexed:
        folder = _case_dir(env, index, case)
        folders.append(folder)
        befores.append(_fingerprint(case, folder, env))
        docs.append({"cwd": str(folder), "source": "%dap " + case.argv[0]})
    spec = env.workdir / "magic-cases.json"
    spec.write_text(json.dumps(docs))
    answers = env.workdir / "magic-results.json"
    proc = subprocess.run([sys.executable, "-c", _MAGIC_DRIVER, str(spec), str(answers)],
                          capture_output=True, text=True, env=_env(env), cwd=env.workdir,
                          timeout=600)
    if proc.returncode != 0 or not answers.exists():
        raise RuntimeError(f"the IPython driver failed: {proc.stderr[-2000:]}")
    results = []
    for (_index, case), folder, before, got in zip(
            indexed, folders, befores, json.loads(answers.read_text()), strict=True):
        error = got["error"]
        code = 0 if error is None else 2 if error == "UsageError" else 1
        # What a notebook shows in red is stderr; a traceback may go to stdout.
        shown = got["stderr"].strip()
        if "Traceback" in got["stdout"] or "\n---->" in got["stdout"]:
            shown += "\nTraceback (in the output)"
        results.append(_finish(case, env, folder, before, code, got["message"] or shown, shown))
    return results


# -- set-up -------------------------------------------------------------------------------------

def _base_replica(env_: _Env, emu: Any) -> None:
    """A DuckDB replica with canvas.accounts, enrollment_terms and course_sections (clean)."""
    from dapframe.api import DapClient
    from dapframe.config import DapConfig, Secret
    from dapframe.sync import sync_tables

    config = DapConfig(base_url=emu.base_url, client_id=CLIENT_ID,
                       client_secret=Secret(CLIENT_SECRET))
    tables = ["accounts", "enrollment_terms", "course_sections"]
    with DapClient(config, rate_limits=None) as client:
        for target in [f"duckdb:///{env_.base_duckdb}", *([env_.pg_url] if env_.pg_url else [])]:
            reports = sync_tables(target, "canvas", tables, command="initdb", client=client)
            failed = [r.error for r in reports if not r.ok]
            if failed:
                raise RuntimeError(f"could not build the base replica: {failed}")


def _make_hostile(emu: Any) -> None:
    """Schema and data patches the hostile cases meet (other tables stay clean)."""
    faults = emu.faults
    faults.patch_schema("canvas.enrollment_terms", "name",
                        {"type": "string", "maxLength": 255, "x-pii": True})
    faults.patch_schema("canvas.course_sections", "name", {"type": "object"})
    faults.patch_data("canvas.submissions", "score", float("nan"))
    faults.patch_data("canvas.submissions", "published_score", float("inf"))
    faults.patch_data("canvas.submissions", "student_entered_score", float("-inf"))
    faults.patch_data("canvas.courses", "name", LONG_TEXT)
    faults.patch_data("canvas.users", "name", INVALID_UTF8)


@contextmanager
def _emulator() -> Iterator[Any]:
    from dapframe.emulator import Emulator

    with Emulator(seed=0, scale=1, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                  rows_per_part=500, job_seconds=0, steps=2) as emu:
        yield emu


def run_matrix(workdir: Path, pg_url: str | None = None, *, workers: int = 6,
               include: Callable[[BadInputResult | _Case], bool] | None = None,
               ) -> list[BadInputResult]:
    """Run every bad-input case; return one :class:`BadInputResult` per case.

    Parameters
    ----------
    workdir : Path
        A scratch folder (one sub-folder per case is made under it).
    pg_url : str, optional
        A connection string to an empty PostgreSQL database: adds the PostgreSQL cases, which
        are skipped without it.
    workers : int
        CLI processes run at once.
    include : callable, optional
        Keep only the cases for which it returns true (a quick filter when debugging).
    """
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "a-file.txt").write_text("not a folder\n")
    with _emulator() as emu:
        env = _Env(workdir=workdir, base_url=emu.base_url, base_duckdb=workdir / "base.duckdb",
                   pg_url=pg_url, emulator=emu)
        if env.base_duckdb.exists():
            env.base_duckdb.unlink()
        _base_replica(env, emu)
        _make_hostile(emu)
        cli = _cli_cases(env)
        pg = _pg_cases(env)
        magics = _magic_cases(env)
        if include is not None:
            cli, pg, magics = ([c for c in group if include(c)] for group in (cli, pg, magics))
        indexed = list(enumerate([*cli, *pg, *magics]))
        cli_ix = indexed[:len(cli)]
        pg_ix = indexed[len(cli):len(cli) + len(pg)]
        magic_ix = indexed[len(cli) + len(pg):]
        results: dict[int, BadInputResult] = {}
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # The magics (one process, many cases) and PostgreSQL (one database, cases in turn)
            # run beside the CLI cases.
            magic_future = pool.submit(_run_magics, magic_ix, env) if magic_ix else None
            pg_future = pool.submit(lambda: [_run_cli(i, c, env) for i, c in pg_ix])
            futures = {i: pool.submit(_run_cli, i, c, env) for i, c in cli_ix}
            for i, f in futures.items():
                results[i] = f.result()
            for (i, _), r in zip(pg_ix, pg_future.result(), strict=True):
                results[i] = r
            if magic_future is not None:
                for (i, _), r in zip(magic_ix, magic_future.result(), strict=True):
                    results[i] = r
    return [results[i] for i in sorted(results)]


if __name__ == "__main__":  # a quick look: python -m tests.matrix_bad_input [DIR] [PG_URL]
    import tempfile

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    pg_arg = sys.argv[2] if len(sys.argv) > 2 else None
    server = None
    if pg_arg == "pg":  # start a throwaway PostgreSQL (tests/_servers.py)
        from tests._servers import find_pg_bin, start_pg

        bin_dir = find_pg_bin()
        assert bin_dir is not None, "no PostgreSQL binaries"
        server = start_pg(bin_dir)
        pg_arg = server.url(server.create_database())
    try:
        found = run_matrix(target, pg_arg)
    finally:
        if server is not None:
            from tests._servers import stop_pg

            stop_pg(server)
    for r in found:
        if not r.clear or r.changed:
            print(f"UNCLEAR {r.command:12} {r.case:45} exit {r.exit_code} "
                  f"{r.seconds:.1f}s: {r.why}\n"
                  f"    {r.message[:300]!r}")
    for r in sorted(found, key=lambda r: -r.seconds)[:8]:
        print(f"slow: {r.command} {r.case} {r.seconds:.1f}s")
    bad = sum(not r.clear or r.changed for r in found)
    print(f"{len(found)} bad inputs tried, {bad} unclear or changed")
