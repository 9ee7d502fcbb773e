"""The asynchronous DAP Query API client."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import httpx

from dapframe.config import DapConfig, Secret
from dapframe.errors import (
    DownloadError,
    JobFailedError,
    JobTimeoutError,
    ServerError,
    UsageError,
)
from dapframe.wire import (
    FORMATS,
    Job,
    QueryRequest,
    SchemaResponse,
    TableList,
    WireError,
    object_urls_from_json,
)

from ._auth import DapAuth
from ._errors import (
    Context,
    api_error,
    is_json,
    one_line,
    safe_url,
    transport_error,
    unexpected_response,
)
from ._ratelimit import DEFAULT_RATE_LIMITS, RATE_LIMIT_EXTENSION, RateLimiter, RateLimits
from ._retry import RetryPolicy, RetryTransport
from ._version import __version__

if TYPE_CHECKING:
    from dapframe.result import QueryResult, QuerySpec

__all__ = [
    "DEFAULT_POLL",
    "DEFAULT_TIMEOUT",
    "AsyncDapClient",
    "DownloadProgress",
    "ProgressCallback",
]

logger = logging.getLogger("dapframe.api")

#: Seconds between job polls: fast at first (small jobs finish in seconds), every second up to
#: ~6 s, every 2 s up to ~16 s, then every 5 s as the official client does from the start.
#: Many tables at once stay within the job endpoint's limit (500/min): the limiter paces them.
DEFAULT_POLL: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5) + (1.0,) * 5 + (2.0,) * 5 + (5.0,)
#: Per-request timeouts; ``read`` is per chunk, so long downloads are fine.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=15.0)

_BASE_URL_HINT = "check --base-url / DAP_API_URL"
_T = TypeVar("_T")

#: Mid-body failures after which one object is fetched again with a fresh URL.
_DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout, zlib.error)
#: Received bytes between two progress events of one object.
PROGRESS_STEP = 64 * 1024
#: Objects at least this large are fetched as several byte ranges at once (when the server
#: says ``Accept-Ranges: bytes``, as S3 does): object storage paces each connection.
RANGED_MIN_BYTES = 8 * 1024 * 1024
#: Aimed-for size of one range, and the most ranges one object is cut into.
RANGE_BYTES = 4 * 1024 * 1024
MAX_RANGES = 8


@dataclasses.dataclass(frozen=True, slots=True)
class DownloadProgress:
    """One progress event of :meth:`AsyncDapClient.download`.

    Attributes
    ----------
    job_id : str
        The job being downloaded.
    object_id : str
        The object this event is about.
    file_name : str
        Its local file name (in the download directory).
    bytes_done : int
        Bytes of this object received so far, as sent (compressed, even with
        ``decompress``). When the object starts over with a fresh URL (dropped stream,
        expired URL), one event with 0 (and ``bytes_total`` ``None``) says so. For a
        skipped object: the size of the file already on disk.
    bytes_total : int or None
        The object's size from ``Content-Length``; ``None`` when the server did not say.
    parts_done : int
        Objects of the job finished (or skipped) so far, this one included if ``finished``.
    parts_total : int
        Objects in the job.
    finished : bool
        This object's file is complete under its final name.
    skipped : bool
        The file was already there from an earlier run and was not downloaded again.
    """

    job_id: str
    object_id: str
    file_name: str
    bytes_done: int
    bytes_total: int | None
    parts_done: int
    parts_total: int
    finished: bool
    skipped: bool = False


#: Receives :class:`DownloadProgress` events; called on the event loop's thread, so it must
#: be cheap and must not block.
ProgressCallback = Callable[[DownloadProgress], None]


class _Progress:
    """Counts finished parts of one download and hands events to the caller's callback."""

    def __init__(self, job_id: str, parts_total: int, callback: ProgressCallback) -> None:
        self.job_id = job_id
        self.parts_total = parts_total
        self.parts_done = 0
        self._callback = callback

    def bytes(self, object_id: str, name: str, done: int, total: int | None) -> None:
        self._emit(object_id, name, done, total, finished=False)

    def finished(self, object_id: str, name: str, done: int, total: int | None,
                 *, skipped: bool = False) -> None:
        self.parts_done += 1
        self._emit(object_id, name, done, total, finished=True, skipped=skipped)

    def _emit(self, object_id: str, name: str, done: int, total: int | None, *,
              finished: bool, skipped: bool = False) -> None:
        self._callback(DownloadProgress(
            job_id=self.job_id, object_id=object_id, file_name=name, bytes_done=done,
            bytes_total=total, parts_done=self.parts_done, parts_total=self.parts_total,
            finished=finished, skipped=skipped,
        ))


class _RetryObject(Exception):
    """Internal: this object's download should start over with a fresh URL."""


class _Gunzip:
    """Streaming gunzip that also handles multi-member gzip files."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(wbits=31)  # 31 = gzip header and trailer

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            out.append(self._inflater.decompress(data))
            if self._inflater.eof and self._inflater.unused_data:
                data = self._inflater.unused_data
                self._inflater = zlib.decompressobj(wbits=31)
            else:
                data = b""
        return b"".join(out)

    @property
    def complete(self) -> bool:
        return self._inflater.eof


def _segment(name: str) -> str:
    # Names go into the URL path; quoting keeps a stray "/" or "?" from changing the route.
    return quote(name, safe="")


class AsyncDapClient:
    """Asynchronous client of the DAP Query API (Canvas Data 2).

    Parameters
    ----------
    config : DapConfig, optional
        Connection settings; read with :meth:`DapConfig.from_env` (``DAP_API_URL``,
        ``DAP_CLIENT_ID``, ``DAP_CLIENT_SECRET``) when not given.
    base_url, client_id, client_secret : str, optional
        Override the matching settings of ``config`` (or of the environment).
    transport : httpx.AsyncBaseTransport, optional
        Transport doing the I/O (e.g. :class:`httpx.MockTransport` in tests). It is wrapped
        in a :class:`RetryTransport` unless it already is one.
    retry : RetryPolicy, optional
        Retry attempts and waits (default :class:`RetryPolicy`).
    max_concurrency : int
        Most objects downloaded at the same time.
    range_streams : int
        Extra streams that fetch byte ranges of large objects (8 MiB and up) beside their
        main stream, shared by all objects, as the AWS CLI and s5cmd do against S3, whose
        connections are paced one by one. 0 fetches every object over one stream.
    timeout : float or httpx.Timeout
        Per-request timeouts.
    url_batch_size : int
        Object ids per ``POST /dap/object/url`` call.
    download_attempts : int
        Attempts per object when a download breaks mid-body or its URL has expired; each
        new attempt fetches a fresh URL.
    rate_limits : RateLimits, optional
        Client-side limits per endpoint, e.g. ``RateLimits()`` for the API's documented ones:
        calls beyond a limit wait their turn instead of meeting HTTP 429 (many tables at
        once). Every attempt counts, retries included. On by default with the API's
        documented limits; ``None`` turns them off (e.g. against the emulator in tests); a 429
        is retried as its ``Retry-After`` asks either way.

    Raises
    ------
    ConfigError
        Credentials missing or base URL malformed.

    Examples
    --------
    >>> async with AsyncDapClient() as dap:                       # doctest: +SKIP
    ...     job, files = await dap.query("canvas", "accounts", QueryRequest("jsonl"), "out")
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
        if config is None:
            config = DapConfig.from_env(
                base_url=base_url, client_id=client_id, client_secret=client_secret
            )
        else:
            changes: dict[str, Any] = {
                k: v
                for k, v in (
                    ("base_url", base_url), ("client_id", client_id),
                    ("client_secret", client_secret),
                )
                if v is not None
            }
            if changes:
                config = dataclasses.replace(config, **changes)
        if max_concurrency < 1 or url_batch_size < 1 or download_attempts < 1:
            raise UsageError(
                "max_concurrency, url_batch_size and download_attempts must be at least 1"
            )
        if range_streams < 0:
            raise UsageError("range_streams must be 0 (off) or more")
        self._config = config
        self._max_concurrency = max_concurrency
        self._range_streams = range_streams
        self._url_batch_size = url_batch_size
        self._download_attempts = download_attempts
        self._rate_limits = rate_limits
        self._limiter = RateLimiter(rate_limits) if rate_limits is not None else None
        self._auth = DapAuth(config.base_url, config.client_id, config.client_secret)
        if transport is None:
            # Downloads, their range streams, and a few JSON calls alongside.
            pool = max_concurrency + range_streams + 4
            transport = httpx.AsyncHTTPTransport(
                verify=config.verify,
                limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            )
        if not isinstance(transport, RetryTransport):
            transport = RetryTransport(transport, retry)
        elif retry is not None:
            transport.policy = retry
        self._transport = transport
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            auth=self._auth,
            transport=transport,
            timeout=timeout,
            headers={"User-Agent": f"dapframe/{__version__}"},
            follow_redirects=False,
        )
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None
        self._range_semaphore: asyncio.Semaphore | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self._config.base_url!r}, "
            f"client_id={self._config.client_id!r})"
        )

    @property
    def config(self) -> DapConfig:
        """The connection settings in use (the secret stays hidden in its ``repr``)."""
        return self._config

    @property
    def auth(self) -> DapAuth:
        """The authentication flow (shows e.g. how many logins happened)."""
        return self._auth

    @property
    def rate_limits(self) -> RateLimits | None:
        """The client-side rate limits in force (``None``: none)."""
        return self._rate_limits

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` ran."""
        return self._http.is_closed

    async def __aenter__(self) -> AsyncDapClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- JSON endpoints --------------------------------------------------------------------

    async def list_tables(self, namespace: str) -> list[str]:
        """List the tables of a namespace.

        Parameters
        ----------
        namespace : str
            E.g. ``canvas``, ``canvas_logs``, ``catalog``.

        Returns
        -------
        list of str
            Table names, as the API lists them.

        Raises
        ------
        NotFoundError
            Unknown namespace.
        """
        ctx = Context(f"listing the tables of namespace '{namespace}'", namespace)
        response = await self._call(
            "GET", f"/dap/query/{_segment(namespace)}/table", ctx, endpoint="tables"
        )
        return self._parse(response, ctx, TableList.from_json).tables

    async def get_schema(self, namespace: str, table: str) -> SchemaResponse:
        """Read a table's JSON Schema and its version.

        Raises
        ------
        NotFoundError
            Unknown namespace or table.
        """
        ctx = Context(f"reading the schema of {namespace}.{table}", namespace, table)
        path = f"/dap/query/{_segment(namespace)}/table/{_segment(table)}/schema"
        response = await self._call("GET", path, ctx, endpoint="schema")
        return self._parse(response, ctx, SchemaResponse.from_json)

    async def start_query(self, namespace: str, table: str, request: QueryRequest) -> Job:
        """Start a snapshot (no ``since``) or incremental query job.

        Parameters
        ----------
        namespace, table : str
            What to export.
        request : QueryRequest
            Format, optional mode, and ``since``/``until`` for an incremental query.

        Returns
        -------
        Job
            The job as the API reports it (often still ``waiting``/``running``; an identical
            earlier query may give back that job).

        Raises
        ------
        UsageError
            Unknown format, or ``until`` without ``since``.
        NotFoundError, ValidationError, OutOfRangeError, SnapshotRequiredError
            As the API answers.
        """
        if request.format not in FORMATS:
            raise UsageError(
                f"unknown format {request.format!r}: use one of {', '.join(FORMATS)}"
            )
        if request.until is not None and request.since is None:
            raise UsageError("until needs since: give --since too, or drop --until")
        ctx = Context(f"starting a query on {namespace}.{table}", namespace, table)
        path = f"/dap/query/{_segment(namespace)}/table/{_segment(table)}/data"
        response = await self._call(
            "POST", path, ctx, json_body=request.to_json(), endpoint="query"
        )
        job = self._parse(response, ctx, Job.from_json)
        logger.info("query on %s.%s: job %s is %s", namespace, table, job.id, job.status)
        return job

    async def get_job(self, job: str | Job) -> Job:
        """Fetch the current state of a job.

        Parameters
        ----------
        job : str or Job
            The job or its id.

        Raises
        ------
        NotFoundError
            The job is unknown or expired (24 h).
        """
        job_id = job.id if isinstance(job, Job) else job
        ctx = Context(f"polling job '{job_id}'")
        response = await self._call("GET", f"/dap/job/{_segment(job_id)}", ctx, endpoint="job")
        return self._parse(response, ctx, Job.from_json)

    async def wait(
        self,
        job: Job,
        *,
        deadline: float | None = None,
        poll: Sequence[float] = DEFAULT_POLL,
    ) -> Job:
        """Poll a job until it is complete.

        Parameters
        ----------
        job : Job
            A job from :meth:`start_query` (returned at once if already terminal).
        deadline : float, optional
            Most seconds to wait, counted from this call; no limit by default.
        poll : sequence of float
            Waits between polls; the last one repeats (default 0.05 s rising to 5 s in ~16 s).

        Returns
        -------
        Job
            The complete job, with its objects.

        Raises
        ------
        JobFailedError
            The job ended ``failed`` (``error_type`` and ``uuid`` say why).
        JobTimeoutError
            Still not done at the deadline.
        """
        if not poll or min(poll) < 0:
            raise UsageError("poll must be a non-empty sequence of non-negative seconds")
        start = time.monotonic()
        current = job
        polls = 0
        while not current.terminal:
            delay = poll[min(polls, len(poll) - 1)]
            if deadline is not None:
                remaining = start + deadline - time.monotonic()
                if remaining <= 0:
                    raise JobTimeoutError(
                        f"job {current.id} still {current.status} after {deadline:g} s: give a "
                        "longer deadline, or run the same query again later (the API hands "
                        "back this job while it lives)",
                        job_id=current.id,
                    )
                delay = min(delay, remaining)
            await asyncio.sleep(delay)
            polls += 1
            current = await self.get_job(current.id)
            logger.debug("job %s is %s (poll %d)", current.id, current.status, polls)
        if current.status == "failed":
            raise self._job_failed(current)
        return current

    async def object_urls(self, object_ids: Iterable[str]) -> dict[str, str]:
        """Trade object ids for pre-signed download URLs (batched ``POST /dap/object/url``).

        Returns
        -------
        dict
            ``{object id: URL}`` for every id asked for.

        Raises
        ------
        NotFoundError
            An object is unknown or expired.
        """
        ids = list(dict.fromkeys(object_ids))
        result: dict[str, str] = {}
        size = self._url_batch_size
        for start in range(0, len(ids), size):
            batch = ids[start:start + size]
            ctx = Context(f"asking for the URLs of {len(batch)} object(s)")
            body = [{"id": oid} for oid in batch]
            response = await self._call(
                "POST", "/dap/object/url", ctx, json_body=body, endpoint="object_url"
            )
            urls = self._parse(response, ctx, object_urls_from_json)
            missing = [oid for oid in batch if oid not in urls]
            if missing:
                raise ServerError(
                    f"unexpected response from server while {ctx.action}: no URL for object "
                    f"'{missing[0]}'; try again, or start a new query",
                    status=response.status_code,
                )
            result.update((oid, urls[oid]) for oid in batch)
        return result

    # -- downloads -------------------------------------------------------------------------

    async def download(
        self,
        job: Job,
        directory: str | os.PathLike[str],
        *,
        decompress: bool = False,
        progress: ProgressCallback | None = None,
        skip_existing: bool = True,
    ) -> list[Path]:
        """Download every object of a complete job into ``directory``.

        Objects are streamed in parallel (at most ``max_concurrency`` at a time), each into
        ``<name>.part`` that is renamed once complete, so a file with its final name is always
        whole. The name is the basename of the URL path. A download that breaks mid-body, or
        whose URL has expired (403), starts over with a fresh URL.

        Parameters
        ----------
        job : Job
            A complete job (see :meth:`wait`).
        directory : path
            Created if missing.
        decompress : bool
            Gunzip while streaming and drop the ``.gz`` suffix (not for Parquet).
        progress : callable, optional
            Receives a :class:`DownloadProgress` at most every 64 KiB received per object,
            once per object when it is finished (or skipped), and once when an object starts
            over. Called on the event loop's thread: keep it cheap. An exception it raises
            aborts the download.
        skip_existing : bool
            Resume an interrupted run: an object whose file already exists under its final
            name is not downloaded again (a final name only ever holds a whole file). Its
            leftover ``.part`` file, if any, is removed. The API hands back the same job for
            an identical query while that job lives, so the names match. ``False``
            downloads and overwrites every file.

        Returns
        -------
        list of Path
            The files, in the order of ``job.objects`` (skipped ones included).

        Raises
        ------
        UsageError
            The job is not complete, or ``decompress`` was asked for Parquet.
        DownloadError
            An object still failed after every attempt.
        """
        if job.status == "failed":
            raise self._job_failed(job)
        if job.status != "complete":
            raise UsageError(
                f"job {job.id} is still {job.status}: call wait(job) before download(job)"
            )
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        ids = list(dict.fromkeys(o.id for o in job.objects))
        if not ids:
            return []
        # URLs for every object, skipped ones too: the file names come from the URL paths.
        urls = await self.object_urls(ids)
        names = _file_names(ids, urls, decompress)
        paths = {oid: target / names[oid] for oid in ids}
        tracker = _Progress(job.id, len(ids), progress) if progress is not None else None
        todo: list[str] = []
        for oid in ids:
            final = paths[oid]
            if skip_existing and final.is_file():
                # Only this job's own leftovers are touched: others may share the directory.
                _part_path(final).unlink(missing_ok=True)
                if tracker is not None:
                    size = final.stat().st_size
                    tracker.finished(oid, final.name, size, size, skipped=True)
            else:
                todo.append(oid)
        if len(todo) < len(ids):
            logger.info("job %s: %d of %d file(s) already in %s; downloading %d",
                        job.id, len(ids) - len(todo), len(ids), target, len(todo))
        semaphore = self._get_semaphore()
        try:
            # A TaskGroup cancels the other downloads as soon as one fails for good.
            async with asyncio.TaskGroup() as group:
                for oid in todo:
                    group.create_task(
                        self._download_object(oid, urls[oid], paths[oid], decompress,
                                              semaphore, tracker)
                    )
        except ExceptionGroup as group_error:
            raise group_error.exceptions[0] from None
        logger.info("job %s: downloaded %d file(s) into %s", job.id, len(todo), target)
        return [paths[oid] for oid in ids]

    async def fetch(self, spec: QuerySpec, *, directory: str | os.PathLike[str] | None = None,
                    naming: str = "plain", deadline: float | None = None,
                    progress: ProgressCallback | None = None,
                    decompress: bool = False, eager: bool = False) -> QueryResult:
        """Run a query spec to completion and return its :class:`~dapframe.QueryResult`.

        ``eager`` decodes parquet parts as they land, for the result's ``to_polars()``.
        """
        # The result hub sits above the client; imported here so the client needs none of it.
        from dapframe.result import afetch

        return await afetch(self, spec, directory=directory, naming=naming, deadline=deadline,
                            progress=progress, decompress=decompress, eager=eager)

    async def snapshot(self, table: str, *, namespace: str | None = None,
                       format: str = "parquet", **kwargs: Any) -> QueryResult:
        """Fetch a snapshot (see :func:`dapframe.snapshot`)."""
        from dapframe.result import QuerySpec, parse_table_name

        ns, name = parse_table_name(table, namespace)
        return await self.fetch(QuerySpec(ns, name, format=format), **kwargs)

    async def incremental(self, table: str, *, since: datetime, until: datetime | None = None,
                          namespace: str | None = None, format: str = "parquet",
                          **kwargs: Any) -> QueryResult:
        """Fetch the changes in (since, until] (see :func:`dapframe.incremental`)."""
        from dapframe.result import QuerySpec, parse_table_name

        ns, name = parse_table_name(table, namespace)
        return await self.fetch(QuerySpec(ns, name, format=format, since=since, until=until),
                                **kwargs)

    async def query(
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
        """Start a query, wait for it and download its files.

        Parameters
        ----------
        namespace, table : str
            What to export.
        request : QueryRequest
            Format and optional ``since``/``until``.
        directory : path
            Where the files go.
        deadline : float, optional
            Most seconds to wait for the job.
        decompress : bool
            Gunzip text formats while downloading.
        progress : callable, optional
            Download progress events (see :meth:`download`).
        skip_existing : bool
            Keep files of an interrupted earlier run of the same query (see :meth:`download`).

        Returns
        -------
        (Job, list of Path)
            The complete job and the downloaded files.
        """
        if decompress and request.format == "parquet":
            raise UsageError(_PARQUET_DECOMPRESS)
        job = await self.start_query(namespace, table, request)
        job = await self.wait(job, deadline=deadline)
        files = await self.download(job, directory, decompress=decompress, progress=progress,
                                    skip_existing=skip_existing)
        return job, files

    # -- internals -------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, ctx: Context, *, endpoint: str, json_body: Any = None
    ) -> httpx.Response:
        logger.debug("%s %s", method, path)
        # The retry transport waits at this gate before each attempt (see _ratelimit).
        gate = self._limiter.gate(endpoint) if self._limiter is not None else None
        extensions = {RATE_LIMIT_EXTENSION: gate} if gate is not None else None
        try:
            response = await self._http.request(
                method, path, json=json_body, headers={"Accept": "application/json"},
                extensions=extensions,
            )
        except httpx.TransportError as exc:
            raise transport_error(
                exc, where=self._config.base_url, hint=_BASE_URL_HINT
            ) from exc
        if response.status_code >= 400:
            raise api_error(response, ctx)
        if not is_json(response):
            raise unexpected_response(response, ctx)
        return response

    @staticmethod
    def _parse(response: httpx.Response, ctx: Context, parser: Callable[[Any], _T]) -> _T:
        try:
            return parser(response.json())
        except (ValueError, WireError) as exc:
            raise unexpected_response(response, ctx, one_line(exc)) from None

    @staticmethod
    def _job_failed(job: Job) -> JobFailedError:
        err = job.error
        etype = err.type if err else None
        what = f"{etype}: {one_line(err.message)}" if err else "no reason given"
        support = f"; quote error id {err.uuid} to Instructure support" if err and err.uuid else ""
        return JobFailedError(
            f"job {job.id} failed ({what}): run the query again{support}",
            job_id=job.id, error_type=etype, uuid=err.uuid if err else None,
        )

    async def _fetch_ranged(self, response: httpx.Response, object_id: str, url: str,
                            part: Path, total: int, received: _Received) -> None:
        """Fetch a large object as byte ranges at once; ``response`` carries the first one.

        The file is sized up front and each range written at its offset; a range that breaks
        or is refused makes the whole object start over, as a broken single stream does.
        """
        n = min(MAX_RANGES, max(2, -(-total // RANGE_BYTES)))
        bounds = [total * i // n for i in range(n + 1)]
        with open(part, "wb") as fh:
            fh.truncate(total)
        try:
            async with asyncio.TaskGroup() as group:
                for i in range(1, n):
                    group.create_task(self._fetch_range(object_id, url, part, bounds[i],
                                                        bounds[i + 1], received))
                await _write_span(response.aiter_raw(), part, 0, bounds[1], received)
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None

    async def _fetch_range(self, object_id: str, url: str, part: Path, first: int, end: int,
                           received: _Received) -> None:
        assert self._range_semaphore is not None
        async with self._range_semaphore:
            try:
                headers = {"Range": f"bytes={first}-{end - 1}"}
                async with self._http.stream("GET", url, auth=None, headers=headers) as r:
                    if r.status_code == 403:
                        raise _RetryObject("URL refused with HTTP 403 (expired pre-signed URL?)")
                    if r.status_code != 206 or not r.headers.get(
                            "content-range", "").startswith(f"bytes {first}-{end - 1}/"):
                        raise _RetryObject(f"range {first}-{end - 1} answered with HTTP "
                                           f"{r.status_code}, not the range")
                    await _write_span(r.aiter_raw(), part, first, end, received)
            except _DROPPED as exc:
                raise _RetryObject(f"connection dropped mid-range ({type(exc).__name__}: "
                                   f"{one_line(exc, 120)})") from exc
            except httpx.TransportError as exc:
                err = transport_error(exc, where=safe_url(url), hint="check your network",
                                      service="the object storage")
                raise DownloadError(f"object {object_id} could not be downloaded: {err}",
                                    object_id=object_id) from exc
            except OSError as exc:
                raise _write_error(object_id, part, exc) from exc

    def _get_semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            self._semaphore = asyncio.Semaphore(self._max_concurrency)
            self._range_semaphore = asyncio.Semaphore(max(1, self._range_streams))
            self._semaphore_loop = loop
        return self._semaphore

    async def _download_object(
        self,
        object_id: str,
        url: str,
        final: Path,
        decompress: bool,
        semaphore: asyncio.Semaphore,
        tracker: _Progress | None = None,
    ) -> Path:
        part = _part_path(final)
        async with semaphore:
            try:
                for attempt in range(1, self._download_attempts + 1):
                    try:
                        done, total = await self._fetch(object_id, url, part, decompress,
                                                        tracker, final.name)
                    except _RetryObject as exc:
                        part.unlink(missing_ok=True)
                        if attempt == self._download_attempts:
                            raise DownloadError(
                                f"object {object_id} could not be downloaded after "
                                f"{attempt} attempt(s) ({exc}): run the download again",
                                object_id=object_id,
                            ) from exc.__cause__
                        if tracker is not None:
                            # Tell the caller this object starts over (a bar may step back).
                            tracker.bytes(object_id, final.name, 0, None)
                        logger.info(
                            "object %s: %s; fetching a fresh URL (attempt %d of %d)",
                            object_id, exc, attempt + 1, self._download_attempts,
                        )
                        url = (await self.object_urls([object_id]))[object_id]
                        continue
                    try:
                        # atomic: the final name only ever sees whole files
                        os.replace(part, final)
                    except OSError as exc:
                        raise _write_error(object_id, final, exc) from exc
                    logger.debug("object %s saved as %s", object_id, final)
                    if tracker is not None:
                        tracker.finished(object_id, final.name, done, total)
                    return final
            finally:
                # On any failure or cancellation, no partial file is left behind.
                part.unlink(missing_ok=True)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch(
        self,
        object_id: str,
        url: str,
        part: Path,
        decompress: bool,
        tracker: _Progress | None = None,
        name: str = "",
    ) -> tuple[int, int | None]:
        """Stream one object into ``part``; return (bytes received, Content-Length)."""
        shown = safe_url(url)
        try:
            # auth=None: pre-signed URLs must not receive the bearer token.
            async with self._http.stream("GET", url, auth=None) as response:
                status = response.status_code
                if status == 403:
                    raise _RetryObject("URL refused with HTTP 403 (expired pre-signed URL?)")
                if status >= 400:
                    raise DownloadError(
                        f"object {object_id} could not be downloaded (HTTP {status} from "
                        f"{shown}) after every retry: try again later",
                        object_id=object_id,
                    )
                gunzip = _Gunzip() if decompress else None
                # Without Content-Length a dropped connection can look like a clean end;
                # then check the gzip trailer to tell.
                check = (
                    _Gunzip()
                    if gunzip is None and "content-length" not in response.headers
                    and part.name.endswith(".gz.part")
                    else None
                )
                declared = response.headers.get("content-length")
                total = int(declared) if declared is not None and declared.isdigit() else None
                if (total is not None and total >= RANGED_MIN_BYTES and gunzip is None
                        and check is None and self._range_streams > 0 and status == 200
                        and response.headers.get("accept-ranges", "").lower() == "bytes"):
                    await self._fetch_ranged(response, object_id, url, part, total,
                                             _Received(object_id, name, total, tracker))
                    if part.name.endswith(".parquet.part") and not _parquet_whole(part):
                        raise _RetryObject(f"Parquet file without its footer after {total} "
                                           "bytes")
                    return total, total
                received = 0
                reported = 0
                with open(part, "wb") as fh:
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
                        if gunzip is not None:
                            fh.write(gunzip.feed(chunk))
                        else:
                            if check is not None:
                                check.feed(chunk)
                            fh.write(chunk)
                        if tracker is not None and received - reported >= PROGRESS_STEP:
                            reported = received
                            tracker.bytes(object_id, name, received, total)
                if total is not None and total != received:
                    raise _RetryObject(f"body ended after {received} of {declared} bytes")
                for inflater in (gunzip, check):
                    if inflater is not None and not inflater.complete:
                        raise _RetryObject(f"gzip data ended early after {received} bytes")
                if part.name.endswith(".parquet.part") and not _parquet_whole(part):
                    # A cut-short Parquet file lacks its footer: cheap to see, worth a refetch.
                    raise _RetryObject(f"Parquet file without its footer after {received} bytes")
                return received, total
        except _DROPPED as exc:
            raise _RetryObject(
                f"connection dropped mid-object ({type(exc).__name__}: {one_line(exc, 120)})"
            ) from exc
        except httpx.TransportError as exc:
            err = transport_error(exc, where=shown, hint="check your network",
                                  service="the object storage")
            raise DownloadError(
                f"object {object_id} could not be downloaded: {err}", object_id=object_id
            ) from exc
        except OSError as exc:
            # The local side failed (disk full, no permission): one typed line, not errno soup.
            raise _write_error(object_id, part, exc) from exc


class _Received:
    """Bytes of one object received over all its streams, reported every PROGRESS_STEP."""

    def __init__(self, object_id: str, name: str, total: int,
                 tracker: _Progress | None) -> None:
        self.object_id, self.name, self.total, self.tracker = object_id, name, total, tracker
        self.done = 0
        self._reported = 0

    def add(self, n: int) -> None:
        # Every stream runs on the event loop's thread: no lock needed.
        self.done += n
        if self.tracker is not None and self.done - self._reported >= PROGRESS_STEP:
            self._reported = self.done
            self.tracker.bytes(self.object_id, self.name, self.done, self.total)


async def _write_span(chunks: AsyncIterator[bytes], part: Path, first: int, end: int,
                      received: _Received) -> None:
    """Write the bytes of ``[first, end)`` from ``chunks`` at their place in ``part``."""
    want = end - first
    got = 0
    with open(part, "r+b") as fh:
        fh.seek(first)
        async for chunk in chunks:
            take = chunk[: want - got]
            fh.write(take)
            got += len(take)
            received.add(len(take))
            if got >= want:
                break  # the main stream carries the whole object: stop at the first range
    if got != want:
        raise _RetryObject(f"range {first}-{end - 1} ended after {got} of {want} bytes")


def _parquet_whole(path: Path) -> bool:
    """Whether a Parquet file starts and ends with its magic bytes (so the footer is there)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        if fh.seek(0, os.SEEK_END) < 12:
            return False
        fh.seek(-4, os.SEEK_END)
        return head == b"PAR1" and fh.read(4) == b"PAR1"


def _write_error(object_id: str, path: Path, exc: OSError) -> DownloadError:
    """A local write failure as one line naming the folder, the cause and the fix."""
    cause = exc.strerror or type(exc).__name__
    return DownloadError(
        f"object {object_id} could not be written to {path.parent} ({cause}): free some "
        "space there or download into another folder (directory=, --output-directory; sync: "
        "TMPDIR)",
        object_id=object_id,
    )


def _part_path(final: Path) -> Path:
    """Where ``final`` is written until it is whole."""
    return final.with_name(final.name + ".part")


_PARQUET_DECOMPRESS = (
    "decompress does not apply to parquet (compressed inside the file): drop --decompress"
)


def _file_names(ids: list[str], urls: dict[str, str], decompress: bool) -> dict[str, str]:
    """Local file names: the basename of each URL path, made unique and safe."""
    names: dict[str, str] = {}
    seen: set[str] = set()
    for index, oid in enumerate(ids):
        name = unquote(urlsplit(urls[oid]).path).rsplit("/", 1)[-1].replace("\\", "_")
        if name in ("", ".", ".."):
            name = oid.replace("/", "_").replace("\\", "_") or f"object-{index:05d}"
        if decompress:
            if name.endswith(".parquet"):
                raise UsageError(_PARQUET_DECOMPRESS)
            name = name.removesuffix(".gz")
        if name in seen:
            # Two objects with the same basename would overwrite each other.
            name = f"{index:05d}-{name}"
        seen.add(name)
        names[oid] = name
    return names
