"""Configuration: where the API is and who we are, read from arguments or ``DAP_*`` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dapframe.errors import ConfigError

__all__ = ["DEFAULT_BASE_URL", "DapConfig", "Secret"]

DEFAULT_BASE_URL = "https://api-gateway.instructure.com"


class Secret:
    """A string that never shows itself in ``repr``/``str``/f-strings; ``reveal()`` gets it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret text (only to put it on the wire)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        # Refuse pickling: a pickled config would carry the secret to disk or another process.
        raise TypeError("a Secret cannot be pickled")


def _check_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"invalid base URL {url!r}: give an http(s) URL such as {DEFAULT_BASE_URL} "
            "(--base-url or DAP_API_URL)"
        )
    return url.rstrip("/")


@dataclass(frozen=True)
class DapConfig:
    """Connection settings for the DAP Query API.

    Parameters
    ----------
    base_url : str
        API host, e.g. ``https://api-gateway.instructure.com``; a trailing ``/`` is dropped.
    client_id : str
        OAuth client id (``<region>#<id>``).
    client_secret : Secret
        OAuth client secret; kept out of every ``repr``, log line and error.
    verify : bool
        Verify TLS certificates (on by default).
    """

    base_url: str = DEFAULT_BASE_URL
    client_id: str = ""
    client_secret: Secret = field(default_factory=lambda: Secret(""))
    verify: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", _check_base_url(self.base_url))
        if isinstance(self.client_secret, str):
            object.__setattr__(self, "client_secret", Secret(self.client_secret))

    @classmethod
    def from_env(
        cls,
        *,
        base_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | Secret | None = None,
        verify: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> DapConfig:
        """Build a config from arguments, falling back to ``DAP_API_URL``, ``DAP_CLIENT_ID``
        and ``DAP_CLIENT_SECRET``.

        Raises
        ------
        ConfigError
            If the client id or secret is missing, or the base URL is malformed.
        """
        env = os.environ if environ is None else environ
        url = base_url or env.get("DAP_API_URL") or DEFAULT_BASE_URL
        cid = client_id or env.get("DAP_CLIENT_ID") or ""
        secret = client_secret if client_secret is not None else env.get("DAP_CLIENT_SECRET", "")
        if isinstance(secret, str):
            secret = Secret(secret)
        if not cid:
            raise ConfigError("missing client id: pass --client-id or set DAP_CLIENT_ID")
        if not secret:
            raise ConfigError(
                "missing client secret: pass --client-secret or set DAP_CLIENT_SECRET"
            )
        return cls(base_url=url, client_id=cid, client_secret=secret, verify=verify)

    def __repr__(self) -> str:
        return (
            f"DapConfig(base_url={self.base_url!r}, client_id={self.client_id!r}, "
            f"client_secret={self.client_secret!r}, verify={self.verify!r})"
        )
