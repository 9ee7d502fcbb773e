"""The synchronous DAP client: the async client run on a private event loop in a thread.

Running the loop in a background thread (a "portal") instead of ``asyncio.run`` per call means
the client keeps its connection pool between calls and works where an event loop is already
running in the caller's thread, as in Jupyter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from collections.abc import Coroutine, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from dapframe.config import DapConfig, Secret
from dapframe.errors import UsageError
from dapframe.wire import Job, QueryRequest, SchemaResponse

from ._auth import DapAuth
from ._client import DEFAULT_POLL, DEFAULT_TIMEOUT, AsyncDapClient, ProgressCallback
from ._ratelimit import DEFAULT_RATE_LIMITS, RateLimits
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from dapframe.result import QueryResult, QuerySpec

__all__ = ["DapClient"]

_T = TypeVar("_T")


class _Portal:
    """An event loop running forever in a daemon thread; coroutines are submitted to it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dapframe-portal", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._loop.is_closed()

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise UsageError(
                "DapClient was called from its own event loop thread: use AsyncDapClient there"
            )
        if not self.running:
            coro.close()
            raise UsageError("this DapClient is closed: create a new one")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except (KeyboardInterrupt, concurrent.futures.CancelledError):
            # Ctrl-C (or a notebook interrupt) stops the work in the portal too.
            future.cancel()
            raise

    def stop(self) -> None:
        if self._thread.is_alive() and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout=10)


class DapClient:
    """Synchronous client of the DAP Query API; same methods as :class:`AsyncDapClient`.

    Safe to use inside a running event loop (Jupyter): the work runs on a private loop in a
    background thread, and each call blocks until its result is ready.

    Parameters
    ----------
    config, base_url, client_id, client_secret, transport, retry, max_concurrency,
    range_streams, timeout, url_batch_size, download_attempts, rate_limits
        As for :class:`AsyncDapClient`.

    Notes
    -----
    A ``progress`` callback given to :meth:`download` or :meth:`query` is called on the
    background loop's thread (``dapframe-portal``), not the caller's: keep it cheap and
    thread-safe (e.g. update a counter or a progress bar that accepts updates from threads),
    and do not call this client from it.

    Examples
    --------
    >>> with DapClient() as dap:                                  # doctest: +SKIP
    ...     print(dap.list_tables("canvas"))
    """

    def __init__(
        self,
        config: DapConfig | None = None,
        *,
        base_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | Secret | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 16,
        range_streams: int = 16,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        url_batch_size: int = 100,
        download_attempts: int = 3,
        rate_limits: RateLimits | None = DEFAULT_RATE_LIMITS,
    ) -> None:
        # Built in the caller's thread so that configuration errors surface right here.
        self._client = AsyncDapClient(
            config,
            base_url=base_url,
            client_id=client_id,
            client_secret=client_secret,
            transport=transport,
            retry=retry,
            max_concurrency=max_concurrency,
            range_streams=range_streams,
            timeout=timeout,
            url_batch_size=url_batch_size,
            download_attempts=download_attempts,
            rate_limits=rate_limits,
        )
        self._portal = _Portal()
        # A client that is never closed still lets its thread stop when collected.
        self._finalizer = weakref.finalize(self, self._portal.stop)

    def __repr__(self) -> str:
        cfg = self._client.config
        return f"DapClient(base_url={cfg.base_url!r}, client_id={cfg.client_id!r})"

    @property
    def config(self) -> DapConfig:
        """The connection settings in use."""
        return self._client.config

    @property
    def auth(self) -> DapAuth:
        """The authentication flow."""
        return self._client.auth

    @property
    def rate_limits(self) -> RateLimits | None:
        """The client-side rate limits in force (``None``: none)."""
        return self._client.rate_limits

    @property
    def async_client(self) -> AsyncDapClient:
        """The wrapped async client (use it only on the portal's loop)."""
        return self._client

    def __enter__(self) -> DapClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the background loop (idempotent)."""
        if self._portal.running:
            try:
                self._portal.call(self._client.aclose())
            finally:
                self._finalizer()

    def list_tables(self, namespace: str) -> list[str]:
        """List the tables of a namespace (see :meth:`AsyncDapClient.list_tables`)."""
        return self._portal.call(self._client.list_tables(namespace))

    def get_schema(self, namespace: str, table: str) -> SchemaResponse:
        """Read a table's schema (see :meth:`AsyncDapClient.get_schema`)."""
        return self._portal.call(self._client.get_schema(namespace, table))

    def start_query(self, namespace: str, table: str, request: QueryRequest) -> Job:
        """Start a query job (see :meth:`AsyncDapClient.start_query`)."""
        return self._portal.call(self._client.start_query(namespace, table, request))

    def get_job(self, job: str | Job) -> Job:
        """Fetch a job's state (see :meth:`AsyncDapClient.get_job`)."""
        return self._portal.call(self._client.get_job(job))

    def wait(
        self, job: Job, *, deadline: float | None = None, poll: Sequence[float] = DEFAULT_POLL
    ) -> Job:
        """Poll a job until complete (see :meth:`AsyncDapClient.wait`)."""
        return self._portal.call(self._client.wait(job, deadline=deadline, poll=poll))

    def object_urls(self, object_ids: Iterable[str]) -> dict[str, str]:
        """Trade object ids for URLs (see :meth:`AsyncDapClient.object_urls`)."""
        return self._portal.call(self._client.object_urls(list(object_ids)))

    def download(
        self,
        job: Job,
        directory: str | os.PathLike[str],
        *,
        decompress: bool = False,
        progress: ProgressCallback | None = None,
        skip_existing: bool = True,
    ) -> list[Path]:
        """Download a complete job's files (see :meth:`AsyncDapClient.download`).

        ``progress`` is called on the background loop's thread, not the caller's.
        """
        return self._portal.call(
            self._client.download(job, directory, decompress=decompress, progress=progress,
                                  skip_existing=skip_existing)
        )

    def fetch(self, spec: QuerySpec, **kwargs: Any) -> QueryResult:
        """Run a query spec to completion (see :meth:`AsyncDapClient.fetch`)."""
        return self._portal.call(self._client.fetch(spec, **kwargs))

    def snapshot(self, table: str, **kwargs: Any) -> QueryResult:
        """Fetch a snapshot (see :func:`dapframe.snapshot`)."""
        return self._portal.call(self._client.snapshot(table, **kwargs))

    def incremental(self, table: str, *, since: datetime, **kwargs: Any) -> QueryResult:
        """Fetch the changes in (since, until] (see :func:`dapframe.incremental`)."""
        return self._portal.call(self._client.incremental(table, since=since, **kwargs))

    def query(
        self,
        namespace: str,
        table: str,
        request: QueryRequest,
        directory: str | os.PathLike[str],
        *,
        deadline: float | None = None,
        decompress: bool = False,
        progress: ProgressCallback | None = None,
        skip_existing: bool = True,
    ) -> tuple[Job, list[Path]]:
        """Query, wait and download (see :meth:`AsyncDapClient.query`).

        ``progress`` is called on the background loop's thread, not the caller's.
        """
        return self._portal.call(
            self._client.query(
                namespace, table, request, directory, deadline=deadline, decompress=decompress,
                progress=progress, skip_existing=skip_existing,
            )
        )
