"""Faults the emulator injects on demand: bursts, slow or failed jobs, dropped streams, ...

All knobs are off by default. They are set from tests through :class:`Faults` methods, or over
HTTP with ``POST /emulator/faults`` (see :meth:`Faults.apply`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

ENDPOINTS: tuple[str, ...] = ("login", "tables", "schema", "query", "job", "object_url", "object")
#: Ways :meth:`Faults.corrupt_objects` damages an object.
CORRUPT_MODES: tuple[str, ...] = ("truncate", "garble")

#: Reference section 8.3 (2024 numbers): calls per minute per endpoint.
DEFAULT_RATE_LIMITS: dict[str, int] = {
    "query": 5,
    "job": 500,
    "tables": 5,
    "schema": 500,
    "object_url": 200,
}


@dataclass
class Burst:
    """The next ``count`` calls of an endpoint answer ``status``."""

    status: int
    count: int
    retry_after: str | None = None  # "N" seconds, or "date" for the HTTP-date form


class Faults:
    """Thread-safe fault switchboard of one emulator.

    Attributes
    ----------
    job_seconds : float
        How long a job stays waiting/running before it completes (slow jobs: raise it).
    token_ttl : int
        Lifetime in seconds of tokens issued from now on.
    rate_limits : bool
        Enforce the per-endpoint limits of reference 8.3 (``limits``) with 429 answers.
    latency : float
        Seconds added to every API answer (not object downloads), as a network round trip.
    object_bandwidth : float or None
        Bytes per second of each object download stream (None: as fast as loopback goes), as
        a storage service's per-connection throughput: what makes parallel downloads matter.
    """

    def __init__(self, *, job_seconds: float = 0.2, token_ttl: int = 3600, latency: float = 0.0,
                 object_bandwidth: float | None = None) -> None:
        self._lock = threading.Lock()
        self._default_latency = latency
        self._default_bandwidth = object_bandwidth
        self._default_job_seconds = job_seconds
        self._default_token_ttl = token_ttl
        self.reset()

    def reset(self) -> None:
        """Turn every fault off (job duration and token lifetime back to their start values)."""
        with self._lock:
            self.job_seconds: float = self._default_job_seconds
            self.token_ttl: int = self._default_token_ttl
            self.rate_limits: bool = False
            self.limits: dict[str, int] = dict(DEFAULT_RATE_LIMITS)
            self._bursts: dict[str, deque[Burst]] = {e: deque() for e in ENDPOINTS}
            self._fail_jobs = 0
            self._drops: deque[int] = deque()
            self._expired_urls = 0
            self._corrupt: deque[str] = deque()
            self._calls: dict[str, deque[float]] = {e: deque() for e in ENDPOINTS}
            self.revoked_before: float = 0.0
            self.rate_limited_answers = 0  # 429s answered for a rate limit (not bursts)
            # Network shape (benchmarks): added seconds per API call, bytes/s per download.
            self.latency: float = self._default_latency
            self.object_bandwidth: float | None = self._default_bandwidth
            # Hostile input (bad-input tests): "<ns>.<table>" -> {column: property or value}.
            self.schema_patches: dict[str, dict[str, Any]] = {}
            self.data_patches: dict[str, dict[str, Any]] = {}

    # -- setters -----------------------------------------------------------------------------
    def burst(self, endpoint: str, *, status: int, count: int = 1,
              retry_after: str | int | None = None) -> None:
        """Make the next ``count`` calls to ``endpoint`` answer ``status``.

        ``retry_after`` (429 only): seconds as an int/str, or ``"date"`` for an HTTP-date one
        second ahead.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; choose from {', '.join(ENDPOINTS)}")
        with self._lock:
            ra = None if retry_after is None else str(retry_after)
            self._bursts[endpoint].append(Burst(status=status, count=count, retry_after=ra))

    def fail_next_jobs(self, count: int = 1) -> None:
        """The next ``count`` jobs created end with status ``failed``."""
        with self._lock:
            self._fail_jobs += count

    def drop_downloads(self, *, count: int = 1, after_bytes: int = 1000) -> None:
        """The next ``count`` object downloads close the connection after ``after_bytes``."""
        with self._lock:
            self._drops.extend([after_bytes] * count)

    def expire_urls(self, *, count: int = 1) -> None:
        """The next ``count`` object downloads answer 403 as for an expired pre-signed URL."""
        with self._lock:
            self._expired_urls += count

    def corrupt_objects(self, *, count: int = 1, mode: str = "truncate") -> None:
        """The next ``count`` object downloads serve damaged bytes with a matching length.

        ``mode`` ``"truncate"`` serves the first half of the object (its ``Content-Length``
        says so, so the transfer itself looks whole); ``"garble"`` serves the whole length with
        bytes in the middle overwritten. Either way the gzip (or Parquet) data inside is broken,
        as from a faulty storage node or proxy: only decoding can tell.
        """
        if mode not in CORRUPT_MODES:
            raise ValueError(f"unknown corruption mode {mode!r}; choose from "
                             f"{', '.join(CORRUPT_MODES)}")
        with self._lock:
            self._corrupt.extend([mode] * count)

    def revoke_tokens(self) -> None:
        """Every token issued so far is refused from now on (401), as if it had expired."""
        with self._lock:
            self.revoked_before = time.time()

    def patch_schema(self, table: str, column: str, prop: dict[str, Any]) -> None:
        """Serve ``prop`` as the ``value`` property ``column`` of ``table``'s schema.

        ``table`` is ``"<namespace>.<table>"``. The data stays as it is: this tests how
        clients meet a schema with unknown keywords, free-form objects, type arrays ...
        """
        with self._lock:
            self.schema_patches.setdefault(table, {})[column] = dict(prop)

    def patch_data(self, table: str, column: str, value: Any) -> None:
        """Serve ``value`` in the ``value`` column ``column`` of the first row of every result.

        ``value`` is any value of the column's type (``float("nan")``, a long string ...), or
        ``bytes`` for a text column: written as they are, so ``b"\\xff"`` is invalid UTF-8.
        """
        with self._lock:
            self.data_patches.setdefault(table, {})[column] = value

    def apply(self, doc: dict[str, Any]) -> None:
        """Set faults from a JSON document (``POST /emulator/faults``).

        Keys: ``bursts`` (list of ``{endpoint, status, count, retry_after}``), ``fail_jobs``,
        ``job_seconds``, ``drop_downloads`` (``{count, after_bytes}``), ``expire_urls``,
        ``token_ttl``, ``rate_limits`` (bool or ``{endpoint: calls per minute}``),
        ``revoke_tokens`` (bool), ``latency`` (seconds), ``object_bandwidth`` (bytes/s or null),
        ``schema_patches`` and ``data_patches`` (``{"<ns>.<table>": {column: property or
        value}}``, see :meth:`patch_schema` and :meth:`patch_data`), ``corrupt_objects``
        (``{count, mode}``, mode ``truncate`` or ``garble``).
        """
        known = {"bursts", "fail_jobs", "job_seconds", "drop_downloads", "expire_urls",
                 "token_ttl", "rate_limits", "revoke_tokens", "latency", "object_bandwidth",
                 "schema_patches", "data_patches", "corrupt_objects"}
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; known: {sorted(known)}")
        for b in doc.get("bursts", []):
            self.burst(b["endpoint"], status=int(b["status"]), count=int(b.get("count", 1)),
                       retry_after=b.get("retry_after"))
        if "fail_jobs" in doc:
            self.fail_next_jobs(int(doc["fail_jobs"]))
        if "job_seconds" in doc:
            self.job_seconds = float(doc["job_seconds"])
        if "drop_downloads" in doc:
            d = doc["drop_downloads"]
            self.drop_downloads(count=int(d.get("count", 1)),
                                after_bytes=int(d.get("after_bytes", 1000)))
        if "expire_urls" in doc:
            self.expire_urls(count=int(doc["expire_urls"]))
        if "corrupt_objects" in doc:
            c = doc["corrupt_objects"]
            self.corrupt_objects(count=int(c.get("count", 1)), mode=str(c.get("mode", "truncate")))
        if "token_ttl" in doc:
            self.token_ttl = int(doc["token_ttl"])
        if "rate_limits" in doc:
            rl = doc["rate_limits"]
            if isinstance(rl, dict):
                self.limits.update({k: int(v) for k, v in rl.items()})
                self.rate_limits = True
            else:
                self.rate_limits = bool(rl)
        if doc.get("revoke_tokens"):
            self.revoke_tokens()
        if "latency" in doc:
            self.latency = float(doc["latency"])
        if "object_bandwidth" in doc:
            bw = doc["object_bandwidth"]
            self.object_bandwidth = None if bw is None else float(bw)
        for table, columns in doc.get("schema_patches", {}).items():
            for column, prop in columns.items():
                self.patch_schema(table, column, prop)
        for table, columns in doc.get("data_patches", {}).items():
            for column, value in columns.items():
                self.patch_data(table, column, value)

    # -- consumed by the server ---------------------------------------------------------------
    def take_burst(self, endpoint: str) -> Burst | None:
        with self._lock:
            queue = self._bursts[endpoint]
            if not queue:
                return None
            head = queue[0]
            head.count -= 1
            if head.count <= 0:
                queue.popleft()
            return head

    def take_job_failure(self) -> bool:
        with self._lock:
            if self._fail_jobs > 0:
                self._fail_jobs -= 1
                return True
            return False

    def take_drop(self) -> int | None:
        with self._lock:
            return self._drops.popleft() if self._drops else None

    def take_expired_url(self) -> bool:
        with self._lock:
            if self._expired_urls > 0:
                self._expired_urls -= 1
                return True
            return False

    def take_corruption(self) -> str | None:
        with self._lock:
            return self._corrupt.popleft() if self._corrupt else None

    def rate_limited(self, endpoint: str) -> float | None:
        """Record a call; return seconds to wait if it exceeds the endpoint's limit."""
        now = time.monotonic()
        with self._lock:
            calls = self._calls[endpoint]
            while calls and now - calls[0] >= 60.0:
                calls.popleft()
            limit = self.limits.get(endpoint)
            if self.rate_limits and limit is not None and len(calls) >= limit:
                self.rate_limited_answers += 1
                return max(0.0, 60.0 - (now - calls[0]))
            calls.append(now)
            return None

    def state(self) -> dict[str, Any]:
        """A JSON view of the knobs, for ``GET /emulator/state``."""
        with self._lock:
            return {
                "job_seconds": self.job_seconds,
                "token_ttl": self.token_ttl,
                "rate_limits": self.limits if self.rate_limits else False,
                "pending_bursts": {
                    e: sum(b.count for b in q) for e, q in self._bursts.items() if q
                },
                "fail_jobs": self._fail_jobs,
                "drop_downloads": len(self._drops),
                "expire_urls": self._expired_urls,
                "corrupt_objects": len(self._corrupt),
                "rate_limited_answers": self.rate_limited_answers,
            }
