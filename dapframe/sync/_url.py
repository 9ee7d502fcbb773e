"""Connection strings: parsed once, into a :class:`ConnectionInfo` every dialect reads.

The official client's form is kept: ``postgresql://user:password@host:port/database[?ssl=MODE]``
with percent-encoded parts, and DuckDB adds ``duckdb:///relative/path.duckdb`` or
``duckdb:////absolute/path.duckdb``. Parsing uses SQLAlchemy's :func:`~sqlalchemy.engine.make_url`
(the ``postgresql`` extra); a ``duckdb:`` string is also understood without SQLAlchemy so that the
embedded default needs nothing beyond the ``frames`` extra.
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
_LATER: Final = {"mysql": "MySQL", "mariadb": "MySQL", "mssql": "SQL Server"}
_EXAMPLES: Final = ("postgresql://user:password@host:5432/database or "
                    "duckdb:///path/to/file.duckdb")


@dataclass(frozen=True)
class ConnectionInfo:
    """A parsed connection string.

    Attributes
    ----------
    dialect : str
        ``"postgresql"`` or ``"duckdb"``.
    host, port, username, database : str or int or None
        Server address and login (PostgreSQL).
    password : Secret
        The password, hidden from every ``repr`` and message.
    params : dict
        libpq parameters (``sslmode`` from the official ``?ssl=``, ``connect_timeout`` ...).
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
        return f"postgresql://{auth}{host}{port}/{self.database or ''}"

    @property
    def where(self) -> str:
        """Short name of the database for one-line messages: ``host:port/db`` or the file."""
        if self.dialect == "duckdb":
            return str(self.path) if self.path is not None else ":memory:"
        return f"{self.host or 'localhost'}:{self.port or 5432}/{self.database or ''}"

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
        ``postgresql://...`` or ``duckdb:///file.duckdb``; ``None`` or empty: the embedded
        default, ``duckdb:///dapframe.duckdb`` in the working directory.

    Raises
    ------
    ConfigError
        Malformed string, unknown or not yet supported dialect, bad ``?ssl=`` or parameter.
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
    if backend in _LATER:
        raise ConfigError(f"database dialect {backend!r} is not supported yet ({_LATER[backend]} "
                          f"comes in a later release): use {_EXAMPLES}")
    if backend not in ("postgresql", "postgres"):
        raise ConfigError(f"database dialect {backend!r} is not supported: use {_EXAMPLES}")
    return _parse_postgresql(text)


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


def _make_url(text: str) -> object:
    try:
        from sqlalchemy.engine import make_url
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError("PostgreSQL needs the postgresql extra: pip install "
                          "'dapframe[postgresql]'") from None
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
            raise ConfigError(f"connection string parameter {key!r} is given more than once")
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
    if path.exists() and path.is_dir():
        raise ConfigError(f"DuckDB path {str(path)!r} is a directory: name a file, e.g. "
                          f"duckdb:///{path / DEFAULT_DUCKDB_FILE}")
    return ConnectionInfo(dialect="duckdb", path=path.absolute())
