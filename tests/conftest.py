"""Shared fixtures: an emulator on a free loopback port, and the official client in its own venv."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dapframe.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
OFFICIAL_REQUIREMENTS = ROOT / "tests" / "official" / "requirements.txt"

CLIENT_ID = "us-east-1#test-client"
CLIENT_SECRET = "s3cr3t-Test-Secret-0123456789"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh emulator (scale 1, small parts so results span several objects)."""
    with Emulator(seed=0, scale=1, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                  rows_per_part=500, job_seconds=0.1) as emu:
        yield emu


@pytest.fixture(scope="module")
def module_emulator() -> Iterator[Emulator]:
    """One emulator for a whole module, with two change steps committed at start."""
    with Emulator(seed=0, scale=1, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                  rows_per_part=500, job_seconds=0, steps=2) as emu:
        yield emu


def _uv() -> str:
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(uv).exists():
        pytest.fail("uv is not on PATH: run the tests through scripts/test.sh, which installs it")
    return uv


def _pinned_venv(requirements: Path, name: str) -> Path:
    """A venv built from exact pins under .cache (rebuilt when the pins change); its ``dap``."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    venv = ROOT / ".cache" / f"{name}-{digest}"
    marker = venv / ".installed"  # written last: a half-made venv is rebuilt, not trusted
    if not marker.exists():
        uv = _uv()
        shutil.rmtree(venv, ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
                       check=True, env=env)
        subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                        "-r", str(requirements)], check=True, env=env)
        marker.write_text("ok\n")
    return venv / "bin" / "dap"


@pytest.fixture(scope="session")
def official_dap() -> Path:
    """The official ``dap`` command, installed from exact pins into its own venv (cached)."""
    return _pinned_venv(OFFICIAL_REQUIREMENTS, "dap-official")


# Real database servers (PostgreSQL) and the official client with its postgresql extra.
from tests._servers import pg_database, pg_server  # noqa: E402, F401
from tests.sync_support import sync_client, sync_emu, sync_target  # noqa: E402, F401

OFFICIAL_PG_REQUIREMENTS = ROOT / "tests" / "official" / "requirements-postgresql.txt"


@pytest.fixture(scope="session")
def official_dap_pg() -> Path:
    """The official ``dap`` with its postgresql extra (asyncpg), exact pins, own venv (cached)."""
    return _pinned_venv(OFFICIAL_PG_REQUIREMENTS, "dap-official-pg")

# MariaDB (Debian's mariadb-server) and the official client with its mysql extra.
from tests._servers import mysql_database, mysql_server  # noqa: E402, F401

OFFICIAL_MYSQL_REQUIREMENTS = ROOT / "tests" / "official" / "requirements-mysql.txt"


@pytest.fixture(scope="session")
def official_dap_mysql() -> Path:
    """The official ``dap`` with its mysql extra (aiomysql, PyMySQL), exact pins, own venv."""
    return _pinned_venv(OFFICIAL_MYSQL_REQUIREMENTS, "dap-official-mysql")


# SQL Server: no server can be installed here (no Docker engine, no package), so the live suite
# runs only against a server the developer names; otherwise it is skipped, and
# DAPFRAME_REQUIRE_SERVERS=1 (CI) deliberately does NOT turn this skip into a failure.
MSSQL_SKIP = ("set DAPFRAME_MSSQL_URL=mssql://user:pw@host:1433/master to run the live SQL "
              "Server suite")


@pytest.fixture
def mssql_database() -> Iterator[str]:
    """A fresh database (UTF-8 collation) per test on ``DAPFRAME_MSSQL_URL``; its string."""
    import uuid

    url = os.environ.get("DAPFRAME_MSSQL_URL", "").strip()
    if not url:
        pytest.skip(MSSQL_SKIP)
    import pymssql
    from sqlalchemy.engine import make_url

    from dapframe.sync import parse_connection_string
    from dapframe.sync._mssql import connect_kwargs

    kwargs = connect_kwargs(parse_connection_string(url))
    kwargs["autocommit"] = True  # CREATE/DROP DATABASE cannot run inside a transaction
    name = f"dapframe_test_{uuid.uuid4().hex[:12]}"
    with pymssql.connect(**kwargs) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE [{name}] COLLATE Latin1_General_100_CI_AS_SC_UTF8")
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with pymssql.connect(**kwargs) as conn, conn.cursor() as cur:
            cur.execute(f"IF DB_ID(N'{name}') IS NOT NULL BEGIN ALTER DATABASE [{name}] SET "
                        f"SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{name}] END")
