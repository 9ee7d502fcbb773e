"""Client-side rate limits per DAP endpoint, so that many tables at once never meet a 429.

Each endpoint has a sliding window of ``calls`` per ``seconds``. A call holds a slot from the
moment it is about to be sent until its answer arrives, and then for one more window.
Counting from the answer rather than from the send keeps the client's count at or above the
server's even when a request sits in the connection pool or on the network for a while: the
server cannot have counted a call later than the moment the client got its answer.

The client tags each JSON request with a :class:`RateGate` in ``request.extensions``; the
:class:`~dapframe.api.RetryTransport` enters that gate around every attempt, retries
included, so every request the server sees is accounted for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

__all__ = [
    "ENDPOINTS",
    "RATE_LIMIT_EXTENSION",
    "RateGate",
    "RateLimiter",
    "RateLimits",
]

logger = logging.getLogger("dapframe.api")

#: Rate-limited endpoints: query (POST .../data), job (GET /dap/job/..), tables (GET .../table),
#: schema (GET .../schema), object_url (POST /dap/object/url). Same names as the emulator's.
ENDPOINTS: tuple[str, ...] = ("query", "job", "tables", "schema", "object_url")

#: Key of the :class:`RateGate` in ``httpx.Request.extensions``.
RATE_LIMIT_EXTENSION = "dapframe.rate_limit"

Limit = tuple[int, float]


@dataclass(frozen=True)
class RateLimits:
    """Most calls per sliding window, per endpoint: ``(calls, seconds)``, or ``None`` for none.

    The defaults are the API's documented limits (reference section 8.3, 2024 numbers).

    Parameters
    ----------
    query : (int, float) or None
        ``POST /dap/query/{ns}/table/{t}/data`` (start a job): 5 per minute.
    job : (int, float) or None
        ``GET /dap/job/{id}`` (poll a job): 500 per minute.
    tables : (int, float) or None
        ``GET /dap/query/{ns}/table`` (list tables): 5 per minute.
    schema : (int, float) or None
        ``GET /dap/query/{ns}/table/{t}/schema``: 500 per minute.
    object_url : (int, float) or None
        ``POST /dap/object/url``: 200 per minute.

    Notes
    -----
    The limits are per client instance: two clients (or two processes) with the same
    credentials each count only their own calls. Should the server still answer 429, the
    retry transport waits as its ``Retry-After`` asks.

    Examples
    --------
    >>> RateLimits(query=(3, 60.0), job=None)                     # doctest: +SKIP
    """

    query: Limit | None = (5, 60.0)
    job: Limit | None = (500, 60.0)
    tables: Limit | None = (5, 60.0)
    schema: Limit | None = (500, 60.0)
    object_url: Limit | None = (200, 60.0)

    def __post_init__(self) -> None:
        for name in ENDPOINTS:
            limit = getattr(self, name)
            if limit is None:
                continue
            try:
                calls, seconds = limit
                ok = int(calls) == calls and calls >= 1 and float(seconds) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(
                    f"RateLimits.{name} must be (calls >= 1, seconds > 0) or None, "
                    f"not {limit!r}"
                )

    def get(self, endpoint: str) -> Limit | None:
        """The limit of ``endpoint`` (one of :data:`ENDPOINTS`), or ``None``."""
        if endpoint not in ENDPOINTS:
            raise KeyError(endpoint)
        limit: Limit | None = getattr(self, endpoint)
        return limit


class _Window:
    """The sliding window of one endpoint, with its queue of waiting calls (FIFO)."""

    def __init__(self, endpoint: str, calls: int, seconds: float,
                 clock: Callable[[], float]) -> None:
        self.endpoint = endpoint
        self.calls = int(calls)
        self.seconds = float(seconds)
        self.clock = clock
        self.in_flight = 0
        self.recent: deque[float] = deque()  # answer times within the window, ascending
        self.waiters: deque[asyncio.Event] = deque()

    def ready_at(self, now: float) -> float | None:
        """When the next call may go: ``now`` or later, or ``None`` until a call is answered."""
        while self.recent and now - self.recent[0] >= self.seconds:
            self.recent.popleft()
        excess = self.in_flight + len(self.recent) - self.calls
        if excess < 0:
            return now
        if excess < len(self.recent):
            # This many answered calls must leave the window; they leave oldest first.
            return self.recent[excess] + self.seconds
        return None  # every slot is held by a call still in flight

    async def acquire(self) -> None:
        if not self.waiters:
            now = self.clock()
            at = self.ready_at(now)
            if at is not None and at <= now:
                self.in_flight += 1
                return
        event = asyncio.Event()
        self.waiters.append(event)
        logged = False
        try:
            while True:
                now = self.clock()
                at = self.ready_at(now)
                head = self.waiters[0] is event
                if head and at is not None and at <= now:
                    break
                if not logged:
                    logged = True
                    logger.debug(
                        "rate limit of %d %s call(s) per %g s reached; waiting %s",
                        self.calls, self.endpoint, self.seconds,
                        f"{at - now:.2f} s" if at is not None and head
                        else "for earlier calls",
                    )
                # Only the head waits on the clock; the others are woken when it leaves.
                timeout = at - now if head and at is not None else None
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), timeout)
                except TimeoutError:
                    pass
        finally:
            self._leave(event)
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self.recent.append(self.clock())
        self._wake_head()

    def _leave(self, event: asyncio.Event) -> None:
        try:
            self.waiters.remove(event)
        except ValueError:  # pragma: no cover - defensive
            pass
        self._wake_head()  # the next in line re-checks (a slot may be free for it too)

    def _wake_head(self) -> None:
        if self.waiters:
            self.waiters[0].set()


class RateGate:
    """Async context manager holding one slot of an endpoint's window while a request runs.

    Re-entered once per attempt by :class:`~dapframe.api.RetryTransport` (sequentially).
    """

    __slots__ = ("_window",)

    def __init__(self, window: _Window) -> None:
        self._window = window

    async def __aenter__(self) -> None:
        await self._window.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Also on errors and cancellation: the call may have reached the server.
        self._window.release()


class RateLimiter:
    """Sliding-window limiters for the endpoints of :class:`RateLimits`.

    Parameters
    ----------
    limits : RateLimits
        Calls per window per endpoint.
    clock : callable, optional
        Monotonic seconds (tests may replace it).

    Notes
    -----
    Waits happen on the running event loop; use one limiter from one loop at a time (as an
    :class:`~dapframe.api.AsyncDapClient` is used).
    """

    def __init__(
        self, limits: RateLimits, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._windows: dict[str, _Window] = {}
        self._gates: dict[str, RateGate] = {}
        for name in ENDPOINTS:
            limit = limits.get(name)
            if limit is not None:
                window = _Window(name, limit[0], limit[1], clock)
                self._windows[name] = window
                self._gates[name] = RateGate(window)

    def gate(self, endpoint: str) -> RateGate | None:
        """The gate of ``endpoint``, or ``None`` when it is not limited."""
        return self._gates.get(endpoint)

    def in_use(self, endpoint: str) -> int:
        """Slots of ``endpoint`` held now (calls in flight plus answers within the window)."""
        window = self._windows.get(endpoint)
        if window is None:
            return 0
        window.ready_at(window.clock())  # drop answers that left the window
        return window.in_flight + len(window.recent)


#: The API's documented limits (reference 8.3): the clients' default.
DEFAULT_RATE_LIMITS = RateLimits()
