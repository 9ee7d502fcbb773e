"""The ``dapframe`` command: the official ``dap`` client's commands and options, and more.

Exit codes follow ``dap``: 0 success, 2 usage error, 5 operational failure. Errors are one
line on stderr (``error: ...``) with no traceback; ``--loglevel debug`` logs the traceback.
No telemetry of any kind: ``--no-tracking`` and ``DAP_TRACKING`` are accepted and ignored.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from dapframe.config import DapConfig, Secret
from dapframe.errors import DapError, UsageError
from dapframe.wire import FORMATS

log = logging.getLogger("dapframe.cli")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class _Globals:
    base_url: str | None
    client_id: str | None
    client_secret: str | None
    non_interactive: bool


class _Group(click.Group):
    """The command group: click's usage errors as one ``error:`` line too (exit 2).

    click prints a usage banner, a hint and the error on four lines; dapframe's promise is
    one line that names the problem and where to look for the fix.
    """

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else (prog_name or "dapframe")
            message = exc.format_message().rstrip(".")
            _fail(f"{message} (see '{where} --help')", exc.exit_code)
        except click.Abort:
            _fail("cancelled", 125)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn every failure into one line on stderr and the official exit code."""
    try:
        yield
    except DapError as exc:
        log.debug("command failed", exc_info=True)
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("cancelled", 125)
    except OSError as exc:
        log.debug("command failed", exc_info=True)
        _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 5)


def _config(g: _Globals) -> DapConfig:
    return DapConfig.from_env(base_url=g.base_url, client_id=g.client_id,
                              client_secret=g.client_secret)


def parse_cli_timestamp(value: str, option: str) -> datetime:
    """Parse ``--since``/``--until``; a value without a time zone is refused, not guessed."""
    try:
        dt = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise UsageError(
            f"{option} {value!r} is not an ISO 8601 timestamp: use e.g. 2026-11-01T00:00:00Z"
        ) from None
    if dt.tzinfo is None:
        example = value.strip() if "T" in value or " " in value.strip() else (
            f"{value.strip()}T00:00:00")
        raise UsageError(
            f"{option} {value!r} has no time zone: add Z for UTC (e.g. {example}Z) or an "
            "offset such as +02:00"
        )
    return dt


def check_namespace(namespace: str) -> str:
    """Refuse a namespace that could leave a URL path, a folder or an SQL identifier."""
    from dapframe.result import parse_table_name

    return parse_table_name(f"{namespace}.x")[0]


def table_names(namespace: str, table: str) -> list[str]:
    """``--table`` as a list of checked names (``["all"]`` stays as it is)."""
    from dapframe.result import parse_table_name

    check_namespace(namespace)
    names = [t.strip() for t in table.split(",") if t.strip()]
    if not names:
        raise UsageError("--table is empty: give a table name, a comma list, or 'all'")
    if names == ["all"]:
        return names
    return [parse_table_name(n, namespace)[1] for n in names]


def _resolve_tables(client: Any, namespace: str, table: str) -> list[str]:
    names = table_names(namespace, table)
    if names == ["all"]:
        return list(client.list_tables(namespace))
    return names


@click.group(cls=_Group,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="dapframe", prog_name="dapframe")
@click.option("--base-url", envvar="DAP_API_URL", default=None, metavar="URL",
              help="DAP API host [env DAP_API_URL; default https://api-gateway.instructure.com].")
@click.option("--client-id", envvar="DAP_CLIENT_ID", default=None,
              help="OAuth client id [env DAP_CLIENT_ID].")
@click.option("--client-secret", envvar="DAP_CLIENT_SECRET", default=None, show_envvar=False,
              help="OAuth client secret [env DAP_CLIENT_SECRET]; prefer the variable.")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"],
              case_sensitive=False), default="info", show_default=True)
@click.option("--logfile", type=click.Path(dir_okay=False), default=None,
              help="Append log lines to this file.")
@click.option("--logformat", type=click.Choice(["plain", "json"]), default="plain",
              show_default=True)
@click.option("--no-log-to-console", is_flag=True, help="Do not log to stderr.")
@click.option("--non-interactive", is_flag=True, help="Plain output for scripts.")
@click.option("--no-tracking", is_flag=True,
              help="Accepted for compatibility with dap; dapframe sends no telemetry at all.")
@click.option("--console-theme", envvar="DAP_CONSOLE_THEME", default="dark", hidden=True)
@click.pass_context
def cli(ctx: click.Context, base_url: str | None, client_id: str | None,
        client_secret: str | None, loglevel: str, logfile: str | None, logformat: str,
        no_log_to_console: bool, non_interactive: bool, no_tracking: bool,
        console_theme: str) -> None:
    """dapframe: the DAP Query API (Canvas Data 2) from the command line.

    Same commands, options and DAP_* variables as the official `dap` client.
    """
    from dapframe.cli._logging import setup_logging

    secret = client_secret or os.environ.get("DAP_CLIENT_SECRET") or ""
    # Interactive use shows progress, not INFO lines (dap logs them only to --logfile): the
    # console gets warnings, unless --non-interactive or an explicit --loglevel asks for more.
    chosen = ctx.get_parameter_source("loglevel") not in (None,
                                                          click.core.ParameterSource.DEFAULT)
    console_level = loglevel if (non_interactive or chosen) else "warning"
    try:
        setup_logging(level=loglevel, logfile=logfile, logformat=logformat,
                      to_console=not no_log_to_console, secrets=[secret],
                      console_level=console_level)
    except OSError as exc:
        raise click.BadParameter(f"cannot open {logfile!r}: {exc.strerror}; choose a file in "
                                 "an existing, writable folder", param_hint="'--logfile'"
                                 ) from None
    ctx.obj = _Globals(base_url=base_url, client_id=client_id, client_secret=client_secret,
                       non_interactive=non_interactive)


def _namespace_option(f: F) -> F:
    return click.option("--namespace", required=True, help="Namespace, e.g. canvas.")(f)


def _table_option(f: F) -> F:
    return click.option("--table", required=True,
                        help="A table name, a comma-separated list, or 'all'.")(f)


@cli.command("list")
@_namespace_option
@click.pass_obj
def list_cmd(g: _Globals, namespace: str) -> None:
    """List the tables of a namespace, one per line."""
    from dapframe.api import DapClient

    with _errors():
        check_namespace(namespace)
    with _errors(), DapClient(_config(g)) as client:
        for name in client.list_tables(namespace):
            click.echo(name)


@cli.command("schema")
@_namespace_option
@_table_option
@click.option("--output-directory", default="downloads", show_default=True,
              type=click.Path(file_okay=False))
@click.pass_obj
def schema_cmd(g: _Globals, namespace: str, table: str, output_directory: str) -> None:
    """Save table schemas as <table>_schema_version_<N>.json (as dap does)."""
    from dapframe.api import DapClient

    with _errors():
        table_names(namespace, table)
        out = Path(output_directory)
        _check_writable(out)
    with _errors(), DapClient(_config(g)) as client:
        for name in _resolve_tables(client, namespace, table):
            resp = client.get_schema(namespace, name)
            path = out / f"{name}_schema_version_{resp.version}.json"
            tmp = path.with_name(path.name + ".part")
            tmp.write_text(json.dumps({"schema": resp.schema, "version": resp.version}, indent=4),
                           encoding="utf-8")
            tmp.replace(path)
            click.echo(str(path))


def _query_command(g: _Globals, namespace: str, table: str, fmt: str, output_directory: str,
                   since: str | None, until: str | None, *, decompress: bool = False,
                   consolidate: bool = False, concurrency: int = 4) -> None:
    import asyncio

    from dapframe.result import QuerySpec

    with _errors():
        since_dt = parse_cli_timestamp(since, "--since") if since is not None else None
        until_dt = parse_cli_timestamp(until, "--until") if until is not None else None
        if since_dt and until_dt and until_dt < since_dt:
            raise UsageError(f"--until {until} is before --since {since}: swap them")
        if decompress and fmt == "parquet":
            raise UsageError("--decompress does not apply to parquet (its compression is "
                             "internal): drop --decompress or choose another --format")
        check_concurrency(concurrency)
        names = table_names(namespace, table)
        out = Path(output_directory)
        _check_writable(out)
        config = _config(g)
        failures = asyncio.run(_run_tables(
            config, namespace, names, out, concurrency=concurrency, interactive=not
            g.non_interactive, consolidate=consolidate,
            make_spec=lambda name: QuerySpec(namespace, name, format=fmt, since=since_dt,
                                             until=until_dt),
            decompress=decompress))
    if failures:
        for name, message in failures:
            click.echo(f"error: {namespace}.{name}: {message}", err=True)
        sys.exit(5)


def check_concurrency(concurrency: int) -> None:
    """Refuse ``--concurrency`` below 1."""
    if concurrency < 1:
        raise UsageError(f"--concurrency {concurrency} must be at least 1: use e.g. "
                         "--concurrency 4")


def _check_writable(out: Path, option: str = "--output-directory") -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {option} {str(out)!r}: {exc.strerror}; "
                         "choose a writable folder") from None
    # os.access says yes to root even where writing fails (read-only mounts, sysfs): probe.
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=".dapframe-probe-")
    except OSError as exc:
        raise UsageError(f"{option} {str(out)!r} is not writable ({exc.strerror}): choose a "
                         "writable folder") from None
    os.close(fd)
    os.unlink(probe)


async def _run_tables(config: DapConfig, namespace: str, names: list[str], out: Path, *,
                      concurrency: int, interactive: bool, consolidate: bool,
                      make_spec: Callable[[str], Any], decompress: bool,
                      ) -> list[tuple[str, str]]:
    """Fetch several tables at once; the client's rate limiter keeps job creation in bounds.

    Returns (table, message) for every table that failed; the others are complete.
    """
    import asyncio

    from dapframe.api import AsyncDapClient
    from dapframe.cli._progress import TableProgress
    from dapframe.errors import AuthenticationError, TransportError
    from dapframe.export import consolidate as write_consolidated
    from dapframe.result import afetch

    failures: list[tuple[str, str]] = []
    async with AsyncDapClient(config) as client:
        if names == ["all"]:
            names = await client.list_tables(namespace)
        gate = asyncio.Semaphore(concurrency)
        with TableProgress(interactive) as bars:

            async def one(name: str) -> None:
                async with gate:
                    spec = make_spec(name)
                    result = await afetch(client, spec, directory=out, progress=bars.table(
                        spec.name), decompress=decompress)
                    if consolidate:
                        target = out / f"{spec.name}.parquet"
                        await asyncio.to_thread(write_consolidated, result, target)
                        click.echo(str(target))
                    for path in result.files:
                        click.echo(str(path))
                    bars.done(spec.name, "done")

            outcomes = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, AuthenticationError | TransportError):
                raise outcome  # the same for every table: one line is enough
            if isinstance(outcome, DapError):
                failures.append((name, str(outcome)))
            elif isinstance(outcome, Exception):
                log.debug("table %s failed", name, exc_info=outcome)
                failures.append((name, f"{type(outcome).__name__}: {outcome}"))
            elif isinstance(outcome, BaseException):
                raise outcome
    return failures


_format_option = click.option("--format", "fmt", type=click.Choice(list(FORMATS)),
                              default="jsonl", show_default=True)
_outdir_option = click.option("--output-directory", default="downloads", show_default=True,
                              type=click.Path(file_okay=False))


def _extra_options(f: F) -> F:
    f = click.option("--concurrency", default=4, show_default=True, type=int,
                     help="Tables fetched at once (job creation stays within the API's "
                          "rate limit).")(f)
    f = click.option("--consolidate", is_flag=True,
                     help="Also write one typed Parquet file per table: "
                          "<output-directory>/<namespace>.<table>.parquet.")(f)
    f = click.option("--decompress", is_flag=True,
                     help="Store the parts decompressed (not for parquet).")(f)
    return f


@cli.command("snapshot")
@_namespace_option
@_table_option
@_format_option
@_outdir_option
@_extra_options
@click.pass_obj
def snapshot_cmd(g: _Globals, namespace: str, table: str, fmt: str, output_directory: str,
                 decompress: bool, consolidate: bool, concurrency: int) -> None:
    """Download a snapshot into <output-directory>/job_<id>/."""
    _query_command(g, namespace, table, fmt, output_directory, None, None,
                   decompress=decompress, consolidate=consolidate, concurrency=concurrency)


@cli.command("incremental")
@_namespace_option
@_table_option
@_format_option
@_outdir_option
@click.option("--since", required=True, help="Start (exclusive), e.g. 2026-11-01T00:00:00Z.")
@click.option("--until", default=None, help="End (inclusive); default: the latest data.")
@_extra_options
@click.pass_obj
def incremental_cmd(g: _Globals, namespace: str, table: str, fmt: str, output_directory: str,
                    since: str, until: str | None, decompress: bool, consolidate: bool,
                    concurrency: int) -> None:
    """Download the changes in (since, until] into <output-directory>/job_<id>/."""
    _query_command(g, namespace, table, fmt, output_directory, since, until,
                   decompress=decompress, consolidate=consolidate, concurrency=concurrency)


@cli.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind (loopback by default).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--scale", default=1.0, show_default=True, type=float)
@click.option("--steps", default=0, show_default=True, type=click.IntRange(min=0),
              help="Change steps to commit at start.")
@click.option("--rows-per-part", default=100_000, show_default=True,
              type=click.IntRange(min=1))
@click.option("--job-seconds", default=0.2, show_default=True, type=click.FloatRange(min=0),
              help="How long each query job takes.")
@click.option("--rate-limits", is_flag=True, help="Enforce the API's per-endpoint rate limits.")
@click.option("--latency", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds added to every API answer (a network round trip).")
@click.option("--object-bandwidth", default=None, type=float, metavar="BYTES_PER_S",
              help="Throughput of each object download stream (default: unlimited).")
@click.option("--client-id", "emu_client_id", default=None,
              help="Accepted client id (default printed at start).")
@click.option("--client-secret", "emu_client_secret", default=None,
              help="Accepted client secret (default printed at start).")
def emulator_cmd(host: str, port: int, seed: int, scale: float, steps: int, rows_per_part: int,
                 job_seconds: float, rate_limits: bool, latency: float,
                 object_bandwidth: float | None, emu_client_id: str | None,
                 emu_client_secret: str | None) -> None:
    """Serve a local DAP Query API with synthetic Canvas data."""
    from dapframe.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator

    if scale <= 0:
        _fail(f"--scale {scale} must be positive: use e.g. --scale 1", 2)
    try:
        emu = Emulator(seed=seed, scale=scale, host=host, port=port, steps=steps,
                       rows_per_part=rows_per_part, job_seconds=job_seconds,
                       latency=latency, object_bandwidth=object_bandwidth,
                       client_id=emu_client_id or DEFAULT_CLIENT_ID,
                       client_secret=emu_client_secret or DEFAULT_CLIENT_SECRET)
    except OSError as exc:
        # A name that does not resolve has no strerror; say what the resolver said.
        reason = exc.strerror or str(exc)
        _fail(f"cannot listen on {host}:{port}: {reason}; choose another --host or --port", 5)
    emu.faults.rate_limits = rate_limits
    # These are the emulator's own throwaway credentials, printed so users can paste them.
    click.echo(f"DAP API emulator listening on {emu.base_url}")
    click.echo(f"  DAP_API_URL={emu.base_url}")
    click.echo(f"  DAP_CLIENT_ID={emu.client_id}")
    click.echo(f"  DAP_CLIENT_SECRET={emu.client_secret}")
    click.echo(f"  seed={seed} scale={scale} step={emu.dataset.step} "
               f"clock={emu.dataset.clock.isoformat()}", nl=True)
    sys.stdout.flush()
    try:
        emu.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emu.close()


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    cli.main(args=argv, prog_name="dapframe")


@cli.command("demo")
@click.option("--scale", default=1.0, show_default=True, type=float)
@click.option("--output-directory", default="demo-output", show_default=True,
              type=click.Path(file_okay=False))
def demo_cmd(scale: float, output_directory: str) -> None:
    """Start the embedded emulator, then list and describe its tables (no credentials needed)."""
    from dapframe.api import DapClient
    from dapframe.emulator import Emulator

    if scale <= 0:
        _fail(f"--scale {scale} must be positive: use e.g. --scale 1", 2)
    with _errors():
        _check_writable(Path(output_directory))
    with _errors(), Emulator(scale=scale) as emu:
        click.echo(f"emulator: {emu.base_url} (seed 0, scale {scale}, step {emu.dataset.step})")
        config = DapConfig(base_url=emu.base_url, client_id=emu.client_id,
                           client_secret=Secret(emu.client_secret))
        out = Path(output_directory)
        out.mkdir(parents=True, exist_ok=True)
        with DapClient(config) as client:
            for namespace in ("canvas", "canvas_logs"):
                for name in client.list_tables(namespace):
                    resp = client.get_schema(namespace, name)
                    value = resp.schema["properties"]["value"]
                    key = resp.schema["properties"]["key"]
                    cols = list(key["properties"]) + list(value["properties"])
                    path = out / f"{name}_schema_version_{resp.version}.json"
                    path.write_text(json.dumps({"schema": resp.schema, "version": resp.version},
                                               indent=4), encoding="utf-8")
                    click.echo(f"{namespace}.{name:<18} v{resp.version}  {len(cols):>3} columns  "
                               f"{value.get('title', '')[:60]}")
        click.echo(f"schemas written to {out}/")


# -- sync (dapframe/cli/_sync.py holds the logic) ------------------------------------------------
from dapframe.cli import _sync  # noqa: E402 - registered after the group and its helpers


@cli.command("initdb")
@_sync.sync_options
@click.pass_obj
def initdb_cmd(g: _Globals, **options: Any) -> None:
    """Snapshot tables into a database (official layout; one transaction per table)."""
    _sync.sync_cmd(g, "initdb", **options)


@cli.command("syncdb")
@_sync.sync_options
@click.pass_obj
def syncdb_cmd(g: _Globals, **options: Any) -> None:
    """Apply the changes since the last initdb/syncdb (one transaction per table)."""
    _sync.sync_cmd(g, "syncdb", **options)


@cli.command("dropdb")
@_sync.db_options
def dropdb_cmd(**options: Any) -> None:
    """Drop replica tables and their table_sync rows."""
    _sync.dropdb_cmd(**options)


@cli.command("listdb")
@_sync.listdb_options
@click.pass_obj
def listdb_cmd(g: _Globals, **options: Any) -> None:
    """List the namespace's tables and their local replicas."""
    _sync.listdb_cmd(g, **options)


@cli.command("demo-sync")
@click.option("--scale", default=1.0, show_default=True, type=float)
@click.option("--database", default="dapframe-demo.duckdb", show_default=True,
              type=click.Path(dir_okay=False), help="The DuckDB file to create or update.")
@click.option("--concurrency", default=4, show_default=True, type=int)
def demo_sync_cmd(**options: Any) -> None:
    """Start the embedded emulator and sync every canvas table into a local DuckDB file."""
    _sync.run_demo(**options)
