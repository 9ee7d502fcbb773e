"""dapframe.api against the emulator over real sockets: data, faults, errors and secrecy."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import logging
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from dapframe.api import AsyncDapClient, DapClient, QueryRequest, RetryPolicy, RetryTransport
from dapframe.api._auth import jwt_expiry
from dapframe.emulator import Emulator
from dapframe.errors import (
    AuthenticationError,
    DapError,
    DownloadError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    OutOfRangeError,
    RateLimitError,
    ServerError,
    TransportError,
    UsageError,
)
from dapframe.wire import Job
from tests.conftest import CLIENT_ID, CLIENT_SECRET

FORMATS = ["jsonl", "csv", "tsv", "parquet"]
#: Fast retries, but Retry-After waits up to 5 s are honoured.
FAST = RetryPolicy(attempts=4, backoff=0.01, backoff_max=0.05, retry_after_max=5.0)
NS = "canvas"


# -- helpers --------------------------------------------------------------------------------


class Recorder(httpx.AsyncBaseTransport):
    """A real socket transport that remembers every attempt (method, path, body, status)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: list[tuple[str, str, bytes, int]] = []
        self.bearers: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            self.bearers.add(auth.removeprefix("Bearer "))
        response = await self.inner.handle_async_request(request)
        self.calls.append((request.method, request.url.path, request.content, response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def paths(self, prefix: str) -> list[tuple[str, bytes, int]]:
        return [(p, body, s) for _, p, body, s in self.calls if p.startswith(prefix)]


def make_client(emu: Emulator, recorder: Recorder | None = None, **kw: Any) -> AsyncDapClient:
    kw.setdefault("retry", FAST)
    transport = RetryTransport(recorder, kw.pop("retry")) if recorder is not None else None
    return AsyncDapClient(
        rate_limits=None,
        base_url=emu.base_url,
        client_id=CLIENT_ID,
        client_secret=kw.pop("client_secret", CLIENT_SECRET),
        transport=transport,
        **kw,
    )


def count_records(path: Path, fmt: str) -> int:
    """Records in one downloaded object (gzip text, or a Parquet file)."""
    data = path.read_bytes()
    if fmt == "parquet":
        assert data[:4] == b"PAR1" and data[-4:] == b"PAR1"
        return int(pq.read_metadata(io.BytesIO(data)).num_rows)
    text = gzip.decompress(data).decode("utf-8")
    return count_text_records(text, fmt)


def count_text_records(text: str, fmt: str) -> int:
    if fmt == "jsonl":
        return sum(1 for line in text.split("\n") if line and json.loads(line))
    if fmt == "tsv":  # records are one line each (newlines are escaped); minus the header
        return len([line for line in text.split("\n") if line]) - 1
    return len(list(csv.reader(io.StringIO(text, newline="")))) - 1


def jsonl_keys(paths: list[Path]) -> list[Any]:
    keys = []
    for path in paths:
        for line in gzip.decompress(path.read_bytes()).decode().split("\n"):
            if line:
                keys.append(json.loads(line)["key"]["id"])
    return keys


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def table(module_emulator: Emulator) -> str:
    """A table big enough to span several objects (so parallel download matters)."""
    sizes = {
        t: module_emulator.dataset.snapshot(NS, t).num_rows
        for t in ("submissions", "enrollments", "users", "assignments")
    }
    name = max(sizes, key=lambda t: sizes[t])
    assert sizes[name] > 1000, sizes
    return name


# -- list, schema, snapshot, incremental ----------------------------------------------------


def test_list_tables_and_schema(module_emulator: Emulator) -> None:
    emu = module_emulator

    async def go() -> tuple[list[str], Any]:
        async with make_client(emu) as dap:
            return await dap.list_tables(NS), await dap.get_schema(NS, "accounts")

    tables, schema = run(go())
    assert tables == emu.dataset.tables(NS) and "accounts" in tables
    assert isinstance(schema.version, int)
    assert set(schema.schema["properties"]) >= {"key", "value", "meta"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_snapshot_every_format(
    module_emulator: Emulator, table: str, fmt: str, tmp_path: Path
) -> None:
    emu = module_emulator

    async def go() -> tuple[Job, list[Path]]:
        async with make_client(emu) as dap:
            return await dap.query(NS, table, QueryRequest(format=fmt), tmp_path, deadline=60)

    job, files = run(go())
    assert job.status == "complete" and job.at is not None
    assert len(files) == len(job.objects) >= 2
    assert all(f.exists() and f.parent == tmp_path for f in files)
    assert len({f.name for f in files}) == len(files)
    assert not list(tmp_path.glob("*.part"))
    expected = emu.dataset.snapshot(NS, table)
    assert sum(count_records(f, fmt) for f in files) == expected.num_rows
    if fmt == "jsonl":
        assert sorted(jsonl_keys(files)) == sorted(expected.column("key.id").to_pylist())


@pytest.mark.parametrize("fmt", FORMATS)
def test_incremental_every_format(
    module_emulator: Emulator, table: str, fmt: str, tmp_path: Path
) -> None:
    emu = module_emulator
    since = emu.dataset.commit_time(0)

    async def go() -> tuple[Job, list[Path]]:
        async with make_client(emu) as dap:
            request = QueryRequest(format=fmt, since=since)
            return await dap.query(NS, table, request, tmp_path, deadline=60)

    job, files = run(go())
    assert job.since is not None and job.until is not None
    expected = emu.dataset.changes(NS, table, since, job.until)
    assert expected.num_rows > 0
    assert len(files) == len(job.objects)
    assert sum(count_records(f, fmt) for f in files) == expected.num_rows


def test_decompress_while_streaming(module_emulator: Emulator, table: str, tmp_path: Path) -> None:
    emu = module_emulator

    async def go() -> tuple[Job, list[Path]]:
        async with make_client(emu) as dap:
            return await dap.query(NS, table, QueryRequest(format="csv"), tmp_path, decompress=True)

    _, files = run(go())
    assert all(f.suffix == ".csv" for f in files)
    total = sum(count_text_records(f.read_text("utf-8"), "csv") for f in files)
    assert total == emu.dataset.snapshot(NS, table).num_rows

    async def parquet() -> None:
        async with make_client(emu) as dap:
            job = await dap.wait(await dap.start_query(NS, table, QueryRequest("parquet")))
            await dap.download(job, tmp_path / "pq", decompress=True)

    with pytest.raises(UsageError, match="parquet"):
        run(parquet())


# -- auth -----------------------------------------------------------------------------------


def test_token_expiring_mid_run_is_renewed(emulator: Emulator, tmp_path: Path) -> None:
    emu = emulator
    emu.faults.token_ttl = 2
    rec = Recorder()

    async def go() -> None:
        async with make_client(emu, rec) as dap:
            await dap.list_tables(NS)
            assert dap.auth.logins == 1
            (token,) = rec.bearers
            exp = jwt_expiry(token)
            assert exp is not None and exp - time.time() < 3.5
            await asyncio.sleep(max(0.0, exp - time.time()) + 0.05)  # the token is dead now
            await dap.list_tables(NS)
            assert dap.auth.logins == 2
            # Renewed before exp: the API never had to refuse a token.
            assert not [c for c in rec.calls if c[3] == 401]

            emu.faults.revoke_tokens()  # the current token dies server-side
            emu.faults.token_ttl = 3600
            _, files = await dap.query(NS, "accounts", QueryRequest("jsonl"), tmp_path)
            assert dap.auth.logins == 3
            assert len([c for c in rec.calls if c[3] == 401]) == 1
            assert files

    run(go())


def test_wrong_credentials(emulator: Emulator) -> None:
    async def go() -> None:
        async with make_client(emulator, client_secret="not-the-secret") as dap:
            await dap.list_tables(NS)

    with pytest.raises(AuthenticationError, match="login refused: check the client id") as info:
        run(go())
    assert "not-the-secret" not in str(info.value) and info.value.status == 401


# -- rate limits and server errors ----------------------------------------------------------


def test_429_retry_after_seconds_is_honoured(emulator: Emulator) -> None:
    emulator.faults.burst("tables", status=429, count=1, retry_after="1")
    rec = Recorder()

    async def go() -> list[str]:
        async with make_client(emulator, rec) as dap:
            await dap.get_schema(NS, "accounts")  # log in first: time only the retried call
            start = time.monotonic()
            tables = await dap.list_tables(NS)
            assert time.monotonic() - start >= 0.95
            return tables

    assert run(go())
    assert [s for _, _, s in rec.paths("/dap/query/canvas/table") if s == 429] == [429]


def test_429_retry_after_http_date_is_honoured(emulator: Emulator) -> None:
    async def go() -> Job:
        async with make_client(emulator) as dap:
            job = await dap.start_query(NS, "accounts", QueryRequest("jsonl"))
            emulator.faults.burst("job", status=429, count=1, retry_after="date")
            start = time.monotonic()
            polled = await dap.get_job(job.id)
            # The date is whole seconds 2 s ahead: the wait is between 1 and 2 s.
            assert time.monotonic() - start >= 0.9
            return polled

    assert run(go()).id


def test_429_after_every_retry_is_rate_limit_error(emulator: Emulator) -> None:
    emulator.faults.burst("schema", status=429, count=10, retry_after="0")

    async def go() -> None:
        async with make_client(emulator) as dap:
            await dap.get_schema(NS, "accounts")

    with pytest.raises(RateLimitError, match="rate-limiting") as info:
        run(go())
    assert info.value.status == 429


def test_5xx_bursts_are_retried(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults.burst("query", status=502, count=2)
    emulator.faults.burst("object", status=503, count=3)
    emulator.faults.burst("object_url", status=500, count=1)

    async def go() -> tuple[Job, list[Path]]:
        async with make_client(emulator) as dap:
            return await dap.query(NS, "accounts", QueryRequest("tsv"), tmp_path)

    _, files = run(go())
    rows = sum(count_records(f, "tsv") for f in files)
    assert rows == emulator.dataset.snapshot(NS, "accounts").num_rows


def test_5xx_after_every_retry_is_server_error(emulator: Emulator) -> None:
    emulator.faults.burst("tables", status=500, count=10)

    async def go() -> None:
        async with make_client(emulator) as dap:
            await dap.list_tables(NS)

    with pytest.raises(ServerError, match="try again later") as info:
        run(go())
    assert info.value.status == 500


# -- downloads under faults -----------------------------------------------------------------


def _object_url_batches(rec: Recorder) -> list[list[str]]:
    return [
        [o["id"] for o in json.loads(body)]
        for _, body, status in rec.paths("/dap/object/url")
        if status == 200
    ]


def test_stream_dropped_mid_object_refetches_only_that_object(
    emulator: Emulator, tmp_path: Path
) -> None:
    emu = emulator
    rec = Recorder()

    async def go() -> tuple[Job, list[Path]]:
        async with make_client(emu, rec) as dap:
            job = await dap.wait(await dap.start_query(NS, "submissions", QueryRequest("jsonl")))
            emu.faults.drop_downloads(count=1, after_bytes=1000)
            return job, await dap.download(job, tmp_path)

    job, files = run(go())
    n = len(job.objects)
    assert n >= 2
    batches = _object_url_batches(rec)
    assert len(batches) == 2 and len(batches[0]) == n and len(batches[1]) == 1
    assert len(rec.paths("/emulator/objects/")) == n + 1
    # Every file is whole: gzip parses and the rows add up.
    expected = emu.dataset.snapshot(NS, "submissions")
    assert sorted(jsonl_keys(files)) == sorted(expected.column("key.id").to_pylist())
    assert not list(tmp_path.glob("*.part"))


def test_expired_url_is_renewed(emulator: Emulator, tmp_path: Path) -> None:
    emu = emulator
    rec = Recorder()

    async def go() -> list[Path]:
        async with make_client(emu, rec) as dap:
            job = await dap.wait(await dap.start_query(NS, "accounts", QueryRequest("csv")))
            emu.faults.expire_urls(count=1)
            return await dap.download(job, tmp_path)

    files = run(go())
    statuses = [s for _, _, s in rec.paths("/emulator/objects/")]
    assert statuses.count(403) == 1
    assert len(_object_url_batches(rec)) == 2
    rows = sum(count_records(f, "csv") for f in files)
    assert rows == emu.dataset.snapshot(NS, "accounts").num_rows


def test_download_error_after_attempts_leaves_no_partial_files(
    emulator: Emulator, tmp_path: Path
) -> None:
    emu = emulator

    async def go() -> None:
        async with make_client(emu, download_attempts=2) as dap:
            job = await dap.wait(await dap.start_query(NS, "submissions", QueryRequest("jsonl")))
            emu.faults.drop_downloads(count=100, after_bytes=500)
            await dap.download(job, tmp_path)

    with pytest.raises(DownloadError) as info:
        run(go())
    assert info.value.object_id in str(info.value)
    assert "after 2 attempt" in str(info.value)
    assert not list(tmp_path.glob("*.part"))
    for path in tmp_path.iterdir():  # anything with a final name is complete
        gzip.decompress(path.read_bytes())


# -- jobs -----------------------------------------------------------------------------------


def test_failed_job(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults.fail_next_jobs(1)

    async def go() -> None:
        async with make_client(emulator) as dap:
            await dap.query(NS, "accounts", QueryRequest("jsonl"), tmp_path)

    with pytest.raises(JobFailedError) as info:
        run(go())
    assert info.value.error_type == "ProcessingError"
    assert info.value.job_id in str(info.value) and "ProcessingError" in str(info.value)


def test_slow_job_past_deadline(emulator: Emulator) -> None:
    emulator.faults.job_seconds = 30

    async def go() -> None:
        async with make_client(emulator) as dap:
            job = await dap.start_query(NS, "accounts", QueryRequest("jsonl"))
            await dap.wait(job, deadline=0.5)

    start = time.monotonic()
    with pytest.raises(JobTimeoutError, match=r"still (waiting|running) after 0\.5 s") as info:
        run(go())
    # One line that reads right from Python and from the CLI (no ``get_job(...)`` hint).
    assert str(info.value).endswith("give a longer deadline, or run the same query again later "
                                    "(the API hands back this job while it lives)")
    assert "get_job" not in str(info.value) and "\n" not in str(info.value)
    assert time.monotonic() - start < 5


# -- addressing errors ----------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_base_url_fails_fast() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"

    async def go() -> None:
        async with AsyncDapClient(
            rate_limits=None,
            base_url=url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            retry=FAST,
        ) as dap:
            await dap.list_tables(NS)

    start = time.monotonic()
    with pytest.raises(TransportError) as info:
        run(go())
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert message.startswith(f"cannot reach the DAP API at {url}: ")
    assert message.endswith("check --base-url / DAP_API_URL")


def test_unknown_namespace_and_table(emulator: Emulator) -> None:
    async def go() -> tuple[NotFoundError, NotFoundError]:
        async with make_client(emulator) as dap:
            with pytest.raises(NotFoundError) as ns_info:
                await dap.list_tables("nope")
            with pytest.raises(NotFoundError) as table_info:
                await dap.get_schema(NS, "nope")
            return ns_info.value, table_info.value

    ns_err, table_err = run(go())
    assert ns_err.kind == "namespace" and ns_err.id == "nope"
    assert "namespace 'nope' not found" in str(ns_err)
    assert table_err.kind == "table" and table_err.id == "nope"
    assert str(table_err) == (
        "table 'nope' not found in namespace 'canvas': run `dapframe list --namespace canvas` "
        "to see the tables"
    )


def test_since_out_of_range(emulator: Emulator) -> None:
    future = emulator.dataset.clock + timedelta(days=10)

    async def go() -> None:
        async with make_client(emulator) as dap:
            await dap.start_query(NS, "accounts", QueryRequest("jsonl", since=future))

    with pytest.raises(OutOfRangeError, match="no data in the requested range") as info:
        run(go())
    assert info.value.since is not None


# -- sync client ----------------------------------------------------------------------------


def test_sync_client_inside_a_running_event_loop(module_emulator: Emulator, tmp_path: Path) -> None:
    emu = module_emulator

    async def notebook_cell() -> tuple[list[str], Job, list[Path]]:
        asyncio.get_running_loop()  # as in Jupyter: a loop runs in this thread
        with DapClient(
            rate_limits=None,
            base_url=emu.base_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            retry=FAST,
        ) as dap:
            tables = dap.list_tables(NS)
            job, files = dap.query(NS, "accounts", QueryRequest("jsonl"), tmp_path, deadline=30)
            assert dap.get_job(job.id).status == "complete"
            return tables, job, files

    tables, job, files = asyncio.run(notebook_cell())
    assert "accounts" in tables and len(files) == len(job.objects)
    assert (
        sum(count_records(f, "jsonl") for f in files)
        == emu.dataset.snapshot(NS, "accounts").num_rows
    )


def test_sync_client_errors_and_close(emulator: Emulator) -> None:
    dap = DapClient(
        rate_limits=None,
        base_url=emulator.base_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        retry=FAST,
    )
    with pytest.raises(NotFoundError):
        dap.get_schema(NS, "nope")
    dap.close()
    dap.close()  # idempotent
    with pytest.raises(UsageError, match="closed"):
        dap.list_tables(NS)


# -- secrecy --------------------------------------------------------------------------------


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)  # root: httpx and httpcore traces too
    yield caplog


def test_secret_and_token_never_leak(
    emulator: Emulator, tmp_path: Path, all_logs: pytest.LogCaptureFixture
) -> None:
    emu = emulator
    rec = Recorder()
    errors: list[BaseException] = []

    async def go() -> str:
        dap = make_client(emu, rec)
        async with dap:
            emu.faults.burst("tables", status=429, count=1, retry_after="0")
            await dap.list_tables(NS)
            emu.faults.revoke_tokens()
            await dap.query(NS, "accounts", QueryRequest("jsonl"), tmp_path / "a")
            emu.faults.expire_urls(count=1)
            await dap.query(NS, "accounts", QueryRequest("csv"), tmp_path / "b")
            for coro in (dap.get_schema(NS, "nope"), dap.get_job("no-such-job")):
                try:
                    await coro
                except DapError as exc:
                    errors.append(exc)
            return repr(dap)

    texts = [run(go())]
    for secret in ("wrong-" + CLIENT_SECRET, CLIENT_SECRET):
        try:
            run(_list_with(emu, secret))
        except DapError as exc:
            errors.append(exc)
    sync = DapClient(
        rate_limits=None, base_url=emu.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    texts.append(repr(sync))
    texts.append(repr(sync.config))
    sync.close()

    assert len(rec.bearers) >= 2  # a token before and after the revocation
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [r.getMessage() for r in all_logs.records]
    texts += [repr(r.args) for r in all_logs.records]
    assert any("logged in" in t for t in texts)  # the DEBUG/INFO logs were captured
    blob = "\n".join(texts)
    assert CLIENT_SECRET not in blob
    for token in rec.bearers:
        assert token not in blob
        assert token.split(".")[2] not in blob  # not even the signature part


async def _list_with(emu: Emulator, secret: str) -> list[str]:
    async with make_client(emu, client_secret=secret) as dap:
        return await dap.list_tables(NS)
