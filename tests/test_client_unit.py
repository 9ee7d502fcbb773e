"""dapframe.api pieces checked in isolation with httpx.MockTransport (no sockets).

The behaviour against a real server over real sockets is in ``test_client.py``.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import gzip
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dapframe.api import (
    AsyncDapClient,
    DapAuth,
    QueryRequest,
    RetryPolicy,
    RetryTransport,
    __version__,
    parse_retry_after,
)
from dapframe.api._auth import jwt_expiry
from dapframe.api._client import _file_names, _Gunzip
from dapframe.errors import (
    AccountError,
    AuthenticationError,
    DownloadError,
    NotFoundError,
    OutOfRangeError,
    ServerError,
    SnapshotRequiredError,
    TransportError,
    UsageError,
    ValidationError,
)
from dapframe.wire import Job, ObjectRef

BASE = "http://dap.test"
SECRET = "mock-Secret-9f8e7d6c"
FAST = RetryPolicy(attempts=3, backoff=0.001, backoff_max=0.01, retry_after_max=2.0)


def make_jwt(exp: float, extra: dict[str, Any] | None = None) -> str:
    def seg(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{seg({'alg': 'none'})}.{seg({'exp': int(exp), **(extra or {})})}.c2ln"


def token_response(ttl: float = 3600) -> httpx.Response:
    token = make_jwt(time.time() + ttl, {"jti": time.monotonic_ns()})
    return httpx.Response(
        200,
        json={"access_token": token, "expires_in": int(ttl), "scope": "s", "token_type": "Bearer"},
    )


def err(status: int, type_: str, message: str, **extra: Any) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"type": type_, "uuid": "u-1", "message": message, **extra}}
    )


Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, **kw: Any) -> AsyncDapClient:
    kw.setdefault("retry", FAST)
    return AsyncDapClient(
        rate_limits=None,
        base_url=BASE,
        client_id="us-east-1#mock",
        client_secret=SECRET,
        transport=httpx.MockTransport(handler),
        **kw,
    )


def with_login(handler: Handler, logins: list[httpx.Request] | None = None) -> Handler:
    def wrapped(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ids/auth/login":
            if logins is not None:
                logins.append(request)
            return token_response()
        return handler(request)

    return wrapped


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- small pieces ---------------------------------------------------------------------------


def test_parse_retry_after_seconds_and_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    date = email.utils.format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(7.0)
    past = email.utils.format_datetime(now - timedelta(seconds=7), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


def test_backoff_grows_is_capped_and_jittered() -> None:
    policy = RetryPolicy(backoff=1.0, multiplier=2.0, backoff_max=5.0, jitter=0.5)
    assert policy.backoff_for(1, lambda: 0.0) == 0.5
    assert policy.backoff_for(1, lambda: 1.0) == 1.0
    assert policy.backoff_for(3, lambda: 1.0) == 4.0
    assert policy.backoff_for(10, lambda: 1.0) == 5.0
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_jwt_expiry() -> None:
    assert jwt_expiry(make_jwt(1_700_000_000)) == 1_700_000_000
    assert jwt_expiry("opaque-token") is None
    assert jwt_expiry("a.!!!.c") is None


def test_gunzip_handles_multi_member_streams() -> None:
    data = gzip.compress(b"one\n") + gzip.compress(b"two\n")
    g = _Gunzip()
    out = b"".join(g.feed(data[i : i + 5]) for i in range(0, len(data), 5))
    assert out == b"one\ntwo\n" and g.complete
    g2 = _Gunzip()
    g2.feed(data[:10])
    assert not g2.complete


def test_file_names_basename_unique_and_decompress() -> None:
    urls = {
        "a": "http://h/x/part-0.json.gz?sig=1",
        "b": "http://h/y/part-0.json.gz?sig=2",
        "c": "http://h/z/",
    }
    names = _file_names(["a", "b", "c"], urls, decompress=True)
    assert names["a"] == "part-0.json"
    assert names["b"] != names["a"] and names["b"].endswith("part-0.json")
    assert names["c"] == "c"
    with pytest.raises(UsageError, match="parquet"):
        _file_names(["a"], {"a": "http://h/p.gz.parquet"}, decompress=True)


def test_version_and_user_agent() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["user-agent"])
        return httpx.Response(200, json={"tables": ["a"]})

    async def go() -> None:
        async with client(with_login(handler)) as dap:
            await dap.list_tables("canvas")

    run(go())
    assert __version__ and seen == [f"dapframe/{__version__}"]


# -- auth -----------------------------------------------------------------------------------


def test_concurrent_requests_log_in_once() -> None:
    logins: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"].startswith("Bearer ")
        return httpx.Response(200, json={"tables": ["a", "b"]})

    async def go() -> list[list[str]]:
        async with client(with_login(handler, logins)) as dap:
            return await asyncio.gather(*(dap.list_tables("canvas") for _ in range(20)))

    results = run(go())
    assert results == [["a", "b"]] * 20
    assert len(logins) == 1
    login = logins[0]
    assert login.method == "POST"
    assert login.headers["content-type"] == "application/x-www-form-urlencoded"
    assert login.content == b"grant_type=client_credentials"
    basic = base64.b64decode(login.headers["authorization"].removeprefix("Basic ")).decode()
    assert basic == f"us-east-1#mock:{SECRET}"


def test_token_refreshed_before_exp_with_short_lifetime() -> None:
    logins = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal logins
        if request.url.path == "/ids/auth/login":
            logins += 1
            return token_response(ttl=1)
        return httpx.Response(200, json={"tables": []})

    async def go() -> None:
        async with client(handler) as dap:
            await dap.list_tables("canvas")
            await dap.list_tables("canvas")
            assert logins == 1
            await asyncio.sleep(1.0)  # past exp minus margin (20% of ~1 s)
            await dap.list_tables("canvas")

    run(go())
    assert logins == 2


def test_401_relogs_in_once_then_gives_up() -> None:
    tokens: list[str] = []
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        if request.url.path == "/ids/auth/login":
            resp = token_response()
            tokens.append(resp.json()["access_token"])
            return resp
        calls += 1
        if request.headers["authorization"] == f"Bearer {tokens[0]}":
            return err(401, "AuthenticationError", "token revoked")
        if "/never/" in request.url.path:
            return err(401, "AuthenticationError", "still no")
        return httpx.Response(200, json={"tables": ["t"]})

    async def go() -> None:
        async with client(handler) as dap:
            assert await dap.list_tables("canvas") == ["t"]
            assert len(tokens) == 2
            with pytest.raises(AuthenticationError) as info:
                await dap.list_tables("never")
            assert "fresh login" in str(info.value)

    run(go())


@pytest.mark.parametrize("status", [401, 403])
def test_login_refused(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return err(status, "AuthenticationError", "bad credentials")

    async def go() -> None:
        async with client(handler) as dap:
            await dap.list_tables("canvas")

    with pytest.raises(AuthenticationError, match="login refused: check the client id") as info:
        run(go())
    assert SECRET not in str(info.value)
    assert "DAP_CLIENT_SECRET" in str(info.value)


def test_auth_repr_hides_secret() -> None:
    auth = DapAuth(BASE, "id", SECRET)
    assert SECRET not in repr(auth) and SECRET not in str(vars(auth))


# -- response mapping -----------------------------------------------------------------------


def test_non_json_answer_is_server_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, text="<html>proxy login</html>", headers={"content-type": "text/html"}
        )

    with pytest.raises(ServerError, match="unexpected response from server"):
        run(_list(with_login(handler)))


def test_malformed_job_is_server_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "j", "status": "exploded"})

    async def go() -> None:
        async with client(with_login(handler)) as dap:
            await dap.get_job("j")

    with pytest.raises(ServerError, match="unexpected response from server"):
        run(go())


async def _list(handler: Handler, namespace: str = "canvas") -> list[str]:
    async with client(handler) as dap:
        return await dap.list_tables(namespace)


async def _query(handler: Handler, request: QueryRequest) -> Job:
    async with client(handler) as dap:
        return await dap.start_query("canvas", "accounts", request)


@pytest.mark.parametrize(
    ("response", "error", "text"),
    [
        (
            err(400, "OutOfRangeError", "too old", since="2024-01-01T00:00:00Z", until=None),
            OutOfRangeError,
            "the API holds data from 2024-01-01T00:00:00Z",
        ),
        (
            err(
                400,
                "SnapshotRequiredError",
                "reloaded",
                since="2024-01-01T00:00:00Z",
                until="2024-02-01T00:00:00Z",
            ),
            SnapshotRequiredError,
            "needs a new snapshot",
        ),
        (
            err(400, "ValidationError", "bad", location={"line": 1, "column": 2, "character": 2}),
            ValidationError,
            "malformed",
        ),
        (err(403, "AccountNotOnboarded", "no"), AccountError, "not onboarded"),
        (
            err(404, "ObjectNotFound", "no", kind="table", id="accounts"),
            NotFoundError,
            "run `dapframe list --namespace canvas`",
        ),
        (err(500, "ProcessingError", "boom"), ServerError, "try again later"),
    ],
)
def test_error_mapping(response: httpx.Response, error: type[Exception], text: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return response

    since = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(error) as info:
        run(_query(with_login(handler), QueryRequest("jsonl", since=since)))
    message = str(info.value)
    assert text in message and "\n" not in message


def test_usage_errors_before_any_call() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no call expected")

    with pytest.raises(UsageError, match="unknown format"):
        run(_query(handler, QueryRequest("xml")))
    with pytest.raises(UsageError, match="until needs since"):
        run(_query(handler, QueryRequest("csv", until=datetime(2024, 1, 1, tzinfo=UTC))))


# -- retries --------------------------------------------------------------------------------


def test_retry_transport_retries_network_errors_then_raises() -> None:
    attempts = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, text="ok")

    async def go(handler: Handler) -> httpx.Response:
        transport = RetryTransport(httpx.MockTransport(handler), FAST)
        async with httpx.AsyncClient(transport=transport) as http:
            return await http.get("http://x.test/")

    assert run(go(flaky)).text == "ok" and attempts == 3

    def dead(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(httpx.ConnectError):
        run(go(dead))


def test_retry_after_is_capped() -> None:
    statuses = [429, 200]
    slept: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(statuses.pop(0), headers={"Retry-After": "3600"})

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def go() -> int:
        transport = RetryTransport(httpx.MockTransport(handler), FAST, sleep=fake_sleep)
        async with httpx.AsyncClient(transport=transport) as http:
            return (await http.get("http://x.test/")).status_code

    assert run(go()) == 200
    assert slept == [FAST.retry_after_max]


def test_object_urls_are_batched() -> None:
    batches: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        batches.append(len(body))
        return httpx.Response(
            200, json={"urls": {o["id"]: {"url": f"http://o/{o['id']}.gz"} for o in body}}
        )

    async def go() -> dict[str, str]:
        async with client(with_login(handler), url_batch_size=100) as dap:
            return await dap.object_urls(f"obj-{i}" for i in range(250))

    urls = run(go())
    assert batches == [100, 100, 50]
    assert len(urls) == 250 and urls["obj-7"] == "http://o/obj-7.gz"


# -- downloads ------------------------------------------------------------------------------


def _complete_job(*ids: str) -> Job:
    return Job(
        id="job-1",
        status="complete",
        objects=tuple(ObjectRef(i) for i in ids),
        schema_version=1,
        at=datetime(2025, 1, 1, tzinfo=UTC),
    )


def test_truncated_gzip_without_length_is_refetched(tmp_path: Path) -> None:
    payload = gzip.compress(b"".join(b'{"key":{"id":%d}}\n' % i for i in range(2000)))
    gets = 0
    url_calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal gets, url_calls
        if request.url.path == "/dap/object/url":
            url_calls += 1
            return httpx.Response(
                200,
                json={
                    "urls": {"o1": {"url": f"http://store.test/p/part-0.json.gz?sig={url_calls}"}}
                },
            )
        assert "authorization" not in request.headers  # no bearer token to object storage
        gets += 1
        # A close-delimited body (no Content-Length) that ends early the first time.
        body = payload[: len(payload) // 2] if gets == 1 else payload
        return httpx.Response(200, stream=httpx.ByteStream(body))

    async def go() -> list[Path]:
        async with client(with_login(handler)) as dap:
            return await dap.download(_complete_job("o1"), tmp_path)

    (path,) = run(go())
    assert path.name == "part-0.json.gz"
    assert gzip.decompress(path.read_bytes()).count(b"\n") == 2000
    assert gets == 2 and url_calls == 2
    assert not list(tmp_path.glob("*.part"))


def test_download_gives_up_with_download_error(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/dap/object/url":
            return httpx.Response(200, json={"urls": {"o1": {"url": "http://s.test/a.csv.gz"}}})
        return httpx.Response(403, text="<Error>AccessDenied</Error>")

    async def go() -> list[Path]:
        async with client(with_login(handler), download_attempts=2) as dap:
            return await dap.download(_complete_job("o1"), tmp_path)

    with pytest.raises(DownloadError) as info:
        run(go())
    assert info.value.object_id == "o1" and "o1" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_download_refuses_unfinished_job(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no call expected")

    async def go() -> None:
        async with client(handler) as dap:
            await dap.download(Job(id="j", status="running"), tmp_path)

    with pytest.raises(UsageError, match="call wait"):
        run(go())


def test_unknown_host_is_not_retried() -> None:
    attempts = 0

    class Counting(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal attempts
            attempts += 1
            return await super().handle_async_request(request)

    async def go() -> None:
        transport = RetryTransport(Counting(), RetryPolicy(attempts=5, backoff=0.01))
        async with AsyncDapClient(
            rate_limits=None,
            base_url="http://nonexistent.invalid",
            client_id="i",
            client_secret=SECRET,
            transport=transport,
        ) as dap:
            await dap.list_tables("canvas")

    pattern = r"cannot reach the DAP API at http://nonexistent\.invalid: .*DAP_API_URL"
    with pytest.raises(TransportError, match=pattern) as info:
        run(go())
    if "emporary" in str(info.value):  # resolver unavailable here: a transient failure
        pytest.skip("no DNS resolver on this machine")
    assert attempts == 1
