"""Retries as an httpx transport wrapper: 429 (honouring ``Retry-After``), 5xx and network errors.

Wrapping the transport (rather than each call) means every request the client makes, the
login and the object downloads included, gets the same policy, and tests can inject a
:class:`httpx.MockTransport` underneath.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from ._errors import safe_url
from ._ratelimit import RATE_LIMIT_EXTENSION

__all__ = ["RetryPolicy", "RetryTransport", "parse_retry_after"]

logger = logging.getLogger("dapframe.api")

#: Network errors worth another attempt: the request may not have reached the server, or
#: its answer was lost. (All DAP calls are safe to repeat: the API de-duplicates queries.)
RETRYABLE_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.ReadTimeout,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


def _unknown_host(exc: BaseException) -> bool:
    """True when DNS said the host does not exist: a typo, not worth waiting for."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx -> httpcore -> socket.gaierror
        if seen is None:
            return False
        if isinstance(seen, socket.gaierror):
            return seen.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None))
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    Parameters
    ----------
    attempts : int
        Attempts in total, the first one included (1 disables retries).
    backoff : float
        Wait before the second attempt, in seconds; doubled (``multiplier``) for each next one.
    multiplier : float
        Growth factor of the wait between attempts.
    backoff_max : float
        Upper bound of one backoff wait.
    jitter : float
        Fraction of each backoff wait that is randomised (0 = none, 1 = the whole wait), so
        that parallel downloads do not retry in lock-step.
    retry_after_max : float
        Upper bound of a wait the server asks for with ``Retry-After``.
    statuses : frozenset of int
        Response statuses that are retried.
    retry_network_errors : bool
        Retry connect/read/write failures as well.
    connect_attempts : int
        Attempts in total when the connection itself fails (refused, unreachable): fewer than
        ``attempts``, because a server that is down rarely comes back within seconds and the
        user should hear about it quickly.
    """

    attempts: int = 5
    backoff: float = 0.5
    multiplier: float = 2.0
    backoff_max: float = 30.0
    jitter: float = 0.5
    retry_after_max: float = 60.0
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 500, 502, 503, 504}))
    retry_network_errors: bool = True
    connect_attempts: int = 3

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if min(self.backoff, self.backoff_max, self.retry_after_max, self.jitter) < 0:
            raise ValueError("RetryPolicy waits and jitter must not be negative")

    def backoff_for(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the first retry)."""
        base = min(self.backoff_max, self.backoff * self.multiplier ** (retry - 1))
        jitter = min(1.0, self.jitter)
        return base * (1.0 - jitter) + base * jitter * rand()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    Returns ``None`` when the header is absent or unreadable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class RetryTransport(httpx.AsyncBaseTransport):
    """An async transport that retries another one.

    Parameters
    ----------
    transport : httpx.AsyncBaseTransport, optional
        The transport doing the I/O; a new :class:`httpx.AsyncHTTPTransport` by default.
    policy : RetryPolicy
        Attempts and waits.
    sleep : callable, optional
        Coroutine function used to wait (tests may replace it).

    Notes
    -----
    A request carrying a rate-limit gate in ``request.extensions`` (the client adds one, see
    :class:`~dapframe.api.RateLimits`) waits for a slot before every attempt, retries
    included, and holds it until the answer's headers arrive.

    After the last attempt the final response is returned as is (the client maps it to a
    typed error), or the last network error (an :class:`httpx.TransportError`) is raised.
    Request bodies must be replayable (bytes), which every DAP call's body is.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self.policy = policy if policy is not None else RetryPolicy()
        self._sleep = sleep

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``, retrying per :attr:`policy`."""
        policy = self.policy
        where = f"{request.method} {safe_url(request.url)}"
        gate = request.extensions.get(RATE_LIMIT_EXTENSION)
        attempt = 1
        while True:
            last = attempt >= policy.attempts
            try:
                async with gate if gate is not None else contextlib.nullcontext():
                    response = await self._transport.handle_async_request(request)
            except RETRYABLE_ERRORS as exc:
                connect_spent = (isinstance(exc, httpx.ConnectError)
                                 and attempt >= policy.connect_attempts)
                if last or connect_spent or not policy.retry_network_errors or _unknown_host(exc):
                    raise
                wait = policy.backoff_for(attempt)
                logger.info(
                    "%s failed (%s: %s); retry %d of %d in %.2f s",
                    where, type(exc).__name__, exc, attempt, policy.attempts - 1, wait,
                )
            else:
                if last or response.status_code not in policy.statuses:
                    return response
                wait = self._wait_for(response, attempt)
                # Drain and close before retrying so the connection goes back to the pool.
                await response.aread()
                await response.aclose()
                logger.info(
                    "%s answered HTTP %d; retry %d of %d in %.2f s",
                    where, response.status_code, attempt, policy.attempts - 1, wait,
                )
            await self._sleep(wait)
            attempt += 1

    def _wait_for(self, response: httpx.Response, attempt: int) -> float:
        policy = self.policy
        if response.status_code in (429, 503):
            asked = parse_retry_after(response.headers.get("retry-after"))
            if asked is not None:
                return min(asked, policy.retry_after_max)
        return policy.backoff_for(attempt)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._transport.aclose()
