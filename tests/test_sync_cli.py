"""``dapframe initdb | syncdb | dropdb | listdb`` as real processes, and bad input: one clear line,
the right exit code, and nothing changed."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from dapframe.emulator import Emulator
from dapframe.errors import ConfigError
from dapframe.sync import dialect_for, parse_connection_string, read_table, table_layout
from tests._servers import PgServer
from tests.conftest import CLIENT_ID, CLIENT_SECRET
from tests.sync_support import assert_replica_equals
from tests.test_cli import assert_one_line_error, dapframe


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(seed=0, scale=1, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                  rows_per_part=500, job_seconds=0) as e:
        yield e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_default_is_a_local_duckdb_file(emu: Emulator, tmp_path: Path) -> None:
    """No connection string: a DuckDB file in the working folder, and the command says so."""
    proc = dapframe("initdb", "--namespace", "canvas", "--table", "accounts,courses", emu=emu,
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "dapframe.duckdb"
    assert str(path) in proc.stdout and path.exists()
    assert "canvas.accounts: initdb 5 inserted" in proc.stdout
    emu.tick()
    proc = dapframe("syncdb", "--namespace", "canvas", "--table", "accounts,courses", emu=emu,
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "canvas.courses: syncdb" in proc.stdout
    for table in ("accounts", "courses"):
        assert_replica_equals(f"duckdb:///{path}", emu.dataset, "canvas", table)
    listed = dapframe("--non-interactive", "listdb", "--namespace", "canvas", emu=emu,
                      cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["accounts"]["command"] == "syncdb" and rows["accounts"]["records"] == 5
    assert rows["users"]["command"] == "initdb" and rows["users"]["timestamp"] is None
    dropped = dapframe("dropdb", "--namespace", "canvas", "--table", "all", cwd=tmp_path)
    assert dropped.returncode == 0, dropped.stderr
    assert "canvas.accounts: dropped" in dropped.stdout
    listed = dapframe("--non-interactive", "listdb", "--namespace", "canvas",
                      "--omit-not-replicated", cwd=tmp_path)
    assert json.loads(listed.stdout) == []


def test_connection_string_from_the_environment(emu: Emulator, tmp_path: Path,
                                                pg_database: str) -> None:
    proc = dapframe("initdb", "--namespace", "canvas_logs", "--table", "web_logs", emu=emu,
                    cwd=tmp_path, extra_env={"DAP_CONNECTION_STRING": pg_database})
    assert proc.returncode == 0, proc.stderr
    assert "using the local DuckDB" not in proc.stdout
    assert not (tmp_path / "dapframe.duckdb").exists()
    assert_replica_equals(pg_database, emu.dataset, "canvas_logs", "web_logs")


def test_some_tables_fail_exit_5(emu: Emulator, tmp_path: Path) -> None:
    target = f"duckdb:///{tmp_path}/r.duckdb"
    proc = dapframe("initdb", "--namespace", "canvas", "--table", "accounts,nope,users",
                    "--connection-string", target, emu=emu)
    assert_one_line_error(proc, 5, "canvas.nope")
    assert read_table(target, "canvas.users").height == 200
    again = dapframe("initdb", "--namespace", "canvas", "--table", "accounts",
                     "--connection-string", target, emu=emu)
    assert_one_line_error(again, 5, "already initialised", "syncdb")


def test_rate_limit_is_respected(tmp_path: Path) -> None:
    """The emulator enforces 5 job creations a minute: five tables at once meet no 429."""
    with Emulator(client_id="i", client_secret="s-secret", job_seconds=0) as e:
        e.faults.rate_limits = True
        proc = dapframe("initdb", "--namespace", "canvas", "--table",
                        "accounts,users,courses,enrollments,pseudonyms", "--connection-string",
                        f"duckdb:///{tmp_path}/r.duckdb", emu=e)
        assert proc.returncode == 0, proc.stderr
        assert e.faults.state()["rate_limited_answers"] == 0


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("connection_string", "words"), [
    ("not a connection string", ["malformed connection string"]),
    ("postgresql://user:pw@host:notaport/db", ["malformed connection string"]),
    ("oracle://scott:tiger@host/db", ["'oracle' is not supported"]),
    ("mysql://u:p@localhost", ["names no database"]),
    ("mssql://u:p@localhost/db?encrypt=1", ["unknown connection string parameter 'encrypt'"]),
    ("postgresql://u:p@localhost/db?sslmode=bogus&x=1", ["unknown connection string parameter"]),
    ("postgresql://u:p@localhost/db?ssl=sometimes", ["unsupported ssl mode 'sometimes'"]),
    ("duckdb:relative.duckdb", ["malformed connection string"]),
    ("duckdb:relative.duckdb?x=1", ["malformed connection string"]),
    ("duckdb:///x.duckdb?threads=4", ["takes no parameters"]),
])
def test_bad_connection_strings(emu: Emulator, tmp_path: Path, connection_string: str,
                                words: list[str]) -> None:
    for command in ("initdb", "syncdb", "dropdb"):
        proc = dapframe(command, "--namespace", "canvas", "--table", "accounts",
                        "--connection-string", connection_string, emu=emu, cwd=tmp_path)
        assert_one_line_error(proc, 5, *words)
        assert ":p@" not in proc.stderr and "tiger" not in proc.stderr  # passwords stay hidden
    assert list(tmp_path.iterdir()) == []


def test_parse_connection_string() -> None:
    info = parse_connection_string("postgresql://us%40er:p%40ss%3Aw%2Frd@db.example:6543/dap"
                                   "?ssl=require")
    assert (info.username, info.password.reveal(), info.host, info.port, info.database) == (
        "us@er", "p@ss:w/rd", "db.example", 6543, "dap")
    assert info.params["sslmode"] == "require"
    assert "p@ss" not in info.display and "p%40ss" not in info.display
    assert info.libpq_uri().startswith("postgresql://us%40er:p%40ss%3Aw%2Frd@db.example:6543/dap")
    duck = parse_connection_string("duckdb:////abs/x.duckdb")
    assert duck.path == Path("/abs/x.duckdb")
    assert parse_connection_string(None).path == Path.cwd() / "dapframe.duckdb"
    with pytest.raises(ConfigError, match="given more than once"):
        parse_connection_string("postgresql://h/db?ssl=require&ssl=disable")


def test_unreachable_server(emu: Emulator, tmp_path: Path) -> None:
    port = _free_port()
    proc = dapframe("initdb", "--namespace", "canvas", "--table", "accounts,users",
                    "--connection-string", f"postgresql://u:secret-pw@127.0.0.1:{port}/db",
                    emu=emu, cwd=tmp_path)
    assert_one_line_error(proc, 5, f"cannot reach PostgreSQL at 127.0.0.1:{port}")
    assert "secret-pw" not in proc.stderr


def test_wrong_password(emu: Emulator, tmp_path: Path, pg_server: PgServer,
                        pg_database: str) -> None:
    name = pg_database.rsplit("/", 1)[1]
    proc = dapframe("initdb", "--namespace", "canvas", "--table", "accounts",
                    "--connection-string", pg_server.url(name, password="wrong-pw"), emu=emu)
    assert_one_line_error(proc, 5, "refused the user name or password")
    assert "wrong-pw" not in proc.stderr
    assert pg_server.query(name, "SELECT nspname FROM pg_namespace WHERE nspname IN "
                                 "('canvas', 'instructure_dap')") == []


def test_unknown_database(emu: Emulator, pg_server: PgServer) -> None:
    proc = dapframe("initdb", "--namespace", "canvas", "--table", "accounts",
                    "--connection-string", pg_server.url("no_such_db"), emu=emu)
    assert_one_line_error(proc, 5, "'no_such_db' does not exist")


def test_uninitialised_table_changes_nothing(emu: Emulator, tmp_path: Path,
                                            pg_server: PgServer, pg_database: str) -> None:
    name = pg_database.rsplit("/", 1)[1]
    proc = dapframe("syncdb", "--namespace", "canvas", "--table", "accounts",
                    "--connection-string", pg_database, emu=emu)
    assert_one_line_error(proc, 5, "canvas.accounts is not initialised", "run initdb first")
    assert pg_server.query(name, "SELECT nspname FROM pg_namespace WHERE nspname IN "
                                 "('canvas', 'instructure_dap')") == []
    duck = tmp_path / "none.duckdb"
    proc = dapframe("syncdb", "--namespace", "canvas", "--table", "accounts",
                    "--connection-string", f"duckdb:///{duck}", emu=emu)
    assert_one_line_error(proc, 5, "does not exist", "run initdb first")
    assert not duck.exists()
    proc = dapframe("dropdb", "--namespace", "canvas", "--table", "accounts",
                    "--connection-string", pg_database)
    assert_one_line_error(proc, 5, "not initialised")


@pytest.mark.parametrize("args", [
    ("--namespace", "canvas", "--table", 'accounts"; DROP TABLE canvas.users; --'),
    ("--namespace", 'canvas"; DROP SCHEMA canvas CASCADE; --', "--table", "accounts"),
    ("--namespace", "canvas", "--table", "accounts,users; DELETE FROM x"),
    ("--namespace", "canvas", "--table", "../../etc/passwd"),
])
def test_injection_in_names_is_refused(emu: Emulator, tmp_path: Path, args: tuple[str, ...]
                                       ) -> None:
    target = f"duckdb:///{tmp_path}/r.duckdb"
    first = dapframe("initdb", "--namespace", "canvas", "--table", "users",
                     "--connection-string", target, emu=emu)
    assert first.returncode == 0, first.stderr
    for command in ("initdb", "syncdb", "dropdb"):
        proc = dapframe(command, *args, "--connection-string", target, emu=emu)
        assert_one_line_error(proc, 2, "invalid")
    assert read_table(target, "canvas.users").height == 200


# -- hostile names coming from the API's schema: quoted, never pasted ---------------------------

HOSTILE_COLUMN = 'we"ird; DROP TABLE canvas.users; --'
HOSTILE_ENUM = ("it's", 'say "hi"', "back\\slash", "__dap_unspecified__")


def _hostile_doc() -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "key": {"type": "object", "properties": {"id": {"type": "integer",
                                                            "format": "int64"}},
                    "additionalProperties": False, "required": ["id"]},
            "value": {"type": "object", "properties": {
                HOSTILE_COLUMN: {"type": "string", "description": "it's \"quoted\"; --"},
                "state": {"type": "string", "enum": list(HOSTILE_ENUM)},
            }, "additionalProperties": False, "required": []},
        },
        "additionalProperties": False,
        "required": ["key"],
    }


def _snapshot_batch(layout: object) -> pa.RecordBatch:
    schema = layout.read_schema.arrow_schema(incremental=False)  # type: ignore[attr-defined]
    ts = datetime(2026, 11, 1, tzinfo=UTC)
    return pa.RecordBatch.from_arrays([
        pa.array([ts, ts, ts], schema.field("meta.ts").type),
        pa.array([1, 2, 3], pa.int64()),
        pa.array(["'; DROP TABLE x; --", None, 'a"b']),
        pa.array(list(HOSTILE_ENUM[:3])),
    ], schema=schema)


@pytest.mark.parametrize("dialect", ["duckdb", "postgresql"])
def test_hostile_identifiers_from_the_schema(dialect: str, tmp_path: Path,
                                             request: pytest.FixtureRequest) -> None:
    target = (f"duckdb:///{tmp_path}/h.duckdb" if dialect == "duckdb"
              else request.getfixturevalue("pg_database"))
    layout = table_layout("canvas", "hostile", _hostile_doc(), 1)
    db = dialect_for(parse_connection_string(target))
    try:
        with db.session() as session:
            session.ensure_bookkeeping("canvas")
            counts = session.initdb(layout, iter([_snapshot_batch(layout)]),
                                    datetime(2026, 11, 1, tzinfo=UTC))
            assert counts.inserted == 3
    finally:
        db.close()
    frame = read_table(target, "canvas.hostile")
    assert frame.columns == ["id", HOSTILE_COLUMN, "state"]
    assert frame[HOSTILE_COLUMN].to_list() == ["'; DROP TABLE x; --", None, 'a"b']
    assert frame["state"].cast(str).to_list() == list(HOSTILE_ENUM[:3])
    assert frame.schema["state"].categories.to_list() == list(HOSTILE_ENUM)
