"""Connection strings: parsed once, into a :class:`ConnectionInfo` every dialect reads.

The official client's form is kept: ``postgresql://user:password@host:port/database[?ssl=MODE]``
with percent-encoded parts (likewise ``mysql://`` and ``mssql://``), and DuckDB adds
``duckdb:///relative/path.duckdb`` or ``duckdb:////absolute/path.duckdb``. Parsing uses
SQLAlchemy's :func:`~sqlalchemy.engine.make_url` (the server dialects' extras); a ``duckdb:``
string is also understood without SQLAlchemy, so the embedded default needs only ``frames``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import quote, unquote

from dapframe.config import Secret
from dapframe.errors import ConfigError

__all__ = ["DEFAULT_DUCKDB_FILE", "ConnectionInfo", "default_connection_string",
           "parse_connection_string"]

#: Where sync goes when no connection string is given (relative to the working directory).
DEFAULT_DUCKDB_FILE: Final = "dapframe.duckdb"

#: ``?ssl=`` values the official client accepts (libpq ``sslmode`` names).
SSL_MODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq parameters passed through as they are (beside the official ``ssl``).
_PG_PARAMS: Final = frozenset({"sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout",
                               "application_name", "options", "target_session_attrs"})
#: Server dialects: scheme -> (dialect, default port, extra to install).
_SERVERS: Final = {
    "postgresql": ("postgresql", 5432, "postgresql"),
    "postgres": ("postgresql", 5432, "postgresql"),
    "mysql": ("mysql", 3306, "mysql"), "mariadb": ("mysql", 3306, "mysql"),
    "mssql": ("mssql", 1433, "mssql"),
}
#: Default ports by dialect.
DEFAULT_PORTS: Final = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
# Parameters MySQL and SQL Server take beside the official ``ssl``.
_SERVER_PARAMS: Final = {"mysql": frozenset({"connect_timeout", "charset"}),
                         "mssql": frozenset({"connect_timeout", "login_timeout", "tds_version"})}
_EXAMPLES: Final = ("postgresql://user:password@host:5432/database, "
                    "mysql://user:password@host:3306/database, "
                    "mssql://user:password@host:1433/database or "
                    "duckdb:///path/to/file.duckdb")


@dataclass(frozen=True)
class ConnectionInfo:
    """A parsed connection string.

    Attributes
    ----------
    dialect : str
        ``"postgresql"``, ``"mysql"``, ``"mssql"`` or ``"duckdb"``.
    host, port, username, database : str or int or None
        Server address and login (server dialects).
    password : Secret
        The password, hidden from every ``repr`` and message.
    params : dict
        Driver parameters: for PostgreSQL libpq's (``sslmode`` from the official ``?ssl=``,
        ``connect_timeout`` ...); for MySQL and SQL Server ``ssl`` (as given) and the few
        listed in ``_SERVER_PARAMS``.
    path : Path or None
        The DuckDB file (``None`` for an in-memory DuckDB).
    """

    dialect: str
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: Secret = field(default_factory=lambda: Secret(""))
    database: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def display(self) -> str:
        """The connection string with the password hidden, for messages and logs."""
        if self.dialect == "duckdb":
            return f"duckdb:///{self.path}" if self.path is not None else "duckdb:///:memory:"
        auth = ""
        if self.username:
            auth = quote(self.username, safe="") + (":***" if self.password else "") + "@"
        host = self.host or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{self.port}" if self.port else ""
        return f"{self.dialect}://{auth}{host}{port}/{self.database or ''}"

    @property
    def where(self) -> str:
        """Short name of the database for one-line messages: ``host:port/db`` or the file."""
        if self.dialect == "duckdb":
            return str(self.path) if self.path is not None else ":memory:"
        return f"{self.address}/{self.database or ''}"

    @property
    def address(self) -> str:
        """``host:port`` of a server, defaults filled in."""
        return f"{self.host or 'localhost'}:{self.port or DEFAULT_PORTS.get(self.dialect, 0)}"

    def libpq_uri(self, *, password: bool = True) -> str:
        """A libpq URI (ADBC, connectorx), parts percent-encoded; ``sslmode`` for ``ssl``."""
        auth = ""
        if self.username:
            auth = quote(self.username, safe="")
            if password and self.password:
                auth += ":" + quote(self.password.reveal(), safe="")
            auth += "@"
        host = self.host or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{self.port}" if self.port else ""
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}"
                         for k, v in sorted(self.params.items()))
        return (f"postgresql://{auth}{host}{port}/{quote(self.database or '', safe='')}"
                + (f"?{query}" if query else ""))


def default_connection_string() -> str:
    """The connection string used when none is given: a DuckDB file in the working directory."""
    return f"duckdb:///{DEFAULT_DUCKDB_FILE}"


def parse_connection_string(text: str | None) -> ConnectionInfo:
    """Parse a connection string (once) into a :class:`ConnectionInfo`.

    Parameters
    ----------
    text : str or None
        ``postgresql://...``, ``mysql://...``, ``mssql://...`` or ``duckdb:///file.duckdb``;
        ``None`` or empty: the embedded
        default, ``duckdb:///dapframe.duckdb`` in the working directory.

    Raises
    ------
    ConfigError
        Malformed string, unknown dialect, bad ``?ssl=`` or parameter.
        The message never contains the password.
    """
    if text is None or not text.strip():
        text = default_connection_string()
    text = text.strip()
    scheme = text.partition(":")[0].lower()
    if "://" not in text or not scheme:
        raise ConfigError(f"malformed connection string {_redact(text)!r}: use {_EXAMPLES}")
    backend = scheme.partition("+")[0]
    if backend == "duckdb":
        return _parse_duckdb(text)
    if backend not in _SERVERS:
        raise ConfigError(f"database dialect {backend!r} is not supported: use {_EXAMPLES}")
    dialect, _, extra = _SERVERS[backend]
    if dialect == "postgresql":
        return _parse_postgresql(text)
    return _parse_server(text, dialect, extra)


def _redact(text: str) -> str:
    """The string with anything between ``://user:`` and ``@`` replaced (for errors)."""
    head, sep, rest = text.partition("://")
    if not sep:
        return text[:80]
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        auth, _, host = netloc.rpartition("@")
        user = auth.partition(":")[0]
        netloc = f"{user}:***@{host}" if ":" in auth else f"{user}@{host}"
    return f"{head}://{netloc}{slash}{tail}"[:200]


def _make_url(text: str, extra: str = "postgresql") -> object:
    try:
        from sqlalchemy.engine import make_url
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError(f"{extra} connection strings need the {extra} extra: pip install "
                          f"'dapframe[{extra}]'") from None
    try:
        return make_url(text)
    except Exception:
        raise ConfigError(f"malformed connection string {_redact(text)!r}: use "
                          f"{_EXAMPLES} (percent-encode special characters in the password, "
                          "e.g. @ as %40)") from None


def _parse_postgresql(text: str) -> ConnectionInfo:
    url = _make_url(text)
    try:
        port = url.port  # type: ignore[attr-defined]
    except ValueError:  # pragma: no cover - make_url checks the port already
        port = None
    query: dict[str, str] = {}
    for key, value in dict(url.query).items():  # type: ignore[attr-defined]
        if not isinstance(value, str):
            raise ConfigError(f"connection string parameter {key!r} is given more than once: "
                              "keep one")
        query[key] = value
    params: dict[str, str] = {}
    for key, value in query.items():
        if key == "ssl":
            if value not in SSL_MODES:
                raise ConfigError(f"unsupported ssl mode {value!r} in the connection string: "
                                  f"choose one of {', '.join(SSL_MODES)}")
            params["sslmode"] = value
        elif key in _PG_PARAMS:
            params[key] = value
        else:
            raise ConfigError(f"unknown connection string parameter {key!r}: use ?ssl=MODE "
                              f"(or one of {', '.join(sorted(_PG_PARAMS))})")
    # Fail fast on a dead address instead of waiting on the OS (libpq waits forever by default).
    params.setdefault("connect_timeout", "10")
    # Lets a DBA (and the crash tests) tell dapframe's sessions apart in pg_stat_activity.
    params.setdefault("application_name", "dapframe")
    host = url.host  # type: ignore[attr-defined]
    return ConnectionInfo(
        dialect="postgresql",
        host=host or None,
        port=port,
        username=url.username or None,  # type: ignore[attr-defined]
        password=Secret(url.password or ""),  # type: ignore[attr-defined]
        database=url.database or None,  # type: ignore[attr-defined]
        params=params,
    )


def _parse_duckdb(text: str) -> ConnectionInfo:
    rest = text.partition("://")[2]
    path_text, _, query = rest.partition("?")
    if query:
        raise ConfigError(f"a DuckDB connection string takes no parameters ({query!r}): use "
                          "duckdb:///path/to/file.duckdb")
    if not path_text.startswith("/"):
        raise ConfigError(f"malformed DuckDB connection string {text!r}: use "
                          "duckdb:///relative/file.duckdb or duckdb:////absolute/file.duckdb")
    path_text = unquote(path_text[1:])  # strip the empty host: duckdb:///x -> x
    if path_text in ("", ":memory:"):
        return ConnectionInfo(dialect="duckdb", path=None)
    path = Path(os.path.expanduser(path_text))
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"DuckDB path {str(path)!r} lies under {str(parent)!r}, which "
                                  "is a file, not a folder: choose another path")
            break
    if path.exists() and path.is_dir():
        raise ConfigError(f"DuckDB path {str(path)!r} is a directory: name a file, e.g. "
                          f"duckdb:///{path / DEFAULT_DUCKDB_FILE}")
    return ConnectionInfo(dialect="duckdb", path=path.absolute())


def _parse_server(text: str, dialect: str, extra: str) -> ConnectionInfo:
    """``mysql://`` and ``mssql://``: address, login, database, and the official ``?ssl=``."""
    url = _make_url(text, extra)
    params: dict[str, str] = {}
    for key, value in dict(url.query).items():  # type: ignore[attr-defined]
        if not isinstance(value, str):
            raise ConfigError(f"connection string parameter {key!r} is given more than once: "
                              "keep one")
        if key == "ssl":
            if value not in SSL_MODES:
                raise ConfigError(f"unsupported ssl mode {value!r} in the connection string: "
                                  f"choose one of {', '.join(SSL_MODES)}")
        elif key not in _SERVER_PARAMS[dialect]:
            allowed = ", ".join(sorted({"ssl", *_SERVER_PARAMS[dialect]}))
            raise ConfigError(f"unknown connection string parameter {key!r} for {dialect}: "
                              f"use one of {allowed}")
        params[key] = value
    # Fail fast on a dead address rather than wait on the OS.
    params.setdefault("connect_timeout", "10")
    if not url.database:  # type: ignore[attr-defined]
        raise ConfigError(f"the connection string names no database: use {dialect}://user:"
                          f"password@host:{DEFAULT_PORTS[dialect]}/database")
    return ConnectionInfo(
        dialect=dialect,
        host=url.host or None,  # type: ignore[attr-defined]
        port=url.port,  # type: ignore[attr-defined]
        username=url.username or None,  # type: ignore[attr-defined]
        password=Secret(url.password or ""),  # type: ignore[attr-defined]
        database=url.database,  # type: ignore[attr-defined]
        params=params,
    )
