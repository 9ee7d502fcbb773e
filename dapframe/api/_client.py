"""The asynchronous DAP Query API client."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
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
from ._retry import RetryPolicy, RetryTransport
from ._version import __version__

__all__ = ["DEFAULT_POLL", "DEFAULT_TIMEOUT", "AsyncDapClient"]

logger = logging.getLogger("dapframe.api")

#: Seconds between job polls: fast at first (small jobs finish quickly), then every 5 s.
DEFAULT_POLL: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
#: Per-request timeouts; ``read`` is per chunk, so long downloads are fine.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=15.0)

_BASE_URL_HINT = "check --base-url / DAP_API_URL"
_T = TypeVar("_T")

#: Mid-body failures after which one object is fetched again with a fresh URL.
_DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout, zlib.error)


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
    timeout : float or httpx.Timeout
        Per-request timeouts.
    url_batch_size : int
        Object ids per ``POST /dap/object/url`` call.
    download_attempts : int
        Attempts per object when a download breaks mid-body or its URL has expired; each
        new attempt fetches a fresh URL.

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
        max_concurrency: int = 8,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        url_batch_size: int = 100,
        download_attempts: int = 3,
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
        self._config = config
        self._max_concurrency = max_concurrency
        self._url_batch_size = url_batch_size
        self._download_attempts = download_attempts
        self._auth = DapAuth(config.base_url, config.client_id, config.client_secret)
        if transport is None:
            pool = max_concurrency + 4  # downloads plus a few JSON calls alongside
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
        response = await self._call("GET", f"/dap/query/{_segment(namespace)}/table", ctx)
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
        response = await self._call("GET", path, ctx)
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
        response = await self._call("POST", path, ctx, json_body=request.to_json())
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
        response = await self._call("GET", f"/dap/job/{_segment(job_id)}", ctx)
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
            Waits between polls; the last one repeats (default 0.05 s rising to 5 s).

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
                        f"longer deadline, or check it later with get_job('{current.id}')",
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
            response = await self._call("POST", "/dap/object/url", ctx, json_body=body)
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
        self, job: Job, directory: str | os.PathLike[str], *, decompress: bool = False
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

        Returns
        -------
        list of Path
            The files, in the order of ``job.objects``.

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
        urls = await self.object_urls(ids)
        names = _file_names(ids, urls, decompress)
        semaphore = self._get_semaphore()
        try:
            # A TaskGroup cancels the other downloads as soon as one fails for good.
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(
                        self._download_object(oid, urls[oid], target / names[oid],
                                              decompress, semaphore)
                    )
                    for oid in ids
                ]
        except ExceptionGroup as group_error:
            raise group_error.exceptions[0] from None
        paths = [t.result() for t in tasks]
        logger.info("job %s: downloaded %d file(s) into %s", job.id, len(paths), target)
        return paths

    async def query(
        self,
        namespace: str,
        table: str,
        request: QueryRequest,
        directory: str | os.PathLike[str],
        *,
        deadline: float | None = None,
        decompress: bool = False,
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

        Returns
        -------
        (Job, list of Path)
            The complete job and the downloaded files.
        """
        if decompress and request.format == "parquet":
            raise UsageError(_PARQUET_DECOMPRESS)
        job = await self.start_query(namespace, table, request)
        job = await self.wait(job, deadline=deadline)
        return job, await self.download(job, directory, decompress=decompress)

    # -- internals -------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, ctx: Context, *, json_body: Any = None
    ) -> httpx.Response:
        logger.debug("%s %s", method, path)
        try:
            response = await self._http.request(
                method, path, json=json_body, headers={"Accept": "application/json"}
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

    def _get_semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            self._semaphore = asyncio.Semaphore(self._max_concurrency)
            self._semaphore_loop = loop
        return self._semaphore

    async def _download_object(
        self,
        object_id: str,
        url: str,
        final: Path,
        decompress: bool,
        semaphore: asyncio.Semaphore,
    ) -> Path:
        part = final.with_name(final.name + ".part")
        async with semaphore:
            try:
                for attempt in range(1, self._download_attempts + 1):
                    try:
                        await self._fetch(object_id, url, part, decompress)
                    except _RetryObject as exc:
                        part.unlink(missing_ok=True)
                        if attempt == self._download_attempts:
                            raise DownloadError(
                                f"object {object_id} could not be downloaded after "
                                f"{attempt} attempt(s) ({exc}): run the download again",
                                object_id=object_id,
                            ) from exc.__cause__
                        logger.info(
                            "object %s: %s; fetching a fresh URL (attempt %d of %d)",
                            object_id, exc, attempt + 1, self._download_attempts,
                        )
                        url = (await self.object_urls([object_id]))[object_id]
                        continue
                    os.replace(part, final)  # atomic: the final name only ever sees whole files
                    logger.debug("object %s saved as %s", object_id, final)
                    return final
            finally:
                # On any failure or cancellation, no partial file is left behind.
                part.unlink(missing_ok=True)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch(self, object_id: str, url: str, part: Path, decompress: bool) -> None:
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
                received = 0
                with open(part, "wb") as fh:
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
                        if gunzip is not None:
                            fh.write(gunzip.feed(chunk))
                        else:
                            if check is not None:
                                check.feed(chunk)
                            fh.write(chunk)
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) != received:
                    raise _RetryObject(f"body ended after {received} of {declared} bytes")
                for inflater in (gunzip, check):
                    if inflater is not None and not inflater.complete:
                        raise _RetryObject(f"gzip data ended early after {received} bytes")
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
