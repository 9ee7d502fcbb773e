"""Client-credentials login to the Instructure Identity Service, as an :class:`httpx.Auth` flow.

The flow logs in on first use, re-logs-in shortly before the token's ``exp``, and once more when
a call answers 401 (token revoked or expired mid-run). Neither the client secret nor the bearer
token ever appears in a log line, ``repr`` or exception message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import httpx

from dapframe.config import Secret
from dapframe.errors import AuthenticationError
from dapframe.wire import TokenResponse, WireError

from ._errors import Context, api_error, is_json, one_line, unexpected_response
from ._ratelimit import RATE_LIMIT_EXTENSION

__all__ = ["DapAuth", "jwt_expiry"]

logger = logging.getLogger("dapframe.api")

LOGIN_PATH = "/ids/auth/login"
#: Re-login this long before ``exp`` at most (the official client's fixed margin) ...
MAX_MARGIN = 300.0
#: ... or this fraction of the token's lifetime, whichever is smaller (short test tokens).
MARGIN_FRACTION = 0.2

_LOGIN_CTX = Context("logging in")


def jwt_expiry(token: str) -> float | None:
    """Read ``exp`` (epoch seconds) from a JWT's payload, without verifying the signature.

    Returns ``None`` when the token is not a JWT or has no numeric ``exp``.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


class DapAuth(httpx.Auth):
    """Bearer-token authentication for the DAP API, logging in with client credentials.

    Parameters
    ----------
    base_url : str
        API base URL; the login goes to ``{base_url}/ids/auth/login``.
    client_id : str
        OAuth client id, sent verbatim (region prefix and ``#`` included).
    client_secret : Secret or str
        OAuth client secret.
    clock : callable, optional
        Returns the current epoch time in seconds (tests replace it).

    Notes
    -----
    Concurrent requests share one token: a lock makes them log in once. The async lock is
    created lazily inside the running event loop, so an instance can be built anywhere.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: Secret | str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._login_url = base_url.rstrip("/") + LOGIN_PATH
        self._client_id = client_id
        self._secret = client_secret if isinstance(client_secret, Secret) else Secret(client_secret)
        self._clock = clock
        self._token: Secret | None = None
        self._refresh_at = 0.0
        self._logins = 0
        self._sync_lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None
        self._async_lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"DapAuth(login_url={self._login_url!r}, client_id={self._client_id!r})"

    @property
    def logins(self) -> int:
        """How many successful logins this instance made (for diagnostics and tests)."""
        return self._logins

    def invalidate(self) -> None:
        """Forget the cached token; the next request logs in again."""
        self._token = None

    # -- flows -----------------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Authenticate ``request`` for :class:`httpx.Client` (see :meth:`async_auth_flow`)."""
        used: Secret | None = None
        for attempt in (1, 2):
            with self._sync_lock:
                if attempt == 2 and self._token is used:
                    self._token = None
                if self._needs_login():
                    login = yield self._login_request(request)
                    login.read()
                    self._accept_login(login)
                used = self._token
            self._set_bearer(request, used)
            response = yield request
            if response.status_code != 401:
                return
            response.read()
            logger.info("the API answered 401 to %s; logging in again", request.url.path)
        raise self._refused_twice(response)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Authenticate ``request`` for :class:`httpx.AsyncClient`.

        Logs in when there is no token or it is about to expire, sends the request with
        ``Authorization: Bearer``, and on a 401 logs in once more and resends it.

        Raises
        ------
        AuthenticationError
            The login was refused, or the request was refused again after a fresh login.
        """
        used: Secret | None = None
        for attempt in (1, 2):
            async with self._get_async_lock():
                if attempt == 2 and self._token is used:
                    # Only drop the token we used: another task may have refreshed it already.
                    self._token = None
                if self._needs_login():
                    login = yield self._login_request(request)
                    await login.aread()
                    self._accept_login(login)
                used = self._token
            self._set_bearer(request, used)
            response = yield request
            if response.status_code != 401:
                return
            await response.aread()
            logger.info("the API answered 401 to %s; logging in again", request.url.path)
        raise self._refused_twice(response)

    # -- helpers ---------------------------------------------------------------------------

    def _get_async_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        # A lock belongs to one loop; a client reused from another loop gets a fresh one.
        if self._async_lock is None or self._async_lock_loop is not loop:
            self._async_lock = asyncio.Lock()
            self._async_lock_loop = loop
        return self._async_lock

    def _needs_login(self) -> bool:
        return self._token is None or self._clock() >= self._refresh_at

    def _login_request(self, original: httpx.Request) -> httpx.Request:
        basic = base64.b64encode(
            f"{self._client_id}:{self._secret.reveal()}".encode()
        ).decode("ascii")
        headers = {"Authorization": f"Basic {basic}", "Accept": "application/json"}
        if "user-agent" in original.headers:
            headers["User-Agent"] = original.headers["user-agent"]
        logger.debug("logging in at %s as %s", self._login_url, self._client_id)
        # Same extensions as the original request, so the client's timeouts apply to the login;
        # but not its rate-limit gate: the login endpoint has no such limit, and waiting at the
        # gate here would hold the login lock and stall every other request.
        extensions = {k: v for k, v in original.extensions.items()
                      if k != RATE_LIMIT_EXTENSION}
        return httpx.Request(
            "POST",
            self._login_url,
            headers=headers,
            data={"grant_type": "client_credentials"},
            extensions=extensions,
        )

    def _accept_login(self, response: httpx.Response) -> None:
        status = response.status_code
        if status in (401, 403):
            base = api_error(response, _LOGIN_CTX)
            raise AuthenticationError(
                "login refused: check the client id and secret "
                f"(DAP_CLIENT_ID / DAP_CLIENT_SECRET) (HTTP {status})",
                status=status, type=base.type, uuid=base.uuid, body=base.body,
            )
        if status >= 400:
            raise api_error(response, _LOGIN_CTX)
        if not is_json(response):
            raise unexpected_response(response, _LOGIN_CTX)
        try:
            doc: Any = json.loads(response.content)
            token = TokenResponse.from_json(doc)
        except (ValueError, WireError) as exc:
            # WireError messages name keys, never values: safe to show.
            raise unexpected_response(response, _LOGIN_CTX, one_line(exc)) from None
        now = self._clock()
        exp = jwt_expiry(token.access_token)
        if exp is None:
            # The official client needs a JWT with exp; be lenient and trust expires_in.
            if token.expires_in <= 0:
                raise unexpected_response(response, _LOGIN_CTX, "the token has no expiry")
            exp = now + token.expires_in
        lifetime = max(0.0, exp - now)
        margin = min(MAX_MARGIN, MARGIN_FRACTION * lifetime)
        self._token = Secret(token.access_token)
        self._refresh_at = exp - margin
        self._logins += 1
        logger.info("logged in as %s; token valid for %.0f s", self._client_id, lifetime)

    @staticmethod
    def _set_bearer(request: httpx.Request, token: Secret | None) -> None:
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token.reveal()}"

    @staticmethod
    def _refused_twice(response: httpx.Response) -> AuthenticationError:
        base = api_error(response, Context(f"calling {response.request.url.path}"))
        return AuthenticationError(
            f"{base} (refused again right after a fresh login)",
            status=401, type=base.type, uuid=base.uuid, body=base.body,
        )
