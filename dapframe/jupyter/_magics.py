"""The ``%dap`` line and ``%%dap`` cell magics: one command router, like jupysql's ``%sql``.

Commands::

    %dap tables canvas
    %dap schema canvas.accounts
    %dap snapshot canvas.accounts [--format parquet] [--duckdb [--view NAME]] [-o NAME]
    %dap incremental canvas.accounts [--since 2026-11-01T00:00:00Z] [--until ...]
    %dap sync canvas.accounts --to duckdb:///canvas.duckdb
    %dap login | logout | status | emulator | tick [N] | help

``NAME << %dap snapshot ...``, ``%dap NAME << snapshot ...`` and ``-o NAME`` bind the rows
(a LazyFrame, a DataFrame or the QueryResult, per ``%config Dap.output``) to ``NAME``.
Errors made by the user, or reported by the API, are raised as IPython's ``UsageError``:
one red line, no traceback.
"""

from __future__ import annotations

import argparse
import re
import shlex
import time
from collections.abc import Callable
from datetime import datetime
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Enum, Int, List, Unicode

from dapframe.errors import DapError, UsageError
from dapframe.result import NAMINGS, QuerySpec, cache_dir, parse_table_name
from dapframe.wire import FORMATS

from ._display import OUTPUTS, DapResult, Message, SchemaView, SyncView, TableList, iso
from ._session import NO_CREDENTIALS_HINT, RATE_LIMIT_MODES, DapSession

if TYPE_CHECKING:
    import duckdb

    from ._widgets import DownloadBar, LoginForm

__all__ = ["Dap", "bind_transformer", "parse_timestamp"]

_BIND = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*<<\s*(.*)$", re.S)
_BIND_MAGIC_LINE = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)\s*<<\s*%dap\b(.*)$", re.S)

HELP = """\
%dap COMMAND [options]            (%dap COMMAND --help for a command's options)

  tables NAMESPACE                list the tables, e.g. %dap tables canvas
  schema TABLE                    the columns and types, e.g. %dap schema canvas.accounts
  snapshot TABLE                  the table now; --format, --duckdb [--view V], -o NAME
  incremental TABLE               changes since --since (default: the last result's watermark)
  sync TABLE... --to URL          keep a database replica up to date (duckdb:///file.duckdb)
  login / logout                  credential form / forget its credentials
  emulator [--stop]               start a local DAP API emulator in this kernel and use it
  tick [N]                        let the emulator commit N change steps
  status                          where the session points, its settings and watermarks

Bind the rows: NAME << %dap snapshot canvas.accounts   (or -o NAME)
Several commands: a %%dap cell, one per line.   Options: %config Dap
"""


class _Help(Exception):
    """A command's --help was shown."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as UsageError instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            raise UsageError(f"{self.prog}: {message.strip()}")
        raise _Help()


def parse_timestamp(value: str, option: str) -> datetime:
    """Parse ``--since``/``--until``: ISO 8601 with a time zone (a missing zone is refused).

    Raises
    ------
    UsageError
        Not ISO 8601, or no time zone.
    """
    try:
        dt = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise UsageError(f"{option} {value!r} is not an ISO 8601 timestamp: use e.g. "
                         "2026-11-01T00:00:00Z") from None
    if dt.tzinfo is None:
        example = value.strip() if "T" in value or " " in value.strip() \
            else f"{value.strip()}T00:00:00"
        raise UsageError(f"{option} {value!r} has no time zone: add Z for UTC "
                         f"(e.g. {example}Z) or an offset such as +02:00")
    return dt


def bind_transformer(lines: list[str]) -> list[str]:
    """IPython input transformer: ``df << %dap snapshot t`` -> ``%dap df << snapshot t``.

    ``df << %dap ...`` is not Python, so IPython would refuse it before any magic runs; this
    rewrites exactly that shape (a whole line) and leaves every other line alone.
    """
    out = []
    for line in lines:
        match = _BIND_MAGIC_LINE.match(line)
        out.append(f"{match.group(1)}%dap {match.group(2)} <<{match.group(3)}"
                   if match else line)
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@magics_class
class Dap(Magics):
    """The ``%dap`` magics; the traits below are the ``%config Dap.*`` options.

    Load with ``%load_ext dapframe``. See the module docstring for the commands.
    """

    format = Enum(list(FORMATS), default_value="parquet",
                  help="Transfer format of snapshot and incremental queries.").tag(config=True)
    output = Enum(list(OUTPUTS), default_value="lazy",
                  help="What NAME << %dap snapshot binds: 'lazy' (polars.LazyFrame), 'eager' "
                       "(polars.DataFrame) or 'result' (dapframe.QueryResult).").tag(config=True)
    display_limit = Int(10, help="Rows shown under the job facts (0: facts only).").tag(
        config=True)
    naming = Enum(list(NAMINGS), default_value="plain",
                  help="Column names: 'plain' (id, name) or 'dotted' (key.id, value.name)."
                  ).tag(config=True)
    rate_limits = Enum(list(RATE_LIMIT_MODES), default_value="auto",
                       help="Keep within the API's documented rate limits: 'auto' (on for a "
                            "real API, off for a local emulator), 'on' or 'off'.").tag(config=True)
    duckdb_connection = Unicode(
        "", help="Where --duckdb creates views: '' for DuckDB's default connection (the one "
                 "duckdb.sql() uses), the name of a notebook variable holding a DuckDB "
                 "connection, or a database file path.").tag(config=True)
    progress = Bool(True, help="Show a progress bar while downloading.").tag(config=True)
    env_file = Unicode(".env", help="A .env file with DAP_API_URL / DAP_CLIENT_ID / "
                                    "DAP_CLIENT_SECRET ('' to ignore).").tag(config=True)
    namespaces = List(Unicode(), default_value=["canvas", "canvas_logs"],
                      help="Namespaces whose tables the login form lists.").tag(config=True)
    directory = Unicode("", help="Where downloads go ('' for the dapframe cache: "
                                 "$DAPFRAME_CACHE_DIR or ~/.cache/dapframe).").tag(config=True)
    deadline = Int(0, help="Seconds to wait for a query job (0: no limit).").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.session = DapSession()
        self._duckdb_cons: dict[str, duckdb.DuckDBPyConnection] = {}
        self._commands: dict[str, Callable[[list[str], str | None], Any]] = {
            "tables": self._tables, "schema": self._schema, "snapshot": self._snapshot,
            "incremental": self._incremental, "sync": self._sync, "login": self._login,
            "logout": self._logout, "status": self._status, "emulator": self._emulator,
            "tick": self._tick, "help": self._help,
        }

    # -- entry points --------------------------------------------------------------------
    @line_cell_magic
    def dap(self, line: str, cell: str | None = None) -> Any:
        """Canvas Data 2 (the DAP Query API) in the notebook: ``%dap COMMAND [options]``.

        Commands: ``tables NAMESPACE``, ``schema TABLE``, ``snapshot TABLE``, ``incremental
        TABLE [--since TS] [--until TS]``, ``sync TABLE... --to URL``, ``login``, ``logout``,
        ``status``, ``emulator [--stop]``, ``tick [N]``, ``help``; ``%dap COMMAND --help`` for
        a command's options. ``NAME << %dap snapshot TABLE`` (or ``-o NAME``) binds the rows;
        a ``%%dap`` cell runs one command per line. Options: ``%config Dap``.
        """
        try:
            if cell is None:
                return self.run(line)
            return self.run_cell(line, cell)
        except (DapError, UsageError) as exc:
            raise IPythonUsageError(_one_line(exc)) from None

    def run(self, line: str) -> Any:
        """Run one command line (``[NAME <<] COMMAND args``); returns what it shows."""
        bind, argv = self._split(line)
        # jupysql-style "-o NAME" before the command is the same as after it.
        while len(argv) >= 2 and argv[0] in ("-o", "--output"):
            bind, argv = argv[1], argv[2:]
        if not argv:
            return self._help([], bind)
        name, rest = argv[0], argv[1:]
        handler = self._commands.get(name)
        if handler is None:
            raise UsageError(f"unknown %dap command {name!r}: choose one of "
                             f"{', '.join(self._commands)} (%dap help)")
        try:
            return handler(rest, bind)
        except _Help:
            return None

    def run_cell(self, line: str, cell: str) -> Any:
        """Run each line of a ``%%dap`` cell; ``%%dap NAME <<`` binds the last result."""
        bind = None
        if line.strip():
            match = _BIND.match(line)
            if not match or match.group(2).strip():
                raise UsageError("%%dap takes nothing on its first line but an optional "
                                 "'NAME <<': put each command on its own line below")
            bind = match.group(1)
        commands = [c.strip() for c in cell.splitlines()]
        commands = [c.removeprefix("%dap ").strip() for c in commands
                    if c and not c.startswith("#")]
        if not commands:
            raise UsageError("the %%dap cell is empty: write one command per line, e.g. "
                             "snapshot canvas.accounts")
        from IPython.display import display

        value: Any = None
        for i, command in enumerate(commands):
            last = i == len(commands) - 1
            if last and bind:
                command = f"{bind} << {command}"
            value = self.run(command)
            if not last and value is not None:
                display(value)
        return value

    def _split(self, line: str) -> tuple[str | None, list[str]]:
        bind = None
        match = _BIND.match(line)
        if match:
            bind, line = match.group(1), match.group(2)
        try:
            argv = shlex.split(line, comments=True)
        except ValueError as exc:
            raise UsageError(f"cannot read the command {line.strip()!r}: {exc}") from None
        return bind, argv

    def _bind(self, value: Any, bind: str | None) -> Any:
        """Put ``value`` (a result's frame) into the notebook as ``bind``; show the value."""
        if bind is None:
            return value
        if not bind.isidentifier():
            raise UsageError(f"cannot bind to {bind!r}: not a Python name")
        from IPython.display import display

        if isinstance(value, DapResult):
            value.bound_to = bind
            self._user_ns[bind] = value.frame
        else:
            self._user_ns[bind] = value
        display(value)
        return None

    @property
    def _user_ns(self) -> dict[str, Any]:
        assert self.shell is not None, "the %dap magics need a shell"
        return self.shell.user_ns

    @staticmethod
    def _parser(command: str, description: str) -> _Parser:
        return _Parser(prog=f"%dap {command}", description=description, add_help=True,
                       allow_abbrev=False)

    def _client(self) -> Any:
        return self.session.client(rate_limits=self.rate_limits,
                                   env_file=self.env_file or None)

    def _in_kernel(self) -> bool:
        # Widgets draw only in a Jupyter kernel; a terminal IPython has no comm channel.
        return getattr(self.shell, "kernel", None) is not None

    # -- commands ------------------------------------------------------------------------
    def _help(self, argv: list[str], bind: str | None) -> None:
        print(HELP, end="")

    def _tables(self, argv: list[str], bind: str | None) -> Any:
        p = self._parser("tables", "List the tables of a namespace.")
        p.add_argument("namespace", help="e.g. canvas, canvas_logs")
        p.add_argument("-o", "--output", metavar="NAME", help="bind the list to NAME")
        args = p.parse_args(argv)
        # A name that could leave the URL path is refused here, not sent.
        namespace = parse_table_name(f"{args.namespace}.x")[0]
        names = self._client().list_tables(namespace)
        return self._bind(TableList(args.namespace, names), args.output or bind)

    def _schema(self, argv: list[str], bind: str | None) -> Any:
        from dapframe.schema import TableSchema

        p = self._parser("schema", "Show a table's columns and types.")
        p.add_argument("table", help="e.g. canvas.accounts")
        p.add_argument("-o", "--output", metavar="NAME", help="bind the schema view to NAME")
        args = p.parse_args(argv)
        ns, table = parse_table_name(args.table)
        answer = self._client().get_schema(ns, table)
        view = SchemaView(TableSchema.from_json(ns, table, answer.schema, answer.version))
        return self._bind(view, args.output or bind)

    def _query_parser(self, command: str, description: str) -> _Parser:
        p = self._parser(command, description)
        p.add_argument("table", help="e.g. canvas.accounts")
        p.add_argument("--format", choices=FORMATS, default=None,
                       help=f"transfer format (default: %%config Dap.format, now {self.format})")
        p.add_argument("--naming", choices=NAMINGS, default=None, help="column naming")
        p.add_argument("--duckdb", action="store_true",
                       help="also create a DuckDB view over the rows (%%config "
                            "Dap.duckdb_connection says where)")
        p.add_argument("--view", metavar="NAME", help="name of the DuckDB view (default: the "
                                                       "table name); implies --duckdb")
        p.add_argument("-o", "--output", metavar="NAME", help="bind the rows to NAME")
        kind = p.add_mutually_exclusive_group()
        kind.add_argument("--lazy", dest="kind", action="store_const", const="lazy",
                          help="bind a polars.LazyFrame")
        kind.add_argument("--eager", dest="kind", action="store_const", const="eager",
                          help="bind a polars.DataFrame")
        kind.add_argument("--result", dest="kind", action="store_const", const="result",
                          help="bind the dapframe.QueryResult")
        return p

    def _snapshot(self, argv: list[str], bind: str | None) -> Any:
        p = self._query_parser("snapshot", "Fetch a table as it is now.")
        args = p.parse_args(argv)
        ns, table = parse_table_name(args.table)
        spec = QuerySpec(ns, table, format=args.format or self.format)
        return self._query(spec, args, bind)

    def _incremental(self, argv: list[str], bind: str | None) -> Any:
        p = self._query_parser("incremental", "Fetch the changes of a table in (since, until].")
        p.add_argument("--since", help="ISO 8601 with a zone, e.g. 2026-11-01T00:00:00Z "
                                        "(default: the watermark of the last result of this "
                                        "table in this session)")
        p.add_argument("--until", help="end of the window (default: now)")
        args = p.parse_args(argv)
        ns, table = parse_table_name(args.table)
        name = f"{ns}.{table}"
        if args.since:
            since = parse_timestamp(args.since, "--since")
        elif name in self.session.watermarks:
            since = self.session.watermarks[name]
        else:
            raise UsageError(f"no --since and no earlier result of {name} in this session: "
                             f"run %dap snapshot {name} first, or give --since "
                             "2026-11-01T00:00:00Z")
        until = parse_timestamp(args.until, "--until") if args.until else None
        spec = QuerySpec(ns, table, format=args.format or self.format, since=since,
                         until=until)
        return self._query(spec, args, bind)

    def _query(self, spec: QuerySpec, args: argparse.Namespace, bind: str | None) -> Any:
        client = self._client()
        bar = self._progress_bar(spec.name)
        started = time.monotonic()
        directory = (Path(self.directory) if self.directory else cache_dir()) / spec.name
        try:
            result = client.fetch(spec, directory=directory, naming=args.naming or self.naming,
                                  deadline=self.deadline or None, progress=bar)
        except BaseException:
            if bar is not None:
                bar.finish(failed=True)
            raise
        if bar is not None:
            bar.finish()
        if result.watermark is not None:
            self.session.watermarks[spec.name] = result.watermark
        view = None
        if args.duckdb or args.view:
            view = args.view or spec.table
            if not view.isidentifier():
                raise UsageError(f"--view {view!r} is not a valid view name: use letters, "
                                 "digits and underscores")
            result.to_duckdb(self._duckdb(), name=view)
        shown = DapResult(result, output=args.kind or self.output, limit=self.display_limit,
                          elapsed=time.monotonic() - started, view=view)
        return self._bind(shown, args.output or bind)

    def _progress_bar(self, label: str, tables_total: int = 1) -> DownloadBar | None:
        if not (self.progress and self._in_kernel()):
            return None
        from IPython.display import display

        from ._widgets import DownloadBar

        bar = DownloadBar(label, tables_total=tables_total)
        display(bar)
        return bar

    def _duckdb(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        target = self.duckdb_connection.strip()
        if not target:
            return duckdb.default_connection()
        if target.isidentifier():
            con = self._user_ns.get(target)
            if not isinstance(con, duckdb.DuckDBPyConnection):
                raise UsageError(f"Dap.duckdb_connection is {target!r}, but no DuckDB "
                                 f"connection has that name in the notebook: run "
                                 f"{target} = duckdb.connect() first")
            return con
        if target not in self._duckdb_cons:
            self._duckdb_cons[target] = duckdb.connect(target)
        return self._duckdb_cons[target]

    def _sync(self, argv: list[str], bind: str | None) -> Any:
        p = self._parser("sync", "Create or bring up to date a database replica of tables "
                                 "(initdb for a new table, syncdb after).")
        p.add_argument("tables", nargs="+", help="e.g. canvas.accounts canvas.users")
        p.add_argument("--to", dest="target", metavar="URL",
                       help="connection string, e.g. duckdb:///canvas.duckdb or "
                            "postgresql://user@host/db (default: DAP_CONNECTION_STRING, else "
                            "a DuckDB file in the working folder)")
        p.add_argument("-o", "--output", metavar="NAME", help="bind the reports to NAME")
        args = p.parse_args(argv)
        by_namespace: dict[str, list[str]] = {}
        for name in args.tables:
            ns, table = parse_table_name(name)
            by_namespace.setdefault(ns, []).append(table)
        sync_tables = _sync_api()
        client = self._client()
        total = sum(len(t) for t in by_namespace.values())
        bar = self._progress_bar("sync", tables_total=total)
        reports: list[Any] = []
        try:
            for ns, tables in by_namespace.items():
                reports += sync_tables(args.target, ns, tables, client=client,
                                       on_done=(lambda _report: bar.table_done())
                                       if bar is not None else None)
        except BaseException:
            if bar is not None:
                bar.finish(failed=True)
            raise
        failed = [r for r in reports if getattr(r, "error", None)]
        if bar is not None:
            bar.finish(failed=bool(failed))
        view = SyncView(reports)
        if failed:
            from IPython.display import display

            display(view)
            raise UsageError(f"{len(failed)} of {len(reports)} tables failed: "
                             + "; ".join(f"{r.table}: {r.error}" for r in failed))
        return self._bind(view, args.output or bind)

    def _login(self, argv: list[str], bind: str | None) -> Any:
        import os

        from IPython.display import display

        from ._widgets import LoginForm

        p = self._parser("login", "Show the credential form.")
        p.add_argument("--base-url", help="pre-fill the base URL")
        p.add_argument("--client-id", help="pre-fill the client id")
        args = p.parse_args(argv)
        base_url, client_id, note = "", "", ""
        try:
            creds = self.session.credentials(self.env_file or None)
        except UsageError:
            creds = None
            base_url = os.environ.get("DAP_API_URL", "")
        if creds is not None:
            base_url, client_id = creds.config.base_url, creds.config.client_id
            note = (f"This session already has credentials (from the {creds.source}): "
                    "the form is needed only to use others.")
        form: LoginForm = LoginForm(
            self.session, base_url=args.base_url or base_url,
            client_id=args.client_id or client_id, namespaces=self.namespaces,
            rate_limits=self.rate_limits,
            note=f'<span class="dapframe-login-note">{_escape(note)}</span>' if note else "")
        if bind:
            self._user_ns[bind] = form
        display(form)
        return None

    def _logout(self, argv: list[str], bind: str | None) -> Any:
        self._parser("logout", "Forget the credentials of the login form.").parse_args(argv)
        self.session.forget()
        return Message("Logged out: the session falls back to DAP_* (environment or .env).")

    def _status(self, argv: list[str], bind: str | None) -> Any:
        self._parser("status", "Show the session's settings.").parse_args(argv)
        rows: list[tuple[str, str]] = []
        try:
            creds = self.session.credentials(self.env_file or None)
        except UsageError:
            text = f"No credentials: {NO_CREDENTIALS_HINT}."
        else:
            text = f"Using {creds.config.base_url} as {creds.config.client_id} " \
                   f"(from the {creds.source})."
            limited = self.session.wants_rate_limits(creds.config, self.rate_limits)
            rows.append(("rate limits", f"{'on' if limited else 'off'} ({self.rate_limits})"))
        if self.session.emulator is not None:
            rows.append(("emulator", f"{self.session.emulator.base_url} (started here)"))
        rows += [("format", self.format), ("output", self.output),
                 ("display limit", str(self.display_limit)),
                 ("duckdb", self.duckdb_connection or "default connection")]
        rows += [(f"next since {t}", iso(w)) for t, w in sorted(self.session.watermarks.items())]
        return self._bind(Message(text, rows), bind)

    def _emulator(self, argv: list[str], bind: str | None) -> Any:
        p = self._parser("emulator", "Start a local DAP API emulator in this kernel and use "
                                     "it (no credentials needed).")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--scale", type=float, default=1.0)
        p.add_argument("--steps", type=int, default=0, help="change steps committed at start")
        p.add_argument("--port", type=int, default=0, help="0 picks a free port")
        p.add_argument("--rows-per-part", type=int, default=100_000)
        p.add_argument("--job-seconds", type=float, default=0.2)
        p.add_argument("--stop", action="store_true", help="stop the emulator started here")
        args = p.parse_args(argv)
        if args.stop:
            stopped = self.session.stop_emulator()
            return Message("Emulator stopped." if stopped else "No emulator was running here.")
        if args.scale <= 0 or args.rows_per_part < 1 or args.steps < 0:
            raise UsageError("--scale and --rows-per-part must be positive, --steps at least 0: "
                             "use e.g. %dap emulator --scale 1")
        emu = self.session.start_emulator(seed=args.seed, scale=args.scale, steps=args.steps,
                                          port=args.port, rows_per_part=args.rows_per_part,
                                          job_seconds=args.job_seconds)
        return self._bind(Message(
            "Emulator running in this kernel; %dap commands now use it.",
            [("base URL", emu.base_url), ("client id", emu.client_id),
             ("data", f"seed {args.seed}, scale {args.scale:g}"),
             ("clock", f"step {emu.dataset.step}, {iso(emu.dataset.clock)}"),
             ("rate limits", "on" if self.session.wants_rate_limits(
                 self.session.credentials(None).config, self.rate_limits) else "off")]), bind)

    def _tick(self, argv: list[str], bind: str | None) -> Any:
        p = self._parser("tick", "Let the emulator commit change steps (one hour each).")
        p.add_argument("steps", nargs="?", type=int, default=1)
        args = p.parse_args(argv)
        if args.steps < 1:
            raise UsageError(f"%dap tick {args.steps}: give a number of steps of at least 1")
        emu = self.session.emulator
        base_url = self.session.credentials(self.env_file or None).config.base_url
        if emu is not None and emu.base_url == base_url:
            step = emu.tick(args.steps)
            clock = iso(emu.dataset.clock)
        else:
            step, clock = _remote_tick(base_url, args.steps)
        return self._bind(Message(f"Emulator clock: step {step}, {clock}."), bind)

    # -- teardown ------------------------------------------------------------------------
    def close(self) -> None:
        """Close the client, the DuckDB files opened here and the emulator."""
        for con in self._duckdb_cons.values():
            con.close()
        self._duckdb_cons.clear()
        self.session.close()


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def _remote_tick(base_url: str, steps: int) -> tuple[int, str]:
    import httpx

    try:
        response = httpx.post(f"{base_url}/emulator/tick", params={"steps": steps}, timeout=30)
    except httpx.HTTPError as exc:
        raise UsageError(f"cannot reach {base_url}: {_one_line(exc)}") from None
    if response.status_code != 200:
        raise UsageError(f"{base_url} is not a dapframe emulator (HTTP "
                         f"{response.status_code} on /emulator/tick): %dap tick works only "
                         "against the emulator")
    doc = response.json()
    return int(doc["step"]), str(doc["clock"]).replace("+00:00", "Z")


def _sync_api() -> Callable[..., Any]:
    """``dapframe.sync.sync_tables`` when this build has it."""
    try:
        module = import_module("dapframe.sync")
    except ImportError:
        module = None
    func = getattr(module, "sync_tables", None)
    if not callable(func):
        raise UsageError("%dap sync is not available in this dapframe build (no "
                         "dapframe.sync): use %dap snapshot / incremental and "
                         "QueryResult.apply_to instead")
    return func
