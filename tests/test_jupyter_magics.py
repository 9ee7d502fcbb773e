"""The %dap magics, driven through a real in-process IPython shell (run_line_magic, run_cell)."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from dapframe.emulator import Emulator
from dapframe.jupyter import (
    Dap,
    DapResult,
    DapSession,
    SchemaView,
    SyncView,
    TableList,
    bind_transformer,
    read_dotenv,
)
from dapframe.jupyter._display import iso
from dapframe.result import QueryResult

from .conftest import CLIENT_ID, CLIENT_SECRET


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "dapframe")
    yield ip
    ip.run_line_magic("unload_ext", "dapframe")


@pytest.fixture
def ip(shell: InteractiveShell, module_emulator: Emulator, tmp_path: Path,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """The shell with a fresh session pointed at the test emulator through DAP_* variables."""
    monkeypatch.setenv("DAPFRAME_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    magics = _magics(shell)
    magics.session = DapSession(environ={"DAP_API_URL": module_emulator.base_url,
                                         "DAP_CLIENT_ID": CLIENT_ID,
                                         "DAP_CLIENT_SECRET": CLIENT_SECRET})
    yield shell
    magics.session.close()
    # %config writes into the shell's config too, which a reloaded extension would read.
    shell.config.pop("Dap", None)
    for name, value in magics.trait_defaults("format", "output", "display_limit", "naming",
                                             "rate_limits", "duckdb_connection", "env_file",
                                             "directory").items():
        setattr(magics, name, value)


def _magics(shell: InteractiveShell) -> Dap:
    magics = shell._dapframe_magics  # type: ignore[attr-defined]
    assert isinstance(magics, Dap)
    return magics


def dap(ip: InteractiveShell, line: str) -> Any:
    return ip.run_line_magic("dap", line)


def cell(ip: InteractiveShell, source: str) -> tuple[Any, str, str]:
    """Run a cell the way a notebook does; return (ExecutionResult, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        result = ip.run_cell(source)
    return result, out.getvalue(), err.getvalue()


def usage_error(ip: InteractiveShell, line: str) -> str:
    with pytest.raises(UsageError) as info:
        dap(ip, line)
    return str(info.value)


# -- loading ---------------------------------------------------------------------------------

def test_load_ext_registers_line_and_cell_magic(shell: InteractiveShell) -> None:
    magics = shell.magics_manager.magics
    assert "dap" in magics["line"] and "dap" in magics["cell"]
    shell.run_line_magic("load_ext", "dapframe")  # twice: a no-op, same session
    assert shell.magics_manager.magics["line"]["dap"].__self__ is _magics(shell)


def test_import_dapframe_stays_light() -> None:
    code = ("import sys, dapframe; assert callable(dapframe.load_ipython_extension); "
            "print(sorted(m for m in sys.modules if m.startswith(('IPython', 'ipywidgets', "
            "'dapframe.jupyter', 'polars'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# -- commands --------------------------------------------------------------------------------

def test_tables_and_schema(ip: InteractiveShell) -> None:
    tables = dap(ip, "tables canvas")
    assert isinstance(tables, TableList) and "accounts" in tables
    assert "<li>submissions</li>" in tables._repr_html_()
    schema = dap(ip, "schema canvas.accounts")
    assert isinstance(schema, SchemaView)
    html = schema._repr_html_()
    assert "schema v1" in html and "<td>workflow_state</td>" in html and "enum (" in html


def test_snapshot_shows_job_facts_and_rows(ip: InteractiveShell,
                                           module_emulator: Emulator) -> None:
    shown = dap(ip, "snapshot canvas.accounts")
    at = iso(module_emulator.dataset.clock)
    assert isinstance(shown, DapResult)
    assert shown.rows == shown.to_polars().height > 0
    html = shown._repr_html_()
    assert 'class="dapframe-result"' in html and "<b>canvas.accounts</b>" in html
    for fact in ("snapshot", f"at {at}", "parts 1 parquet", "schema v1", f"next since {at}"):
        assert fact in html
    assert "<table" in html  # the preview rows
    assert "canvas.accounts snapshot" in repr(shown)


def test_bindings_like_jupysql(ip: InteractiveShell) -> None:
    result, _, err = cell(ip, "df1 << %dap snapshot canvas.accounts")
    assert result.success, err
    assert isinstance(ip.user_ns["df1"], pl.LazyFrame)
    dap(ip, "df2 << snapshot canvas.accounts")
    dap(ip, "snapshot canvas.accounts -o df3 --eager")
    dap(ip, "-o df4 snapshot canvas.accounts --result")
    assert isinstance(ip.user_ns["df2"], pl.LazyFrame)
    assert isinstance(ip.user_ns["df3"], pl.DataFrame)
    assert isinstance(ip.user_ns["df4"], QueryResult)
    result, _, err = cell(ip, "shown = %dap snapshot canvas.accounts")
    assert result.success, err
    assert isinstance(ip.user_ns["shown"], DapResult)
    assert ip.user_ns["df3"].equals(ip.user_ns["shown"].to_polars())
    # An indented binding inside Python code works too.
    result, _, err = cell(ip, "if True:\n    df5 << %dap snapshot canvas.accounts\n")
    assert result.success, err
    assert isinstance(ip.user_ns["df5"], pl.LazyFrame)


def test_incremental_continues_from_the_last_watermark(ip: InteractiveShell,
                                                       module_emulator: Emulator) -> None:
    base = dap(ip, "snapshot canvas.enrollments --result -o base")
    assert base is None  # bound: shown, not returned
    snap: QueryResult = ip.user_ns["base"]
    step = module_emulator.dataset.step
    tick = dap(ip, "tick 2")  # through HTTP: this emulator was not started by the magics
    assert f"step {step + 2}" in repr(tick)
    changes = dap(ip, "incremental canvas.enrollments")
    assert changes.result.since == snap.at
    assert changes.result.until == module_emulator.dataset.clock
    assert changes.rows == sum(changes.actions.values()) > 0
    assert "updated" in changes._repr_html_()
    # The next one starts where this one ended.
    assert dap(ip, "incremental canvas.enrollments").result.since == changes.result.until
    # Explicit window.
    window = dap(ip, "incremental canvas.enrollments --since 2026-11-01T00:00:00Z "
                     "--until 2026-11-01T01:00:00+00:00")
    assert window.result.until.isoformat() == "2026-11-01T01:00:00+00:00"
    now = changes.result.apply_to(snap.scan()).collect()
    assert now.height == dap(ip, "snapshot canvas.enrollments --eager").rows


def test_duckdb_views(ip: InteractiveShell, tmp_path: Path) -> None:
    shown = dap(ip, "snapshot canvas.courses --duckdb")
    assert shown.view == "courses"
    assert duckdb.sql("select count(*) from courses").fetchall() == [(shown.rows,)]
    # A connection held by a notebook variable.
    ip.user_ns["con"] = con = duckdb.connect()
    ip.run_line_magic("config", "Dap.duckdb_connection = 'con'")
    dap(ip, "snapshot canvas.courses --view c2")
    assert con.sql("select count(*) from c2").fetchall() == [(shown.rows,)]
    # A database file the magics open.
    ip.run_line_magic("config", f"Dap.duckdb_connection = '{tmp_path / 'x.duckdb'}'")
    dap(ip, "snapshot canvas.courses --duckdb")
    assert _magics(ip)._duckdb().sql("select count(*) from courses").fetchall() == [
        (shown.rows,)]
    ip.run_line_magic("config", "Dap.duckdb_connection = 'missing_con'")
    assert "no DuckDB connection has that name" in usage_error(ip, "snapshot canvas.courses "
                                                                   "--duckdb")


def test_cell_magic_runs_several_commands(ip: InteractiveShell) -> None:
    result, _, err = cell(ip, "%%dap\n# two tables\nusers << snapshot canvas.users\n\n"
                                "tables canvas\n")
    assert result.success, err
    assert isinstance(result.result, TableList)
    assert isinstance(ip.user_ns["users"], pl.LazyFrame)
    result, _, err = cell(ip, "%%dap last <<\nsnapshot canvas.users\nsnapshot canvas.courses\n")
    assert result.success, err
    assert "course_code" in ip.user_ns["last"].collect_schema().names()
    result, _, err = cell(ip, "%%dap\n\n# nothing\n")
    assert isinstance(result.error_in_exec, UsageError) and "empty" in err
    result, _, err = cell(ip, "%%dap snapshot canvas.users\nsnapshot canvas.courses\n")
    assert isinstance(result.error_in_exec, UsageError)
    result, _, err = cell(ip, "%%dap\nsnapshot canvas.users\nbogus\nsnapshot canvas.courses\n")
    assert isinstance(result.error_in_exec, UsageError) and "bogus" in err


def test_config_options(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", 'Dap.format = "csv"')
    ip.run_line_magic("config", 'Dap.output = "eager"')
    ip.run_line_magic("config", "Dap.display_limit = 2")
    ip.run_line_magic("config", 'Dap.naming = "dotted"')
    dap(ip, "snapshot canvas.accounts -o acc")
    shown = dap(ip, "snapshot canvas.accounts")
    assert shown.result.format == "csv"
    assert isinstance(ip.user_ns["acc"], pl.DataFrame)
    assert "key.id" in ip.user_ns["acc"].columns
    assert shown.preview is not None and shown.preview.height == 2
    assert "first 2 of" in shown._repr_html_()
    ip.run_line_magic("config", "Dap.display_limit = 0")
    assert "<table" not in dap(ip, "snapshot canvas.accounts")._repr_html_()
    # A bad value is refused by traitlets; the option keeps its value.
    cell(ip, '%config Dap.format = "xml"')
    assert _magics(ip).format == "csv"
    # %config Dap lists the options.
    _, out, _ = cell(ip, "%config Dap")
    assert "Dap.output" in out and "Dap.rate_limits" in out


def test_rate_limits_follow_the_setting(ip: InteractiveShell, module_emulator: Emulator) -> None:
    magics = _magics(ip)
    assert magics._client().rate_limits is None  # auto: a loopback API is an emulator
    ip.run_line_magic("config", 'Dap.rate_limits = "on"')
    assert magics._client().rate_limits is not None
    session = DapSession(environ={"DAP_API_URL": "https://api-gateway.instructure.com",
                                  "DAP_CLIENT_ID": "x", "DAP_CLIENT_SECRET": "y"})
    config = session.credentials(None).config
    assert session.wants_rate_limits(config, "auto") is True
    assert session.wants_rate_limits(config, "off") is False


def test_emulator_started_by_the_magics(ip: InteractiveShell) -> None:
    magics = _magics(ip)
    magics.session = DapSession(environ={})
    started = dap(ip, "emulator --steps 1 --job-seconds 0")
    assert "rate limits: off" in repr(started)
    emu = magics.session.emulator
    assert emu is not None
    assert magics._client().rate_limits is None
    assert magics._client().config.base_url == emu.base_url
    assert len(dap(ip, "tables canvas")) == 9
    assert "step 3" in repr(dap(ip, "tick 2"))
    assert emu.dataset.step == 3
    assert "stopped" in repr(dap(ip, "emulator --stop"))
    assert magics.session.emulator is None
    assert "no DAP credentials" in usage_error(ip, "tables canvas")


def test_status_shows_no_secret(ip: InteractiveShell) -> None:
    dap(ip, "snapshot canvas.accounts")
    status = dap(ip, "status")
    text = repr(status) + status._repr_html_()
    assert "from the environment" in text and "next since canvas.accounts" in text
    assert CLIENT_SECRET not in text


def test_dotenv_file(ip: InteractiveShell, module_emulator: Emulator, tmp_path: Path) -> None:
    magics = _magics(ip)
    magics.session = DapSession(environ={})
    env = tmp_path / "creds.env"
    env.write_text(f"# DAP credentials\nexport DAP_API_URL={module_emulator.base_url}\n"
                   f"DAP_CLIENT_ID='{CLIENT_ID}'\nDAP_CLIENT_SECRET=\"{CLIENT_SECRET}\"\n")
    ip.run_line_magic("config", f"Dap.env_file = '{env}'")
    assert "accounts" in dap(ip, "tables canvas")
    assert "from the .env file" in repr(dap(ip, "status"))
    # The default, .env in the working directory.
    ip.run_line_magic("config", "Dap.env_file = '.env'")
    env.rename(tmp_path / ".env")
    assert "accounts" in dap(ip, "tables canvas")


def test_bind_transformer_rewrites_only_that_shape() -> None:
    lines = ["x = 1 << 3\n", "  df << %dap snapshot canvas.accounts --eager\n",
             "df << %dapper x\n", "s = 'a << %dap b'\n"]
    assert bind_transformer(lines) == [
        "x = 1 << 3\n", "  %dap df << snapshot canvas.accounts --eager\n",
        "df << %dapper x\n", "s = 'a << %dap b'\n"]


def test_read_dotenv(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\n  # comment\n\nexport B = two words  # trailing\nC='x # y'\n"
                   'D="q\\"uote"\nnot a pair\nA=3\n')
    assert read_dotenv(env) == {"A": "3", "B": "two words", "C": "x # y", "D": 'q"uote'}
    assert read_dotenv(tmp_path / "absent") == {}


def test_help(ip: InteractiveShell) -> None:
    _, out, _ = cell(ip, "%dap help")
    assert "tables NAMESPACE" in out and "NAME << %dap" in out
    _, out, _ = cell(ip, "%dap")
    assert "tables NAMESPACE" in out
    result, out, _ = cell(ip, "%dap snapshot --help")
    assert result.success and "--duckdb" in out and "--format" in out


def test_sync_into_duckdb(ip: InteractiveShell, tmp_path: Path) -> None:
    if importlib.util.find_spec("dapframe.sync") is None:
        pytest.skip("the sync engine is not in this build")  # pragma: no cover
    target = f"duckdb:///{tmp_path / 'replica.duckdb'}"
    view = dap(ip, f"sync canvas.accounts canvas.courses --to {target}")
    assert isinstance(view, SyncView)
    assert [r.command for r in view.reports] == ["initdb", "initdb"]
    assert "<td>canvas.accounts</td>" in view._repr_html_()
    again = dap(ip, f"sync canvas.accounts --to {target}")
    assert again.reports[0].command == "syncdb"
    con = duckdb.connect(str(tmp_path / "replica.duckdb"), read_only=True)
    assert con.sql("select count(*) from canvas.accounts").fetchall()[0][0] > 0
    con.close()


def test_sync_when_the_engine_is_missing(ip: InteractiveShell,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dapframe.sync", None)  # import fails as if absent
    message = usage_error(ip, "sync canvas.accounts --to duckdb:///x.duckdb")
    assert "not available in this dapframe build" in message


# -- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "expected"), [
    ("bogus", "unknown %dap command 'bogus'"),
    ("snapshot", "the following arguments are required: table"),
    ("snapshot accounts", "has no namespace"),
    ("snapshot canvas.acc-ounts", "invalid table name"),
    ("snapshot canvas.nope", "nope"),
    ("tables nope", "nope"),
    ("snapshot canvas.accounts --format xml", "invalid choice: 'xml'"),
    ("snapshot canvas.accounts --frobnicate", "unrecognized arguments: --frobnicate"),
    ("snapshot canvas.accounts --eager --lazy", "not allowed with argument"),
    ("snapshot canvas.accounts --view 'a b'", "not a valid view name"),
    ("incremental canvas.courses", "no --since and no earlier result of canvas.courses"),
    ("incremental canvas.accounts --since 2026-11-01", "has no time zone"),
    ("incremental canvas.accounts --since yesterday", "not an ISO 8601 timestamp"),
    ("incremental canvas.accounts --since 2026-11-02T00:00:00Z --until 2026-11-01T00:00:00Z",
     "is before since"),
    ("snapshot 'canvas.accounts", "cannot read the command"),
    ("tick 0", "at least 1"),
    ("emulator --scale 0", "must be positive"),
])
def test_bad_input_is_one_line(ip: InteractiveShell, line: str, expected: str) -> None:
    message = usage_error(ip, line)
    assert expected in message
    assert "\n" not in message
    result, out, err = cell(ip, f"%dap {line}")
    assert isinstance(result.error_in_exec, UsageError)
    assert "Traceback" not in out + err
    assert err.strip().startswith("UsageError:") and err.strip().count("\n") == 0


def test_wrong_credentials_never_echo_the_secret(ip: InteractiveShell,
                                                 module_emulator: Emulator) -> None:
    wrong = "W4ong-secret-value-123"
    _magics(ip).session = DapSession(environ={"DAP_API_URL": module_emulator.base_url,
                                              "DAP_CLIENT_ID": CLIENT_ID,
                                              "DAP_CLIENT_SECRET": wrong})
    result, out, err = cell(ip, "%dap tables canvas")
    assert isinstance(result.error_in_exec, UsageError)
    assert "login refused" in err and wrong not in out + err


def test_no_credentials(ip: InteractiveShell) -> None:
    _magics(ip).session = DapSession(environ={})
    message = usage_error(ip, "snapshot canvas.accounts")
    assert "%dap login" in message and "DAP_CLIENT_ID" in message and "%dap emulator" in message
    message = usage_error(ip, "tick")
    assert "no DAP credentials" in message


def test_tick_against_a_real_api_is_refused(ip: InteractiveShell) -> None:
    # Anything that is not the emulator answers /emulator/tick with an error.
    _magics(ip).session = DapSession(environ={"DAP_API_URL": "http://127.0.0.1:9",
                                              "DAP_CLIENT_ID": "x", "DAP_CLIENT_SECRET": "y"})
    assert "cannot reach" in usage_error(ip, "tick")


def test_unload_stops_the_emulator() -> None:
    shell = InteractiveShell.instance()
    magics = _magics(shell)
    saved = magics.session
    magics.session = DapSession(environ={})
    dap(shell, "emulator --job-seconds 0")
    emu = magics.session.emulator
    assert emu is not None
    shell.run_line_magic("unload_ext", "dapframe")
    assert "dap" not in shell.magics_manager.magics["line"]
    assert emu._thread is None  # closed
    shell.run_line_magic("load_ext", "dapframe")
    _magics(shell).session = saved
