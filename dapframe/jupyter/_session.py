"""What one notebook kernel remembers between ``%dap`` commands.

The credentials in use (from the login form, an emulator the magics started, the ``DAP_*``
environment variables or a ``.env`` file, in that order), one :class:`~dapframe.api.DapClient`
built from them, the emulator if the magics started one, and the watermark of every table
fetched, so that ``%dap incremental canvas.accounts`` can go on from the last result.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from dapframe.config import DapConfig, Secret
from dapframe.errors import ConfigError, UsageError

from ._dotenv import read_dotenv

if TYPE_CHECKING:
    from dapframe.api import DapClient, RateLimits
    from dapframe.emulator import Emulator

__all__ = ["RATE_LIMIT_MODES", "Credentials", "DapSession", "is_loopback", "token_expiry"]

#: ``Dap.rate_limits`` values: ``auto`` is on for a real API, off for a local emulator.
RATE_LIMIT_MODES = ("auto", "on", "off")
_ENV_KEYS = ("DAP_API_URL", "DAP_CLIENT_ID", "DAP_CLIENT_SECRET")

NO_CREDENTIALS_HINT = (
    "log in with %dap login, set DAP_API_URL / DAP_CLIENT_ID / DAP_CLIENT_SECRET (environment "
    "or a .env file), or start a local emulator with %dap emulator"
)


@dataclass(frozen=True)
class Credentials:
    """Connection settings and where they came from.

    Attributes
    ----------
    config : DapConfig
        Base URL, client id and secret (hidden in every repr).
    source : str
        ``login form``, ``emulator``, ``environment``, ``.env file`` or ``environment and
        .env file``.
    """

    config: DapConfig
    source: str


def is_loopback(url: str) -> bool:
    """True when the URL's host is this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_expiry(client: DapClient) -> datetime | None:
    """When the client's current access token expires (UTC), if it has logged in."""
    from dapframe.api._auth import jwt_expiry

    # DapAuth keeps the token private and has no expiry accessor yet; read it defensively.
    token = getattr(client.auth, "_token", None)
    reveal = getattr(token, "reveal", None)
    if reveal is None:
        return None
    exp = jwt_expiry(reveal())
    return datetime.fromtimestamp(exp, UTC) if exp is not None else None


class DapSession:
    """Credentials, client, emulator and watermarks of one IPython shell.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read ``DAP_*`` from (``os.environ`` when None, read at each use so
        that variables set in the notebook take effect).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        self._explicit: Credentials | None = None
        self.emulator: Emulator | None = None
        self._client: DapClient | None = None
        self._client_key: tuple[DapConfig, bool] | None = None
        #: ``namespace.table`` -> where its next incremental query starts.
        self.watermarks: dict[str, datetime] = {}

    # -- credentials ---------------------------------------------------------------------
    def credentials(self, env_file: str | os.PathLike[str] | None = ".env") -> Credentials:
        """The credentials in use: the login form's or the emulator's, else ``DAP_*``.

        ``DAP_*`` environment variables win over the same keys in ``env_file``.

        Raises
        ------
        UsageError
            No credentials anywhere (the message says the three ways to give them), or a
            malformed base URL.
        """
        if self._explicit is not None:
            return self._explicit
        environ = os.environ if self._environ is None else self._environ
        from_env = {k: environ[k] for k in _ENV_KEYS if environ.get(k)}
        from_file = {k: v for k, v in read_dotenv(env_file).items()
                     if k in _ENV_KEYS and v} if env_file else {}
        merged = {**from_file, **from_env}
        used_file = any(k not in from_env for k in from_file)
        source = ("environment and .env file" if used_file and from_env
                  else ".env file" if used_file else "environment")
        try:
            config = DapConfig.from_env(environ=merged)
        except ConfigError as exc:
            if not merged.get("DAP_CLIENT_ID") or not merged.get("DAP_CLIENT_SECRET"):
                raise UsageError(f"no DAP credentials: {NO_CREDENTIALS_HINT}") from None
            raise UsageError(str(exc)) from None
        return Credentials(config, source)

    def has_credentials(self, env_file: str | os.PathLike[str] | None = ".env") -> bool:
        """True when :meth:`credentials` would succeed."""
        try:
            self.credentials(env_file)
        except UsageError:
            return False
        return True

    def use(self, config: DapConfig, source: str, client: DapClient | None = None,
            *, rate_limited: bool | None = None) -> None:
        """Use these settings from now on (the login form, the emulator).

        A ``client`` already built from ``config`` (e.g. the one that checked the login) is
        kept, so that its token is reused.
        """
        self._explicit = Credentials(config, source)
        if client is not None:
            self._replace_client(client, (config, bool(rate_limited)))

    def forget(self) -> None:
        """Drop the form's or emulator's settings; fall back to ``DAP_*``."""
        self._explicit = None
        self._replace_client(None, None)

    # -- rate limits ---------------------------------------------------------------------
    def wants_rate_limits(self, config: DapConfig, mode: str) -> bool:
        """Whether a client for ``config`` keeps within the API's documented rate limits.

        ``auto`` keeps them for a real API and drops them for an emulator: the one the magics
        started, or any API on this machine (a local emulator; nothing else serves the DAP API
        on loopback).
        """
        if mode not in RATE_LIMIT_MODES:
            raise UsageError(f"unknown rate_limits {mode!r}: choose one of "
                             f"{', '.join(RATE_LIMIT_MODES)}")
        if mode != "auto":
            return mode == "on"
        emulated = self.emulator is not None and config.base_url == self.emulator.base_url
        return not (emulated or is_loopback(config.base_url))

    @staticmethod
    def rate_limits(on: bool) -> RateLimits | None:
        """The API's documented limits, or None."""
        from dapframe.api import RateLimits

        return RateLimits() if on else None

    # -- client --------------------------------------------------------------------------
    def client(self, *, rate_limits: str = "auto",
               env_file: str | os.PathLike[str] | None = ".env") -> DapClient:
        """The client for the current credentials, built once and reused.

        A change of credentials (a new login, edited ``DAP_*`` variables) or of the rate-limit
        setting closes the old client and builds a new one.
        """
        from dapframe.api import DapClient

        creds = self.credentials(env_file)
        limited = self.wants_rate_limits(creds.config, rate_limits)
        key = (creds.config, limited)
        if self._client is None or self._client_key != key:
            self._replace_client(DapClient(creds.config, rate_limits=self.rate_limits(limited)),
                                 key)
        assert self._client is not None
        return self._client

    def _replace_client(self, client: DapClient | None,
                        key: tuple[DapConfig, bool] | None) -> None:
        old = self._client
        self._client, self._client_key = client, key
        if old is not None and old is not client:
            old.close()

    # -- emulator ------------------------------------------------------------------------
    def start_emulator(self, **kwargs: object) -> Emulator:
        """Start an emulator in this kernel (stopping one started before) and use it."""
        from dapframe.emulator import Emulator

        self.stop_emulator()
        try:
            emu = Emulator(**kwargs).start()  # type: ignore[arg-type]
        except OSError as exc:
            raise UsageError(f"cannot start the emulator: {exc.strerror or exc}; "
                             "choose another --port") from None
        self.emulator = emu
        self.use(DapConfig(base_url=emu.base_url, client_id=emu.client_id,
                           client_secret=Secret(emu.client_secret)), "emulator")
        return emu

    def stop_emulator(self) -> bool:
        """Stop the emulator the magics started, if any; returns whether one ran."""
        emu, self.emulator = self.emulator, None
        if emu is None:
            return False
        if self._explicit is not None and self._explicit.source == "emulator":
            self.forget()
        emu.close()
        return True

    def close(self) -> None:
        """Close the client and stop the emulator (extension unloaded, kernel exit)."""
        self._replace_client(None, None)
        self.stop_emulator()
